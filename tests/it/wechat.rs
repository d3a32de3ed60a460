//! The WeChat Pay channel (`wechat_pay`, API v3) against a fake WeChat Pay (`fake_wechat`): its
//! settings, the three pay methods, every close answer of channels.md §B6 and cancel refused,
//! replies that do not verify (unknown outcomes), notifications verified, decrypted, checked
//! and applied once, a payment after a close, and no key in the logs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fake_wechat::{self, FakeWechat, Mode, APIV3_KEY, APPID, MCHID, PAYER_OPENID};
use crate::helpers::{run_cli, temp_dir, wait_for, App, Reply, TestServer};
use unipay::channel::keys::PublicKey;

/// A dead address for the fake's notices: a payment at WeChat stays unknown to unipay until
/// unipay asks.
pub const NOWHERE: &str = "http://127.0.0.1:9";

pub fn set_wechat(srv: &TestServer, app: &App, fake: &FakeWechat) {
    let args = fake.channel_set_args(&srv.dir);
    let mut all = vec![
        "channel",
        "set",
        "--db",
        srv.db.to_str().unwrap(),
        "--app-id",
        &app.app_id,
    ];
    all.extend(args.iter().map(String::as_str));
    let out = run_cli(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn setup(extra: &[&str]) -> (TestServer, App, FakeWechat) {
    let fake = FakeWechat::start();
    let mut args = vec!["--channel-timeout", "1s"];
    args.extend_from_slice(extra);
    let srv = TestServer::start_with(&args);
    let app = srv.app("A_WX");
    set_wechat(&srv, &app, &fake);
    (srv, app, fake)
}

pub fn pay(srv: &TestServer, app: &App, biz: &str, method: &str, extra: Value) -> Reply {
    let mut body = json!({"bizOrderNo": biz, "title": "微信订单", "amount": "0.01",
                          "channel": "wechat_pay", "method": method, "attach": "a=1"});
    crate::helpers::merge(&mut body, extra);
    srv.post_signed(app, "/unipay/pay", body)
}

pub fn native(srv: &TestServer, app: &App, biz: &str) -> String {
    let reply = pay(srv, app, biz, "qrcode", json!({}));
    reply.expect(0, "success");
    reply.data()["orderNo"].as_str().unwrap().to_string()
}

fn close(srv: &TestServer, app: &App, biz: &str, cancel: bool) -> Reply {
    srv.close(app, json!({"bizOrderNo": biz, "useCancel": cancel}))
}

fn intents(srv: &TestServer) -> i64 {
    srv.db_read()
        .query_row("SELECT count(*) FROM close_intent", [], |r| r.get(0))
        .unwrap()
}

pub fn notice_url(srv: &TestServer) -> String {
    format!("{}/callback/wechat_pay/A_WX", srv.base_url())
}

#[test]
fn channel_set_checks_keys_and_the_apiv3_key() {
    let fake = FakeWechat::start();
    let srv = TestServer::start();
    let app = srv.app("A_WXKEYS");
    let db = srv.db.to_str().unwrap().to_string();
    let base = fake.channel_set_args(&srv.dir);
    let run = |changes: &[(&str, &str)]| {
        let mut args: Vec<String> = base.clone();
        for (flag, value) in changes {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1] = value.to_string();
        }
        let mut all = vec!["channel", "set", "--db", &db, "--app-id", &app.app_id];
        all.extend(args.iter().map(String::as_str));
        run_cli(&all)
    };
    let short = temp_dir("wxkey").join("short.key");
    std::fs::write(&short, "0123456789abcdef012345").unwrap();
    let weak = format!(
        "{}/tests/fixtures/alipay/weak-1024.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let merchant_public = fake_wechat::fixture_path("merchant-public-key.pem");
    for (changes, says) in [
        (vec![("--apiv3-key-file", short.to_str().unwrap())], "32"),
        (vec![("--private-key-file", weak.as_str())], "1024 bits"),
        (
            vec![("--private-key-file", merchant_public.as_str())],
            "--private-key-file",
        ),
        (
            vec![("--platform-public-key-file", weak.as_str())],
            "--platform-public-key-file",
        ),
    ] {
        let out = run(&changes);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{changes:?}: {err}");
        assert!(err.contains(says), "{changes:?}: {err}");
    }
    assert!(run(&[]).status.success());
    // WeChat Pay's platform certificate works in place of its public key.
    let cert = fake_wechat::fixture_path("wechatpay-go-platform-cert.pem");
    assert!(run(&[("--platform-public-key-file", cert.as_str())])
        .status
        .success());
    let out = run_cli(&["channel", "list", "--db", &db]);
    let text = String::from_utf8(out.stdout).unwrap();
    let line: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["channel"], "wechat_pay");
    assert_eq!(line["mchid"], MCHID);
    assert_eq!(line["wxAppid"], APPID);
    assert!(
        !text.contains(APIV3_KEY) && !text.contains("PRIVATE"),
        "{text}"
    );
    let key =
        std::fs::read_to_string(fake_wechat::fixture_path("merchant-private-key.pem")).unwrap();
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for chunk in body.as_bytes().chunks(24).take(60) {
        assert!(!text.contains(std::str::from_utf8(chunk).unwrap()));
    }
    let out = run_cli(&[
        "channel",
        "disable",
        "--db",
        &db,
        "--app-id",
        &app.app_id,
        "wechat_pay",
    ]);
    assert!(out.status.success());
    let reply = wait_for("the disabled channel", || {
        let r = pay(&srv, &app, "WXD", "barcode", json!({}));
        (r.code() == 20021).then_some(r)
    });
    reply.expect(20021, "支付通道未启用");
}

#[test]
fn the_three_pay_methods_and_their_requests() {
    let (srv, app, fake) = setup(&[]);
    // Native: the code URL.
    let reply = pay(&srv, &app, "WX_QR", "qrcode", json!({}));
    reply.expect(0, "success");
    assert!(reply.data()["payBody"]
        .as_str()
        .unwrap()
        .starts_with("weixin://wxpay/bizpayurl"));
    let body = fake.last_body("native").unwrap();
    let order = srv.order(&app, "WX_QR");
    assert_eq!(body["out_trade_no"], order["orderNo"]);
    assert_eq!(body["amount"], json!({"total": 1, "currency": "CNY"}));
    assert_eq!(body["mchid"], MCHID);
    assert_eq!(body["appid"], APPID);
    assert_eq!(body["description"], "微信订单");
    assert_eq!(body["attach"], "a=1");
    assert_eq!(
        body["notify_url"],
        format!("{}/callback/wechat_pay/A_WX", srv.base_url())
    );
    let expires = order["expiredTime"].as_str().unwrap().replace(' ', "T") + "+08:00";
    assert_eq!(body["time_expire"], expires.as_str());
    // A repeated pay gives the same code URL without a second call.
    let again = pay(&srv, &app, "WX_QR", "qrcode", json!({}));
    assert_eq!(again.data()["payBody"], reply.data()["payBody"]);
    assert_eq!(fake.calls("native"), 1);

    // JSAPI: needs openId; the signed parameters of wx.requestPayment.
    pay(&srv, &app, "WX_JS0", "jsapi", json!({})).expect(10506, "openId");
    let reply = pay(
        &srv,
        &app,
        "WX_JS",
        "jsapi",
        json!({"openId": PAYER_OPENID}),
    );
    reply.expect(0, "success");
    assert_eq!(
        fake.last_body("jsapi").unwrap()["payer"]["openid"],
        PAYER_OPENID
    );
    let params: Value = serde_json::from_str(reply.data()["payBody"].as_str().unwrap()).unwrap();
    assert_eq!(params["appId"], APPID);
    assert_eq!(params["signType"], "RSA");
    let package = params["package"].as_str().unwrap();
    assert!(package.starts_with("prepay_id=wx"), "{params}");
    let message = format!(
        "{}\n{}\n{}\n{}\n",
        APPID,
        params["timeStamp"].as_str().unwrap(),
        params["nonceStr"].as_str().unwrap(),
        package
    );
    let merchant = PublicKey::parse(
        &std::fs::read_to_string(fake_wechat::fixture_path("merchant-public-key.pem")).unwrap(),
    )
    .unwrap();
    assert!(merchant.verify_b64(message.as_bytes(), params["paySign"].as_str().unwrap()));

    // H5: needs the payer's IP.
    pay(&srv, &app, "WX_H50", "wap", json!({})).expect(10506, "clientIp");
    let reply = pay(
        &srv,
        &app,
        "WX_H5",
        "wap",
        json!({"clientIp": "203.0.113.7"}),
    );
    reply.expect(0, "success");
    assert!(reply.data()["payBody"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    let scene = &fake.last_body("h5").unwrap()["scene_info"];
    assert_eq!(scene["payer_client_ip"], "203.0.113.7");
    assert_eq!(scene["h5_info"]["type"], "Wap");

    // Any other method: 20030, nothing written.
    for method in ["barcode", "web", "app"] {
        pay(&srv, &app, "WX_OTHER", method, json!({})).expect(20030, "wechat_pay");
    }
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM pay_order WHERE biz_order_no = ?1",
            "WX_OTHER"
        ),
        0
    );
    assert_eq!(fake.bad_signatures(), 0);
}

#[test]
fn replies_that_do_not_verify_fail_the_pay_and_are_never_a_success() {
    let (srv, app, fake) = setup(&[]);
    for (i, mode) in [
        Mode::Unsigned,
        Mode::Forged,
        Mode::Probe,
        Mode::Stale,
        Mode::WrongSerial,
        Mode::ServerError,
        Mode::Hang,
    ]
    .into_iter()
    .enumerate()
    {
        fake.set_mode("native", mode.clone());
        let t0 = Instant::now();
        let reply = pay(&srv, &app, &format!("WX_BAD{i}"), "qrcode", json!({}));
        reply.expect(20080, "支付失败");
        assert!(!reply.msg().contains("关闭"), "{mode:?}: {}", reply.msg());
        assert!(reply.data().is_null(), "{mode:?}: no payBody");
        assert!(t0.elapsed() < Duration::from_secs(3), "{mode:?}");
        assert_eq!(srv.status(&app, &format!("WX_BAD{i}")), "fail", "{mode:?}");
    }
}

#[test]
fn every_close_answer_and_cancel_refused() {
    let (srv, app, fake) = setup(&["--public-url", NOWHERE]);
    // 204: closed.
    let open = native(&srv, &app, "CL_OPEN");
    close(&srv, &app, "CL_OPEN", false).expect(0, "success");
    assert_eq!(srv.status(&app, "CL_OPEN"), "close");
    assert_eq!(fake.trade_state(&open).as_deref(), Some("CLOSED"));
    // Already closed at WeChat: ORDER_CLOSED, closed.
    let closed = native(&srv, &app, "CL_CLOSED");
    fake.close_trade(&closed);
    close(&srv, &app, "CL_CLOSED", false).expect(0, "success");
    // WeChat has no such order: closed locally.
    native(&srv, &app, "CL_NONE");
    fake.set_mode(
        "close",
        Mode::Status(404, "ORDER_NOT_EXIST".into(), "订单不存在".into()),
    );
    close(&srv, &app, "CL_NONE", false).expect(0, "success");
    fake.set_mode("close", Mode::Normal);
    // Paid (its notice lost): a "paid" refusal, then the query finds the money.
    let paid = native(&srv, &app, "CL_PAID");
    let tx = fake.pay_silently(&paid);
    close(&srv, &app, "CL_PAID", false).expect(20044, "已支付");
    assert_eq!(srv.status(&app, "CL_PAID"), "success");
    assert_eq!(srv.order(&app, "CL_PAID")["outOrderNo"], tx.as_str());
    // Any other refusal while unpaid (NOTPAY): 20080, still open, no intent left.
    native(&srv, &app, "CL_RULE");
    fake.set_mode(
        "close",
        Mode::Status(403, "RULE_LIMIT".into(), "业务规则限制".into()),
    );
    close(&srv, &app, "CL_RULE", false).expect(20080, "NOTPAY");
    assert_eq!(srv.status(&app, "CL_RULE"), "progress");
    assert_eq!(intents(&srv), 0);
    // An unsigned "already closed" is not trusted: the query says NOTPAY.
    fake.set_mode(
        "close",
        Mode::UnsignedStatus(400, "ORDER_CLOSED".into(), "订单已关闭".into()),
    );
    close(&srv, &app, "CL_RULE", false).expect(20080, "NOTPAY");
    assert_eq!(srv.status(&app, "CL_RULE"), "progress");
    // 5xx, unsigned, forged, probe, stale, hanging: unknown; the intent stays.
    for (biz, mode) in [
        ("CL_5XX", Mode::ServerError),
        ("CL_UNSIGNED", Mode::Unsigned),
        ("CL_FORGED", Mode::Forged),
        ("CL_PROBE", Mode::Probe),
        ("CL_STALE", Mode::Stale),
        ("CL_HANG", Mode::Hang),
    ] {
        native(&srv, &app, biz);
        fake.set_mode("close", mode.clone());
        let t0 = Instant::now();
        close(&srv, &app, biz, false).expect(20080, "关闭订单失败");
        assert!(t0.elapsed() < Duration::from_secs(3), "{biz}");
        assert_eq!(srv.status(&app, biz), "progress", "{biz}");
        close(&srv, &app, biz, false).expect(20043, "关闭中");
    }
    fake.set_mode("close", Mode::Normal);
    // Cancel: WeChat can only reverse 付款码 orders: 20030, nothing asked, nothing recorded.
    let calls = fake.calls("close");
    native(&srv, &app, "CL_CANCEL");
    close(&srv, &app, "CL_CANCEL", true).expect(20030, "wechat_pay");
    assert_eq!(fake.calls("close"), calls);
    assert_eq!(
        srv.close_records(
            &srv.order(&app, "CL_CANCEL")["orderNo"]
                .as_str()
                .unwrap()
                .to_string()
        ),
        0
    );
    assert_eq!(srv.status(&app, "CL_CANCEL"), "progress");
    assert_eq!(fake.bad_signatures(), 0);
}

#[test]
fn unknown_closes_are_settled_by_the_query_at_start() {
    let (mut srv, app, fake) = setup(&["--public-url", NOWHERE]);
    let a = native(&srv, &app, "RC_CLOSED");
    let b = native(&srv, &app, "RC_PAID");
    native(&srv, &app, "RC_OPEN");
    fake.set_mode(
        "close",
        Mode::Status(500, "SYSTEM_ERROR".into(), "系统错误".into()),
    );
    for biz in ["RC_CLOSED", "RC_PAID", "RC_OPEN"] {
        close(&srv, &app, biz, false).expect(20080, "关闭订单失败");
    }
    fake.set_mode("close", Mode::Normal);
    fake.close_trade(&a);
    fake.pay_silently(&b);
    srv.restart();
    assert_eq!(srv.status(&app, "RC_CLOSED"), "close");
    assert_eq!(srv.status(&app, "RC_PAID"), "success");
    assert_eq!(srv.status(&app, "RC_OPEN"), "progress");
    assert_eq!(intents(&srv), 0);
}

#[test]
fn notifications_are_verified_decrypted_checked_and_applied_once() {
    let (srv, app, fake) = setup(&[]);
    let order_no = native(&srv, &app, "NT1");
    fake.pay(&order_no);
    wait_for("the notice", || {
        (srv.status(&app, "NT1") == "success").then_some(())
    });
    let attempts = wait_for("the answer", || {
        fake.notifications(&order_no).first().cloned()
    });
    assert_eq!(attempts.0, 204);
    // A repeat is 204 and changes nothing.
    let (headers, body) = fake.notification_for(&order_no);
    assert_eq!(
        FakeWechat::post_notification(&notice_url(&srv), &headers, &body).0,
        204
    );

    // Refusals on a second order that is paid at WeChat but not yet at unipay.
    let (srv2, app2, fake2) = setup(&["--public-url", NOWHERE]);
    let url = format!("{}/callback/wechat_pay/A_WX", srv2.base_url());
    let order_no = native(&srv2, &app2, "NT2");
    fake2.pay(&order_no);
    let (headers, body) = fake2.notification_for(&order_no);
    let refused = |headers: &[(String, String)], body: &[u8], why: &str| {
        let (status, text) = FakeWechat::post_notification(&url, headers, body);
        assert!((400..600).contains(&status), "{why}: {status}");
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(v["code"], "FAIL", "{why}: {text}");
        assert_eq!(srv2.status(&app2, "NT2"), "progress", "{why}");
    };
    let mut changed = body.clone();
    let i = changed.iter().position(|b| *b == b'"').unwrap() + 1;
    changed[i] ^= 1;
    refused(&headers, &changed, "a changed byte");
    let set = |name: &str, value: &str| -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(k, v)| match k.eq_ignore_ascii_case(name) {
                true => (k.clone(), value.to_string()),
                false => (k.clone(), v.clone()),
            })
            .collect()
    };
    let signature = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Wechatpay-Signature"))
        .unwrap()
        .1
        .clone();
    refused(
        &set(
            "Wechatpay-Signature",
            &format!("WECHATPAY/SIGNTEST/{signature}"),
        ),
        &body,
        "a probe",
    );
    refused(
        &set(
            "Wechatpay-Serial",
            "PUB_KEY_ID_0000000000000000000000000000",
        ),
        &body,
        "another key id",
    );
    let old = (crate::helpers::now_ms() / 1000 - 600).to_string();
    refused(&set("Wechatpay-Timestamp", &old), &body, "stale");
    // Validly signed, but the resource does not decrypt (tag, AAD) or says something else.
    let v: Value = serde_json::from_slice(&body).unwrap();
    let tx = transaction_of(&fake2, &v);
    let with_resource = |resource: Value| {
        let mut v = v.clone();
        v["resource"] = resource;
        let body = v.to_string().into_bytes();
        (fake2.sign_notification(&body), body)
    };
    let mut bad_tag = fake2.encrypt_resource(&tx.to_string(), "transaction");
    let ct = bad_tag["ciphertext"].as_str().unwrap().to_string();
    let mut bytes = unipay::channel::keys::unb64(&ct).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    bad_tag["ciphertext"] = json!(unipay::channel::keys::b64(&bytes));
    let (h, b) = with_resource(bad_tag);
    refused(&h, &b, "a wrong GCM tag");
    let mut wrong_aad = fake2.encrypt_resource(&tx.to_string(), "transaction");
    wrong_aad["associated_data"] = json!("certificate");
    let (h, b) = with_resource(wrong_aad);
    refused(&h, &b, "a wrong AAD");
    for (field, value, why) in [
        ("mchid", json!("1900000099"), "another mchid"),
        ("appid", json!("wx0000000000000099"), "another appid"),
        (
            "out_trade_no",
            json!("P0000000000000000099"),
            "not our order",
        ),
    ] {
        let mut other = tx.clone();
        other[field] = value;
        let (h, b) = with_resource(fake2.encrypt_resource(&other.to_string(), "transaction"));
        refused(&h, &b, why);
    }
    let mut other = tx.clone();
    other["amount"]["total"] = json!(2);
    let (h, b) = with_resource(fake2.encrypt_resource(&other.to_string(), "transaction"));
    refused(&h, &b, "a wrong amount");
    // The real one is applied.
    assert_eq!(FakeWechat::post_notification(&url, &headers, &body).0, 204);
    assert_eq!(srv2.status(&app2, "NT2"), "success");
}

/// The transaction inside a notice the fake made.
fn transaction_of(_fake: &FakeWechat, notice: &Value) -> Value {
    let r = &notice["resource"];
    let ct = unipay::channel::keys::unb64(r["ciphertext"].as_str().unwrap()).unwrap();
    let plain = unipay::channel::keys::aes_gcm_open(
        APIV3_KEY.as_bytes(),
        r["nonce"].as_str().unwrap().as_bytes(),
        r["associated_data"].as_str().unwrap().as_bytes(),
        &ct,
    )
    .unwrap();
    serde_json::from_slice(&plain).unwrap()
}

#[test]
fn a_payment_after_a_local_close_wins_and_no_key_reaches_the_log() {
    let fake = FakeWechat::start();
    let srv = TestServer::start_with_env(&["--channel-timeout", "1s"], &[("RUST_LOG", "trace")]);
    let app = srv.app("A_WX");
    set_wechat(&srv, &app, &fake);
    let order_no = native(&srv, &app, "LATE_WX");
    // WeChat says it has no such order: closed locally.
    fake.set_mode(
        "close",
        Mode::Status(404, "ORDER_NOT_EXIST".into(), "订单不存在".into()),
    );
    close(&srv, &app, "LATE_WX", false).expect(0, "success");
    fake.set_mode("close", Mode::Normal);
    // Yet the payer pays it.
    fake.pay(&order_no);
    wait_for("the late payment", || {
        (srv.status(&app, "LATE_WX") == "success").then_some(())
    });
    let out = run_cli(&["order", "attention", "--db", srv.db.to_str().unwrap()]);
    assert!(String::from_utf8(out.stdout).unwrap().contains(&order_no));
    // Nothing secret in a trace-level log.
    let log = srv.stderr();
    assert!(!log.contains(APIV3_KEY), "the APIv3 key in the log");
    let key =
        std::fs::read_to_string(fake_wechat::fixture_path("merchant-private-key.pem")).unwrap();
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for chunk in body.as_bytes().chunks(32).take(40) {
        assert!(
            !log.contains(std::str::from_utf8(chunk).unwrap()),
            "key material in the log"
        );
    }
    assert!(!log.contains("ciphertext"), "a notice body in the log");
    assert!(
        !log.contains("transaction_id"),
        "a decrypted resource in the log"
    );
    assert!(
        !log.contains("WECHATPAY2-SHA256-RSA2048 mchid"),
        "an Authorization header in the log"
    );
}
