//! What unipay writes: JSON objects field by field in the SDK's order, the reply envelope, order
//! data, notification bodies, and the lines the command line prints.

use serde_json::{Map, Value};

use crate::domain::{App, EventInfo, Order, Refund};
use crate::sign::{self, SignType};
use crate::sys::{self, UtcOffset};

/// A JSON object written field by field, in the caller's order, nulls skipped.
pub struct JsonObject {
    buf: String,
    empty: bool,
}

impl Default for JsonObject {
    fn default() -> Self {
        JsonObject::new()
    }
}

impl JsonObject {
    pub fn new() -> JsonObject {
        let mut buf = String::with_capacity(256);
        buf.push('{');
        JsonObject { buf, empty: true }
    }

    fn key(&mut self, name: &str) {
        if !self.empty {
            self.buf.push(',');
        }
        self.empty = false;
        push_json_string(&mut self.buf, name);
        self.buf.push(':');
    }

    pub fn str(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.key(name);
            push_json_string(&mut self.buf, v);
        }
        self
    }

    /// A number already rendered as JSON number text.
    pub fn raw(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.key(name);
            self.buf.push_str(v);
        }
        self
    }

    pub fn bool(&mut self, name: &str, value: Option<bool>) -> &mut Self {
        self.raw(name, value.map(|b| if b { "true" } else { "false" }))
    }

    pub fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_string(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            c if (c as u32) < 0x20 => buf.push_str(&format!("\\u{:04x}", c as u32)),
            c => buf.push(c),
        }
    }
    buf.push('"');
}

/// The order as `PayOrderResult`: the fields of the query reply and of notifications, in the
/// SDK's declaration order, nulls omitted.
pub fn order_data(order: &Order, offset: UtcOffset) -> String {
    let time = |ms: Option<i64>| ms.map(|ms| sys::format_time(ms, offset));
    let mut o = JsonObject::new();
    o.str("bizOrderNo", Some(&order.biz_order_no))
        .str("orderNo", Some(&order.order_no))
        .str("outOrderNo", order.out_order_no.as_deref())
        .str("title", Some(&order.title))
        .str("description", order.description.as_deref())
        .bool("allocation", order.allocation)
        .bool("autoAllocation", order.auto_allocation)
        .str("channel", order.channel.as_deref())
        .str("method", order.method.as_deref())
        .str("otherMethod", order.other_method.as_deref())
        .str("limitPay", order.limit_pay.as_deref())
        .raw("amount", Some(&order.amount.to_yuan()))
        .raw(
            "refundableBalance",
            Some(&order.refundable_balance.to_yuan()),
        )
        .str("status", Some(order.status.as_str()))
        .str("refundStatus", order.refund_status.as_deref())
        .str("allocStatus", order.alloc_status.as_deref())
        .str("payTime", time(order.pay_time).as_deref())
        .str("closeTime", time(order.close_time).as_deref())
        .str("expiredTime", time(Some(order.expired_time)).as_deref())
        .str("attach", order.attach.as_deref())
        .str("errorMsg", order.error_msg.as_deref());
    o.finish()
}

/// The pay reply's data (`PayResult`).
pub fn pay_data(order: &Order, pay_body: Option<&str>) -> String {
    let mut o = JsonObject::new();
    o.str("bizOrderNo", Some(&order.biz_order_no))
        .str("orderNo", Some(&order.order_no))
        .str("status", Some(order.status.as_str()))
        .str("payBody", pay_body);
    o.finish()
}

/// The prePay reply's data (`GatewayPayUrlResult`).
pub fn gateway_data(url: &str) -> String {
    let mut o = JsonObject::new();
    o.str("url", Some(url));
    o.finish()
}

/// Who signs a reply: the app's sign type and secret.
pub struct Signer<'a> {
    pub sign_type: SignType,
    pub secret: &'a str,
}

/// The reply envelope `{code, msg, data, sign, resTime, traceId}`, signed when a signer is
/// known. `data` is raw JSON (an object) or `None` for `null`.
pub fn envelope(
    code: i32,
    msg: &str,
    data: Option<&str>,
    res_time: &str,
    trace_id: &str,
    signer: Option<&Signer>,
) -> Vec<u8> {
    let code_text = code.to_string();
    let sign = signer.map(|s| {
        let mut pairs = vec![("code", code_text.as_str()), ("msg", msg)];
        if let Some(d) = data {
            pairs.push(("data", d));
        }
        pairs.push(("resTime", res_time));
        pairs.push(("traceId", trace_id));
        sign::sign(s.sign_type, &pairs, s.secret)
    });
    let mut o = JsonObject::new();
    o.raw("code", Some(&code_text))
        .str("msg", Some(msg))
        .raw("data", Some(data.unwrap_or("null")))
        .str("sign", sign.as_deref())
        .str("resTime", Some(res_time))
        .str("traceId", Some(trace_id));
    o.finish().into_bytes()
}

/// A `data` object re-rendered with its keys sorted case-insensitively, as DaxPay renders a
/// map-valued field (notifications carry `data` as a map).
pub fn sorted_data(data_json: &str) -> Result<String, serde_json::Error> {
    let map: Map<String, Value> = serde_json::from_str(data_json)?;
    let mut entries: Vec<(&String, &Value)> = map.iter().filter(|(_, v)| !v.is_null()).collect();
    entries.sort_by(|a, b| {
        let (x, y) = (a.0.to_lowercase(), b.0.to_lowercase());
        x.cmp(&y).then_with(|| a.0.cmp(b.0))
    });
    let mut o = JsonObject::new();
    for (k, v) in entries {
        match v {
            Value::String(s) => o.str(k, Some(s)),
            other => o.raw(k, Some(&other.to_string())),
        };
    }
    Ok(o.finish())
}

/// The body of a merchant notification (spec §9):
/// `{noticeType?, mchNo, appId, code, msg, data, sign, resTime, traceId}`, signed over every
/// field but `sign`, with `data` (already sorted, see `sorted_data`) rendered as sent.
/// `noticeType` ("refund") is only in a refund notice to the app's own notify URL.
pub fn notice_body(
    notice_type: Option<&str>,
    mch_no: &str,
    app_id: &str,
    data: &str,
    res_time: &str,
    trace_id: &str,
    signer: &Signer,
) -> String {
    let mut pairs = vec![
        ("mchNo", mch_no),
        ("appId", app_id),
        ("code", "0"),
        ("msg", "success"),
        ("data", data),
        ("resTime", res_time),
        ("traceId", trace_id),
    ];
    if let Some(t) = notice_type {
        pairs.push(("noticeType", t));
    }
    let sign = sign::sign(signer.sign_type, &pairs, signer.secret);
    let mut o = JsonObject::new();
    o.str("noticeType", notice_type)
        .str("mchNo", Some(mch_no))
        .str("appId", Some(app_id))
        .raw("code", Some("0"))
        .str("msg", Some("success"))
        .raw("data", Some(data))
        .str("sign", Some(&sign))
        .str("resTime", Some(res_time))
        .str("traceId", Some(trace_id));
    o.finish()
}

/// An app as `unipay app create|list` print it, secret included (the operator asked for it).
pub fn app_line(app: &App) -> String {
    let mut o = JsonObject::new();
    o.str("mchNo", Some(&app.mch_no))
        .str("appId", Some(&app.app_id))
        .str("signType", Some(app.sign_type.as_str()))
        .str("secret", Some(&app.secret))
        .bool("reqSign", Some(app.req_sign))
        .raw("reqTimeout", Some(&app.req_timeout_secs.to_string()))
        .str("notifyUrl", app.notify_url.as_deref())
        .raw("orderTimeout", Some(&app.order_timeout_min.to_string()))
        .raw(
            "limitAmount",
            app.limit_amount.map(|a| a.to_yuan()).as_deref(),
        )
        .bool("enabled", Some(app.enabled));
    o.finish()
}

/// An order that needs an operator, as `unipay order attention` prints it.
pub fn attention_line(order: &Order, offset: UtcOffset) -> String {
    let mut o = JsonObject::new();
    o.str("orderNo", Some(&order.order_no))
        .str("bizOrderNo", Some(&order.biz_order_no))
        .str("appId", Some(&order.app_id))
        .str("status", Some(order.status.as_str()))
        .str("amount", Some(&order.amount.to_yuan_fixed()))
        .str("outOrderNo", order.out_order_no.as_deref())
        .str("attention", order.attention.as_deref())
        .str(
            "since",
            order
                .attention_at
                .map(|t| sys::format_time(t, offset))
                .as_deref(),
        );
    o.finish()
}

/// A notification event, as `unipay notify list` prints it.
pub fn event_line(ev: &EventInfo, offset: UtcOffset) -> String {
    let time = |ms: i64| sys::format_time(ms, offset);
    let mut o = JsonObject::new();
    o.raw("id", Some(&ev.id.to_string()))
        .str("orderNo", Some(&ev.order_no))
        .str("target", Some(&ev.target))
        .str("url", Some(&ev.url))
        .str("status", Some(&ev.status))
        .str("state", Some(&ev.state))
        .raw("attempts", Some(&ev.attempts.to_string()))
        .str(
            "nextAttemptAt",
            (ev.state == "pending")
                .then(|| time(ev.next_attempt_at))
                .as_deref(),
        )
        .str("lastError", ev.last_error.as_deref())
        .str("createdAt", Some(&time(ev.created_at)))
        .str("finishedAt", ev.finished_at.map(time).as_deref());
    o.finish()
}

/// The body `unipay call` sends: the operator's JSON object with `mchNo`, `appId` and
/// `reqTime` filled in when absent, any `sign` replaced by what `sign` computes over the raw
/// body (none when it gives `None`).
pub fn signed_request(
    json: &str,
    app: &App,
    req_time: &str,
    sign: impl FnOnce(&[u8]) -> Option<String>,
) -> Result<Vec<u8>, String> {
    let mut body = match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) => map,
        _ => return Err("JSON must be an object, e.g. '{\"bizOrderNo\":\"B1\"}'".into()),
    };
    body.entry("mchNo")
        .or_insert_with(|| app.mch_no.clone().into());
    body.entry("appId")
        .or_insert_with(|| app.app_id.clone().into());
    body.entry("reqTime").or_insert_with(|| req_time.into());
    body.remove("sign");
    let raw = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    if let Some(signature) = sign(&raw) {
        body.insert("sign".into(), signature.into());
    }
    serde_json::to_vec(&body).map_err(|e| e.to_string())
}

/// An app's channel settings as `unipay channel list` prints them: `view` is what the channel
/// shows of its settings (never a private key).
pub fn channel_line(app_id: &str, channel: &str, enabled: bool, view: &[(&str, String)]) -> String {
    let mut o = JsonObject::new();
    o.str("appId", Some(app_id))
        .str("channel", Some(channel))
        .bool("enabled", Some(enabled));
    for (name, value) in view {
        o.str(name, Some(value));
    }
    o.finish()
}

/// A refund as `RefundOrderResult` (the SDK's 15 fields, in its order, nulls left out): the
/// refund query's reply and the refund notice's data. `orderAmount` is whole yuan, truncated,
/// as the SDK's integer field reads it.
pub fn refund_order_data(r: &Refund, offset: UtcOffset) -> String {
    let mut o = JsonObject::new();
    o.str("orderNo", Some(&r.order_no))
        .str("outOrderNo", r.out_order_no.as_deref())
        .str("bizOrderNo", Some(&r.biz_order_no))
        .str("title", Some(&r.title))
        .str("refundNo", Some(&r.refund_no))
        .str("bizRefundNo", Some(&r.biz_refund_no))
        .str("outRefundNo", r.out_refund_no.as_deref())
        .str("channel", Some(&r.channel))
        .raw("orderAmount", Some(&(r.order_amount.0 / 100).to_string()))
        .raw("amount", Some(&r.amount.to_yuan()))
        .str("reason", r.reason.as_deref())
        .str(
            "finishTime",
            r.finish_time
                .map(|t| sys::format_time(t, offset))
                .as_deref(),
        )
        .str("status", Some(r.status.as_str()))
        .str("attach", r.attach.as_deref())
        .str("errorMsg", r.error_msg.as_deref());
    o.finish()
}

/// A refund as `unipay refund list` prints it.
pub fn refund_line(r: &Refund, offset: UtcOffset) -> String {
    let time = |ms: i64| sys::format_time(ms, offset);
    let mut o = JsonObject::new();
    o.str("refundNo", Some(&r.refund_no))
        .str("bizRefundNo", Some(&r.biz_refund_no))
        .str("orderNo", Some(&r.order_no))
        .str("appId", Some(&r.app_id))
        .str("channel", Some(&r.channel))
        .str("amount", Some(&r.amount.to_yuan_fixed()))
        .str("status", Some(r.status.as_str()))
        .str("outRefundNo", r.out_refund_no.as_deref())
        .str("reason", r.reason.as_deref())
        .str("errorMsg", r.error_msg.as_deref())
        .raw("sends", Some(&r.sends.to_string()))
        .str("createdAt", Some(&time(r.created_at)))
        .str("finishTime", r.finish_time.map(time).as_deref());
    o.finish()
}

/// The refund reply's data (`RefundResult`).
pub fn refund_data(r: &Refund) -> String {
    let mut o = JsonObject::new();
    o.str("refundNo", Some(&r.refund_no))
        .str("bizRefundNo", Some(&r.biz_refund_no))
        .str("status", Some(r.status.as_str()))
        .str("errorMsg", r.error_msg.as_deref());
    o.finish()
}

/// The body of `GET /healthz`: `{"status", "version", "db"}`.
pub fn health_body(status: &str, version: &str, db: &str) -> String {
    let mut o = JsonObject::new();
    o.str("status", Some(status))
        .str("version", Some(version))
        .str("db", Some(db));
    o.finish()
}

/// A sync reply's data (`PaySyncResult`, `RefundSyncResult`): `adjust` is always present.
pub fn sync_data(status: &str, adjust: bool) -> String {
    let mut o = JsonObject::new();
    o.str("orderStatus", Some(status))
        .bool("adjust", Some(adjust));
    o.finish()
}
