//! Alipay's payment notifications: `POST /callback/ali_pay/{appId}`, form-encoded.
//!
//! A notice is verified by Alipay's rule for payments (V1: `sign` and `sign_type` dropped,
//! sorted, decoded values) with the app's Alipay public key, then checked: its `app_id` is the
//! configured one, `out_trade_no` is an `ali_pay` order of this app, and `total_amount` is the
//! order's amount. `TRADE_SUCCESS`/`TRADE_FINISHED` then applies the payment through the one
//! state machine (`Store::apply_payment`: money wins, also over a close). The reply is exactly
//! `success` once that is on disk, or for a notice that needs no change; any failed check gets
//! another body (Alipay retries) and is logged with its reason, never with the notice itself.
//!
//! Alipay reports refunds through the same notification (refund-sync.md §9.2, "Notices"): a
//! partial refund re-sends `TRADE_SUCCESS` with `refund_fee` (the total refunded so far),
//! `gmt_refund` and `out_biz_no` (the refund's request number, unipay's `refundNo`); a full
//! refund sends `TRADE_CLOSED`. A notice that carries `refund_fee` (or `gmt_refund`), and a
//! `TRADE_CLOSED` of an order that is `success`, is a refund notice — never a payment, never a
//! close of the order: the `progress` refund it names becomes `success` (`Store::apply_refund`);
//! without `out_biz_no` every `progress` refund of the order is made due for a query now; an
//! `out_biz_no` that names no refund of the order means money left the trade outside unipay,
//! and the order is flagged for an operator.

use super::refund::alipay_time;
use super::{AliPay, NAME};
use crate::channel::notice::{apply_paid, Paid, Refused};
use crate::domain::{Amount, Order, OrderKey, PayStatus, RefundAnswer, RefundStatus};
use crate::error::Error;
use crate::form;
use crate::http::{Request, Response};
use crate::sys::{self, UtcOffset};

pub(super) fn handle(ali: &AliPay, app_id: &str, req: &Request) -> Response {
    let params = form::parse(&String::from_utf8_lossy(&req.body));
    match apply(ali, app_id, &params) {
        Ok(what) => {
            log::info!("{NAME} notice for app {app_id}: {what}");
            Response::text(200, "success")
        }
        Err(Refused::Check(why)) => {
            log::warn!("{NAME} notice for app {app_id} refused: {why}");
            Response::text(400, "fail")
        }
        Err(Refused::Internal(why)) => {
            log::error!("{NAME} notice for app {app_id} not applied: {why}");
            Response::text(500, "fail")
        }
    }
}

fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form::get(params, name).filter(|v| !v.is_empty())
}

/// Checks and applies one notice; says what it did.
fn apply(ali: &AliPay, app_id: &str, params: &[(String, String)]) -> Result<String, Refused> {
    let s = ali
        .settings
        .get_any(app_id)
        .map_err(|e| Refused::check(format!("no {NAME} settings for the app ({e})")))?;
    let sign = get(params, "sign").ok_or_else(|| Refused::check("no sign"))?;
    let verified = super::sign::notice_contents(params)
        .iter()
        .any(|content| s.alipay_public_key.verify_b64(content.as_bytes(), sign));
    if !verified {
        return Err(Refused::check("the signature does not verify"));
    }
    if get(params, "app_id") != Some(s.alipay_app_id.as_str()) {
        return Err(Refused::check("app_id is not the app's Alipay app id"));
    }
    let order_no = get(params, "out_trade_no").ok_or_else(|| Refused::check("no out_trade_no"))?;
    let status = get(params, "trade_status");
    // A refund re-sends TRADE_SUCCESS with refund_fee (TRADE_CLOSED after a full refund): it
    // is not a payment.
    let carries_refund = get(params, "refund_fee").is_some() || get(params, "gmt_refund").is_some();
    if carries_refund || status == Some("TRADE_CLOSED") {
        let order = ali_order(ali, app_id, order_no)?;
        if carries_refund || order.status == PayStatus::Success {
            return apply_refund_notice(ali, app_id, &order, params);
        }
    }
    match status {
        Some("TRADE_SUCCESS" | "TRADE_FINISHED") => {}
        other => {
            return Ok(format!(
                "{order_no} is {} at Alipay: nothing to apply",
                other.unwrap_or("(no trade_status)")
            ))
        }
    }
    let amount = get(params, "total_amount")
        .and_then(|a| Amount::parse_yuan(a).ok())
        .ok_or_else(|| Refused::check("no total_amount"))?;
    let now = ali.clock.now_ms();
    apply_paid(
        &ali.store,
        &Paid {
            channel: NAME,
            app_id,
            order_no,
            amount,
            trade_no: get(params, "trade_no").unwrap_or(""),
            paid_at: get(params, "gmt_payment")
                .and_then(|t| sys::parse_time(t, UtcOffset::CST))
                .unwrap_or(now),
            now,
        },
    )
}

fn internal(e: Error) -> Refused {
    Refused::Internal(e.to_string())
}

/// The `ali_pay` order `order_no` of the app.
fn ali_order(ali: &AliPay, app_id: &str, order_no: &str) -> Result<Order, Refused> {
    ali.store
        .find_order(app_id, &OrderKey::OrderNo(order_no.to_string()))
        .map_err(internal)?
        .filter(|o| o.channel.as_deref() == Some(NAME))
        .ok_or_else(|| Refused::check(format!("{order_no} is not a {NAME} order of the app")))
}

/// A verified refund notice of `order` (refund-sync.md §9.2, "Notices"). Says what it did.
fn apply_refund_notice(
    ali: &AliPay,
    app_id: &str,
    order: &Order,
    params: &[(String, String)],
) -> Result<String, Refused> {
    let order_no = &order.order_no;
    if let Some(total) = get(params, "total_amount") {
        if Amount::parse_yuan(total).ok() != Some(order.amount) {
            return Err(Refused::check(format!(
                "the total_amount of the refund notice is not the amount of {order_no}"
            )));
        }
    }
    let now = ali.clock.now_ms();
    let Some(request_no) = get(params, "out_biz_no") else {
        return refunds_due(ali, order, params, now);
    };
    let refund = ali
        .store
        .refund_by_no(request_no)
        .map_err(internal)?
        .filter(|r| r.order_no == *order_no && r.app_id == app_id);
    let Some(refund) = refund else {
        let why = format!(
            "支付宝退款通知的退款号{request_no}不是本订单的退款 (money left the trade outside unipay)"
        );
        ali.store
            .flag_attention(order.id, why, now)
            .map_err(internal)?;
        return Ok(format!(
            "refund notice for {order_no}: {request_no} is no refund of it: needs attention"
        ));
    };
    match refund.status {
        RefundStatus::Progress => {
            let answer = RefundAnswer::Success {
                out_refund_no: None,
                finish_time: Some(
                    get(params, "gmt_refund")
                        .and_then(alipay_time)
                        .unwrap_or(now),
                ),
            };
            let (after, changed) = ali
                .store
                .apply_refund(refund.id, answer, false, now, now, None)
                .map_err(internal)?;
            Ok(format!(
                "refund {request_no} of {order_no}: {}{}",
                after.status.as_str(),
                if changed { "" } else { " (already)" }
            ))
        }
        RefundStatus::Success => Ok(format!(
            "refund {request_no} of {order_no} was already success"
        )),
        // Alipay says it paid a refund that unipay holds as not paid: the money is not moved
        // again, an operator looks.
        final_state => {
            let why = format!(
                "支付宝通知退款{request_no}已退款, 本地为{}",
                final_state.label()
            );
            ali.store
                .flag_attention(order.id, why, now)
                .map_err(internal)?;
            Ok(format!(
                "refund {request_no} of {order_no} is {}: needs attention",
                final_state.as_str()
            ))
        }
    }
}

/// A refund notice without `out_biz_no`: every `progress` refund of the order is asked about
/// now; when none is under way and Alipay reports more refunded than unipay's successful
/// refunds, money left the trade outside unipay and the order is flagged.
fn refunds_due(
    ali: &AliPay,
    order: &Order,
    params: &[(String, String)],
    now: i64,
) -> Result<String, Refused> {
    let order_no = &order.order_no;
    let refunds = ali.store.refunds_of_order(order.id).map_err(internal)?;
    if refunds.iter().any(|r| r.status == RefundStatus::Progress) {
        ali.store.refunds_due_now(order.id, now).map_err(internal)?;
        return Ok(format!(
            "refund notice for {order_no} without out_biz_no: its refunds under way are due now"
        ));
    }
    let known: i64 = refunds
        .iter()
        .filter(|r| r.status == RefundStatus::Success)
        .map(|r| r.amount.0)
        .sum();
    // TRADE_CLOSED after a payment: refunded in full.
    let refunded = match get(params, "refund_fee") {
        Some(fee) => Amount::parse_yuan(fee).map(|a| a.0).unwrap_or(i64::MAX),
        None => order.amount.0,
    };
    if refunded <= known {
        return Ok(format!(
            "refund notice for {order_no} without out_biz_no: nothing new"
        ));
    }
    let why = format!(
        "支付宝通知已退款{}, 本地成功退款{} (money left the trade outside unipay)",
        Amount(refunded.min(order.amount.0)).to_yuan_fixed(),
        Amount(known).to_yuan_fixed()
    );
    ali.store
        .flag_attention(order.id, why, now)
        .map_err(internal)?;
    Ok(format!(
        "refund notice for {order_no}: more refunded at Alipay than unipay knows: needs attention"
    ))
}
