//! Refunds and syncs on the sandbox channel (refund-sync.md): the refund endpoint and its
//! repeats, the balance under 32 concurrent refunds, the sandbox's test controls (refused,
//! processing, a lost answer, a lost request), the query and the syncs, the refund notice, and a
//! kill at every step of a refund.

use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::notify::{verify_notice, Merchant};

/// A paid sandbox order of `yuan` yuan; its order number.
pub fn paid_order(srv: &TestServer, app: &App, biz: &str, yuan: &str) -> String {
    let data = srv.pay_with(app, biz, json!({"amount": yuan}));
    let order_no = data["orderNo"].as_str().unwrap().to_string();
    srv.sandbox_pay(&order_no).expect(0, "success");
    order_no
}

pub fn refund(srv: &TestServer, app: &App, body: Value) -> Reply {
    srv.post_signed(app, "/unipay/refund", body)
}

fn query(srv: &TestServer, app: &App, biz_refund: &str) -> Value {
    let r = srv.post_signed(
        app,
        "/unipay/query/refundOrder",
        json!({"bizRefundNo": biz_refund}),
    );
    r.expect(0, "success");
    r.data().clone()
}

#[test]
fn a_refund_succeeds_at_once_and_repeats_are_the_same_refund() {
    let merchant = Merchant::start(&[]);
    let srv = TestServer::start();
    let app = srv.app("A_REF");
    paid_order(&srv, &app, "O1", "10.00");
    let body = json!({"bizOrderNo": "O1", "bizRefundNo": "R1", "amount": "3.00",
                      "reason": "退货", "attach": "a1", "notifyUrl": merchant.url});
    let r = refund(&srv, &app, body.clone());
    r.expect(0, "success");
    assert_eq!(r.data()["status"], "success");
    assert_eq!(r.data()["bizRefundNo"], "R1");
    let refund_no = r.data()["refundNo"].as_str().unwrap().to_string();
    assert!(refund_no.starts_with('R'), "{refund_no}");
    let order = srv.order(&app, "O1");
    assert_eq!(order["refundableBalance"].to_string(), "7");
    assert_eq!(order["refundStatus"], "partial_refund");
    assert_eq!(order["status"], "success");
    // A repeat is the same refund, and nothing moves.
    let again = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "R1", "amount": 3}),
    );
    again.expect(0, "success");
    assert_eq!(again.data()["refundNo"], refund_no.as_str());
    assert_eq!(srv.order(&app, "O1")["refundableBalance"].to_string(), "7");
    // The same number for another amount or order: 退款单号已存在.
    refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "R1", "amount": "2.00"}),
    )
    .expect(10506, "退款单号已存在");
    // The query: the SDK's fields.
    let q = query(&srv, &app, "R1");
    assert_eq!(q["refundNo"], refund_no.as_str());
    assert_eq!(q["orderAmount"], 10);
    assert_eq!(q["amount"].to_string(), "3");
    assert_eq!(q["status"], "success");
    assert_eq!(q["title"], "测试订单 - 退款");
    assert!(q["finishTime"].is_string());
    // The notice reached the refund's notifyUrl, with the query's data.
    let got = wait_for("the refund notice", || {
        merchant.received().into_iter().next()
    });
    let v: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(v["data"]["refundNo"], refund_no.as_str());
    assert_eq!(v["data"]["status"], "success");
    assert!(v.get("noticeType").is_none());
    // The rest; then nothing is left.
    refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "R2", "amount": "7.01"}),
    )
    .expect(10506, "退款金额不能大于支付金额");
    let r = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "R2", "amount": "7"}),
    );
    assert_eq!(r.data()["status"], "success");
    let order = srv.order(&app, "O1");
    assert_eq!(order["refundStatus"], "refunded");
    assert_eq!(order["refundableBalance"].to_string(), "0");
    refund(
        &srv,
        &app,
        json!({"bizOrderNo": "O1", "bizRefundNo": "R3", "amount": "0.01"}),
    )
    .expect(20044, "全部退款");
}

#[test]
fn refunds_of_unpaid_or_unknown_orders_are_refused() {
    let srv = TestServer::start();
    let app = srv.app("A_REF2");
    let waiting = srv.pre_pay(&app, "W1");
    refund(
        &srv,
        &app,
        json!({"orderNo": waiting, "bizRefundNo": "R1", "amount": 1}),
    )
    .expect(20044, "当前支付单订状态[待支付]不允许发起退款操作");
    refund(
        &srv,
        &app,
        json!({"bizOrderNo": "NOPE", "bizRefundNo": "R1", "amount": 1}),
    )
    .expect(20041, "支付订单不存在");
    refund(&srv, &app, json!({"bizRefundNo": "R1", "amount": 1}))
        .expect(10506, "支付订单号不能都为空");
    refund(&srv, &app, json!({"bizOrderNo": "W1", "amount": 1}))
        .expect(10506, "商户退款号不可为空");
    refund(&srv, &app, json!({"bizOrderNo": "W1", "bizRefundNo": "R1"}))
        .expect(10506, "退款金额不可为空");
    refund(
        &srv,
        &app,
        json!({"bizOrderNo": "W1", "bizRefundNo": "R1", "amount": "0.001"}),
    )
    .expect(10506, "支付金额精度到分");
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM refund_order WHERE app_id = ?1",
            "A_REF2"
        ),
        0
    );
    srv.post_signed(&app, "/unipay/query/refundOrder", json!({}))
        .expect(10506, "退款号或商户退款号不能都为空");
    srv.post_signed(
        &app,
        "/unipay/query/refundOrder",
        json!({"refundNo": "R000"}),
    )
    .expect(20041, "退款订单不存在");
}

#[test]
fn thirty_two_concurrent_refunds_never_exceed_the_amount() {
    let srv = TestServer::start();
    let app = srv.app("A_CONC");
    paid_order(&srv, &app, "C1", "10.00");
    // 32 refunds of 0.50 to 1.50: far more than 10 yuan in all.
    let codes: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    thread::scope(|s| {
        for i in 0..32 {
            let (srv, app, codes) = (&srv, &app, codes.clone());
            s.spawn(move || {
                let amount = format!("{}.{:02}", (50 + i * 3) / 100, (50 + i * 3) % 100);
                let r = refund(
                    srv,
                    app,
                    json!({"bizOrderNo": "C1", "bizRefundNo": format!("CR{i}"), "amount": amount}),
                );
                let status = r
                    .data()
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                codes.lock().unwrap().push((r.code().to_string(), status));
            });
        }
        // The same bizRefundNo 16 times at once: one refund (or none, when the others took
        // the whole balance first).
        for _ in 0..16 {
            let (srv, app, codes) = (&srv, &app, codes.clone());
            s.spawn(move || {
                let r = refund(
                    srv,
                    app,
                    json!({"bizOrderNo": "C1", "bizRefundNo": "SAME", "amount": "0.10"}),
                );
                assert!(matches!(r.code(), 0 | 10506), "{}", r.body);
                codes
                    .lock()
                    .unwrap()
                    .push((format!("SAME {}", r.code()), String::new()));
            });
        }
    });
    let db = srv.db_read();
    let (ok_sum, count_same): (i64, i64) = db
        .query_row(
            "SELECT coalesce(sum(CASE WHEN status = 'success' THEN amount END), 0),
                count(CASE WHEN biz_refund_no = 'SAME' THEN 1 END)
             FROM refund_order WHERE app_id = 'A_CONC'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(ok_sum <= 1000, "refunded {ok_sum} cents of 1000");
    let same_ok = codes
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, _)| c == "SAME 0")
        .count();
    assert_eq!(
        count_same,
        (same_ok > 0) as i64,
        "one refund for one bizRefundNo, when any of its requests got one"
    );
    let order = srv.order(&app, "C1");
    let balance = unipay::domain::Amount::parse_yuan(&order["refundableBalance"].to_string())
        .map(|a| a.0)
        .unwrap_or(0);
    assert_eq!(
        balance,
        1000 - ok_sum,
        "balance = amount - successful refunds"
    );
    let refused = codes
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, _)| c == "10506")
        .count();
    assert!(refused > 0, "some were over the balance");
}

#[test]
fn sandbox_controls_refused_processing_timeout_and_lost() {
    let mut srv = TestServer::start_with(&["--sweep-interval", "200ms"]);
    let app = srv.app("A_CTL");
    paid_order(&srv, &app, "T1", "10.00");
    let with = |biz: &str, control: &str| {
        refund(
            &srv,
            &app,
            json!({"bizOrderNo": "T1", "bizRefundNo": biz, "amount": "1.00",
                                  "extraParam": json!({"sandboxRefund": control}).to_string()}),
        )
    };
    // Refused: fail, the money back; a retry of the same number succeeds.
    let r = with("F1", "fail");
    assert_eq!(r.data()["status"], "fail");
    assert!(r.data()["errorMsg"]
        .as_str()
        .unwrap()
        .contains("沙箱退款失败"));
    assert_eq!(srv.order(&app, "T1")["refundableBalance"].to_string(), "10");
    let r = with("F1", "fail");
    assert_eq!(
        r.data()["status"],
        "success",
        "a retry sends it again: {}",
        r.body
    );
    // Processing until the sandbox settles it.
    let r = with("P1", "processing");
    assert_eq!(r.data()["status"], "progress");
    assert_eq!(srv.order(&app, "T1")["refundStatus"], "refunding");
    let refund_no = r.data()["refundNo"].as_str().unwrap().to_string();
    srv.post_raw(&format!("/sandbox/refund/{refund_no}?result=close"), b"")
        .expect(0, "success");
    assert_eq!(query(&srv, &app, "P1")["status"], "close");
    assert_eq!(srv.order(&app, "T1")["refundableBalance"].to_string(), "9");
    srv.post_raw(&format!("/sandbox/refund/{refund_no}"), b"")
        .expect(20044, "");
    // The answer lost (it was refunded): progress, then the sync finds the success.
    let r = with("TO1", "timeout");
    assert_eq!(r.data()["status"], "progress");
    let s = srv.post_signed(
        &app,
        "/unipay/sync/order/refund",
        json!({"bizRefundNo": "TO1"}),
    );
    s.expect(0, "success");
    assert_eq!(s.data()["orderStatus"], "success");
    assert_eq!(s.data()["adjust"], true);
    let s = srv.post_signed(
        &app,
        "/unipay/sync/order/refund",
        json!({"bizRefundNo": "TO1"}),
    );
    assert_eq!(s.data()["adjust"], false, "nothing left to adjust");
    // The request lost: progress; the next look (here: a restart) finds nothing and sends it
    // again.
    let r = with("L1", "lost");
    assert_eq!(r.data()["status"], "progress");
    srv.restart();
    wait_for("the lost refund to be sent again", || {
        (query(&srv, &app, "L1")["status"] == "success").then_some(())
    });
    let order = srv.order(&app, "T1");
    // 1 (F1) + 1 (TO1) + 1 (L1) succeeded, P1 closed.
    assert_eq!(order["refundableBalance"].to_string(), "7");
    assert_eq!(order["refundStatus"], "partial_refund");
}

#[test]
fn pay_sync_repairs_an_order_and_says_whether_it_did() {
    let srv = TestServer::start();
    let app = srv.app("A_SYNC");
    srv.pre_pay(&app, "S0");
    srv.post_signed(&app, "/unipay/sync/order/pay", json!({"bizOrderNo": "S0"}))
        .expect(20044, "订单未开始支付");
    // Closed before it ever reached a channel: still nothing to ask.
    srv.post_signed(&app, "/unipay/close", json!({"bizOrderNo": "S0"}))
        .expect(0, "success");
    srv.post_signed(&app, "/unipay/sync/order/pay", json!({"bizOrderNo": "S0"}))
        .expect(20044, "订单未开始支付");
    let order_no = srv.pay(&app, "S1")["orderNo"].as_str().unwrap().to_string();
    let s = srv.post_signed(&app, "/unipay/sync/order/pay", json!({"bizOrderNo": "S1"}));
    s.expect(0, "success");
    assert_eq!(
        s.data(),
        &json!({"orderStatus": "progress", "adjust": false})
    );
    srv.sandbox_pay(&order_no).expect(0, "success");
    let s = srv.post_signed(&app, "/unipay/sync/order/pay", json!({"orderNo": order_no}));
    assert_eq!(
        s.data(),
        &json!({"orderStatus": "success", "adjust": false})
    );
    srv.post_signed(
        &app,
        "/unipay/sync/order/pay",
        json!({"bizOrderNo": "NOPE"}),
    )
    .expect(20041, "支付订单不存在");
    let records = srv.count(
        "SELECT count(*) FROM sync_record WHERE order_no = ?1",
        &order_no,
    );
    assert_eq!(records, 2);
}

#[test]
fn a_kill_around_the_channel_call_never_refunds_twice_or_loses_money() {
    let mut srv = TestServer::start_with(&["--sweep-interval", "200ms"]);
    let app = srv.app("A_KILL");
    paid_order(&srv, &app, "K1", "10.00");
    // A refund whose request is lost and another whose answer is lost, then the process dies
    // before anyone looks again.
    for (biz, control) in [("KL", "lost"), ("KT", "timeout")] {
        let r = refund(
            &srv,
            &app,
            json!({"bizOrderNo": "K1", "bizRefundNo": biz, "amount": "2.00",
                                          "extraParam": json!({"sandboxRefund": control}).to_string()}),
        );
        assert_eq!(r.data()["status"], "progress");
    }
    srv.kill9();
    srv.restart();
    wait_for("both settled after the restart", || {
        let done = ["KL", "KT"]
            .iter()
            .all(|b| query(&srv, &app, b)["status"] == "success");
        done.then_some(())
    });
    let order = srv.order(&app, "K1");
    assert_eq!(order["refundableBalance"].to_string(), "6");
    let booked = srv.count(
        "SELECT count(*) FROM sandbox_refund WHERE order_no = ?1",
        order["orderNo"].as_str().unwrap(),
    );
    assert_eq!(booked, 2, "each refunded once at the channel");
}

/// `refundableBalance` is exact at every step (refund-sync.md §2.2: "An order starts with
/// `no_refund` and a balance equal to its amount"): in the query reply of an order not paid
/// yet (`progress` and `wait`), of a paid one, and in the notice data of its payment and of a
/// close; after a partial refund, a refused one (the money back), one under way (held) and its
/// close (back again), and the rest (0).
#[test]
fn the_refundable_balance_is_exact_from_creation_to_the_last_refund() {
    let merchant = Merchant::start(&[]);
    let srv = TestServer::start_with(&["--sweep-interval", "1h"]);
    let app = srv.app("A_BAL");
    let order_fields = |biz: &str| {
        let o = srv.order(&app, biz);
        (
            o["refundableBalance"].to_string(),
            o["refundStatus"].as_str().unwrap_or("").to_string(),
            o["status"].as_str().unwrap().to_string(),
        )
    };
    let fields = |b: &str, rs: &str, s: &str| (b.to_string(), rs.to_string(), s.to_string());
    let notices = || -> Vec<Value> {
        let got = merchant.received();
        got.iter()
            .map(|n| verify_notice(&n.body, app.sign_type, &app.secret)["data"].clone())
            .collect()
    };

    // Before any payment: the whole amount, no_refund.
    let data = srv.pay_with(
        &app,
        "BAL1",
        json!({"amount": "12.34", "notifyUrl": merchant.url}),
    );
    let order_no = data["orderNo"].as_str().unwrap().to_string();
    assert_eq!(
        order_fields("BAL1"),
        fields("12.34", "no_refund", "progress")
    );
    srv.pre_pay_with(
        &app,
        "BAL2",
        json!({"amount": "56.78", "notifyUrl": merchant.url}),
    );
    assert_eq!(order_fields("BAL2"), fields("56.78", "no_refund", "wait"));

    // Paid: the same, in the query and in the payment's notice.
    srv.sandbox_pay(&order_no).expect(0, "success");
    assert_eq!(
        order_fields("BAL1"),
        fields("12.34", "no_refund", "success")
    );
    let paid = wait_for("the payment notice", || notices().into_iter().next());
    assert_eq!(paid["orderNo"], order_no.as_str());
    assert_eq!(paid["status"], "success");
    assert_eq!(paid["refundableBalance"].to_string(), "12.34", "{paid}");
    assert_eq!(paid["refundStatus"], "no_refund", "{paid}");

    // A never-paid order closed: its close notice carries the whole amount too.
    srv.close(&app, json!({"bizOrderNo": "BAL2"}))
        .expect(0, "success");
    let closed = wait_for("the close notice", || notices().into_iter().nth(1));
    assert_eq!(closed["status"], "close");
    assert_eq!(closed["refundableBalance"].to_string(), "56.78", "{closed}");
    assert_eq!(closed["refundStatus"], "no_refund", "{closed}");

    let refund_with = |biz_refund: &str, amount: &str, control: Option<&str>| {
        let mut body = json!({"bizOrderNo": "BAL1", "bizRefundNo": biz_refund, "amount": amount});
        if let Some(c) = control {
            merge(
                &mut body,
                json!({"extraParam": json!({"sandboxRefund": c}).to_string()}),
            );
        }
        let r = refund(&srv, &app, body);
        r.expect(0, "success");
        r.data().clone()
    };
    // A partial refund.
    assert_eq!(refund_with("BR1", "2.34", None)["status"], "success");
    assert_eq!(
        order_fields("BAL1"),
        fields("10", "partial_refund", "success")
    );
    // A refused one: the money comes back.
    assert_eq!(refund_with("BR2", "5.00", Some("fail"))["status"], "fail");
    assert_eq!(
        order_fields("BAL1"),
        fields("10", "partial_refund", "success")
    );
    // One under way holds its amount; closed by the channel, it comes back.
    let held = refund_with("BR3", "3.00", Some("processing"));
    assert_eq!(held["status"], "progress");
    assert_eq!(order_fields("BAL1"), fields("7", "refunding", "success"));
    let refund_no = held["refundNo"].as_str().unwrap();
    srv.post_raw(&format!("/sandbox/refund/{refund_no}?result=close"), b"")
        .expect(0, "success");
    assert_eq!(
        order_fields("BAL1"),
        fields("10", "partial_refund", "success")
    );
    // The rest: nothing left.
    assert_eq!(refund_with("BR4", "10", None)["status"], "success");
    assert_eq!(order_fields("BAL1"), fields("0", "refunded", "success"));
    // A refund never sends a pay notice: the merchant heard of the payment and the close only.
    assert_eq!(notices().len(), 2);
}

/// `unipay refund list` prints every refund, one JSON line each, and `--status` picks them.
#[test]
fn refund_list_prints_the_refunds_and_filters_by_status() {
    let srv = TestServer::start();
    let app = srv.app("A_RLIST");
    paid_order(&srv, &app, "RL1", "10.00");
    let body = |biz_refund: &str, extra: Option<&str>| {
        let mut b = json!({"bizOrderNo": "RL1", "bizRefundNo": biz_refund, "amount": "1.00"});
        if let Some(control) = extra {
            b["extraParam"] = json!({ "sandboxRefund": control }).to_string().into();
        }
        b
    };
    refund(&srv, &app, body("RL_OK", None)).expect(0, "success");
    let r = refund(&srv, &app, body("RL_WAIT", Some("processing")));
    r.expect(0, "success");
    assert_eq!(r.data()["status"], "progress");
    let list = |status: Option<&str>| {
        let db = path_str(&srv.db);
        let mut args = vec!["refund", "list", "--db", db];
        if let Some(s) = status {
            args.extend(["--status", s]);
        }
        let out = run_cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
            .map(|v| {
                (
                    v["bizRefundNo"].as_str().unwrap().to_string(),
                    v["status"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let mut all = list(None);
    all.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        all,
        [
            ("RL_OK".to_string(), json!("success")),
            ("RL_WAIT".to_string(), json!("progress"))
        ]
    );
    assert_eq!(
        list(Some("progress")),
        [("RL_WAIT".to_string(), json!("progress"))]
    );
    assert_eq!(list(Some("fail")), []);
}
