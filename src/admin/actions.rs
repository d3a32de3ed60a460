//! The console's actions on an order: close or cancel (`close::close_order`), refund
//! (`refund::Refunds`, as the API's refund), and resend a notification (`Store::resend_event`).
//! Each answers with a redirect back to the order, carrying the key of a message of `FLASHES`:
//! no text of a request ever reaches a page.

use super::pages::Ctx;
use super::{not_found, redirect};
use crate::close::close_order;
use crate::domain::{Actor, Amount, CloseRequest, CloseType, OrderKey, PayStatus, RefundStatus};
use crate::error::{
    Error, MSG_FULLY_REFUNDED, MSG_PAID_NOT_CLOSABLE, MSG_REFUND_NO_EXISTS, MSG_REFUND_OVER_BALANCE,
};
use crate::form;
use crate::gateway::Gateway;
use crate::http::{Request, Response};
use crate::refund::{Asker, Refunds};
use crate::store::OrderRef;
use crate::sys::{self, Random};
use crate::wire::RefundInput;

/// The messages an action leaves on the order page, by the key its redirect carries.
const FLASHES: &[(&str, bool, &str)] = &[
    ("closed", true, "操作成功: 订单已关闭"),
    ("cancelled", true, "操作成功: 订单已撤销"),
    ("resent", true, "通知已重新排队, 将在一秒内发送"),
    ("refunded", true, "操作成功: 退款成功"),
    (
        "refund-progress",
        true,
        "退款已受理, 通道处理中; 结果见退款记录",
    ),
    ("not-open", false, "操作失败: 订单不是支付中, 无法关闭"),
    (
        "paid",
        false,
        "操作失败: 通道交易已支付, 订单已同步为支付成功",
    ),
    ("closing", false, "操作失败: 订单已在关闭中, 请稍后查看"),
    ("unsupported", false, "操作失败: 通道不支持此操作"),
    (
        "channel",
        false,
        "操作失败: 通道未能关闭订单或结果未知, 详见关闭记录",
    ),
    ("not-resent", false, "操作失败: 通知未能重新排队"),
    (
        "refund-refused",
        false,
        "操作失败: 通道拒绝了退款, 详见退款记录",
    ),
    (
        "refund-over",
        false,
        "操作失败: 退款金额超过可退余额, 或订单已全部退款",
    ),
    (
        "refund-not-paid",
        false,
        "操作失败: 订单不是支付成功, 无法退款",
    ),
    (
        "refund-bad-amount",
        false,
        "操作失败: 退款金额应以元为单位, 至少 0.01, 最多两位小数",
    ),
    (
        "refund-bad-reason",
        false,
        "操作失败: 退款原因不可超过 150 个字符",
    ),
    (
        "refund-repeat",
        false,
        "操作失败: 此退款表单已提交过其他金额, 请刷新页面后重试",
    ),
    (
        "channel-off",
        false,
        "操作失败: 应用未配置此通道或通道已停用",
    ),
    ("failed", false, "操作失败"),
];

/// The message of a key, and whether it reports a success.
pub(super) fn flash_message(key: &str) -> Option<(bool, &'static str)> {
    FLASHES
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, ok, msg)| (*ok, *msg))
}

/// The key of the message a close's outcome leaves.
fn close_flash(result: &Result<crate::domain::Order, Error>) -> &'static str {
    match result {
        Ok(after) if after.status == PayStatus::Cancel => "cancelled",
        Ok(_) => "closed",
        Err(Error::TradeStatus(msg)) if msg == MSG_PAID_NOT_CLOSABLE => "paid",
        Err(Error::TradeStatus(_)) => "not-open",
        Err(Error::Closing) => "closing",
        Err(Error::Unsupported(_)) => "unsupported",
        Err(Error::CloseFailed(_)) => "channel",
        Err(_) => "failed",
    }
}

fn order_href(order_no: &str, flash: &str) -> String {
    format!(
        "/admin/orders/{}?{}",
        form::encode(order_no),
        form::query(&[("flash", flash)])
    )
}

/// `POST /admin/orders/{orderNo}/close|cancel`: the API's close, recorded with actor `admin`.
pub(super) fn close(
    gw: &Gateway,
    ctx: &Ctx,
    req: &Request,
    order_no: &str,
    use_cancel: bool,
    now: i64,
) -> Result<Response, Error> {
    let Some(order) = gw.store.order_by_no(order_no)? else {
        return Ok(not_found(ctx, "支付订单不存在"));
    };
    let close_req = CloseRequest {
        actor: Actor::Admin,
        client_ip: Some(req.remote_addr.ip().to_string()),
        now,
    };
    let what = CloseType::from_use_cancel(use_cancel).as_str();
    let order = OrderRef::Id(order.id);
    let result = close_order(&gw.store, &gw.channels, order, use_cancel, close_req, None);
    match &result {
        Err(Error::Internal(cause)) => return Err(Error::Internal(cause.clone())),
        Ok(after) => log::info!("admin {what} of {order_no}: now {}", after.status.as_str()),
        Err(err) => log::info!("admin {what} of {order_no}: {err}"),
    }
    Ok(redirect(&order_href(order_no, close_flash(&result))))
}

/// `POST /admin/events/{id}/resend`: the event is due now with a fresh round of attempts.
pub(super) fn resend(gw: &Gateway, ctx: &Ctx, id: &str, now: i64) -> Result<Response, Error> {
    let Some(id) = id.parse::<i64>().ok().filter(|n| *n > 0) else {
        return Ok(not_found(ctx, "通知不存在"));
    };
    let Some(order_no) = gw.store.admin_event_order_no(id)? else {
        return Ok(not_found(ctx, "通知不存在"));
    };
    let resent = gw.store.resend_event(id, now)?;
    log::info!("admin resend of notification {id} ({order_no}): {resent}");
    let flash = if resent { "resent" } else { "not-resent" };
    Ok(redirect(&order_href(&order_no, flash)))
}

/// What the console's refunds' `bizRefundNo` start with.
const REFUND_PREFIX: &str = "ADMIN-";
/// The random letters after the prefix.
const REFUND_SUFFIX_LEN: usize = 20;
/// The longest reason, in characters (the API's limit).
const MAX_REASON: usize = 150;

/// A new `bizRefundNo` for a console refund. The order page puts one in its refund form, so
/// that the form sent twice (a double click) is one refund: the second is a repeat of the first.
pub(super) fn new_refund_no(random: &dyn Random) -> String {
    format!(
        "{REFUND_PREFIX}{}",
        sys::random_alnum(random, REFUND_SUFFIX_LEN)
    )
}

/// Whether `no` is a `bizRefundNo` the console makes.
fn is_console_refund_no(no: &str) -> bool {
    no.strip_prefix(REFUND_PREFIX).is_some_and(|rest| {
        rest.len() == REFUND_SUFFIX_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// The key of the message a refund's outcome leaves.
fn refund_flash(result: &Result<crate::domain::Refund, Error>) -> &'static str {
    match result {
        Ok(r) => match r.status {
            RefundStatus::Success => "refunded",
            RefundStatus::Progress => "refund-progress",
            RefundStatus::Fail | RefundStatus::Close => "refund-refused",
        },
        Err(Error::Validation(msg)) if msg == MSG_REFUND_OVER_BALANCE => "refund-over",
        Err(Error::TradeStatus(msg)) if msg == MSG_FULLY_REFUNDED => "refund-over",
        Err(Error::TradeStatus(_)) => "refund-not-paid",
        Err(Error::Validation(msg)) if msg == MSG_REFUND_NO_EXISTS => "refund-repeat",
        Err(Error::Unsupported(_)) => "unsupported",
        Err(Error::Config(_) | Error::ChannelDisabled(_)) => "channel-off",
        Err(_) => "failed",
    }
}

/// `POST /admin/orders/{orderNo}/refund` with `amount` (yuan), an optional `reason` and the
/// form's `bizRefundNo` (a new one when absent): the API's refund, asked by the console user's
/// address. The checks and the reservation of the amount are the store's, in one transaction.
pub(super) fn refund(
    gw: &Gateway,
    ctx: &Ctx,
    req: &Request,
    fields: &[(String, String)],
    order_no: &str,
    now: i64,
) -> Result<Response, Error> {
    let Some(order) = gw.store.order_by_no(order_no)? else {
        return Ok(not_found(ctx, "支付订单不存在"));
    };
    let back = |key: &str| Ok(redirect(&order_href(order_no, key)));
    let text = |name: &str| {
        form::get(fields, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let Ok(amount) = Amount::parse_yuan(text("amount").unwrap_or("")) else {
        return back("refund-bad-amount");
    };
    let reason = text("reason");
    if reason.is_some_and(|r| r.chars().count() > MAX_REASON) {
        return back("refund-bad-reason");
    }
    let biz_refund_no = match text("bizRefundNo") {
        None => new_refund_no(gw.random.as_ref()),
        Some(no) if is_console_refund_no(no) => no.to_string(),
        Some(_) => return back("failed"),
    };
    let input = RefundInput {
        order: OrderKey::OrderNo(order.order_no.clone()),
        biz_refund_no,
        amount,
        reason: reason.map(str::to_string),
        attach: None,
        notify_url: None,
        extra_param: None,
    };
    let asker = Asker {
        client_ip: Some(req.remote_addr.ip().to_string()),
        req_time: None,
    };
    let refunds = Refunds {
        store: &gw.store,
        channels: &gw.channels,
        busy: &gw.busy,
    };
    let yuan = amount.to_yuan_fixed();
    let result = refunds.refund(&order.app_id, input, asker, now, None);
    match &result {
        Err(Error::Internal(cause)) => return Err(Error::Internal(cause.clone())),
        Ok(r) => log::info!(
            "admin refund {} ({}) of {order_no}, {yuan} yuan: {}",
            r.refund_no,
            r.biz_refund_no,
            r.status.as_str()
        ),
        Err(err) => log::info!("admin refund of {order_no}, {yuan} yuan: {err}"),
    }
    back(refund_flash(&result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flash_key_is_listed_once() {
        for (i, (key, _, _)) in FLASHES.iter().enumerate() {
            assert!(
                FLASHES[i + 1..].iter().all(|(k, _, _)| k != key),
                "{key} twice"
            );
        }
        let outcomes = [
            Err(Error::Validation(MSG_REFUND_OVER_BALANCE.into())),
            Err(Error::TradeStatus(MSG_FULLY_REFUNDED.into())),
            Err(Error::TradeStatus("x".into())),
            Err(Error::Validation(MSG_REFUND_NO_EXISTS.into())),
            Err(Error::Unsupported("ali_pay".into())),
            Err(Error::Config("x")),
            Err(Error::OrderNotFound),
        ];
        let keys: Vec<&str> = outcomes.iter().map(refund_flash).collect();
        assert_eq!(
            keys,
            [
                "refund-over",
                "refund-over",
                "refund-not-paid",
                "refund-repeat",
                "unsupported",
                "channel-off",
                "failed"
            ]
        );
        for key in keys {
            assert!(flash_message(key).is_some(), "{key}");
        }
        for key in ["refunded", "refund-progress", "refund-refused"] {
            assert!(flash_message(key).is_some(), "{key}");
        }
    }

    #[test]
    fn console_refund_numbers() {
        let random = sys::OsRandom;
        let no = new_refund_no(&random);
        assert!(is_console_refund_no(&no), "{no}");
        assert_ne!(no, new_refund_no(&random));
        for bad in ["", "ADMIN-", "ADMIN-abc", "admin-01234567890123456789"] {
            assert!(!is_console_refund_no(bad), "{bad}");
        }
        assert!(!is_console_refund_no(&format!("{no}x")));
        assert!(!is_console_refund_no(&no.replace('A', "<")));
    }
}
