//! `POST /unipay/close`: close or cancel an unpaid order, and the close itself, shared with the
//! expiry sweeper (and later the admin console).
//!
//! A `wait` order is closed locally in one transaction. A `progress` order's channel must stop
//! taking money first: the intent to close is committed (a second close now gets 20043), the
//! channel closes or cancels the trade outside any transaction, and its answer is applied in one
//! transaction with a conditional update, the close record and the outbox rows, which also ends
//! the intent. If the process dies in between, start-up recovery (`expiry::recover`) asks the
//! channel and finishes or undoes the close.

use crate::api::{Call, Gateway};
use crate::domain::{plan_close, Actor, ClosePlan, CloseType, Order, OrderKey};
use crate::error::{Error, MSG_NOT_CLOSABLE};
use crate::store::{ChannelCloseOutcome, CloseRequest};

/// The endpoint: find the order of the caller's app and close it.
pub fn handle(gw: &Gateway, call: &Call) -> Result<Option<String>, Error> {
    let p = &call.params;
    let key = OrderKey::pick(p.str("orderNo"), p.str("bizOrderNo"), p.str("outOrderNo"))
        .ok_or_else(|| Error::Validation("支付订单号不能都为空".into()))?;
    let use_cancel = p.bool("useCancel").unwrap_or(false);
    let req = CloseRequest {
        actor: Actor::Api,
        client_ip: p.non_empty("clientIp").map(str::to_string),
        now: call.now,
    };
    // A `wait` order is found and closed in one write job; a `progress` one goes to its channel.
    match gw
        .store
        .close_by_key(call.app.app_id.clone(), key, req.clone())?
    {
        Ok(_closed) => Ok(None),
        Err(order) => {
            let close_type = if use_cancel {
                CloseType::Cancel
            } else {
                CloseType::Close
            };
            close_at_channel(gw, &order, close_type, req).map(|_| None)
        }
    }
}

/// Closes `order` (or cancels it at its channel with `use_cancel`), for any actor.
/// `Ok` means this call changed the order and the change is on disk.
pub fn close_order(
    gw: &Gateway,
    order: &Order,
    use_cancel: bool,
    req: CloseRequest,
) -> Result<Order, Error> {
    // The status read before is only a hint: `close_local` and `begin_close` decide inside
    // their transactions.
    let close_type = if use_cancel {
        CloseType::Cancel
    } else {
        CloseType::Close
    };
    match plan_close(order.status, use_cancel) {
        Err(_) => Err(Error::TradeStatus(MSG_NOT_CLOSABLE.into())),
        Ok(ClosePlan::AtChannel(_)) => close_at_channel(gw, order, close_type, req),
        Ok(ClosePlan::Local) => match gw.store.close_local(order.id, req.clone())? {
            Ok(closed) => Ok(closed),
            // It became `progress` meanwhile (handed to a channel).
            Err(now_progress) => close_at_channel(gw, &now_progress, close_type, req),
        },
    }
}

/// Closes a `progress` order: intent, channel, answer (see the module doc).
fn close_at_channel(
    gw: &Gateway,
    order: &Order,
    close_type: CloseType,
    req: CloseRequest,
) -> Result<Order, Error> {
    let channel_name = order.channel.clone().unwrap_or_default();
    let channel = gw
        .channels
        .get(&channel_name)
        .ok_or_else(|| Error::Unsupported(channel_name.clone()))?;
    let order = gw.store.begin_close(order.id, close_type, req.clone())?;
    let outcome = match channel.close(&order, close_type) {
        Ok(outcome) => outcome,
        Err(e) => {
            log::warn!("close of {} at {channel_name} failed: {e}", order.order_no);
            ChannelCloseOutcome::Failed(e.message())
        }
    };
    let (after, changed) =
        gw.store
            .finish_channel_close(order.id, close_type, outcome.clone(), req)?;
    match outcome {
        ChannelCloseOutcome::Closed if changed => Ok(after),
        ChannelCloseOutcome::Closed => Err(Error::TradeStatus(MSG_NOT_CLOSABLE.into())),
        ChannelCloseOutcome::Paid { .. } => {
            Err(Error::TradeStatus("订单已支付成功, 无法关闭".into()))
        }
        ChannelCloseOutcome::Failed(msg) => Err(Error::CloseFailed(msg)),
    }
}
