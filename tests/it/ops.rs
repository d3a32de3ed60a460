//! The operations endpoints against the real binary: `/healthz` (and `unipay healthcheck`),
//! `/metrics` behind the admin token, counters that move by exactly the requests sent, and a
//! sample of the exposition after traffic that touches every family (saved for `promtool check
//! metrics`, which CI runs on it).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::notify::Merchant;

const TOKEN: &str = "ops-admin-token-0123456789";

fn scrape(srv: &TestServer) -> String {
    let r = http_with(
        &srv.addr,
        "GET",
        "/metrics",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.body
}

/// The samples of an exposition text: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn value(text: &str, series: &str) -> f64 {
    samples(text).get(series).copied().unwrap_or(0.0)
}

#[test]
fn healthz_answers_200_with_the_version_and_healthcheck_exits_0() {
    let srv = TestServer::start();
    let r = srv.get("/healthz");
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v,
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "db": "ok"})
    );
    // (HEAD is answered like GET: tests/it/http.rs.)
    assert_eq!(srv.post_raw("/healthz", b"").status, 405);
    let url = format!("http://{}/healthz", srv.addr);
    let ok = run_cli(&["healthcheck", "--url", &url]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    // Nothing listens there: exit 1, saying why.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = run_cli(&[
        "healthcheck",
        "--url",
        &format!("http://127.0.0.1:{port}/healthz"),
    ]);
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("127.0.0.1"));
    assert_eq!(
        run_cli(&["healthcheck", "--url", "ftp://x"]).status.code(),
        Some(2)
    );
}

#[test]
fn metrics_take_the_admin_token_unless_public() {
    let srv = TestServer::start_with(&["--admin-token", TOKEN]);
    assert_eq!(srv.get("/metrics").status, 401);
    let wrong = http_with(
        &srv.addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer not-the-token-at-all")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    assert!(scrape(&srv).contains("# TYPE unipay_http_requests_total counter"));
    let public = TestServer::start_with(&["--metrics-public"]);
    let r = public.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("process_resident_memory_bytes"));
}

#[test]
fn counters_move_by_exactly_the_requests_sent() {
    let srv = TestServer::start_with(&["--admin-token", TOKEN]);
    let app = srv.app("A_OPS");
    let before = scrape(&srv);
    for i in 0..7 {
        srv.close(&app, json!({"bizOrderNo": format!("NOPE{i}")}))
            .expect(20041, "");
    }
    for i in 0..3 {
        srv.pay(&app, &format!("P{i}"));
    }
    srv.close(&app, json!({"bizOrderNo": "P0"})).expect(0, "");
    let after = scrape(&srv);
    let delta = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        delta(r#"unipay_http_requests_total{endpoint="/unipay/close",status="200",code="20041"}"#),
        7.0
    );
    assert_eq!(
        delta(r#"unipay_http_requests_total{endpoint="/unipay/pay",status="200",code="0"}"#),
        3.0
    );
    assert_eq!(
        delta(r#"unipay_closes_total{actor="api",outcome="not_found"}"#),
        7.0
    );
    assert_eq!(
        delta(r#"unipay_closes_total{actor="api",outcome="closed"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"unipay_channel_calls_total{channel="sandbox",operation="start",outcome="ok"}"#),
        3.0
    );
    assert_eq!(
        delta(r#"unipay_channel_calls_total{channel="sandbox",operation="close",outcome="ok"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"unipay_http_request_duration_seconds_count{endpoint="/unipay/close"}"#),
        8.0
    );
    // The first scrape is counted once, by the second.
    assert_eq!(
        delta(r#"unipay_http_requests_total{endpoint="/metrics",status="200",code="0"}"#),
        1.0
    );
}

#[test]
fn every_family_has_series_after_traffic_and_the_sample_is_saved() {
    let merchant = Merchant::start(&[]);
    let srv = TestServer::start_with(&["--admin-token", TOKEN]);
    let app = srv.app("A_OPS_ALL");
    let data = srv.pay_with(&app, "O1", json!({"notifyUrl": merchant.url}));
    srv.close(&app, json!({"bizOrderNo": "O1"})).expect(0, "");
    let order_no = srv.pay(&app, "O2")["orderNo"].as_str().unwrap().to_string();
    srv.sandbox_pay(&order_no).expect(0, "success");
    assert!(data["orderNo"].is_string());
    wait_for("the close notice", || {
        merchant.received().into_iter().next()
    });
    let text = wait_for("the notification attempt to be counted", || {
        let text = scrape(&srv);
        text.contains("unipay_notify_attempts_total{")
            .then_some(text)
    });
    for family in [
        "unipay_http_requests_total{",
        "unipay_http_request_duration_seconds_bucket{",
        "unipay_closes_total{",
        "unipay_channel_calls_total{",
        "unipay_channel_call_duration_seconds_bucket{",
        "unipay_notify_attempts_total{",
        "unipay_notify_pending ",
        "unipay_store_batch_jobs_bucket{",
        "unipay_store_commit_duration_seconds_bucket{",
        "unipay_db_size_bytes ",
        "unipay_up 1",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(family), "no {family} in:\n{text}");
    }
    assert!(value(&text, "unipay_db_size_bytes") > 4096.0);
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("metrics-sample.txt"), &text).unwrap();
}

#[test]
fn healthz_answers_503_while_the_writer_is_stuck() {
    // Once the file exists, the next batch waits 7 s before it begins, as behind a disk that
    // does not answer.
    let dir = temp_dir("stuck");
    let trigger = dir.join("stall");
    let fault = format!("stall:7000:{}", trigger.display());
    let srv = TestServer::start_with_env(&[], &[("UNIPAY_TEST_FAULT", &fault)]);
    let app = srv.app("A_STUCK");
    assert_eq!(srv.get("/healthz").status, 200);
    std::fs::write(&trigger, b"").unwrap();
    let writer = {
        let (addr, app) = (srv.addr.clone(), app.clone());
        std::thread::spawn(move || {
            let body = app.signed(
                "/unipay/gateway/prePay",
                json!({"bizOrderNo": "W1", "title": "t", "amount": "1.00"}),
            );
            http(
                &addr,
                "POST",
                "/unipay/gateway/prePay",
                &serde_json::to_vec(&body).unwrap(),
            )
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(12);
    let stuck = loop {
        let r = srv.get("/healthz");
        if r.status == 503 {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "{}", srv.stderr());
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        stuck.body.contains("has not committed for"),
        "{}",
        stuck.body
    );
    // The batch goes through in the end; so does the health check.
    let reply = writer.join().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(srv.get("/healthz").status, 200);
}
