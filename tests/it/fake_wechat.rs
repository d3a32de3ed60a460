//! A fake WeChat Pay API v3 (直连商户) for the integration tests, written from `channels.md`
//! Part B and E3.
//!
//! What it checks on every request: `Accept` and `User-Agent` (400 `INVALID_REQUEST`), then the
//! `Authorization: WECHATPAY2-SHA256-RSA2048 mchid=…,nonce_str=…,signature=…,timestamp=…,
//! serial_no=…` header (fields in any order) with the merchant's public key over
//! `METHOD\nURL\nTIMESTAMP\nNONCE\nBODY\n` — the exact path and query, the exact body bytes —
//! and the `mchid` and `serial_no` configured here, a timestamp within 5 minutes (401
//! `SIGN_ERROR` otherwise, counted by `bad_signatures`). A POST body must be a JSON object
//! without `null` (400 `PARAM_ERROR`), with the `mchid` (and `appid`) configured here.
//!
//! What it does: native/jsapi/h5 prepay (B4) records the order (`NOTPAY` at once; the same
//! request again gets the same answer), close and query follow B6, and every reply — a 204 and
//! the errors too — is signed with the platform key over `TIMESTAMP\nNONCE\nBODY\n` and carries
//! `Wechatpay-Serial` (the public key ID) and `Wechatpay-Signature-Type`. A `Mode` per operation
//! ("native", "jsapi", "h5", "close", "query", "refund", "query_refund") changes how its
//! verified calls are answered.
//! Buyer actions: `pay` (then a `TRANSACTION.SUCCESS` notice, AES-256-GCM with the APIv3 key,
//! signed, retried on a schedule until a 200/204), `pay_silently`, `close_trade`,
//! `set_trade_state`.
//!
//! Refunds (refund-sync.md §9.3, §9.4): `POST /v3/refund/domestic/refunds` books a refund of a
//! paid trade (`trade_state` becomes `REFUND`) with the status `set_refund_result` chose
//! (`PROCESSING` unless told otherwise); one `out_refund_no` refunds at most once (a repeat with
//! the same trade and amount answers the same refund, another one is `INVALID_REQUEST`); the
//! refunds of a trade that are not `CLOSED` add up to at most its amount; `reason` is
//! `string[1,80]` counted in UTF-8 bytes. `GET /v3/refund/domestic/refunds/{out_refund_no}`
//! answers the refund or `404 RESOURCE_NOT_EXISTS`. `settle_refund` (or `settle_refund_as`)
//! finishes a refund; a refund that reaches `SUCCESS`, `CLOSED` or `ABNORMAL` is notified to its
//! `notify_url` (`REFUND.*`, the resource `original_type: refund`, AAD `refund`), retried like
//! payment notices; their attempts are kept under the `out_refund_no`.
//!
//! unipay is configured with `merchant-private-key.pem`, `SERIAL_NO`, `APIV3_KEY`,
//! `platform-public-key.pem` and `KEY_ID`: `channel_set_args` gives the `channel set` flags.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use unipay::channel::keys::{aes_gcm_seal, b64, PrivateKey, PublicKey};
use unipay::form;
use unipay::sys::{self, Clock, OsRandom, SystemClock, UtcOffset};

pub const MCHID: &str = "1900000001";
pub const APPID: &str = "wx0000000000000001";
/// The merchant certificate's serial, which unipay sends as `serial_no`.
pub const SERIAL_NO: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
/// The ID of WeChat Pay's public key, sent as `Wechatpay-Serial`.
pub const KEY_ID: &str = "PUB_KEY_ID_0114232134912410000000000000";
pub const APIV3_KEY: &str = "0123456789abcdef0123456789ABCDEF";
pub const SIGNATURE_TYPE: &str = "WECHATPAY2-SHA256-RSA2048";
/// The buyer of orders without `payer.openid`.
pub const PAYER_OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

/// How the fake answers the verified calls of one operation (invalid requests always get their
/// error). Set with `FakeWechat::set_mode`; applies until changed. `Hang` and the signature
/// modes apply the operation first; the status modes do not apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// No answer until the fake is dropped (only this request's thread blocks; then the
    /// request is dropped, which tiny_http answers with an empty 500).
    Hang,
    /// No `Wechatpay-*` signature headers.
    Unsigned,
    /// A signature over other bytes.
    Forged,
    /// A valid signature prefixed with `WECHATPAY/SIGNTEST/`.
    Probe,
    /// Correctly signed with a timestamp 10 minutes old.
    Stale,
    /// Correctly signed, `Wechatpay-Serial` another key ID.
    WrongSerial,
    /// A signed error answer `{"code","message"}` with this status.
    Status(u16, String, String),
    /// The same without signature headers.
    UnsignedStatus(u16, String, String),
    /// A signed `500 SYSTEM_ERROR`.
    ServerError,
}

/// The fake server; dropping it stops the server, hanging requests and notifiers.
pub struct FakeWechat {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    shared: Arc<Shared>,
    server: Arc<tiny_http::Server>,
}

struct Shared {
    merchant_public: PublicKey,
    platform_key: PrivateKey,
    state: Mutex<State>,
    stopped: Mutex<bool>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    orders: HashMap<String, Order>,
    modes: HashMap<String, Mode>,
    calls: HashMap<String, usize>,
    last: HashMap<String, Value>,
    bad_signatures: usize,
    notices: HashMap<String, Vec<(u16, String)>>,
    schedule: Vec<Duration>,
    refunds: HashMap<String, Refunded>,
    /// The status a new refund gets (`None`: `PROCESSING`).
    refund_result: Option<&'static str>,
}

/// A refund in the fake's book.
struct Refunded {
    out_trade_no: String,
    refund_id: String,
    transaction_id: String,
    refund: i64,
    total: i64,
    notify_url: Option<String>,
    status: &'static str,
    created_ms: i64,
    success_ms: Option<i64>,
}

/// A prepaid order and its trade.
struct Order {
    /// The prepay request as received.
    request: Value,
    /// The prepay answer, repeated for the same request.
    answer: String,
    trade_type: &'static str,
    state: &'static str,
    transaction_id: Option<String>,
    success_ms: Option<i64>,
}

/// A reply before it is signed: the status and the exact body (empty for a 204).
type Answer = (u16, String);

fn reply(status: u16, body: &str) -> Answer {
    (status, body.to_string())
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    (
        status,
        json!({ "code": code, "message": message }).to_string(),
    )
}

/// `pointer` (`/amount/total`) is missing from `source` (`body`, `query`, `uri_template`).
fn param_error(source: &str, pointer: &str) -> Answer {
    let field = pointer.rsplit('/').next().unwrap_or(pointer);
    let message = format!("输入源“/{source}{pointer}”映射到字段“{field}”必填性规则校验失败");
    error(400, "PARAM_ERROR", &format!("{message}，此字段为必填项"))
}

/// The error for a missing or foreign `mchid` in a close body or a query.
fn mchid_error(mchid: Option<&str>, source: &str) -> Option<Answer> {
    match mchid {
        Some(MCHID) => None,
        Some(_) => Some(error(400, "PARAM_ERROR", "mchid与请求头中的商户号不一致")),
        None => Some(param_error(source, "/mchid")),
    }
}

static SEQ: AtomicU64 = AtomicU64::new(1);

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

fn random(len: usize) -> String {
    sys::random_alnum(&OsRandom, len)
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/wechat");

pub fn fixture_path(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

fn fixture(name: &str) -> String {
    let path = fixture_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn has_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(has_null),
        Value::Object(o) => o.values().any(has_null),
        _ => false,
    }
}

/// The fields of an `Authorization` header, or `None` when it is not one.
fn parse_authorization(header: &str) -> Option<HashMap<String, String>> {
    let rest = header.strip_prefix(SIGNATURE_TYPE)?.strip_prefix(' ')?;
    let mut fields = HashMap::new();
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        let v = v.strip_prefix('"')?.strip_suffix('"')?;
        fields.insert(k.to_string(), v.to_string());
    }
    Some(fields)
}

const REFUNDS: &str = "/v3/refund/domestic/refunds";

/// The operation of a request and the (decoded) order or refund number in its path.
fn route(method: &str, path: &str) -> Option<(&'static str, String)> {
    if let Some(rest) = path.strip_prefix(REFUNDS) {
        return match (method, rest) {
            ("POST", "") => Some(("refund", String::new())),
            ("GET", _) => Some(("query_refund", form::decode(rest.strip_prefix('/')?, false))),
            _ => None,
        };
    }
    let by_no = path.strip_prefix("/v3/pay/transactions/out-trade-no/");
    let op = match (method, path.strip_prefix("/v3/pay/transactions/")?) {
        ("POST", "native") => "native",
        ("POST", "jsapi") => "jsapi",
        ("POST", "h5") => "h5",
        ("POST", _) => {
            let no = by_no?.strip_suffix("/close")?;
            return Some(("close", form::decode(no, false)));
        }
        ("GET", _) => return Some(("query", form::decode(by_no?, false))),
        _ => return None,
    };
    Some((op, String::new()))
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps `d`, or less when the fake stops; true when stopped.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        while !*stopped {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let waited = self.wake.wait_timeout(stopped, deadline - now);
            stopped = waited.unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    /// The signature headers of a reply in this mode (a notice: `Normal`) with this body.
    fn sign(&self, body: &[u8], mode: &Mode) -> Vec<(String, String)> {
        if matches!(mode, Mode::Unsigned | Mode::UnsignedStatus(..)) {
            return Vec::new();
        }
        let skew = if *mode == Mode::Stale { 600 } else { 0 };
        let ts = (now_ms() / 1000 - skew).to_string();
        let nonce = random(32);
        let mut message = format!("{ts}\n{nonce}\n").into_bytes();
        message.extend_from_slice(body);
        message.push(b'\n');
        if *mode == Mode::Forged {
            message.extend_from_slice(b"forged");
        }
        let mut signature = self.platform_key.sign_b64(&message);
        if *mode == Mode::Probe {
            signature = format!("WECHATPAY/SIGNTEST/{signature}");
        }
        let serial = match mode {
            Mode::WrongSerial => "PUB_KEY_ID_0000000000000000000000000000",
            _ => KEY_ID,
        };
        let headers = [
            ("Wechatpay-Timestamp", ts.as_str()),
            ("Wechatpay-Nonce", &nonce),
            ("Wechatpay-Signature", &signature),
            ("Wechatpay-Serial", serial),
            ("Wechatpay-Signature-Type", SIGNATURE_TYPE),
        ];
        headers
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec()
    }

    fn handle(self: &Arc<Self>, mut req: tiny_http::Request) {
        let mut raw = Vec::new();
        let _ = req.as_reader().read_to_end(&mut raw);
        let (method, url) = (req.method().as_str().to_string(), req.url().to_string());
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let routed = route(&method, path);
        if let Some((op, _)) = &routed {
            let mut st = self.state();
            *st.calls.entry(op.to_string()).or_default() += 1;
            let body = match method.as_str() {
                "GET" => json!(query),
                _ => serde_json::from_slice(&raw).unwrap_or(Value::Null),
            };
            st.last.insert(op.to_string(), body);
        }
        let (answer, mode) = match (self.check(&req, &raw), routed) {
            (Err(answer), _) => (answer, Mode::Normal),
            (Ok(()), None) => (error(404, "NOT_FOUND", "无效的请求路径"), Mode::Normal),
            (Ok(()), Some((op, no))) => {
                let mode = self.state().modes.get(op).cloned();
                let mode = mode.unwrap_or(Mode::Normal);
                let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                let answer = match (&mode, op) {
                    (Mode::Status(s, code, msg) | Mode::UnsignedStatus(s, code, msg), _) => {
                        error(*s, code, msg)
                    }
                    (Mode::ServerError, _) => error(500, "SYSTEM_ERROR", "系统错误"),
                    (_, "close") => self.close(&no, &body),
                    (_, "query") => self.query(&no, query),
                    (_, "refund") => self.refund(&body),
                    (_, "query_refund") => self.query_refund(&no),
                    _ => self.prepay(op, body),
                };
                (answer, mode)
            }
        };
        if mode == Mode::Hang {
            while !self.sleep(Duration::from_secs(3600)) {}
            return; // dropped unanswered only now
        }
        let (status, text) = answer;
        let mut headers = self.sign(text.as_bytes(), &mode);
        if !text.is_empty() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        let resp = tiny_http::Response::from_string(text);
        let mut resp = resp.with_status_code(status);
        for (k, v) in headers {
            resp.add_header(tiny_http::Header::from_bytes(k, v).unwrap());
        }
        let _ = req.respond(resp);
    }

    /// The transport and signature checks; `Err` is the answer.
    fn check(&self, req: &tiny_http::Request, raw: &[u8]) -> Result<(), Answer> {
        let header = |name: &str| {
            let mut all = req.headers().iter();
            let found = all.find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name));
            found
                .map(|h| h.value.as_str().trim())
                .filter(|v| !v.is_empty())
        };
        if header("Accept").is_none() || header("User-Agent").is_none() {
            let message = "Http头缺少Accept或User-Agent";
            return Err(error(400, "INVALID_REQUEST", message));
        }
        let method = req.method().as_str();
        if let Err(why) = self.verify(method, req.url(), header("Authorization"), raw) {
            self.state().bad_signatures += 1;
            return Err(error(401, "SIGN_ERROR", &format!("签名错误: {why}")));
        }
        let body = serde_json::from_slice::<Value>(raw);
        if method == "POST" && !body.is_ok_and(|v| v.is_object() && !has_null(&v)) {
            return Err(error(400, "PARAM_ERROR", "请求体须为JSON对象，且不含null"));
        }
        Ok(())
    }

    fn verify(
        &self,
        method: &str,
        url: &str,
        auth: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        let fields = parse_authorization(auth.ok_or("no Authorization")?)
            .ok_or("Authorization is not `WECHATPAY2-SHA256-RSA2048 k=\"v\",…`")?;
        let field = |k: &str| fields.get(k).map(String::as_str).ok_or(format!("no {k}"));
        let (mchid, serial, ts) = (field("mchid")?, field("serial_no")?, field("timestamp")?);
        let (nonce, signature) = (field("nonce_str")?, field("signature")?);
        if mchid != MCHID {
            return Err(format!("mchid {mchid} is not {MCHID}"));
        }
        if !serial.eq_ignore_ascii_case(SERIAL_NO) {
            return Err(format!(
                "serial_no {serial} is not the merchant certificate's"
            ));
        }
        let secs: i64 = ts.parse().map_err(|_| "timestamp is not a number")?;
        if (now_ms() / 1000 - secs).abs() >= 300 {
            return Err("timestamp is more than 5 minutes off".into());
        }
        let mut message = format!("{method}\n{url}\n{ts}\n{nonce}\n").into_bytes();
        message.extend_from_slice(body);
        message.push(b'\n');
        match self.merchant_public.verify_b64(&message, signature) {
            true => Ok(()),
            false => Err("the signature does not verify".into()),
        }
    }

    fn prepay(&self, op: &str, body: Value) -> Answer {
        let text = |p: &str| {
            body.pointer(p)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let mut required = vec!["/appid", "/mchid", "/description", "/out_trade_no"];
        required.push("/notify_url");
        match op {
            "jsapi" => required.push("/payer/openid"),
            "h5" => required.push("/scene_info/payer_client_ip"),
            _ => {}
        }
        if let Some(missing) = required.iter().find(|p| text(p).is_none()) {
            return param_error("body", missing);
        }
        let no = text("/out_trade_no").unwrap_or_default().to_string();
        let total = body.pointer("/amount/total").and_then(Value::as_i64);
        let expire = body
            .get("time_expire")
            .map(|t| t.as_str().and_then(sys::parse_rfc3339));
        if text("/mchid") != Some(MCHID) || text("/appid") != Some(APPID) {
            return error(400, "PARAM_ERROR", "appid和mchid不匹配");
        } else if total.is_none_or(|t| t <= 0) {
            return param_error("body", "/amount/total");
        } else if expire == Some(None) {
            return error(400, "PARAM_ERROR", "time_expire时间格式错误");
        } else if !(6..=32).contains(&no.len()) {
            return error(400, "PARAM_ERROR", "out_trade_no长度须为6至32位");
        }
        let mut st = self.state();
        if let Some(o) = st.orders.get(&no) {
            return match o.state {
                "SUCCESS" | "REFUND" => error(400, "ORDERPAID", "该订单已支付"),
                "CLOSED" => error(400, "ORDER_CLOSED", "该订单已关闭"),
                _ if o.request != body => error(400, "INVALID_REQUEST", "201 商户订单号重复"),
                _ => reply(200, &o.answer),
            };
        }
        let stamp = sys::format_compact(now_ms(), UtcOffset::CST);
        let prepay_id = format!("wx{stamp}{}", random(20));
        let code_url = format!("weixin://wxpay/bizpayurl?pr={}", random(7));
        let h5 = "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb";
        let h5_url = format!("{h5}?prepay_id={prepay_id}&package={}", random(10));
        let (answer, trade_type) = match op {
            "native" => (json!({ "code_url": code_url }), "NATIVE"),
            "jsapi" => (json!({ "prepay_id": prepay_id }), "JSAPI"),
            _ => (json!({ "h5_url": h5_url }), "MWEB"),
        };
        let order = Order {
            request: body,
            answer: answer.to_string(),
            trade_type,
            state: "NOTPAY",
            transaction_id: None,
            success_ms: None,
        };
        let answer = reply(200, &order.answer);
        st.orders.insert(no, order);
        answer
    }

    fn close(&self, no: &str, body: &Value) -> Answer {
        if let Some(e) = mchid_error(body["mchid"].as_str(), "uri_template") {
            return e;
        }
        let mut st = self.state();
        let Some(o) = st.orders.get_mut(no) else {
            return error(404, "ORDER_NOT_EXIST", "订单不存在");
        };
        match o.state {
            "SUCCESS" | "REFUND" => error(400, "ORDERPAID", "订单已支付"),
            "CLOSED" => error(400, "ORDER_CLOSED", "订单已关闭"),
            _ => {
                o.state = "CLOSED";
                reply(204, "")
            }
        }
    }

    fn query(&self, no: &str, query: &str) -> Answer {
        let params = form::parse(query);
        if let Some(e) = mchid_error(form::get(&params, "mchid"), "query") {
            return e;
        }
        match self.state().orders.get(no) {
            Some(o) => reply(200, &transaction(no, o).to_string()),
            None => error(404, "ORDER_NOT_EXIST", "订单不存在"),
        }
    }

    /// `POST /v3/refund/domestic/refunds`.
    fn refund(self: &Arc<Self>, body: &Value) -> Answer {
        let text = |p: &str| {
            body.pointer(p)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let int = |p: &str| body.pointer(p).and_then(Value::as_i64).filter(|v| *v > 0);
        for p in ["/out_trade_no", "/out_refund_no", "/amount/currency"] {
            if text(p).is_none() {
                return param_error("body", p);
            }
        }
        for p in ["/amount/refund", "/amount/total"] {
            if int(p).is_none() {
                return param_error("body", p);
            }
        }
        let (trade, no) = (
            text("/out_trade_no").unwrap(),
            text("/out_refund_no").unwrap(),
        );
        let (refund, total) = (
            int("/amount/refund").unwrap(),
            int("/amount/total").unwrap(),
        );
        if text("/amount/currency") != Some("CNY") {
            return error(400, "PARAM_ERROR", "币种不正确");
        }
        match body.get("reason").map(|r| r.as_str().map(str::len)) {
            None => {}
            Some(Some(1..=80)) => {}
            Some(_) => return error(400, "PARAM_ERROR", "reason长度须为1至80字节"),
        }
        if body.get("notify_url").is_some() && text("/notify_url").is_none() {
            return param_error("body", "/notify_url");
        }
        let mut st = self.state();
        if let Some(r) = st.refunds.get(no) {
            if r.out_trade_no != trade || r.refund != refund || r.total != total {
                return error(400, "INVALID_REQUEST", "同一退款单号的请求参数不一致");
            }
            let tx = st.orders.get(trade).and_then(|o| o.transaction_id.clone());
            return reply(200, &refund_object(no, r, tx).to_string());
        }
        let refunded: i64 = st
            .refunds
            .values()
            .filter(|r| r.out_trade_no == trade && r.status != "CLOSED")
            .map(|r| r.refund)
            .sum();
        let result = st.refund_result.unwrap_or("PROCESSING");
        let Some(o) = st.orders.get_mut(trade) else {
            return error(404, "RESOURCE_NOT_EXISTS", "订单不存在");
        };
        if !matches!(o.state, "SUCCESS" | "REFUND") {
            return error(400, "INVALID_REQUEST", "订单未支付, 不能退款");
        }
        if o.request["amount"]["total"].as_i64() != Some(total) {
            return error(400, "INVALID_REQUEST", "订单金额与原订单不一致");
        }
        if refunded + refund > total {
            return error(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额");
        }
        o.state = "REFUND";
        let transaction_id = o.transaction_id.clone().unwrap_or_default();
        let now = now_ms();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst) % 1000;
        let r = Refunded {
            out_trade_no: trade.to_string(),
            refund_id: format!(
                "50300{seq:03}{}{:08}",
                &sys::format_compact(now, UtcOffset::CST)[..8],
                now as u64 % 100_000_000
            ),
            transaction_id,
            refund,
            total,
            notify_url: text("/notify_url").map(str::to_string),
            status: result,
            created_ms: now,
            success_ms: (result == "SUCCESS").then_some(now),
        };
        let answer = refund_object(no, &r, Some(r.transaction_id.clone())).to_string();
        let notice = (result != "PROCESSING").then(|| refund_notice_of(no, &r));
        st.refunds.insert(no.to_string(), r);
        drop(st);
        if let Some(notice) = notice {
            self.notify_refund(no, notice);
        }
        reply(200, &answer)
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
    fn query_refund(&self, no: &str) -> Answer {
        let st = self.state();
        match st.refunds.get(no) {
            Some(r) => {
                let tx = Some(r.transaction_id.clone());
                reply(200, &refund_object(no, r, tx).to_string())
            }
            None => error(404, "RESOURCE_NOT_EXISTS", "退款单不存在"),
        }
    }

    /// Sends a refund's `(event_type, resource)` to its `notify_url`, if it has one.
    fn notify_refund(self: &Arc<Self>, no: &str, (event, resource): (&'static str, Value)) {
        let url = self
            .state()
            .refunds
            .get(no)
            .and_then(|r| r.notify_url.clone());
        if let Some(url) = url {
            let body = self.notice_body(event, &resource, "refund");
            self.spawn_notifier(no.to_string(), url, body);
        }
    }

    /// A notice body: `resource` encrypted (AAD `aad`, `original_type` `aad`).
    fn notice_body(&self, event: &str, resource: &Value, aad: &str) -> Vec<u8> {
        let id = format!("{}-{}-{}", random(8), random(4), random(12)).to_lowercase();
        let summary = match event {
            "TRANSACTION.SUCCESS" => "支付成功",
            "REFUND.SUCCESS" => "退款成功",
            "REFUND.CLOSED" => "退款关闭",
            _ => "退款异常",
        };
        let body = json!({
            "id": id, "create_time": sys::format_rfc3339(now_ms(), UtcOffset::CST),
            "resource_type": "encrypt-resource", "event_type": event,
            "summary": summary,
            "resource": seal(&resource.to_string(), aad, aad),
        });
        body.to_string().into_bytes()
    }

    /// Sends `body` to `url` on the schedule until a 200/204, recording every attempt under
    /// `key` (the `out_trade_no` of a payment, the `out_refund_no` of a refund).
    fn spawn_notifier(self: &Arc<Self>, key: String, url: String, body: Vec<u8>) {
        let me = self.clone();
        let waits = self.state().schedule.clone();
        thread::spawn(move || {
            for attempt in 0..=waits.len() {
                if me.is_stopped() || (attempt > 0 && me.sleep(waits[attempt - 1])) {
                    return;
                }
                let headers = me.sign(&body, &Mode::Normal);
                let (status, text) = FakeWechat::post_notification(&url, &headers, &body);
                let mut st = me.state();
                st.notices
                    .entry(key.clone())
                    .or_default()
                    .push((status, text));
                if status == 200 || status == 204 {
                    return;
                }
            }
        });
    }
}

/// `plain` encrypted with the APIv3 key (AES-256-GCM, a random 12-character nonce, `aad` as
/// associated data), as a notice's `resource`.
fn seal(plain: &str, aad: &str, original_type: &str) -> Value {
    let nonce = random(12);
    let (key, iv) = (APIV3_KEY.as_bytes(), nonce.as_bytes());
    let sealed = aes_gcm_seal(key, iv, aad.as_bytes(), plain.as_bytes()).unwrap();
    json!({
        "original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": b64(&sealed), "associated_data": aad, "nonce": nonce,
    })
}

/// A refund as the refund and its query answer it (`wechatpay-go` `refunddomestic.Refund`).
fn refund_object(no: &str, r: &Refunded, transaction_id: Option<String>) -> Value {
    let mut v = json!({
        "refund_id": r.refund_id, "out_refund_no": no,
        "transaction_id": transaction_id.unwrap_or_default(), "out_trade_no": r.out_trade_no,
        "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
        "create_time": sys::format_rfc3339(r.created_ms, UtcOffset::CST),
        "status": r.status, "funds_account": "AVAILABLE",
        "amount": {
            "total": r.total, "refund": r.refund, "payer_total": r.total, "payer_refund": r.refund,
            "settlement_refund": r.refund, "settlement_total": r.total, "discount_refund": 0,
            "currency": "CNY", "refund_fee": 0,
        },
        "promotion_detail": [],
    });
    if let Some(ms) = r.success_ms {
        v["success_time"] = json!(sys::format_rfc3339(ms, UtcOffset::CST));
    }
    v
}

/// The `(event_type, decrypted resource)` of a notice about a refund in a final state.
fn refund_notice_of(no: &str, r: &Refunded) -> (&'static str, Value) {
    let event = match r.status {
        "SUCCESS" => "REFUND.SUCCESS",
        "CLOSED" => "REFUND.CLOSED",
        "ABNORMAL" => "REFUND.ABNORMAL",
        other => panic!("no notice for a {other} refund ({no})"),
    };
    let mut v = json!({
        "mchid": MCHID, "out_trade_no": r.out_trade_no, "transaction_id": r.transaction_id,
        "out_refund_no": no, "refund_id": r.refund_id, "refund_status": r.status,
        "user_received_account": "支付用户零钱",
        "amount": { "total": r.total, "refund": r.refund, "payer_total": r.total,
                    "payer_refund": r.refund },
    });
    if let Some(ms) = r.success_ms {
        v["success_time"] = json!(sys::format_rfc3339(ms, UtcOffset::CST));
    }
    (event, v)
}

/// The Transaction of an order, as query answers it and notices carry it.
fn transaction(no: &str, o: &Order) -> Value {
    let req = &o.request;
    let total = req["amount"]["total"].as_i64().unwrap_or(0);
    let desc = match o.state {
        "SUCCESS" => "支付成功",
        "REFUND" => "转入退款",
        "REVOKED" => "已撤销",
        "CLOSED" => "订单已关闭",
        _ => "订单未支付",
    };
    let mut tx = json!({
        "appid": req["appid"], "mchid": req["mchid"], "out_trade_no": no,
        "trade_type": o.trade_type, "trade_state": o.state, "trade_state_desc": desc,
        "amount": { "total": total, "currency": "CNY", "payer_currency": "CNY" },
        "promotion_detail": [],
    });
    if let Some(attach) = req.get("attach") {
        tx["attach"] = attach.clone();
    }
    if let (Some(id), Some(ms)) = (&o.transaction_id, o.success_ms) {
        tx["transaction_id"] = json!(id);
        tx["success_time"] = json!(sys::format_rfc3339(ms, UtcOffset::CST));
        tx["bank_type"] = json!("OTHERS");
        tx["amount"]["payer_total"] = json!(total);
        let openid = req.pointer("/payer/openid").and_then(Value::as_str);
        tx["payer"] = json!({ "openid": openid.unwrap_or(PAYER_OPENID) });
    }
    tx
}

impl FakeWechat {
    /// Starts the fake on `127.0.0.1:0`.
    pub fn start() -> FakeWechat {
        let shared = Arc::new(Shared {
            merchant_public: PublicKey::parse(&fixture("merchant-public-key.pem")).unwrap(),
            platform_key: PrivateKey::parse(&fixture("platform-private-key.pem")).unwrap(),
            state: Mutex::new(State {
                schedule: [200, 400, 800, 1600].map(Duration::from_millis).to_vec(),
                ..State::default()
            }),
            stopped: Mutex::new(false),
            wake: Condvar::new(),
        });
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind the fake"));
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let (srv, sh) = (server.clone(), shared.clone());
        thread::spawn(move || {
            for req in srv.incoming_requests() {
                let sh = sh.clone();
                thread::spawn(move || sh.handle(req));
            }
        });
        FakeWechat {
            url,
            shared,
            server,
        }
    }

    /// The arguments of `unipay channel set --db D --app-id A …` for this fake, from
    /// `wechat_pay` on; the APIv3 key file is written into `dir`.
    pub fn channel_set_args(&self, dir: &Path) -> Vec<String> {
        let key_file = dir.join("apiv3.key");
        std::fs::write(&key_file, APIV3_KEY).unwrap();
        let (merchant, platform) = (
            fixture_path("merchant-private-key.pem"),
            fixture_path("platform-public-key.pem"),
        );
        let mut args = vec!["wechat_pay".to_string()];
        for (flag, value) in [
            ("--mchid", MCHID),
            ("--wx-appid", APPID),
            ("--serial-no", SERIAL_NO),
            ("--private-key-file", &merchant),
            ("--apiv3-key-file", key_file.to_str().unwrap()),
            ("--platform-public-key-file", &platform),
            ("--platform-public-key-id", KEY_ID),
            ("--base-url", &self.url),
        ] {
            args.extend([flag.to_string(), value.to_string()]);
        }
        args
    }

    /// `op`: "native", "jsapi", "h5", "close", "query", "refund" or "query_refund".
    pub fn set_mode(&self, op: &str, mode: Mode) {
        self.shared.state().modes.insert(op.to_string(), mode);
    }

    /// Requests received for `op`, verified or not.
    pub fn calls(&self, op: &str) -> usize {
        self.shared.state().calls.get(op).copied().unwrap_or(0)
    }

    /// The JSON body of the last request for `op` (for a query: its query string).
    pub fn last_body(&self, op: &str) -> Option<Value> {
        self.shared.state().last.get(op).cloned()
    }

    /// Requests answered 401 `SIGN_ERROR`.
    pub fn bad_signatures(&self) -> usize {
        self.shared.state().bad_signatures
    }

    pub fn trade_state(&self, out_trade_no: &str) -> Option<String> {
        let st = self.shared.state();
        st.orders.get(out_trade_no).map(|o| o.state.to_string())
    }

    /// The waits before each retry of a notice (the first attempt is at once).
    pub fn set_notify_schedule(&self, waits: Vec<Duration>) {
        self.shared.state().schedule = waits;
    }

    /// Every notice attempt for the order: (status, body); status 0 when there was no answer.
    pub fn notifications(&self, out_trade_no: &str) -> Vec<(u16, String)> {
        let st = self.shared.state();
        st.notices.get(out_trade_no).cloned().unwrap_or_default()
    }

    fn with_order<T>(&self, no: &str, what: &str, f: impl FnOnce(&mut Order) -> T) -> T {
        let mut st = self.shared.state();
        let order = st.orders.get_mut(no);
        f(order.unwrap_or_else(|| panic!("{what}({no}): no such order")))
    }

    /// The buyer pays the `NOTPAY` order (panics otherwise); returns the transaction id.
    pub fn pay_silently(&self, out_trade_no: &str) -> String {
        self.with_order(out_trade_no, "pay", |o| {
            assert_eq!(o.state, "NOTPAY", "pay({out_trade_no})");
            let now = now_ms();
            let date = &sys::format_compact(now, UtcOffset::CST)[..8];
            let n = SEQ.fetch_add(1, Ordering::SeqCst) % 1000;
            let id = format!("4200000{n:03}{date}{:010}", now as u64 % 10_000_000_000);
            o.state = "SUCCESS";
            o.transaction_id = Some(id.clone());
            o.success_ms = Some(now);
            id
        })
    }

    /// The buyer pays; then the `TRANSACTION.SUCCESS` notice is sent on the schedule.
    pub fn pay(&self, out_trade_no: &str) -> String {
        let id = self.pay_silently(out_trade_no);
        let url = self.with_order(out_trade_no, "pay", |o| o.request["notify_url"].clone());
        let (_, body) = self.notification_for(out_trade_no);
        let no = out_trade_no.to_string();
        let url = url.as_str().unwrap_or_default().to_string();
        self.shared.spawn_notifier(no, url, body);
        id
    }

    /// Sets a trade's `trade_state` (`REVOKED`, `PAYERROR`, …) as WeChat would. Panics for an
    /// unknown order.
    pub fn set_trade_state(&self, out_trade_no: &str, state: &'static str) {
        self.with_order(out_trade_no, "set_trade_state", |o| o.state = state)
    }

    /// The status new refunds get: `PROCESSING` (the default), `SUCCESS`, `CLOSED` or
    /// `ABNORMAL`.
    pub fn set_refund_result(&self, status: &'static str) {
        assert!(
            ["PROCESSING", "SUCCESS", "CLOSED", "ABNORMAL"].contains(&status),
            "{status}"
        );
        self.shared.state().refund_result = Some(status);
    }

    /// The status of a refund in the book.
    pub fn refund_state(&self, out_refund_no: &str) -> Option<String> {
        let st = self.shared.state();
        st.refunds.get(out_refund_no).map(|r| r.status.to_string())
    }

    /// WeChat's `refund_id` of a refund in the book.
    pub fn refund_id(&self, out_refund_no: &str) -> Option<String> {
        let st = self.shared.state();
        st.refunds.get(out_refund_no).map(|r| r.refund_id.clone())
    }

    /// How many refunds the book has, and their sum, for a trade (all statuses but `CLOSED`).
    pub fn refunds_of(&self, out_trade_no: &str) -> (usize, i64) {
        let st = self.shared.state();
        let of = st
            .refunds
            .values()
            .filter(|r| r.out_trade_no == out_trade_no);
        let live: Vec<i64> = of
            .filter(|r| r.status != "CLOSED")
            .map(|r| r.refund)
            .collect();
        (live.len(), live.iter().sum())
    }

    /// WeChat finishes a `PROCESSING` (or `ABNORMAL`) refund: `SUCCESS`; then its notice.
    pub fn settle_refund(&self, out_refund_no: &str) {
        self.settle_refund_as(out_refund_no, "SUCCESS");
    }

    /// WeChat moves a refund that is not final to `status` (`SUCCESS`, `CLOSED` or `ABNORMAL`);
    /// then its notice. Panics for an unknown or final refund.
    pub fn settle_refund_as(&self, out_refund_no: &str, status: &'static str) {
        let notice = self.settle_refund_silently(out_refund_no, status);
        self.shared.notify_refund(out_refund_no, notice);
    }

    /// `settle_refund_as` without a notice; returns the notice that was not sent.
    pub fn settle_refund_silently(
        &self,
        out_refund_no: &str,
        status: &'static str,
    ) -> (&'static str, Value) {
        assert!(
            ["SUCCESS", "CLOSED", "ABNORMAL"].contains(&status),
            "{status}"
        );
        let mut st = self.shared.state();
        let r = st.refunds.get_mut(out_refund_no);
        let r = r.unwrap_or_else(|| panic!("settle_refund({out_refund_no}): no such refund"));
        assert!(
            matches!(r.status, "PROCESSING" | "ABNORMAL"),
            "settle_refund({out_refund_no}): already {}",
            r.status
        );
        r.status = status;
        if status == "SUCCESS" {
            r.success_ms = Some(now_ms());
        }
        refund_notice_of(out_refund_no, r)
    }

    /// The decrypted resource of a notice about a final refund (for tampering tests).
    pub fn refund_resource(&self, out_refund_no: &str) -> (&'static str, Value) {
        let st = self.shared.state();
        let r = st.refunds.get(out_refund_no);
        refund_notice_of(out_refund_no, r.expect("refund_resource: no such refund"))
    }

    /// A fresh, validly signed notice with this event and decrypted `resource` (encrypted with
    /// AAD `refund`): (headers, body).
    pub fn refund_notice(&self, event: &str, resource: &Value) -> (Vec<(String, String)>, Vec<u8>) {
        let body = self.shared.notice_body(event, resource, "refund");
        (self.sign_notification(&body), body)
    }

    /// A fresh, validly signed notice about a final refund as the book has it.
    pub fn refund_notification_for(&self, out_refund_no: &str) -> (Vec<(String, String)>, Vec<u8>) {
        let (event, resource) = self.refund_resource(out_refund_no);
        self.refund_notice(event, &resource)
    }

    /// WeChat closes an unpaid order itself. Panics for an unknown or paid one.
    pub fn close_trade(&self, out_trade_no: &str) {
        self.with_order(out_trade_no, "close_trade", |o| {
            let paid = matches!(o.state, "SUCCESS" | "REFUND");
            assert!(!paid, "close_trade({out_trade_no}): paid");
            o.state = "CLOSED";
        })
    }

    /// A fresh, validly signed and encrypted `TRANSACTION.SUCCESS` notice of a paid trade:
    /// (headers, body). Panics when the trade is not paid.
    pub fn notification_for(&self, out_trade_no: &str) -> (Vec<(String, String)>, Vec<u8>) {
        let tx = self.with_order(out_trade_no, "notification_for", |o| {
            let paid = matches!(o.state, "SUCCESS" | "REFUND");
            assert!(paid, "notification_for({out_trade_no}): {}", o.state);
            transaction(out_trade_no, o)
        });
        let body = self
            .shared
            .notice_body("TRANSACTION.SUCCESS", &tx, "transaction");
        (self.sign_notification(&body), body)
    }

    /// Fresh, valid signature headers for any notice body.
    pub fn sign_notification(&self, body: &[u8]) -> Vec<(String, String)> {
        self.shared.sign(body, &Mode::Normal)
    }

    /// A notice's `resource`: `plain` encrypted with the APIv3 key (AES-256-GCM, a random
    /// 12-character nonce, `aad` as associated data).
    pub fn encrypt_resource(&self, plain: &str, aad: &str) -> Value {
        seal(plain, aad, "transaction")
    }

    /// One JSON POST of `body` with `headers` to `url` (5 s timeout, no retry): (status, body);
    /// status 0 and the error text when there was no HTTP answer.
    pub fn post_notification(
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> (u16, String) {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5));
        let mut req = agent
            .build()
            .post(url)
            .set("Content-Type", "application/json");
        for (k, v) in headers {
            req = req.set(k, v);
        }
        match req.send_bytes(body) {
            Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }
}

impl Drop for FakeWechat {
    fn drop(&mut self) {
        let mut stopped = self
            .shared
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *stopped = true;
        drop(stopped);
        self.shared.wake.notify_all();
        self.server.unblock();
    }
}

// ---------------------------------------------------------------------------------------------
// Self-tests of the fake, over HTTP
// ---------------------------------------------------------------------------------------------

use crate::helpers::{http_with, run_cli, wait_for, Reply, TestServer};
use unipay::channel::keys::{aes_gcm_open, unb64};

const NATIVE: &str = "/v3/pay/transactions/native";

/// The `Authorization` of a request signed with the merchant key at `ts` (the fields in another
/// order than unipay's).
fn authorization(method: &str, url: &str, body: &str, ts: i64) -> String {
    let nonce = random(32);
    let message = format!("{method}\n{url}\n{ts}\n{nonce}\n{body}\n");
    let key = PrivateKey::parse(&fixture("merchant-private-key.pem")).unwrap();
    let sig = key.sign_b64(message.as_bytes());
    let fields = format!("signature=\"{sig}\",timestamp=\"{ts}\",nonce_str=\"{nonce}\"");
    format!("{SIGNATURE_TYPE} serial_no=\"{SERIAL_NO}\",{fields},mchid=\"{MCHID}\"")
}

/// A request with this `Authorization` (none when empty), Accept and User-Agent.
fn send(fake: &FakeWechat, method: &str, url: &str, body: &str, auth: &str) -> Reply {
    let mut headers = vec![("Accept", "application/json"), ("User-Agent", "test")];
    headers.extend([
        ("Authorization", auth),
        ("Content-Type", "application/json"),
    ]);
    headers.retain(|(_, v)| !v.is_empty());
    let addr = fake.url.strip_prefix("http://").unwrap();
    http_with(addr, method, url, &headers, body.as_bytes())
}

fn call(fake: &FakeWechat, method: &str, url: &str, body: &str) -> Reply {
    let auth = authorization(method, url, body, now_ms() / 1000);
    send(fake, method, url, body, &auth)
}

fn post(fake: &FakeWechat, url: &str, body: &Value) -> Reply {
    call(fake, "POST", url, &body.to_string())
}

/// Checks signature headers with the platform public key, as unipay does.
fn verifies(headers: &[(String, String)], body: &[u8]) -> bool {
    let h = |name: &str| {
        let found = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str()).unwrap_or("")
    };
    let (ts, nonce) = (h("Wechatpay-Timestamp"), h("Wechatpay-Nonce"));
    let mut message = format!("{ts}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    let key = PublicKey::parse(&fixture("platform-public-key.pem")).unwrap();
    let fresh = |t: i64| (now_ms() / 1000 - t).abs() < 300;
    ts.parse().is_ok_and(fresh)
        && (h("Wechatpay-Serial"), h("Wechatpay-Signature-Type")) == (KEY_ID, SIGNATURE_TYPE)
        && key.verify_b64(&message, h("Wechatpay-Signature"))
}

fn verified(r: &Reply) -> bool {
    verifies(&r.headers, r.body.as_bytes())
}

/// A signed answer with this status and (for errors) code.
#[track_caller]
fn expect(r: &Reply, status: u16, code: &str) {
    let json = r.json.clone().unwrap_or_default();
    assert_eq!(
        (r.status, json["code"].as_str().unwrap_or("")),
        (status, code),
        "{r:?}"
    );
    assert!(verified(r), "the answer is signed: {r:?}");
}

fn prepay_body(no: &str, notify_url: &str) -> Value {
    json!({
        "appid": APPID, "mchid": MCHID, "description": "测试", "out_trade_no": no,
        "time_expire": "2099-01-01T00:00:00+08:00", "notify_url": notify_url,
        "amount": { "total": 1, "currency": "CNY" },
    })
}

fn native(fake: &FakeWechat, no: &str) -> Reply {
    post(fake, NATIVE, &prepay_body(no, "http://127.0.0.1:9/cb"))
}

fn query(fake: &FakeWechat, no: &str) -> Reply {
    let url = format!("/v3/pay/transactions/out-trade-no/{no}?mchid={MCHID}");
    call(fake, "GET", &url, "")
}

fn close(fake: &FakeWechat, no: &str) -> Reply {
    let url = format!("/v3/pay/transactions/out-trade-no/{no}/close");
    post(fake, &url, &json!({ "mchid": MCHID }))
}

#[test]
fn fake_wechat_native_query_close() {
    let fake = FakeWechat::start();
    let r = native(&fake, "FW0001");
    expect(&r, 200, "");
    let code_url = r.json()["code_url"].as_str().unwrap();
    assert!(
        code_url.starts_with("weixin://wxpay/bizpayurl?pr="),
        "{code_url}"
    );
    assert_eq!(
        native(&fake, "FW0001").body,
        r.body,
        "the same request, the same answer"
    );
    assert_eq!(fake.last_body("native").unwrap()["out_trade_no"], "FW0001");
    let tx = query(&fake, "FW0001");
    expect(&tx, 200, "");
    assert_eq!(tx.json()["trade_state"], "NOTPAY");
    assert_eq!(tx.json()["trade_type"], "NATIVE");
    let closed = close(&fake, "FW0001");
    expect(&closed, 204, ""); // signed over TIMESTAMP\nNONCE\n\n
    assert_eq!(closed.body, "");
    assert_eq!(fake.trade_state("FW0001").as_deref(), Some("CLOSED"));
    expect(&close(&fake, "FW0001"), 400, "ORDER_CLOSED");
    expect(&close(&fake, "NOSUCH01"), 404, "ORDER_NOT_EXIST");
    expect(&query(&fake, "NOSUCH01"), 404, "ORDER_NOT_EXIST");
    let url = "/v3/pay/transactions/out-trade-no/FW0001/close";
    expect(&post(&fake, url, &json!({})), 400, "PARAM_ERROR");
    assert_eq!(fake.calls("close"), 4);

    native(&fake, "FW0002");
    let id = fake.pay_silently("FW0002");
    let tx = query(&fake, "FW0002").json().clone();
    assert_eq!(tx["trade_state"], "SUCCESS");
    assert_eq!(tx["transaction_id"], id.as_str());
    let success_time = tx["success_time"].as_str().unwrap();
    let paid_at = sys::parse_rfc3339(success_time).unwrap();
    assert!(success_time.ends_with("+08:00") && (now_ms() - paid_at).abs() < 5000);
    assert_eq!(tx["amount"]["payer_total"], 1);
    assert_eq!(tx["payer"]["openid"], PAYER_OPENID);
    let refused = close(&fake, "FW0002");
    expect(&refused, 400, "ORDERPAID");
    assert_eq!(refused.json()["message"], "订单已支付");

    // JSAPI needs payer.openid, H5 scene_info.payer_client_ip; no null anywhere.
    let (jsapi, h5) = ("/v3/pay/transactions/jsapi", "/v3/pay/transactions/h5");
    let mut body = prepay_body("FW0003", "http://127.0.0.1:9/cb");
    expect(&post(&fake, jsapi, &body), 400, "PARAM_ERROR");
    expect(&post(&fake, h5, &body), 400, "PARAM_ERROR");
    body["attach"] = Value::Null;
    expect(&post(&fake, NATIVE, &body), 400, "PARAM_ERROR");
    body["attach"] = json!("a");
    body["payer"] = json!({ "openid": "o-1" });
    let prepay_id = post(&fake, jsapi, &body).json()["prepay_id"].clone();
    assert!(prepay_id.as_str().unwrap().starts_with("wx"), "{prepay_id}");
    body["out_trade_no"] = json!("FW0004");
    body["scene_info"] = json!({ "payer_client_ip": "127.0.0.1", "h5_info": { "type": "Wap" } });
    let h5_url = post(&fake, h5, &body).json()["h5_url"].clone();
    assert!(h5_url
        .as_str()
        .unwrap()
        .starts_with("https://wx.tenpay.com/"));
    assert_eq!(fake.bad_signatures(), 0);
}

#[test]
fn fake_wechat_refuses_bad_signatures_and_headers() {
    let fake = FakeWechat::start();
    let url = format!("/v3/pay/transactions/out-trade-no/FW0005?mchid={MCHID}");
    let now = now_ms() / 1000;
    let good = authorization("GET", &url, "", now);
    expect(&send(&fake, "GET", &url, "", &good), 404, "ORDER_NOT_EXIST");
    let other_url = authorization("GET", &format!("{url}&x=1"), "", now);
    let forged = good.replace("signature=\"", "signature=\"AAAA");
    let old = authorization("GET", &url, "", now - 400);
    for auth in [other_url, forged, old, String::new()] {
        expect(&send(&fake, "GET", &url, "", &auth), 401, "SIGN_ERROR");
    }
    let body = prepay_body("FW0005", "http://127.0.0.1:9/cb").to_string();
    let signed = authorization("POST", NATIVE, &body, now);
    let changed = body.replace("测试", "测验");
    expect(
        &send(&fake, "POST", NATIVE, &changed, &signed),
        401,
        "SIGN_ERROR",
    );
    assert_eq!(
        (fake.bad_signatures(), fake.trade_state("FW0005")),
        (5, None)
    );

    let addr = fake.url.strip_prefix("http://").unwrap();
    for header in [("Accept", "*/*"), ("User-Agent", "t")] {
        let r = http_with(addr, "GET", &url, &[header, ("Authorization", &good)], b"");
        expect(&r, 400, "INVALID_REQUEST");
        assert_eq!(r.json()["message"], "Http头缺少Accept或User-Agent");
    }
}

#[test]
fn fake_wechat_modes() {
    let fake = FakeWechat::start();
    let header = |r: &Reply, k: &str| r.header(k).unwrap_or("").to_string();
    fake.set_mode("native", Mode::Unsigned);
    let r = native(&fake, "FW0010");
    assert!(
        r.status == 200 && header(&r, "wechatpay-signature").is_empty(),
        "{r:?}"
    );
    assert_eq!(
        fake.trade_state("FW0010").as_deref(),
        Some("NOTPAY"),
        "applied"
    );
    fake.set_mode("native", Mode::Forged);
    assert!(!verified(&native(&fake, "FW0011")));
    fake.set_mode("native", Mode::Probe);
    let r = native(&fake, "FW0012");
    assert!(header(&r, "wechatpay-signature").starts_with("WECHATPAY/SIGNTEST/"));
    fake.set_mode("native", Mode::WrongSerial);
    let r = native(&fake, "FW0013");
    assert!(r.status == 200 && header(&r, "wechatpay-serial") != KEY_ID && !verified(&r));
    fake.set_mode("native", Mode::Stale);
    let mut r = native(&fake, "FW0014");
    let ts: i64 = header(&r, "wechatpay-timestamp").parse().unwrap();
    assert!((now_ms() / 1000 - ts - 600).abs() < 5 && !verified(&r));
    r.headers.retain(|(k, _)| k != "wechatpay-timestamp");
    r.headers
        .push(("wechatpay-timestamp".into(), (ts + 600).to_string()));
    assert!(!verified(&r), "the stale timestamp is the one signed");
    let no_auth = Mode::Status(403, "NO_AUTH".into(), "商户无权限".into());
    fake.set_mode("native", no_auth);
    expect(&native(&fake, "FW0015"), 403, "NO_AUTH");
    assert_eq!(fake.trade_state("FW0015"), None, "not applied");
    let paid = Mode::UnsignedStatus(400, "ORDERPAID".into(), "订单已支付".into());
    fake.set_mode("close", paid);
    let r = close(&fake, "FW0010");
    assert!(
        r.status == 400 && r.header("wechatpay-signature").is_none(),
        "{r:?}"
    );
    fake.set_mode("query", Mode::ServerError);
    expect(&query(&fake, "FW0010"), 500, "SYSTEM_ERROR");
    fake.set_mode("query", Mode::Normal);

    // A hanging close blocks only itself, and dropping the fake ends it.
    fake.set_mode("close", Mode::Hang);
    let url = "/v3/pay/transactions/out-trade-no/FW0010/close";
    let body = format!("{{\"mchid\":\"{MCHID}\"}}");
    let auth = authorization("POST", url, &body, now_ms() / 1000);
    let addr = fake.url.strip_prefix("http://").unwrap().to_string();
    let hung = thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!("POST {url} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        let head = format!("{head}Accept: */*\r\nUser-Agent: t\r\nAuthorization: {auth}\r\n");
        let req = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
        std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
        let started = Instant::now();
        let _ = s.read_to_end(&mut Vec::new());
        started.elapsed()
    });
    wait_for("the close", || (fake.calls("close") == 2).then_some(()));
    thread::sleep(Duration::from_millis(300));
    assert!(!hung.is_finished(), "the close hangs");
    assert_eq!(
        fake.trade_state("FW0010").as_deref(),
        Some("CLOSED"),
        "applied"
    );
    expect(&query(&fake, "FW0010"), 200, "");
    drop(fake);
    assert!(
        hung.join().unwrap() < Duration::from_secs(10),
        "dropping the fake ends it"
    );
}

type Seen = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

/// A notice receiver answering `answers` in turn (then the last one); records every notice.
fn receiver(answers: Vec<(u16, &'static str)>) -> (String, Seen, Arc<tiny_http::Server>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!("http://{}/cb", server.server_addr().to_ip().unwrap());
    let (srv, seen) = (server.clone(), Seen::default());
    let got = seen.clone();
    thread::spawn(move || {
        for mut req in srv.incoming_requests() {
            let mut body = Vec::new();
            req.as_reader().read_to_end(&mut body).unwrap();
            let headers = req.headers().iter();
            let headers = headers.map(|h| (h.field.to_string(), h.value.to_string()));
            let mut got = got.lock().unwrap();
            got.push((headers.collect(), body));
            let (status, text) = answers[(got.len() - 1).min(answers.len() - 1)];
            let resp = tiny_http::Response::from_string(text).with_status_code(status);
            let _ = req.respond(resp);
        }
    });
    (url, seen, server)
}

/// The Transaction inside a notice, after checking its signature and decrypting it.
fn open_notice(headers: &[(String, String)], body: &[u8]) -> Value {
    open_notice_as(headers, body, "TRANSACTION.SUCCESS", "transaction")
}

/// The resource inside a notice of `event` whose resource is of `kind` (its `original_type` and
/// associated data), after checking its signature and decrypting it.
fn open_notice_as(headers: &[(String, String)], body: &[u8], event: &str, kind: &str) -> Value {
    assert!(verifies(headers, body), "the notice verifies");
    let notice: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(notice["event_type"], event);
    let r = &notice["resource"];
    assert_eq!(r["algorithm"], "AEAD_AES_256_GCM");
    assert_eq!(r["associated_data"], kind);
    assert_eq!(r["original_type"], kind);
    let sealed = unb64(r["ciphertext"].as_str().unwrap()).unwrap();
    let nonce = r["nonce"].as_str().unwrap().as_bytes();
    assert_eq!(nonce.len(), 12);
    let plain = aes_gcm_open(APIV3_KEY.as_bytes(), nonce, kind.as_bytes(), &sealed).unwrap();
    serde_json::from_slice(&plain).unwrap()
}

#[test]
fn fake_wechat_notices_retry_until_204() {
    let fail = r#"{"code":"FAIL","message":"失败"}"#;
    let (url, seen, server) = receiver(vec![(500, fail), (400, fail), (204, "")]);
    let fake = FakeWechat::start();
    fake.set_notify_schedule(vec![Duration::from_millis(20); 5]);
    let mut body = prepay_body("FW0020", &url);
    body["attach"] = json!("附加");
    expect(&post(&fake, NATIVE, &body), 200, "");
    let id = fake.pay("FW0020");
    wait_for("3 attempts", || {
        (fake.notifications("FW0020").len() == 3).then_some(())
    });
    thread::sleep(Duration::from_millis(200));
    let attempts = fake.notifications("FW0020");
    let statuses: Vec<u16> = attempts.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [500, 400, 204], "stops at the 204");
    assert_eq!(attempts[0].1, fail);
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    for (headers, body) in &got {
        let tx = open_notice(headers, body);
        assert_eq!(tx["out_trade_no"], "FW0020");
        assert_eq!(tx["transaction_id"], id.as_str());
        assert_eq!(tx["trade_state"], "SUCCESS");
        assert_eq!(tx["amount"]["total"], 1);
        assert_eq!(
            (tx["mchid"].as_str(), tx["appid"].as_str()),
            (Some(MCHID), Some(APPID))
        );
        assert_eq!(tx["attach"], "附加");
    }
    assert_eq!(
        got[0].1, got[2].1,
        "the same notice, signed afresh each time"
    );

    // The helpers of tampering tests.
    let (headers, body) = fake.notification_for("FW0020");
    assert_eq!(open_notice(&headers, &body)["transaction_id"], id.as_str());
    assert_eq!(FakeWechat::post_notification(&url, &headers, &body).0, 204);
    let resource = fake.encrypt_resource(r#"{"a":1}"#, "");
    let sealed = unb64(resource["ciphertext"].as_str().unwrap()).unwrap();
    let nonce = resource["nonce"].as_str().unwrap().as_bytes();
    let plain = aes_gcm_open(APIV3_KEY.as_bytes(), nonce, b"", &sealed).unwrap();
    assert_eq!(plain, br#"{"a":1}"#);
    assert!(verifies(&fake.sign_notification(b"any"), b"any"));
    assert!(!verifies(&fake.sign_notification(b"any"), b"anz"));
    server.unblock();
}

/// unipay against the fake: a Native pay, the buyer pays, the notice makes the order success;
/// a close of another order closes its trade.
#[test]
fn fake_wechat_with_unipay() {
    let server = TestServer::start();
    let app = server.app("WXAPP");
    let fake = FakeWechat::start();
    let db = server.db.to_str().unwrap();
    let mut args = vec!["channel", "set", "--db", db, "--app-id", "WXAPP"];
    let wx = fake.channel_set_args(&server.dir);
    args.extend(wx.iter().map(String::as_str));
    let out = run_cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pay = json!({ "channel": "wechat_pay", "method": "qrcode", "attach": "x" });
    let data = server.pay_with(&app, "WX1", pay);
    let order_no = data["orderNo"].as_str().unwrap();
    let sent = fake.last_body("native").unwrap();
    assert_eq!(sent["out_trade_no"], order_no);
    assert_eq!(sent["amount"]["total"], 1);
    let notify_url = format!("{}/callback/wechat_pay/WXAPP", server.base_url());
    assert_eq!(sent["notify_url"], notify_url.as_str());
    let pay_body = data["payBody"].as_str().unwrap();
    assert!(
        pay_body.starts_with("weixin://wxpay/bizpayurl?pr="),
        "{pay_body}"
    );
    fake.pay(order_no);
    wait_for("the notice", || {
        (!fake.notifications(order_no).is_empty()).then_some(())
    });
    assert_eq!(fake.notifications(order_no), [(204, String::new())]);
    assert_eq!(server.status(&app, "WX1"), "success");

    let pay = json!({ "channel": "wechat_pay", "method": "qrcode" });
    let order_no = server.pay_with(&app, "WX2", pay)["orderNo"].clone();
    server
        .close(&app, json!({ "bizOrderNo": "WX2" }))
        .expect(0, "success");
    let state = fake.trade_state(order_no.as_str().unwrap());
    assert_eq!(state.as_deref(), Some("CLOSED"));
    assert_eq!(server.status(&app, "WX2"), "close");
    assert_eq!(fake.bad_signatures(), 0);
}

// ---- refunds ----

/// A trade of `total` fen, paid silently.
fn paid_trade(fake: &FakeWechat, no: &str, total: i64) {
    let mut body = prepay_body(no, "http://127.0.0.1:9/cb");
    body["amount"]["total"] = json!(total);
    expect(&post(fake, NATIVE, &body), 200, "");
    fake.pay_silently(no);
}

fn refund_body(trade: &str, no: &str, refund: i64, total: i64, notify_url: &str) -> Value {
    json!({
        "out_trade_no": trade, "out_refund_no": no, "notify_url": notify_url,
        "amount": { "refund": refund, "total": total, "currency": "CNY" },
    })
}

fn send_refund(fake: &FakeWechat, body: &Value) -> Reply {
    post(fake, REFUNDS, body)
}

fn query_refund(fake: &FakeWechat, no: &str) -> Reply {
    call(fake, "GET", &format!("{REFUNDS}/{no}"), "")
}

#[test]
fn fake_wechat_refunds_book_and_query() {
    let fake = FakeWechat::start();
    paid_trade(&fake, "FW0030", 100);
    let cb = "http://127.0.0.1:9/cb";
    let body = refund_body("FW0030", "RF0030A", 30, 100, cb);
    let r = send_refund(&fake, &body);
    expect(&r, 200, "");
    let v = r.json().clone();
    assert_eq!(v["status"], "PROCESSING");
    assert_eq!(
        (v["out_refund_no"].as_str(), v["out_trade_no"].as_str()),
        (Some("RF0030A"), Some("FW0030"))
    );
    assert_eq!(v["amount"]["refund"], 30);
    assert_eq!(v["amount"]["total"], 100);
    assert!(v.get("success_time").is_none());
    let refund_id = v["refund_id"].as_str().unwrap().to_string();
    assert_eq!(
        fake.refund_id("RF0030A").as_deref(),
        Some(refund_id.as_str())
    );
    assert_eq!(
        fake.last_body("refund").unwrap()["out_refund_no"],
        "RF0030A"
    );
    // A repeat is the same refund; the same number for another amount is refused.
    let again = send_refund(&fake, &body);
    assert_eq!(again.json()["refund_id"], refund_id.as_str());
    let other = refund_body("FW0030", "RF0030A", 31, 100, cb);
    expect(&send_refund(&fake, &other), 400, "INVALID_REQUEST");
    assert_eq!(fake.refunds_of("FW0030"), (1, 30));
    // The trade is REFUND now: still paid, never closed.
    assert_eq!(query(&fake, "FW0030").json()["trade_state"], "REFUND");
    expect(&close(&fake, "FW0030"), 400, "ORDERPAID");
    // The query, before and after WeChat finishes it.
    let q = query_refund(&fake, "RF0030A");
    expect(&q, 200, "");
    assert_eq!(q.json()["status"], "PROCESSING");
    fake.settle_refund_silently("RF0030A", "SUCCESS");
    let q = query_refund(&fake, "RF0030A").json().clone();
    assert_eq!(q["status"], "SUCCESS");
    assert_eq!(q["refund_id"], refund_id.as_str());
    assert!(sys::parse_rfc3339(q["success_time"].as_str().unwrap()).is_some());
    expect(&query_refund(&fake, "RF0030Z"), 404, "RESOURCE_NOT_EXISTS");
    // At most the trade's amount; a closed refund gives its share back.
    let over = refund_body("FW0030", "RF0030B", 71, 100, cb);
    expect(&send_refund(&fake, &over), 400, "INVALID_REQUEST");
    fake.set_refund_result("CLOSED");
    let closed = send_refund(&fake, &refund_body("FW0030", "RF0030C", 70, 100, cb));
    assert_eq!(closed.json()["status"], "CLOSED");
    fake.set_refund_result("SUCCESS");
    let done = send_refund(&fake, &refund_body("FW0030", "RF0030D", 70, 100, cb));
    assert_eq!(done.json()["status"], "SUCCESS");
    assert!(done.json()["success_time"].is_string());
    assert_eq!(fake.refunds_of("FW0030"), (2, 100));
    // Unknown or unpaid trades, a wrong total, a bad reason, a null.
    let unknown = refund_body("FW0031", "RF0031A", 1, 1, cb);
    expect(&send_refund(&fake, &unknown), 404, "RESOURCE_NOT_EXISTS");
    expect(&native(&fake, "FW0031"), 200, "");
    expect(&send_refund(&fake, &unknown), 400, "INVALID_REQUEST");
    paid_trade(&fake, "FW0032", 10);
    let wrong_total = refund_body("FW0032", "RF0032A", 1, 11, cb);
    expect(&send_refund(&fake, &wrong_total), 400, "INVALID_REQUEST");
    let mut with_reason = refund_body("FW0032", "RF0032A", 1, 10, cb);
    for (reason, ok) in [
        ("a".repeat(81), false),
        ("退".repeat(27), false),
        (String::new(), false),
    ] {
        with_reason["reason"] = json!(reason);
        let r = send_refund(&fake, &with_reason);
        assert_eq!(r.status == 200, ok, "{reason}: {r:?}");
    }
    with_reason["reason"] = Value::Null;
    expect(&send_refund(&fake, &with_reason), 400, "PARAM_ERROR");
    with_reason["reason"] = json!("退".repeat(26));
    expect(&send_refund(&fake, &with_reason), 200, "");
    let mut no_currency = refund_body("FW0032", "RF0032B", 1, 10, cb);
    no_currency["amount"]
        .as_object_mut()
        .unwrap()
        .remove("currency");
    expect(&send_refund(&fake, &no_currency), 400, "PARAM_ERROR");
    // A trade state set by hand (REVOKED for the pay sync tests).
    native(&fake, "FW0033");
    fake.set_trade_state("FW0033", "REVOKED");
    assert_eq!(query(&fake, "FW0033").json()["trade_state"], "REVOKED");
    assert_eq!(fake.calls("refund"), 15);
    assert_eq!(fake.calls("query_refund"), 3);
    assert_eq!(fake.bad_signatures(), 0);
}

#[test]
fn fake_wechat_refund_modes() {
    let fake = FakeWechat::start();
    paid_trade(&fake, "FW0040", 100);
    let cb = "http://127.0.0.1:9/cb";
    let limited = Mode::Status(429, "FREQUENCY_LIMITED".into(), "频率限制".into());
    fake.set_mode("refund", limited);
    let body = refund_body("FW0040", "RF0040A", 10, 100, cb);
    expect(&send_refund(&fake, &body), 429, "FREQUENCY_LIMITED");
    assert_eq!(fake.refund_state("RF0040A"), None, "not applied");
    fake.set_mode("refund", Mode::ServerError);
    expect(&send_refund(&fake, &body), 500, "SYSTEM_ERROR");
    assert_eq!(fake.refund_state("RF0040A"), None, "not applied");
    fake.set_mode("refund", Mode::Forged);
    let r = send_refund(&fake, &body);
    assert!(r.status == 200 && !verified(&r), "{r:?}");
    assert_eq!(
        fake.refund_state("RF0040A").as_deref(),
        Some("PROCESSING"),
        "applied"
    );
    fake.set_mode("query_refund", Mode::Probe);
    assert!(!verified(&query_refund(&fake, "RF0040A")));
    fake.set_mode("query_refund", Mode::ServerError);
    expect(&query_refund(&fake, "RF0040A"), 500, "SYSTEM_ERROR");
    fake.set_mode("query_refund", Mode::Normal);
    expect(&query_refund(&fake, "RF0040A"), 200, "");
    // A hanging refund is carried out all the same, and blocks only itself.
    fake.set_mode("refund", Mode::Hang);
    let body = refund_body("FW0040", "RF0040B", 10, 100, cb).to_string();
    let auth = authorization("POST", REFUNDS, &body, now_ms() / 1000);
    let addr = fake.url.strip_prefix("http://").unwrap().to_string();
    let hung = thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!("POST {REFUNDS} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        let head = format!("{head}Accept: */*\r\nUser-Agent: t\r\nAuthorization: {auth}\r\n");
        let req = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
        std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
        let started = Instant::now();
        let _ = s.read_to_end(&mut Vec::new());
        started.elapsed()
    });
    wait_for("the hanging refund", || fake.refund_state("RF0040B"));
    thread::sleep(Duration::from_millis(300));
    assert!(!hung.is_finished(), "the refund hangs");
    expect(&query_refund(&fake, "RF0040B"), 200, "");
    drop(fake);
    assert!(
        hung.join().unwrap() < Duration::from_secs(10),
        "dropping the fake ends it"
    );
}

#[test]
fn fake_wechat_refund_notices_retry_until_204() {
    let fail = r#"{"code":"FAIL","message":"失败"}"#;
    let (url, seen, server) = receiver(vec![(500, fail), (204, "")]);
    let fake = FakeWechat::start();
    fake.set_notify_schedule(vec![Duration::from_millis(20); 5]);
    paid_trade(&fake, "FW0050", 100);
    expect(
        &send_refund(&fake, &refund_body("FW0050", "RF0050A", 40, 100, &url)),
        200,
        "",
    );
    thread::sleep(Duration::from_millis(100));
    assert!(
        fake.notifications("RF0050A").is_empty(),
        "nothing while PROCESSING"
    );
    fake.settle_refund("RF0050A");
    wait_for("2 attempts", || {
        (fake.notifications("RF0050A").len() == 2).then_some(())
    });
    thread::sleep(Duration::from_millis(200));
    let statuses: Vec<u16> = fake
        .notifications("RF0050A")
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(statuses, [500, 204], "stops at the 204");
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    for (headers, body) in &got {
        let r = open_notice_as(headers, body, "REFUND.SUCCESS", "refund");
        assert_eq!(r["mchid"], MCHID);
        assert_eq!(
            (r["out_trade_no"].as_str(), r["out_refund_no"].as_str()),
            (Some("FW0050"), Some("RF0050A"))
        );
        assert_eq!(r["refund_id"], fake.refund_id("RF0050A").unwrap().as_str());
        assert_eq!(r["refund_status"], "SUCCESS");
        assert!(r["success_time"].is_string());
        assert_eq!(
            r["amount"],
            json!({"total": 100, "refund": 40, "payer_total": 100, "payer_refund": 40})
        );
        assert!(r["transaction_id"].as_str().unwrap().starts_with("4200"));
    }
    // Abnormal, then closed by WeChat: one notice each; a refund final at once is notified too.
    expect(
        &send_refund(&fake, &refund_body("FW0050", "RF0050B", 10, 100, &url)),
        200,
        "",
    );
    fake.settle_refund_as("RF0050B", "ABNORMAL");
    wait_for("the abnormal notice", || {
        fake.notifications("RF0050B").first().cloned()
    });
    fake.settle_refund_as("RF0050B", "CLOSED");
    wait_for("the closed notice", || {
        (fake.notifications("RF0050B").len() == 2).then_some(())
    });
    fake.set_refund_result("SUCCESS");
    expect(
        &send_refund(&fake, &refund_body("FW0050", "RF0050C", 10, 100, &url)),
        200,
        "",
    );
    wait_for("the success notice", || {
        fake.notifications("RF0050C").first().cloned()
    });
    thread::sleep(Duration::from_millis(100));
    let got = seen.lock().unwrap().clone();
    let events: Vec<String> = got[2..]
        .iter()
        .map(|(_, b)| {
            serde_json::from_slice::<Value>(b).unwrap()["event_type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        events,
        ["REFUND.ABNORMAL", "REFUND.CLOSED", "REFUND.SUCCESS"]
    );
    let closed = open_notice_as(&got[3].0, &got[3].1, "REFUND.CLOSED", "refund");
    assert!(closed.get("success_time").is_none());
    // The helpers of tampering tests.
    let (headers, body) = fake.refund_notification_for("RF0050A");
    assert_eq!(
        open_notice_as(&headers, &body, "REFUND.SUCCESS", "refund")["out_refund_no"],
        "RF0050A"
    );
    let (event, mut resource) = fake.refund_resource("RF0050B");
    assert_eq!(
        (event, resource["refund_status"].as_str()),
        ("REFUND.CLOSED", Some("CLOSED"))
    );
    resource["amount"]["refund"] = json!(11);
    let (headers, body) = fake.refund_notice(event, &resource);
    assert_eq!(
        open_notice_as(&headers, &body, "REFUND.CLOSED", "refund")["amount"]["refund"],
        11
    );
    server.unblock();
}
