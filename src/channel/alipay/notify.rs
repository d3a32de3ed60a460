//! Alipay's payment notifications: `POST /callback/ali_pay/{appId}`, form-encoded.
//!
//! A notice is verified by Alipay's rule for payments (V1: `sign` and `sign_type` dropped,
//! sorted, decoded values) with the app's Alipay public key, then checked: its `app_id` is the
//! configured one, `out_trade_no` is an `ali_pay` order of this app, and `total_amount` is the
//! order's amount. `TRADE_SUCCESS`/`TRADE_FINISHED` then applies the payment through the one
//! state machine (`Store::apply_payment`: money wins, also over a close). The reply is exactly
//! `success` once that is on disk, or for a notice that needs no change; any failed check gets
//! another body (Alipay retries) and is logged with its reason, never with the notice itself.

use super::{AliPay, NAME};
use crate::channel::notice::{apply_paid, Paid, Refused};
use crate::domain::Amount;
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
    // A refund re-sends TRADE_SUCCESS with refund_fee (TRADE_CLOSED after a full refund): it
    // is not a payment.
    if get(params, "refund_fee").is_some() || get(params, "gmt_refund").is_some() {
        return Ok(format!("refund notice for {order_no}, not a payment"));
    }
    match get(params, "trade_status") {
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
