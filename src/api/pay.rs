//! `POST /unipay/pay` (an order handed to a channel, `progress`) and
//! `POST /unipay/gateway/prePay` (an order waiting for a cashier, `wait`).

use crate::api::{Call, Gateway};
use crate::domain::{Order, PayStatus};
use crate::error::Error;
use crate::store::{Inserted, NewOrder};
use crate::wire::{self, Params};

/// `/unipay/pay`.
pub fn handle_pay(gw: &Gateway, call: &Call) -> Result<Option<String>, Error> {
    let p = &call.params;
    let method = p.str("method").unwrap_or_default();
    if !wire::METHODS.contains(&method) {
        return Err(Error::Validation(format!("不支持的支付方式: {method}")));
    }
    let channel_name = p.str("channel").unwrap_or_default();
    let channel = gw.channels.get(channel_name).ok_or(Error::NoSuchChannel)?;
    let mut new = new_order(call, PayStatus::Progress)?;
    new.channel = Some(channel.name().to_string());
    new.method = Some(method.to_string());
    new.other_method = p.str("otherMethod").map(str::to_string);
    new.extra_param = p.str("extraParam").map(str::to_string);
    let order = match insert(gw, new)? {
        Ok(created) => created,
        // An order waiting for a cashier (prePay) is handed to the channel now.
        Err(existing)
            if existing.status == PayStatus::Wait && existing.expired_time <= call.now =>
        {
            return Err(Error::TradeStatus("订单已过期, 无法支付".into()));
        }
        Err(existing) if existing.status == PayStatus::Wait => {
            let handed = gw.store.hand_to_channel(
                existing.id,
                channel.name().to_string(),
                method.to_string(),
                call.now,
            )?;
            handed.ok_or_else(|| Error::TradeStatus("订单状态已变化, 请重新查询".into()))?
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
    match channel.start(&order) {
        Ok(start) => Ok(Some(wire::pay_data(&order, Some(&start.pay_body)))),
        Err(e) => {
            log::warn!(
                "channel {} refused order {}: {e}",
                channel.name(),
                order.order_no
            );
            gw.store.fail_order(order.id, e.message(), gw.now())?;
            Err(e)
        }
    }
}

/// `/unipay/gateway/prePay`.
pub fn handle_pre_pay(gw: &Gateway, call: &Call) -> Result<Option<String>, Error> {
    let order = match insert(gw, new_order(call, PayStatus::Wait)?)? {
        Ok(created) => created,
        Err(existing) => existing,
    };
    let url = crate::channel::cashier_url(&gw.base_url, &order.order_no);
    Ok(Some(wire::gateway_data(&url)))
}

/// The fields both endpoints share, validated.
fn new_order(call: &Call, status: PayStatus) -> Result<NewOrder, Error> {
    let p: &Params = &call.params;
    let amount = wire::amount(p)?;
    if let Some(limit) = call.app.limit_amount {
        if amount > limit {
            return Err(Error::AmountLimit);
        }
    }
    let expired_time = match p.time_ms("expiredTime") {
        Some(t) if t <= call.now => {
            return Err(Error::Validation("过期时间必须晚于当前时间".into()))
        }
        Some(t) => t,
        None => call.now + call.app.order_timeout_min * 60_000,
    };
    let owned = |name: &str| p.str(name).map(str::to_string);
    Ok(NewOrder {
        mch_no: call.app.mch_no.clone(),
        app_id: call.app.app_id.clone(),
        biz_order_no: owned("bizOrderNo").unwrap_or_default(),
        title: owned("title").unwrap_or_default(),
        description: owned("description"),
        allocation: p.bool("allocation"),
        auto_allocation: p.bool("autoAllocation"),
        channel: None,
        method: None,
        other_method: None,
        limit_pay: owned("limitPay"),
        amount,
        status,
        expired_time,
        attach: owned("attach"),
        notify_url: owned("notifyUrl").filter(|u| !u.is_empty()),
        return_url: owned("returnUrl"),
        extra_param: None,
        client_ip: p.non_empty("clientIp").map(str::to_string),
        now: call.now,
    })
}

/// Inserts the order; `Err(existing)` is an open order with the same `bizOrderNo`, which the
/// caller returns again. A paid or closed one is refused as DaxPay does.
fn insert(gw: &Gateway, new: NewOrder) -> Result<Result<Order, Order>, Error> {
    match gw.store.insert_order(new)? {
        Inserted::Created(order) => Ok(Ok(order)),
        Inserted::Existing(existing) => match existing.status {
            PayStatus::Wait | PayStatus::Progress => Ok(Err(existing)),
            PayStatus::Success => Err(Error::TradeStatus("已经支付成功，请勿重新支付".into())),
            _ => Err(Error::TradeStatus("该订单支付失败或已经被关闭".into())),
        },
    }
}
