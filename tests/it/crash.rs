//! A crash under load: the server is killed (SIGKILL) while closes are under way; after a
//! restart every acknowledged close is there, exactly once, and interrupted closes are settled.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::json;

use crate::helpers::*;

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
