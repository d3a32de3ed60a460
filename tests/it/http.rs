//! The HTTP shapes real clients send: pooled keep-alive connections (SDK HTTP clients), chunked
//! bodies, `Expect: 100-continue` (curl with a large body), and a bodiless POST without
//! Content-Length (the README's `curl -X POST …/sandbox/pay/<orderNo>`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use serde_json::json;

use crate::helpers::*;

/// Reads one response (status line, headers, Content-Length body) from `r`.
fn read_one(r: &mut BufReader<TcpStream>) -> Reply {
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
    let head = String::from_utf8(head).unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    let mut length = 0usize;
    for line in head.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':').unwrap();
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        if k == "content-length" {
            length = v.parse().unwrap();
        }
        headers.push((k, v));
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).expect("read the body");
    let body = String::from_utf8(body).unwrap();
    Reply {
        status,
        headers,
        json: serde_json::from_str(&body).ok(),
        body,
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
