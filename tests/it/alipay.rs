//! The Alipay channel (`ali_pay`) against a fake Alipay gateway (`fake_alipay`): its settings
//! (`channel set|list|disable`), paying by QR code and by page URL, Alipay's notifications
//! (verified, checked, applied once, refused when forged or wrong), a payment that arrives after
//! a close, the sweeper, the console, and no key or signature in the logs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fake_alipay::{FakeAlipay, Mode};
use crate::helpers::{http_with, run_cli, temp_dir, wait_for, App, TestServer};
use unipay::channel::alipay::sign::request_content;
use unipay::channel::keys::PublicKey;
use unipay::form;

pub const ALIPAY_APP_ID: &str = "2021000122671080";
const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/alipay");
const ADMIN: &str = "alipay-admin-token-1";

pub fn fixture(name: &str) -> String {
    format!("{FIX}/{name}")
}

/// `unipay channel set … ali_pay` with the test keys and the fake's gateway.
#[track_caller]
pub fn set_alipay(srv: &TestServer, app: &App, gateway: &str) {
    let db = srv.db.to_str().unwrap();
    let key = fixture("app-private-key.pem");
    let public = fixture("gateway-public-key.pem");
    let out = run_cli(&[
        "channel",
        "set",
        "--db",
        db,
        "--app-id",
        &app.app_id,
        "ali_pay",
        "--alipay-app-id",
        ALIPAY_APP_ID,
        "--private-key-file",
        &key,
        "--alipay-public-key-file",
        &public,
        "--gateway",
        gateway,
    ]);
    assert!(
        out.status.success(),
        "channel set: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server (1 s channel timeout, console token), an app with `ali_pay` set, and the fake.
pub fn setup(extra: &[&str]) -> (TestServer, App, FakeAlipay) {
    let fake = FakeAlipay::start(ALIPAY_APP_ID);
    let mut args = vec!["--channel-timeout", "1s", "--admin-token", ADMIN];
    args.extend_from_slice(extra);
    let srv = TestServer::start_with(&args);
    let app = srv.app("A_ALI");
    set_alipay(&srv, &app, &fake.url);
    (srv, app, fake)
}

/// `/unipay/pay` with `ali_pay`; the whole reply.
pub fn pay(srv: &TestServer, app: &App, biz: &str, method: &str) -> crate::helpers::Reply {
    srv.post_signed(
        app,
        "/unipay/pay",
        json!({"bizOrderNo": biz, "title": "支付宝订单", "amount": "12.50",
               "channel": "ali_pay", "method": method}),
    )
}

/// A QR-code order at the fake; its order number and QR code.
pub fn qr_order(srv: &TestServer, app: &App, biz: &str) -> (String, String) {
    let reply = pay(srv, app, biz, "qrcode");
    reply.expect(0, "success");
    let data = reply.data();
    assert_eq!(data["status"], "progress", "{}", reply.body);
    (
        data["orderNo"].as_str().unwrap().to_string(),
        data["payBody"].as_str().unwrap().to_string(),
    )
}

pub fn the_url() -> String {
    "http://127.0.0.1:9".to_string()
}

#[test]
fn channel_set_checks_keys_and_list_never_prints_a_private_key() {
    let srv = TestServer::start();
    let app = srv.app("A_KEYS");
    let db = srv.db.to_str().unwrap();
    let set = |key: &str, public: &str| {
        run_cli(&[
            "channel",
            "set",
            "--db",
            db,
            "--app-id",
            &app.app_id,
            "ali_pay",
            "--alipay-app-id",
            ALIPAY_APP_ID,
            "--private-key-file",
            key,
            "--alipay-public-key-file",
            public,
        ])
    };
    let public = fixture("gateway-public-key.pem");
    // A 1024-bit key, a text that is no key, a public key where the private one goes, a
    // missing file: refused with exit code 2 and a reason.
    let garbage = temp_dir("garbage").join("k.pem");
    std::fs::write(&garbage, "not a key\n").unwrap();
    for (key, public, says) in [
        (fixture("weak-1024.pem"), public.clone(), "1024 bits"),
        (
            garbage.to_str().unwrap().to_string(),
            public.clone(),
            "--private-key-file",
        ),
        (
            fixture("app-public-key.pem"),
            public.clone(),
            "--private-key-file",
        ),
        (
            fixture("app-private-key.pem"),
            fixture("app-private-key.pem"),
            "--alipay-public-key-file",
        ),
        (
            "/nonexistent/key.pem".to_string(),
            public.clone(),
            "cannot read",
        ),
    ] {
        let out = set(&key, &public);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(says), "{key}: {err}");
    }
    // Every form Alipay's key tool writes: PKCS#1 and PKCS#8, one line, bare base64.
    let bare = temp_dir("bare").join("k.txt");
    let text = std::fs::read_to_string(fixture("app-private-key-pkcs8.pem")).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    std::fs::write(&bare, &body).unwrap();
    for key in [
        fixture("app-private-key.pem"),
        fixture("app-private-key-pkcs8.pem"),
        bare.to_str().unwrap().into(),
    ] {
        let out = set(&key, &fixture("alipay_stable_rsa2_public_key.pem"));
        assert!(
            out.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // No app: refused.
    let out = run_cli(&[
        "channel",
        "set",
        "--db",
        db,
        "--app-id",
        "NO_SUCH_APP",
        "ali_pay",
        "--alipay-app-id",
        ALIPAY_APP_ID,
        "--private-key-file",
        &fixture("app-private-key.pem"),
        "--alipay-public-key-file",
        &public,
    ]);
    assert_eq!(out.status.code(), Some(2));
    // `list` shows the settings, never the private key; `disable` keeps them, switched off.
    let list = || {
        let out = run_cli(&["channel", "list", "--db", db, "--app-id", &app.app_id]);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let text = list();
    let line: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["channel"], "ali_pay");
    assert_eq!(line["enabled"], true);
    assert_eq!(line["alipayAppId"], ALIPAY_APP_ID);
    assert_eq!(line["gateway"], "https://openapi.alipay.com/gateway.do");
    for chunk in body.as_bytes().chunks(24).take(60) {
        let chunk = std::str::from_utf8(chunk).unwrap();
        assert!(
            !text.contains(chunk),
            "channel list shows key material: {text}"
        );
    }
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
    let line: Value = serde_json::from_str(list().trim()).unwrap();
    assert_eq!(line["enabled"], false);
}

#[test]
fn pay_needs_the_channel_set_and_enabled_and_a_method_it_has() {
    let fake = FakeAlipay::start(ALIPAY_APP_ID);
    let srv = TestServer::start();
    let app = srv.app("A_NOCFG");
    let count = || {
        srv.count(
            "SELECT count(*) FROM pay_order WHERE app_id = ?1",
            &app.app_id,
        )
    };
    pay(&srv, &app, "B1", "qrcode").expect(20023, "未找到指定的支付通道配置");
    set_alipay(&srv, &app, &fake.url);
    for method in ["barcode", "app", "jsapi"] {
        pay(&srv, &app, "B2", method).expect(20030, "ali_pay");
    }
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
    // The server sees the change within its settings cache time (asked with a method it does
    // not take, so that nothing is written while it still sees the channel enabled).
    wait_for("the disabled channel", || {
        (pay(&srv, &app, "B3", "barcode").code() == 20021).then_some(())
    });
    pay(&srv, &app, "B3", "qrcode").expect(20021, "支付通道未启用");
    assert_eq!(count(), 0, "nothing was written");
    assert_eq!(fake.calls("alipay.trade.precreate"), 0);
    set_alipay(&srv, &app, &fake.url);
    wait_for("the channel set again", || {
        (pay(&srv, &app, "B4", "barcode").code() == 20030).then_some(())
    });
    pay(&srv, &app, "B4", "qrcode").expect(0, "success");
}

#[test]
fn a_qr_code_is_precreated_once_and_a_verified_notice_pays_the_order() {
    let (srv, app, fake) = setup(&[]);
    let (order_no, qr) = qr_order(&srv, &app, "QR1");
    assert!(qr.starts_with("https://qr.alipay.com/"), "{qr}");
    let p = fake.last_params("alipay.trade.precreate").unwrap();
    let get = |k: &str| form::get(&p, k).unwrap_or("").to_string();
    assert_eq!(get("app_id"), ALIPAY_APP_ID);
    assert_eq!(get("sign_type"), "RSA2");
    assert_eq!(
        get("notify_url"),
        format!("{}/callback/ali_pay/A_ALI", srv.base_url())
    );
    let biz: Value = serde_json::from_str(&get("biz_content")).unwrap();
    assert_eq!(biz["out_trade_no"], order_no.as_str());
    assert_eq!(biz["total_amount"], "12.50");
    assert_eq!(biz["subject"], "支付宝订单");
    let order = srv.order(&app, "QR1");
    let expires = order["expiredTime"].as_str().unwrap();
    assert_eq!(biz["time_expire"], expires, "the order's expiry in UTC+8");
    assert_eq!(fake.bad_signatures(), 0);
    // A repeated pay hands out the same QR code without a second call.
    let again = pay(&srv, &app, "QR1", "qrcode");
    again.expect(0, "success");
    assert_eq!(again.data()["payBody"], qr.as_str());
    assert_eq!(fake.calls("alipay.trade.precreate"), 1);

    let trade_no = fake.pay(&order_no);
    wait_for("the notice to be applied", || {
        (srv.status(&app, "QR1") == "success").then_some(())
    });
    let order = srv.order(&app, "QR1");
    assert_eq!(order["outOrderNo"], trade_no.as_str());
    assert!(order["payTime"].is_string(), "{order}");
    assert_eq!(order["refundableBalance"].to_string(), "12.5");
    wait_for("the answer to the notice", || {
        fake.notifications(&order_no).first().cloned()
    });
    assert_eq!(
        fake.notifications(&order_no)[0],
        (200, "success".to_string())
    );
    // A repeat of the same notice is answered `success` and changes nothing.
    let (status, body) = FakeAlipay::post_notice(&notice_url(&srv), &fake.notice_params(&order_no));
    assert_eq!((status, body.as_str()), (200, "success"));
    assert_eq!(srv.notify_events(&order_no), 0, "no notifyUrl: no event");
    assert_eq!(srv.status(&app, "QR1"), "success");
}

pub fn notice_url(srv: &TestServer) -> String {
    format!("{}/callback/ali_pay/A_ALI", srv.base_url())
}

#[test]
fn wap_and_web_pay_are_signed_gateway_urls() {
    let (srv, app, fake) = setup(&[]);
    let app_public =
        PublicKey::parse(&std::fs::read_to_string(fixture("app-public-key.pem")).unwrap()).unwrap();
    for (method, alipay_method, product) in [
        ("wap", "alipay.trade.wap.pay", "QUICK_WAP_WAY"),
        ("web", "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
    ] {
        let reply = pay(&srv, &app, &format!("PAGE_{method}"), method);
        reply.expect(0, "success");
        let url = reply.data()["payBody"].as_str().unwrap().to_string();
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, fake.url);
        let params = form::parse(query);
        let get = |k: &str| form::get(&params, k).unwrap_or("").to_string();
        assert_eq!(get("method"), alipay_method);
        let biz: Value = serde_json::from_str(&get("biz_content")).unwrap();
        assert_eq!(biz["product_code"], product);
        assert_eq!(biz["out_trade_no"], reply.data()["orderNo"]);
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert!(
            app_public.verify_b64(request_content(&pairs).as_bytes(), &get("sign")),
            "{url}"
        );
        // The payer's browser at Alipay: the fake takes the URL as Alipay would.
        let r = ureq::get(&url).call().unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(fake.bad_signatures(), 0);
    assert_eq!(
        fake.calls("alipay.trade.precreate"),
        0,
        "no server call for a page"
    );
}

#[test]
fn notices_that_are_forged_tampered_or_for_another_app_are_refused() {
    let (srv, app, fake) = setup(&["--public-url", &the_url()]);
    let (order_no, _) = qr_order(&srv, &app, "N1");
    fake.pay(&order_no); // its own notice goes to a dead address
    let good = fake.notice_params(&order_no);
    let url = notice_url(&srv);
    let with = |changes: &[(&str, &str)], resign: bool| {
        let mut p: Vec<(String, String)> = good
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
            .cloned()
            .collect();
        for (k, v) in changes {
            p.push((k.to_string(), v.to_string()));
        }
        if resign {
            p.retain(|(k, _)| k != "sign");
            let sign = fake.sign_notice(&p);
            p.push(("sign".into(), sign));
        }
        p
    };
    let refused = |p: Vec<(String, String)>, why: &str| {
        let (status, body) = FakeAlipay::post_notice(&url, &p);
        assert_ne!(body, "success", "{why}");
        assert_eq!(status, 400, "{why}");
        assert_eq!(srv.status(&app, "N1"), "progress", "{why}");
    };
    refused(with(&[("total_amount", "12.51")], false), "tampered amount");
    refused(with(&[("sign", "AAAA")], false), "forged signature");
    refused(
        with(&[("total_amount", "0.01")], true),
        "validly signed, wrong amount",
    );
    refused(
        with(&[("app_id", "2021000000000001")], true),
        "validly signed, another Alipay app",
    );
    refused(
        with(&[("out_trade_no", "P00000000000000000001")], true),
        "validly signed, not our order",
    );
    refused(
        good.iter().filter(|(k, _)| k != "sign").cloned().collect(),
        "unsigned",
    );
    // Signed by another key (the app's own key, say): refused.
    let other = unipay::channel::keys::PrivateKey::parse(
        &std::fs::read_to_string(fixture("app-private-key.pem")).unwrap(),
    )
    .unwrap();
    let mut p = with(&[], false);
    p.retain(|(k, _)| k != "sign");
    let content = unipay::channel::alipay::sign::notice_contents(&p)[0].clone();
    p.push(("sign".into(), other.sign_b64(content.as_bytes())));
    refused(p, "signed by another key");
    // Another app's path: its settings do not verify this app's notice.
    let (status, _) = FakeAlipay::post_notice(
        &format!("{}/callback/ali_pay/NO_APP", srv.base_url()),
        &good,
    );
    assert_eq!(status, 400);
    assert!(srv.stderr().contains("refused"), "each refusal is logged");
    // A refund notice is not a payment.
    let refund = with(
        &[
            ("refund_fee", "12.50"),
            ("gmt_refund", "2026-12-05 10:00:00"),
        ],
        true,
    );
    let (status, body) = FakeAlipay::post_notice(&url, &refund);
    assert_eq!((status, body.as_str()), (200, "success"));
    assert_eq!(srv.status(&app, "N1"), "progress");
    // The real one pays.
    let (status, body) = FakeAlipay::post_notice(&url, &good);
    assert_eq!((status, body.as_str()), (200, "success"));
    assert_eq!(srv.status(&app, "N1"), "success");
}

#[test]
fn a_payment_after_a_close_wins_is_flagged_and_notified() {
    let merchant = crate::notify::Merchant::start(&[]);
    let (srv, app, fake) = setup(&[]);
    let reply = srv.post_signed(
        &app,
        "/unipay/pay",
        json!({"bizOrderNo": "LATE1", "title": "t", "amount": "12.50", "channel": "ali_pay",
               "method": "qrcode", "notifyUrl": merchant.url}),
    );
    reply.expect(0, "success");
    let order_no = reply.data()["orderNo"].as_str().unwrap().to_string();
    // Nobody scanned it yet: Alipay has no trade, the close is local.
    srv.close(&app, json!({"bizOrderNo": "LATE1"}))
        .expect(0, "success");
    assert_eq!(srv.status(&app, "LATE1"), "close");
    assert_eq!(fake.calls("alipay.trade.close"), 1);
    // Then the QR code is scanned and paid before its time_expire.
    let trade_no = fake.pay(&order_no);
    wait_for("the late payment", || {
        (srv.status(&app, "LATE1") == "success").then_some(())
    });
    assert_eq!(srv.order(&app, "LATE1")["outOrderNo"], trade_no.as_str());
    // The merchant heard of the close, then of the money.
    let statuses = wait_for("two notifications", || {
        let got: Vec<String> = merchant
            .received()
            .iter()
            .map(|n| {
                let v: Value = serde_json::from_str(&n.body).unwrap();
                v["data"]["status"].as_str().unwrap_or("").to_string()
            })
            .collect();
        (got.len() >= 2).then_some(got)
    });
    assert_eq!(statuses, vec!["close", "success"]);
    // An operator is asked to look at it.
    let out = run_cli(&["order", "attention", "--db", srv.db.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let line: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["orderNo"], order_no.as_str());
    assert_eq!(line["status"], "success");
    assert_eq!(line["outOrderNo"], trade_no.as_str());
    let page = http_with(
        &srv.addr,
        "GET",
        &format!("/admin/orders/{order_no}"),
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        b"",
    );
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("ali_pay") && page.body.contains(&trade_no),
        "{}",
        page.body
    );
}

#[test]
fn the_sweeper_asks_alipay_before_it_closes_an_expired_order() {
    let (srv, app, fake) = setup(&["--sweep-interval", "200ms", "--public-url", &the_url()]);
    let expire_soon = |biz: &str| {
        let reply = srv.post_signed(
            &app,
            "/unipay/pay",
            json!({"bizOrderNo": biz, "title": "t", "amount": "1.00", "channel": "ali_pay",
                   "method": "qrcode", "expiredTime": crate::helpers::time_text(2, srv.offset)}),
        );
        reply.expect(0, "success");
        reply.data()["orderNo"].as_str().unwrap().to_string()
    };
    let paid = expire_soon("SW_PAID");
    let unpaid = expire_soon("SW_OPEN");
    fake.pay(&paid); // the notice is lost
    fake.scan(&unpaid);
    wait_for("the sweep", || {
        (srv.status(&app, "SW_PAID") == "success" && srv.status(&app, "SW_OPEN") == "close")
            .then_some(())
    });
    assert_eq!(fake.trade_status(&unpaid).as_deref(), Some("TRADE_CLOSED"));
    assert!(fake.calls("alipay.trade.query") >= 2);
}

#[test]
fn no_key_signature_or_notice_reaches_the_log() {
    let fake = FakeAlipay::start(ALIPAY_APP_ID);
    let srv = TestServer::start_with_env(&["--channel-timeout", "1s"], &[("RUST_LOG", "trace")]);
    let app = srv.app("A_ALI");
    set_alipay(&srv, &app, &fake.url);
    let (order_no, _) = qr_order(&srv, &app, "LOG1");
    fake.pay(&order_no);
    wait_for("the payment", || {
        (srv.status(&app, "LOG1") == "success").then_some(())
    });
    fake.set_mode("alipay.trade.query", Mode::ForgedSign);
    let notice = fake.notice_params(&order_no);
    let log = srv.stderr();
    let key = std::fs::read_to_string(fixture("app-private-key.pem")).unwrap();
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for chunk in key_body.as_bytes().chunks(32).take(40) {
        assert!(
            !log.contains(std::str::from_utf8(chunk).unwrap()),
            "key material in the log"
        );
    }
    let sign = form::get(&notice, "sign").unwrap();
    for text in [sign.to_string(), form::encode(sign)] {
        assert!(
            !log.contains(&text[..40]),
            "a notice's signature in the log"
        );
    }
    assert!(!log.contains("fund_bill_list"), "a notice body in the log");
    let p = fake.last_params("alipay.trade.precreate").unwrap();
    let request_sign = form::get(&p, "sign").unwrap();
    for text in [request_sign.to_string(), form::encode(request_sign)] {
        assert!(
            !log.contains(&text[..40]),
            "a request's signature in the log"
        );
    }
    assert!(!log.contains("biz_content="), "a signing string in the log");
}

#[test]
fn a_gateway_that_hangs_costs_one_timeout_and_no_thread() {
    let (srv, app, fake) = setup(&[]);
    let pid = srv.pid().unwrap();
    let threads = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Threads:")
                    .map(|n| n.trim().parse::<u64>().unwrap())
            })
            .unwrap()
    };
    let (order_no, _) = qr_order(&srv, &app, "HANG1");
    fake.scan(&order_no);
    let before = threads();
    fake.set_mode("alipay.trade.precreate", Mode::Hang);
    fake.set_mode("alipay.trade.close", Mode::Hang);
    for i in 0..4 {
        let t0 = Instant::now();
        let reply = pay(&srv, &app, &format!("HANG_P{i}"), "qrcode");
        reply.expect(20080, "支付失败");
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    }
    let t0 = Instant::now();
    srv.close(&app, json!({"bizOrderNo": "HANG1"}))
        .expect(20080, "关闭订单失败");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(srv.status(&app, "HANG1"), "progress");
    wait_for("the request threads to end", || {
        (threads() <= before + 1).then_some(())
    });
}
