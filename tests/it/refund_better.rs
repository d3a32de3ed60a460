//! Where unipay's refunds and syncs are better than DaxPay's (refund-sync.md §10), on the
//! sandbox channel: one test per row that the sandbox can show. The rows about one channel's
//! wire (Alipay's `fund_change`, its refund query and notices; WeChat's statuses and callback
//! answers) are tested against the fake gateways in `alipay_refund.rs` and `wechat_refund.rs`;
//! the rows of a pay sync that needs a trade the sandbox cannot make (paid after a local close,
//! closed behind unipay's back, a query that fails) in `alipay_refund.rs`; concurrency and
//! "a guess becomes fail" in `refund.rs` and the simulation.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::notify::Merchant;
use crate::refund::{paid_order, refund};

/// A refund of order `biz` with a sandbox test control (`fail`, `processing`, `timeout`, `lost`).
fn refund_with(
    srv: &TestServer,
    app: &App,
    biz: &str,
    refund_no: &str,
    amount: &str,
    control: &str,
) -> Reply {
    refund(
        srv,
        app,
        json!({"bizOrderNo": biz, "bizRefundNo": refund_no, "amount": amount,
               "extraParam": json!({"sandboxRefund": control}).to_string()}),
    )
}

fn sync_refund(srv: &TestServer, app: &App, biz_refund: &str) -> Reply {
    srv.post_signed(
        app,
        "/unipay/sync/order/refund",
        json!({"bizRefundNo": biz_refund}),
    )
}

fn query_refund(srv: &TestServer, app: &App, body: Value) -> Reply {
    srv.post_signed(app, "/unipay/query/refundOrder", body)
}

/// `POST /sandbox/refund/{refundNo}?result=…`: the sandbox channel finishes a refund.
fn finish(srv: &TestServer, reply: &Reply, result: &str) {
    let refund_no = reply.data()["refundNo"].as_str().unwrap();
    srv.post_raw(&format!("/sandbox/refund/{refund_no}?result={result}"), b"")
        .expect(0, "success");
}

fn balance(srv: &TestServer, app: &App, biz: &str) -> String {
    srv.order(app, biz)["refundableBalance"].to_string()
}

fn refund_events(srv: &TestServer, biz_refund: &str) -> i64 {
    srv.count(
        "SELECT count(*) FROM notify_event
         WHERE refund_id = (SELECT id FROM refund_order WHERE biz_refund_no = ?1)",
        biz_refund,
    )
}

/// DaxPay: "double credit on re-sync" — a sync of a closed refund closes it again and adds its
/// amount to the balance each time.
#[test]
fn a_final_refund_never_moves_money_again_however_often_it_is_synced() {
    let merchant = Merchant::start(&[]);
    let srv = TestServer::start();
    let app = srv.app("A_B_RESYNC");
    paid_order(&srv, &app, "O1", "10.00");
    let p = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "P1", "amount": "4.00",
               "notifyUrl": merchant.url,
               "extraParam": json!({"sandboxRefund": "processing"}).to_string()}),
    );
    assert_eq!(p.data()["status"], "progress", "{}", p.body);
    finish(&srv, &p, "close");
    let s = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "S1", "amount": "6.00",
               "notifyUrl": merchant.url}),
    );
    assert_eq!(s.data()["status"], "success", "{}", s.body);
    assert_eq!(balance(&srv, &app, "O1"), "4");
    for _ in 0..3 {
        for (biz, status) in [("P1", "close"), ("S1", "success")] {
            let r = sync_refund(&srv, &app, biz);
            r.expect(0, "success");
            assert_eq!(r.data(), &json!({"orderStatus": status, "adjust": false}));
        }
    }
    assert_eq!(balance(&srv, &app, "O1"), "4");
    assert_eq!(srv.order(&app, "O1")["refundStatus"], "partial_refund");
    assert_eq!(refund_events(&srv, "P1"), 1, "one notice for one close");
    assert_eq!(refund_events(&srv, "S1"), 1, "one notice for one success");
}

/// DaxPay: "repeats are errors" — a repeat of a refund that is not `fail` gets 20044, and a
/// retry erases `attach` and `notifyUrl`.
#[test]
fn a_repeat_is_answered_and_a_retry_keeps_what_it_is_not_given() {
    let merchant = Merchant::start(&[]);
    let srv = TestServer::start();
    let app = srv.app("A_B_REPEAT");
    paid_order(&srv, &app, "O1", "10.00");
    let first = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "F1", "amount": "2.50",
               "attach": "keep-me", "notifyUrl": merchant.url,
               "extraParam": json!({"sandboxRefund": "fail"}).to_string()}),
    );
    assert_eq!(first.data()["status"], "fail", "{}", first.body);
    // The retry names neither attach nor notifyUrl: both stay as they were.
    let retry = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "F1", "amount": "2.5"}),
    );
    retry.expect(0, "success");
    assert_eq!(retry.data()["status"], "success", "{}", retry.body);
    assert_eq!(retry.data()["refundNo"], first.data()["refundNo"]);
    let q = query_refund(&srv, &app, json!({"bizRefundNo": "F1"}));
    assert_eq!(q.data()["attach"], "keep-me");
    let notices = wait_for("the fail and success notices", || {
        let got = merchant.received();
        (got.len() >= 2).then_some(got)
    });
    let statuses: Vec<String> = notices
        .iter()
        .map(|n| {
            let v: Value = serde_json::from_str(&n.body).unwrap();
            assert_eq!(v["data"]["attach"], "keep-me");
            v["data"]["status"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        statuses.contains(&"fail".to_string()) && statuses.contains(&"success".to_string()),
        "{statuses:?}"
    );
    // A repeat of the successful refund: the same refund, code 0, not 20044.
    let again = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "F1", "amount": "2.50"}),
    );
    again.expect(0, "success");
    assert_eq!(again.data()["status"], "success");
    assert_eq!(balance(&srv, &app, "O1"), "7.5");
}

/// DaxPay: "failed-refund money stays deducted" and "no notice on failure".
#[test]
fn a_refusal_gives_the_money_back_at_once_and_tells_the_merchant() {
    let merchant = Merchant::start(&[]);
    let srv = TestServer::start();
    let app = srv.app("A_B_REFUSED");
    paid_order(&srv, &app, "O1", "10.00");
    let r = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "F1", "amount": "10.00",
               "notifyUrl": merchant.url,
               "extraParam": json!({"sandboxRefund": "fail"}).to_string()}),
    );
    assert_eq!(r.data()["status"], "fail", "{}", r.body);
    let order = srv.order(&app, "O1");
    assert_eq!(order["refundableBalance"].to_string(), "10");
    assert_eq!(order["refundStatus"], "no_refund");
    let notice = wait_for("the failure notice", || {
        merchant.received().into_iter().next()
    });
    let v: Value = serde_json::from_str(&notice.body).unwrap();
    assert_eq!(v["data"]["status"], "fail");
    assert!(v["data"]["errorMsg"]
        .as_str()
        .unwrap()
        .contains("沙箱退款失败"));
    // The order is not blocked: another refund of all of it goes through now.
    let other = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "R2", "amount": "10.00"}),
    );
    assert_eq!(other.data()["status"], "success", "{}", other.body);
    assert_eq!(srv.order(&app, "O1")["refundStatus"], "refunded");
}

/// DaxPay: "one refund at a time" — a refund is refused while another is `refunding`.
#[test]
fn a_refund_in_progress_never_blocks_another() {
    let srv = TestServer::start();
    let app = srv.app("A_B_TWO");
    paid_order(&srv, &app, "O1", "10.00");
    let p = refund_with(&srv, &app, "O1", "P1", "3.00", "processing");
    assert_eq!(p.data()["status"], "progress");
    let r = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "R2", "amount": "5.00"}),
    );
    assert_eq!(r.data()["status"], "success", "{}", r.body);
    let order = srv.order(&app, "O1");
    assert_eq!(order["refundStatus"], "refunding");
    assert_eq!(order["refundableBalance"].to_string(), "2");
    // The one in progress still holds its amount.
    refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "R3", "amount": "2.01"}),
    )
    .expect(10506, "退款金额不能大于支付金额");
    finish(&srv, &p, "success");
    let order = srv.order(&app, "O1");
    assert_eq!(order["refundStatus"], "partial_refund");
    assert_eq!(order["refundableBalance"].to_string(), "2");
}

/// DaxPay: "callback close sets the wrong status" — a channel closing a refund of the whole
/// amount sets the order's `status` and leaves it `refunding` for good.
#[test]
fn a_closed_full_refund_leaves_the_order_paid_and_refundable() {
    let srv = TestServer::start();
    let app = srv.app("A_B_CLOSED");
    paid_order(&srv, &app, "O1", "10.00");
    let p = refund_with(&srv, &app, "O1", "P1", "10.00", "processing");
    assert_eq!(srv.order(&app, "O1")["refundStatus"], "refunding");
    finish(&srv, &p, "close");
    let order = srv.order(&app, "O1");
    assert_eq!(order["status"], "success");
    assert_eq!(order["refundStatus"], "no_refund");
    assert_eq!(order["refundableBalance"].to_string(), "10");
    let again = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "R2", "amount": "10"}),
    );
    assert_eq!(again.data()["status"], "success", "{}", again.body);
}

/// DaxPay: "immediate CLOSED/ABNORMAL at creation" and the abnormal half of "WeChat statuses":
/// an abnormal refund is neither failed (money kept) nor closed (money back).
#[test]
fn an_abnormal_refund_stays_in_progress_and_asks_an_operator() {
    let srv = TestServer::start();
    let app = srv.app("A_B_ABNORMAL");
    let order_no = paid_order(&srv, &app, "O1", "10.00");
    let p = refund_with(&srv, &app, "O1", "P1", "4.00", "processing");
    finish(&srv, &p, "abnormal");
    let q = query_refund(&srv, &app, json!({"bizRefundNo": "P1"}));
    assert_eq!(q.data()["status"], "progress");
    assert_eq!(q.data()["errorMsg"], "退款异常");
    let order = srv.order(&app, "O1");
    assert_eq!(order["refundStatus"], "refunding");
    assert_eq!(order["refundableBalance"].to_string(), "6");
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM pay_order WHERE order_no = ?1 AND attention IS NOT NULL",
            &order_no
        ),
        1,
        "needs attention"
    );
    // The operator settles it at the channel: the refund follows.
    finish(&srv, &p, "success");
    let q = query_refund(&srv, &app, json!({"bizRefundNo": "P1"}));
    assert_eq!(q.data()["status"], "success");
    assert_eq!(srv.order(&app, "O1")["refundStatus"], "partial_refund");
}

/// DaxPay: "refund query reply fails in the SDK" — it sends and signs `orderId` and `clientIp`,
/// which the SDK's class lacks.
#[test]
fn the_refund_query_sends_exactly_the_sdk_fields_in_order() {
    let srv = TestServer::start();
    let app = srv.app("A_B_FIELDS");
    paid_order(&srv, &app, "O1", "10.99");
    let r = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "R1", "amount": "1.50",
               "reason": "退货", "attach": "a"}),
    );
    assert_eq!(r.data()["status"], "success");
    let q = query_refund(&srv, &app, json!({"bizRefundNo": "R1"}));
    q.expect(0, "success");
    let sdk = [
        "orderNo",
        "outOrderNo",
        "bizOrderNo",
        "title",
        "refundNo",
        "bizRefundNo",
        "outRefundNo",
        "channel",
        "orderAmount",
        "amount",
        "reason",
        "finishTime",
        "status",
        "attach",
        "errorMsg",
    ];
    let data = q.data().as_object().unwrap();
    for key in data.keys() {
        assert!(sdk.contains(&key.as_str()), "{key} is not an SDK field");
    }
    // Nulls left out (errorMsg), everything else present, in the SDK's order.
    let present: Vec<&str> = sdk
        .iter()
        .copied()
        .filter(|k| data.contains_key(*k))
        .collect();
    assert_eq!(present.len(), 14, "{}", q.body);
    let at = |k: &str| q.body.find(&format!("\"{k}\":")).unwrap();
    for pair in present.windows(2) {
        assert!(at(pair[0]) < at(pair[1]), "{} before {}", pair[0], pair[1]);
    }
    assert_eq!(data["orderAmount"], 10, "whole yuan, truncated");
}

/// DaxPay: "`refundNo` lookups ignore the app".
#[test]
fn refund_lookups_stay_within_the_app() {
    let srv = TestServer::start();
    let a = srv.app("A_B_APP_A");
    let b = srv.app("A_B_APP_B");
    paid_order(&srv, &a, "O1", "10.00");
    paid_order(&srv, &b, "O1", "10.00");
    let r = refund(
        &srv,
        &a,
        json!({"bizOrderNo": "O1", "bizRefundNo": "R1", "amount": "1"}),
    );
    let refund_no = r.data()["refundNo"].as_str().unwrap().to_string();
    query_refund(&srv, &b, json!({"refundNo": refund_no})).expect(20041, "退款订单不存在");
    query_refund(&srv, &b, json!({"bizRefundNo": "R1"})).expect(20041, "退款订单不存在");
    srv.post_signed(
        &b,
        "/unipay/sync/order/refund",
        json!({"refundNo": refund_no}),
    )
    .expect(20041, "未查询到退款订单");
    // The same bizRefundNo in another app is another refund.
    let other = refund(
        &srv,
        &b,
        json!({"bizOrderNo": "O1", "bizRefundNo": "R1", "amount": "2"}),
    );
    assert_eq!(other.data()["status"], "success", "{}", other.body);
    assert_ne!(other.data()["refundNo"], refund_no.as_str());
}

/// DaxPay: "dropped or broken fields" — `extraParam` not stored, a long title overflowing.
#[test]
fn refunds_keep_their_extra_param_and_a_long_title() {
    let srv = TestServer::start();
    let app = srv.app("A_B_TITLE");
    let title = "长".repeat(100);
    let data = srv.pay_with(&app, "O1", json!({"amount": "5.00", "title": title}));
    srv.sandbox_pay(data["orderNo"].as_str().unwrap())
        .expect(0, "success");
    let extra = r#"{"note":"kept"}"#;
    let r = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "R1", "amount": "1", "extraParam": extra}),
    );
    assert_eq!(r.data()["status"], "success", "{}", r.body);
    let q = query_refund(&srv, &app, json!({"bizRefundNo": "R1"}));
    assert_eq!(q.data()["title"], format!("{title} - 退款"));
    let stored: String = srv
        .db_read()
        .query_row(
            "SELECT extra_param FROM refund_order WHERE biz_refund_no = 'R1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, extra);
}

/// DaxPay: "refund sync records swapped" and "inverted `adjust`": the reply and the record say
/// what happened.
#[test]
fn sync_records_say_what_happened() {
    let srv = TestServer::start();
    let app = srv.app("A_B_RECORDS");
    paid_order(&srv, &app, "O1", "10.00");
    let r = refund_with(&srv, &app, "O1", "T1", "1.00", "timeout");
    assert_eq!(r.data()["status"], "progress");
    let refund_no = r.data()["refundNo"].as_str().unwrap().to_string();
    let first = sync_refund(&srv, &app, "T1");
    assert_eq!(
        first.data(),
        &json!({"orderStatus": "success", "adjust": true})
    );
    let second = sync_refund(&srv, &app, "T1");
    assert_eq!(
        second.data(),
        &json!({"orderStatus": "success", "adjust": false})
    );
    let records: Vec<(String, i64)> = {
        let db = srv.db_read();
        let mut st = db
            .prepare(
                "SELECT channel_status, adjusted FROM sync_record
                 WHERE kind = 'refund' AND refund_no = ?1 ORDER BY id",
            )
            .unwrap();
        let rows = st
            .query_map([&refund_no], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(
        records,
        vec![("success".to_string(), 1), ("success".to_string(), 0)]
    );
}

/// DaxPay: "paid but closed is ignored" — a pay sync of a closed order that the channel reports
/// as paid changes nothing.
#[test]
fn a_pay_sync_of_a_closed_order_the_channel_says_is_paid_makes_it_success_and_flags_it() {
    let merchant = Merchant::start(&[]);
    let srv = TestServer::start();
    let app = srv.app("A_B_LATE");
    let data = srv.pay_with(
        &app,
        "O1",
        json!({"amount": "3.00", "notifyUrl": merchant.url}),
    );
    let order_no = data["orderNo"].as_str().unwrap().to_string();
    srv.close(&app, json!({"bizOrderNo": "O1"}))
        .expect(0, "success");
    // The channel's own book says the payer paid after all (the sandbox's stand-in for money
    // that reached a real channel after its trade was closed).
    {
        let book = rusqlite::Connection::open(&srv.db).unwrap();
        book.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        let n = book
            .execute(
                "UPDATE sandbox_trade SET state = 'paid', trade_no = 'LATE1' WHERE order_no = ?1",
                [&order_no],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    let s = srv.post_signed(&app, "/unipay/sync/order/pay", json!({"bizOrderNo": "O1"}));
    s.expect(0, "success");
    assert_eq!(s.data(), &json!({"orderStatus": "success", "adjust": true}));
    let order = srv.order(&app, "O1");
    assert_eq!(order["outOrderNo"], "LATE1");
    assert_eq!(order["refundableBalance"].to_string(), "3");
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM pay_order WHERE order_no = ?1 AND attention IS NOT NULL",
            &order_no
        ),
        1
    );
    // The merchant hears of the close, then of the money.
    let statuses = wait_for("the close and success notices", || {
        let got: Vec<String> = merchant
            .received()
            .iter()
            .map(|n| serde_json::from_str::<Value>(&n.body).unwrap()["data"]["status"].to_string())
            .collect();
        (got.len() >= 2).then_some(got)
    });
    assert!(
        statuses.contains(&"\"success\"".to_string()),
        "{statuses:?}"
    );
    // Its money can be given back.
    let r = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "BACK", "amount": "3.00"}),
    );
    r.expect(0, "success");
}
