//! Production mode: `serve --no-sandbox` turns the sandbox channel off (its payer pages are 404,
//! a pay with it is refused like an unset channel, nothing is written), and a server that takes
//! real payments with the sandbox still on says so at start.

use serde_json::json;

use crate::alipay::{set_alipay, ALIPAY_APP_ID};
use crate::fake_alipay::FakeAlipay;
use crate::helpers::{wait_for, TestServer};

const WARNING: &str = "start with --no-sandbox in production";

#[test]
fn no_sandbox_closes_the_sandbox_and_keeps_real_channels() {
    let fake = FakeAlipay::start(ALIPAY_APP_ID);
    let mut srv = TestServer::start();
    let app = srv.app("A_PROD");
    // An order paid through the sandbox before the switch.
    let old = srv.pay(&app, "OLD1");
    let old_no = old["orderNo"].as_str().unwrap().to_string();
    set_alipay(&srv, &app, &fake.url);
    srv.restart_with(&["--no-sandbox"]);
    assert_eq!(srv.get(&format!("/sandbox/cashier/{old_no}")).status, 404);
    assert_eq!(srv.sandbox_pay(&old_no).status, 404);
    let refused = srv.post_signed(
        &app,
        "/unipay/pay",
        json!({"bizOrderNo": "SBX1", "title": "t", "amount": "1.00", "channel": "sandbox",
               "method": "wap"}),
    );
    refused.expect(20023, "未找到指定的支付通道配置");
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM pay_order WHERE biz_order_no = ?1",
            "SBX1"
        ),
        0
    );
    // The order opened before can still be closed (its trade is at the sandbox).
    srv.close(&app, json!({"bizOrderNo": "OLD1"}))
        .expect(0, "success");
    // A real channel works; a prePay order waits for a pay that names one.
    let reply = srv.post_signed(
        &app,
        "/unipay/pay",
        json!({"bizOrderNo": "ALI1", "title": "t", "amount": "1.00", "channel": "ali_pay",
               "method": "qrcode"}),
    );
    reply.expect(0, "success");
    srv.pre_pay(&app, "PRE1");
    let handed = srv.post_signed(
        &app,
        "/unipay/pay",
        json!({"bizOrderNo": "PRE1", "title": "网关订单", "amount": "1.00", "channel": "ali_pay",
               "method": "qrcode"}),
    );
    handed.expect(0, "success");
    assert_eq!(srv.status(&app, "PRE1"), "progress");
    assert!(
        !srv.stderr().contains(WARNING),
        "no warning with --no-sandbox"
    );
}

#[test]
fn the_sandbox_next_to_a_real_channel_is_warned_about_at_start() {
    let fake = FakeAlipay::start(ALIPAY_APP_ID);
    let mut srv = TestServer::start();
    assert!(
        !srv.stderr().contains(WARNING),
        "no real channel: no warning"
    );
    let app = srv.app("A_WARN");
    set_alipay(&srv, &app, &fake.url);
    srv.restart();
    wait_for("the warning", || {
        srv.stderr().contains(WARNING).then_some(())
    });
    let line = srv
        .stderr()
        .lines()
        .find(|l| l.contains(WARNING))
        .unwrap()
        .to_string();
    assert!(line.contains("WARN"), "{line}");
}
