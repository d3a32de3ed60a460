//! WeChat Pay's notifications: `POST /callback/wechat_pay/{appId}`, JSON.
//!
//! A notification is verified over its raw body with WeChat Pay's public key (the configured
//! key ID in `Wechatpay-Serial`, a timestamp within 5 minutes, no probe), its `resource`
//! decrypted with the APIv3 key (AES-GCM, tag checked), then the transaction is checked: the
//! app's `mchid` and `appid`, an order of this app at this channel, the exact amount in fen.
//! `TRANSACTION.SUCCESS` with `trade_state: SUCCESS` applies the payment (`notice::apply_paid`).
//! The reply is 204 once that is on disk (also for a repeat); any failed check is a 4xx/5xx with
//! `{"code":"FAIL","message":"…"}` so that WeChat retries. Neither the body nor the decrypted
//! resource is ever logged.

use serde_json::{json, Value};

use super::{sign, WechatPay, NAME};
use crate::channel::notice::{apply_paid, Paid, Refused};
use crate::domain::Amount;
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
    if text("appid") != s.appid {
        return Err(Refused::check("appid is not the app's WeChat app id"));
    }
    let order_no = text("out_trade_no");
    if event != "TRANSACTION.SUCCESS" || text("trade_state") != "SUCCESS" {
        // Refund notices and other events are not payments.
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
