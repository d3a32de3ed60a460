//! WeChat Pay's notifications: `POST /callback/wechat_pay/{appId}`, JSON.
//!
//! A notification is verified over its raw body with WeChat Pay's public key (the configured
//! key ID in `Wechatpay-Serial`, a timestamp within 5 minutes, no probe), its `resource`
//! decrypted with the APIv3 key (AES-GCM, tag checked), then the transaction is checked: the
//! app's `mchid` and `appid`, an order of this app at this channel, the exact amount in fen.
//! `TRANSACTION.SUCCESS` with `trade_state: SUCCESS` applies the payment (`notice::apply_paid`).
//!
//! Refund notices (`REFUND.SUCCESS`, `REFUND.CLOSED`, `REFUND.ABNORMAL`, refund-sync.md §9.3)
//! arrive at the same path, their resource (`original_type: refund`) decrypted the same way, then
//! checked: the app's `mchid`; `out_refund_no` a `wechat_pay` refund of this app whose order is
//! `out_trade_no`; `amount.refund` its amount; `refund_status` the one the event names. A
//! `progress` refund then becomes `success` or `close`, or stays `progress` flagged for an
//! operator (`ABNORMAL`), through `Store::apply_refund`. A refund already in that state is left
//! alone; one already final in another state is left alone and its order flagged.
//!
//! The reply is 204 once the change is on disk (also for a repeat); any failed check is a 4xx/5xx
//! with `{"code":"FAIL","message":"…"}` so that WeChat retries. Neither the body nor the decrypted
//! resource is ever logged.

use serde_json::{json, Value};

use super::{sign, WechatPay, NAME};
use crate::channel::notice::{apply_paid, Paid, Refused};
use crate::domain::{Amount, RefundAnswer, RefundStatus};
use crate::http::{Request, Response};
use crate::sys;

pub(super) fn handle(wx: &WechatPay, app_id: &str, req: &Request) -> Response {
    let fail = |status: u16, message: &str| {
        let body = json!({ "code": "FAIL", "message": message }).to_string();
        Response::json(body.into_bytes()).with_status(status)
    };
    match apply(wx, app_id, req) {
        Ok(what) => {
            log::info!("{NAME} notice for app {app_id}: {what}");
            Response::text(204, "")
        }
        Err(Refused::Check(why)) => {
            log::warn!("{NAME} notice for app {app_id} refused: {why}");
            fail(400, "失败")
        }
        Err(Refused::Internal(why)) => {
            log::error!("{NAME} notice for app {app_id} not applied: {why}");
            fail(500, "失败")
        }
    }
}

fn apply(wx: &WechatPay, app_id: &str, req: &Request) -> Result<String, Refused> {
    let s = wx
        .settings
        .get_any(app_id)
        .map_err(|e| Refused::check(format!("no {NAME} settings for the app ({e})")))?;
    let signed = sign::Signed {
        timestamp: req.header("wechatpay-timestamp"),
        nonce: req.header("wechatpay-nonce"),
        signature: req.header("wechatpay-signature"),
        serial: req.header("wechatpay-serial"),
    };
    sign::verify(
        &s.platform_public_key,
        &s.platform_public_key_id,
        &signed,
        &req.body,
        wx.now_secs(),
    )
    .map_err(Refused::check)?;
    let body: Value =
        serde_json::from_slice(&req.body).map_err(|_| Refused::check("the body is not JSON"))?;
    let event = body["event_type"].as_str().unwrap_or("");
    let plain = sign::decrypt_resource(&s.apiv3_key, &body["resource"]).map_err(Refused::check)?;
    let tx: Value =
        serde_json::from_slice(&plain).map_err(|_| Refused::check("the resource is not JSON"))?;
    let text = |k: &str| tx[k].as_str().unwrap_or("");
    if text("mchid") != s.mchid {
        return Err(Refused::check("mchid is not the app's merchant id"));
    }
    if let Some(status) = refund_event(event) {
        return apply_refund(wx, app_id, status, &tx);
    }
    if text("appid") != s.appid {
        return Err(Refused::check("appid is not the app's WeChat app id"));
    }
    let order_no = text("out_trade_no");
    if event != "TRANSACTION.SUCCESS" || text("trade_state") != "SUCCESS" {
        // Other events are not payments.
        return Ok(format!("{event} for {order_no}: not a payment"));
    }
    let amount = tx["amount"]["total"]
        .as_i64()
        .ok_or_else(|| Refused::check("no amount.total"))?;
    let now = wx.clock.now_ms();
    apply_paid(
        &wx.store,
        &Paid {
            channel: NAME,
            app_id,
            order_no,
            amount: Amount(amount),
            trade_no: text("transaction_id"),
            paid_at: sys::parse_rfc3339(text("success_time")).unwrap_or(now),
            now,
        },
    )
}

/// The `refund_status` a refund event reports, for the three refund events.
fn refund_event(event: &str) -> Option<&'static str> {
    match event {
        "REFUND.SUCCESS" => Some("SUCCESS"),
        "REFUND.CLOSED" => Some("CLOSED"),
        "REFUND.ABNORMAL" => Some("ABNORMAL"),
        _ => None,
    }
}

/// A decrypted refund notice (its `mchid` checked) reporting `status`: checked and applied.
fn apply_refund(wx: &WechatPay, app_id: &str, status: &str, r: &Value) -> Result<String, Refused> {
    let text = |k: &str| r[k].as_str().unwrap_or("");
    if text("refund_status") != status {
        return Err(Refused::check(
            "refund_status does not agree with event_type",
        ));
    }
    let refund = wx
        .store
        .refund_by_no(text("out_refund_no"))
        .map_err(|e| Refused::Internal(e.to_string()))?
        .filter(|f| f.app_id == app_id && f.channel == NAME)
        .ok_or_else(|| Refused::check("out_refund_no is not a wechat_pay refund of the app"))?;
    let no = refund.refund_no.clone();
    if text("out_trade_no") != refund.order_no {
        return Err(Refused::check(format!(
            "out_trade_no is not the order of refund {no}"
        )));
    }
    if r["amount"]["refund"].as_i64() != Some(refund.amount.0) {
        return Err(Refused::check(format!(
            "amount.refund is not the amount of refund {no}"
        )));
    }
    let out_refund_no = Some(text("refund_id"))
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    let (answer, target) = match status {
        "SUCCESS" => (
            RefundAnswer::Success {
                out_refund_no,
                finish_time: sys::parse_rfc3339(text("success_time")),
            },
            RefundStatus::Success,
        ),
        "CLOSED" => (RefundAnswer::Closed { out_refund_no }, RefundStatus::Close),
        _ => (
            RefundAnswer::Abnormal { out_refund_no },
            RefundStatus::Progress,
        ),
    };
    let now = wx.clock.now_ms();
    let internal = |e: crate::error::Error| Refused::Internal(e.to_string());
    let mut refund = refund;
    if refund.status == RefundStatus::Progress {
        let next = refund.next_check(now);
        let (after, changed) = wx
            .store
            .apply_refund(refund.id, answer, false, next, now, None)
            .map_err(internal)?;
        if changed {
            return Ok(format!("refund {no} is {}", after.status.as_str()));
        }
        refund = after;
    }
    if refund.status == target {
        return Ok(match target {
            RefundStatus::Progress => format!("refund {no} is abnormal: needs attention"),
            _ => format!("refund {no} was already {}", target.as_str()),
        });
    }
    // Final in another state: money is never moved again; an operator looks.
    let why = format!(
        "退款{no}本地为{}, 微信通知为{status}",
        refund.status.label()
    );
    wx.store
        .flag_attention(refund.order_id, why, now)
        .map_err(internal)?;
    Ok(format!(
        "refund {no} is {} but WeChat says {status}: needs attention",
        refund.status.as_str()
    ))
}
