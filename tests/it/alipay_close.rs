//! Closing and cancelling `ali_pay` orders against the fake Alipay gateway: every answer of
//! channels.md §A6 and what it makes of the order, replies that do not verify (unknown: the
//! order stays `progress` and the close is settled later by a query), and cancels with
//! `action` close, refund or none, and `retry_flag`.

use serde_json::json;

use crate::alipay::{qr_order, setup};
use crate::fake_alipay::Mode;
use crate::helpers::{App, TestServer};

/// A dead address for the fake's notices: a payment at Alipay stays unknown to unipay until
/// unipay asks.
const NOWHERE: &str = "http://127.0.0.1:9";

fn close(srv: &TestServer, app: &App, biz: &str, cancel: bool) -> crate::helpers::Reply {
    srv.close(app, json!({"bizOrderNo": biz, "useCancel": cancel}))
}

fn records(srv: &TestServer, order_no: &str) -> Vec<(String, bool, Option<String>)> {
    let c = srv.db_read();
    let mut st = c
        .prepare("SELECT close_type, closed, error_msg FROM close_record WHERE order_no = ?1 ORDER BY id")
        .unwrap();
    let rows = st
        .query_map([order_no], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

fn intents(srv: &TestServer) -> i64 {
    srv.db_read()
        .query_row("SELECT count(*) FROM close_intent", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn close_of_an_unscanned_a_waiting_and_a_paid_trade() {
    let (srv, app, fake) = setup(&["--public-url", NOWHERE]);
    // Nobody scanned it: ACQ.TRADE_NOT_EXIST, closed locally.
    let (unscanned, _) = qr_order(&srv, &app, "C_NONE");
    close(&srv, &app, "C_NONE", false).expect(0, "success");
    assert_eq!(srv.status(&app, "C_NONE"), "close");
    assert_eq!(
        records(&srv, &unscanned),
        vec![("close".into(), true, None)]
    );
    // Scanned, waiting: closed at Alipay.
    let (waiting, _) = qr_order(&srv, &app, "C_WAIT");
    fake.scan(&waiting);
    close(&srv, &app, "C_WAIT", false).expect(0, "success");
    assert_eq!(srv.status(&app, "C_WAIT"), "close");
    assert_eq!(fake.trade_status(&waiting).as_deref(), Some("TRADE_CLOSED"));
    // Paid (its notice lost): ACQ.TRADE_STATUS_ERROR, then a query finds the money.
    let (paid, _) = qr_order(&srv, &app, "C_PAID");
    let trade_no = fake.pay(&paid);
    close(&srv, &app, "C_PAID", false).expect(20044, "已支付");
    assert_eq!(srv.status(&app, "C_PAID"), "success");
    assert_eq!(srv.order(&app, "C_PAID")["outOrderNo"], trade_no.as_str());
    assert_eq!(fake.calls("alipay.trade.query"), 1);
    let r = records(&srv, &paid);
    assert_eq!(r.len(), 1);
    assert!(!r[0].1, "the close did not happen");
    // Closed at Alipay without a payment (it expired there): a status error, the query says
    // closed, the order is closed.
    let (expired, _) = qr_order(&srv, &app, "C_EXP");
    fake.scan(&expired);
    fake.expire_trade(&expired);
    close(&srv, &app, "C_EXP", false).expect(0, "success");
    assert_eq!(srv.status(&app, "C_EXP"), "close");
    assert_eq!(intents(&srv), 0);
    assert_eq!(fake.bad_signatures(), 0);
}

#[test]
fn unknown_answers_leave_the_order_open_and_recovery_settles_them() {
    let (mut srv, app, fake) = setup(&["--public-url", NOWHERE]);
    let cases: Vec<(&str, Mode, &str)> = vec![
        (
            "U_SYS",
            Mode::Fail {
                code: "40004".into(),
                sub_code: "ACQ.SYSTEM_ERROR".into(),
                sub_msg: "系统繁忙".into(),
                signed: true,
            },
            "系统繁忙",
        ),
        (
            "U_20000",
            Mode::Fail {
                code: "20000".into(),
                sub_code: "isp.unknow-error".into(),
                sub_msg: "服务暂不可用".into(),
                signed: true,
            },
            "服务暂不可用",
        ),
        ("U_UNSIGNED", Mode::Unsigned, "关闭订单失败"),
        ("U_FORGED", Mode::ForgedSign, "关闭订单失败"),
        ("U_RESER", Mode::Reserialised, "关闭订单失败"),
        ("U_DUP", Mode::DuplicateNode, "关闭订单失败"),
        (
            "U_NOTEXIST_UNSIGNED",
            Mode::Fail {
                code: "40004".into(),
                sub_code: "ACQ.TRADE_NOT_EXIST".into(),
                sub_msg: "交易不存在".into(),
                signed: false,
            },
            "关闭订单失败",
        ),
        ("U_HANG", Mode::Hang, "关闭订单失败"),
    ];
    let mut orders = Vec::new();
    for (biz, mode, says) in cases {
        let (order_no, _) = qr_order(&srv, &app, biz);
        fake.scan(&order_no);
        fake.set_mode("alipay.trade.close", mode.clone());
        close(&srv, &app, biz, false).expect(20080, says);
        assert_eq!(srv.status(&app, biz), "progress", "{biz}");
        let r = records(&srv, &order_no);
        assert_eq!(r.len(), 1, "{biz}: the attempt is recorded");
        assert!(!r[0].1, "{biz}");
        // The outcome is unknown: the intent stays, so a second close is 20043.
        close(&srv, &app, biz, false).expect(20043, "关闭中");
        orders.push((biz, order_no));
    }
    fake.set_mode("alipay.trade.close", Mode::Normal);
    // A reply that was lost or did not verify may still have closed the trade at Alipay (the
    // fake applies the close and then hangs, drops or forges the answer); a refused one did
    // not. Meanwhile Alipay closed one by itself and a buyer paid another.
    fake.close_trade(&orders[0].1);
    let paid_trade = fake.pay(&orders[1].1);
    for (biz, order_no) in &orders {
        let at_alipay = fake.trade_status(order_no).unwrap();
        let want = match biz {
            &"U_SYS" => "TRADE_CLOSED",
            &"U_20000" => "TRADE_SUCCESS",
            &"U_NOTEXIST_UNSIGNED" => "WAIT_BUYER_PAY",
            _ => "TRADE_CLOSED",
        };
        assert_eq!(at_alipay, want, "{biz}");
    }
    // Start-up recovery asks Alipay about each and settles it.
    srv.restart();
    for (biz, order_no) in &orders {
        let want = match fake.trade_status(order_no).unwrap().as_str() {
            "TRADE_CLOSED" => "close",
            "TRADE_SUCCESS" => "success",
            _ => "progress",
        };
        assert_eq!(srv.status(&app, biz), want, "{biz}");
    }
    assert_eq!(
        srv.order(&app, "U_20000")["outOrderNo"],
        paid_trade.as_str()
    );
    assert_eq!(intents(&srv), 0, "every intent settled");
    // The one still open closes now.
    close(&srv, &app, "U_NOTEXIST_UNSIGNED", false).expect(0, "success");
}

#[test]
fn a_definite_refusal_leaves_the_order_open_and_no_intent() {
    let (srv, app, fake) = setup(&[]);
    let (order_no, _) = qr_order(&srv, &app, "R1");
    fake.scan(&order_no);
    fake.set_mode(
        "alipay.trade.close",
        Mode::Fail {
            code: "40004".into(),
            sub_code: "ACQ.INVALID_PARAMETER".into(),
            sub_msg: "参数无效".into(),
            signed: true,
        },
    );
    close(&srv, &app, "R1", false).expect(20080, "参数无效");
    assert_eq!(srv.status(&app, "R1"), "progress");
    assert_eq!(intents(&srv), 0);
    fake.set_mode("alipay.trade.close", Mode::Normal);
    close(&srv, &app, "R1", false).expect(0, "success");
}

#[test]
fn cancel_closes_refunds_or_finds_no_trade() {
    let (srv, app, fake) = setup(&["--public-url", NOWHERE]);
    // A waiting trade: action close.
    let (waiting, _) = qr_order(&srv, &app, "X_WAIT");
    fake.scan(&waiting);
    close(&srv, &app, "X_WAIT", true).expect(0, "success");
    assert_eq!(srv.status(&app, "X_WAIT"), "cancel");
    assert_eq!(fake.trade_status(&waiting).as_deref(), Some("TRADE_CLOSED"));
    // A paid trade whose notice was lost: Alipay refunds it (action refund), the order is
    // cancelled and its close record says the money went back.
    let (paid, _) = qr_order(&srv, &app, "X_PAID");
    fake.pay(&paid);
    close(&srv, &app, "X_PAID", true).expect(0, "success");
    assert_eq!(srv.status(&app, "X_PAID"), "cancel");
    let r = records(&srv, &paid);
    assert_eq!(r.len(), 1);
    assert!(r[0].1);
    assert!(r[0].2.as_deref().unwrap_or("").contains("退款"), "{r:?}");
    // No trade at all: cancelled locally.
    let (none, _) = qr_order(&srv, &app, "X_NONE");
    close(&srv, &app, "X_NONE", true).expect(0, "success");
    assert_eq!(srv.status(&app, "X_NONE"), "cancel");
    assert!(!none.is_empty());
    // Alipay asks to retry twice, then answers.
    let (retried, _) = qr_order(&srv, &app, "X_RETRY");
    fake.scan(&retried);
    let before = fake.calls("alipay.trade.cancel");
    fake.set_mode("alipay.trade.cancel", Mode::RetryThenNormal(2));
    close(&srv, &app, "X_RETRY", true).expect(0, "success");
    assert_eq!(fake.calls("alipay.trade.cancel") - before, 3);
    assert_eq!(srv.status(&app, "X_RETRY"), "cancel");
    // Retried to the end: unknown.
    let (stuck, _) = qr_order(&srv, &app, "X_STUCK");
    fake.scan(&stuck);
    fake.set_mode("alipay.trade.cancel", Mode::RetryThenNormal(5));
    close(&srv, &app, "X_STUCK", true).expect(20080, "关闭订单失败");
    assert_eq!(srv.status(&app, "X_STUCK"), "progress");
    assert_eq!(intents(&srv), 1);
}
