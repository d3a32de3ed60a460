//! The DaxPay wire format: the only module that knows JSON field names.
//!
//! Requests are read in two passes over the parsed JSON object, as DaxPay's Spring server does:
//! first every known field of the endpoint is checked for its JSON type (a wrong type is 10505),
//! then for presence and length (10506). Unknown fields are ignored and `null` means absent.
//! The signature is computed over the known fields only, rendered by DaxPay's rules (see
//! `sign`). Replies and order data are written here too, field by field, in the order the SDK
//! declares them, so that the bytes sent are the bytes signed.

use serde_json::{Map, Value};

use crate::domain::{Amount, App, EventInfo, Order, OrderKey};
use crate::error::{
    msg_missing, msg_too_long, msg_unknown_method, Error, MSG_AMOUNT_MISSING, MSG_CLIENT_IP_BAD,
    MSG_ORDER_KEY_MISSING,
};
use crate::sign::{self, SignType};
use crate::sys::{self, UtcOffset};

/// The JSON type and limit of a request field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string of at most this many characters.
    Str(usize),
    /// A `Boolean` (absent when not sent).
    Bool,
    /// A primitive `boolean`: always signed, `false` when not sent.
    PrimBool,
    /// A decimal number (a numeric string is accepted too).
    Decimal,
    /// A `yyyy-MM-dd HH:mm:ss` string.
    Time,
}

/// One known field of an endpoint's parameter object.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// The Chinese name used in validation messages.
    pub label: &'static str,
}

const fn f(name: &'static str, kind: Kind, required: bool, label: &'static str) -> Field {
    Field {
        name,
        kind,
        required,
        label,
    }
}

/// The fields every signed endpoint has (DaxPay `DaxPayRequest` plus `mchNo`).
pub const COMMON: &[Field] = &[
    f("mchNo", Kind::Str(32), true, "商户号"),
    f("appId", Kind::Str(32), true, "应用号"),
    f("reqTime", Kind::Time, true, "请求时间"),
    f("sign", Kind::Str(64), false, "签名"),
    f("nonceStr", Kind::Str(32), false, "随机数"),
    f("clientIp", Kind::Str(64), false, "客户端ip"),
];

/// `POST /unipay/close` (DaxPay `PayCloseParam`).
pub const CLOSE: &[Field] = &[
    f("orderNo", Kind::Str(100), false, "支付订单号"),
    f("bizOrderNo", Kind::Str(100), false, "商户支付订单号"),
    f("outOrderNo", Kind::Str(150), false, "通道支付订单号"),
    f("useCancel", Kind::PrimBool, false, "使用撤销关闭订单"),
];

/// `POST /unipay/query/payOrder` (DaxPay `QueryPayParam`).
pub const QUERY: &[Field] = &[
    f("orderNo", Kind::Str(100), false, "支付订单号"),
    f("bizOrderNo", Kind::Str(100), false, "商户支付订单号"),
    f("outOrderNo", Kind::Str(150), false, "通道支付订单号"),
];

/// `POST /unipay/pay` (DaxPay `PayParam`).
pub const PAY: &[Field] = &[
    f("bizOrderNo", Kind::Str(100), true, "商户订单号"),
    f("title", Kind::Str(100), true, "支付标题"),
    f("description", Kind::Str(500), false, "支付描述"),
    f("allocation", Kind::Bool, false, "是否开启分账"),
    f("autoAllocation", Kind::Bool, false, "自动分账"),
    f("expiredTime", Kind::Time, false, "过期时间"),
    f("channel", Kind::Str(32), true, "支付通道编码"),
    f("method", Kind::Str(32), true, "支付方式"),
    f("otherMethod", Kind::Str(128), false, "其他支付方式"),
    f("limitPay", Kind::Str(128), false, "限制用户支付类型"),
    f("amount", Kind::Decimal, true, "支付金额"),
    f("openId", Kind::Str(128), false, "用户标识"),
    f("authCode", Kind::Str(128), false, "付款码"),
    f("terminalNo", Kind::Str(128), false, "终端设备编码"),
    f("extraParam", Kind::Str(2048), false, "支付扩展参数"),
    f("attach", Kind::Str(500), false, "商户扩展参数"),
    f("returnUrl", Kind::Str(200), false, "同步通知URL"),
    f("quitUrl", Kind::Str(200), false, "退出地址"),
    f("notifyUrl", Kind::Str(200), false, "异步通知地址"),
];

/// `POST /unipay/gateway/prePay` (DaxPay `GatewayPayParam`).
pub const PRE_PAY: &[Field] = &[
    f("bizOrderNo", Kind::Str(100), true, "商户订单号"),
    f("title", Kind::Str(100), true, "支付标题"),
    f("description", Kind::Str(500), false, "支付描述"),
    f("gatewayPayType", Kind::Str(32), false, "网关支付类型"),
    f("allocation", Kind::Bool, false, "是否开启分账"),
    f("autoAllocation", Kind::Bool, false, "自动分账"),
    f("limitPay", Kind::Str(128), false, "限制用户支付类型"),
    f("expiredTime", Kind::Time, false, "过期时间"),
    f("amount", Kind::Decimal, true, "支付金额"),
    f("attach", Kind::Str(500), false, "商户扩展参数"),
    f("returnUrl", Kind::Str(200), false, "同步通知URL"),
    f("notifyUrl", Kind::Str(200), false, "异步通知地址"),
];

/// The pay methods DaxPay knows (`PayMethodEnum`).
pub const METHODS: &[&str] = &["wap", "app", "web", "qrcode", "barcode", "jsapi", "other"];

/// A field value that passed the type check, rendered as the signature wants it.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Bool(bool),
    /// Plain decimal text with trailing zeros stripped.
    Decimal(String),
    /// The time text as sent, and its instant.
    Time(String, i64),
}

/// The known fields of one request, type-checked and validated.
#[derive(Debug, Clone)]
pub struct Params {
    values: Vec<(&'static str, Val)>,
    /// Whether a primitive boolean field (`useCancel`) was declared by the endpoint.
    prim_bools: Vec<&'static str>,
}

impl Params {
    /// Reads and validates `fields` of a request body. `offset` reads times.
    pub fn parse(body: &[u8], fields: &[&[Field]], offset: UtcOffset) -> Result<Params, Error> {
        let map = parse_object(body)?;
        Params::from_map(&map, fields, offset)
    }

    fn from_map(
        map: &Map<String, Value>,
        fields: &[&[Field]],
        offset: UtcOffset,
    ) -> Result<Params, Error> {
        let mut values = Vec::with_capacity(16);
        let mut prim_bools = Vec::new();
        // Pass 1: JSON types, as deserialisation would fail on them.
        for field in fields.iter().flat_map(|fs| fs.iter()) {
            if field.kind == Kind::PrimBool {
                prim_bools.push(field.name);
            }
            let Some(value) = map.get(field.name).filter(|v| !v.is_null()) else {
                continue;
            };
            let bad_type =
                |want: &str| Error::JsonParse(format!("field `{}` must be {want}", field.name));
            let val = match (field.kind, value) {
                (Kind::Str(_), Value::String(s)) => Val::Str(s.clone()),
                (Kind::Str(_), _) => return Err(bad_type("a string")),
                (Kind::Bool | Kind::PrimBool, Value::Bool(b)) => Val::Bool(*b),
                (Kind::Bool | Kind::PrimBool, Value::String(s)) if s == "true" || s == "false" => {
                    Val::Bool(s == "true")
                }
                (Kind::Bool | Kind::PrimBool, _) => return Err(bad_type("a boolean")),
                (Kind::Decimal, Value::Number(n)) => match sign::strip_decimal(&n.to_string()) {
                    Some(d) => Val::Decimal(d),
                    None => return Err(bad_type("a plain decimal number")),
                },
                (Kind::Decimal, Value::String(s)) => match sign::strip_decimal(s.trim()) {
                    Some(d) => Val::Decimal(d),
                    None => return Err(bad_type("a decimal number")),
                },
                (Kind::Decimal, _) => return Err(bad_type("a decimal number")),
                (Kind::Time, Value::String(s)) => match sys::parse_time(s, offset) {
                    Some(ms) => Val::Time(s.clone(), ms),
                    None => return Err(bad_type("a time as yyyy-MM-dd HH:mm:ss")),
                },
                (Kind::Time, _) => return Err(bad_type("a time as yyyy-MM-dd HH:mm:ss")),
            };
            values.push((field.name, val));
        }
        let params = Params { values, prim_bools };
        // Pass 2: presence and length, as bean validation would report them.
        let mut problems = Vec::new();
        for field in fields.iter().flat_map(|fs| fs.iter()) {
            match (params.get(field.name), field.kind) {
                (None, _) if field.required => problems.push(msg_missing(field.label)),
                (Some(Val::Str(s)), _) if field.required && s.trim().is_empty() => {
                    problems.push(msg_missing(field.label))
                }
                (Some(Val::Str(s)), Kind::Str(max)) if s.chars().count() > max => {
                    problems.push(msg_too_long(field.label, max))
                }
                _ => {}
            }
        }
        if let Some(ip) = params.str("clientIp") {
            if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
                problems.push(MSG_CLIENT_IP_BAD.to_string());
            }
        }
        if !problems.is_empty() {
            return Err(Error::Validation(problems.join(", ")));
        }
        Ok(params)
    }

    fn get(&self, name: &str) -> Option<&Val> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// A string field as sent (possibly empty), or `None` when absent.
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Val::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A string field that is present and not empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.str(name).filter(|s| !s.is_empty())
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.get(name) {
            Some(Val::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// A decimal field as plain text without trailing zeros.
    pub fn decimal(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Val::Decimal(d)) => Some(d),
            _ => None,
        }
    }

    /// A time field as milliseconds since the epoch.
    pub fn time_ms(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(Val::Time(_, ms)) => Some(*ms),
            _ => None,
        }
    }

    /// The `(key, value)` pairs the signature is computed over (`sign` included; the signer
    /// drops it).
    pub fn sign_pairs(&self) -> Vec<(&str, &str)> {
        let mut pairs: Vec<(&str, &str)> = self
            .values
            .iter()
            .map(|(name, v)| {
                let text: &str = match v {
                    Val::Str(s) | Val::Decimal(s) | Val::Time(s, _) => s,
                    Val::Bool(true) => "true",
                    Val::Bool(false) => "false",
                };
                (*name, text)
            })
            .collect();
        for name in &self.prim_bools {
            if self.get(name).is_none() {
                pairs.push((name, "false"));
            }
        }
        pairs
    }
}

/// Deepest nesting of arrays and objects a request body may have. No DaxPay request nests at
/// all; the bound keeps parsing (and dropping) a hostile body cheap and shallow.
pub const MAX_DEPTH: usize = 32;

/// Parses a body that must be one JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::JsonParse("Required request body is missing".into()));
    }
    if too_deep(body, MAX_DEPTH) {
        return Err(Error::JsonParse(format!(
            "the body nests deeper than {MAX_DEPTH} levels"
        )));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::JsonParse("the body must be a JSON object".into())),
        Err(e) => Err(Error::JsonParse(format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

/// The `appId` of a body, read loosely, so that an error reply can be signed even when the
/// request failed validation.
pub fn peek_app_id(body: &[u8]) -> Option<String> {
    if too_deep(body, MAX_DEPTH) {
        return None;
    }
    match serde_json::from_slice::<Value>(body).ok()? {
        Value::Object(mut map) => match map.remove("appId") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 32 => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the brackets of `body` (outside strings) nest deeper than `max`: one pass over the
/// bytes, before any parsing. Text that is not JSON may pass; the parser rejects it then.
pub fn too_deep(body: &[u8], max: usize) -> bool {
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

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
/// `{mchNo, appId, code, msg, data, sign, resTime, traceId}`, signed over every field but
/// `sign`, with `data` (already sorted, see `sorted_data`) rendered as sent.
pub fn notice_body(
    mch_no: &str,
    app_id: &str,
    data: &str,
    res_time: &str,
    trace_id: &str,
    signer: &Signer,
) -> String {
    let pairs = [
        ("mchNo", mch_no),
        ("appId", app_id),
        ("code", "0"),
        ("msg", "success"),
        ("data", data),
        ("resTime", res_time),
        ("traceId", trace_id),
    ];
    let sign = sign::sign(signer.sign_type, &pairs, signer.secret);
    let mut o = JsonObject::new();
    o.str("mchNo", Some(mch_no))
        .str("appId", Some(app_id))
        .raw("code", Some("0"))
        .str("msg", Some("success"))
        .raw("data", Some(data))
        .str("sign", Some(&sign))
        .str("resTime", Some(res_time))
        .str("traceId", Some(trace_id));
    o.finish()
}

/// The fields every signed request has (DaxPay `DaxPayRequest` plus `mchNo`), as sent. The
/// optional ones are `None` when absent or empty.
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    pub mch_no: &'a str,
    pub app_id: &'a str,
    pub sign: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    /// `reqTime` as milliseconds since the epoch.
    pub req_time: Option<i64>,
}

impl Params {
    /// The common fields of this request.
    pub fn common(&self) -> Common<'_> {
        Common {
            mch_no: self.str("mchNo").unwrap_or_default(),
            app_id: self.str("appId").unwrap_or_default(),
            sign: self.non_empty("sign"),
            nonce: self.non_empty("nonceStr"),
            client_ip: self.non_empty("clientIp"),
            req_time: self.time_ms("reqTime"),
        }
    }
}

/// The order a close or query names: the first non-empty of `orderNo`, `bizOrderNo`,
/// `outOrderNo` (10506 when all are empty or absent).
pub fn order_key(p: &Params) -> Result<OrderKey, Error> {
    OrderKey::pick(p.str("orderNo"), p.str("bizOrderNo"), p.str("outOrderNo"))
        .ok_or_else(|| Error::Validation(MSG_ORDER_KEY_MISSING.into()))
}

/// `POST /unipay/close`, typed.
#[derive(Debug, Clone)]
pub struct CloseInput {
    pub key: OrderKey,
    /// `useCancel`: cancel the trade at the channel instead of closing it (absent is false).
    pub use_cancel: bool,
}

pub fn close_input(p: &Params) -> Result<CloseInput, Error> {
    Ok(CloseInput {
        key: order_key(p)?,
        use_cancel: p.bool("useCancel").unwrap_or(false),
    })
}

/// The order fields `/unipay/pay` and `/unipay/gateway/prePay` share, typed.
#[derive(Debug, Clone)]
pub struct OrderInput {
    pub biz_order_no: String,
    pub title: String,
    pub description: Option<String>,
    pub allocation: Option<bool>,
    pub auto_allocation: Option<bool>,
    /// `expiredTime` in ms, when sent.
    pub expired_time: Option<i64>,
    pub amount: Amount,
    pub limit_pay: Option<String>,
    pub attach: Option<String>,
    /// `notifyUrl` when sent and not empty.
    pub notify_url: Option<String>,
    pub return_url: Option<String>,
}

/// Reads the order fields; 10506 for a missing or malformed amount.
pub fn order_input(p: &Params) -> Result<OrderInput, Error> {
    let owned = |name: &str| p.str(name).map(str::to_string);
    Ok(OrderInput {
        amount: amount(p)?,
        biz_order_no: owned("bizOrderNo").unwrap_or_default(),
        title: owned("title").unwrap_or_default(),
        description: owned("description"),
        allocation: p.bool("allocation"),
        auto_allocation: p.bool("autoAllocation"),
        expired_time: p.time_ms("expiredTime"),
        limit_pay: owned("limitPay"),
        attach: owned("attach"),
        notify_url: p.non_empty("notifyUrl").map(str::to_string),
        return_url: owned("returnUrl"),
    })
}

/// What `/unipay/pay` asks of the channel, typed (the order fields are `order_input`).
#[derive(Debug, Clone)]
pub struct PayInput {
    pub channel: String,
    /// One of `METHODS`.
    pub method: String,
    pub other_method: Option<String>,
    pub extra_param: Option<String>,
}

/// Reads the channel fields of a pay request; 10506 for a method DaxPay does not know.
pub fn pay_input(p: &Params) -> Result<PayInput, Error> {
    let method = p.str("method").unwrap_or_default();
    if !METHODS.contains(&method) {
        return Err(Error::Validation(msg_unknown_method(method)));
    }
    Ok(PayInput {
        channel: p.str("channel").unwrap_or_default().to_string(),
        method: method.to_string(),
        other_method: p.str("otherMethod").map(str::to_string),
        extra_param: p.str("extraParam").map(str::to_string),
    })
}

/// The validated `amount` of a pay request, in cents.
fn amount(params: &Params) -> Result<Amount, Error> {
    let text = params
        .decimal("amount")
        .ok_or_else(|| Error::Validation(MSG_AMOUNT_MISSING.into()))?;
    Amount::parse_yuan(text).map_err(|why| Error::Validation(why.into()))
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

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"{
  "bizOrderNo" : "SDK_1721807811589",
  "useCancel" : true,
  "mchNo" : "M1723635576766",
  "appId" : "M8207639754663343",
  "clientIp" : "127.0.0.1",
  "sign" : "71cb5cc7c575651ad0bef8fb3348aeb7",
  "reqTime" : "2025-04-10 17:02:14"
}"#;

    fn close(body: &str) -> Result<Params, Error> {
        Params::parse(body.as_bytes(), &[COMMON, CLOSE], UtcOffset::CST)
    }

    #[test]
    fn the_seed_request_verifies() {
        let p = close(SEED).unwrap();
        assert!(sign::verify(
            SignType::Md5,
            &p.sign_pairs(),
            "123456",
            p.str("sign").unwrap()
        ));
    }

    #[test]
    fn unknown_fields_are_not_signed_and_use_cancel_defaults_to_false() {
        let p = close(
            r#"{"mchNo":"M1","appId":"A1","reqTime":"2025-01-01 00:00:00","bizOrderNo":"SDK_1",
                "nonceStr":"abc","outOrderNo":"","extra":"x","orderNo":null}"#,
        )
        .unwrap();
        assert_eq!(
            sign::sign(SignType::Md5, &p.sign_pairs(), "123456"),
            "0389651145916bbf5994df86405ba5d6"
        );
    }

    #[test]
    fn wrong_types_are_json_errors_and_limits_are_validation_errors() {
        let base = r#""mchNo":"M1","appId":"A1","reqTime":"2025-01-01 00:00:00""#;
        let code = |extra: &str| close(&format!("{{{base}{extra}}}")).err().map(|e| e.code());
        assert_eq!(code(""), None);
        assert_eq!(code(r#","useCancel":"yes""#), Some(10505));
        assert_eq!(code(r#","orderNo":5"#), Some(10505));
        assert_eq!(
            code(&format!(r#","orderNo":"{}""#, "x".repeat(101))),
            Some(10506)
        );
        assert_eq!(code(r#","clientIp":"300.1.1.1""#), Some(10506));
        assert_eq!(
            close(r#"{"mchNo":"M1","appId":"A1","reqTime":"2025/01/01"}"#)
                .unwrap_err()
                .code(),
            10505
        );
        assert_eq!(
            close(r#"{"mchNo":"M1","reqTime":"2025-01-01 00:00:00"}"#)
                .unwrap_err()
                .code(),
            10506
        );
        assert_eq!(close("[1]").unwrap_err().code(), 10505);
        assert_eq!(close("").unwrap_err().code(), 10505);
        assert_eq!(close("{").unwrap_err().code(), 10505);
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let body = |inner: &str| format!(r#"{{"mchNo":"M1","x":{inner}}}"#);
        assert!(parse_object(body(&nest(31)).as_bytes()).is_ok());
        let err = parse_object(body(&nest(32)).as_bytes()).unwrap_err();
        assert_eq!(err.code(), 10505);
        assert!(err.message().contains("32"), "{}", err.message());
        // Far past serde_json's own limit, and unclosed: still a cheap 10505.
        let unclosed = "[".repeat(60_000);
        assert_eq!(parse_object(unclosed.as_bytes()).unwrap_err().code(), 10505);
        // Brackets inside strings (escaped quotes too) do not count.
        let text = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert!(parse_object(text.as_bytes()).is_ok());
        assert!(!too_deep(br#"{"a":"\\"}"#, 1));
        assert_eq!(peek_app_id(body(&nest(40)).as_bytes()), None);
    }

    #[test]
    fn amounts_are_signed_without_trailing_zeros() {
        let p = Params::parse(
            br#"{"amount":1.10,"title":"t"}"#,
            &[&[
                f("amount", Kind::Decimal, true, "a"),
                f("title", Kind::Str(9), true, "t"),
            ]],
            UtcOffset::CST,
        )
        .unwrap();
        assert_eq!(p.sign_pairs(), vec![("amount", "1.1"), ("title", "t")]);
        let p = Params::parse(
            br#"{"amount":"2.00"}"#,
            &[&[f("amount", Kind::Decimal, true, "a")]],
            UtcOffset::CST,
        )
        .unwrap();
        assert_eq!(p.decimal("amount"), Some("2"));
    }

    #[test]
    fn envelope_is_signed_over_its_fields() {
        let body = envelope(
            0,
            "success",
            None,
            "2025-04-10 17:09:08",
            "gV9vddq9TkQn",
            Some(&Signer {
                sign_type: SignType::Md5,
                secret: "123456",
            }),
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["sign"], "41dde6c64bba81938d0b34c3b73aa280");
        assert_eq!(v["data"], Value::Null);
        let unsigned = envelope(20052, "验签失败", None, "2025-04-10 17:09:08", "x", None);
        let v: Value = serde_json::from_slice(&unsigned).unwrap();
        assert!(v.get("sign").is_none());
        assert_eq!(v["resTime"], "2025-04-10 17:09:08");
    }

    #[test]
    fn notice_data_is_sorted_case_insensitively_and_signed() {
        let data = sorted_data(
            r#"{"orderNo":"P1","amount":0.01,"allocStatus":"x","allocation":true,"Zed":null}"#,
        )
        .unwrap();
        assert_eq!(
            data,
            r#"{"allocation":true,"allocStatus":"x","amount":0.01,"orderNo":"P1"}"#
        );
        let signer = Signer {
            sign_type: SignType::HmacSha256,
            secret: "123456",
        };
        let body = notice_body(
            "M1",
            "A1",
            &data,
            "2025-04-10 17:02:15",
            "ABCDEF123456",
            &signer,
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        let pairs = [
            ("appId", "A1"),
            ("code", "0"),
            ("data", data.as_str()),
            ("mchNo", "M1"),
            ("msg", "success"),
            ("resTime", "2025-04-10 17:02:15"),
            ("traceId", "ABCDEF123456"),
        ];
        assert!(sign::verify(
            SignType::HmacSha256,
            &pairs,
            "123456",
            v["sign"].as_str().unwrap()
        ));
        assert_eq!(v["data"]["amount"].to_string(), "0.01");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut o = JsonObject::new();
        o.str("a", Some("x\"y\\z\n\u{1}<"))
            .str("b", None)
            .bool("c", Some(true));
        let s = o.finish();
        assert_eq!(s, r#"{"a":"x\"y\\z\n\u0001<","c":true}"#);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["a"], "x\"y\\z\n\u{1}<");
    }
}
