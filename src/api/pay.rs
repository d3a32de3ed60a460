//! `POST /unipay/pay` (an order handed to a channel, `progress`) and
//! `POST /unipay/gateway/prePay` (an order waiting for a cashier, `wait`).

use crate::api::Call;
use crate::channel::PayExtra;
use crate::domain::{Order, PayStatus};
use crate::error::{
    Error, MSG_ALREADY_PAID, MSG_EXPIRED_TIME_PAST, MSG_FAILED_OR_CLOSED, MSG_PAY_EXPIRED,
    MSG_STATUS_CHANGED_QUERY,
};
use crate::gateway::Gateway;
use crate::store::{Inserted, Memo, NewOrder};
use crate::wire;

/// `/unipay/pay`.
pub fn handle_pay(gw: &Gateway, call: &Call) -> Result<Option<String>, Error> {
    let input = wire::pay_input(&call.params)?;
    let method = input.method.as_str();
    let channel = gw
        .channels
        .get(&input.channel)
        .ok_or(Error::NoSuchChannel)?;
    let extra = PayExtra {
        open_id: input.open_id.clone(),
        quit_url: input.quit_url.clone(),
        client_ip: call.params.common().client_ip.map(str::to_string),
    };
    // Before anything is written: the app's channel settings, the method, its fields.
    channel.check_pay(&call.app.app_id, method, &extra)?;
    let mut new = new_order(call, PayStatus::Progress)?;
    new.channel = Some(channel.name().to_string());
    new.method = Some(input.method.clone());
    new.other_method = input.other_method;
    new.extra_param = input.extra_param;
    let order = match insert(gw, new, None)? {
        Ok(created) => created,
        // An order waiting for a cashier (prePay) is handed to the channel now.
        Err(existing)
            if existing.status == PayStatus::Wait && existing.expired_time <= call.now =>
        {
            return Err(Error::TradeStatus(MSG_PAY_EXPIRED.into()));
        }
        Err(existing) if existing.status == PayStatus::Wait => {
            let handed = gw.store.hand_to_channel(
                existing.id,
                channel.name().to_string(),
                method.to_string(),
                call.now,
            )?;
            handed.ok_or_else(|| Error::TradeStatus(MSG_STATUS_CHANGED_QUERY.into()))?
        }
        Err(existing) => {
            let pay_body = existing
                .channel
                .as_deref()
                .and_then(|c| gw.channels.get(c))
                .and_then(|c| c.pay_body(&existing));
            return Ok(Some(wire::pay_data(&existing, pay_body.as_deref())));
        }
    };
    match channel.start(&order, &extra) {
        Ok(start) => {
            let data = wire::pay_data(&order, Some(&start.pay_body));
            // The pay body to keep, and the nonce'd request's reply, in one transaction.
            let kept = start.remember.then(|| start.pay_body.clone());
            let reply = data.clone();
            let memo = call.memo.as_ref().map(|m| m.memo(move |_| Ok(Some(reply))));
            if kept.is_some() || memo.is_some() {
                gw.store.after_pay_start(order.id, kept, memo)?;
            }
            Ok(Some(data))
        }
        Err(e) => {
            log::warn!(
                "channel {} refused order {}: {e}",
                channel.name(),
                order.order_no
            );
            let refusal = e.clone();
            let memo = call.memo.as_ref().map(|m| m.memo(move |_| Err(refusal)));
            gw.store.fail_order(order.id, e.message(), gw.now(), memo)?;
            Err(e)
        }
    }
}

/// `/unipay/gateway/prePay`.
pub fn handle_pre_pay(gw: &Gateway, call: &Call) -> Result<Option<String>, Error> {
    // A new order's reply is remembered with it (the cashier URL follows from its number).
    let base_url = gw.base_url.clone();
    let memo = call.memo.as_ref().map(|m| {
        m.memo(move |order| {
            let url = crate::channel::cashier_url(&base_url, &order.order_no);
            Ok(Some(wire::gateway_data(&url)))
        })
    });
    let order = match insert(gw, new_order(call, PayStatus::Wait)?, memo)? {
        Ok(created) => created,
        Err(existing) => existing,
    };
    let url = crate::channel::cashier_url(&gw.base_url, &order.order_no);
    Ok(Some(wire::gateway_data(&url)))
}

/// The fields both endpoints share, validated.
fn new_order(call: &Call, status: PayStatus) -> Result<NewOrder, Error> {
    let input = wire::order_input(&call.params)?;
    if let Some(limit) = call.app.limit_amount {
        if input.amount > limit {
            return Err(Error::AmountLimit);
        }
    }
    let expired_time = match input.expired_time {
        Some(t) if t <= call.now => return Err(Error::Validation(MSG_EXPIRED_TIME_PAST.into())),
        Some(t) => t,
        None => call.now + call.app.order_timeout_min * 60_000,
    };
    Ok(NewOrder {
        mch_no: call.app.mch_no.clone(),
        app_id: call.app.app_id.clone(),
        biz_order_no: input.biz_order_no,
        title: input.title,
        description: input.description,
        allocation: input.allocation,
        auto_allocation: input.auto_allocation,
        channel: None,
        method: None,
        other_method: None,
        limit_pay: input.limit_pay,
        amount: input.amount,
        status,
        expired_time,
        attach: input.attach,
        notify_url: input.notify_url,
        return_url: input.return_url,
        extra_param: None,
        client_ip: call.params.common().client_ip.map(str::to_string),
        now: call.now,
    })
}

/// Inserts the order; `Err(existing)` is an open order with the same `bizOrderNo`, which the
/// caller returns again. A paid or closed one is refused as DaxPay does.
fn insert(gw: &Gateway, new: NewOrder, memo: Option<Memo>) -> Result<Result<Order, Order>, Error> {
    match gw.store.insert_order(new, memo)? {
        Inserted::Created(order) => Ok(Ok(order)),
        Inserted::Existing(existing) => match existing.status {
            PayStatus::Wait | PayStatus::Progress => Ok(Err(existing)),
            PayStatus::Success => Err(Error::TradeStatus(MSG_ALREADY_PAID.into())),
            _ => Err(Error::TradeStatus(MSG_FAILED_OR_CLOSED.into())),
        },
    }
}
