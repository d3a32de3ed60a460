//! A fake Alipay OpenAPI gateway (`gateway.do`, RSA2) for the integration tests, following
//! `channels.md` Part A and E3.
//!
//! What it checks on every request: query and form body are merged (form-decoded; the first
//! occurrence of a name wins); `method`, `sign`, `sign_type`, `app_id`, `timestamp` and `version`
//! are present (40001 otherwise); `app_id` is the configured one, `sign_type` is `RSA2`,
//! `charset`/`format` are `utf-8`/`json` when sent, `timestamp` reads as `yyyy-MM-dd HH:mm:ss`
//! (no window); the A2 signature verifies with the app's public key (40002
//! `isv.invalid-signature` otherwise). An unknown method answers `error_response` 40002
//! `isv.invalid-method`.
//!
//! What it does: precreate records an order but no trade (the trade exists after `scan`/`pay`);
//! query, close and cancel follow A6; `time_expire` (UTC+8) is honoured; a wap/page pay URL
//! opened by GET or POST records an order and shows a cashier page. Every JSON reply is built
//! field by field (`/` escaped as `\/`, raw UTF-8) and signed over the exact node text with the
//! gateway key; a `Mode` per method hangs, holds the answer until released, drops or forges the
//! signature, re-serialises or duplicates the node, or fails. Payment notices are V1-signed and
//! retried on a schedule until the reply is `200` with the body exactly `success`.
//!
//! Refunds (refund-sync.md §9.4): `alipay.trade.refund` keeps a book per paid trade (one
//! `out_request_no` = one refund; `fund_change` `Y` the first time, `N` on a repeat; another
//! amount for a known request number → `ACQ.DISCORDANT_REPEAT_REQUEST`; a total above the
//! trade's amount → `ACQ.REASON_TRADE_REFUND_FEE_ERR`; no trade → `ACQ.TRADE_NOT_EXIST`, an
//! unpaid one → `ACQ.TRADE_STATUS_ERROR`; refunded in full → `TRADE_CLOSED`, `send_pay_date`
//! kept). `Mode::Unconfirmed` accepts refunds without confirming them (`fund_change` `N`, and the
//! query answers without `refund_status` until `confirm_refund`). The query
//! `alipay.trade.fastpay.refund.query` answers `REFUND_SUCCESS` with `refund_amount` (and
//! `gmt_refund_pay` when `query_options` asks for it), or no `refund_status` for a request number
//! it does not know (or has not confirmed). `refund_notice` sends the refund notice of a booked
//! refund (`TRADE_SUCCESS` + `refund_fee`, `gmt_refund`, `out_biz_no`; `TRADE_CLOSED` once refunded
//! in full). The times of refund calls per trade are kept (`refund_spacing_violations`: Alipay
//! wants them 3 s apart).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use unipay::channel::keys::{PrivateKey, PublicKey};
use unipay::form;
use unipay::sys::{self, Clock, SystemClock, UtcOffset};

type Params = Vec<(String, String)>;

/// How the fake answers the verified calls of one method (a request that fails the protocol
/// checks always gets its error). Set with `FakeAlipay::set_mode`; applies until changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Applies the operation, then never answers until the fake is dropped (the socket stays
    /// open; only this request's thread waits).
    Hang,
    /// Applies the operation as the request arrives, then holds its answer until
    /// `FakeAlipay::release` (a request still held when the fake is dropped is dropped
    /// unanswered). For races: the answer is decided, and the test acts before unipay hears it.
    Held,
    /// The normal answer without `"sign"`.
    Unsigned,
    /// The normal answer signed over other bytes (the node text + `x`).
    ForgedSign,
    /// The node re-serialised with `", "` / `": "`, the signature over the compact text.
    Reserialised,
    /// The node twice in the body, both correctly signed.
    DuplicateNode,
    /// A business failure (`msg` from `code`), not applied; unsigned unless `signed`.
    Fail {
        code: String,
        sub_code: String,
        sub_msg: String,
        signed: bool,
    },
    /// `n` signed `40004 ACQ.SYSTEM_ERROR` answers (with `retry_flag: Y` for cancel), not
    /// applied, then `Normal`.
    RetryThenNormal(u32),
    /// `alipay.trade.refund` only: a new refund is booked but not confirmed (`fund_change` `N`;
    /// the query answers without `refund_status`) until `confirm_refund`.
    Unconfirmed,
}

/// The fake gateway; dropping it stops the server, hanging requests and notifiers.
pub struct FakeAlipay {
    /// `http://127.0.0.1:PORT/gateway.do`
    pub url: String,
    shared: Arc<Shared>,
    server: Arc<tiny_http::Server>,
}

struct Shared {
    app_id: String,
    app_public: PublicKey,
    gateway_key: PrivateKey,
    state: Mutex<State>,
    stopped: Mutex<bool>,
    wake: Condvar,
    /// How many times `release` was called: a `Held` answer waits for the next one.
    releases: Mutex<u64>,
    released: Condvar,
}

#[derive(Default)]
struct State {
    orders: HashMap<String, Order>,
    modes: HashMap<String, Mode>,
    calls: HashMap<String, usize>,
    last: HashMap<String, Params>,
    bad_signatures: usize,
    notices: HashMap<String, Vec<(u16, String)>>,
    schedule: Vec<Duration>,
    /// When `alipay.trade.refund` was called, per `out_trade_no` (every call, whatever it got).
    refund_calls: HashMap<String, Vec<i64>>,
}

/// What precreate (or a page URL) recorded, and the trade once the buyer scanned / logged in.
struct Order {
    out_trade_no: String,
    cents: u64,
    subject: String,
    expire_ms: Option<i64>,
    notify_url: Option<String>,
    qr_code: String,
    /// Timed out before anyone scanned: the QR code is dead, the trade never existed.
    dead: bool,
    trade: Option<Trade>,
}

struct Trade {
    trade_no: String,
    status: String,
    created_ms: i64,
    paid_ms: Option<i64>,
    notice: Option<Params>,
    refunds: Vec<FakeRefund>,
}

/// One refund in a trade's book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRefund {
    pub out_request_no: String,
    pub cents: u64,
    pub reason: Option<String>,
    /// When it was booked.
    pub at_ms: i64,
    /// When the money went back (`gmt_refund_pay`); `None` while unconfirmed.
    pub paid_ms: Option<i64>,
}

const SELLER_ID: &str = "2088102177846880";
const BUYER_ID: &str = "2088102534368455";
const BUYER_LOGON_ID: &str = "xud***@126.com";
const HTML: &str = "text/html;charset=utf-8";
const METHODS: [&str; 8] = [
    "alipay.trade.refund",
    "alipay.trade.fastpay.refund.query",
    "alipay.trade.precreate",
    "alipay.trade.query",
    "alipay.trade.close",
    "alipay.trade.cancel",
    "alipay.trade.wap.pay",
    "alipay.trade.page.pay",
];
/// The required protocol parameters and the 40001 answer when one is missing.
#[rustfmt::skip]
const REQUIRED: [(&str, &str, &str); 5] = [
    ("sign",      "isv.missing-signature",      "缺少签名参数"),
    ("sign_type", "isv.missing-signature-type", "缺少签名类型参数"),
    ("app_id",    "isv.missing-app-id",         "缺少appId参数"),
    ("timestamp", "isv.missing-timestamp",      "缺少时间戳参数"),
    ("version",   "isv.missing-version",        "缺少版本参数"),
];
static SEQ: AtomicU64 = AtomicU64::new(1);

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/alipay/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// `yyyy-MM-dd HH:mm:ss` in UTC+8, whatever the host's zone.
fn cst(ms: i64) -> String {
    sys::format_time(ms, UtcOffset::CST)
}

fn seq() -> u64 {
    SEQ.fetch_add(1, Ordering::SeqCst)
}

fn yuan(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Yuan with at most two decimals, 0.01 ..= 100000000.00.
fn parse_cents(s: &str) -> Option<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || int.len() > 9 || frac.len() > 2 || !digits(int) || !digits(frac) {
        return None;
    }
    let c = int.parse::<u64>().ok()? * 100 + format!("{frac:0<2}").parse::<u64>().ok()?;
    (1..=10_000_000_000).contains(&c).then_some(c)
}

/// The A2 canonical string: every parameter but `sign`, empty values left out, sorted by key
/// bytes, `k=v` joined by `&`, raw values.
pub fn canonical(params: &[(String, String)]) -> String {
    let mut kv: Vec<_> = params
        .iter()
        .filter(|(k, v)| k != "sign" && !v.is_empty())
        .collect();
    kv.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let kv: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
    kv.join("&")
}

/// The V1 notification string: `sign` and `sign_type` dropped, then as `canonical`.
pub fn notice_canonical(params: &[(String, String)]) -> String {
    let rest: Params = params
        .iter()
        .filter(|(k, _)| k != "sign_type")
        .cloned()
        .collect();
    canonical(&rest)
}

/// A JSON string literal as Alipay writes it: `/` as `\/`, non-ASCII raw UTF-8.
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `{"k":"v",...}` with the given separators.
fn json_object(fields: &[(String, String)], comma: &str, colon: &str) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}{colon}{}", json_str(k), json_str(v)))
        .collect();
    format!("{{{}}}", parts.join(comma))
}

fn pairs(items: &[(&str, &str)]) -> Params {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form::get(params, name)
}

/// `code 10000, msg Success` and `extra`.
fn success(extra: &[(&str, &str)]) -> Params {
    let mut f = pairs(&[("code", "10000"), ("msg", "Success")]);
    f.extend(pairs(extra));
    f
}

/// A failure answer, its `msg` from `code`.
fn failure(code: &str, sub_code: &str, sub_msg: &str) -> Params {
    let msg = match code {
        "20000" => "Service Currently Unavailable",
        "20001" => "Insufficient Token Permissions",
        "40001" => "Missing Required Arguments",
        "40002" => "Invalid Arguments",
        "40003" => "Insufficient Conditions",
        "40006" => "Insufficient Permissions",
        _ => "Business Failed",
    };
    pairs(&[
        ("code", code),
        ("msg", msg),
        ("sub_code", sub_code),
        ("sub_msg", sub_msg),
    ])
}

/// A `40004 Business Failed`.
fn fail(sub_code: &str, sub_msg: &str) -> Params {
    failure("40004", sub_code, sub_msg)
}

fn invalid_parameter(what: &str) -> Params {
    fail("ACQ.INVALID_PARAMETER", &format!("参数无效: {what}"))
}

/// A field of `biz_content` as text (Alipay takes amounts as strings or numbers).
fn biz_text(biz: &Value, key: &str) -> Option<String> {
    match &biz[key] {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn respond(req: tiny_http::Request, body: String) {
    let h = tiny_http::Header::from_bytes("Content-Type", HTML).unwrap();
    let _ = req.respond(tiny_http::Response::from_string(body).with_header(h));
}

/// A JSON answer: the node's name and its fields.
struct Answer {
    node: String,
    fields: Params,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the next `FakeAlipay::release`; false when the fake stops first.
    fn hold(&self) -> bool {
        let lock = || self.releases.lock().unwrap_or_else(|e| e.into_inner());
        let mut releases = lock();
        let start = *releases;
        while *releases == start {
            drop(releases);
            if self.is_stopped() {
                return false;
            }
            releases = lock();
            let timeout = Duration::from_millis(50);
            let r = self.released.wait_timeout(releases, timeout);
            releases = r.unwrap_or_else(|e| e.into_inner()).0;
        }
        true
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
            let r = self.wake.wait_timeout(stopped, deadline - now);
            stopped = r.unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    fn handle(&self, mut req: tiny_http::Request) {
        let mut body = String::new();
        let _ = req.as_reader().read_to_string(&mut body);
        let url = req.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        if path != "/gateway.do" {
            let _ =
                req.respond(tiny_http::Response::from_string("Not Found").with_status_code(404));
            return;
        }
        let mut params = Params::new();
        for (k, v) in form::parse(query).into_iter().chain(form::parse(&body)) {
            if !params.iter().any(|(n, _)| *n == k) {
                params.push((k, v));
            }
        }
        let method = get(&params, "method").unwrap_or("").to_string();
        {
            let mut st = self.state();
            *st.calls.entry(method.clone()).or_default() += 1;
            st.last.insert(method.clone(), params.clone());
            if method == "alipay.trade.refund" {
                let biz = serde_json::from_str(get(&params, "biz_content").unwrap_or(""));
                let no = biz_text(&biz.unwrap_or(Value::Null), "out_trade_no");
                let times = st.refund_calls.entry(no.unwrap_or_default()).or_default();
                times.push(now_ms());
            }
        }
        if let Err(answer) = self.check(&method, &params) {
            return respond(req, self.render(&answer, &Mode::Normal));
        }
        if method.ends_with(".pay") {
            let html = match self.page_order(&method, &params) {
                Ok(no) => format!("<html><body><h1>支付宝收银台</h1><p>{no}</p></body></html>"),
                Err(f) => format!(
                    "<html><body><h1>支付宝 - 错误</h1><p>{}</p></body></html>",
                    f[2].1
                ),
            };
            return respond(req, html);
        }
        let mode = self.take_mode(&method);
        let fields = match &mode {
            Mode::Fail {
                code,
                sub_code,
                sub_msg,
                ..
            } => failure(code, sub_code, sub_msg),
            Mode::RetryThenNormal(n) if *n > 0 => {
                let mut f = fail("ACQ.SYSTEM_ERROR", "系统错误");
                if method == "alipay.trade.cancel" {
                    f.push(("retry_flag".into(), "Y".into()));
                }
                f
            }
            _ => self.operate(&method, &params, mode == Mode::Unconfirmed),
        };
        if mode == Mode::Hang {
            while !self.sleep(Duration::from_secs(3600)) {}
            return; // the request is dropped, unanswered, only now
        }
        if mode == Mode::Held && !self.hold() {
            return; // the fake stopped first: dropped, unanswered
        }
        let node = format!("{}_response", method.replace('.', "_"));
        respond(req, self.render(&Answer { node, fields }, &mode));
    }

    /// The mode for this call; a `RetryThenNormal` counts down.
    fn take_mode(&self, method: &str) -> Mode {
        let mut st = self.state();
        let mode = st.modes.get(method).cloned().unwrap_or(Mode::Normal);
        if let Mode::RetryThenNormal(n @ 1..) = mode {
            st.modes.insert(method.into(), Mode::RetryThenNormal(n - 1));
        }
        mode
    }

    /// The protocol checks, in the gateway's order; `Err` is the error answer.
    fn check(&self, method: &str, params: &[(String, String)]) -> Result<(), Answer> {
        let err = |node: &str, fields| {
            Err(Answer {
                node: node.into(),
                fields,
            })
        };
        if method.is_empty() {
            let f = failure("40001", "isv.missing-method", "缺少方法名参数");
            return err("error_response", f);
        }
        if !METHODS.contains(&method) {
            return err(
                "error_response",
                failure("40002", "isv.invalid-method", "不存在的方法名"),
            );
        }
        let node = format!("{}_response", method.replace('.', "_"));
        let missing = |name: &str| get(params, name).is_none_or(str::is_empty);
        if missing("sign") {
            self.state().bad_signatures += 1;
        }
        if let Some((_, sub, text)) = REQUIRED.iter().find(|(name, ..)| missing(name)) {
            return err(&node, failure("40001", sub, text));
        }
        let p = |name| get(params, name).unwrap_or("");
        let invalid = |sub, text: &str| err(&node, failure("40002", sub, text));
        if p("app_id") != self.app_id {
            return invalid("isv.invalid-app-id", "无效的AppID参数");
        }
        if p("sign_type") != "RSA2" {
            return invalid("isv.invalid-signature-type", "无效的签名类型");
        }
        if !missing("charset") && !p("charset").eq_ignore_ascii_case("utf-8") {
            return invalid("isv.invalid-charset", "字符集错误");
        }
        if !missing("format") && !p("format").eq_ignore_ascii_case("json") {
            return invalid("isv.invalid-format", "无效的数据格式");
        }
        if sys::parse_time(p("timestamp"), UtcOffset::CST).is_none() {
            return invalid("isv.invalid-timestamp", "非法的时间戳参数");
        }
        let text = canonical(params);
        if !self.app_public.verify_b64(text.as_bytes(), p("sign")) {
            self.state().bad_signatures += 1;
            let hint = "建议检查签名字符串或签名私钥与应用公钥是否匹配";
            return invalid(
                "isv.invalid-signature",
                &format!("验签出错, {hint}, 网关生成的验签字符串为: {text}"),
            );
        }
        Ok(())
    }

    /// The reply body of `a`, as `mode` shapes it.
    fn render(&self, a: &Answer, mode: &Mode) -> String {
        let inner = json_object(&a.fields, ",", ":");
        let sign = self.gateway_key.sign_b64(inner.as_bytes());
        let node = json_str(&a.node);
        match mode {
            Mode::Unsigned | Mode::Fail { signed: false, .. } => format!("{{{node}:{inner}}}"),
            Mode::ForgedSign => {
                let forged = self.gateway_key.sign_b64(format!("{inner}x").as_bytes());
                format!("{{{node}:{inner},\"sign\":\"{forged}\"}}")
            }
            Mode::Reserialised => {
                let re = json_object(&a.fields, ", ", ": ");
                format!("{{{node}:{re},\"sign\":\"{sign}\"}}")
            }
            Mode::DuplicateNode => format!("{{{node}:{inner},{node}:{inner},\"sign\":\"{sign}\"}}"),
            _ => format!("{{{node}:{inner},\"sign\":\"{sign}\"}}"),
        }
    }

    /// A verified API call's effect, and its answer's fields; `unconfirmed`: a new refund is
    /// booked without being confirmed.
    fn operate(&self, method: &str, params: &[(String, String)], unconfirmed: bool) -> Params {
        let biz: Value = match serde_json::from_str(get(params, "biz_content").unwrap_or("")) {
            Ok(v @ Value::Object(_)) => v,
            _ => return failure("40002", "isv.invalid-parameter", "参数无效: biz_content"),
        };
        if method == "alipay.trade.precreate" {
            return match self.record(params, &biz) {
                Ok(order) => success(&[("out_trade_no", &order.0), ("qr_code", &order.1)]),
                Err(f) => f,
            };
        }
        let mut st = self.state();
        // By out_trade_no, else by trade_no ("" when no trade has it).
        let key = biz_text(&biz, "out_trade_no").or_else(|| {
            let t = biz_text(&biz, "trade_no")?;
            let mut orders = st.orders.values();
            let o = orders.find(|o| o.trade.as_ref().is_some_and(|tr| tr.trade_no == t));
            Some(o.map(|o| o.out_trade_no.clone()).unwrap_or_default())
        });
        let Some(key) = key else {
            return invalid_parameter("out_trade_no");
        };
        let Some(o) = st.orders.get_mut(&key).filter(|o| o.trade.is_some()) else {
            return match method {
                "alipay.trade.cancel" if !key.is_empty() => {
                    success(&[("out_trade_no", &key), ("retry_flag", "N")])
                }
                _ => fail("ACQ.TRADE_NOT_EXIST", "交易不存在"),
            };
        };
        settle(o);
        let t = o.trade.as_mut().unwrap();
        let ids = [
            ("out_trade_no", o.out_trade_no.as_str()),
            ("trade_no", t.trade_no.as_str()),
        ];
        match method {
            "alipay.trade.refund" => book_refund(o, &biz, unconfirmed),
            "alipay.trade.fastpay.refund.query" => refund_state(o, &biz),
            "alipay.trade.query" => {
                let paid = t.paid_ms.map(|_| yuan(o.cents)).unwrap_or("0.00".into());
                let send_pay_date = t.paid_ms.map(cst).unwrap_or_default();
                #[rustfmt::skip]
                let f = success(&[
                    ("buyer_logon_id", BUYER_LOGON_ID), ("buyer_pay_amount", &paid),
                    ("buyer_user_id", BUYER_ID), ("invoice_amount", &paid),
                    ("out_trade_no", &o.out_trade_no), ("point_amount", "0.00"),
                    ("receipt_amount", &paid), ("send_pay_date", &send_pay_date),
                    ("total_amount", &yuan(o.cents)), ("trade_no", &t.trade_no),
                    ("trade_status", &t.status),
                ]);
                f.into_iter().filter(|(_, v)| !v.is_empty()).collect()
            }
            "alipay.trade.close" if t.status != "WAIT_BUYER_PAY" => {
                fail("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            }
            "alipay.trade.close" => {
                let f = success(&ids);
                t.status = "TRADE_CLOSED".into();
                f
            }
            _ => {
                // alipay.trade.cancel: close an unpaid trade, refund a paid one.
                let paid = matches!(t.status.as_str(), "TRADE_SUCCESS" | "TRADE_FINISHED");
                let mut f = success(&[("action", if paid { "refund" } else { "close" })]);
                if paid {
                    f.push(("gmt_refund_pay".into(), cst(now_ms())));
                }
                f.extend(pairs(&[ids[0], ("retry_flag", "N"), ids[1]]));
                t.status = "TRADE_CLOSED".into();
                f
            }
        }
    }

    /// Records the order of a precreate or page call: (out_trade_no, qr_code), or a failure.
    fn record(&self, params: &[(String, String)], biz: &Value) -> Result<(String, String), Params> {
        let field = |k| biz_text(biz, k).ok_or_else(|| invalid_parameter(k));
        let out_trade_no = field("out_trade_no")?;
        let amount = field("total_amount")?;
        let cents = parse_cents(&amount).ok_or_else(|| invalid_parameter("total_amount"))?;
        let subject = field("subject")?;
        let expire_ms = match biz_text(biz, "time_expire") {
            None => None,
            Some(t) => {
                Some(sys::parse_time(&t, UtcOffset::CST).ok_or(invalid_parameter("time_expire"))?)
            }
        };
        let mut st = self.state();
        if let Some(o) = st.orders.get_mut(&out_trade_no) {
            settle(o);
            let status = o.trade.as_ref().map(|t| t.status.as_str());
            return match status {
                Some("TRADE_SUCCESS" | "TRADE_FINISHED") => {
                    Err(fail("ACQ.TRADE_HAS_SUCCESS", "交易已被支付"))
                }
                Some("TRADE_CLOSED") => Err(fail("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")),
                _ if o.dead => Err(fail("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")),
                _ if o.cents != cents => Err(fail("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")),
                _ => Ok((out_trade_no, o.qr_code.clone())),
            };
        }
        let qr_code = format!(
            "https://qr.alipay.com/bax0{:06}{:05x}",
            seq(),
            now_ms() % 0xfffff
        );
        let notify_url = get(params, "notify_url")
            .filter(|u| !u.is_empty())
            .map(String::from);
        let order = Order {
            out_trade_no: out_trade_no.clone(),
            cents,
            subject,
            expire_ms,
            notify_url,
            qr_code: qr_code.clone(),
            dead: false,
            trade: None,
        };
        st.orders.insert(out_trade_no.clone(), order);
        Ok((out_trade_no, qr_code))
    }

    /// A wap/page pay URL opened by the buyer: the order is recorded; its out_trade_no.
    fn page_order(&self, method: &str, params: &[(String, String)]) -> Result<String, Params> {
        let biz: Value = serde_json::from_str(get(params, "biz_content").unwrap_or(""))
            .map_err(|_| failure("40002", "isv.invalid-parameter", "参数无效: biz_content"))?;
        let product = match method {
            "alipay.trade.wap.pay" => "QUICK_WAP_WAY",
            _ => "FAST_INSTANT_TRADE_PAY",
        };
        if biz["product_code"].as_str() != Some(product) {
            return Err(invalid_parameter("product_code"));
        }
        Ok(self.record(params, &biz)?.0)
    }

    /// Sends `params` to `url` on the schedule until `200 success`, recording every attempt.
    fn spawn_notifier(self: &Arc<Self>, out_trade_no: &str, url: String, params: Params) {
        let (me, no) = (self.clone(), out_trade_no.to_string());
        let waits = self.state().schedule.clone();
        thread::spawn(move || {
            for attempt in 0..=waits.len() {
                if me.is_stopped() || (attempt > 0 && me.sleep(waits[attempt - 1])) {
                    return;
                }
                let (status, body) = FakeAlipay::post_notice(&url, &params);
                let done = status == 200 && body == "success";
                me.state()
                    .notices
                    .entry(no.clone())
                    .or_default()
                    .push((status, body));
                if done {
                    return;
                }
            }
        });
    }
}

/// `alipay.trade.refund` of the order's trade: books the refund (or answers a repeat).
fn book_refund(o: &mut Order, biz: &Value, unconfirmed: bool) -> Params {
    let t = o.trade.as_mut().unwrap();
    if t.paid_ms.is_none() {
        return fail("ACQ.TRADE_STATUS_ERROR", "交易状态不合法");
    }
    if t.status == "TRADE_FINISHED" {
        return fail("ACQ.TRADE_HAS_FINISHED", "交易已完结");
    }
    let Some(cents) = biz_text(biz, "refund_amount").and_then(|a| parse_cents(&a)) else {
        return invalid_parameter("refund_amount");
    };
    // Alipay's default request number is the trade's own (a full refund at once).
    let request_no = biz_text(biz, "out_request_no").unwrap_or_else(|| o.out_trade_no.clone());
    let booked: u64 = t.refunds.iter().map(|r| r.cents).sum();
    let known = t
        .refunds
        .iter()
        .position(|r| r.out_request_no == request_no);
    let fund_change = match known {
        Some(i) if t.refunds[i].cents != cents => {
            return fail("ACQ.DISCORDANT_REPEAT_REQUEST", "请求信息不一致")
        }
        Some(_) => "N",
        None if booked + cents > o.cents => {
            return fail("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限")
        }
        None => {
            let now = now_ms();
            t.refunds.push(FakeRefund {
                out_request_no: request_no.clone(),
                cents,
                reason: biz_text(biz, "refund_reason"),
                at_ms: now,
                paid_ms: (!unconfirmed).then_some(now),
            });
            if booked + cents == o.cents {
                t.status = "TRADE_CLOSED".into();
            }
            if unconfirmed {
                "N"
            } else {
                "Y"
            }
        }
    };
    let r = t.refunds.iter().find(|r| r.out_request_no == request_no);
    let gmt_refund_pay = r.and_then(|r| r.paid_ms).map(cst).unwrap_or_default();
    let refunded = t.refunds.iter().map(|r| r.cents).sum();
    #[rustfmt::skip]
    let f = success(&[
        ("buyer_logon_id", BUYER_LOGON_ID), ("buyer_user_id", BUYER_ID),
        ("fund_change", fund_change), ("gmt_refund_pay", &gmt_refund_pay),
        ("out_trade_no", &o.out_trade_no), ("refund_fee", &yuan(refunded)),
        ("send_back_fee", &yuan(cents)), ("trade_no", &t.trade_no),
    ]);
    f.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

/// `alipay.trade.fastpay.refund.query` of one request number of the order's trade.
fn refund_state(o: &Order, biz: &Value) -> Params {
    let t = o.trade.as_ref().unwrap();
    let request_no = biz_text(biz, "out_request_no").unwrap_or_else(|| o.out_trade_no.clone());
    let mut f = success(&[
        ("out_request_no", &request_no),
        ("out_trade_no", &o.out_trade_no),
        ("trade_no", &t.trade_no),
    ]);
    let found = t.refunds.iter().find(|r| r.out_request_no == request_no);
    // Unknown, or not confirmed yet: "退款请求未收到或者退款失败" — no refund_status.
    let Some((r, paid_ms)) = found.and_then(|r| Some((r, r.paid_ms?))) else {
        return f;
    };
    let options = biz["query_options"].as_array().cloned().unwrap_or_default();
    let asked = |what: &str| options.iter().any(|v| v == what);
    f.extend(pairs(&[
        ("refund_amount", &yuan(r.cents)),
        ("refund_status", "REFUND_SUCCESS"),
        ("total_amount", &yuan(o.cents)),
    ]));
    if let Some(reason) = &r.reason {
        f.push(("refund_reason".into(), reason.clone()));
    }
    if asked("gmt_refund_pay") {
        f.push(("gmt_refund_pay".into(), cst(paid_ms)));
    }
    f
}

/// A trade past its `time_expire` and still unpaid is closed by Alipay.
fn settle(o: &mut Order) {
    if let (Some(t), Some(exp)) = (o.trade.as_mut(), o.expire_ms) {
        if t.status == "WAIT_BUYER_PAY" && now_ms() >= exp {
            t.status = "TRADE_CLOSED".into();
        }
    }
}

/// The trade of a scan/login: created WAIT_BUYER_PAY unless it exists; refused after expiry.
fn open_trade(o: &mut Order) -> Result<(), String> {
    if o.trade.is_some() {
        return Ok(());
    }
    let now = now_ms();
    if o.dead || o.expire_ms.is_some_and(|e| now >= e) {
        let no = &o.out_trade_no;
        return Err(format!(
            "the order {no} is past its time_expire: Alipay refuses the buyer"
        ));
    }
    let date = &sys::format_compact(now, UtcOffset::CST)[..8];
    let n = (now as u64 % 1_000_000_000) * 1000 + seq() % 1000;
    let trade_no = format!("{date}22001{n:015}");
    let status = "WAIT_BUYER_PAY".into();
    o.trade = Some(Trade {
        trade_no,
        status,
        created_ms: now,
        paid_ms: None,
        notice: None,
        refunds: Vec::new(),
    });
    Ok(())
}

fn notify_id(now: i64) -> String {
    let date = &sys::format_compact(now, UtcOffset::CST)[..8];
    format!(
        "{date}00222{:010}{:011}",
        now as u64 % 10_000_000_000,
        seq()
    )
}

impl FakeAlipay {
    /// Starts the fake on `127.0.0.1:0` for the Alipay app `alipay_app_id`.
    pub fn start(alipay_app_id: &str) -> FakeAlipay {
        let app_public = PublicKey::parse(&fixture("app-public-key.pem")).unwrap();
        let gateway_key = PrivateKey::parse(&fixture("gateway-private-key-pkcs8.pem")).unwrap();
        let schedule = [200, 400, 800, 1600].map(Duration::from_millis).to_vec();
        let shared = Arc::new(Shared {
            app_id: alipay_app_id.to_string(),
            app_public,
            gateway_key,
            state: Mutex::new(State {
                schedule,
                ..State::default()
            }),
            stopped: Mutex::new(false),
            wake: Condvar::new(),
            releases: Mutex::new(0),
            released: Condvar::new(),
        });
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind the fake"));
        let url = format!(
            "http://{}/gateway.do",
            server.server_addr().to_ip().unwrap()
        );
        let (srv, sh) = (server.clone(), shared.clone());
        thread::spawn(move || {
            for req in srv.incoming_requests() {
                let sh = sh.clone();
                thread::spawn(move || sh.handle(req));
            }
        });
        FakeAlipay {
            url,
            shared,
            server,
        }
    }

    pub fn set_mode(&self, method: &str, mode: Mode) {
        self.shared.state().modes.insert(method.to_string(), mode);
    }

    /// Lets every answer that `Mode::Held` holds now go.
    pub fn release(&self) {
        *self
            .shared
            .releases
            .lock()
            .unwrap_or_else(|e| e.into_inner()) += 1;
        self.shared.released.notify_all();
    }

    /// Requests received for `method`, verified or not.
    pub fn calls(&self, method: &str) -> usize {
        self.shared.state().calls.get(method).copied().unwrap_or(0)
    }

    /// The merged, decoded query and form parameters of the last call of `method`.
    pub fn last_params(&self, method: &str) -> Option<Vec<(String, String)>> {
        self.shared.state().last.get(method).cloned()
    }

    /// Requests whose signature was missing or did not verify.
    pub fn bad_signatures(&self) -> usize {
        self.shared.state().bad_signatures
    }

    /// Runs `f` on the recorded order; panics (after releasing the lock) when there is none or
    /// `f` fails.
    fn with_order<T>(
        &self,
        no: &str,
        what: &str,
        f: impl FnOnce(&mut Order) -> Result<T, String>,
    ) -> T {
        let r = match self.shared.state().orders.get_mut(no) {
            None => Err(format!(
                "{what}({no}): the fake Alipay has no precreate/page order"
            )),
            Some(o) => {
                settle(o);
                f(o)
            }
        };
        r.unwrap_or_else(|e| panic!("{what}({no}): {e}"))
    }

    /// The buyer scans the QR code (or logs in on the page): the trade exists, WAIT_BUYER_PAY.
    /// Panics past `time_expire` or after `expire_trade`.
    pub fn scan(&self, out_trade_no: &str) {
        self.with_order(out_trade_no, "scan", open_trade);
    }

    /// The buyer pays: the trade is created if needed and becomes TRADE_SUCCESS; the payment
    /// notice goes to the order's `notify_url` (when there is one) in the background. Returns
    /// the trade_no. Panics when the trade is not payable (expired, closed, paid).
    pub fn pay(&self, out_trade_no: &str) -> String {
        let app_id = self.shared.app_id.clone();
        let (url, notice) = self.with_order(out_trade_no, "pay", |o| {
            open_trade(o)?;
            let (amount, subject, url) = (yuan(o.cents), o.subject.clone(), o.notify_url.clone());
            let t = o.trade.as_mut().unwrap();
            if t.status != "WAIT_BUYER_PAY" {
                return Err(format!(
                    "the trade is {}; Alipay refuses the buyer",
                    t.status
                ));
            }
            let now = now_ms();
            t.status = "TRADE_SUCCESS".into();
            t.paid_ms = Some(now);
            let fund = format!("[{{\"amount\":\"{amount}\",\"fundChannel\":\"ALIPAYACCOUNT\"}}]");
            #[rustfmt::skip]
            let notice = pairs(&[
                ("gmt_create", &cst(t.created_ms)), ("charset", "utf-8"),
                ("gmt_payment", &cst(now)), ("notify_time", &cst(now)), ("subject", &subject),
                ("buyer_id", BUYER_ID), ("buyer_logon_id", BUYER_LOGON_ID),
                ("invoice_amount", &amount), ("version", "1.0"), ("notify_id", &notify_id(now)),
                ("fund_bill_list", &fund), ("notify_type", "trade_status_sync"),
                ("out_trade_no", out_trade_no), ("total_amount", &amount),
                ("trade_status", "TRADE_SUCCESS"), ("trade_no", &t.trade_no),
                ("auth_app_id", &app_id), ("receipt_amount", &amount), ("point_amount", "0.00"),
                ("app_id", &app_id), ("buyer_pay_amount", &amount), ("seller_id", SELLER_ID),
            ]);
            t.notice = Some(self.signed_notice(notice));
            Ok((url, t.notice.clone().unwrap()))
        });
        if let Some(url) = url {
            self.shared
                .spawn_notifier(out_trade_no, url, notice.clone());
        }
        get(&notice, "trade_no").unwrap().to_string()
    }

    /// Sends one more notice for a paid trade: the payment notice's fields with `changes`
    /// applied (an empty value removes the field), a new `notify_id` and `notify_time`, signed
    /// and retried like the first (e.g. a refund: `refund_fee`, `gmt_refund`, `out_biz_no`; or
    /// `trade_status` `TRADE_CLOSED`). Returns the params sent.
    pub fn notify(&self, out_trade_no: &str, changes: &[(&str, &str)]) -> Vec<(String, String)> {
        let (url, mut p) = self.with_order(out_trade_no, "notify", |o| {
            let notice = o.trade.as_ref().and_then(|t| t.notice.clone());
            Ok((
                o.notify_url.clone(),
                notice.ok_or("the trade was not paid")?,
            ))
        });
        let now = now_ms();
        let mut set = |k: &str, v: &str| {
            p.retain(|(n, _)| n != k);
            if !v.is_empty() {
                p.push((k.into(), v.into()));
            }
        };
        set("notify_id", &notify_id(now));
        set("notify_time", &cst(now));
        changes.iter().for_each(|(k, v)| set(k, v));
        let p = self.signed_notice(p);
        if let Some(url) = url {
            self.shared.spawn_notifier(out_trade_no, url, p.clone());
        }
        p
    }

    /// `p` without any `sign`/`sign_type`, then with its V1 `sign` and `sign_type=RSA2`.
    fn signed_notice(&self, mut p: Params) -> Params {
        p.retain(|(k, _)| k != "sign" && k != "sign_type");
        p.push(("sign".into(), self.sign_notice(&p)));
        p.push(("sign_type".into(), "RSA2".into()));
        p
    }

    /// The waits between notice attempts (for notices started afterwards): one attempt, then
    /// one more after each wait, then it stops. Default 200, 400, 800, 1600 ms (5 attempts).
    pub fn set_notify_schedule(&self, waits: Vec<Duration>) {
        self.shared.state().schedule = waits;
    }

    /// Every notice attempt for the trade, in order: (HTTP status, or 0 when there was no HTTP
    /// answer; the reply body, or the error).
    pub fn notifications(&self, out_trade_no: &str) -> Vec<(u16, String)> {
        let st = self.shared.state();
        st.notices.get(out_trade_no).cloned().unwrap_or_default()
    }

    /// WAIT_BUYER_PAY / TRADE_SUCCESS / TRADE_CLOSED / TRADE_FINISHED; `None`: no trade.
    pub fn trade_status(&self, out_trade_no: &str) -> Option<String> {
        let mut st = self.shared.state();
        let o = st.orders.get_mut(out_trade_no)?;
        settle(o);
        o.trade.as_ref().map(|t| t.status.clone())
    }

    /// The payment notice of a paid trade, `sign` and `sign_type` included.
    pub fn notice_params(&self, out_trade_no: &str) -> Vec<(String, String)> {
        self.with_order(out_trade_no, "notice_params", |o| {
            let notice = o.trade.as_ref().and_then(|t| t.notice.clone());
            notice.ok_or("the trade was not paid".into())
        })
    }

    /// The V1 signature of `params` with the gateway key.
    pub fn sign_notice(&self, params: &[(String, String)]) -> String {
        self.shared
            .gateway_key
            .sign_b64(notice_canonical(params).as_bytes())
    }

    /// One form-encoded POST of `params` to `url` (5 s timeout, no retry): (status, body), or
    /// (0, the error) when there was no HTTP answer.
    pub fn post_notice(url: &str, params: &[(String, String)]) -> (u16, String) {
        let enc = |(k, v): &(String, String)| format!("{}={}", form::encode(k), form::encode(v));
        let body: Vec<String> = params.iter().map(enc).collect();
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        let r = agent
            .post(url)
            .set(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .send_string(&body.join("&"));
        match r {
            Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    /// Alipay closes the trade itself (timeout): a waiting trade becomes TRADE_CLOSED without
    /// `send_pay_date`; an order nobody scanned can no longer be scanned or paid (query still
    /// answers TRADE_NOT_EXIST). Panics for a paid trade.
    pub fn expire_trade(&self, out_trade_no: &str) {
        self.with_order(out_trade_no, "expire_trade", |o| {
            match o.trade.as_mut() {
                None => o.dead = true,
                Some(t) if t.status == "WAIT_BUYER_PAY" => t.status = "TRADE_CLOSED".into(),
                Some(t) if t.status == "TRADE_CLOSED" => {}
                Some(t) => return Err(format!("the trade is {}", t.status)),
            }
            Ok(())
        })
    }

    /// The same as `expire_trade`.
    pub fn close_trade(&self, out_trade_no: &str) {
        self.expire_trade(out_trade_no)
    }

    /// The refund book of the trade, oldest first (empty when there is no trade).
    pub fn refunds(&self, out_trade_no: &str) -> Vec<FakeRefund> {
        let st = self.shared.state();
        let trade = st.orders.get(out_trade_no).and_then(|o| o.trade.as_ref());
        trade.map(|t| t.refunds.clone()).unwrap_or_default()
    }

    /// Alipay pays an unconfirmed refund out: the query reports it from now on. Panics when
    /// the trade has no such refund.
    pub fn confirm_refund(&self, out_trade_no: &str, out_request_no: &str) {
        self.with_order(out_trade_no, "confirm_refund", |o| {
            let t = o.trade.as_mut().ok_or("no trade")?;
            let r = t
                .refunds
                .iter_mut()
                .find(|r| r.out_request_no == out_request_no);
            let r = r.ok_or_else(|| format!("no refund {out_request_no}"))?;
            r.paid_ms.get_or_insert_with(now_ms);
            Ok(())
        })
    }

    /// A refund made outside the API (in Alipay's merchant console, say): booked and paid at
    /// once, under `out_request_no`, without any call. Panics past the trade's amount.
    pub fn refund_outside(&self, out_trade_no: &str, out_request_no: &str, cents: u64) {
        self.with_order(out_trade_no, "refund_outside", |o| {
            let total = o.cents;
            let t = o.trade.as_mut().filter(|t| t.paid_ms.is_some());
            let t = t.ok_or("the trade was not paid")?;
            let booked: u64 = t.refunds.iter().map(|r| r.cents).sum();
            if booked + cents > total {
                return Err("past the trade's amount".into());
            }
            let now = now_ms();
            t.refunds.push(FakeRefund {
                out_request_no: out_request_no.into(),
                cents,
                reason: None,
                at_ms: now,
                paid_ms: Some(now),
            });
            if booked + cents == total {
                t.status = "TRADE_CLOSED".into();
            }
            Ok(())
        })
    }

    /// Sends the refund notice of a paid-out refund of the book, as Alipay does: the payment
    /// notice's fields with `refund_fee` (all paid-out refunds of the trade), `gmt_refund` (with
    /// milliseconds), `out_biz_no`; `trade_status` `TRADE_CLOSED` and `gmt_close` once the
    /// trade is refunded in full. Retried like any notice; returns the params sent. Panics for
    /// a refund that is not booked or not paid out.
    pub fn refund_notice(&self, out_trade_no: &str, out_request_no: &str) -> Params {
        let (refund_fee, paid_ms, closed) = self.with_order(out_trade_no, "refund_notice", |o| {
            let t = o.trade.as_ref().ok_or("no trade")?;
            let r = t
                .refunds
                .iter()
                .find(|r| r.out_request_no == out_request_no);
            let paid_ms = r.and_then(|r| r.paid_ms).ok_or("no such paid-out refund")?;
            let paid: u64 = t
                .refunds
                .iter()
                .filter(|r| r.paid_ms.is_some())
                .map(|r| r.cents)
                .sum();
            Ok((yuan(paid), paid_ms, paid == o.cents))
        });
        let gmt = format!("{}.{:03}", cst(paid_ms), paid_ms.rem_euclid(1000));
        let mut changes = vec![
            ("refund_fee", refund_fee.as_str()),
            ("gmt_refund", gmt.as_str()),
            ("out_biz_no", out_request_no),
        ];
        if closed {
            changes.push(("trade_status", "TRADE_CLOSED"));
            changes.push(("gmt_close", &gmt[..19]));
        }
        self.notify(out_trade_no, &changes)
    }

    /// Calls of `alipay.trade.refund` for the trade less than 3 s after the one before.
    pub fn refund_spacing_violations(&self, out_trade_no: &str) -> usize {
        let st = self.shared.state();
        let times = st
            .refund_calls
            .get(out_trade_no)
            .cloned()
            .unwrap_or_default();
        times.windows(2).filter(|w| w[1] - w[0] < 3000).count()
    }

    /// When `alipay.trade.refund` was called for the trade (every call).
    pub fn refund_call_times(&self, out_trade_no: &str) -> Vec<i64> {
        let st = self.shared.state();
        st.refund_calls
            .get(out_trade_no)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for FakeAlipay {
    fn drop(&mut self) {
        *self
            .shared
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        self.server.unblock();
    }
}

// ---------------------------------------------------------------------------------------------
// Self-tests of the fake, over HTTP
// ---------------------------------------------------------------------------------------------

const APP: &str = "2021000122671080";
const HOUR_MS: i64 = 3_600_000;

fn app_key() -> PrivateKey {
    PrivateKey::parse(&fixture("app-private-key.pem")).unwrap()
}

fn gateway_public() -> PublicKey {
    PublicKey::parse(&fixture("gateway-public-key.pem")).unwrap()
}

/// The protocol parameters of a call, unsigned.
fn request_params(method: &str, biz: &str) -> Params {
    #[rustfmt::skip]
    let p = pairs(&[
        ("app_id", APP), ("method", method), ("format", "json"), ("charset", "utf-8"),
        ("sign_type", "RSA2"), ("timestamp", &cst(now_ms())), ("version", "1.0"),
        ("biz_content", biz),
    ]);
    p
}

/// POSTs `params` as the SDKs do (protocol parameters in the query, `biz_content` in the
/// body), signed with the app key unless a `sign` is there already.
fn signed_request(agent: &ureq::Agent, url: &str, mut params: Params) -> Option<ureq::Response> {
    if get(&params, "sign").is_none() {
        params.push((
            "sign".into(),
            app_key().sign_b64(canonical(&params).as_bytes()),
        ));
    }
    let enc = |(k, v): &(String, String)| format!("{}={}", form::encode(k), form::encode(v));
    let (biz, query): (Params, Params) = params.into_iter().partition(|(k, _)| k == "biz_content");
    let query: Vec<String> = query.iter().map(enc).collect();
    let body: Vec<String> = biz.iter().map(enc).collect();
    agent
        .post(&format!("{url}?{}", query.join("&")))
        .set(
            "Content-Type",
            "application/x-www-form-urlencoded;charset=utf-8",
        )
        .send_string(&body.join("&"))
        .ok()
}

/// The raw reply body of a signed request.
fn send(fake: &FakeAlipay, params: Params) -> String {
    let resp = signed_request(&ureq::agent(), &fake.url, params).expect("the fake answers 200");
    assert_eq!(resp.header("Content-Type"), Some(HTML));
    resp.into_string().unwrap()
}

/// Java-style extraction: the `{…}` after `"node"`, braces matched outside strings; `None` when
/// absent or when the node's name occurs again after it.
fn node_text<'a>(body: &'a str, node: &str) -> Option<&'a str> {
    let key = format!("\"{node}\"");
    let open = body.find(&key)? + key.len();
    let open = open + body[open..].find('{')?;
    let (mut depth, mut in_str, mut esc) = (0, false, false);
    for (i, &b) in body.as_bytes().iter().enumerate().skip(open) {
        match (in_str, esc, b) {
            (true, true, _) => esc = false,
            (true, false, b'\\') => esc = true,
            (true, false, b'"') => in_str = false,
            (true, ..) => {}
            (false, _, b'"') => in_str = true,
            (false, _, b'{') => depth += 1,
            (false, _, b'}') => {
                depth -= 1;
                if depth == 0 {
                    return (!body[i + 1..].contains(&key)).then(|| &body[open..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The node of `method`'s reply, its signature checked with the gateway key, parsed.
#[track_caller]
fn verified(body: &str, method: &str) -> Value {
    let node = format!("{}_response", method.replace('.', "_"));
    let text = node_text(body, &node).unwrap_or_else(|| panic!("no single {node} in {body}"));
    let v: Value = serde_json::from_str(body).unwrap();
    let sign = v["sign"]
        .as_str()
        .unwrap_or_else(|| panic!("unsigned: {body}"));
    assert!(
        gateway_public().verify_b64(text.as_bytes(), sign),
        "signature of {body}"
    );
    serde_json::from_str(text).unwrap()
}

/// Asserts `v` has the fields of `spec` (`k=v` separated by spaces; `k=` for absent).
#[track_caller]
fn has(v: &Value, spec: &str) {
    for kv in spec.split(' ') {
        let (k, want) = kv.split_once('=').unwrap();
        let got = v.get(k).map(|x| x.as_str().unwrap_or("(not a string)"));
        assert_eq!(got, Some(want).filter(|w| !w.is_empty()), "{k} in {v}");
    }
}

fn call(fake: &FakeAlipay, method: &str, out_trade_no: &str) -> Value {
    let body = send(
        fake,
        request_params(method, &format!("{{\"out_trade_no\":\"{out_trade_no}\"}}")),
    );
    verified(&body, method)
}

fn precreate(fake: &FakeAlipay, no: &str, expire_ms: i64, notify_url: &str) -> (String, Value) {
    let (subject, expire) = ("语雀空间 500人规模", cst(expire_ms));
    let biz = format!(
        r#"{{"out_trade_no":"{no}","total_amount":"0.10","subject":"{subject}","time_expire":"{expire}"}}"#
    );
    let mut p = request_params("alipay.trade.precreate", &biz);
    p.push(("notify_url".into(), notify_url.into()));
    let body = send(fake, p);
    let v = verified(&body, "alipay.trade.precreate");
    (body, v)
}

#[test]
fn fake_alipay_precreate_query_close_cancel() {
    let fake = FakeAlipay::start(APP);
    let later = now_ms() + HOUR_MS;
    let (body, v) = precreate(&fake, "A1", later, "http://127.0.0.1:9/notify");
    has(&v, "code=10000 msg=Success out_trade_no=A1");
    assert!(
        body.contains(r#""qr_code":"https:\/\/qr.alipay.com\/bax0"#),
        "{body}"
    );
    assert_eq!(precreate(&fake, "A1", later, "").1["qr_code"], v["qr_code"]);
    assert_eq!(fake.trade_status("A1"), None, "precreate creates no trade");
    for m in ["alipay.trade.query", "alipay.trade.close"] {
        let v = call(&fake, m, "A1");
        has(
            &v,
            "code=40004 sub_code=ACQ.TRADE_NOT_EXIST sub_msg=交易不存在",
        );
        assert_eq!(v["msg"], "Business Failed");
    }
    fake.scan("A1");
    let q = call(&fake, "alipay.trade.query", "A1");
    has(
        &q,
        "code=10000 trade_status=WAIT_BUYER_PAY total_amount=0.10 send_pay_date=",
    );
    let trade_no = q["trade_no"].as_str().unwrap();
    has(
        &call(&fake, "alipay.trade.close", "A1"),
        &format!("code=10000 trade_no={trade_no}"),
    );
    assert_eq!(fake.trade_status("A1").as_deref(), Some("TRADE_CLOSED"));
    let v = call(&fake, "alipay.trade.close", "A1");
    has(
        &v,
        "code=40004 sub_code=ACQ.TRADE_STATUS_ERROR sub_msg=交易状态不合法",
    );
    has(
        &call(&fake, "alipay.trade.cancel", "A1"),
        "code=10000 action=close retry_flag=N",
    );

    // Paid, then cancelled: refunded, closed, send_pay_date kept.
    precreate(&fake, "A2", later, "");
    let trade_no = fake.pay("A2");
    let q = call(&fake, "alipay.trade.query", "A2");
    has(
        &q,
        &format!("trade_status=TRADE_SUCCESS trade_no={trade_no} buyer_pay_amount=0.10"),
    );
    let paid = q["send_pay_date"].as_str().unwrap().to_string();
    let paid_ms = sys::parse_time(&paid, UtcOffset::CST).unwrap();
    assert!((paid_ms - now_ms()).abs() < 5000, "{paid} is UTC+8");
    has(
        &call(&fake, "alipay.trade.close", "A2"),
        "sub_code=ACQ.TRADE_STATUS_ERROR",
    );
    has(
        &call(&fake, "alipay.trade.cancel", "A2"),
        "code=10000 action=refund retry_flag=N",
    );
    let q = call(&fake, "alipay.trade.query", "A2");
    assert_eq!(
        (q["trade_status"].as_str(), q["send_pay_date"].as_str()),
        (Some("TRADE_CLOSED"), Some(&*paid))
    );
    has(
        &call(&fake, "alipay.trade.cancel", "NOPE"),
        "code=10000 retry_flag=N action= trade_no=",
    );
    assert_eq!(fake.calls("alipay.trade.cancel"), 3);
    assert_eq!(fake.bad_signatures(), 0);
    let last = fake.last_params("alipay.trade.precreate").unwrap();
    assert_eq!(
        get(&last, "notify_url"),
        Some(""),
        "empty values arrive as sent"
    );
}

#[test]
fn fake_alipay_rejects_bad_requests() {
    let fake = FakeAlipay::start(APP);
    let q = "alipay.trade.query";
    let mut p = request_params(q, r#"{"out_trade_no":"B1"}"#);
    p.push(("sign".into(), app_key().sign_b64(b"something else")));
    let v = verified(&send(&fake, p), q);
    has(&v, "code=40002 sub_code=isv.invalid-signature");
    assert!(v["sub_msg"].as_str().unwrap().starts_with("验签出错"));
    assert_eq!(fake.bad_signatures(), 1);
    let mut p = request_params(q, r#"{"out_trade_no":"B1"}"#);
    p.retain(|(k, _)| k != "timestamp");
    has(
        &verified(&send(&fake, p), q),
        "code=40001 sub_code=isv.missing-timestamp",
    );
    let mut p = request_params(q, r#"{"out_trade_no":"B1"}"#);
    p[0].1 = "2021000000000000".into();
    has(
        &verified(&send(&fake, p), q),
        "code=40002 sub_code=isv.invalid-app-id",
    );
    let body = send(&fake, request_params("alipay.trade.nothing", "{}"));
    has(
        &verified(&body, "error"),
        "code=40002 sub_code=isv.invalid-method",
    );
    assert_eq!(fake.calls(q), 3);
    assert_eq!(fake.bad_signatures(), 1);
}

#[test]
fn fake_alipay_as1_vector() {
    // channels.md D1 AS1: the canonical string and the signature of both official SDKs.
    #[rustfmt::skip]
    let mut p = pairs(&[
        ("app_id", "2021000122671080"), ("method", "alipay.trade.close"), ("format", "json"),
        ("charset", "utf-8"), ("sign_type", "RSA2"), ("timestamp", "2024-01-01 12:00:00"),
        ("version", "1.0"), ("biz_content", r#"{"out_trade_no":"P2024010112000001"}"#),
        ("empty", ""),
    ]);
    let text = canonical(&p);
    let want = r#"app_id=2021000122671080&biz_content={"out_trade_no":"P2024010112000001"}&charset=utf-8&format=json&method=alipay.trade.close&sign_type=RSA2&timestamp=2024-01-01 12:00:00&version=1.0"#;
    assert_eq!(text, want);
    let sign = "FQcMfkijvh42t0YXLTkn26LshpGclFYNXuB4W3m/RC0vtruEcJf5PsysQktwtz6WF8TvsNJM6+ovBJuD394eLfqeUWRi0bt7hdS38s9ZSzSV1M4T3r4qJkyNSReB4tkziZLHZ2fD6EwSyhvsygdz+KvODLNwLxoUKRrx3ElKg0+7jsynGP5iU3xIMoUkQFmd2mFW6RI9gZMGcFSV7CJdEYdEbaNMID5G7Do3w83fWCJIJnoctgfkdJ/mIY+0ZgBbuEPVwiiCPG8Vxo+/d3nYjkS92tv3rZBE3fN6bpVT5tgD3QUL7KKMrNfbr+AqcANux8y7TlnAToOtMaR/IzSA9w==";
    assert_eq!(app_key().sign_b64(text.as_bytes()), sign);
    // The fake accepts the vector as sent (no timestamp window): the trade does not exist.
    let fake = FakeAlipay::start(APP);
    p.push(("sign".into(), sign.into()));
    has(
        &verified(&send(&fake, p), "alipay.trade.close"),
        "sub_code=ACQ.TRADE_NOT_EXIST",
    );
    assert_eq!(fake.bad_signatures(), 0);
}

fn raw_with(fake: &FakeAlipay, method: &str, mode: Mode) -> String {
    fake.set_mode(method, mode);
    send(fake, request_params(method, r#"{"out_trade_no":"M1"}"#))
}

#[test]
fn fake_alipay_modes() {
    let fake = FakeAlipay::start(APP);
    let (q, node) = ("alipay.trade.query", "alipay_trade_query_response");
    let body = raw_with(&fake, q, Mode::Unsigned);
    assert!(
        node_text(&body, node).is_some() && !body.contains("\"sign\""),
        "{body}"
    );
    for mode in [Mode::ForgedSign, Mode::Reserialised] {
        let body = raw_with(&fake, q, mode);
        let v: Value = serde_json::from_str(&body).unwrap();
        let text = node_text(&body, node).unwrap();
        assert!(!gateway_public().verify_b64(text.as_bytes(), v["sign"].as_str().unwrap()));
    }
    assert!(raw_with(&fake, q, Mode::Reserialised).contains(r#"{"code": "40004", "msg": "#));
    let body = raw_with(&fake, q, Mode::DuplicateNode);
    assert_eq!(body.matches(node).count(), 2);
    assert_eq!(
        node_text(&body, node),
        None,
        "a duplicated node is rejected"
    );
    let (code, sub_code, sub_msg) = ("20000".into(), "isp.unknow-error".into(), "系统繁忙".into());
    let v = verified(
        &raw_with(
            &fake,
            q,
            Mode::Fail {
                code,
                sub_code,
                sub_msg,
                signed: true,
            },
        ),
        q,
    );
    assert_eq!(v["msg"], "Service Currently Unavailable");
    has(&v, "code=20000 sub_code=isp.unknow-error sub_msg=系统繁忙");

    fake.set_mode("alipay.trade.cancel", Mode::RetryThenNormal(2));
    for want in [
        "sub_code=ACQ.SYSTEM_ERROR retry_flag=Y",
        "retry_flag=Y",
        "code=10000 retry_flag=N",
    ] {
        has(&call(&fake, "alipay.trade.cancel", "M1"), want);
    }

    // A hanging call holds only its own thread; dropping the fake releases it.
    fake.set_mode(q, Mode::Hang);
    let (url, p) = (
        fake.url.clone(),
        request_params(q, r#"{"out_trade_no":"M1"}"#),
    );
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(300))
        .build();
    let hung = thread::spawn(move || signed_request(&agent, &url, p).is_none());
    thread::sleep(Duration::from_millis(50));
    has(
        &call(&fake, "alipay.trade.close", "M1"),
        "sub_code=ACQ.TRADE_NOT_EXIST",
    );
    assert!(hung.join().unwrap(), "the hanging call timed out");
    assert_eq!(fake.calls(q), 7);
}

#[test]
fn fake_alipay_time_expire() {
    let fake = FakeAlipay::start(APP);
    let refused = |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
    precreate(&fake, "E1", now_ms() - 1000, "");
    assert!(
        refused(&|| drop(fake.pay("E1"))),
        "a payment past time_expire is refused"
    );
    precreate(&fake, "E2", now_ms() + 2000, "");
    fake.scan("E2");
    assert_eq!(fake.trade_status("E2").as_deref(), Some("WAIT_BUYER_PAY"));
    thread::sleep(Duration::from_millis(3100));
    has(
        &call(&fake, "alipay.trade.query", "E2"),
        "trade_status=TRADE_CLOSED send_pay_date=",
    );
    precreate(&fake, "E3", now_ms() + HOUR_MS, "");
    fake.expire_trade("E3");
    assert!(
        refused(&|| fake.scan("E3")),
        "an expired QR code cannot be scanned"
    );
    has(
        &call(&fake, "alipay.trade.query", "E3"),
        "sub_code=ACQ.TRADE_NOT_EXIST",
    );
}

#[test]
fn fake_alipay_notice_signature() {
    let fake = FakeAlipay::start(APP);
    precreate(&fake, "N1", now_ms() + HOUR_MS, "");
    let trade_no = fake.pay("N1");
    let p = fake.notice_params("N1");
    assert_eq!(get(&p, "trade_no"), Some(&*trade_no));
    let fund = r#"[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]"#;
    assert_eq!(get(&p, "fund_bill_list"), Some(fund));
    let sign = get(&p, "sign").unwrap();
    assert_eq!(fake.sign_notice(&p), sign);
    let key = gateway_public();
    assert!(key.verify_b64(notice_canonical(&p).as_bytes(), sign));
    assert!(
        !key.verify_b64(canonical(&p).as_bytes(), sign),
        "V1: sign_type is not signed"
    );
    let mut tampered = p.clone();
    tampered
        .iter_mut()
        .find(|(k, _)| k == "total_amount")
        .unwrap()
        .1 = "0.11".into();
    assert!(!key.verify_b64(notice_canonical(&tampered).as_bytes(), sign));
}

#[test]
fn fake_alipay_notifications_retry_until_success() {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!("http://{}/notify", server.server_addr().to_ip().unwrap());
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let (srv, g) = (server.clone(), got.clone());
    thread::spawn(move || {
        let answers = [
            (200, "fail"),
            (500, "success"),
            (200, "success\n"),
            (200, "success"),
        ];
        for (i, mut req) in srv.incoming_requests().enumerate() {
            let mut body = String::new();
            let _ = req.as_reader().read_to_string(&mut body);
            g.lock().unwrap().push(body);
            let (status, text) = answers.get(i).copied().unwrap_or((200, "success"));
            let _ = req.respond(tiny_http::Response::from_string(text).with_status_code(status));
        }
    });
    let fake = FakeAlipay::start(APP);
    fake.set_notify_schedule(vec![Duration::from_millis(20); 6]);
    precreate(&fake, "R1", now_ms() + HOUR_MS, &url);
    fake.pay("R1");
    let log = crate::helpers::wait_for("four attempts", || {
        Some(fake.notifications("R1")).filter(|n| n.len() == 4)
    });
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        fake.notifications("R1").len(),
        4,
        "no attempt after success"
    );
    assert_eq!(log[1], (500, "success".to_string()));
    assert_eq!(log[3], (200, "success".to_string()));
    let bodies = got.lock().unwrap().clone();
    let key = gateway_public();
    for b in &bodies {
        let p = form::parse(b);
        assert!(key.verify_b64(notice_canonical(&p).as_bytes(), get(&p, "sign").unwrap()));
        assert_eq!(
            p,
            fake.notice_params("R1"),
            "the same notice, notify_id included"
        );
    }
    // A refund notice: the same trade, a new notify_id, signed again.
    let p = fake.notify(
        "R1",
        &[("refund_fee", "0.10"), ("gmt_refund", &cst(now_ms()))],
    );
    assert_ne!(
        get(&p, "notify_id"),
        get(&fake.notice_params("R1"), "notify_id")
    );
    assert!(key.verify_b64(notice_canonical(&p).as_bytes(), get(&p, "sign").unwrap()));
    crate::helpers::wait_for("the refund notice", || {
        Some(()).filter(|_| got.lock().unwrap().len() == 5)
    });
    assert_eq!(form::parse(&got.lock().unwrap()[4]), p);
    server.unblock();
}

fn biz_call(fake: &FakeAlipay, method: &str, biz: &str) -> Value {
    verified(&send(fake, request_params(method, biz)), method)
}

#[test]
fn fake_alipay_refund_book_and_query() {
    let fake = FakeAlipay::start(APP);
    precreate(&fake, "F1", now_ms() + HOUR_MS, "");
    let refund = |no: &str, amount: &str| {
        let biz = format!(
            r#"{{"out_trade_no":"F1","refund_amount":"{amount}","out_request_no":"{no}","refund_reason":"退货"}}"#
        );
        biz_call(&fake, "alipay.trade.refund", &biz)
    };
    let query = |no: &str, options: &str| {
        let biz = format!(r#"{{"out_trade_no":"F1","out_request_no":"{no}"{options}}}"#);
        biz_call(&fake, "alipay.trade.fastpay.refund.query", &biz)
    };
    let pay_date = r#","query_options":["gmt_refund_pay"]"#;
    has(
        &refund("R1", "0.03"),
        "code=40004 sub_code=ACQ.TRADE_NOT_EXIST",
    );
    fake.scan("F1");
    has(&refund("R1", "0.03"), "sub_code=ACQ.TRADE_STATUS_ERROR");
    let trade_no = fake.pay("F1");
    // A refusal on request is not booked.
    fake.set_mode(
        "alipay.trade.refund",
        Mode::Fail {
            code: "40004".into(),
            sub_code: "ACQ.SELLER_BALANCE_NOT_ENOUGH".into(),
            sub_msg: "卖家余额不足".into(),
            signed: true,
        },
    );
    has(
        &refund("R1", "0.03"),
        "sub_code=ACQ.SELLER_BALANCE_NOT_ENOUGH",
    );
    assert!(fake.refunds("F1").is_empty());
    fake.set_mode("alipay.trade.refund", Mode::Normal);
    let v = refund("R1", "0.03");
    has(
        &v,
        &format!("code=10000 fund_change=Y refund_fee=0.03 send_back_fee=0.03 out_trade_no=F1 trade_no={trade_no}"),
    );
    let paid = v["gmt_refund_pay"].as_str().unwrap().to_string();
    assert!((sys::parse_time(&paid, UtcOffset::CST).unwrap() - now_ms()).abs() < 5000);
    // A repeat: the same refund, no money moves.
    has(
        &refund("R1", "0.03"),
        "code=10000 fund_change=N refund_fee=0.03",
    );
    has(
        &refund("R1", "0.04"),
        "code=40004 sub_code=ACQ.DISCORDANT_REPEAT_REQUEST",
    );
    has(
        &refund("R2", "0.08"),
        "sub_code=ACQ.REASON_TRADE_REFUND_FEE_ERR",
    );
    let q = query("R1", pay_date);
    has(
        &q,
        "code=10000 refund_status=REFUND_SUCCESS refund_amount=0.03 out_request_no=R1 out_trade_no=F1 total_amount=0.10 refund_reason=退货",
    );
    assert_eq!(q["gmt_refund_pay"], paid.as_str());
    has(
        &query("R1", ""),
        "refund_status=REFUND_SUCCESS gmt_refund_pay=",
    );
    has(
        &query("R9", pay_date),
        "code=10000 out_request_no=R9 out_trade_no=F1 refund_status= refund_amount=",
    );
    // Accepted, not confirmed: fund_change N, no refund_status until confirmed.
    fake.set_mode("alipay.trade.refund", Mode::Unconfirmed);
    has(
        &refund("R2", "0.07"),
        "code=10000 fund_change=N refund_fee=0.10 gmt_refund_pay=",
    );
    assert_eq!(fake.trade_status("F1").as_deref(), Some("TRADE_CLOSED"));
    has(
        &query("R2", pay_date),
        "code=10000 refund_status= refund_amount=",
    );
    has(&refund("R2", "0.07"), "code=10000 fund_change=N");
    fake.confirm_refund("F1", "R2");
    has(
        &query("R2", pay_date),
        "refund_status=REFUND_SUCCESS refund_amount=0.07",
    );
    let book: Vec<(String, u64)> = fake
        .refunds("F1")
        .into_iter()
        .map(|r| (r.out_request_no, r.cents))
        .collect();
    assert_eq!(book, vec![("R1".to_string(), 3), ("R2".to_string(), 7)]);
    // Still paid at the query: TRADE_CLOSED with send_pay_date.
    let q = call(&fake, "alipay.trade.query", "F1");
    has(&q, "trade_status=TRADE_CLOSED");
    assert!(q["send_pay_date"].is_string());
    let biz = r#"{"out_trade_no":"NOPE","out_request_no":"R1"}"#;
    has(
        &biz_call(&fake, "alipay.trade.fastpay.refund.query", biz),
        "code=40004 sub_code=ACQ.TRADE_NOT_EXIST",
    );
    // Every call counted, whatever it got; all of them within 3 s of the one before.
    assert_eq!(fake.calls("alipay.trade.refund"), 9);
    assert_eq!(fake.refund_call_times("F1").len(), 9);
    assert_eq!(fake.refund_spacing_violations("F1"), 8);
    assert_eq!(fake.bad_signatures(), 0);
}

#[test]
fn fake_alipay_refund_modes_apply_or_not() {
    let fake = FakeAlipay::start(APP);
    precreate(&fake, "G1", now_ms() + HOUR_MS, "");
    fake.pay("G1");
    let m = "alipay.trade.refund";
    let biz = |no: &str| {
        format!(r#"{{"out_trade_no":"G1","refund_amount":"0.01","out_request_no":"{no}"}}"#)
    };
    // A forged or missing signature: the refund was made all the same.
    for (no, mode) in [("F", Mode::ForgedSign), ("U", Mode::Unsigned)] {
        fake.set_mode(m, mode);
        let body = send(&fake, request_params(m, &biz(no)));
        let v: Value = serde_json::from_str(&body).unwrap();
        let text = node_text(&body, "alipay_trade_refund_response").unwrap();
        let ok = v["sign"]
            .as_str()
            .is_some_and(|s| gateway_public().verify_b64(text.as_bytes(), s));
        assert!(!ok, "{body}");
    }
    // A hang: booked, never answered.
    fake.set_mode(m, Mode::Hang);
    let (url, p) = (fake.url.clone(), request_params(m, &biz("H")));
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(300))
        .build();
    assert!(signed_request(&agent, &url, p).is_none());
    let booked: Vec<String> = fake
        .refunds("G1")
        .into_iter()
        .map(|r| r.out_request_no)
        .collect();
    assert_eq!(booked, ["F", "U", "H"]);
}

#[test]
fn fake_alipay_refund_notices() {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!("http://{}/notify", server.server_addr().to_ip().unwrap());
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let (srv, g) = (server.clone(), got.clone());
    thread::spawn(move || {
        for mut req in srv.incoming_requests() {
            let mut body = String::new();
            let _ = req.as_reader().read_to_string(&mut body);
            g.lock().unwrap().push(body);
            let _ = req.respond(tiny_http::Response::from_string("success"));
        }
    });
    let fake = FakeAlipay::start(APP);
    precreate(&fake, "RN1", now_ms() + HOUR_MS, &url);
    let trade_no = fake.pay("RN1");
    let biz = r#"{"out_trade_no":"RN1","refund_amount":"0.04","out_request_no":"Q1"}"#;
    has(
        &biz_call(&fake, "alipay.trade.refund", biz),
        "fund_change=Y",
    );
    let key = gateway_public();
    let p = fake.refund_notice("RN1", "Q1");
    for (k, want) in [
        ("trade_status", "TRADE_SUCCESS"),
        ("refund_fee", "0.04"),
        ("out_biz_no", "Q1"),
        ("total_amount", "0.10"),
        ("trade_no", trade_no.as_str()),
    ] {
        assert_eq!(get(&p, k), Some(want), "{k}");
    }
    let gmt = get(&p, "gmt_refund").unwrap();
    assert_eq!(gmt.len(), 23, "{gmt} has milliseconds");
    assert!(key.verify_b64(notice_canonical(&p).as_bytes(), get(&p, "sign").unwrap()));
    // The rest refunded in Alipay's console: the full refund's notice closes the trade.
    fake.refund_outside("RN1", "C1", 6);
    let p = fake.refund_notice("RN1", "C1");
    assert_eq!(get(&p, "trade_status"), Some("TRADE_CLOSED"));
    assert_eq!(get(&p, "refund_fee"), Some("0.10"));
    assert!(get(&p, "gmt_close").is_some());
    assert!(key.verify_b64(notice_canonical(&p).as_bytes(), get(&p, "sign").unwrap()));
    let bodies = crate::helpers::wait_for("three notices", || {
        Some(got.lock().unwrap().clone()).filter(|b| b.len() == 3)
    });
    // Each notice has its own notifier: the two refund notices may arrive in either order.
    assert!(bodies.iter().any(|b| form::parse(b) == p));
    server.unblock();
}
