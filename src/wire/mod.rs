//! The DaxPay wire format: the only module that knows JSON field names.
//!
//! Requests are read in two passes over the parsed JSON object, as DaxPay's Spring server does:
//! first every known field of the endpoint is checked for its JSON type (a wrong type is 10505),
//! then for presence and length (10506). Unknown fields are ignored and `null` means absent.
//! The signature is computed over the known fields only, rendered by DaxPay's rules (see
//! `sign`). Replies and order data are written here too, field by field, in the order the SDK
//! declares them, so that the bytes sent are the bytes signed.

mod input;
mod output;

use serde_json::{Map, Value};

use crate::error::{msg_missing, msg_too_long, Error, MSG_CLIENT_IP_BAD};
use crate::sign;
use crate::sys::{self, UtcOffset};

pub use input::*;
pub use output::*;

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

/// `POST /unipay/refund` (DaxPay `RefundParam`).
pub const REFUND: &[Field] = &[
    f("bizRefundNo", Kind::Str(100), true, "商户退款号"),
    f("orderNo", Kind::Str(100), false, "支付订单号"),
    f("bizOrderNo", Kind::Str(100), false, "商户订单号"),
    f("outOrderNo", Kind::Str(150), false, "通道支付订单号"),
    f("amount", Kind::Decimal, true, "退款金额"),
    f("extraParam", Kind::Str(2048), false, "退款扩展参数"),
    f("reason", Kind::Str(150), false, "退款原因"),
    f("attach", Kind::Str(500), false, "商户扩展参数"),
    f("notifyUrl", Kind::Str(200), false, "异步通知地址"),
];

/// `POST /unipay/query/refundOrder` and `/unipay/sync/order/refund` (DaxPay `QueryRefundParam`,
/// `RefundSyncParam`).
pub const QUERY_REFUND: &[Field] = &[
    f("refundNo", Kind::Str(100), false, "退款号"),
    f("bizRefundNo", Kind::Str(100), false, "商户退款号"),
];

/// `POST /unipay/sync/order/pay` (DaxPay `PaySyncParam`): the query's fields.
pub const SYNC_PAY: &[Field] = QUERY;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::SignType;

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
            None,
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

    fn rv_refund(
        status: crate::domain::RefundStatus,
        error: Option<&str>,
    ) -> crate::domain::Refund {
        use crate::domain::{Amount, Refund};
        Refund {
            id: 1,
            refund_no: "DEV_R2025041017021470000002".into(),
            app_id: "M8207639754663343".into(),
            mch_no: "M1723635576766".into(),
            order_id: 1,
            order_no: "DEV_P2025041010494470000001".into(),
            biz_order_no: "SDK_1744253384000".into(),
            out_order_no: Some("2025041022001400001234567890".into()),
            channel: "ali_pay".into(),
            order_amount: Amount(100),
            title: "测试支付 - 退款".into(),
            biz_refund_no: "R12345".into(),
            amount: Amount(1),
            reason: None,
            attach: Some("{回调参数}".into()),
            notify_url: None,
            extra_param: None,
            client_ip: Some("127.0.0.1".into()),
            req_time: None,
            status,
            out_refund_no: None,
            finish_time: Some(sys::parse_time("2025-04-10 17:02:16", UtcOffset::CST).unwrap()),
            error_msg: error.map(str::to_string),
            sends: 1,
            last_send_at: None,
            unknown_sends: 0,
            checks: 0,
            next_check_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn md5_of_envelope(data: &str, res_time: &str) -> String {
        let body = envelope(
            0,
            "success",
            Some(data),
            res_time,
            "ABCDEF123456",
            Some(&Signer {
                sign_type: SignType::Md5,
                secret: "123456",
            }),
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["sign"].as_str().unwrap().to_string()
    }

    #[test]
    fn rv1_to_rv4_refund_replies_sign_in_the_sdks_field_order() {
        use crate::domain::RefundStatus;
        let ok = rv_refund(RefundStatus::Success, None);
        assert_eq!(
            md5_of_envelope(&refund_data(&ok), "2025-04-10 17:02:15"),
            "9849f361193cebd37eb7d5bfeb199eb8"
        );
        let mut refused = rv_refund(RefundStatus::Fail, Some("支付宝退款失败: 交易不存在"));
        refused.refund_no = "DEV_R2025041017021470000003".into();
        refused.biz_refund_no = "R12346".into();
        assert_eq!(
            md5_of_envelope(&refund_data(&refused), "2025-04-10 17:02:15"),
            "65b8e63eeadce497c7d3af7117c51223"
        );
        assert_eq!(
            md5_of_envelope(&sync_data("success", false), "2025-04-10 17:02:15"),
            "eecd9952abe3cfcd947dd4ba31cf5df8"
        );
        let data = refund_order_data(&ok, UtcOffset::CST);
        assert!(data.contains(r#""orderAmount":1,"amount":0.01"#), "{data}");
        assert!(
            !data.contains("clientIp") && !data.contains("orderId"),
            "{data}"
        );
        assert_eq!(
            md5_of_envelope(&data, "2025-04-10 17:02:20"),
            "c027d1ba49bc93e46fae191d9f253e76"
        );
    }

    #[test]
    fn rv5_rv6_refund_notices_with_and_without_notice_type() {
        use crate::domain::RefundStatus;
        let data = sorted_data(&refund_order_data(
            &rv_refund(RefundStatus::Success, None),
            UtcOffset::CST,
        ))
        .unwrap();
        let signer = |t| Signer {
            sign_type: t,
            secret: "123456",
        };
        let sign = |notice_type, t| {
            let body = notice_body(
                notice_type,
                "M1723635576766",
                "M8207639754663343",
                &data,
                "2025-04-10 17:02:17",
                "ABCDEF123456",
                &signer(t),
            );
            let v: Value = serde_json::from_str(&body).unwrap();
            v["sign"].as_str().unwrap().to_string()
        };
        assert_eq!(
            sign(None, SignType::Md5),
            "c89b43f49f317ac6fa240b9decb5831c"
        );
        assert_eq!(
            sign(None, SignType::HmacSha256),
            "eb6d2e19abbec4c41ad8d6ee6652b4179bf650f5b5b1738ac93e89cdc2d1d9d5"
        );
        assert_eq!(
            sign(Some("refund"), SignType::Md5),
            "12c8a7cf1dda23cce5c4b8ec46b577ec"
        );
        assert_eq!(
            sign(Some("refund"), SignType::Sm3),
            "3ef235d75f241c299b43df92bf125eb181b50f8e4182b2350d544d5136adadb5"
        );
    }
}
