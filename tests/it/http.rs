//! The HTTP shapes real clients send: pooled keep-alive connections (SDK HTTP clients), chunked
//! bodies, `Expect: 100-continue` (curl with a large body), and a bodiless POST without
//! Content-Length (the README's `curl -X POST …/sandbox/pay/<orderNo>`). And the edges: an
//! HTTP/1.0 request with a transfer coding, chunked bodies read strictly (CRLF lines, the
//! extension grammar, trailers within the header limits), HTTP statuses for requests that could
//! not be read, and HEAD answered like GET without the body.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

/// Reads one response (status line, headers, Content-Length body) from `r`.
fn read_one(r: &mut impl BufRead) -> Reply {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("read a response line");
        assert!(n > 0, "connection closed before a full response");
        head.extend_from_slice(line.as_bytes());
        if line == "\r\n" {
            break;
        }
    }
    let mut reply = parse_head(&String::from_utf8(head).unwrap());
    let length = reply
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).expect("read the body");
    reply.body = String::from_utf8(body).unwrap();
    reply.json = serde_json::from_str(&reply.body).ok();
    reply
}

/// A reply with the status and headers of a response head (no body).
fn parse_head(head: &str) -> Reply {
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    for line in head.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Reply {
        status,
        headers,
        body: String::new(),
        json: None,
    }
}

fn connect(srv: &TestServer) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn post_head(srv: &TestServer, path: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json; charset=UTF-8\r\n{extra}\r\n",
        srv.addr
    )
}

#[test]
fn keep_alive_connection_serves_several_requests() {
    let srv = TestServer::start();
    let app = srv.app("A_KEEP");
    let (mut s, mut r) = connect(&srv);
    let pay = serde_json::to_vec(&app.signed(
        "/unipay/pay",
        json!({"bizOrderNo": "B_KEEP", "title": "t", "amount": 1, "channel": "sandbox", "method": "wap"}),
    ))
    .unwrap();
    let close =
        serde_json::to_vec(&app.signed("/unipay/close", json!({"bizOrderNo": "B_KEEP"}))).unwrap();
    // Two requests pipelined in one write, then a third after the replies.
    let mut bytes = post_head(
        &srv,
        "/unipay/pay",
        &format!("Content-Length: {}\r\n", pay.len()),
    )
    .into_bytes();
    bytes.extend_from_slice(&pay);
    bytes.extend_from_slice(
        post_head(
            &srv,
            "/unipay/close",
            &format!("Content-Length: {}\r\n", close.len()),
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(&close);
    s.write_all(&bytes).unwrap();
    read_one(&mut r).expect(0, "success").signed_by(&app);
    read_one(&mut r).expect(0, "success").signed_by(&app);
    s.write_all(
        post_head(
            &srv,
            "/unipay/close",
            &format!("Content-Length: {}\r\n", close.len()),
        )
        .as_bytes(),
    )
    .unwrap();
    s.write_all(&close).unwrap();
    read_one(&mut r).expect(20044, "").signed_by(&app);
    assert_eq!(srv.status(&app, "B_KEEP"), "close");
}

#[test]
fn chunked_body_is_read() {
    let srv = TestServer::start();
    let app = srv.app("A_CHUNK");
    srv.pay(&app, "B_CHUNK");
    let body =
        serde_json::to_vec(&app.signed("/unipay/close", json!({"bizOrderNo": "B_CHUNK"}))).unwrap();
    let (first, second) = body.split_at(body.len() / 2);
    let mut bytes = post_head(
        &srv,
        "/unipay/close",
        "Transfer-Encoding: chunked\r\nConnection: close\r\n",
    )
    .into_bytes();
    for part in [first, second] {
        bytes.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        bytes.extend_from_slice(part);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    let (mut s, mut r) = connect(&srv);
    s.write_all(&bytes).unwrap();
    read_one(&mut r).expect(0, "success").signed_by(&app);
    assert_eq!(srv.status(&app, "B_CHUNK"), "close");
}

#[test]
fn expect_100_continue_is_honoured() {
    let srv = TestServer::start();
    let app = srv.app("A_EXPECT");
    srv.pay(&app, "B_EXPECT");
    let body = serde_json::to_vec(&app.signed("/unipay/close", json!({"bizOrderNo": "B_EXPECT"})))
        .unwrap();
    let (mut s, mut r) = connect(&srv);
    s.write_all(
        post_head(
            &srv,
            "/unipay/close",
            &format!(
                "Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n",
                body.len()
            ),
        )
        .as_bytes(),
    )
    .unwrap();
    let interim = read_one(&mut r);
    assert_eq!(interim.status, 100, "{interim:?}");
    s.write_all(&body).unwrap();
    read_one(&mut r).expect(0, "success").signed_by(&app);
    assert_eq!(srv.status(&app, "B_EXPECT"), "close");
}

/// `curl -X POST http://…/sandbox/pay/<orderNo>` sends neither a body nor a Content-Length.
#[test]
fn bodiless_post_without_content_length_pays_at_the_sandbox() {
    let srv = TestServer::start();
    let app = srv.app("A_CURL");
    let data = srv.pay(&app, "B_CURL");
    let order_no = data["orderNo"].as_str().unwrap();
    let (mut s, mut r) = connect(&srv);
    write!(
        s,
        "POST /sandbox/pay/{order_no} HTTP/1.1\r\nHost: {}\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
        srv.addr
    )
    .unwrap();
    read_one(&mut r).expect(0, "success").signed_by(&app);
    assert_eq!(srv.status(&app, "B_CURL"), "success");
}

/// Sends `bytes` on a fresh connection (its sending side left open) and reads until the server
/// closes it; fails when the server keeps it open.
fn until_closed(srv: &TestServer, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out) {
        panic!(
            "the connection is still open ({e}) after: {}",
            String::from_utf8_lossy(&out)
        );
    }
    out
}

/// The responses in `raw`, one after the other.
fn responses(raw: &[u8]) -> Vec<Reply> {
    let mut r = BufReader::new(raw);
    let mut out = Vec::new();
    while !r.fill_buf().unwrap().is_empty() {
        out.push(read_one(&mut r));
    }
    out
}

/// A chunked `POST /unipay/close` of `body` in two chunks, the first line of each chunk
/// followed by `ext`, the last chunk by the `trailer` lines (each with its own line ending).
fn chunked_close(srv: &TestServer, body: &[u8], ext: &str, trailer: &str) -> Vec<u8> {
    let (first, second) = body.split_at(body.len() / 2);
    let mut bytes = post_head(srv, "/unipay/close", "Transfer-Encoding: chunked\r\n").into_bytes();
    for part in [first, second] {
        bytes.extend_from_slice(format!("{:x}{ext}\r\n", part.len()).as_bytes());
        bytes.extend_from_slice(part);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("0{ext}\r\n{trailer}\r\n").as_bytes());
    bytes
}

/// RFC 9112 §6.1: HTTP/1.0 has no transfer codings, so the framing of an HTTP/1.0 request that
/// has one cannot be trusted. It is refused (400), even with `Connection: keep-alive`, and the
/// connection closed: a request that follows in the same packet is not served.
#[test]
fn an_http10_chunked_request_is_refused_and_its_connection_closed() {
    let srv = TestServer::start();
    let app = srv.app("A_H10");
    srv.pay(&app, "B_H10");
    let body =
        serde_json::to_vec(&app.signed("/unipay/close", json!({"bizOrderNo": "B_H10"}))).unwrap();
    let mut bytes = format!(
        "POST /unipay/close HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        srv.addr,
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(b"\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let raw = until_closed(&srv, &bytes);
    let replies = responses(&raw);
    assert_eq!(replies.len(), 1, "{}", String::from_utf8_lossy(&raw));
    let r = &replies[0];
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.header("connection"), Some("close"));
    r.envelope().unsigned();
    assert_eq!(r.code(), 10505, "{}", r.body);
    assert_eq!(srv.status(&app, "B_H10"), "progress", "nothing was done");

    // Without a transfer coding, an HTTP/1.0 keep-alive connection goes on as before.
    let raw = until_closed(
        &srv,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    let replies = responses(&raw);
    assert_eq!(replies.len(), 2, "{}", String::from_utf8_lossy(&raw));
    assert!(replies.iter().all(|r| r.status == 200), "{replies:?}");
}

/// Chunked bodies are read by RFC 9112 §7.1: every line ends in CRLF, extensions are tokens or
/// quoted strings, and the trailer is read, dropped and held to the header limits.
#[test]
fn chunked_bodies_are_read_strictly() {
    let srv = TestServer::start();
    let app = srv.app("A_STRICT");
    let close_body = |biz: &str| {
        serde_json::to_vec(&app.signed("/unipay/close", json!({"bizOrderNo": biz}))).unwrap()
    };
    // Extensions and a trailer, well formed: read, and the order is closed.
    srv.pay(&app, "B_EXT");
    let bytes = chunked_close(
        &srv,
        &close_body("B_EXT"),
        ";sig=\"a b;c\\\"d\" ; n = v;flag",
        "X-Checksum: abc\r\nX-Other: 1\r\n",
    );
    let (mut s, mut r) = connect(&srv);
    s.write_all(&bytes).unwrap();
    read_one(&mut r).expect(0, "success").signed_by(&app);
    assert_eq!(srv.status(&app, "B_EXT"), "close");

    srv.pay(&app, "B_STRICT");
    let body = close_body("B_STRICT");
    let big_trailer = format!("X-Big: {}\r\n", "t".repeat(16 * 1024));
    let many_trailers: String = (0..70).map(|i| format!("X-T{i}: v\r\n")).collect();
    let with_bare_lf = |from: &[u8], to: &[u8]| -> Vec<u8> {
        let bytes = chunked_close(&srv, &body, "", "X-T: v\r\n");
        let at = bytes
            .windows(from.len())
            .rposition(|w| w == from)
            .expect("the pattern");
        [&bytes[..at], to, &bytes[at + from.len()..]].concat()
    };
    let half = format!("{:x}\r\n", body.len() - body.len() / 2);
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, u16, i64)> = vec![
        ("bare LF in a chunk-size line",  with_bare_lf(half.as_bytes(), half.replace("\r\n", "\n").as_bytes()), 400, 10505),
        ("bare LF after chunk data",      with_bare_lf(b"\r\n0\r\n", b"\n0\r\n"),                               400, 10505),
        ("bare LF in the trailer",        with_bare_lf(b"X-T: v\r\n", b"X-T: v\n"),                              400, 10505),
        ("bare LF ending the trailer",    with_bare_lf(b"X-T: v\r\n\r\n", b"X-T: v\r\n\n"),                      400, 10505),
        ("space in an extension",         chunked_close(&srv, &body, ";a b", ""),                               400, 10505),
        ("unterminated quoted value",     chunked_close(&srv, &body, ";a=\"b", ""),                             400, 10505),
        ("empty extension value",         chunked_close(&srv, &body, ";a=", ""),                                400, 10505),
        ("space after the size",          chunked_close(&srv, &body, " ", ""),                                  400, 10505),
        ("trailer line without a colon",  chunked_close(&srv, &body, "", "no colon\r\n"),                      400, 10505),
        ("70 trailer lines",              chunked_close(&srv, &body, "", &many_trailers),                       431, 10506),
        ("16 KiB trailer",                chunked_close(&srv, &body, "", &big_trailer),                         431, 10506),
    ];
    for (label, bytes, status, code) in cases {
        let raw = until_closed(&srv, &bytes);
        let replies = responses(&raw);
        assert_eq!(
            replies.len(),
            1,
            "{label}: {}",
            String::from_utf8_lossy(&raw)
        );
        let r = &replies[0];
        assert_eq!(r.status, status, "{label}: {}", r.body);
        r.envelope().unsigned();
        assert_eq!(r.code(), code, "{label}: {}", r.body);
        assert_eq!(srv.status(&app, "B_STRICT"), "progress", "after {label}");
    }
}

/// A request that cannot be read gets the HTTP status of why (400, 413, 431) with the JSON
/// envelope; a business error is still HTTP 200.
#[test]
fn http_level_failures_get_http_statuses_and_business_errors_200() {
    let srv = TestServer::start();
    let app = srv.app("A_STATUS");
    let body =
        serde_json::to_vec(&app.signed("/unipay/close", json!({"bizOrderNo": "B_NONE"}))).unwrap();
    let with_body = |extra: &str, len: usize, body: &[u8]| {
        [
            post_head(
                &srv,
                "/unipay/close",
                &format!("{extra}Content-Length: {len}\r\n"),
            )
            .as_bytes(),
            body,
        ]
        .concat()
    };
    let many_headers: String = (0..65).map(|i| format!("X-H{i}: v\r\n")).collect();
    let padded = {
        let mut b = app.signed("/unipay/close", json!({"bizOrderNo": "B_NONE"}));
        b.insert("pad".into(), "x".repeat(70 * 1024).into());
        serde_json::to_vec(&b).unwrap()
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, u16, i64, &str)> = vec![
        ("garbage request line",  b"GARBAGE\r\n\r\n".to_vec(),                                          400, 10505, ""),
        ("HTTP/2.0",              b"GET / HTTP/2.0\r\n\r\n".to_vec(),                                   400, 10505, ""),
        ("bad content length",    [post_head(&srv, "/unipay/close", "Content-Length: 1x\r\n").as_bytes(), &body].concat(), 400, 10505, ""),
        ("70 KiB body",           with_body("", padded.len(), &padded),                                  413, 10506, "请求体过大"),
        ("10 MB content length",  with_body("", 10_000_000, b""),                                        413, 10506, "请求体过大"),
        ("20 KiB header",         with_body(&format!("X-Big: {}\r\n", "a".repeat(20_000)), body.len(), &body), 431, 10506, "请求头过大"),
        ("65 header lines",       with_body(&many_headers, body.len(), &body),                           431, 10506, "请求头过大"),
    ];
    for (label, bytes, status, code, msg) in cases {
        let raw = until_closed(&srv, &bytes);
        let replies = responses(&raw);
        assert_eq!(
            replies.len(),
            1,
            "{label}: {}",
            String::from_utf8_lossy(&raw)
        );
        let r = &replies[0];
        assert_eq!(r.status, status, "{label}: {}", r.body);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{label}: {:?}",
            r.headers
        );
        r.envelope().unsigned();
        assert_eq!(r.code(), code, "{label}: {}", r.body);
        assert!(r.msg().contains(msg), "{label}: {}", r.body);
    }
    // A business error (no such order) is HTTP 200, signed.
    srv.post_raw("/unipay/close", &body)
        .expect(20041, "")
        .signed_by(&app);
}

/// `HEAD` answers like `GET` on every GET route, without the body: the same status and
/// headers, the Content-Length of the GET's body.
#[test]
fn head_answers_like_get_without_a_body() {
    const TOKEN: &str = "head-admin-token";
    let srv = TestServer::start_with(&["--admin-token", TOKEN]);
    let app = srv.app("A_HEAD");
    let order_no = srv.pre_pay(&app, "B_HEAD");
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let none: [(&str, &str); 0] = [];
    let cashier = format!("/sandbox/cashier/{order_no}");
    let order_page = format!("/admin/orders/{order_no}");
    let paths: Vec<(&str, &[(&str, &str)])> = vec![
        ("/", &none),
        ("/healthz", &none),
        (&cashier, &none),
        ("/admin/login", &none),
        ("/admin", &auth),
        ("/admin/orders", &auth),
        (&order_page, &auth),
        ("/admin/apps", &auth),
        // Refused alike: no token.
        ("/admin/apps", &none),
    ];
    for (path, headers) in paths {
        let get = http_with(&srv.addr, "GET", path, headers, b"");
        let mut req = format!(
            "HEAD {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            srv.addr
        );
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        let raw = until_closed(&srv, req.as_bytes());
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("HEAD {path}: {}", String::from_utf8_lossy(&raw)))
            + 4;
        assert_eq!(
            &raw[end..],
            b"",
            "HEAD {path} sent a body: {}",
            String::from_utf8_lossy(&raw)
        );
        let head = parse_head(std::str::from_utf8(&raw[..end]).unwrap());
        assert_eq!(head.status, get.status, "HEAD {path}");
        assert!(!get.body.is_empty(), "GET {path} has a body");
        let length = get.body.len().to_string();
        assert_eq!(
            head.header("content-length"),
            Some(length.as_str()),
            "HEAD {path}"
        );
        assert_eq!(
            get.header("content-length"),
            Some(length.as_str()),
            "GET {path}"
        );
        let without_length = |r: &Reply| -> Vec<(String, String)> {
            r.headers
                .iter()
                .filter(|(k, _)| k != "content-length")
                .cloned()
                .collect()
        };
        assert_eq!(without_length(&head), without_length(&get), "HEAD {path}");
    }
}
