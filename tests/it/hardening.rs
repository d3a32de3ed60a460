//! Hardening (issue 6): hostile and malformed input, nonceStr replays, stalled clients, a crash
//! under load, online backups, a damaged database, secrets in the log, and handler panics.
//! Every test but the panic test runs the real binary.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::helpers::*;
use crate::notify::Merchant;
use unipay::sys::UtcOffset;

// ---------------------------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------------------------

const VICTIM: &str = "B_VICTIM";

/// A server with one `progress` order that every bad request aims at.
struct Victim {
    srv: TestServer,
    app: App,
    order_no: String,
    before: Value,
}

fn victim() -> Victim {
    let srv = TestServer::start();
    let app = srv.create_app("M_HARD", "A_HARD", &["--secret", "hard-secret"]);
    let data = srv.pay(&app, VICTIM);
    let before = srv.order(&app, VICTIM);
    Victim {
        order_no: data["orderNo"].as_str().unwrap().to_string(),
        srv,
        app,
        before,
    }
}

impl Victim {
    /// A correctly signed close of the victim with `extra` fields (signed too, when valid).
    fn signed(&self, extra: Value) -> Map<String, Value> {
        let mut body = json!({"bizOrderNo": VICTIM});
        merge(&mut body, extra);
        self.app.signed("/unipay/close", body)
    }

    /// A signed close of the victim whose field `k` is then replaced by `v` (after signing).
    fn spoiled(&self, k: &str, v: Value) -> Vec<u8> {
        let mut b = self.signed(json!({}));
        b.insert(k.into(), v);
        serde_json::to_vec(&b).unwrap()
    }

    fn bytes(&self, extra: Value) -> Vec<u8> {
        serde_json::to_vec(&self.signed(extra)).unwrap()
    }

    /// The victim is exactly as it was, with no close record, notification or closed trade,
    /// and no order was added.
    #[track_caller]
    fn unchanged(&self) {
        self.unchanged_after("the requests");
    }

    /// `unchanged`, failing with `label` (what was just sent) in the message.
    #[track_caller]
    fn unchanged_after(&self, label: &str) {
        assert_eq!(
            self.srv.order(&self.app, VICTIM),
            self.before,
            "after {label}"
        );
        assert_eq!(self.srv.close_records(&self.order_no), 0, "after {label}");
        assert_eq!(self.srv.notify_events(&self.order_no), 0, "after {label}");
        let db = self.srv.db_read();
        let trade: String = db
            .query_row(
                "SELECT state FROM sandbox_trade WHERE order_no = ?1",
                [&self.order_no],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(trade, "open", "after {label}");
        let orders: i64 = db
            .query_row("SELECT count(*) FROM pay_order", [], |r| r.get(0))
            .unwrap();
        assert_eq!(orders, 1, "after {label}: a bad request created an order");
    }
}

/// Nested arrays `n` deep.
fn nest(n: usize) -> Value {
    let text = format!("{}{}", "[".repeat(n), "]".repeat(n));
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[test]
fn malformed_bodies_get_json_errors_and_change_nothing() {
    let v = victim();
    let srv = &v.srv;
    let good = v.bytes(json!({}));
    let with_tail = |tail: &[u8]| [&good[..], tail].concat();
    let now = time_text(0, UtcOffset::CST);
    let deep_in_unknown_field = {
        // Signed and otherwise valid: without the depth limit this would close the victim.
        let mut text = String::from_utf8(good.clone()).unwrap();
        text.pop();
        text.push_str(&format!(r#","x":{}}}"#, "[".repeat(40) + &"]".repeat(40)));
        text.into_bytes()
    };
    let many_keys = {
        let mut b = v.signed(json!({}));
        b.remove("sign");
        for i in 0..4000 {
            b.insert(format!("k{i}"), Value::from(i));
        }
        serde_json::to_vec(&b).unwrap()
    };
    let other_request_sign = {
        let other = v.signed(json!({"bizOrderNo": "B_OTHER"}));
        let mut b = v.signed(json!({}));
        b.insert("sign".into(), other["sign"].clone());
        serde_json::to_vec(&b).unwrap()
    };
    let pay = |amount: Value| {
        let body = json!({"bizOrderNo": "B_HUGE", "title": "t", "amount": amount,
            "channel": "sandbox", "method": "wap"});
        serde_json::to_vec(&v.app.signed("/unipay/pay", body)).unwrap()
    };
    let huge_amount = {
        let mut b: Map<String, Value> = serde_json::from_slice(&pay(json!(1))).unwrap();
        let digits = "9".repeat(40_000);
        b.insert("amount".into(), serde_json::from_str(&digits).unwrap());
        v.app.sign("/unipay/pay", &mut b);
        serde_json::to_vec(&b).unwrap()
    };

    let close = "/unipay/close";
    let corpus: Vec<(&str, &str, Vec<u8>, i64)> = vec![
        // Not JSON, or not one JSON object.
        ("plain text", close, b"hello".to_vec(), 10505),
        ("open brace", close, b"{".to_vec(), 10505),
        ("close brace", close, b"}".to_vec(), 10505),
        (
            "trailing comma",
            close,
            br#"{"bizOrderNo":"B_VICTIM",}"#.to_vec(),
            10505,
        ),
        (
            "single quotes",
            close,
            b"{'bizOrderNo':'B_VICTIM'}".to_vec(),
            10505,
        ),
        (
            "form encoded",
            close,
            b"bizOrderNo=B_VICTIM&useCancel=true".to_vec(),
            10505,
        ),
        (
            "xml",
            close,
            b"<xml><bizOrderNo>B_VICTIM</bizOrderNo></xml>".to_vec(),
            10505,
        ),
        ("empty", close, Vec::new(), 10505),
        ("json null", close, b"null".to_vec(), 10505),
        (
            "array of the request",
            close,
            [b"[", &good[..], b"]"].concat(),
            10505,
        ),
        ("string", close, b"\"B_VICTIM\"".to_vec(), 10505),
        ("number", close, b"12345".to_vec(), 10505),
        (
            "valid request then garbage",
            close,
            with_tail(b"xyz"),
            10505,
        ),
        ("two objects", close, with_tail(&good), 10505),
        (
            "NaN",
            close,
            br#"{"bizOrderNo":"B_VICTIM","useCancel":NaN}"#.to_vec(),
            10505,
        ),
        // Wrong JSON types.
        (
            "number order no",
            close,
            v.spoiled("bizOrderNo", json!(123)),
            10505,
        ),
        (
            "array order no",
            close,
            v.spoiled("bizOrderNo", json!([VICTIM])),
            10505,
        ),
        (
            "operator object",
            close,
            v.spoiled("bizOrderNo", json!({"$ne": null})),
            10505,
        ),
        (
            "useCancel yes",
            close,
            v.spoiled("useCancel", json!("yes")),
            10505,
        ),
        (
            "useCancel 1",
            close,
            v.spoiled("useCancel", json!(1)),
            10505,
        ),
        ("mchNo true", close, v.spoiled("mchNo", json!(true)), 10505),
        (
            "appId number",
            close,
            v.spoiled("appId", json!(12.5)),
            10505,
        ),
        (
            "reqTime epoch",
            close,
            v.spoiled("reqTime", json!(1712345678000i64)),
            10505,
        ),
        ("sign number", close, v.spoiled("sign", json!(0)), 10505),
        (
            "clientIp array",
            close,
            v.spoiled("clientIp", json!(["127.0.0.1"])),
            10505,
        ),
        // Nulls mean absent.
        ("mchNo null", close, v.spoiled("mchNo", Value::Null), 10506),
        ("appId null", close, v.spoiled("appId", Value::Null), 10506),
        (
            "reqTime null",
            close,
            v.spoiled("reqTime", Value::Null),
            10506,
        ),
        (
            "order no null",
            close,
            v.bytes(json!({"bizOrderNo": null})),
            10506,
        ),
        ("sign null", close, v.spoiled("sign", Value::Null), 20052),
        // Huge.
        (
            "70 KiB body",
            close,
            {
                let mut b = v.signed(json!({}));
                b.insert("pad".into(), "x".repeat(70 * 1024).into());
                serde_json::to_vec(&b).unwrap()
            },
            10506,
        ),
        ("40000-digit amount", "/unipay/pay", huge_amount, 10506),
        (
            "amount in exponent form",
            "/unipay/pay",
            pay(serde_json::from_str("1e999").unwrap()),
            10505,
        ),
        (
            "60 KB order no",
            close,
            v.spoiled("bizOrderNo", json!("B".repeat(60_000))),
            10506,
        ),
        ("4000 unknown keys, unsigned", close, many_keys, 20052),
        // Deeply nested.
        (
            "nested 40 deep in a signed request",
            close,
            deep_in_unknown_field,
            10505,
        ),
        ("nested 100 deep", close, v.spoiled("x", nest(100)), 10505),
        ("30000 unclosed brackets", close, vec![b'['; 30_000], 10505),
        // Unicode tricks.
        (
            "byte order mark",
            close,
            [&b"\xef\xbb\xbf"[..], &good[..]].concat(),
            10505,
        ),
        (
            "invalid UTF-8",
            close,
            b"{\"bizOrderNo\":\"\xff\xfe\"}".to_vec(),
            10505,
        ),
        (
            "overlong UTF-8 slash",
            close,
            b"{\"bizOrderNo\":\"\xc0\xaf\"}".to_vec(),
            10505,
        ),
        (
            "lone surrogate",
            close,
            br#"{"bizOrderNo":"\ud800"}"#.to_vec(),
            10505,
        ),
        (
            "NUL suffix",
            close,
            v.bytes(json!({"bizOrderNo": "B_VICTIM\u{0}"})),
            20041,
        ),
        (
            "fullwidth letter",
            close,
            v.bytes(json!({"bizOrderNo": "Ｂ_VICTIM"})),
            20041,
        ),
        (
            "zero-width space",
            close,
            v.bytes(json!({"bizOrderNo": "B_VICTIM\u{200b}"})),
            20041,
        ),
        (
            "other case",
            close,
            v.bytes(json!({"bizOrderNo": "b_victim"})),
            20041,
        ),
        (
            "right-to-left override",
            close,
            v.bytes(json!({"bizOrderNo": "\u{202e}MITCIV_B"})),
            20041,
        ),
        (
            "33 CJK characters",
            close,
            v.spoiled("appId", json!("中".repeat(33))),
            10506,
        ),
        // SQL-looking strings.
        (
            "or 1=1",
            close,
            v.bytes(json!({"bizOrderNo": "B_VICTIM' OR '1'='1"})),
            20041,
        ),
        (
            "drop table",
            close,
            v.bytes(json!({"bizOrderNo": "'; DROP TABLE pay_order; --"})),
            20041,
        ),
        (
            "LIKE wildcard",
            close,
            v.bytes(json!({"orderNo": "%"})),
            20041,
        ),
        (
            "quoted merchant",
            close,
            v.spoiled("mchNo", json!("M' OR 1=1 --")),
            20023,
        ),
        (
            "quoted app",
            close,
            v.spoiled("appId", json!("A_HARD\" OR \"1\"=\"1")),
            20023,
        ),
        // Over-long fields.
        (
            "mchNo 33",
            close,
            v.spoiled("mchNo", json!("M".repeat(33))),
            10506,
        ),
        (
            "orderNo 101",
            close,
            v.spoiled("orderNo", json!("P".repeat(101))),
            10506,
        ),
        (
            "outOrderNo 151",
            close,
            v.spoiled("outOrderNo", json!("O".repeat(151))),
            10506,
        ),
        (
            "nonceStr 33",
            close,
            v.spoiled("nonceStr", json!("n".repeat(33))),
            10506,
        ),
        (
            "sign 65",
            close,
            v.spoiled("sign", json!("a".repeat(65))),
            10506,
        ),
        // Bad IPs.
        (
            "ip 300",
            close,
            v.spoiled("clientIp", json!("300.1.1.1")),
            10506,
        ),
        (
            "ip three parts",
            close,
            v.spoiled("clientIp", json!("1.2.3")),
            10506,
        ),
        (
            "ip bad v6",
            close,
            v.spoiled("clientIp", json!("::gg")),
            10506,
        ),
        (
            "ip with a command",
            close,
            v.spoiled("clientIp", json!("127.0.0.1; rm -rf /")),
            10506,
        ),
        (
            "ip host name",
            close,
            v.spoiled("clientIp", json!("localhost")),
            10506,
        ),
        (
            "ip leading space",
            close,
            v.spoiled("clientIp", json!(" 127.0.0.1")),
            10506,
        ),
        (
            "ip hex",
            close,
            v.spoiled("clientIp", json!("0x7f.0.0.1")),
            10506,
        ),
        // Bad times.
        (
            "month 13",
            close,
            v.spoiled("reqTime", json!("2025-13-01 00:00:00")),
            10505,
        ),
        (
            "February 30",
            close,
            v.spoiled("reqTime", json!("2025-02-30 12:00:00")),
            10505,
        ),
        (
            "ISO T",
            close,
            v.spoiled("reqTime", json!("2025-01-01T00:00:00")),
            10505,
        ),
        (
            "hour 24",
            close,
            v.spoiled("reqTime", json!("2025-01-01 24:00:00")),
            10505,
        ),
        (
            "leap second",
            close,
            v.spoiled("reqTime", json!("2025-01-01 23:59:60")),
            10505,
        ),
        ("empty time", close, v.spoiled("reqTime", json!("")), 10505),
        (
            "word",
            close,
            v.spoiled("reqTime", json!("yesterday")),
            10505,
        ),
        (
            "fullwidth digits",
            close,
            v.spoiled("reqTime", json!("２０２５-01-01 00:00:00")),
            10505,
        ),
        (
            "time with zone",
            close,
            v.spoiled("reqTime", json!(format!("{now}+08:00"))),
            10505,
        ),
        (
            "1970",
            close,
            v.bytes(json!({"reqTime": "1970-01-01 00:00:00"})),
            10506,
        ),
        (
            "year 9999",
            close,
            v.bytes(json!({"reqTime": "9999-12-31 23:59:59"})),
            10506,
        ),
        // Signatures.
        (
            "signature of another request",
            close,
            other_request_sign,
            20052,
        ),
        (
            "signature truncated",
            close,
            {
                let b = v.signed(json!({}));
                let s = b["sign"].as_str().unwrap()[..31].to_string();
                v.spoiled("sign", json!(s))
            },
            20052,
        ),
    ];
    assert!(corpus.len() >= 40, "{} bodies", corpus.len());
    let mut failures = Vec::new();
    for (label, path, body, want) in &corpus {
        let reply = srv.post_raw(path, body);
        // After every body: the server is up and the victim untouched.
        assert_eq!(srv.get("/").status, 200, "the server is down after {label}");
        v.unchanged_after(label);
        let got = reply.json.as_ref().and_then(|j| j["code"].as_i64());
        let json_reply = reply.status == 200
            && reply
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json"));
        if !json_reply || got != Some(*want) {
            failures.push(format!(
                "{label}: want {want}, got HTTP {} {}",
                reply.status,
                reply.body.chars().take(200).collect::<String>()
            ));
            continue;
        }
        reply.envelope();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The server is up, and the victim unchanged.
    assert_eq!(srv.get("/").status, 200);
    v.unchanged();
}

/// Requests broken at the HTTP level still get a JSON envelope with a non-zero code.
#[test]
fn malformed_http_requests_get_json_errors() {
    let v = victim();
    let addr = v.srv.addr.clone();
    let body = v.bytes(json!({}));
    let head = |extra: &str, len: usize| {
        format!("POST /unipay/close HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {len}\r\n\r\n")
    };
    let many_headers: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, i64)> = vec![
        ("20 KiB header", [head(&format!("X-Big: {}\r\n", "a".repeat(20_000)), body.len()).as_bytes(), &body].concat(), 10506),
        ("100 headers", [head(&many_headers, body.len()).as_bytes(), &body].concat(), 10506),
        ("10 MB content length", head("", 10_000_000).into_bytes(), 10506),
        ("content length not a number", [head("", 0).replace("Content-Length: 0", "Content-Length: abc").as_bytes(), &body].concat(), 10505),
        ("two content lengths", [head(&format!("Content-Length: {}\r\n", body.len() + 1), body.len()).as_bytes(), &body].concat(), 10505),
        ("chunk over the body limit", b"POST /unipay/close HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n".to_vec(), 10506),
        ("bad chunk size", b"POST /unipay/close HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(), 10505),
        ("unknown transfer coding", [head("Transfer-Encoding: gzip\r\n", body.len()).as_bytes(), &body].concat(), 10505),
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), 10505),
        ("binary junk", vec![0u8, 1, 2, 3, 255, 254, b'\r', b'\n', b'\r', b'\n'], 10505),
        ("header without colon", [head("NoColonHere\r\n", body.len()).as_bytes(), &body].concat(), 10505),
    ];
    for (label, raw, want) in cases {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let _ = s.write_all(&raw);
        let _ = s.shutdown(Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        let json_start = text.find("\r\n\r\n").map(|i| i + 4).unwrap_or(0);
        let reply: Value = serde_json::from_str(&text[json_start..])
            .unwrap_or_else(|e| panic!("{label}: reply is not JSON ({e}): {text}"));
        assert_eq!(reply["code"], want, "{label}: {text}");
        assert_eq!(reply["traceId"].as_str().map(str::len), Some(12), "{label}");
    }
    assert_eq!(v.srv.get("/").status, 200);
    v.unchanged();
}

// ---------------------------------------------------------------------------------------------
// nonceStr
// ---------------------------------------------------------------------------------------------

#[test]
fn nonce_replays_the_first_reply_byte_for_byte_and_refuses_other_parameters() {
    let mut srv = TestServer::start();
    let app = srv.create_app("M_NONCE", "A_NONCE", &["--secret", "nonce-secret"]);
    let other = srv.create_app("M_NONCE2", "A_NONCE2", &["--secret", "nonce-secret-2"]);
    let o1 = srv.pay(&app, "B_N1")["orderNo"]
        .as_str()
        .unwrap()
        .to_string();
    srv.pre_pay(&app, "B_N2");
    srv.pre_pay(&other, "B_N1");
    let close = "/unipay/close";

    let body = app.signed(close, json!({"bizOrderNo": "B_N1", "nonceStr": "retry-1"}));
    let first = srv.post_map(close, &body);
    first.expect(0, "success").signed_by(&app);
    let events = srv.notify_events(&o1);
    // A retry a second later: resTime would differ if the reply were made again.
    thread::sleep(Duration::from_millis(1100));
    let again = srv.post_map(close, &body);
    assert_eq!(
        again.body, first.body,
        "the replay is the first reply, byte for byte"
    );
    // The signature's hex case is not a parameter: still the same request.
    let mut upper = body.clone();
    let s = upper["sign"].as_str().unwrap().to_uppercase();
    upper.insert("sign".into(), s.into());
    assert_eq!(srv.post_map(close, &upper).body, first.body);
    assert_eq!(srv.successful_close_records(&o1), 1, "closed once");
    assert_eq!(srv.close_records(&o1), 1);
    assert_eq!(srv.notify_events(&o1), events, "no notification made twice");

    // The same nonce with other parameters: refused, and the other order is untouched.
    let misuse = app.signed(close, json!({"bizOrderNo": "B_N2", "nonceStr": "retry-1"}));
    let r = srv.post_map(close, &misuse);
    r.expect(10506, "nonceStr").signed_by(&app);
    assert_eq!(srv.status(&app, "B_N2"), "wait");
    // A new reqTime is another parameter too.
    let restamped = app.signed(
        close,
        json!({"bizOrderNo": "B_N1", "nonceStr": "retry-1", "reqTime": time_text(-5, UtcOffset::CST)}),
    );
    srv.post_map(close, &restamped).expect(10506, "nonceStr");

    // Nonces belong to their app: another app may use the same one.
    srv.post_signed(
        &other,
        close,
        json!({"bizOrderNo": "B_N1", "nonceStr": "retry-1"}),
    )
    .expect(0, "success");
    assert_eq!(srv.status(&other, "B_N1"), "close");

    // Without a nonce the spec's behaviour holds: a second close is refused.
    srv.close(&app, json!({"bizOrderNo": "B_N1"}))
        .expect(20044, "");
    // An empty nonceStr is no nonce.
    srv.close(&app, json!({"bizOrderNo": "B_N1", "nonceStr": ""}))
        .expect(20044, "");

    // Error replies are remembered too.
    let missing = app.signed(
        close,
        json!({"bizOrderNo": "B_NOPE", "nonceStr": "retry-2"}),
    );
    let first_missing = srv.post_map(close, &missing);
    first_missing.expect(20041, "");
    srv.pre_pay(&app, "B_NOPE");
    assert_eq!(srv.post_map(close, &missing).body, first_missing.body);
    assert_eq!(srv.status(&app, "B_NOPE"), "wait");

    // A pay retried with its nonce creates one order and gets the same reply.
    let pay = app.signed(
        "/unipay/pay",
        json!({"bizOrderNo": "B_N4", "title": "t", "amount": "0.10", "channel": "sandbox",
            "method": "wap", "nonceStr": "pay-1"}),
    );
    let paid = srv.post_map("/unipay/pay", &pay);
    paid.expect(0, "success");
    assert_eq!(srv.post_map("/unipay/pay", &pay).body, paid.body);
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM pay_order WHERE biz_order_no = ?1",
            "B_N4"
        ),
        1
    );

    // After a crash and restart: the same replies, the same refusal.
    srv.restart();
    assert_eq!(srv.post_map(close, &body).body, first.body);
    assert_eq!(srv.post_map(close, &missing).body, first_missing.body);
    assert_eq!(srv.post_map("/unipay/pay", &pay).body, paid.body);
    srv.post_map(close, &misuse).expect(10506, "nonceStr");
    assert_eq!(srv.successful_close_records(&o1), 1);
    assert_eq!(srv.status(&app, "B_N2"), "wait");
}

#[test]
fn concurrent_requests_with_one_nonce_act_once() {
    let srv = TestServer::start();
    let app = srv.create_app("M_NCON", "A_NCON", &["--secret", "ncon-secret"]);
    let order = srv.pay(&app, "B_C")["orderNo"]
        .as_str()
        .unwrap()
        .to_string();
    let body = serde_json::to_vec(&app.signed(
        "/unipay/close",
        json!({"bizOrderNo": "B_C", "nonceStr": "same", "useCancel": true}),
    ))
    .unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let replies: Vec<Reply> = (0..8)
        .map(|_| {
            let (addr, body, barrier) = (srv.addr.clone(), body.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                http(&addr, "POST", "/unipay/close", &body)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    replies[0].expect(0, "success").signed_by(&app);
    for r in &replies {
        assert_eq!(r.body, replies[0].body);
    }
    assert_eq!(srv.successful_close_records(&order), 1);
    assert_eq!(srv.close_records(&order), 1);
    assert_eq!(srv.status(&app, "B_C"), "cancel");
}

/// A retry of a remembered request is the same request: it gets its first reply even after its
/// `reqTime` has left the app's request-time window; a new nonce with that `reqTime` is stale.
#[test]
fn a_remembered_nonce_is_replayed_even_past_the_request_time_window() {
    const EXPIRED: &str = "请求已过期，请重新发送！";
    let srv = TestServer::start();
    let app = srv.create_app(
        "M_NWIN",
        "A_NWIN",
        &["--req-timeout", "5", "--secret", "nwin"],
    );
    srv.pay(&app, "B_NW1");
    srv.pay(&app, "B_NW2");
    let close = "/unipay/close";
    let req_time = time_text(-3, UtcOffset::CST);
    let body = app.signed(
        close,
        json!({"bizOrderNo": "B_NW1", "nonceStr": "late-1", "reqTime": req_time}),
    );
    let first = srv.post_map(close, &body);
    first.expect(0, "success").signed_by(&app);
    // Wait until that reqTime is out of the 5 s window (a query without a nonce tells).
    let query = "/unipay/query/payOrder";
    let stale = wait_for("the reqTime to leave the window", || {
        let probe = app.signed(query, json!({"bizOrderNo": "B_NW2", "reqTime": req_time}));
        let r = srv.post_map(query, &probe);
        (r.code() == 10506).then_some(r)
    });
    stale.expect(10506, EXPIRED);
    assert_eq!(
        srv.post_map(close, &body).body,
        first.body,
        "the first reply again"
    );
    // A new nonce with the stale reqTime is refused as stale, and that refusal is not
    // remembered: the order is untouched.
    let fresh_nonce = app.signed(
        close,
        json!({"bizOrderNo": "B_NW2", "nonceStr": "late-2", "reqTime": req_time}),
    );
    srv.post_map(close, &fresh_nonce).expect(10506, EXPIRED);
    assert_eq!(srv.status(&app, "B_NW2"), "progress");
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM request_nonce WHERE nonce = ?1",
            "late-2"
        ),
        0
    );
    // A remembered nonce with other parameters is still misuse, not staleness.
    let other = app.signed(
        close,
        json!({"bizOrderNo": "B_NW2", "nonceStr": "late-1", "reqTime": req_time}),
    );
    srv.post_map(close, &other).expect(10506, "nonceStr");
    assert_eq!(srv.status(&app, "B_NW1"), "close");
    assert_eq!(srv.status(&app, "B_NW2"), "progress");
}

/// The running server's sweeper drops remembered replies older than a day.
#[test]
fn the_sweeper_prunes_old_nonces() {
    use unipay::domain::NONCE_TTL_MS as TTL_MS;
    let srv = TestServer::start_with(&["--sweep-interval", "1s"]);
    let app = srv.create_app("M_NPR", "A_NPR", &["--secret", "npr"]);
    srv.pre_pay(&app, "B_NPR");
    srv.post_signed(
        &app,
        "/unipay/close",
        json!({"bizOrderNo": "B_NPR", "nonceStr": "keep"}),
    )
    .expect(0, "success");
    {
        let db = rusqlite::Connection::open(&srv.db).unwrap();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        db.execute(
            "INSERT INTO request_nonce (app_id, nonce, fingerprint, code, trace_id, reply, created_at)
             VALUES ('A_NPR', 'ancient', x'00', 0, 'T', x'7b7d', ?1)",
            [now_ms() - TTL_MS - 60_000],
        )
        .unwrap();
    }
    wait_for("the old nonce to be pruned", || {
        (srv.count(
            "SELECT count(*) FROM request_nonce WHERE nonce = ?1",
            "ancient",
        ) == 0)
            .then_some(())
    });
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM request_nonce WHERE nonce = ?1",
            "keep"
        ),
        1,
        "a recent nonce stays"
    );
}

/// Remembered replies older than a day are ignored and pruned (the store API the sweeper uses).
#[test]
fn old_nonces_are_ignored_and_pruned() {
    use unipay::domain::NONCE_TTL_MS as TTL_MS;
    use unipay::store::{NewNonce, Store};
    let dir = temp_dir("nonce-prune");
    let (store, _) = Store::open(&dir.join("n.db"), UtcOffset::CST).unwrap();
    let day0 = 1_700_000_000_000i64;
    let remember = |nonce: &str, now: i64| {
        store
            .remember_nonce(NewNonce {
                app_id: "A".into(),
                nonce: nonce.into(),
                fingerprint: vec![1; 32],
                code: 0,
                trace_id: "T".into(),
                reply: b"{}".to_vec(),
                now,
            })
            .unwrap()
    };
    remember("old", day0);
    remember("new", day0 + TTL_MS / 2);
    let later = day0 + TTL_MS + 1;
    assert!(store
        .seen_nonce("A", "old", later - TTL_MS)
        .unwrap()
        .is_none());
    assert!(store
        .seen_nonce("A", "new", later - TTL_MS)
        .unwrap()
        .is_some());
    assert!(store
        .seen_nonce("B", "new", later - TTL_MS)
        .unwrap()
        .is_none());
    assert_eq!(store.prune_nonces(later - TTL_MS).unwrap(), 1);
    assert_eq!(store.prune_nonces(later - TTL_MS).unwrap(), 0);
    // An expired nonce may be used again: its row is replaced.
    remember("old", later);
    assert!(store
        .seen_nonce("A", "old", later - TTL_MS)
        .unwrap()
        .is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Slow and stalled clients
// ---------------------------------------------------------------------------------------------

/// A field of `/proc/PID/status` (Linux), as a number.
fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// With a low soft open-file limit the connection bound shrinks to fit under it: connections
/// past the bound get the 503 envelope at once instead of hanging in a failing `accept`, and
/// the server serves normally once they are gone.
#[test]
fn connections_past_the_open_file_limit_get_503_and_the_server_recovers() {
    // 128 descriptors: the bound is 128 - 64 = 64 connections.
    let srv = TestServer::start_with_open_files(128);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", srv.pid().unwrap())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("128")),
        "the server runs under the low limit: {limits}"
    );
    let mut held = Vec::new();
    for _ in 0..150 {
        held.push(TcpStream::connect(&srv.addr).unwrap());
    }
    // The last ones are past both the bound and the descriptors the process has: each must be
    // answered (not left waiting on a full descriptor table).
    for s in held.iter_mut().rev().take(20) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        let json = &text[text.find("\r\n\r\n").unwrap() + 4..];
        let reply: Value = serde_json::from_str(json).unwrap();
        assert_eq!(reply["code"], 10500, "{text}");
        assert_eq!(reply["traceId"].as_str().map(str::len), Some(12));
    }
    drop(held);
    let app = srv.create_app("M_FD", "A_FD", &["--secret", "fd"]);
    wait_for("the server to serve again", || {
        try_http(&srv.addr, "GET", "/", b"").filter(|r| r.status == 200)
    });
    srv.pay(&app, "B_FD");
    assert_eq!(srv.status(&app, "B_FD"), "progress");
}

#[test]
fn stalled_connections_do_not_delay_a_normal_request() {
    let srv = TestServer::start();
    let app = srv.app("A_STALL");
    srv.pre_pay(&app, "B_STALL");
    let mut stalled = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(&srv.addr).unwrap();
        let part: &[u8] = match i % 4 {
            0 => b"",
            1 => b"PO",
            2 => b"POST /unipay/close HTTP/1.1\r\nHost: x\r\n",
            _ => b"POST /unipay/close HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\":",
        };
        s.write_all(part).unwrap();
        stalled.push(s);
    }
    // Let the server take them all in before measuring.
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let r = srv.post_signed(
        &app,
        "/unipay/query/payOrder",
        json!({"bizOrderNo": "B_STALL"}),
    );
    let took = started.elapsed();
    r.expect(0, "success");
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // Bounded threads and memory: one thread per connection, nothing more.
    let pid = srv.pid().unwrap();
    let threads = proc_status(pid, "Threads:").unwrap();
    let rss_kib = proc_status(pid, "VmRSS:").unwrap();
    assert!(threads <= 200 + 32, "{threads} threads");
    assert!(rss_kib < 256 * 1024, "{rss_kib} KiB resident");

    // And the stalled ones are let go after the request timeout (10 s): a request that had
    // begun gets a 408 with the JSON envelope (10500, unsigned), an idle connection is closed.
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, s) in stalled.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        let text = String::from_utf8_lossy(&out);
        if i % 4 == 0 {
            assert!(out.is_empty(), "idle connection {i}: {text}");
            continue;
        }
        assert!(text.starts_with("HTTP/1.1 408"), "connection {i}: {text}");
        let body = &text[text.find("\r\n\r\n").expect("a body") + 4..];
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v["code"], 10500, "{body}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        assert!(
            v["traceId"].as_str().is_some_and(|t| !t.is_empty()),
            "{body}"
        );
    }
    srv.post_signed(
        &app,
        "/unipay/query/payOrder",
        json!({"bizOrderNo": "B_STALL"}),
    )
    .expect(0, "success");
}

// ---------------------------------------------------------------------------------------------
// A crash under load
// ---------------------------------------------------------------------------------------------

/// Creates orders from 4 threads: even ones by prePay (`wait`), odd ones by pay (`progress`).
fn make_orders(srv: &TestServer, app: &App, prefix: &str, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i:04}")).collect();
    let next = Arc::new(AtomicUsize::new(0));
    thread::scope(|s| {
        for _ in 0..4 {
            let (names, next) = (&names, next.clone());
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(biz) = names.get(i) else { return };
                let (path, body) = match i % 2 {
                    0 => (
                        "/unipay/gateway/prePay",
                        json!({"bizOrderNo": biz, "title": "t", "amount": "1.00"}),
                    ),
                    _ => (
                        "/unipay/pay",
                        json!({"bizOrderNo": biz, "title": "t", "amount": "1.00",
                            "channel": "sandbox", "method": "wap"}),
                    ),
                };
                srv.post_signed(app, path, body).expect(0, "success");
            });
        }
    });
    names
}

#[test]
fn crash_under_load_loses_no_acknowledged_close() {
    let mut srv = TestServer::start();
    let app = srv.create_app("M_CRASH", "A_CRASH", &["--secret", "crash-secret"]);
    let names = make_orders(&srv, &app, "B_CR", 320);
    let bodies: Vec<Vec<u8>> = names
        .iter()
        .map(|b| {
            serde_json::to_vec(&app.signed("/unipay/close", json!({"bizOrderNo": b}))).unwrap()
        })
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<(usize, Option<i64>)>>> = Arc::default();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (addr, bodies) = (srv.addr.clone(), bodies.clone());
            let (next, acked, results) = (next.clone(), acked.clone(), results.clone());
            thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= bodies.len() {
                    return;
                }
                let reply = try_http(&addr, "POST", "/unipay/close", &bodies[i]);
                let code = reply
                    .as_ref()
                    .and_then(|r| r.json.as_ref()?["code"].as_i64());
                results.lock().unwrap().push((i, code));
                match code {
                    Some(0) => acked.fetch_add(1, Ordering::SeqCst),
                    _ => return,
                };
            })
        })
        .collect();
    wait_for("a third of the closes acknowledged", || {
        (acked.load(Ordering::SeqCst) >= names.len() / 3).then_some(())
    });
    srv.kill9();
    for c in clients {
        c.join().unwrap();
    }
    let results = results.lock().unwrap().clone();
    let acked_ok: Vec<usize> = results
        .iter()
        .filter(|(_, c)| *c == Some(0))
        .map(|(i, _)| *i)
        .collect();
    assert!(
        acked_ok.len() < names.len(),
        "the kill came after every close"
    );
    for (i, code) in &results {
        assert!(
            matches!(code, None | Some(0)),
            "{}: close answered {code:?}",
            names[*i]
        );
    }

    srv.restart();
    // The server serves normally (and, serving, has settled interrupted closes).
    let fresh = srv.pay(&app, "B_AFTER");
    srv.close(&app, json!({"bizOrderNo": "B_AFTER"}))
        .expect(0, "success");
    assert_eq!(srv.status(&app, "B_AFTER"), "close");
    assert!(fresh["orderNo"].is_string());

    let db = srv.db_read();
    let intents: i64 = db
        .query_row("SELECT count(*) FROM close_intent", [], |r| r.get(0))
        .unwrap();
    assert_eq!(intents, 0, "interrupted closes were settled at start-up");
    for (i, biz) in names.iter().enumerate() {
        let (order_no, status): (String, String) = db
            .query_row(
                "SELECT order_no, status FROM pay_order WHERE biz_order_no = ?1",
                [biz],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let closed_ok: i64 = db
            .query_row(
                "SELECT count(*) FROM close_record WHERE order_no = ?1 AND closed = 1",
                [&order_no],
                |r| r.get(0),
            )
            .unwrap();
        let trade: Option<String> = db
            .query_row(
                "SELECT state FROM sandbox_trade WHERE order_no = ?1",
                [&order_no],
                |r| r.get(0),
            )
            .ok();
        let waiting = i % 2 == 0;
        if acked_ok.contains(&i) {
            assert_eq!(status, "close", "{biz}: acknowledged close lost");
        }
        match (waiting, status.as_str()) {
            (true, "wait") | (false, "progress") => assert_eq!(closed_ok, 0, "{biz}"),
            (_, "close") => assert_eq!(closed_ok, 1, "{biz}: one successful close record"),
            (_, other) => panic!(
                "{biz} ({}) is {other}",
                if waiting { "wait" } else { "pay" }
            ),
        }
        if !waiting {
            let want = if status == "close" { "closed" } else { "open" };
            assert_eq!(trade.as_deref(), Some(want), "{biz} is {status}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backups and the start-up integrity check
// ---------------------------------------------------------------------------------------------

#[test]
fn backup_taken_during_load_restores_every_acknowledged_order() {
    let mut srv = TestServer::start();
    let app = srv.create_app("M_BAK", "A_BAK", &["--secret", "bak-secret"]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let n = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (addr, app) = (srv.addr.clone(), app.clone());
            let (stop, acked, n) = (stop.clone(), acked.clone(), n.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let biz = format!("B_BAK{:05}", n.fetch_add(1, Ordering::SeqCst));
                    let body = app.signed(
                        "/unipay/gateway/prePay",
                        json!({"bizOrderNo": biz, "title": "t", "amount": "2.00"}),
                    );
                    let raw = serde_json::to_vec(&body).unwrap();
                    let r = http(&addr, "POST", "/unipay/gateway/prePay", &raw);
                    assert_eq!(r.code(), 0, "{}", r.body);
                    acked.lock().unwrap().push(biz);
                }
            })
        })
        .collect();
    wait_for("some orders", || {
        (acked.lock().unwrap().len() >= 100).then_some(())
    });
    let before: Vec<String> = acked.lock().unwrap().clone();
    let out = srv.dir.join("backup.db");
    let res = run_cli(&["backup", "--db", path_str(&srv.db), "--out", path_str(&out)]);
    assert!(
        res.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    wait_for("load after the backup", || {
        (acked.lock().unwrap().len() >= before.len() + 50).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    // A second backup to the same file is refused: nothing is overwritten.
    let again = run_cli(&["backup", "--db", path_str(&srv.db), "--out", path_str(&out)]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // The copy is sound and holds every order acknowledged before the backup started.
    {
        let c = rusqlite::Connection::open(&out).unwrap();
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let mut st = c
            .prepare("SELECT count(*) FROM pay_order WHERE biz_order_no = ?1")
            .unwrap();
        for biz in &before {
            let n: i64 = st.query_row([biz], |r| r.get(0)).unwrap();
            assert_eq!(n, 1, "{biz} acknowledged before the backup is missing");
        }
    }
    // Restore as the README says: stop, put the copy in place, remove -wal/-shm, start.
    srv.kill9();
    std::fs::copy(&out, &srv.db).unwrap();
    for ext in ["-wal", "-shm"] {
        let mut p = srv.db.as_os_str().to_owned();
        p.push(ext);
        let _ = std::fs::remove_file(p);
    }
    srv.restart();
    assert_eq!(srv.status(&app, &before[0]), "wait");
    assert_eq!(srv.status(&app, before.last().unwrap()), "wait");
    srv.pre_pay(&app, "B_AFTER_RESTORE");
}

/// A database with many pages, no WAL beside it.
fn make_big_db(path: &Path) {
    let (mut c, _) = unipay::store::open_connection(path).unwrap();
    let tx = c.transaction().unwrap();
    for i in 0..4000 {
        tx.execute(
            "INSERT INTO merchant (mch_no, enabled, created_at) VALUES (?1, 1, ?2)",
            rusqlite::params![format!("M{i:08}-{}", "x".repeat(20)), i],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
        .unwrap();
}

#[test]
fn a_damaged_database_is_refused_at_start() {
    let dir = temp_dir("damaged");
    let good = dir.join("good.db");
    make_big_db(&good);
    let bad = dir.join("bad.db");
    std::fs::copy(&good, &bad).unwrap();
    // Overwrite 64 bytes in the middle of a page in the middle of the file.
    let mut bytes = std::fs::read(&bad).unwrap();
    let page = 4096;
    let pages = bytes.len() / page;
    assert!(pages > 20, "{pages} pages");
    let at = (pages / 2) * page + page / 2;
    bytes[at..at + 64].fill(0xA5);
    std::fs::write(&bad, &bytes).unwrap();

    let serve = |db: &Path| {
        Command::new(bin())
            .args(["serve", "--db", path_str(db), "--listen", "127.0.0.1:0"])
            .env_remove("UNIPAY_DB")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = serve(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served a damaged database: {stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "it must not listen"
    );
    assert!(
        stderr.contains("is damaged") && stderr.contains("quick_check"),
        "{stderr}"
    );
    assert!(stderr.contains(path_str(&bad)), "{stderr}");

    // The same file undamaged starts (and is then stopped).
    let mut child = Command::new(bin())
        .args(["serve", "--db", path_str(&good), "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 12];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"listening on");
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damage_in_a_big_database_is_found_after_start_up_and_stops_the_server() {
    let dir = temp_dir("damaged-big");
    let db = dir.join("big.db");
    {
        // Past the size checked before serving: 10,000 pages of one row each.
        let (c, _) = unipay::store::open_connection(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE filler (x BLOB NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
             INSERT INTO filler (x) SELECT zeroblob(3500) FROM n;
             PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;",
        )
        .unwrap();
    }
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() as u64 > unipay::store::CHECK_BEFORE_SERVING_MAX_BYTES);
    // The b-tree header of a page in the middle of the file (a filler page, not the schema).
    let page = 4096;
    let at = (bytes.len() / page / 2) * page;
    bytes[at..at + 8].fill(0xA5);
    std::fs::write(&db, &bytes).unwrap();

    let mut child = Command::new(bin())
        .args(["serve", "--db", path_str(&db), "--listen", "127.0.0.1:0"])
        .env_remove("UNIPAY_DB")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It listens at once (the whole check would hold a restart of a big database up)...
    // (stdout stays open: the admin token is printed after the first line.)
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 12];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"listening on");
    // ... and stops as soon as the check in the background finds the damage.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still serving a damaged database after 60 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("runs in the background"), "{stderr}");
    assert!(
        stderr.contains("is damaged") && stderr.contains("quick_check"),
        "{stderr}"
    );
    assert!(stderr.contains(path_str(&db)), "{stderr}");
    drop(stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Secrets never reach the log
// ---------------------------------------------------------------------------------------------

#[test]
fn secrets_and_signing_strings_never_reach_the_log_at_trace_level() {
    let merchant = Merchant::start(&[(500, "no")]);
    let srv = TestServer::start_with_env(
        &["--notify-retry-schedule", "1s,1s,1s"],
        &[("RUST_LOG", "trace")],
    );
    let secrets = [
        "Md5-Secret-Do-Not-Log-1",
        "hmac-secret-do-not-log-2",
        "Sm3SecretDoNotLog3",
    ];
    let mut cli_logs = String::new();
    let mut create = |mch: &str, id: &str, args: &[&str]| {
        let db = path_str(&srv.db);
        let mut all = vec!["app", "create", "--db", db, "--mch-no", mch, "--app-id", id];
        all.extend_from_slice(args);
        let out = Command::new(bin())
            .args(&all)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success());
        cli_logs.push_str(&String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        App {
            mch_no: mch.into(),
            app_id: id.into(),
            secret: v["secret"].as_str().unwrap().into(),
            sign_type: unipay::sign::SignType::parse(v["signType"].as_str().unwrap()).unwrap(),
        }
    };
    let apps = [
        create("M_LOG1", "A_LOG1", &["--secret", secrets[0]]),
        create(
            "M_LOG2",
            "A_LOG2",
            &[
                "--secret",
                secrets[1],
                "--sign-type",
                "hmac_sha256",
                "--notify-url",
                &merchant.url,
            ],
        ),
        create(
            "M_LOG3",
            "A_LOG3",
            &[
                "--secret",
                secrets[2],
                "--sign-type",
                "sm3",
                "--notify-url",
                &merchant.url,
            ],
        ),
    ];
    for (i, app) in apps.iter().enumerate() {
        let b = |n: &str| format!("B_LOG{i}_{n}");
        let paid = srv.pay_with(app, &b("paid"), json!({"notifyUrl": merchant.url}));
        srv.sandbox_pay(paid["orderNo"].as_str().unwrap())
            .expect(0, "");
        srv.pay(app, &b("closed"));
        let nonce = json!({"bizOrderNo": b("closed"), "nonceStr": "log-nonce"});
        let body = app.signed("/unipay/close", nonce);
        srv.post_map("/unipay/close", &body).expect(0, "success");
        srv.post_map("/unipay/close", &body).expect(0, "success");
        srv.pre_pay(app, &b("wait"));
        srv.order(app, &b("wait"));
        // A bad signature and a bad field.
        let mut bad = app.signed("/unipay/close", json!({"bizOrderNo": b("wait")}));
        bad.insert("sign".into(), "0".repeat(32).into());
        srv.post_map("/unipay/close", &bad).expect(20052, "");
        srv.close(app, json!({"bizOrderNo": b("wait"), "clientIp": "x"}))
            .expect(10506, "");
    }
    let call = Command::new(bin())
        .args([
            "call",
            "--db",
            path_str(&srv.db),
            "--app-id",
            "A_LOG1",
            "--url",
            &srv.base_url(),
            "query",
            r#"{"bizOrderNo":"B_LOG0_wait"}"#,
        ])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(call.status.success());
    cli_logs.push_str(&String::from_utf8_lossy(&call.stderr));
    // Notifications: a failed attempt, then deliveries, for two apps.
    // 7 events (the first attempt fails once): 8 requests at the merchant.
    wait_for("notifications", || (merchant.count() >= 8).then_some(()));
    let log = srv.stderr() + &cli_logs;
    assert!(log.contains("DEBUG"), "the log ran at trace level");
    assert!(
        log.contains("notify event="),
        "notification attempts are logged"
    );
    let upper = log.to_uppercase();
    for s in secrets {
        assert!(!log.contains(s), "secret {s} is in the log");
        assert!(
            !upper.contains(&s.to_uppercase()),
            "secret {s} (upper-cased) is in the log"
        );
    }
    assert!(!upper.contains("&KEY="), "a signing string is in the log");
}

// ---------------------------------------------------------------------------------------------
// A panic in a handler
// ---------------------------------------------------------------------------------------------

/// Records the router's error lines (the only ones this test binary keeps).
struct RouterLog(Mutex<Vec<String>>);

impl log::Log for RouterLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("unipay::router")
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            self.0.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn router_log() -> &'static RouterLog {
    static LOG: OnceLock<&'static RouterLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static RouterLog = Box::leak(Box::new(RouterLog(Mutex::new(Vec::new()))));
        log::set_logger(log).expect("no other logger in the test binary");
        log::set_max_level(log::LevelFilter::Error);
        log
    })
}

/// A clock that panics once when armed: a stand-in for any bug in a handler.
struct ArmedClock(AtomicBool);

impl unipay::sys::Clock for ArmedClock {
    fn now_ms(&self) -> i64 {
        if self.0.swap(false, Ordering::SeqCst) {
            panic!("armed test clock");
        }
        unipay::sys::SystemClock.now_ms()
    }
}

#[test]
fn a_handler_panic_is_answered_10500_under_the_logged_trace_id() {
    use unipay::channel::Channels;
    use unipay::gateway::Gateway;
    use unipay::router::Router;
    use unipay::store::{Offline, Store};
    use unipay::sys::{Clock, OsRandom, Random};

    let logs = router_log();
    let dir = temp_dir("panic");
    let db = dir.join("p.db");
    let app = unipay::domain::App {
        app_id: "A_PANIC".into(),
        mch_no: "M_PANIC".into(),
        sign_type: unipay::sign::SignType::Md5,
        secret: "panic-secret".into(),
        req_sign: true,
        req_timeout_secs: 300,
        notify_url: None,
        order_timeout_min: 30,
        limit_amount: None,
        enabled: true,
        mch_enabled: true,
    };
    {
        let (mut c, _) = Offline::open(&db).unwrap();
        c.create_app(&app, now_ms()).unwrap();
    }
    let (st, _) = Store::open(&db, UtcOffset::CST).unwrap();
    let st = Arc::new(st);
    let armed = Arc::new(ArmedClock(AtomicBool::new(false)));
    let clock: Arc<dyn Clock> = armed.clone();
    let random: Arc<dyn Random> = Arc::new(OsRandom);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let channels = Channels::builtin(st.clone(), clock.clone(), random.clone(), base.clone());
    let gw = Arc::new(Gateway::new(st, channels, clock, random, base));
    let handle = unipay::http::serve(
        listener,
        unipay::http::Limits::DEFAULT,
        Arc::new(Router { gw }),
    )
    .unwrap();
    let addr = handle.local_addr().to_string();
    let client = App {
        mch_no: "M_PANIC".into(),
        app_id: "A_PANIC".into(),
        secret: "panic-secret".into(),
        sign_type: unipay::sign::SignType::Md5,
    };
    let body = serde_json::to_vec(&client.signed(
        "/unipay/gateway/prePay",
        json!({"bizOrderNo": "B_P", "title": "t", "amount": "1"}),
    ))
    .unwrap();

    armed.0.store(true, Ordering::SeqCst);
    let r = http(&addr, "POST", "/unipay/gateway/prePay", &body);
    r.expect(10500, "系统错误").signed_by(&client);
    let trace = r.json()["traceId"].as_str().unwrap().to_string();
    let lines = logs.0.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("panicked") && l.contains(&format!("trace={trace}"))),
        "no panic line with trace {trace}: {lines:?}"
    );
    // Nothing was done, and the server goes on.
    let r = http(&addr, "POST", "/unipay/gateway/prePay", &body);
    r.expect(0, "success");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `Debug` output (what a careless log line would print) never shows a secret.
#[test]
fn debug_output_never_shows_a_secret() {
    let app = unipay::domain::App {
        app_id: "A".into(),
        mch_no: "M".into(),
        sign_type: unipay::sign::SignType::Md5,
        secret: "debug-secret-value".into(),
        req_sign: true,
        req_timeout_secs: 300,
        notify_url: None,
        order_timeout_min: 30,
        limit_amount: None,
        enabled: true,
        mch_enabled: true,
    };
    let text = format!("{app:?} {app:#?}");
    assert!(!text.contains("debug-secret-value"), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
}

#[test]
fn backup_command_line() {
    let out = run_cli(&["backup", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage: unipay backup --db PATH --out FILE"),
        "{help}"
    );
    assert!(help.contains("To restore"), "{help}");
    assert!(String::from_utf8_lossy(&run_cli(&["--help"]).stdout).contains("backup"));
    for (args, needle) in [
        (&["backup", "--db", "x.db"][..], "--out"),
        (&["backup", "--out", "y.db"], "--db"),
        (
            &["backup", "--db", "x.db", "--out", "y.db", "--bogus"],
            "--bogus",
        ),
    ] {
        let out = run_cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{args:?}"
        );
    }
    let dir = temp_dir("backup-cli");
    let missing = dir.join("missing.db");
    let out = run_cli(&[
        "backup",
        "--db",
        path_str(&missing),
        "--out",
        path_str(&dir.join("b.db")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database at"));
    assert!(!missing.exists(), "no database is created by a backup");
    let _ = std::fs::remove_dir_all(&dir);
}
