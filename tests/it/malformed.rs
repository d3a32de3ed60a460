//! Malformed input: a corpus of bad bodies (not JSON, wrong JSON types, huge, deeply nested,
//! unicode tricks, SQL-looking strings, over-long fields, bad IPs and times, wrong signatures)
//! and requests broken at the HTTP level. Each gets a JSON envelope with a non-zero code, the
//! server stays up, and the one victim order they aim at is unchanged.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use serde_json::{json, Map, Value};

use crate::helpers::*;
use unipay::sys::UtcOffset;

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
    let pad_70k = {
        let mut b = v.signed(json!({}));
        b.insert("pad".into(), "x".repeat(70 * 1024).into());
        serde_json::to_vec(&b).unwrap()
    };
    let truncated_sign = {
        let b = v.signed(json!({}));
        let s = b["sign"].as_str().unwrap()[..31].to_string();
        v.spoiled("sign", json!(s))
    };

    let close = "/unipay/close";
    #[rustfmt::skip]
    let corpus: Vec<(&str, &str, Vec<u8>, i64)> = vec![
        // Not JSON, or not one JSON object.
        ("plain text",                         close,         b"hello".to_vec(),                                             10505),
        ("open brace",                         close,         b"{".to_vec(),                                                 10505),
        ("close brace",                        close,         b"}".to_vec(),                                                 10505),
        ("trailing comma",                     close,         br#"{"bizOrderNo":"B_VICTIM",}"#.to_vec(),                     10505),
        ("single quotes",                      close,         b"{'bizOrderNo':'B_VICTIM'}".to_vec(),                         10505),
        ("form encoded",                       close,         b"bizOrderNo=B_VICTIM&useCancel=true".to_vec(),                10505),
        ("xml",                                close,         b"<xml><bizOrderNo>B_VICTIM</bizOrderNo></xml>".to_vec(),      10505),
        ("empty",                              close,         Vec::new(),                                                    10505),
        ("json null",                          close,         b"null".to_vec(),                                              10505),
        ("array of the request",               close,         [b"[", &good[..], b"]"].concat(),                              10505),
        ("string",                             close,         b"\"B_VICTIM\"".to_vec(),                                      10505),
        ("number",                             close,         b"12345".to_vec(),                                             10505),
        ("valid request then garbage",         close,         with_tail(b"xyz"),                                             10505),
        ("two objects",                        close,         with_tail(&good),                                              10505),
        ("NaN",                                close,         br#"{"bizOrderNo":"B_VICTIM","useCancel":NaN}"#.to_vec(),      10505),
        // Wrong JSON types.
        ("number order no",                    close,         v.spoiled("bizOrderNo", json!(123)),                           10505),
        ("array order no",                     close,         v.spoiled("bizOrderNo", json!([VICTIM])),                      10505),
        ("operator object",                    close,         v.spoiled("bizOrderNo", json!({"$ne": null})),                 10505),
        ("useCancel yes",                      close,         v.spoiled("useCancel", json!("yes")),                          10505),
        ("useCancel 1",                        close,         v.spoiled("useCancel", json!(1)),                              10505),
        ("mchNo true",                         close,         v.spoiled("mchNo", json!(true)),                               10505),
        ("appId number",                       close,         v.spoiled("appId", json!(12.5)),                               10505),
        ("reqTime epoch",                      close,         v.spoiled("reqTime", json!(1712345678000i64)),                 10505),
        ("sign number",                        close,         v.spoiled("sign", json!(0)),                                   10505),
        ("clientIp array",                     close,         v.spoiled("clientIp", json!(["127.0.0.1"])),                   10505),
        // Nulls mean absent.
        ("mchNo null",                         close,         v.spoiled("mchNo", Value::Null),                               10506),
        ("appId null",                         close,         v.spoiled("appId", Value::Null),                               10506),
        ("reqTime null",                       close,         v.spoiled("reqTime", Value::Null),                             10506),
        ("order no null",                      close,         v.bytes(json!({"bizOrderNo": null})),                          10506),
        ("sign null",                          close,         v.spoiled("sign", Value::Null),                                20052),
        // Huge.
        ("70 KiB body",                        close,         pad_70k,                                                       10506),
        ("40000-digit amount",                 "/unipay/pay", huge_amount,                                                   10506),
        ("amount in exponent form",            "/unipay/pay", pay(serde_json::from_str("1e999").unwrap()),                   10505),
        ("60 KB order no",                     close,         v.spoiled("bizOrderNo", json!("B".repeat(60_000))),            10506),
        ("4000 unknown keys, unsigned",        close,         many_keys,                                                     20052),
        // Deeply nested.
        ("nested 40 deep in a signed request", close,         deep_in_unknown_field,                                         10505),
        ("nested 100 deep",                    close,         v.spoiled("x", nest(100)),                                     10505),
        ("30000 unclosed brackets",            close,         vec![b'['; 30_000],                                            10505),
        // Unicode tricks.
        ("byte order mark",                    close,         [&b"\xef\xbb\xbf"[..], &good[..]].concat(),                    10505),
        ("invalid UTF-8",                      close,         b"{\"bizOrderNo\":\"\xff\xfe\"}".to_vec(),                     10505),
        ("overlong UTF-8 slash",               close,         b"{\"bizOrderNo\":\"\xc0\xaf\"}".to_vec(),                     10505),
        ("lone surrogate",                     close,         br#"{"bizOrderNo":"\ud800"}"#.to_vec(),                        10505),
        ("NUL suffix",                         close,         v.bytes(json!({"bizOrderNo": "B_VICTIM\u{0}"})),               20041),
        ("fullwidth letter",                   close,         v.bytes(json!({"bizOrderNo": "Ｂ_VICTIM"})),                   20041),
        ("zero-width space",                   close,         v.bytes(json!({"bizOrderNo": "B_VICTIM\u{200b}"})),            20041),
        ("other case",                         close,         v.bytes(json!({"bizOrderNo": "b_victim"})),                    20041),
        ("right-to-left override",             close,         v.bytes(json!({"bizOrderNo": "\u{202e}MITCIV_B"})),            20041),
        ("33 CJK characters",                  close,         v.spoiled("appId", json!("中".repeat(33))),                    10506),
        // SQL-looking strings.
        ("or 1=1",                             close,         v.bytes(json!({"bizOrderNo": "B_VICTIM' OR '1'='1"})),         20041),
        ("drop table",                         close,         v.bytes(json!({"bizOrderNo": "'; DROP TABLE pay_order; --"})), 20041),
        ("LIKE wildcard",                      close,         v.bytes(json!({"orderNo": "%"})),                              20041),
        ("quoted merchant",                    close,         v.spoiled("mchNo", json!("M' OR 1=1 --")),                     20023),
        ("quoted app",                         close,         v.spoiled("appId", json!("A_HARD\" OR \"1\"=\"1")),            20023),
        // Over-long fields.
        ("mchNo 33",                           close,         v.spoiled("mchNo", json!("M".repeat(33))),                     10506),
        ("orderNo 101",                        close,         v.spoiled("orderNo", json!("P".repeat(101))),                  10506),
        ("outOrderNo 151",                     close,         v.spoiled("outOrderNo", json!("O".repeat(151))),               10506),
        ("nonceStr 33",                        close,         v.spoiled("nonceStr", json!("n".repeat(33))),                  10506),
        ("sign 65",                            close,         v.spoiled("sign", json!("a".repeat(65))),                      10506),
        // Bad IPs.
        ("ip 300",                             close,         v.spoiled("clientIp", json!("300.1.1.1")),                     10506),
        ("ip three parts",                     close,         v.spoiled("clientIp", json!("1.2.3")),                         10506),
        ("ip bad v6",                          close,         v.spoiled("clientIp", json!("::gg")),                          10506),
        ("ip with a command",                  close,         v.spoiled("clientIp", json!("127.0.0.1; rm -rf /")),           10506),
        ("ip host name",                       close,         v.spoiled("clientIp", json!("localhost")),                     10506),
        ("ip leading space",                   close,         v.spoiled("clientIp", json!(" 127.0.0.1")),                    10506),
        ("ip hex",                             close,         v.spoiled("clientIp", json!("0x7f.0.0.1")),                    10506),
        // Bad times.
        ("month 13",                           close,         v.spoiled("reqTime", json!("2025-13-01 00:00:00")),            10505),
        ("February 30",                        close,         v.spoiled("reqTime", json!("2025-02-30 12:00:00")),            10505),
        ("ISO T",                              close,         v.spoiled("reqTime", json!("2025-01-01T00:00:00")),            10505),
        ("hour 24",                            close,         v.spoiled("reqTime", json!("2025-01-01 24:00:00")),            10505),
        ("leap second",                        close,         v.spoiled("reqTime", json!("2025-01-01 23:59:60")),            10505),
        ("empty time",                         close,         v.spoiled("reqTime", json!("")),                               10505),
        ("word",                               close,         v.spoiled("reqTime", json!("yesterday")),                      10505),
        ("fullwidth digits",                   close,         v.spoiled("reqTime", json!("２０２５-01-01 00:00:00")),        10505),
        ("time with zone",                     close,         v.spoiled("reqTime", json!(format!("{now}+08:00"))),           10505),
        ("1970",                               close,         v.bytes(json!({"reqTime": "1970-01-01 00:00:00"})),            10506),
        ("year 9999",                          close,         v.bytes(json!({"reqTime": "9999-12-31 23:59:59"})),            10506),
        // Signatures.
        ("signature of another request",       close,         other_request_sign,                                            20052),
        ("signature truncated",                close,         truncated_sign,                                                20052),
    ];
    assert!(corpus.len() >= 40, "{} bodies", corpus.len());
    let mut failures = Vec::new();
    for (label, path, body, want) in &corpus {
        let reply = srv.post_raw(path, body);
        // After every body: the server is up and the victim untouched.
        assert_eq!(srv.get("/").status, 200, "the server is down after {label}");
        v.unchanged_after(label);
        let got = reply.json.as_ref().and_then(|j| j["code"].as_i64());
        // A body over the limit is refused at the HTTP level (413); every other body is read.
        let status = if *label == "70 KiB body" { 413 } else { 200 };
        let json_reply = reply.status == status
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
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, i64)> = vec![
        ("20 KiB header",               [head(&format!("X-Big: {}\r\n", "a".repeat(20_000)), body.len()).as_bytes(), &body].concat(),       10506),
        ("100 headers",                 [head(&many_headers, body.len()).as_bytes(), &body].concat(),                                       10506),
        ("10 MB content length",        head("", 10_000_000).into_bytes(),                                                                  10506),
        ("content length not a number", [head("", 0).replace("Content-Length: 0", "Content-Length: abc").as_bytes(), &body].concat(),       10505),
        ("two content lengths",         [head(&format!("Content-Length: {}\r\n", body.len() + 1), body.len()).as_bytes(), &body].concat(),  10505),
        ("chunk over the body limit",   b"POST /unipay/close HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n".to_vec(), 10506),
        ("bad chunk size",              b"POST /unipay/close HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),     10505),
        ("unknown transfer coding",     [head("Transfer-Encoding: gzip\r\n", body.len()).as_bytes(), &body].concat(),                       10505),
        ("garbage request line",        b"GARBAGE\r\n\r\n".to_vec(),                                                                        10505),
        ("binary junk",                 vec![0u8, 1, 2, 3, 255, 254, b'\r', b'\n', b'\r', b'\n'],                                           10505),
        ("header without colon",        [head("NoColonHere\r\n", body.len()).as_bytes(), &body].concat(),                                   10505),
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
