//! Repairing an order or a refund from its channel's truth (`/unipay/sync/order/pay|refund`,
//! refund-sync.md §5, §6).
//!
//! A pay sync asks the channel what the trade is and applies refund-sync.md §5's table through
//! the one state machine: money wins (also over a close, which is then flagged for an
//! operator), a trade over at the channel ends the open order the same way, an open trade past
//! its expiry is closed as expiry does, and a `success` order the channel does not call paid is
//! flagged, never changed. A refund sync settles a `progress` refund once (`refund::settle`)
//! and flags a final one the channel disagrees with. Every sync is recorded; `adjust` says
//! whether this call changed the status. Nothing is held while the channel is asked.

use crate::channel::{Channels, TradeState};
use crate::close::close_order;
use crate::domain::{
    Actor, ChannelCloseOutcome, CloseRequest, CloseType, Order, PayStatus, Refund, RefundAnswer,
    RefundStatus,
};
use crate::error::{Error, MSG_PAY_SYNC_BUSY, MSG_REFUND_SYNC_BUSY, MSG_SYNC_NOT_STARTED};
use crate::inflight::InFlight;
use crate::refund::Refunds;
use crate::store::{OrderRef, Store, SyncRecord};

/// What a sync did: the status after it, and whether this call changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub status: String,
    pub adjust: bool,
}

fn trade_word(state: &TradeState) -> &'static str {
    match state {
        TradeState::Open => "open",
        TradeState::Paid { .. } => "paid",
        TradeState::Closed => "closed",
        TradeState::Revoked => "revoked",
        TradeState::Failed => "failed",
        TradeState::NotFound => "not found",
    }
}

/// `POST /unipay/sync/order/pay` for `order` (of the caller's app).
pub fn sync_pay(
    store: &Store,
    channels: &Channels,
    busy: &InFlight,
    order: &Order,
    client_ip: Option<String>,
    now: i64,
) -> Result<Synced, Error> {
    // Never handed to a channel (still `wait`, or closed while it was): nothing to ask.
    if order.status == PayStatus::Wait || order.channel.is_none() {
        return Err(Error::TradeStatus(MSG_SYNC_NOT_STARTED.into()));
    }
    let Some(_claim) = busy.try_claim(("sync-pay".into(), order.order_no.clone())) else {
        return Err(Error::SyncBusy(MSG_PAY_SYNC_BUSY));
    };
    let name = order.channel.clone().unwrap_or_default();
    let channel = channels
        .get(&name)
        .ok_or_else(|| Error::Unsupported(name.clone()))?;
    let record = |status: Option<&str>, adjusted: bool, error: Option<String>| {
        store.record_sync(SyncRecord {
            kind: "pay",
            order_no: order.order_no.clone(),
            refund_no: None,
            channel: Some(name.clone()),
            channel_status: status.map(str::to_string),
            adjusted,
            error_msg: error,
            client_ip: client_ip.clone(),
            now,
        })
    };
    let state = match channel.query(order) {
        Ok(state) => state,
        // The app's settings of the channel are missing or off: said as for a pay.
        Err(e @ (Error::Config(_) | Error::ChannelDisabled(_))) => return Err(e),
        Err(e) => {
            let why = e.message();
            record(None, false, Some(why.clone()))?;
            return Err(Error::SyncFailed(why));
        }
    };
    let req = CloseRequest {
        actor: Actor::Sync,
        client_ip: client_ip.clone(),
        now,
    };
    let end = |close_type: CloseType| {
        store
            .finish_channel_close(
                order.id,
                close_type,
                ChannelCloseOutcome::Closed,
                req.clone(),
                None,
            )
            .map(|(_, changed)| changed)
    };
    let expired = now >= order.expired_time;
    let changed = match (order.status, &state) {
        (_, TradeState::Paid { trade_no, paid_at }) => {
            // Money wins over an open order and over one that is already over (flagged).
            let paid = store.apply_payment(order.id, trade_no.clone(), *paid_at, now)?;
            !matches!(paid, crate::store::Payment::AlreadyPaid(_))
        }
        (PayStatus::Progress, TradeState::Closed) => end(CloseType::Close)?,
        (PayStatus::Progress, TradeState::Revoked) => end(CloseType::Cancel)?,
        (PayStatus::Progress, TradeState::Failed) => store
            .fail_order(order.id, "通道支付失败".into(), now, None)?
            .is_some(),
        (PayStatus::Progress, TradeState::Open | TradeState::NotFound) if expired => {
            // As automatic expiry does: the channel closes the trade first.
            match close_order(
                store,
                channels,
                OrderRef::Id(order.id),
                false,
                req.clone(),
                None,
            ) {
                Ok(_) => true,
                Err(e) => {
                    record(Some(trade_word(&state)), false, Some(e.message()))?;
                    return Err(Error::SyncFailed(e.message()));
                }
            }
        }
        (PayStatus::Success, _) => {
            let why = format!(
                "订单支付成功, 但通道交易为 {} (a pay sync disagrees)",
                trade_word(&state)
            );
            store.flag_attention(order.id, why, now)?;
            false
        }
        _ => false,
    };
    record(Some(trade_word(&state)), changed, None)?;
    let after = store
        .order_by_no(&order.order_no)?
        .ok_or(Error::OrderNotFound)?;
    Ok(Synced {
        status: after.status.as_str().to_string(),
        adjust: changed,
    })
}

/// `POST /unipay/sync/order/refund` for `refund` (of the caller's app).
pub fn sync_refund(
    refunds: &Refunds,
    refund: &Refund,
    client_ip: Option<String>,
    now: i64,
) -> Result<Synced, Error> {
    let Some(_claim) = refunds
        .busy
        .try_claim(("sync-refund".into(), refund.refund_no.clone()))
    else {
        return Err(Error::SyncBusy(MSG_REFUND_SYNC_BUSY));
    };
    let channel = refunds
        .channels
        .get(&refund.channel)
        .ok_or_else(|| Error::Unsupported(refund.channel.clone()))?;
    if let Some(why) = channel.refund_sync_too_soon(refund, now) {
        return Err(Error::SyncTooSoon(why));
    }
    let record = |status: Option<&str>, adjusted: bool, error: Option<String>| {
        refunds.store.record_sync(SyncRecord {
            kind: "refund",
            order_no: refund.order_no.clone(),
            refund_no: Some(refund.refund_no.clone()),
            channel: Some(refund.channel.clone()),
            channel_status: status.map(str::to_string),
            adjusted,
            error_msg: error,
            client_ip: client_ip.clone(),
            now,
        })
    };
    let Some(_held) = refunds
        .busy
        .try_claim(("refund".into(), refund.refund_no.clone()))
    else {
        return Err(Error::SyncBusy(MSG_REFUND_SYNC_BUSY));
    };
    let order = refunds
        .store
        .order_by_no(&refund.order_no)?
        .ok_or(Error::OrderNotFound)?;
    let answer = channel.query_refund(&order, refund);
    if let RefundAnswer::Unknown(why) = &answer {
        record(None, false, Some(why.clone()))?;
        return Err(Error::SyncFailed(why.clone()));
    }
    if refund.status == RefundStatus::Progress {
        let (after, changed) = refunds.settle_with(refund, answer, now)?;
        record(Some(after.status.as_str()), changed, None)?;
        return Ok(Synced {
            status: after.status.as_str().to_string(),
            adjust: changed,
        });
    }
    // A final refund is never changed; a channel that disagrees is an operator's matter.
    let (word, agrees) = match (&answer, refund.status) {
        (RefundAnswer::Unknown(_), _) => ("unknown", true),
        (RefundAnswer::Success { .. }, s) => ("success", s == RefundStatus::Success),
        (RefundAnswer::Closed { .. }, s) => ("closed", s == RefundStatus::Close),
        (RefundAnswer::NotFound, s) => ("not found", s == RefundStatus::Fail),
        (RefundAnswer::Processing { .. }, _) => ("processing", false),
        (RefundAnswer::Abnormal { .. }, _) => ("abnormal", false),
        (RefundAnswer::Refused(_), s) => ("refused", s == RefundStatus::Fail),
        (RefundAnswer::Attention(_), _) => ("mismatch", false),
    };
    if !agrees {
        let why = format!(
            "退款{}本地为{}, 通道为{word} (a refund sync disagrees)",
            refund.refund_no,
            refund.status.label()
        );
        refunds.store.flag_attention(order.id, why, now)?;
    }
    record(Some(word), false, None)?;
    Ok(Synced {
        status: refund.status.as_str().to_string(),
        adjust: false,
    })
}
