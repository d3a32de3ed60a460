//! `POST /unipay/close`: close or cancel an unpaid order.
//!
//! A `wait` order is closed locally in one transaction. A `progress` order's channel is asked to
//! close (or cancel) the trade first, outside any transaction, while the order is marked as being
//! closed so that a second close gets 20043; then the channel's answer is applied in one
//! transaction with a conditional update, the close record and the outbox rows.

use crate::api::{Call, Gateway};
use crate::domain::Actor;
use crate::domain::{plan_close, ClosePlan, CloseType, Order, OrderKey};
use crate::error::{Error, MSG_NOT_CLOSABLE};
use crate::store::{ChannelCloseOutcome, CloseRequest, LocalClose};

/// The endpoint: find the order of the caller's app and close it.
pub fn handle(gw: &Gateway, call: &Call) -> Result<Option<String>, Error> {
    let p = &call.params;
    let key = OrderKey::pick(p.str("orderNo"), p.str("bizOrderNo"), p.str("outOrderNo"))
        .ok_or_else(|| Error::Validation("支付订单号不能都为空".into()))?;
    let use_cancel = p.bool("useCancel").unwrap_or(false);
    let order = gw
        .store
        .find_order(&call.app.app_id, &key)?
        .ok_or(Error::OrderNotFound)?;
    let req = CloseRequest {
        actor: Actor::Api,
        client_ip: p.non_empty("clientIp").map(str::to_string),
        now: call.now,
    };
    close_order(gw, &order, use_cancel, req)?;
    Ok(None)
}

/// Closes `order` (or cancels it at its channel with `use_cancel`), for any actor.
/// `Ok` means this call changed the order and the change is on disk.
pub fn close_order(
    gw: &Gateway,
    order: &Order,
    use_cancel: bool,
    req: CloseRequest,
) -> Result<Order, Error> {
    // The status read before is only a hint: `close_local` decides inside its transaction, and
    // `finish_channel_close` changes a `progress` order only if it still is one.
    let order = match plan_close(order.status, use_cancel) {
        Err(_) => return Err(Error::TradeStatus(MSG_NOT_CLOSABLE.into())),
        Ok(ClosePlan::AtChannel(_)) => order.clone(),
        Ok(ClosePlan::Local) => match gw.store.close_local(order.id, req.clone())? {
            LocalClose::Closed(closed) => return Ok(closed),
            LocalClose::NeedsChannel(order) => order,
        },
    };
    let close_type = if use_cancel {
        CloseType::Cancel
    } else {
        CloseType::Close
    };
    let channel_name = order.channel.clone().unwrap_or_default();
    let channel = gw
        .channels
        .get(&channel_name)
        .ok_or_else(|| Error::Unsupported(channel_name.clone()))?;
    let _lock = gw.lock_close(order.id)?;
    let outcome = match channel.close(&order, close_type) {
        Ok(outcome) => outcome,
        Err(e @ Error::Unsupported(_)) => return Err(e),
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
