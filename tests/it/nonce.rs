//! Retries with `nonceStr`: a remembered request gets its first reply again, byte for byte
//! (from concurrent senders, after a restart, past the request-time window) and is acted on
//! once; the same nonce with other parameters is refused; remembered replies older than a day
//! are ignored and pruned.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use unipay::sys::UtcOffset;

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
