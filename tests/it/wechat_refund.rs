//! WeChat Pay refunds (refund-sync.md §9.3) against the fake WeChat Pay: the request unipay
//! sends, every answer of the table (processing, success, closed, abnormal, refused, 429, 5xx, a
//! hang, replies that do not verify), the `REFUND.*` notices verified, checked and applied once,
//! the syncs, the pay sync of a WeChat order, and a minute between two sends for one order.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fake_wechat::{FakeWechat, Mode};
use crate::helpers::{wait_for, App, Reply, TestServer};
use crate::notify::Merchant;
use crate::wechat::{notice_url, pay, set_wechat, setup, NOWHERE};

/// A `wechat_pay` order of `yuan`, paid at WeChat without a notice and then found paid by a pay
/// sync; its order number.
fn paid(srv: &TestServer, app: &App, fake: &FakeWechat, biz: &str, yuan: &str) -> String {
    let reply = pay(srv, app, biz, "qrcode", json!({ "amount": yuan }));
    reply.expect(0, "success");
    let order_no = reply.data()["orderNo"].as_str().unwrap().to_string();
    fake.pay_silently(&order_no);
    let s = srv.post_signed(app, "/unipay/sync/order/pay", json!({ "bizOrderNo": biz }));
    s.expect(0, "success");
    assert_eq!(s.data(), &json!({"orderStatus": "success", "adjust": true}));
    order_no
}

fn refund(srv: &TestServer, app: &App, body: Value) -> Reply {
    let r = srv.post_signed(app, "/unipay/refund", body);
    r.expect(0, "success");
    r
}

/// A refund of `amount` yuan of the order `biz`, numbered `biz`-`n`.
fn refund_of(srv: &TestServer, app: &App, biz: &str, n: u32, amount: &str) -> Reply {
    let body = json!({"bizOrderNo": biz, "bizRefundNo": format!("{biz}-{n}"), "amount": amount});
    refund(srv, app, body)
}

fn refund_no(r: &Reply) -> String {
    r.data()["refundNo"].as_str().unwrap().to_string()
}

fn query(srv: &TestServer, app: &App, biz_refund: &str) -> Value {
    let body = json!({ "bizRefundNo": biz_refund });
    let r = srv.post_signed(app, "/unipay/query/refundOrder", body);
    r.expect(0, "success");
    r.data().clone()
}

fn status(srv: &TestServer, app: &App, biz_refund: &str) -> String {
    query(srv, app, biz_refund)["status"]
        .as_str()
        .unwrap()
        .to_string()
}

fn sync(srv: &TestServer, app: &App, biz_refund: &str) -> Reply {
    let body = json!({ "bizRefundNo": biz_refund });
    srv.post_signed(app, "/unipay/sync/order/refund", body)
}

/// A refund sync that answers; its `(orderStatus, adjust)`.
fn synced(srv: &TestServer, app: &App, biz_refund: &str) -> (String, bool) {
    let r = sync(srv, app, biz_refund);
    r.expect(0, "success");
    let d = r.data();
    (
        d["orderStatus"].as_str().unwrap().to_string(),
        d["adjust"].as_bool().unwrap(),
    )
}

/// The order's `(refundStatus, refundableBalance)`.
fn balance(srv: &TestServer, app: &App, biz: &str) -> (String, String) {
    let o = srv.order(app, biz);
    let status = o["refundStatus"].as_str().unwrap_or("").to_string();
    (status, o["refundableBalance"].to_string())
}

fn attention(srv: &TestServer, order_no: &str) -> Option<String> {
    srv.db_read()
        .query_row(
            "SELECT attention FROM pay_order WHERE order_no = ?1",
            [order_no],
            |r| r.get(0),
        )
        .unwrap()
}

/// The refund notices the merchant received: `(refundNo, status)`.
fn merchant_notices(merchant: &Merchant) -> Vec<(String, String)> {
    let text = |v: &Value, k: &str| v["data"][k].as_str().unwrap_or("").to_string();
    let got = merchant.received().into_iter();
    let got = got.map(|r| serde_json::from_str::<Value>(&r.body).unwrap());
    got.map(|v| (text(&v, "refundNo"), text(&v, "status")))
        .collect()
}

fn post_notice(srv: &TestServer, headers: &[(String, String)], body: &[u8]) -> u16 {
    FakeWechat::post_notification(&notice_url(srv), headers, body).0
}

fn with_header(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let set = |(k, v): &(String, String)| match k.eq_ignore_ascii_case(name) {
        true => (k.clone(), value.to_string()),
        false => (k.clone(), v.clone()),
    };
    headers.iter().map(set).collect()
}

#[test]
fn a_processing_refund_is_settled_by_the_refund_notice() {
    let merchant = Merchant::start(&[]);
    let (srv, app, fake) = setup(&[]);
    let order_no = paid(&srv, &app, &fake, "WR1", "10.00");
    let body = json!({"bizOrderNo": "WR1", "bizRefundNo": "WR1-1", "amount": "3.00",
                      "reason": "退货", "notifyUrl": merchant.url});
    let r = refund(&srv, &app, body);
    assert_eq!(r.data()["status"], "progress");
    let no = refund_no(&r);
    // What WeChat got: unipay's numbers, fen, the payment callback path, no null.
    let sent = fake.last_body("refund").unwrap();
    let want = json!({"out_trade_no": order_no, "out_refund_no": no, "reason": "退货",
                      "notify_url": notice_url(&srv),
                      "amount": {"refund": 300, "total": 1000, "currency": "CNY"}});
    assert_eq!(sent, want);
    assert_eq!(balance(&srv, &app, "WR1"), ("refunding".into(), "7".into()));
    let q = query(&srv, &app, "WR1-1");
    assert_eq!(q["status"], "progress");
    assert_eq!(q["outRefundNo"], fake.refund_id(&no).unwrap().as_str());
    // WeChat finishes it: the notice settles it, answered 204.
    fake.settle_refund(&no);
    wait_for("the notice", || {
        (status(&srv, &app, "WR1-1") == "success").then_some(())
    });
    let answered = wait_for("the answer", || fake.notifications(&no).first().cloned());
    assert_eq!(answered, (204, String::new()));
    let q = query(&srv, &app, "WR1-1");
    assert!(q["finishTime"].is_string(), "{q}");
    assert_eq!(q["outRefundNo"], fake.refund_id(&no).unwrap().as_str());
    assert_eq!(
        balance(&srv, &app, "WR1"),
        ("partial_refund".into(), "7".into())
    );
    let notices = wait_for("the merchant's notice", || {
        Some(merchant_notices(&merchant)).filter(|n| !n.is_empty())
    });
    assert_eq!(notices, [(no.clone(), "success".to_string())]);
    // The same notice again: 204, nothing moves, no second merchant notice.
    let (headers, body) = fake.refund_notification_for(&no);
    assert_eq!(post_notice(&srv, &headers, &body), 204);
    assert_eq!(
        balance(&srv, &app, "WR1"),
        ("partial_refund".into(), "7".into())
    );
    // A full refund of another order: refunded.
    paid(&srv, &app, &fake, "WR2", "1.00");
    let r = refund_of(&srv, &app, "WR2", 1, "1.00");
    assert_eq!(r.data()["status"], "progress");
    fake.settle_refund(&refund_no(&r));
    wait_for("the second notice", || {
        (status(&srv, &app, "WR2-1") == "success").then_some(())
    });
    assert_eq!(balance(&srv, &app, "WR2"), ("refunded".into(), "0".into()));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(merchant.count(), 1, "one notice for one transition");
    assert_eq!(fake.bad_signatures(), 0);
}

#[test]
fn immediate_success_closed_and_abnormal_answers() {
    let merchant = Merchant::start(&[]);
    let (srv, app, fake) = setup(&[]);
    let with_notify = |biz: &str| {
        json!({"bizOrderNo": biz, "bizRefundNo": format!("{biz}-1"), "amount": "0.50",
               "notifyUrl": merchant.url})
    };
    // SUCCESS at once; WeChat's notice of it then finds it done (204).
    paid(&srv, &app, &fake, "WI1", "0.50");
    fake.set_refund_result("SUCCESS");
    let r = refund(&srv, &app, with_notify("WI1"));
    assert_eq!(r.data()["status"], "success");
    let no1 = refund_no(&r);
    let q = query(&srv, &app, "WI1-1");
    assert!(q["finishTime"].is_string());
    assert_eq!(q["outRefundNo"], fake.refund_id(&no1).unwrap().as_str());
    assert_eq!(balance(&srv, &app, "WI1"), ("refunded".into(), "0".into()));
    let answered = wait_for("WeChat's notice", || {
        fake.notifications(&no1).first().cloned()
    });
    assert_eq!(answered.0, 204);
    // CLOSED at once: the money goes back, the merchant hears of it.
    let wi2 = paid(&srv, &app, &fake, "WI2", "2.00");
    fake.set_refund_result("CLOSED");
    let r = refund(&srv, &app, with_notify("WI2"));
    assert_eq!(r.data()["status"], "close");
    let no2 = refund_no(&r);
    assert_eq!(balance(&srv, &app, "WI2"), ("no_refund".into(), "2".into()));
    assert_eq!(attention(&srv, &wi2), None);
    wait_for("WeChat's closed notice", || {
        fake.notifications(&no2).first().cloned()
    });
    // ABNORMAL at once: stays progress (its money held), 退款异常, the order flagged.
    let wi3 = paid(&srv, &app, &fake, "WI3", "2.00");
    fake.set_refund_result("ABNORMAL");
    let r = refund(&srv, &app, with_notify("WI3"));
    assert_eq!(r.data()["status"], "progress");
    let no3 = refund_no(&r);
    assert_eq!(query(&srv, &app, "WI3-1")["errorMsg"], "退款异常");
    assert_eq!(
        balance(&srv, &app, "WI3"),
        ("refunding".into(), "1.5".into())
    );
    assert!(attention(&srv, &wi3).is_some());
    let answered = wait_for("WeChat's abnormal notice", || {
        fake.notifications(&no3).first().cloned()
    });
    assert_eq!(answered.0, 204);
    assert_eq!(status(&srv, &app, "WI3-1"), "progress");
    // Resolved by hand at WeChat: SUCCESS, notified.
    fake.settle_refund(&no3);
    wait_for("the abnormal refund to succeed", || {
        (status(&srv, &app, "WI3-1") == "success").then_some(())
    });
    assert!(query(&srv, &app, "WI3-1").get("errorMsg").is_none());
    assert_eq!(
        balance(&srv, &app, "WI3"),
        ("partial_refund".into(), "1.5".into())
    );
    let notices = wait_for("three merchant notices", || {
        Some(merchant_notices(&merchant)).filter(|n| n.len() == 3)
    });
    let mut notices = notices;
    notices.sort();
    let mut want = vec![
        (no1, "success".to_string()),
        (no2, "close".to_string()),
        (no3, "success".to_string()),
    ];
    want.sort();
    assert_eq!(notices, want);
}

#[test]
fn hangs_and_replies_that_do_not_verify_leave_refunds_in_progress_until_a_sync() {
    let (srv, app, fake) = setup(&["--public-url", NOWHERE]);
    // A hang: carried out at WeChat, the answer never comes.
    paid(&srv, &app, &fake, "WH", "1.00");
    fake.set_mode("refund", Mode::Hang);
    let t0 = Instant::now();
    let r = refund_of(&srv, &app, "WH", 1, "1.00");
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(r.data()["status"], "progress");
    let hung = refund_no(&r);
    assert_eq!(fake.refund_state(&hung).as_deref(), Some("PROCESSING"));
    // Replies of a refund WeChat carried out — even SUCCESS — that do not verify: progress.
    fake.set_refund_result("SUCCESS");
    let modes = [
        Mode::Forged,
        Mode::Probe,
        Mode::Stale,
        Mode::Unsigned,
        Mode::WrongSerial,
    ];
    for (i, mode) in modes.iter().enumerate() {
        let biz = format!("WF{i}");
        paid(&srv, &app, &fake, &biz, "1.00");
        fake.set_mode("refund", mode.clone());
        let r = refund_of(&srv, &app, &biz, 1, "1.00");
        assert_eq!(r.data()["status"], "progress", "{mode:?}");
        assert_eq!(
            fake.refund_state(&refund_no(&r)).as_deref(),
            Some("SUCCESS")
        );
        assert_eq!(balance(&srv, &app, &biz).0, "refunding", "{mode:?}");
    }
    // An unsigned refusal (or a 5xx) is not a refusal: progress, never fail.
    for (biz, mode) in [
        (
            "WU1",
            Mode::UnsignedStatus(403, "NOT_ENOUGH".into(), "余额不足".into()),
        ),
        ("WU2", Mode::ServerError),
    ] {
        paid(&srv, &app, &fake, biz, "1.00");
        fake.set_mode("refund", mode);
        let r = refund_of(&srv, &app, biz, 1, "1.00");
        assert_eq!(r.data()["status"], "progress", "{biz}");
        assert!(r.data().get("errorMsg").is_none());
        assert_eq!(fake.refund_state(&refund_no(&r)), None);
    }
    fake.set_mode("refund", Mode::Normal);
    // Queries that do not verify (or fail, or hang): 20080, nothing changes.
    for mode in [
        Mode::Forged,
        Mode::Probe,
        Mode::Stale,
        Mode::Unsigned,
        Mode::ServerError,
        Mode::Hang,
    ] {
        fake.set_mode("query_refund", mode.clone());
        sync(&srv, &app, "WF0-1").expect(20080, "同步失败");
        assert_eq!(status(&srv, &app, "WF0-1"), "progress", "{mode:?}");
    }
    fake.set_mode("query_refund", Mode::Normal);
    // The sync settles them: the hung one is PROCESSING at WeChat, then SUCCESS.
    assert_eq!(synced(&srv, &app, "WH-1"), ("progress".into(), false));
    assert_eq!(
        query(&srv, &app, "WH-1")["outRefundNo"],
        fake.refund_id(&hung).unwrap().as_str()
    );
    fake.settle_refund_silently(&hung, "SUCCESS");
    assert_eq!(synced(&srv, &app, "WH-1"), ("success".into(), true));
    assert_eq!(balance(&srv, &app, "WH"), ("refunded".into(), "0".into()));
    for i in 0..modes.len() {
        let biz = format!("WF{i}-1");
        assert_eq!(synced(&srv, &app, &biz), ("success".into(), true), "{biz}");
    }
    // The ones WeChat never took: not found, to be sent again once WeChat's minute is over.
    for biz in ["WU1-1", "WU2-1"] {
        assert_eq!(synced(&srv, &app, biz), ("progress".into(), false), "{biz}");
    }
    assert_eq!(fake.bad_signatures(), 0);
}

#[test]
fn refund_notices_are_verified_and_checked_and_a_wrong_one_changes_nothing() {
    let (srv, app, fake) = setup(&["--public-url", NOWHERE]);
    let wn1 = paid(&srv, &app, &fake, "WN1", "5.00");
    let r = refund_of(&srv, &app, "WN1", 1, "2.00");
    let no = refund_no(&r);
    let wn2 = paid(&srv, &app, &fake, "WN2", "5.00");
    let (event, resource) = fake.settle_refund_silently(&no, "SUCCESS");
    assert_eq!(event, "REFUND.SUCCESS");
    let (headers, body) = fake.refund_notice(event, &resource);
    let refused = |headers: &[(String, String)], body: &[u8], why: &str| {
        let url = notice_url(&srv);
        let (status, text) = FakeWechat::post_notification(&url, headers, body);
        assert!((400..600).contains(&status), "{why}: {status}");
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(v["code"], "FAIL", "{why}: {text}");
        let q = query(&srv, &app, "WN1-1");
        assert_eq!(q["status"], "progress", "{why}");
        assert_eq!(balance(&srv, &app, "WN1"), ("refunding".into(), "3".into()));
        assert_eq!(attention(&srv, &wn1), None, "{why}");
    };
    // The signature: a changed byte, a probe, another key, stale, none.
    let mut changed = body.clone();
    let i = changed.iter().position(|b| *b == b'"').unwrap() + 1;
    changed[i] ^= 1;
    refused(&headers, &changed, "a changed byte");
    let signature = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Wechatpay-Signature"))
        .unwrap()
        .1
        .clone();
    let probe = format!("WECHATPAY/SIGNTEST/{signature}");
    let probe = with_header(&headers, "Wechatpay-Signature", &probe);
    refused(&probe, &body, "a probe");
    let other_key = "PUB_KEY_ID_0000000000000000000000000000";
    refused(
        &with_header(&headers, "Wechatpay-Serial", other_key),
        &body,
        "another key",
    );
    let old = (crate::helpers::now_ms() / 1000 - 600).to_string();
    refused(
        &with_header(&headers, "Wechatpay-Timestamp", &old),
        &body,
        "stale",
    );
    let unsigned: Vec<_> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("Wechatpay-Signature"))
        .cloned()
        .collect();
    refused(&unsigned, &body, "no signature");
    // The resource: another AAD.
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["resource"] = fake.encrypt_resource(&resource.to_string(), "transaction");
    v["resource"]["associated_data"] = json!("refund");
    let b = v.to_string().into_bytes();
    refused(&fake.sign_notification(&b), &b, "a wrong AAD");
    // What it says: checked against the refund.
    let tampered = |path: &str, value: Value| {
        let mut r = resource.clone();
        *r.pointer_mut(path).unwrap() = value;
        r
    };
    for (r, why) in [
        (tampered("/amount/refund", json!(201)), "a wrong amount"),
        (tampered("/mchid", json!("1900000099")), "another mchid"),
        (
            tampered("/out_refund_no", json!("R20250101000000999999")),
            "an unknown refund",
        ),
        (tampered("/out_trade_no", json!(wn2)), "another order"),
        (
            tampered("/refund_status", json!("CLOSED")),
            "a status the event does not name",
        ),
    ] {
        let (h, b) = fake.refund_notice(event, &r);
        refused(&h, &b, why);
    }
    let (h, b) = fake.refund_notice("REFUND.CLOSED", &resource);
    refused(&h, &b, "an event its status does not name");
    // A refund of another app, sent to this app's path.
    let other = srv.app("A_WX2");
    set_wechat(&srv, &other, &fake);
    paid(&srv, &other, &fake, "WO1", "1.00");
    let r = refund_of(&srv, &other, "WO1", 1, "1.00");
    let other_no = refund_no(&r);
    let (e, res) = fake.settle_refund_silently(&other_no, "SUCCESS");
    let (h, b) = fake.refund_notice(e, &res);
    refused(&h, &b, "another app's refund");
    let other_url = format!("{}/callback/wechat_pay/A_WX2", srv.base_url());
    assert_eq!(FakeWechat::post_notification(&other_url, &h, &b).0, 204);
    assert_eq!(status(&srv, &other, "WO1-1"), "success");
    // The real one: 204 and applied; again: 204.
    assert_eq!(post_notice(&srv, &headers, &body), 204);
    assert_eq!(status(&srv, &app, "WN1-1"), "success");
    assert_eq!(
        balance(&srv, &app, "WN1"),
        ("partial_refund".into(), "3".into())
    );
    assert_eq!(post_notice(&srv, &headers, &body), 204);
    assert_eq!(attention(&srv, &wn1), None);
    // A notice saying CLOSED for the refund that succeeded: answered, nothing moves, flagged.
    let closed = tampered("/refund_status", json!("CLOSED"));
    let (h, b) = fake.refund_notice("REFUND.CLOSED", &closed);
    assert_eq!(post_notice(&srv, &h, &b), 204);
    assert_eq!(status(&srv, &app, "WN1-1"), "success");
    assert_eq!(
        balance(&srv, &app, "WN1"),
        ("partial_refund".into(), "3".into())
    );
    assert!(attention(&srv, &wn1).is_some());
    // Nothing of a notice in the log.
    let log = srv.stderr();
    assert!(
        !log.contains("ciphertext") && !log.contains("refund_id"),
        "{log}"
    );
    assert!(!log.contains(&fake.refund_id(&no).unwrap()));
    assert!(!log.contains("R20250101000000999999"));
}

#[test]
fn a_long_reason_is_cut_at_a_character_boundary_and_kept_whole() {
    let (srv, app, fake) = setup(&["--public-url", NOWHERE]);
    paid(&srv, &app, &fake, "WC1", "1.00");
    // 1 + 40 × 3 = 121 bytes: 1 + 26 × 3 = 79 bytes fit.
    let reason = format!("a{}", "退".repeat(40));
    let body = json!({"bizOrderNo": "WC1", "bizRefundNo": "WC1-1", "amount": "1.00",
                      "reason": reason});
    assert_eq!(refund(&srv, &app, body).data()["status"], "progress");
    let sent = fake.last_body("refund").unwrap();
    assert_eq!(sent["reason"], format!("a{}", "退".repeat(26)));
    assert_eq!(query(&srv, &app, "WC1-1")["reason"], reason.as_str());
}

#[test]
fn refunds_need_the_channel_enabled() {
    let (srv, app, fake) = setup(&["--public-url", NOWHERE]);
    paid(&srv, &app, &fake, "WD1", "1.00");
    // Until the settings cache sees the change, a refund would still be sent.
    let db = srv.db.to_str().unwrap();
    let args = [
        "channel",
        "disable",
        "--db",
        db,
        "--app-id",
        "A_WX",
        "wechat_pay",
    ];
    assert!(crate::helpers::run_cli(&args).status.success());
    wait_for("the disabled channel", || {
        let r = pay(&srv, &app, "WD2", "qrcode", json!({}));
        (r.code() == 20021).then_some(())
    });
    let body = json!({"bizOrderNo": "WD1", "bizRefundNo": "WD1-1", "amount": "1.00"});
    let r = srv.post_signed(&app, "/unipay/refund", body);
    r.expect(20021, "未启用");
    assert_eq!(fake.calls("refund"), 0);
    let n = srv.count(
        "SELECT count(*) FROM refund_order WHERE app_id = ?1",
        "A_WX",
    );
    assert_eq!(n, 0);
}

#[test]
fn pay_sync_of_wechat_orders() {
    let (srv, app, fake) = setup(&["--public-url", NOWHERE]);
    let sync_pay = |biz: &str| {
        let s = srv.post_signed(&app, "/unipay/sync/order/pay", json!({ "bizOrderNo": biz }));
        s.expect(0, "success");
        s.data().clone()
    };
    // Paid without a notice: success, adjust true, WeChat's transaction id.
    let reply = pay(&srv, &app, "WP1", "qrcode", json!({}));
    let p1 = reply.data()["orderNo"].as_str().unwrap().to_string();
    assert_eq!(
        sync_pay("WP1"),
        json!({"orderStatus": "progress", "adjust": false})
    );
    let tx = fake.pay_silently(&p1);
    assert_eq!(
        sync_pay("WP1"),
        json!({"orderStatus": "success", "adjust": true})
    );
    assert_eq!(srv.order(&app, "WP1")["outOrderNo"], tx.as_str());
    assert_eq!(
        sync_pay("WP1"),
        json!({"orderStatus": "success", "adjust": false})
    );
    // Refunded at WeChat (trade_state REFUND) is still paid: nothing changes, nothing flagged.
    refund_of(&srv, &app, "WP1", 1, "0.01");
    assert_eq!(fake.trade_state(&p1).as_deref(), Some("REFUND"));
    assert_eq!(
        sync_pay("WP1"),
        json!({"orderStatus": "success", "adjust": false})
    );
    assert_eq!(attention(&srv, &p1), None);
    // REVOKED: cancel; CLOSED: close.
    let reply = pay(&srv, &app, "WP2", "qrcode", json!({}));
    let p2 = reply.data()["orderNo"].as_str().unwrap().to_string();
    fake.set_trade_state(&p2, "REVOKED");
    assert_eq!(
        sync_pay("WP2"),
        json!({"orderStatus": "cancel", "adjust": true})
    );
    let reply = pay(&srv, &app, "WP3", "qrcode", json!({}));
    let p3 = reply.data()["orderNo"].as_str().unwrap().to_string();
    fake.close_trade(&p3);
    assert_eq!(
        sync_pay("WP3"),
        json!({"orderStatus": "close", "adjust": true})
    );
    assert_eq!(
        sync_pay("WP3"),
        json!({"orderStatus": "close", "adjust": false})
    );
    // Open at WeChat but past its expiry: closed at WeChat first, as expiry does.
    let soon = crate::helpers::time_text(2, srv.offset);
    let reply = pay(&srv, &app, "WP5", "qrcode", json!({ "expiredTime": soon }));
    let p5 = reply.data()["orderNo"].as_str().unwrap().to_string();
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        sync_pay("WP5"),
        json!({"orderStatus": "close", "adjust": true})
    );
    assert_eq!(fake.trade_state(&p5).as_deref(), Some("CLOSED"));
    // Every close of a sync is recorded as the sync's.
    for order_no in [&p2, &p3, &p5] {
        let actor: String = srv
            .db_read()
            .query_row(
                "SELECT actor FROM close_record WHERE order_no = ?1 AND closed = 1",
                [order_no],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(actor, "sync", "{order_no}");
    }
    // A query that does not verify: 20080, nothing changes.
    let reply = pay(&srv, &app, "WP4", "qrcode", json!({}));
    let p4 = reply.data()["orderNo"].as_str().unwrap().to_string();
    fake.pay_silently(&p4);
    fake.set_mode("query", Mode::Forged);
    let s = srv.post_signed(
        &app,
        "/unipay/sync/order/pay",
        json!({ "bizOrderNo": "WP4" }),
    );
    s.expect(20080, "同步失败");
    assert_eq!(srv.status(&app, "WP4"), "progress");
}

#[test]
fn syncs_keep_processing_and_abnormal_in_progress_and_store_the_refund_id() {
    let (srv, app, fake) = setup(&["--public-url", NOWHERE]);
    let order_no = paid(&srv, &app, &fake, "WS1", "3.00");
    let no = refund_no(&refund_of(&srv, &app, "WS1", 1, "1.00"));
    let refund_id = fake.refund_id(&no).unwrap();
    // PROCESSING: progress (DaxPay cannot map it in its sync).
    assert_eq!(synced(&srv, &app, "WS1-1"), ("progress".into(), false));
    let q = query(&srv, &app, "WS1-1");
    assert_eq!(
        q["outRefundNo"],
        refund_id.as_str(),
        "refund_id, never the transaction id"
    );
    assert_ne!(q["outRefundNo"], q["outOrderNo"]);
    // ABNORMAL: progress, 退款异常, flagged (DaxPay gives the money back).
    fake.settle_refund_silently(&no, "ABNORMAL");
    assert_eq!(synced(&srv, &app, "WS1-1"), ("progress".into(), false));
    assert_eq!(query(&srv, &app, "WS1-1")["errorMsg"], "退款异常");
    assert_eq!(balance(&srv, &app, "WS1"), ("refunding".into(), "2".into()));
    assert!(attention(&srv, &order_no).is_some());
    // Then CLOSED by WeChat: close, the money back once; a sync again moves nothing.
    fake.settle_refund_silently(&no, "CLOSED");
    assert_eq!(synced(&srv, &app, "WS1-1"), ("close".into(), true));
    assert_eq!(balance(&srv, &app, "WS1"), ("no_refund".into(), "3".into()));
    assert_eq!(synced(&srv, &app, "WS1-1"), ("close".into(), false));
    assert_eq!(balance(&srv, &app, "WS1"), ("no_refund".into(), "3".into()));
    assert_eq!(
        query(&srv, &app, "WS1-1")["outRefundNo"],
        refund_id.as_str()
    );
    assert_eq!(fake.bad_signatures(), 0);
}

/// WeChat's minute between two sends for one order: a refund whose send had an unknown outcome
/// (5xx, 429) or was refused and then retried is sent again — the same `out_refund_no` — only
/// when the minute is over, here by a refund sync; until then it is `progress`, never `fail`.
#[test]
fn unknown_outcomes_and_a_retried_refusal_are_sent_again_after_a_minute() {
    let merchant = Merchant::start(&[]);
    let (srv, app, fake) = setup(&["--public-url", NOWHERE, "--sweep-interval", "1h"]);
    for biz in ["WL1", "WL2", "WL3"] {
        paid(&srv, &app, &fake, biz, "1.00");
    }
    let send = |biz: &str, mode: Mode| {
        fake.set_mode("refund", mode);
        let body = json!({"bizOrderNo": biz, "bizRefundNo": format!("{biz}-1"), "amount": "1.00",
                          "notifyUrl": merchant.url});
        refund(&srv, &app, body)
    };
    let r1 = send("WL1", Mode::ServerError);
    let limited = Mode::Status(429, "FREQUENCY_LIMITED".into(), "频率限制".into());
    let r2 = send("WL2", limited);
    let why = "基本账户余额不足，请充值后重新发起";
    let r3 = send("WL3", Mode::Status(403, "NOT_ENOUGH".into(), why.into()));
    let sent = Instant::now();
    fake.set_mode("refund", Mode::Normal);
    assert_eq!(r1.data()["status"], "progress");
    assert_eq!(r2.data()["status"], "progress");
    // The refusal: fail, DaxPay's prefix, the money back, the merchant told.
    assert_eq!(r3.data()["status"], "fail");
    assert_eq!(
        r3.data()["errorMsg"],
        format!("微信退款V3失败: {why}").as_str()
    );
    assert_eq!(balance(&srv, &app, "WL3"), ("no_refund".into(), "1".into()));
    let nos = [refund_no(&r1), refund_no(&r2), refund_no(&r3)];
    let notices = wait_for("the fail notice", || {
        Some(merchant_notices(&merchant)).filter(|n| !n.is_empty())
    });
    assert_eq!(notices, [(nos[2].clone(), "fail".to_string())]);
    // Its retry reserves the money again and waits for WeChat's minute.
    let body = json!({"bizOrderNo": "WL3", "bizRefundNo": "WL3-1", "amount": "1.00"});
    let again = refund(&srv, &app, body);
    assert_eq!(again.data()["status"], "progress");
    assert_eq!(refund_no(&again), nos[2]);
    assert_eq!(balance(&srv, &app, "WL3"), ("refunding".into(), "0".into()));
    // Within the minute a sync finds nothing at WeChat and sends nothing.
    assert_eq!(synced(&srv, &app, "WL1-1"), ("progress".into(), false));
    assert_eq!(fake.calls("refund"), 3);
    for no in &nos {
        assert_eq!(fake.refund_state(no), None);
    }
    // A minute after the last send: each is sent again with its own number and succeeds.
    fake.set_refund_result("SUCCESS");
    let wait = Duration::from_secs(61).saturating_sub(sent.elapsed());
    thread::sleep(wait);
    for (biz, no) in ["WL1-1", "WL2-1", "WL3-1"].iter().zip(&nos) {
        assert_eq!(synced(&srv, &app, biz), ("success".into(), true), "{biz}");
        assert_eq!(fake.refund_state(no).as_deref(), Some("SUCCESS"));
        assert_eq!(
            fake.last_body("refund").unwrap()["out_refund_no"],
            no.as_str()
        );
    }
    assert_eq!(fake.calls("refund"), 6);
    for biz in ["WL1", "WL2", "WL3"] {
        assert_eq!(balance(&srv, &app, biz), ("refunded".into(), "0".into()));
        let order_no = srv.order(&app, biz)["orderNo"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(fake.refunds_of(&order_no), (1, 100), "{biz}");
    }
    let notices = wait_for("the success notice", || {
        Some(merchant_notices(&merchant)).filter(|n| n.len() == 4)
    });
    assert_eq!(notices.len(), 4, "{notices:?}");
    assert_eq!(fake.bad_signatures(), 0);
}
