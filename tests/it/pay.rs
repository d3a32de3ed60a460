//! `/unipay/pay`, `/unipay/gateway/prePay` and the sandbox channel's payer side.

use serde_json::json;

use crate::helpers::*;
use unipay::sys::UtcOffset;

#[test]
fn pay_reply_data_is_pay_result_in_order() {
    let srv = TestServer::start();
    let app = srv.app("A_PAYDATA");
    let reply = srv.post_signed(
        &app,
        "/unipay/pay",
        json!({"bizOrderNo": "B_PD", "title": "t", "amount": 1.10, "channel": "sandbox", "method": "wap"}),
    );
    reply.expect(0, "success");
    let raw = raw_data(&reply.body).unwrap();
    let keys: Vec<&str> = reply
        .data()
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys.len(), 4, "{raw}");
    let order_no = reply.data()["orderNo"].as_str().unwrap();
    // Field order as the SDK declares PayResult: bizOrderNo, orderNo, status, payBody.
    let pos = |k: &str| raw.find(&format!("\"{k}\":")).unwrap();
    assert!(pos("bizOrderNo") < pos("orderNo") && pos("orderNo") < pos("status"));
    assert!(pos("status") < pos("payBody"), "{raw}");
    // Order numbers look like P + yyyyMMddHHmmss + a sequence.
    assert!(
        order_no.starts_with('P')
            && order_no.len() > 15
            && order_no[1..].bytes().all(|b| b.is_ascii_digit()),
        "{order_no}"
    );
    let o = srv.order(&app, "B_PD");
    assert_eq!(o["amount"].to_string(), "1.1", "{o}");
    assert_eq!(o["channel"], "sandbox");
    assert_eq!(o["method"], "wap");
}

#[test]
fn sandbox_cashier_page_shows_the_order() {
    let srv = TestServer::start();
    let app = srv.app("A_CASHIER");
    let data = srv.pay(&app, "B_CASHIER");
    let order_no = data["orderNo"].as_str().unwrap();
    let pay_body = data["payBody"].as_str().unwrap();
    assert_eq!(
        pay_body,
        format!("{}/sandbox/cashier/{order_no}", srv.base_url())
    );
    let page = srv.get(url_path(pay_body));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.header("content-type")
            .unwrap_or("")
            .contains("text/html"),
        "{:?}",
        page.headers
    );
    assert!(page.body.contains(order_no), "{}", page.body);
    let button = |html: &str| {
        let at = html.find("<button").expect("a Pay button");
        html[at..at + html[at..].find('>').unwrap()].to_string()
    };
    assert!(
        !button(&page.body).contains("disabled"),
        "an open order can be paid"
    );
    srv.sandbox_pay(order_no).expect(0, "success");
    let paid = srv.get(url_path(pay_body));
    assert!(
        paid.body.contains("disabled"),
        "a paid order cannot be paid again"
    );
    // Merchant text is escaped on the page.
    let evil = srv.pay_with(
        &app,
        "B_EVIL",
        json!({"title": "<script>alert('x')</script>"}),
    );
    let page = srv.get(url_path(evil["payBody"].as_str().unwrap()));
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;"), "{}", page.body);
    // An unknown order has no cashier page.
    assert_eq!(srv.get("/sandbox/cashier/P_NOPE").status, 404);
}

#[test]
fn sandbox_pay_makes_the_order_success_once() {
    let srv = TestServer::start();
    let app = srv.app("A_SBX");
    let data = srv.pay_with(&app, "B_SBX", json!({"notifyUrl": "http://127.0.0.1:9/n"}));
    let order_no = data["orderNo"].as_str().unwrap();
    let before = now_ms() - 1000;
    srv.sandbox_pay(order_no)
        .expect(0, "success")
        .signed_by(&app);
    let o = srv.order(&app, "B_SBX");
    assert_eq!(o["status"], "success", "{o}");
    let pay_time = o["payTime"].as_str().expect("payTime set");
    let paid_ms = unipay::sys::parse_time(pay_time, UtcOffset::CST).unwrap();
    assert!(
        paid_ms >= before - 1000 && paid_ms <= now_ms() + 1000,
        "{o}"
    );
    assert!(
        o["outOrderNo"].is_string(),
        "the channel's trade number: {o}"
    );
    assert_eq!(srv.notify_events(order_no), 1, "success is notified");

    // Paying again is refused; closing a paid order is refused; nothing changes.
    srv.sandbox_pay(order_no).expect(20044, "");
    srv.close(&app, json!({"bizOrderNo": "B_SBX", "useCancel": true}))
        .expect(20044, "");
    srv.close(&app, json!({"orderNo": order_no}))
        .expect(20044, "");
    let after = srv.order(&app, "B_SBX");
    assert_eq!(after, o, "a refused request changes nothing");
    assert_eq!(srv.successful_close_records(order_no), 0);
    assert_eq!(srv.notify_events(order_no), 1);
}

#[test]
fn sandbox_refuses_closed_cancelled_and_unknown_orders() {
    let srv = TestServer::start();
    let app = srv.app("A_SBX_REF");
    let closed = srv.pay(&app, "B_CLOSED");
    let cancelled = srv.pay(&app, "B_CANCELLED");
    let waiting = srv.pre_pay(&app, "B_WAITCLOSED");
    srv.close(&app, json!({"bizOrderNo": "B_CLOSED"}))
        .expect(0, "success");
    srv.close(
        &app,
        json!({"bizOrderNo": "B_CANCELLED", "useCancel": true}),
    )
    .expect(0, "success");
    srv.close(&app, json!({"bizOrderNo": "B_WAITCLOSED"}))
        .expect(0, "success");
    #[rustfmt::skip]
    let cases = [
        ("B_CLOSED",     closed["orderNo"].as_str().unwrap(),    "close"),
        ("B_CANCELLED",  cancelled["orderNo"].as_str().unwrap(), "cancel"),
        ("B_WAITCLOSED", waiting.as_str(),                       "close"),
    ];
    for (biz, order_no, status) in cases {
        let before = srv.order(&app, biz);
        srv.sandbox_pay(order_no).expect(20044, "");
        let after = srv.order(&app, biz);
        assert_eq!(after["status"], status);
        assert_eq!(after, before, "a refused payment changes nothing");
        assert!(after.get("payTime").is_none(), "{after}");
    }
    let r = srv.sandbox_pay("P_NO_SUCH_ORDER");
    r.expect(20041, "支付订单不存在");
}

/// A `wait` order (prePay) can be paid at the sandbox cashier too, and then not closed.
#[test]
fn pre_pay_order_paid_at_the_cashier_cannot_be_closed() {
    let srv = TestServer::start();
    let app = srv.app("A_PRE_PAID");
    let order_no = srv.pre_pay(&app, "B_PRE_PAID");
    srv.sandbox_pay(&order_no).expect(0, "success");
    srv.close(&app, json!({"bizOrderNo": "B_PRE_PAID"}))
        .expect(20044, "");
    let o = srv.order(&app, "B_PRE_PAID");
    assert_eq!(o["status"], "success", "{o}");
    assert!(o.get("closeTime").is_none(), "{o}");
}

#[test]
fn prepay_reply_is_a_cashier_url_and_the_order_waits() {
    let srv = TestServer::start();
    let app = srv.app("A_PREPAY");
    let reply = srv.post_signed(
        &app,
        "/unipay/gateway/prePay",
        json!({"bizOrderNo": "B_PRE", "title": "网关", "amount": 12.5}),
    );
    reply.expect(0, "success");
    let url = reply.data()["url"].as_str().expect("url");
    let o = srv.order(&app, "B_PRE");
    assert_eq!(o["status"], "wait");
    assert_eq!(o["amount"].to_string(), "12.5");
    assert!(url.ends_with(o["orderNo"].as_str().unwrap()), "{url}");
    assert_eq!(srv.get(url_path(url)).status, 200);
}

#[test]
fn repeated_pay_is_idempotent_while_open() {
    let srv = TestServer::start();
    let app = srv.app("A_IDEM");
    let first = srv.pay(&app, "B_IDEM");
    let again = srv.pay(&app, "B_IDEM");
    assert_eq!(first["orderNo"], again["orderNo"]);
    assert_eq!(first["payBody"], again["payBody"]);
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM pay_order WHERE biz_order_no = ?1",
            "B_IDEM"
        ),
        1
    );
}

#[test]
fn repeated_pay_after_paid_or_closed_is_refused() {
    let srv = TestServer::start();
    let app = srv.app("A_REPAY");
    let paid = srv.pay(&app, "B_PAID");
    srv.sandbox_pay(paid["orderNo"].as_str().unwrap())
        .expect(0, "success");
    srv.pay(&app, "B_SHUT");
    srv.close(&app, json!({"bizOrderNo": "B_SHUT"}))
        .expect(0, "success");
    let body = |biz: &str| json!({"bizOrderNo": biz, "title": "t", "amount": 0.01, "channel": "sandbox", "method": "wap"});
    srv.post_signed(&app, "/unipay/pay", body("B_PAID"))
        .expect(20044, "已经支付成功，请勿重新支付");
    srv.post_signed(&app, "/unipay/pay", body("B_SHUT"))
        .expect(20044, "该订单支付失败或已经被关闭");
    assert_eq!(srv.status(&app, "B_PAID"), "success");
    assert_eq!(srv.status(&app, "B_SHUT"), "close");
}

#[test]
fn pay_validates_its_fields() {
    let srv = TestServer::start();
    let app = srv.create_app("M_PAYV", "A_PAYV", &["--limit-amount", "100"]);
    let pay = |extra: serde_json::Value| {
        let mut body = json!({"bizOrderNo": "B_V", "title": "t", "amount": 1, "channel": "sandbox", "method": "wap"});
        merge(&mut body, extra);
        srv.post_signed(&app, "/unipay/pay", body)
    };
    pay(json!({"channel": "nosuch"})).expect(20011, "不存在的支付通道");
    pay(json!({"amount": 100.01})).expect(20060, "支付金额超过限额");
    pay(json!({"amount": "100.01"})).expect(20060, "支付金额超过限额");
    pay(json!({"expiredTime": time_text(-600, UtcOffset::CST)})).expect(10506, "");
    pay(json!({"amount": 0.001})).expect(10506, "");
    pay(json!({"amount": 0})).expect(10506, "");
    pay(json!({"method": "telepathy"})).expect(10506, "");
    pay(json!({"title": "x".repeat(101)})).expect(10506, "");
    // Every other limit of spec §8, one past it.
    for (field, label, len) in [
        ("description", "支付描述", 501),
        ("notifyUrl", "异步通知地址", 201),
        ("returnUrl", "同步通知URL", 201),
        ("attach", "商户扩展参数", 501),
        ("extraParam", "支付扩展参数", 2049),
    ] {
        let value = if field.ends_with("Url") {
            format!(
                "http://m.example/{}",
                "x".repeat(len - "http://m.example/".len())
            )
        } else {
            "x".repeat(len)
        };
        assert_eq!(value.chars().count(), len);
        let reply = pay(json!({ field: value }));
        reply.expect(10506, &format!("{label}不可超过{}位", len - 1));
    }
    pay(json!({"amount": "abc"})).expect(10505, "");
    pay(json!({"expiredTime": "tomorrow"})).expect(10505, "");
    // None of these created an order.
    assert_eq!(
        srv.count("SELECT count(*) FROM pay_order WHERE app_id = ?1", "A_PAYV"),
        0
    );
    // At the limit, with a future expiry, it goes through.
    let expired = time_text(3600, UtcOffset::CST);
    pay(json!({"amount": 100, "expiredTime": expired})).expect(0, "success");
    let o = srv.order(&app, "B_V");
    assert_eq!(o["expiredTime"], expired.as_str());
    assert_eq!(o["status"], "progress");
}

#[test]
fn pre_pay_over_the_limit_is_refused() {
    let srv = TestServer::start();
    let app = srv.create_app("M_PRELIM", "A_PRELIM", &["--limit-amount", "5"]);
    srv.post_signed(
        &app,
        "/unipay/gateway/prePay",
        json!({"bizOrderNo": "B_L", "title": "t", "amount": 5.01}),
    )
    .expect(20060, "支付金额超过限额");
}

#[test]
fn expired_time_defaults_to_the_app_order_timeout() {
    let srv = TestServer::start();
    let default = srv.app("A_EXP30");
    let short = srv.create_app("M_EXP5", "A_EXP5", &["--order-timeout", "5"]);
    for (app, minutes) in [(&default, 30), (&short, 5)] {
        let before = now_ms();
        srv.pay(app, "B_EXP");
        srv.pre_pay(app, "B_EXP_W");
        let after = now_ms();
        for biz in ["B_EXP", "B_EXP_W"] {
            let o = srv.order(app, biz);
            let expires =
                unipay::sys::parse_time(o["expiredTime"].as_str().unwrap(), UtcOffset::CST)
                    .unwrap();
            let (lo, hi) = (before + minutes * 60_000 - 1000, after + minutes * 60_000);
            assert!(
                (lo..=hi).contains(&expires),
                "{biz} of {}: expiredTime {} is not now + {minutes} min",
                app.app_id,
                o["expiredTime"]
            );
        }
    }
}

#[test]
fn amount_bounds() {
    let srv = TestServer::start();
    let app = srv.app("A_BOUNDS");
    let pay = |biz: &str, amount: serde_json::Value| {
        srv.post_signed(
            &app,
            "/unipay/pay",
            json!({"bizOrderNo": biz, "title": "t", "amount": amount, "channel": "sandbox", "method": "wap"}),
        )
    };
    pay("B_MIN", json!(0.01)).expect(0, "success");
    pay("B_MAX", json!(99999999.99)).expect(0, "success");
    pay("B_STR", json!("99999999.99")).expect(0, "success");
    pay("B_OVER", json!(100000000)).expect(10506, "");
    pay("B_NEG", json!(-1)).expect(10506, "");
    pay("B_BOOL", json!(true)).expect(10505, "");
    assert_eq!(
        srv.order(&app, "B_MAX")["amount"].to_string(),
        "99999999.99"
    );
    for biz in ["B_OVER", "B_NEG", "B_BOOL"] {
        srv.post_signed(&app, "/unipay/query/payOrder", json!({ "bizOrderNo": biz }))
            .expect(20041, "");
    }
}

#[test]
fn pay_requires_its_fields() {
    let srv = TestServer::start();
    let app = srv.app("A_REQ");
    let full = json!({"bizOrderNo": "B_REQ", "title": "t", "amount": 1, "channel": "sandbox", "method": "wap"});
    for field in ["bizOrderNo", "title", "amount", "channel", "method"] {
        let mut body = full.clone();
        body.as_object_mut().unwrap().remove(field);
        srv.post_signed(&app, "/unipay/pay", body)
            .expect(10506, "验证参数错误");
        let mut body = full.clone();
        merge(&mut body, json!({ field: null }));
        srv.post_signed(&app, "/unipay/pay", body)
            .expect(10506, "验证参数错误");
    }
    srv.post_signed(
        &app,
        "/unipay/query/payOrder",
        json!({"bizOrderNo": "B_REQ"}),
    )
    .expect(20041, "");
}

/// Many pays of one bizOrderNo at once create one order; every reply names it.
#[test]
fn concurrent_pays_of_one_biz_order_no_create_one_order() {
    let srv = TestServer::start();
    let app = srv.app("A_PAYRACE");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let body = serde_json::to_vec(&app.signed(
                "/unipay/pay",
                json!({"bizOrderNo": "B_PR", "title": "t", "amount": 1, "channel": "sandbox", "method": "wap"}),
            ))
            .unwrap();
            let (addr, barrier) = (srv.addr.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                http(&addr, "POST", "/unipay/pay", &body)
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for h in handles {
        let r = h.join().unwrap();
        r.expect(0, "success").signed_by(&app);
        numbers.push(r.data()["orderNo"].as_str().unwrap().to_string());
    }
    numbers.dedup();
    assert_eq!(numbers.len(), 1, "{numbers:?}");
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM pay_order WHERE app_id = ?1",
            "A_PAYRACE"
        ),
        1
    );
}

/// The sandbox refuses to take money for an order past its expiredTime.
#[test]
fn sandbox_refuses_an_expired_order() {
    let srv = TestServer::start();
    let app = srv.app("A_SBX_EXP");
    let expires = time_text(2, UtcOffset::CST);
    let data = srv.pay_with(&app, "B_SBX_EXP", json!({ "expiredTime": expires }));
    let expires_ms = unipay::sys::parse_time(&expires, UtcOffset::CST).unwrap();
    wait_for("the order's expiry", || {
        (now_ms() > expires_ms + 200).then_some(())
    });
    srv.sandbox_pay(data["orderNo"].as_str().unwrap())
        .expect(20044, "");
    let o = srv.order(&app, "B_SBX_EXP");
    assert_ne!(o["status"], "success", "{o}");
    assert!(o.get("payTime").is_none(), "{o}");
}
