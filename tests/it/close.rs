//! `POST /unipay/close`: the seed request, the lookup rule, wait/progress orders, atomicity
//! under concurrent closes, and durability across SIGKILL.

use std::sync::{Arc, Barrier};

use serde_json::json;

use crate::helpers::*;

/// The seed document's request, byte for byte (spaces and all).
pub const SEED_REQUEST: &str = r#"{
  "bizOrderNo" : "SDK_1721807811589",
  "useCancel" : true,
  "mchNo" : "M1723635576766",
  "appId" : "M8207639754663343",
  "clientIp" : "127.0.0.1",
  "sign" : "71cb5cc7c575651ad0bef8fb3348aeb7",
  "reqTime" : "2025-04-10 17:02:14"
}"#;

/// Issue 2, first "must hold": the seed request is accepted as sent, its reply verifies, and the
/// progress order it names is cancelled (useCancel=true).
#[test]
fn seed_request_byte_for_byte_cancels_the_order() {
    let srv = TestServer::start();
    let app = srv.create_app(
        "M1723635576766",
        "M8207639754663343",
        &[
            "--secret",
            "123456",
            "--sign-type",
            "md5",
            "--req-timeout",
            "0",
        ],
    );
    let order = srv.pay(&app, "SDK_1721807811589");
    let order_no = order["orderNo"].as_str().unwrap();

    let reply = srv.post_raw("/unipay/close", SEED_REQUEST.as_bytes());
    reply.expect(0, "success").signed_by(&app);
    assert!(reply.data().is_null(), "close has no data: {}", reply.body);

    let after = srv.order(&app, "SDK_1721807811589");
    assert_eq!(after["status"], "cancel", "{after}");
    assert!(after["closeTime"].is_string(), "{after}");
    // The close record: one successful cancel, with the seed's client IP.
    let c = srv.db_read();
    let (close_type, closed, ip, actor): (String, bool, Option<String>, String) = c
        .query_row(
            "SELECT close_type, closed, client_ip, actor FROM close_record WHERE order_no = ?1",
            [order_no],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (close_type.as_str(), closed, ip.as_deref(), actor.as_str()),
        ("cancel", true, Some("127.0.0.1"), "api")
    );
    // Sent again, the same bytes find a terminal order.
    srv.post_raw("/unipay/close", SEED_REQUEST.as_bytes())
        .expect(20044, "")
        .signed_by(&app);
}

#[test]
fn wait_order_closes_locally_and_ignores_use_cancel() {
    let srv = TestServer::start();
    let app = srv.app("A_WAIT");
    srv.pre_pay(&app, "W1");
    srv.pre_pay(&app, "W2");
    srv.close(&app, json!({"bizOrderNo": "W1", "useCancel": true}))
        .expect(0, "success");
    srv.close(&app, json!({"bizOrderNo": "W2"}))
        .expect(0, "success");
    for biz in ["W1", "W2"] {
        let o = srv.order(&app, biz);
        assert_eq!(o["status"], "close", "{o}");
        assert!(o["closeTime"].is_string(), "{o}");
        let order_no = o["orderNo"].as_str().unwrap();
        assert_eq!(srv.successful_close_records(order_no), 1);
    }
}

#[test]
fn progress_order_closes_or_cancels_by_use_cancel() {
    let srv = TestServer::start();
    let app = srv.app("A_PROG");
    srv.pay(&app, "P_CLOSE");
    srv.pay(&app, "P_FALSE");
    srv.pay(&app, "P_CANCEL");
    srv.close(&app, json!({"bizOrderNo": "P_CLOSE"}))
        .expect(0, "success");
    srv.close(&app, json!({"bizOrderNo": "P_FALSE", "useCancel": false}))
        .expect(0, "success");
    srv.close(&app, json!({"bizOrderNo": "P_CANCEL", "useCancel": true}))
        .expect(0, "success");
    assert_eq!(srv.status(&app, "P_CLOSE"), "close");
    assert_eq!(srv.status(&app, "P_FALSE"), "close");
    assert_eq!(srv.status(&app, "P_CANCEL"), "cancel");
}

/// unipay's fix: `"orderNo":""` does not hide a valid bizOrderNo.
#[test]
fn empty_order_no_does_not_hide_biz_order_no() {
    let srv = TestServer::start();
    let app = srv.app("A_EMPTY");
    srv.pay(&app, "B_EMPTY");
    srv.close(
        &app,
        json!({"orderNo": "", "bizOrderNo": "B_EMPTY", "outOrderNo": ""}),
    )
    .expect(0, "success");
    assert_eq!(srv.status(&app, "B_EMPTY"), "close");
}

#[test]
fn order_no_has_priority_over_biz_order_no() {
    let srv = TestServer::start();
    let app = srv.app("A_PRIO");
    let first = srv.pay(&app, "B_FIRST");
    srv.pay(&app, "B_SECOND");
    srv.close(
        &app,
        json!({"orderNo": first["orderNo"], "bizOrderNo": "B_SECOND", "outOrderNo": "nope"}),
    )
    .expect(0, "success");
    assert_eq!(srv.status(&app, "B_FIRST"), "close");
    assert_eq!(srv.status(&app, "B_SECOND"), "progress");
    // An orderNo that names nothing is not rescued by a valid bizOrderNo.
    srv.close(
        &app,
        json!({"orderNo": "P_NO_SUCH_ORDER", "bizOrderNo": "B_SECOND"}),
    )
    .expect(20041, "支付订单不存在");
    assert_eq!(srv.status(&app, "B_SECOND"), "progress");
}

#[test]
fn lookups_are_scoped_to_the_app() {
    let srv = TestServer::start();
    let owner = srv.app("A_OWNER");
    // Another app of another merchant, and another app of the same merchant.
    let stranger = srv.app("A_STRANGER");
    let sibling = srv.create_app("M_A_OWNER", "A_SIBLING", &[]);
    let order = srv.pay(&owner, "B_SCOPED");
    for other in [&stranger, &sibling] {
        srv.close(other, json!({"orderNo": order["orderNo"]}))
            .expect(20041, "支付订单不存在");
        srv.close(other, json!({"bizOrderNo": "B_SCOPED"}))
            .expect(20041, "支付订单不存在");
        srv.post_signed(
            other,
            "/unipay/query/payOrder",
            json!({"orderNo": order["orderNo"]}),
        )
        .expect(20041, "支付订单不存在");
    }
    assert_eq!(srv.status(&owner, "B_SCOPED"), "progress");
    assert_eq!(srv.close_records(order["orderNo"].as_str().unwrap()), 0);
}

/// 16 closes of one order at once: exactly one wins, the others are 20043 or 20044; one status
/// change, one successful close record, one notification.
fn concurrent_closes(srv: &TestServer, app: &App, biz: &str, use_cancel: bool) -> Vec<i64> {
    const N: usize = 16;
    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|_| {
            let addr = srv.addr.clone();
            let body = serde_json::to_vec(&app.signed(
                "/unipay/close",
                json!({"bizOrderNo": biz, "useCancel": use_cancel}),
            ))
            .unwrap();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                http(&addr, "POST", "/unipay/close", &body)
            })
        })
        .collect();
    let replies: Vec<Reply> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.body);
        r.signed_by(app);
    }
    let codes: Vec<i64> = replies.iter().map(|r| r.code()).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == 0).count(),
        1,
        "exactly one close wins: {codes:?}"
    );
    assert!(
        codes.iter().all(|c| [0, 20043, 20044].contains(c)),
        "losers get 20043 or 20044: {codes:?}"
    );
    codes
}

#[test]
fn concurrent_closes_of_a_wait_order_one_wins() {
    let srv = TestServer::start();
    let app = srv.app("A_RACE_W");
    let order_no = srv.pre_pay_with(
        &app,
        "B_RACE_W",
        json!({"notifyUrl": "http://127.0.0.1:9/notify"}),
    );
    concurrent_closes(&srv, &app, "B_RACE_W", false);
    assert_eq!(srv.status(&app, "B_RACE_W"), "close");
    assert_eq!(srv.successful_close_records(&order_no), 1);
    assert_eq!(srv.notify_events(&order_no), 1);
}

#[test]
fn concurrent_closes_of_a_progress_order_one_wins() {
    let srv = TestServer::start();
    let app = srv.app("A_RACE_P");
    let order = srv.pay_with(
        &app,
        "B_RACE_P",
        json!({"notifyUrl": "http://127.0.0.1:9/notify"}),
    );
    let order_no = order["orderNo"].as_str().unwrap();
    concurrent_closes(&srv, &app, "B_RACE_P", true);
    assert_eq!(srv.status(&app, "B_RACE_P"), "cancel");
    assert_eq!(srv.successful_close_records(order_no), 1);
    assert_eq!(srv.notify_events(order_no), 1);
    // The sandbox trade was cancelled, so the payer can no longer pay.
    srv.sandbox_pay(order_no).expect(20044, "");
    assert_eq!(srv.status(&app, "B_RACE_P"), "cancel");
}

/// A code-0 reply means the change is on disk: SIGKILL right after it, restart, still closed.
#[test]
fn close_survives_sigkill_right_after_the_reply() {
    let mut srv = TestServer::start();
    let app = srv.app("A_DURABLE");
    srv.pay(&app, "B_DUR_P");
    srv.pre_pay(&app, "B_DUR_W");
    srv.close(&app, json!({"bizOrderNo": "B_DUR_P"}))
        .expect(0, "success");
    srv.kill9();
    let mode: String = srv
        .db_read()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    srv.restart();
    assert_eq!(srv.status(&app, "B_DUR_P"), "close");

    srv.close(&app, json!({"bizOrderNo": "B_DUR_W"}))
        .expect(0, "success");
    srv.restart();
    assert_eq!(srv.status(&app, "B_DUR_W"), "close");
    // The restarted server keeps serving: a new order gets a fresh number and closes.
    let o = srv.pay(&app, "B_DUR_NEW");
    assert_ne!(
        o["orderNo"],
        srv.order(&app, "B_DUR_P")["orderNo"],
        "order numbers are unique across restarts"
    );
    srv.close(&app, json!({"orderNo": o["orderNo"]}))
        .expect(0, "success");
}

/// The close notification is written with the change (order notifyUrl and app subscription).
#[test]
fn close_writes_one_notification_per_target() {
    let srv = TestServer::start();
    let app = srv.create_app(
        "M_NOTIFY",
        "A_NOTIFY",
        &["--notify-url", "http://127.0.0.1:9/app-notify"],
    );
    let with_url = srv.pay_with(
        &app,
        "B_N1",
        json!({"notifyUrl": "http://127.0.0.1:9/order-notify"}),
    );
    let without = srv.pay(&app, "B_N2");
    // Creation does not notify.
    assert_eq!(srv.notify_events(with_url["orderNo"].as_str().unwrap()), 0);
    srv.close(&app, json!({"bizOrderNo": "B_N1"}))
        .expect(0, "success");
    srv.close(&app, json!({"bizOrderNo": "B_N2"}))
        .expect(0, "success");
    assert_eq!(srv.notify_events(with_url["orderNo"].as_str().unwrap()), 2);
    assert_eq!(srv.notify_events(without["orderNo"].as_str().unwrap()), 1);
    let status: String = srv
        .db_read()
        .query_row(
            "SELECT e.status FROM notify_event e JOIN pay_order o ON o.id = e.order_id
             WHERE o.order_no = ?1 LIMIT 1",
            [without["orderNo"].as_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "close");
}

/// Closes and sandbox payments of one order racing: exactly one of them wins, and the order,
/// its close records and its sandbox trade all agree on which.
#[test]
fn close_racing_a_payment_has_one_winner() {
    let srv = TestServer::start();
    let app = srv.app("A_RACE_PAY");
    for round in 0..5 {
        let biz = format!("B_RP_{round}");
        let order_no = srv.pay(&app, &biz)["orderNo"].as_str().unwrap().to_string();
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let addr = srv.addr.clone();
                let barrier = barrier.clone();
                let (path, body) = if i % 2 == 0 {
                    let body = app.signed(
                        "/unipay/close",
                        json!({"bizOrderNo": biz, "useCancel": i % 4 == 0}),
                    );
                    (
                        "/unipay/close".to_string(),
                        serde_json::to_vec(&body).unwrap(),
                    )
                } else {
                    (format!("/sandbox/pay/{order_no}"), Vec::new())
                };
                std::thread::spawn(move || {
                    barrier.wait();
                    (
                        path.starts_with("/unipay"),
                        http(&addr, "POST", &path, &body),
                    )
                })
            })
            .collect();
        let results: Vec<(bool, Reply)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<&(bool, Reply)> = results.iter().filter(|(_, r)| r.code() == 0).collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one winner: {:?}",
            results
                .iter()
                .map(|(c, r)| (*c, r.code()))
                .collect::<Vec<_>>()
        );
        for (_, r) in &results {
            r.signed_by(&app);
            assert!([0, 20043, 20044].contains(&r.code()), "{}", r.body);
        }
        let close_won = winners[0].0;
        let status = srv.status(&app, &biz);
        let trade: String = srv
            .db_read()
            .query_row(
                "SELECT state FROM sandbox_trade WHERE order_no = ?1",
                [&order_no],
                |r| r.get(0),
            )
            .unwrap();
        if close_won {
            assert!(status == "close" || status == "cancel", "{status}");
            assert!(trade == "closed" || trade == "cancelled", "{trade}");
            assert_eq!(srv.successful_close_records(&order_no), 1);
        } else {
            assert_eq!(status, "success");
            assert_eq!(trade, "paid");
            assert_eq!(srv.successful_close_records(&order_no), 0);
        }
    }
}

/// A close of an order whose close is already running (its intent is committed, the channel is
/// being asked) is refused with 20043 and changes nothing. The intent is written from outside
/// while the server runs: start-up recovery would settle one left from before the start, and
/// the sweeper only settles intents older than 5 minutes.
#[test]
fn a_close_while_another_close_runs_is_20043_and_changes_nothing() {
    let mut srv = TestServer::start();
    let app = srv.app("A_C43");
    let order_no = srv.pay(&app, "B_C43")["orderNo"]
        .as_str()
        .unwrap()
        .to_string();
    {
        let c = rusqlite::Connection::open(&srv.db).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        let inserted = c
            .execute(
                "INSERT INTO close_intent (order_id, close_type, actor, client_ip, created_at)
                 SELECT id, 'close', 'api', NULL, ?2 FROM pay_order WHERE order_no = ?1",
                rusqlite::params![order_no, now_ms()],
            )
            .unwrap();
        assert_eq!(inserted, 1);
    }
    let before = srv.order(&app, "B_C43");
    for use_cancel in [false, true] {
        let reply = srv.close(
            &app,
            json!({"bizOrderNo": "B_C43", "useCancel": use_cancel}),
        );
        reply.expect(20043, "支付订单已在关闭中，请勿重复发起");
        assert_eq!(reply.msg(), "支付订单已在关闭中，请勿重复发起");
    }
    assert_eq!(srv.order(&app, "B_C43"), before);
    assert_eq!(srv.close_records(&order_no), 0);
    assert_eq!(srv.notify_events(&order_no), 0);
    let trade = srv.count(
        "SELECT count(*) FROM sandbox_trade WHERE order_no = ?1 AND state = 'open'",
        &order_no,
    );
    assert_eq!(trade, 1, "the sandbox trade is still open");
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM close_intent i JOIN pay_order o ON o.id = i.order_id
             WHERE o.order_no = ?1",
            &order_no
        ),
        1,
        "the running close's intent is left alone"
    );

    // After a restart, recovery finds the trade still open: the close never happened, its
    // intent is removed with a record saying so, and a new close goes through.
    // (Recovery runs right after the first line is printed, before requests are served.)
    srv.restart();
    wait_for("recovery to remove the intent", || {
        let left = srv.count(
            "SELECT count(*) FROM close_intent i JOIN pay_order o ON o.id = i.order_id
             WHERE o.order_no = ?1",
            &order_no,
        );
        (left == 0).then_some(())
    });
    assert_eq!(srv.close_records(&order_no), 1);
    assert_eq!(srv.status(&app, "B_C43"), "progress");
    srv.close(&app, json!({"bizOrderNo": "B_C43"}))
        .expect(0, "success");
    assert_eq!(srv.status(&app, "B_C43"), "close");
}
