//! Refunds of `ali_pay` orders against the fake Alipay gateway (refund-sync.md §9.2, §9.4, §10):
//! the request Alipay gets, partial and full refunds 3 s apart, every answer of
//! `alipay.trade.refund` mapped (refused → `fail` with the money back, unknown → `progress` and
//! never `fail`), `fund_change` `N` settled by a refund sync 10 s later, an absent refund status
//! answered by sending the same request number again, Alipay's refund notices (settle, flag,
//! never close the order), and the pay sync of an `ali_pay` order.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::alipay::{notice_url, qr_order, setup, the_url};
use crate::fake_alipay::{FakeAlipay, Mode};
use crate::helpers::{run_cli, wait_for, App, Reply, TestServer};
use crate::notify::Merchant;
use unipay::form;
use unipay::sys;

const REFUND: &str = "alipay.trade.refund";
const QUERY: &str = "alipay.trade.fastpay.refund.query";
const TOO_SOON: &str = "间隔10秒以上再发起退款查询请求";

/// A paid `ali_pay` order of 12.50 (paid at the fake; the pay sync makes sure unipay knows, even
/// when the payment notice goes nowhere); its order number.
fn paid_order(srv: &TestServer, app: &App, fake: &FakeAlipay, biz: &str) -> String {
    let (order_no, _) = qr_order(srv, app, biz);
    fake.pay(&order_no);
    let s = srv.post_signed(app, "/unipay/sync/order/pay", json!({"bizOrderNo": biz}));
    s.expect(0, "success");
    assert_eq!(s.data()["orderStatus"], "success", "{}", s.body);
    order_no
}

fn refund(srv: &TestServer, app: &App, body: Value) -> Reply {
    srv.post_signed(app, "/unipay/refund", body)
}

/// A refund of `amount` of the order `biz`, refund number `biz_refund`: its reply data.
#[track_caller]
fn refund_of(srv: &TestServer, app: &App, biz: &str, biz_refund: &str, amount: &str) -> Value {
    let r = refund(
        srv,
        app,
        json!({"bizOrderNo": biz, "bizRefundNo": biz_refund, "amount": amount}),
    );
    r.expect(0, "success");
    r.data().clone()
}

#[track_caller]
fn query(srv: &TestServer, app: &App, biz_refund: &str) -> Value {
    let r = srv.post_signed(
        app,
        "/unipay/query/refundOrder",
        json!({"bizRefundNo": biz_refund}),
    );
    r.expect(0, "success");
    r.data().clone()
}

fn sync(srv: &TestServer, app: &App, biz_refund: &str) -> Reply {
    srv.post_signed(
        app,
        "/unipay/sync/order/refund",
        json!({"bizRefundNo": biz_refund}),
    )
}

/// Syncs the refund until it is no longer too soon (Alipay's 10 s) or `deadline` passes.
#[track_caller]
fn sync_when_allowed(srv: &TestServer, app: &App, biz_refund: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = sync(srv, app, biz_refund);
        if !(r.code() == 20080 && r.msg().contains(TOO_SOON)) {
            return r;
        }
        assert!(Instant::now() < deadline, "still too soon: {}", r.body);
        thread::sleep(Duration::from_millis(250));
    }
}

/// How many notices of the trade were answered, once the payment notice was (so that the next
/// answer recorded is the next notice's).
fn answered_notices(fake: &FakeAlipay, order_no: &str) -> usize {
    wait_for("the payment notice's answer", || {
        Some(fake.notifications(order_no).len()).filter(|n| *n > 0)
    })
}

/// Why the order needs an operator, if it does.
fn attention(srv: &TestServer, order_no: &str) -> Option<String> {
    srv.db_read()
        .query_row(
            "SELECT attention FROM pay_order WHERE order_no = ?1",
            [order_no],
            |r| r.get(0),
        )
        .unwrap()
}

/// The `biz_content` of the last call of `method`.
fn last_biz(fake: &FakeAlipay, method: &str) -> Value {
    let p = fake.last_params(method).unwrap();
    serde_json::from_str(form::get(&p, "biz_content").unwrap()).unwrap()
}

fn fail_mode(code: &str, sub_code: &str, sub_msg: &str, signed: bool) -> Mode {
    Mode::Fail {
        code: code.into(),
        sub_code: sub_code.into(),
        sub_msg: sub_msg.into(),
        signed,
    }
}

fn balance(order: &Value) -> String {
    order["refundableBalance"].to_string()
}

#[test]
fn a_paid_alipay_order_is_refunded_with_its_refund_number_as_out_request_no() {
    let merchant = Merchant::start(&[]);
    let (srv, app, fake) = setup(&[]);
    let order_no = paid_order(&srv, &app, &fake, "AR1");
    let r = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "AR1", "bizRefundNo": "R1", "amount": "3", "reason": "退货",
               "notifyUrl": merchant.url}),
    );
    r.expect(0, "success").signed_by(&app);
    assert_eq!(r.data()["status"], "success", "{}", r.body);
    assert!(r.data().get("errorMsg").is_none());
    let refund_no = r.data()["refundNo"].as_str().unwrap().to_string();
    // What Alipay got.
    let p = fake.last_params(REFUND).unwrap();
    assert_eq!(form::get(&p, "app_id"), Some(crate::alipay::ALIPAY_APP_ID));
    assert_eq!(form::get(&p, "sign_type"), Some("RSA2"));
    let biz = last_biz(&fake, REFUND);
    assert_eq!(
        biz,
        json!({"out_trade_no": order_no, "refund_amount": "3.00",
               "out_request_no": refund_no, "refund_reason": "退货"})
    );
    assert_eq!(fake.bad_signatures(), 0);
    let book = fake.refunds(&order_no);
    assert_eq!(book.len(), 1);
    assert_eq!(
        (book[0].out_request_no.as_str(), book[0].cents),
        (&*refund_no, 300)
    );
    // The refund and the order.
    let q = query(&srv, &app, "R1");
    assert_eq!(q["status"], "success");
    assert_eq!(q["channel"], "ali_pay");
    assert!(
        q.get("outRefundNo").is_none(),
        "Alipay has no refund number: {q}"
    );
    let paid = book[0].paid_ms.unwrap();
    assert_eq!(
        q["finishTime"],
        sys::format_time(paid, srv.offset).as_str(),
        "finishTime is gmt_refund_pay"
    );
    let order = srv.order(&app, "AR1");
    assert_eq!(
        (order["status"].as_str(), order["refundStatus"].as_str()),
        (Some("success"), Some("partial_refund"))
    );
    assert_eq!(balance(&order), "9.5");
    // The merchant heard of it; a repeat is the same refund, and Alipay is not asked again.
    let got = wait_for("the refund notice", || {
        merchant.received().into_iter().next()
    });
    let v: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(v["data"]["refundNo"], refund_no.as_str());
    assert_eq!(v["data"]["status"], "success");
    let again = refund_of(&srv, &app, "AR1", "R1", "3.00");
    assert_eq!(again["refundNo"], refund_no.as_str());
    assert_eq!(fake.calls(REFUND), 1);
}

#[test]
fn partial_then_full_and_a_refund_within_three_seconds_waits_its_turn() {
    let (srv, app, fake) = setup(&["--sweep-interval", "200ms"]);
    let order_no = paid_order(&srv, &app, &fake, "PF1");
    assert_eq!(
        refund_of(&srv, &app, "PF1", "P1", "5.00")["status"],
        "success"
    );
    let order = srv.order(&app, "PF1");
    assert_eq!(order["refundStatus"], "partial_refund");
    assert_eq!(balance(&order), "7.5");
    // The rest at once: Alipay wants 3 s between two refunds of a trade, so it waits.
    let t0 = Instant::now();
    let second = refund_of(&srv, &app, "PF1", "P2", "7.50");
    assert_eq!(second["status"], "progress", "{second}");
    assert_eq!(fake.calls(REFUND), 1, "not sent yet");
    let order = srv.order(&app, "PF1");
    assert_eq!(order["refundStatus"], "refunding");
    assert_eq!(balance(&order), "0", "its amount is reserved");
    refund(
        &srv,
        &app,
        json!({"bizOrderNo": "PF1", "bizRefundNo": "P3", "amount": "0.01"}),
    )
    .expect(10506, "退款金额不能大于支付金额");
    // The sweeper sends it when its turn comes.
    wait_for("the second refund", || {
        (query(&srv, &app, "P2")["status"] == "success").then_some(())
    });
    assert!(
        t0.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );
    let order = srv.order(&app, "PF1");
    assert_eq!(order["refundStatus"], "refunded");
    assert_eq!(order["status"], "success");
    assert_eq!(balance(&order), "0");
    assert_eq!(
        fake.trade_status(&order_no).as_deref(),
        Some("TRADE_CLOSED")
    );
    assert_eq!(fake.refunds(&order_no).len(), 2);
    assert_eq!(fake.refund_spacing_violations(&order_no), 0);
    refund(
        &srv,
        &app,
        json!({"bizOrderNo": "PF1", "bizRefundNo": "P4", "amount": "0.01"}),
    )
    .expect(20044, "全部退款");
}

#[test]
fn a_refusal_fails_gives_the_money_back_and_the_same_number_is_retried() {
    let (srv, app, fake) = setup(&[]);
    let order_no = paid_order(&srv, &app, &fake, "RF1");
    fake.set_mode(
        REFUND,
        fail_mode(
            "40004",
            "ACQ.SELLER_BALANCE_NOT_ENOUGH",
            "卖家余额不足",
            true,
        ),
    );
    let r = refund_of(&srv, &app, "RF1", "F1", "2.00");
    assert_eq!(r["status"], "fail");
    assert_eq!(r["errorMsg"], "支付宝退款失败: 卖家余额不足");
    let refund_no = r["refundNo"].as_str().unwrap().to_string();
    let order = srv.order(&app, "RF1");
    assert_eq!(balance(&order), "12.5", "the money is back");
    assert_eq!(order["refundStatus"], "no_refund");
    let q = query(&srv, &app, "F1");
    assert_eq!(q["errorMsg"], "支付宝退款失败: 卖家余额不足");
    assert!(fake.refunds(&order_no).is_empty());
    // The same bizRefundNo again, once Alipay's 3 s have passed: the same out_request_no.
    fake.set_mode(REFUND, Mode::Normal);
    thread::sleep(Duration::from_millis(3100));
    let r = refund_of(&srv, &app, "RF1", "F1", "2");
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["refundNo"], refund_no.as_str());
    assert!(r.get("errorMsg").is_none());
    assert_eq!(
        last_biz(&fake, REFUND)["out_request_no"],
        refund_no.as_str()
    );
    assert_eq!(fake.calls(REFUND), 2);
    let book = fake.refunds(&order_no);
    assert_eq!(book.len(), 1);
    assert_eq!(book[0].out_request_no, refund_no);
    let order = srv.order(&app, "RF1");
    assert_eq!(balance(&order), "10.5");
    assert_eq!(order["refundStatus"], "partial_refund");
    assert_eq!(fake.refund_spacing_violations(&order_no), 0);
}

#[test]
fn every_refund_answer_is_mapped_and_a_restart_settles_the_unknown_ones() {
    let (mut srv, app, fake) = setup(&["--sweep-interval", "200ms"]);
    #[rustfmt::skip]
    let cases: Vec<(&str, Mode, &str)> = vec![
        ("T_NOTEXIST", fail_mode("40004", "ACQ.TRADE_NOT_EXIST", "交易不存在", true),        "fail"),
        ("T_FEE",      fail_mode("40004", "ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限", true), "fail"),
        ("T_40001",    fail_mode("40001", "isv.missing-parameter", "缺少参数", true),         "fail"),
        ("T_40002",    fail_mode("40002", "isv.invalid-parameter", "参数无效", true),         "fail"),
        ("T_40006",    fail_mode("40006", "isv.insufficient-isv-permissions", "权限不足", true), "fail"),
        ("T_20001",    fail_mode("20001", "aop.invalid-auth-token", "无效的访问令牌", true),     "fail"),
        ("T_SYS",      fail_mode("40004", "ACQ.SYSTEM_ERROR", "系统错误", true),              "progress"),
        ("T_CHARGE",   fail_mode("40004", "ACQ.REFUND_CHARGE_ERROR", "退款资金调拨异常", true),   "progress"),
        ("T_DISC",     fail_mode("40004", "ACQ.DISCORDANT_REPEAT_REQUEST", "请求信息不一致", true), "progress"),
        ("T_20000",    fail_mode("20000", "isp.unknow-error", "系统繁忙", true),              "progress"),
        ("T_UNSIGNED_FAIL", fail_mode("40004", "ACQ.TRADE_NOT_EXIST", "交易不存在", false),  "progress"),
        ("T_FORGED",   Mode::ForgedSign,    "progress"),
        ("T_UNSIGNED", Mode::Unsigned,      "progress"),
        ("T_DUP",      Mode::DuplicateNode, "progress"),
        ("T_RESER",    Mode::Reserialised,  "progress"),
        ("T_HANG",     Mode::Hang,          "progress"),
        ("T_N",        Mode::Unconfirmed,   "progress"),
    ];
    let mut orders = Vec::new();
    for (biz, mode, want) in &cases {
        let order_no = paid_order(&srv, &app, &fake, biz);
        fake.set_mode(REFUND, mode.clone());
        let t0 = Instant::now();
        let r = refund_of(&srv, &app, biz, &format!("{biz}_R"), "1.00");
        assert_eq!(r["status"], *want, "{biz}: {r}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{biz}: {:?}",
            t0.elapsed()
        );
        let order = srv.order(&app, biz);
        match *want {
            "fail" => {
                let msg = r["errorMsg"].as_str().unwrap();
                assert!(msg.starts_with("支付宝退款失败: "), "{biz}: {msg}");
                assert_eq!(balance(&order), "12.5", "{biz}: the money is back");
                assert_eq!(order["refundStatus"], "no_refund", "{biz}");
            }
            _ => {
                assert!(r.get("errorMsg").is_none(), "{biz}: {r}");
                assert_eq!(balance(&order), "11.5", "{biz}: still reserved");
                assert_eq!(order["refundStatus"], "refunding", "{biz}");
            }
        }
        fake.set_mode(REFUND, Mode::Normal);
        orders.push(order_no);
    }
    assert_eq!(srv.status(&app, "T_NOTEXIST"), "success");
    let flagged = attention(&srv, &orders[8]).unwrap_or_default();
    assert!(
        flagged.contains("退款"),
        "DISCORDANT_REPEAT_REQUEST: {flagged}"
    );
    assert_eq!(
        attention(&srv, &orders[6]),
        None,
        "SYSTEM_ERROR needs no one"
    );
    // Alipay paid out the refund it left unconfirmed; then a restart: every refund under way
    // is due, asked about, and the ones Alipay never got are sent again.
    let unconfirmed = query(&srv, &app, "T_N_R");
    fake.confirm_refund(&orders[16], unconfirmed["refundNo"].as_str().unwrap());
    srv.restart();
    for (i, (biz, _, want)) in cases.iter().enumerate() {
        let want = match *want {
            "fail" => "fail",
            _ => "success",
        };
        let got = wait_for(biz, || {
            let q = query(&srv, &app, &format!("{biz}_R"));
            let status = q["status"].as_str().unwrap().to_string();
            (status != "progress").then_some(status)
        });
        assert_eq!(got, want, "{biz}");
        let book = fake.refunds(&orders[i]);
        assert_eq!(
            book.len(),
            usize::from(want == "success"),
            "{biz}: {book:?}"
        );
        assert_eq!(fake.refund_spacing_violations(&orders[i]), 0, "{biz}");
        let order = srv.order(&app, biz);
        let balance_want = if want == "success" { "11.5" } else { "12.5" };
        assert_eq!(balance(&order), balance_want, "{biz}");
    }
}

#[test]
fn fund_change_n_is_progress_and_a_sync_ten_seconds_later_settles_it() {
    let (srv, app, fake) = setup(&[]);
    let order_no = paid_order(&srv, &app, &fake, "N1");
    fake.set_mode(REFUND, Mode::Unconfirmed);
    let t0 = Instant::now();
    // §10: fund_change N is no error: Alipay accepted the refund.
    let r = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "N1", "bizRefundNo": "NR1", "amount": "3.00"}),
    );
    r.expect(0, "success").signed_by(&app);
    assert_eq!(r.data()["status"], "progress");
    assert!(r.data().get("errorMsg").is_none());
    let refund_no = r.data()["refundNo"].as_str().unwrap().to_string();
    let order = srv.order(&app, "N1");
    assert_eq!(order["refundStatus"], "refunding");
    assert_eq!(balance(&order), "9.5");
    // Alipay's advice: no query sooner than 10 s after the refund.
    sync(&srv, &app, "NR1").expect(20080, TOO_SOON);
    assert_eq!(fake.calls(QUERY), 0);
    fake.confirm_refund(&order_no, &refund_no);
    // An answer that does not verify is no answer: 20080, nothing changes.
    fake.set_mode(QUERY, Mode::ForgedSign);
    let r = sync_when_allowed(&srv, &app, "NR1");
    r.expect(20080, "同步失败");
    assert!(
        t0.elapsed() >= Duration::from_secs(10),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(query(&srv, &app, "NR1")["status"], "progress");
    fake.set_mode(QUERY, Mode::Normal);
    let s = sync(&srv, &app, "NR1");
    s.expect(0, "success").signed_by(&app);
    assert_eq!(s.data(), &json!({"orderStatus": "success", "adjust": true}));
    assert_eq!(
        last_biz(&fake, QUERY),
        json!({"out_trade_no": order_no, "out_request_no": refund_no,
               "query_options": ["gmt_refund_pay"]})
    );
    let paid = fake.refunds(&order_no)[0].paid_ms.unwrap();
    assert_eq!(
        query(&srv, &app, "NR1")["finishTime"],
        sys::format_time(paid, srv.offset).as_str()
    );
    let order = srv.order(&app, "N1");
    assert_eq!(order["refundStatus"], "partial_refund");
    assert_eq!(balance(&order), "9.5");
    // Nothing left to adjust; Alipay agrees.
    let s = sync(&srv, &app, "NR1");
    assert_eq!(
        s.data(),
        &json!({"orderStatus": "success", "adjust": false})
    );
    assert_eq!(attention(&srv, &order_no), None);
    assert_eq!(fake.calls(REFUND), 1, "never sent again");
}

#[test]
fn an_absent_refund_status_sends_the_same_request_again_never_fail() {
    let (mut srv, app, fake) = setup(&["--public-url", &the_url(), "--sweep-interval", "250ms"]);
    let order_no = paid_order(&srv, &app, &fake, "S1");
    // Alipay cannot say whether it refunded: progress, not fail.
    fake.set_mode(
        REFUND,
        fail_mode("40004", "ACQ.SYSTEM_ERROR", "系统错误", true),
    );
    let r = refund_of(&srv, &app, "S1", "SR1", "2.00");
    assert_eq!(r["status"], "progress");
    let refund_no = r["refundNo"].as_str().unwrap().to_string();
    assert!(fake.refunds(&order_no).is_empty(), "it did not");
    // The sync asks; Alipay has no refund_status for it (§10: "send again", never fail): the
    // same out_request_no goes again, and Alipay accepts it without confirming it yet.
    fake.set_mode(REFUND, Mode::Unconfirmed);
    let s = sync_when_allowed(&srv, &app, "SR1");
    s.expect(0, "success");
    assert_eq!(
        s.data(),
        &json!({"orderStatus": "progress", "adjust": false})
    );
    assert_eq!(fake.calls(REFUND), 2);
    assert_eq!(
        last_biz(&fake, REFUND)["out_request_no"],
        refund_no.as_str()
    );
    assert_eq!(fake.calls(QUERY), 1);
    // It was just sent again: another sync is too soon.
    sync(&srv, &app, "SR1").expect(20080, TOO_SOON);
    // Alipay pays it out; a restart makes every refund under way due, and the sweeper settles
    // it no sooner than 10 s after its last send (Alipay's advice).
    fake.confirm_refund(&order_no, &refund_no);
    fake.set_mode(REFUND, Mode::Normal);
    srv.restart();
    let queries = fake.calls(QUERY);
    let deadline = Instant::now() + Duration::from_secs(30);
    while query(&srv, &app, "SR1")["status"] != "success" {
        assert!(
            Instant::now() < deadline,
            "the refund was not settled after the restart"
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(fake.calls(QUERY), queries + 1, "one look, when due");
    let book = fake.refunds(&order_no);
    assert_eq!(book.len(), 1, "refunded once");
    assert_eq!(book[0].out_request_no, refund_no);
    assert_eq!(balance(&srv.order(&app, "S1")), "10.5");
    assert_eq!(fake.refund_spacing_violations(&order_no), 0);
}

#[test]
fn a_query_about_another_amount_or_an_unknown_trade_flags_the_order() {
    let (srv, app, fake) = setup(&["--public-url", &the_url()]);
    fake.set_mode(
        REFUND,
        fail_mode("40004", "ACQ.SYSTEM_ERROR", "系统错误", true),
    );
    let a = paid_order(&srv, &app, &fake, "QA");
    let b = paid_order(&srv, &app, &fake, "QB");
    let ra = refund_of(&srv, &app, "QA", "QA_R", "3.00");
    refund_of(&srv, &app, "QB", "QB_R", "3.00");
    // Alipay holds a refund under QA_R's request number for another amount.
    fake.refund_outside(&a, ra["refundNo"].as_str().unwrap(), 100);
    let s = sync_when_allowed(&srv, &app, "QA_R");
    s.expect(0, "success");
    assert_eq!(
        s.data(),
        &json!({"orderStatus": "progress", "adjust": false})
    );
    let why = attention(&srv, &a).unwrap();
    assert!(why.contains("1.00") && why.contains("3.00"), "{why}");
    // Alipay does not know the trade at all.
    fake.set_mode(
        QUERY,
        fail_mode("40004", "ACQ.TRADE_NOT_EXIST", "交易不存在", true),
    );
    let s = sync(&srv, &app, "QB_R");
    s.expect(0, "success");
    assert_eq!(
        s.data(),
        &json!({"orderStatus": "progress", "adjust": false})
    );
    assert!(attention(&srv, &b).unwrap().contains("不存在"));
    // Any other failure of the query: unknown, 20080, nothing flagged.
    let c = paid_order(&srv, &app, &fake, "QC");
    refund_of(&srv, &app, "QC", "QC_R", "3.00");
    fake.set_mode(
        QUERY,
        fail_mode("40004", "ACQ.SYSTEM_ERROR", "系统错误", true),
    );
    sync_when_allowed(&srv, &app, "QC_R").expect(20080, "同步失败");
    assert_eq!(attention(&srv, &c), None);
    for biz in ["QA", "QB", "QC"] {
        assert_eq!(
            balance(&srv.order(&app, biz)),
            "9.5",
            "{biz}: still reserved"
        );
    }
    assert_eq!(fake.calls(REFUND), 3, "nothing sent again");
}

#[test]
fn refund_notices_settle_progress_refunds_and_repeats_change_nothing() {
    let merchant = Merchant::start(&[]);
    let (srv, app, fake) = setup(&["--sweep-interval", "200ms"]);
    let order_no = paid_order(&srv, &app, &fake, "RN1");
    fake.set_mode(REFUND, Mode::Unconfirmed);
    let r = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "RN1", "bizRefundNo": "RN1_R", "amount": "3.00",
               "notifyUrl": merchant.url}),
    );
    assert_eq!(r.data()["status"], "progress");
    let refund_no = r.data()["refundNo"].as_str().unwrap().to_string();
    // Alipay pays it out and says so, naming the refund by out_biz_no.
    fake.confirm_refund(&order_no, &refund_no);
    let before = answered_notices(&fake, &order_no);
    let notice = fake.refund_notice(&order_no, &refund_no);
    let answers = wait_for("the answer to the refund notice", || {
        Some(fake.notifications(&order_no)).filter(|n| n.len() > before)
    });
    assert_eq!(answers[before], (200, "success".to_string()));
    let q = query(&srv, &app, "RN1_R");
    assert_eq!(q["status"], "success");
    let gmt_refund = form::get(&notice, "gmt_refund").unwrap();
    assert_eq!(
        q["finishTime"],
        &gmt_refund[..19],
        "finishTime is gmt_refund"
    );
    assert_eq!(fake.calls(QUERY), 0, "the notice alone settled it");
    let order = srv.order(&app, "RN1");
    assert_eq!(
        (order["status"].as_str(), balance(&order)),
        (Some("success"), "9.5".into())
    );
    assert_eq!(order["refundStatus"], "partial_refund");
    let got = wait_for("the merchant's refund notice", || {
        merchant.received().into_iter().next()
    });
    assert!(got.body.contains("\"status\":\"success\""), "{}", got.body);
    // The same notice again: success, and nothing moves (no second merchant notice).
    let url = notice_url(&srv);
    let (status, body) = FakeAlipay::post_notice(&url, &notice);
    assert_eq!((status, body.as_str()), (200, "success"));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(merchant.count(), 1);
    // A tampered refund notice is refused.
    let mut forged = notice.clone();
    forged.retain(|(k, _)| k != "out_biz_no");
    forged.push(("out_biz_no".into(), "R0".into()));
    let (status, body) = FakeAlipay::post_notice(&url, &forged);
    assert_eq!(status, 400);
    assert_ne!(body, "success");
    assert_eq!(attention(&srv, &order_no), None);

    // Without out_biz_no: every refund under way of the order is asked about now.
    fake.set_mode(REFUND, Mode::Normal);
    thread::sleep(Duration::from_millis(3000));
    fake.set_mode(REFUND, Mode::Unconfirmed);
    let r = refund_of(&srv, &app, "RN1", "RN1_R2", "2.00");
    assert_eq!(r["status"], "progress");
    fake.confirm_refund(&order_no, r["refundNo"].as_str().unwrap());
    fake.notify(
        &order_no,
        &[
            ("refund_fee", "5.00"),
            ("gmt_refund", "2026-01-01 10:00:00.000"),
        ],
    );
    wait_for("the sweeper's query", || {
        (query(&srv, &app, "RN1_R2")["status"] == "success").then_some(())
    });
    assert!(fake.calls(QUERY) >= 1);
    assert_eq!(balance(&srv.order(&app, "RN1")), "7.5");
    assert_eq!(attention(&srv, &order_no), None);
}

#[test]
fn a_refund_notice_naming_no_refund_of_the_order_flags_it() {
    let (srv, app, fake) = setup(&[]);
    // Refunded in Alipay's merchant console: unipay never heard of that refund.
    let a = paid_order(&srv, &app, &fake, "UA");
    fake.refund_outside(&a, "CONSOLE1", 100);
    let before = answered_notices(&fake, &a);
    fake.refund_notice(&a, "CONSOLE1");
    let answers = wait_for("the answer", || {
        Some(fake.notifications(&a)).filter(|n| n.len() > before)
    });
    assert_eq!(answers[before], (200, "success".to_string()));
    let why = attention(&srv, &a).unwrap();
    assert!(why.contains("CONSOLE1"), "{why}");
    let order = srv.order(&app, "UA");
    assert_eq!(order["status"], "success");
    assert_eq!(balance(&order), "12.5", "no money moved in unipay");
    // A refund number of another order is no refund of this one.
    let b = paid_order(&srv, &app, &fake, "UB");
    let c = paid_order(&srv, &app, &fake, "UC");
    let rb = refund_of(&srv, &app, "UB", "UB_R", "1.00");
    assert_eq!(rb["status"], "success");
    let rb_no = rb["refundNo"].as_str().unwrap();
    let p = fake.notify(
        &c,
        &[
            ("refund_fee", "1.00"),
            ("gmt_refund", "2026-01-01 10:00:00.000"),
            ("out_biz_no", rb_no),
        ],
    );
    let (status, body) = FakeAlipay::post_notice(&notice_url(&srv), &p);
    assert_eq!((status, body.as_str()), (200, "success"));
    assert!(attention(&srv, &c).unwrap().contains(rb_no));
    assert_eq!(attention(&srv, &b), None);
    assert_eq!(query(&srv, &app, "UB_R")["status"], "success");
}

#[test]
fn a_trade_closed_notice_of_a_refunded_order_never_closes_it() {
    let merchant = Merchant::start(&[]);
    let (srv, app, fake) = setup(&[]);
    let reply = srv.post_signed(
        &app,
        "/unipay/pay",
        json!({"bizOrderNo": "TC1", "title": "t", "amount": "12.50", "channel": "ali_pay",
               "method": "qrcode", "notifyUrl": merchant.url}),
    );
    reply.expect(0, "success");
    let order_no = reply.data()["orderNo"].as_str().unwrap().to_string();
    fake.pay(&order_no);
    wait_for("the payment", || {
        (srv.status(&app, "TC1") == "success").then_some(())
    });
    let r = refund_of(&srv, &app, "TC1", "TC1_R", "12.50");
    assert_eq!(r["status"], "success");
    let pay_notices = || {
        srv.count(
            "SELECT count(*) FROM notify_event e JOIN pay_order o ON o.id = e.order_id
             WHERE o.order_no = ?1 AND e.refund_id IS NULL",
            &order_no,
        )
    };
    let events = pay_notices();
    // The full refund's notice: TRADE_CLOSED.
    let before = answered_notices(&fake, &order_no);
    let p = fake.refund_notice(&order_no, r["refundNo"].as_str().unwrap());
    assert_eq!(form::get(&p, "trade_status"), Some("TRADE_CLOSED"));
    let answers = wait_for("the answer", || {
        Some(fake.notifications(&order_no)).filter(|n| n.len() > before)
    });
    assert_eq!(answers[before], (200, "success".to_string()));
    let order = srv.order(&app, "TC1");
    assert_eq!(order["status"], "success", "never closed");
    assert_eq!(order["refundStatus"], "refunded");
    assert_eq!(srv.close_records(&order_no), 0);
    assert_eq!(pay_notices(), events, "no pay notice");
    assert_eq!(attention(&srv, &order_no), None);
    // A TRADE_CLOSED of a paid order that unipay never refunded: money left outside unipay.
    let other = paid_order(&srv, &app, &fake, "TC2");
    let p = fake.notify(
        &other,
        &[
            ("trade_status", "TRADE_CLOSED"),
            ("gmt_close", "2026-01-01 10:00:00"),
        ],
    );
    let (status, body) = FakeAlipay::post_notice(&notice_url(&srv), &p);
    assert_eq!((status, body.as_str()), (200, "success"));
    assert_eq!(srv.status(&app, "TC2"), "success");
    assert!(attention(&srv, &other).is_some());
}

#[test]
fn a_pay_sync_finds_an_alipay_payment_unipay_missed() {
    let (srv, app, fake) = setup(&["--public-url", &the_url()]);
    let (order_no, _) = qr_order(&srv, &app, "PS1");
    let sync_pay = || {
        let s = srv.post_signed(&app, "/unipay/sync/order/pay", json!({"bizOrderNo": "PS1"}));
        s.expect(0, "success").signed_by(&app);
        s.data().clone()
    };
    // Nobody scanned it: Alipay has no trade yet; nothing changes.
    assert_eq!(
        sync_pay(),
        json!({"orderStatus": "progress", "adjust": false})
    );
    fake.scan(&order_no);
    assert_eq!(
        sync_pay(),
        json!({"orderStatus": "progress", "adjust": false})
    );
    // Paid at Alipay; the notice went nowhere.
    let trade_no = fake.pay(&order_no);
    assert_eq!(srv.status(&app, "PS1"), "progress");
    assert_eq!(
        sync_pay(),
        json!({"orderStatus": "success", "adjust": true})
    );
    let order = srv.order(&app, "PS1");
    assert_eq!(order["outOrderNo"], trade_no.as_str());
    assert_eq!(balance(&order), "12.5");
    assert_eq!(
        sync_pay(),
        json!({"orderStatus": "success", "adjust": false})
    );
    // An answer that does not verify: 20080, nothing changes.
    fake.set_mode("alipay.trade.query", Mode::Unsigned);
    srv.post_signed(&app, "/unipay/sync/order/pay", json!({"bizOrderNo": "PS1"}))
        .expect(20080, "同步失败");
}

#[test]
fn refunds_need_the_channel_enabled() {
    let (srv, app, fake) = setup(&[]);
    paid_order(&srv, &app, &fake, "D1");
    let db = srv.db.to_str().unwrap();
    let out = run_cli(&[
        "channel",
        "disable",
        "--db",
        db,
        "--app-id",
        &app.app_id,
        "ali_pay",
    ]);
    assert!(out.status.success());
    // Asked with an amount over the balance: refused (10506) while the server still sees the
    // channel enabled, with nothing written; 20021 once it sees it disabled.
    let r = wait_for("the disabled channel", || {
        let r = refund(
            &srv,
            &app,
            json!({"bizOrderNo": "D1", "bizRefundNo": "D1_R", "amount": "99.00"}),
        );
        (r.code() != 10506).then_some(r)
    });
    assert_eq!(
        (r.code(), r.msg()),
        (20021, "支付宝支付通道未启用"),
        "{}",
        r.body
    );
    let r = refund(
        &srv,
        &app,
        json!({"bizOrderNo": "D1", "bizRefundNo": "D1_R", "amount": "1.00"}),
    );
    assert_eq!(
        (r.code(), r.msg()),
        (20021, "支付宝支付通道未启用"),
        "{}",
        r.body
    );
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM refund_order WHERE app_id = ?1",
            &app.app_id
        ),
        0
    );
    assert_eq!(fake.calls(REFUND), 0);
}
