//! Slow and stalled clients: connections past the open-file limit or past the per-address cap
//! get the 503 envelope at once, stalled connections neither delay a normal request nor grow
//! threads and memory past a bound, and they are let go after the request timeout (a begun
//! request with a 408 envelope).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

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

/// Reads what the server sends on `s` until it closes it, and checks it is the overload reply:
/// HTTP 503 with the unsigned JSON envelope (10500, "busy").
#[track_caller]
fn assert_overloaded(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    let json = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let reply: Value = serde_json::from_str(json).unwrap();
    assert_eq!(reply["code"], 10500, "{text}");
    assert_eq!(reply["msg"], unipay::error::MSG_OVERLOADED, "{text}");
    assert!(reply["sign"].is_null(), "{text}");
    assert_eq!(reply["traceId"].as_str().map(str::len), Some(12));
}

/// `--max-conns-per-ip 4`: four idle connections from 127.0.0.1 hold all of its places, a fifth
/// gets the overload 503 at once, and once one of the four is gone a new one is served.
#[test]
fn connections_over_the_per_address_cap_get_503_at_once() {
    let srv = TestServer::start_with(&["--max-conns-per-ip", "4"]);
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(&srv.addr).unwrap())
        .collect();
    let started = Instant::now();
    let mut fifth = TcpStream::connect(&srv.addr).unwrap();
    assert_overloaded(&mut fifth);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Still full while the four stay (they are idle, well within the request timeout).
    let r = try_http(&srv.addr, "GET", "/", b"").expect("a reply");
    assert_eq!(r.status, 503, "{}", r.body);
    drop(held.pop());
    let r = wait_for("a place to be freed", || {
        try_http(&srv.addr, "GET", "/", b"").filter(|r| r.status == 200)
    });
    assert!(r.body.starts_with("unipay"), "{}", r.body);
    // The three left are still served.
    for s in &mut held {
        s.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        assert!(
            out.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    // UNIPAY_MAX_CONNS_PER_IP sets it too.
    let srv = TestServer::start_with_env(&[], &[("UNIPAY_MAX_CONNS_PER_IP", "1")]);
    let _one = TcpStream::connect(&srv.addr).unwrap();
    assert_overloaded(&mut TcpStream::connect(&srv.addr).unwrap());
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
