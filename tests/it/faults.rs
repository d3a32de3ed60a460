//! A fault inside a group commit. SQLite may roll the whole transaction back by itself when a
//! statement fails with an I/O error, a full disk or a lack of memory; the writer must then
//! fail every job of the batch (none of them is on disk) and run none of the rest, and must
//! not hand out the ids of orders that were never committed again. `UNIPAY_TEST_FAULT` (a
//! test-only hook) makes SQLite raise `SQLITE_IOERR` in a job in the middle of a batch, or
//! (`commit:FILE`) makes a batch's `COMMIT` itself fail.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;

use serde_json::{json, Map, Value};

use crate::helpers::*;

/// One order's requests: its creation and its close, each with its own nonceStr.
struct Plan {
    biz: String,
    create: Map<String, Value>,
    close: Map<String, Value>,
}

/// What the first round of requests was answered.
#[derive(Clone, Copy, Debug, Default)]
struct Answered {
    create: Option<i64>,
    close: Option<i64>,
}

fn post(srv: &TestServer, path: &str, body: &Map<String, Value>) -> Reply {
    let reply = srv.post_map(path, body);
    let code = reply.code();
    assert!(
        code == 0 || code == 10500,
        "{path}: only success or a system error: {}",
        reply.body
    );
    if code == 10500 {
        assert_eq!(reply.msg(), "系统错误", "{}", reply.body);
    }
    reply
}

/// The order's status, and how many successful close records it has (None: no order).
fn in_db(srv: &TestServer, biz: &str) -> Option<(String, i64)> {
    let db = srv.db_read();
    let status: Option<String> = db
        .query_row(
            "SELECT status FROM pay_order WHERE biz_order_no = ?1",
            [biz],
            |r| r.get(0),
        )
        .ok();
    let closes: i64 = db
        .query_row(
            "SELECT count(*) FROM close_record c JOIN pay_order o ON o.id = c.order_id
             WHERE o.biz_order_no = ?1 AND c.closed = 1",
            [biz],
            |r| r.get(0),
        )
        .unwrap();
    status.map(|s| (s, closes))
}

#[test]
fn an_io_error_inside_a_batch_fails_the_whole_batch_and_reuses_no_id() {
    const ORDERS: usize = 480;
    const FAULTS: usize = 6;
    let fault = format!("ioerr:2:{FAULTS}");
    let srv = TestServer::start_with_env(&[], &[("UNIPAY_TEST_FAULT", &fault)]);
    let app = srv.create_app("M_FAULT", "A_FAULT", &["--req-timeout", "0"]);
    let plans: Vec<Plan> = (0..ORDERS)
        .map(|i| {
            let biz = format!("F{i:04}");
            let create = app.signed(
                "/unipay/gateway/prePay",
                json!({"bizOrderNo": biz, "title": "t", "amount": "1.00", "nonceStr": format!("c-{biz}")}),
            );
            let close = app.signed(
                "/unipay/close",
                json!({"bizOrderNo": biz, "nonceStr": format!("x-{biz}")}),
            );
            Plan { biz, create, close }
        })
        .collect();

    // Round 1: 16 clients create and close the orders at once, so that batches hold several
    // jobs and the faults land in the middle of some.
    let next = AtomicUsize::new(0);
    let answered = Mutex::new(vec![Answered::default(); ORDERS]);
    thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(plan) = plans.get(i) else { return };
                let created = post(&srv, "/unipay/gateway/prePay", &plan.create).code();
                answered.lock().unwrap()[i].create = Some(created);
                if created == 0 {
                    let closed = post(&srv, "/unipay/close", &plan.close).code();
                    answered.lock().unwrap()[i].close = Some(closed);
                }
            });
        }
    });
    let answered = answered.into_inner().unwrap();
    let fired = srv
        .stderr()
        .matches("UNIPAY_TEST_FAULT: job 2 of a batch")
        .count();
    let failed = answered
        .iter()
        .flat_map(|a| [a.create, a.close])
        .filter(|c| *c == Some(10500))
        .count();
    eprintln!("{fired} faults fired, {failed} requests answered 10500 of {ORDERS} orders");
    assert!(fired >= 1, "no batch was long enough for the fault");
    assert!(
        failed >= 3,
        "a fault fails its whole batch (at least 3 jobs)"
    );

    // Every answer is the truth: a success is on disk, a system error changed nothing.
    for (plan, a) in plans.iter().zip(&answered) {
        let found = in_db(&srv, &plan.biz);
        let biz = &plan.biz;
        match (a.create, a.close) {
            (Some(10500), _) => assert_eq!(found, None, "{biz}: created, but answered 10500"),
            (Some(0), Some(0)) => assert_eq!(found, Some(("close".into(), 1)), "{biz}"),
            (Some(0), Some(10500)) => {
                assert_eq!(
                    found,
                    Some(("wait".into(), 0)),
                    "{biz}: closed, but answered 10500"
                )
            }
            other => panic!("{biz}: {other:?}"),
        }
    }

    // Round 2: the faults are spent. Every request that got 10500 is sent again with its
    // nonceStr (as the README advises): it acts now, once.
    for (plan, a) in plans.iter().zip(&answered) {
        if a.create == Some(10500) {
            srv.post_map("/unipay/gateway/prePay", &plan.create)
                .expect(0, "success");
        }
        if a.close != Some(0) {
            srv.post_map("/unipay/close", &plan.close)
                .expect(0, "success");
        }
    }
    // New orders get new ids: no creation fails on an id handed out before.
    for i in 0..20 {
        let biz = format!("G{i:02}");
        srv.pre_pay(&app, &biz);
        srv.close(&app, json!({"bizOrderNo": biz}))
            .expect(0, "success");
    }
    for plan in &plans {
        let found = in_db(&srv, &plan.biz);
        assert_eq!(found, Some(("close".into(), 1)), "{}", plan.biz);
    }
    let db = srv.db_read();
    let (orders, distinct): (i64, i64) = db
        .query_row(
            "SELECT count(*), count(DISTINCT order_no) FROM pay_order",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((orders, distinct), (ORDERS as i64 + 20, ORDERS as i64 + 20));
    // The writer never went on inside a transaction that was gone.
    let log = srv.stderr();
    for never in [
        "no such savepoint",
        "no transaction is active",
        "UNIQUE constraint",
    ] {
        assert!(!log.contains(never), "the log says {never:?}");
    }
    assert!(log.contains("SQLite rolled the transaction back after a job failed"));
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

/// What a 10500 means (README, Hardening): the server could not finish, and the change may
/// still have been made. A sandbox pay is three transactions (the order, the sandbox trade, the
/// reply remembered with the pay body); a fault in the second or third answers 10500 for an
/// order that exists. The README's advice holds: query the order, or send the request again
/// with its nonceStr, before acting again; either way one order per bizOrderNo.
#[test]
fn after_a_10500_the_order_may_exist_and_a_retry_with_its_nonce_is_safe() {
    const ORDERS: usize = 320;
    let srv = TestServer::start_with_env(&[], &[("UNIPAY_TEST_FAULT", "ioerr:2:24")]);
    let app = srv.create_app("M_FAULT2", "A_FAULT2", &["--req-timeout", "0"]);
    let bodies: Vec<Map<String, Value>> = (0..ORDERS)
        .map(|i| {
            app.signed(
                "/unipay/pay",
                json!({"bizOrderNo": format!("P{i:04}"), "title": "t", "amount": "1.00",
                    "channel": "sandbox", "method": "wap", "nonceStr": format!("p-{i}")}),
            )
        })
        .collect();
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { return };
                let reply = srv.post_map("/unipay/pay", body);
                match reply.code() {
                    0 => assert_eq!(reply.data()["status"], "progress", "{}", reply.body),
                    10500 => failed.lock().unwrap().push(i),
                    _ => panic!("{}", reply.body),
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap();
    let (mut made, mut statuses) = (0, Vec::new());
    for &i in &failed {
        let biz = format!("P{i:04}");
        // First the query: the order may be there after all.
        let query = srv.post_signed(&app, "/unipay/query/payOrder", json!({ "bizOrderNo": biz }));
        let before = match query.code() {
            0 => {
                made += 1;
                statuses.push(query.data()["status"].as_str().unwrap().to_string());
                Some(query.data()["orderNo"].clone())
            }
            20041 => None,
            _ => panic!("{}", query.body),
        };
        // Then the retry with the same nonceStr: it never makes a second order.
        let retry = srv.post_map("/unipay/pay", &bodies[i]);
        if let (0, Some(order_no)) = (retry.code(), &before) {
            assert_eq!(&retry.data()["orderNo"], order_no, "{}", retry.body);
        }
        let after = srv.post_signed(&app, "/unipay/query/payOrder", json!({ "bizOrderNo": biz }));
        after.expect(0, "success");
        if let Some(order_no) = &before {
            assert_eq!(&after.data()["orderNo"], order_no);
        }
    }
    eprintln!(
        "{} pays answered 10500; {made} of their orders existed anyway ({statuses:?})",
        failed.len()
    );
    assert!(!failed.is_empty(), "no fault fired");
    assert!(
        made >= 1,
        "every order answered 10500 was missing: the case is not exercised"
    );
    let (orders, distinct): (i64, i64) = srv
        .db_read()
        .query_row(
            "SELECT count(*), count(DISTINCT biz_order_no) FROM pay_order",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((orders, distinct), (ORDERS as i64, ORDERS as i64));
}

/// A commit that fails is a failure for every job of its batch. `UNIPAY_TEST_FAULT=commit:FILE`
/// (test-only) makes the commit hook refuse the `COMMIT` of the next batch that wrote rows once
/// the test has created FILE: SQLite rolls the transaction back and `COMMIT` returns an error,
/// as a disk that fails the commit's write or fsync would make it. Each request hit is answered
/// 10500 and nothing of it is on disk; sent again with its nonceStr it acts, once.
#[test]
fn a_failed_commit_is_answered_10500_and_leaves_nothing_on_disk() {
    let dir = temp_dir("commit-fault");
    let trigger = dir.join("fail-next-commit");
    let fault = format!("commit:{}", trigger.display());
    let srv = TestServer::start_with_env(
        &["--sweep-interval", "1h"],
        &[("UNIPAY_TEST_FAULT", &fault)],
    );
    let app = srv.create_app("M_COMMIT", "A_COMMIT", &[]);
    let fail_next_commit = || std::fs::write(&trigger, b"").unwrap();
    let consumed = || assert!(!trigger.exists(), "the fault did not fire");
    let counts = || -> (i64, i64, i64, i64) {
        srv.db_read()
            .query_row(
                "SELECT (SELECT count(*) FROM pay_order), (SELECT count(*) FROM close_record),
                        (SELECT count(*) FROM notify_event), (SELECT count(*) FROM request_nonce)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap()
    };
    srv.pre_pay_with(
        &app,
        "C1",
        json!({"notifyUrl": "http://127.0.0.1:9/n", "nonceStr": "c1"}),
    );
    let before = counts();
    assert_eq!(before, (1, 0, 0, 1));

    // A new order whose commit fails: 10500, no order, no remembered reply.
    let create = app.signed(
        "/unipay/gateway/prePay",
        json!({"bizOrderNo": "C2", "title": "t", "amount": "1.00", "nonceStr": "c2"}),
    );
    fail_next_commit();
    srv.post_map("/unipay/gateway/prePay", &create)
        .expect(10500, "系统错误");
    consumed();
    assert_eq!(counts(), before, "nothing of the failed batch is on disk");
    srv.post_signed(&app, "/unipay/query/payOrder", json!({"bizOrderNo": "C2"}))
        .expect(20041, "支付订单不存在");

    // A close whose commit fails: 10500, the order still waits, no close record, no notice.
    let close = app.signed(
        "/unipay/close",
        json!({"bizOrderNo": "C1", "nonceStr": "x1"}),
    );
    fail_next_commit();
    srv.post_map("/unipay/close", &close)
        .expect(10500, "系统错误");
    consumed();
    assert_eq!(srv.status(&app, "C1"), "wait");
    assert_eq!(counts(), before);

    // Sent again with their nonceStr, both act now, once.
    srv.post_map("/unipay/gateway/prePay", &create)
        .expect(0, "success");
    srv.post_map("/unipay/close", &close).expect(0, "success");
    srv.post_map("/unipay/close", &close).expect(0, "success");
    assert_eq!(srv.status(&app, "C1"), "close");
    assert_eq!(srv.status(&app, "C2"), "wait");
    assert_eq!(counts(), (2, 1, 1, 3));
    let log = srv.stderr();
    assert_eq!(
        log.matches("UNIPAY_TEST_FAULT: the commit hook refuses")
            .count(),
        2,
        "{log}"
    );
    assert!(log.contains("commit failed"), "{log}");
    let check: String = srv
        .db_read()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let _ = std::fs::remove_dir_all(&dir);
}
