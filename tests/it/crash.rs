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

/// A nonce'd close remembers its reply in the transaction of the close: killed at any moment, a
/// close that happened always has its reply, so a retry with its nonce gets that reply (code 0)
/// and never a new one computed from the closed order (20044). A retry of a request that never
/// got to act acts now.
#[test]
fn a_crash_never_leaves_a_nonce_d_close_without_its_reply() {
    const ROUNDS: usize = 8;
    const ORDERS: usize = 160;
    let mut srv = TestServer::start();
    let app = srv.create_app("M_NCRASH", "A_NCRASH", &["--req-timeout", "0"]);
    let mut closed_total = 0;
    let mut answered_total = 0;
    for round in 0..ROUNDS {
        let prefix = format!("NC{round}_");
        let names: Vec<String> = (0..ORDERS).map(|i| format!("{prefix}{i:04}")).collect();
        thread::scope(|s| {
            for part in names.chunks(ORDERS / 4) {
                let (srv, app) = (&srv, &app);
                s.spawn(move || {
                    for biz in part {
                        srv.post_signed(
                            app,
                            "/unipay/gateway/prePay",
                            json!({"bizOrderNo": biz, "title": "t", "amount": "1.00"}),
                        )
                        .expect(0, "success");
                    }
                });
            }
        });
        let bodies: Vec<Vec<u8>> = names
            .iter()
            .map(|b| {
                let body = json!({"bizOrderNo": b, "nonceStr": format!("n-{b}")});
                serde_json::to_vec(&app.signed("/unipay/close", body)).unwrap()
            })
            .collect();
        let next = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let replies: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; ORDERS]));
        let clients: Vec<_> = (0..16)
            .map(|_| {
                let (addr, bodies) = (srv.addr.clone(), bodies.clone());
                let (next, answered, replies) = (next.clone(), answered.clone(), replies.clone());
                thread::spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= bodies.len() {
                        return;
                    }
                    let Some(reply) = try_http(&addr, "POST", "/unipay/close", &bodies[i]) else {
                        return;
                    };
                    replies.lock().unwrap()[i] = Some(reply.body.clone());
                    answered.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        // Kill somewhere in the middle of the burst (a different point each round).
        let at = ORDERS / 8 + round * ORDERS / (2 * ROUNDS);
        wait_for("some closes answered", || {
            (answered.load(Ordering::SeqCst) >= at).then_some(())
        });
        srv.kill9();
        for c in clients {
            c.join().unwrap();
        }
        srv.restart();
        let replies = replies.lock().unwrap().clone();
        for (i, biz) in names.iter().enumerate() {
            let retry = srv.post_raw("/unipay/close", &bodies[i]);
            let status = srv.status(&app, biz);
            if let Some(first) = &replies[i] {
                answered_total += 1;
                assert_eq!(&retry.body, first, "{biz}: the retry is the first reply");
            }
            match status.as_str() {
                "close" => {
                    closed_total += 1;
                    assert_eq!(
                        retry.code(),
                        0,
                        "round {round}, {biz}: closed, but its retry answers {}",
                        retry.body
                    );
                }
                other => panic!("{biz} is {other} after its retry"),
            }
        }
    }
    eprintln!("{ROUNDS} rounds: {closed_total} closes, {answered_total} answered before the kill");
}
