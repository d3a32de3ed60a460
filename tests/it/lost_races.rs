//! Races lost between a decision and its update. A close of a `progress` order asks the
//! channel outside any transaction, then applies the answer with a compare-and-set (`UPDATE …
//! WHERE status IN (…)`, store/orders.rs `transition`). When the order changed meanwhile (its
//! money arrived), the late answer must change nothing: the order stays `success`, the close
//! record says the close did not happen, and the merchant hears of the payment only.
//!
//! The fake Alipay holds its close answer (`Mode::Held`) while the buyer pays and Alipay's
//! payment notice reaches unipay; then the answer goes.

use serde_json::{json, Value};

use crate::alipay::{set_alipay, ALIPAY_APP_ID};
use crate::fake_alipay::{FakeAlipay, Mode};
use crate::helpers::{wait_for, TestServer};
use crate::notify::Merchant;

/// (close_type, closed, error_msg) of the order's close records, oldest first.
fn close_records(srv: &TestServer, order_no: &str) -> Vec<(String, bool, Option<String>)> {
    let c = srv.db_read();
    let mut st = c
        .prepare(
            "SELECT close_type, closed, error_msg FROM close_record WHERE order_no = ?1 ORDER BY id",
        )
        .unwrap();
    let rows = st
        .query_map([order_no], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// The statuses of the order's notification events, oldest first.
fn event_statuses(srv: &TestServer, order_no: &str) -> Vec<String> {
    let c = srv.db_read();
    let mut st = c
        .prepare(
            "SELECT e.status FROM notify_event e JOIN pay_order o ON o.id = e.order_id
             WHERE o.order_no = ?1 ORDER BY e.id",
        )
        .unwrap();
    let rows = st.query_map([order_no], |r| r.get(0)).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

fn close_intents(srv: &TestServer) -> i64 {
    srv.db_read()
        .query_row("SELECT count(*) FROM close_intent", [], |r| r.get(0))
        .unwrap()
}

/// A close whose channel answer ("closed": Alipay had no trade yet) arrives after the buyer
/// paid and the payment notice made the order `success`: the answer loses. The close is
/// answered 20044, the order stays `success` with Alipay's trade number, its one close record
/// is not closed ("订单状态已变化"), no intent is left, and the merchant gets one notification,
/// for `success`.
#[test]
fn a_close_answer_that_arrives_after_the_payment_changes_nothing() {
    let merchant = Merchant::start(&[]);
    let fake = FakeAlipay::start(ALIPAY_APP_ID);
    // A channel timeout far longer than the hold below.
    let srv = TestServer::start_with(&["--channel-timeout", "20s", "--sweep-interval", "1h"]);
    let app = srv.app("A_RACE");
    set_alipay(&srv, &app, &fake.url);
    let reply = srv.post_signed(
        &app,
        "/unipay/pay",
        json!({"bizOrderNo": "RACE1", "title": "t", "amount": "12.50", "channel": "ali_pay",
               "method": "qrcode", "notifyUrl": merchant.url}),
    );
    reply.expect(0, "success");
    let order_no = reply.data()["orderNo"].as_str().unwrap().to_string();
    assert_eq!(srv.status(&app, "RACE1"), "progress");

    // The close reaches Alipay, which has no trade yet (nobody scanned): its answer is
    // decided (ACQ.TRADE_NOT_EXIST, a close for unipay) and held.
    fake.set_mode("alipay.trade.close", Mode::Held);
    let closing = std::thread::scope(|s| {
        let closing = s.spawn(|| srv.close(&app, json!({"bizOrderNo": "RACE1"})));
        wait_for("the close at Alipay", || {
            (fake.calls("alipay.trade.close") == 1).then_some(())
        });
        // Meanwhile the buyer scans and pays; the notice makes the order `success`.
        let trade_no = fake.pay(&order_no);
        wait_for("the payment notice", || {
            (srv.status(&app, "RACE1") == "success").then_some(())
        });
        assert_eq!(
            close_intents(&srv),
            0,
            "the payment ended the close's intent"
        );
        // Now Alipay's close answer arrives.
        fake.release();
        (closing.join().unwrap(), trade_no)
    });
    let (reply, trade_no) = closing;
    reply.expect(20044, "订单不是支付中, 无法进行关闭订单");
    assert_eq!(reply.msg(), "订单不是支付中, 无法进行关闭订单");

    let order = srv.order(&app, "RACE1");
    assert_eq!(order["status"], "success", "{order}");
    assert_eq!(order["outOrderNo"], trade_no.as_str(), "{order}");
    assert!(order.get("closeTime").is_none(), "{order}");
    assert_eq!(
        close_records(&srv, &order_no),
        vec![("close".into(), false, Some("订单状态已变化".into()))],
        "one close record, not closed"
    );
    assert_eq!(close_intents(&srv), 0);
    let attention: Option<String> = srv
        .db_read()
        .query_row(
            "SELECT attention FROM pay_order WHERE order_no = ?1",
            [&order_no],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(attention, None, "the money came while the order was open");
    // One notification event, for the payment; the merchant hears `success` once.
    assert_eq!(event_statuses(&srv, &order_no), vec!["success".to_string()]);
    let got = wait_for("the merchant's notification", || {
        let got: Vec<String> = merchant
            .received()
            .iter()
            .map(|n| {
                let v: Value = serde_json::from_str(&n.body).unwrap();
                v["data"]["status"].as_str().unwrap_or("").to_string()
            })
            .collect();
        (!got.is_empty()).then_some(got)
    });
    assert_eq!(got, vec!["success".to_string()]);
    // The order can still be closed by nobody: it is paid.
    srv.close(&app, json!({"bizOrderNo": "RACE1"}))
        .expect(20044, "订单不是支付中");
    assert_eq!(fake.calls("alipay.trade.close"), 1);
    assert_eq!(event_statuses(&srv, &order_no), vec!["success".to_string()]);
}

/// A refund whose channel answer (success) arrives after Alipay's refund notice already made it
/// `success`: the late answer changes nothing. The refund is answered as it is (`success`), the
/// balance is taken once, and the merchant gets one refund notice.
#[test]
fn a_refund_answer_that_arrives_after_the_refund_notice_changes_nothing() {
    let merchant = Merchant::start(&[]);
    let fake = FakeAlipay::start(ALIPAY_APP_ID);
    let srv = TestServer::start_with(&["--channel-timeout", "20s", "--sweep-interval", "1h"]);
    let app = srv.app("A_RACE");
    set_alipay(&srv, &app, &fake.url);
    let (order_no, _) = crate::alipay::qr_order(&srv, &app, "RACE2");
    fake.pay(&order_no);
    wait_for("the payment notice", || {
        (srv.status(&app, "RACE2") == "success").then_some(())
    });

    // Alipay books and pays the refund out as the request arrives, and holds its answer.
    fake.set_mode("alipay.trade.refund", Mode::Held);
    let reply = std::thread::scope(|s| {
        let refunding = s.spawn(|| {
            srv.post_signed(
                &app,
                "/unipay/refund",
                json!({"bizOrderNo": "RACE2", "bizRefundNo": "RACE2_R", "amount": "3.00",
                       "notifyUrl": merchant.url}),
            )
        });
        wait_for("the refund at Alipay", || {
            (fake.calls("alipay.trade.refund") == 1).then_some(())
        });
        let refund_no = fake.refunds(&order_no)[0].out_request_no.clone();
        // Meanwhile Alipay's refund notice settles it.
        fake.refund_notice(&order_no, &refund_no);
        wait_for("the refund notice", || {
            let r = srv.post_signed(
                &app,
                "/unipay/query/refundOrder",
                json!({"bizRefundNo": "RACE2_R"}),
            );
            (r.data()["status"] == "success").then_some(())
        });
        fake.release();
        refunding.join().unwrap()
    });
    reply.expect(0, "success");
    assert_eq!(reply.data()["status"], "success", "{}", reply.body);
    let order = srv.order(&app, "RACE2");
    assert_eq!(order["refundableBalance"].to_string(), "9.5", "{order}");
    assert_eq!(order["refundStatus"], "partial_refund", "{order}");
    let refund_events: i64 = srv
        .db_read()
        .query_row(
            "SELECT count(*) FROM notify_event WHERE refund_id IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(refund_events, 1, "one refund notice");
    let got = wait_for("the merchant's refund notice", || {
        merchant.received().into_iter().next()
    });
    assert!(got.body.contains("\"status\":\"success\""), "{}", got.body);
}
