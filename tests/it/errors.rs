//! The errors of spec §5 that the endpoints can produce. Every bad request aims at one victim
//! order, which must be unchanged afterwards: a bad request changes nothing.

use serde_json::{json, Map, Value};

use crate::helpers::*;
use unipay::sign::{self, SignType};
use unipay::sys::UtcOffset;

/// Who must have signed an error reply.
enum Signer<'a> {
    /// The app named by the request is known: the reply is signed with its secret.
    App(&'a App),
    /// No app can be known: the reply is unsigned (but still has resTime and traceId).
    Nobody,
}

/// Sends `body` to `path` and checks code, message part and who signed the reply.
#[track_caller]
fn check(srv: &TestServer, path: &str, body: &[u8], code: i64, msg: &str, signer: Signer) {
    let reply = srv.post_raw(path, body);
    reply.expect(code, msg);
    match signer {
        Signer::App(app) => reply.signed_by(app),
        Signer::Nobody => reply.unsigned(),
    };
}

fn bytes(map: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(map).unwrap()
}

struct Victim {
    srv: TestServer,
    app: App,
    other: App,
    order_no: String,
    before: Value,
}

const VICTIM: &str = "B_VICTIM";

fn victim() -> Victim {
    let srv = TestServer::start();
    let app = srv.create_app("M_ERR", "A_ERR", &["--secret", "s3cret-of-A_ERR"]);
    let other = srv.create_app("M_OTHER", "A_OTHER", &["--secret", "s3cret-of-A_OTHER"]);
    let data = srv.pay(&app, VICTIM);
    srv.pay(&app, "B_DECOY");
    let before = srv.order(&app, VICTIM);
    Victim {
        order_no: data["orderNo"].as_str().unwrap().to_string(),
        srv,
        app,
        other,
        before,
    }
}

impl Victim {
    /// A correctly signed close of the victim, with `extra` fields, to be spoiled by the test.
    fn close_body(&self, extra: Value) -> Map<String, Value> {
        let mut body = json!({"bizOrderNo": VICTIM, "useCancel": true});
        merge(&mut body, extra);
        self.app.signed("/unipay/close", body)
    }

    /// The victim is exactly as it was: same order, no close record, sandbox trade still open.
    #[track_caller]
    fn unchanged(&self) {
        assert_eq!(self.srv.order(&self.app, VICTIM), self.before);
        assert_eq!(self.srv.close_records(&self.order_no), 0);
        assert_eq!(self.srv.notify_events(&self.order_no), 0);
        let trade: String = self
            .srv
            .db_read()
            .query_row(
                "SELECT state FROM sandbox_trade WHERE order_no = ?1",
                [&self.order_no],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(trade, "open");
    }
}

#[test]
fn signature_errors_change_nothing() {
    let v = victim();
    let (srv, app) = (&v.srv, &v.app);
    let path = "/unipay/close";

    // Missing, empty, wrong, of another secret.
    let mut b = v.close_body(json!({}));
    b.remove("sign");
    check(srv, path, &bytes(&b), 20052, "验签失败", Signer::App(app));
    b.insert("sign".into(), "".into());
    check(srv, path, &bytes(&b), 20052, "验签失败", Signer::App(app));
    b.insert("sign".into(), Value::Null);
    check(srv, path, &bytes(&b), 20052, "验签失败", Signer::App(app));

    let mut b = v.close_body(json!({}));
    let good = b["sign"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        &good[..good.len() - 1],
        if good.ends_with('0') { "1" } else { "0" }
    );
    b.insert("sign".into(), flipped.into());
    check(srv, path, &bytes(&b), 20052, "验签失败", Signer::App(app));
    b.insert("sign".into(), good[..16].into());
    check(srv, path, &bytes(&b), 20052, "验签失败", Signer::App(app));

    let mut b = v.close_body(json!({}));
    let foreign = request_sign(SignType::Md5, "not-the-secret", path, &b).unwrap();
    b.insert("sign".into(), foreign.into());
    check(srv, path, &bytes(&b), 20052, "验签失败", Signer::App(app));

    // Tampered after signing: the order number, useCancel, an added signed field, the time.
    let mut b = v.close_body(json!({"bizOrderNo": "B_DECOY"}));
    b.insert("bizOrderNo".into(), VICTIM.into());
    check(srv, path, &bytes(&b), 20052, "验签失败", Signer::App(app));
    let mut b = v.close_body(json!({"useCancel": false}));
    b.insert("useCancel".into(), true.into());
    check(srv, path, &bytes(&b), 20052, "验签失败", Signer::App(app));
    let mut b = v.close_body(json!({"useCancel": false}));
    b.remove("useCancel");
    b.insert("useCancel".into(), "true".into());
    check(srv, path, &bytes(&b), 20052, "验签失败", Signer::App(app));
    let mut b = v.close_body(json!({}));
    b.insert("nonceStr".into(), "added".into());
    check(srv, path, &bytes(&b), 20052, "验签失败", Signer::App(app));
    let mut b = v.close_body(json!({}));
    let sent = unipay::sys::parse_time(b["reqTime"].as_str().unwrap(), UtcOffset::CST).unwrap();
    let earlier = unipay::sys::format_time(sent - 1000, UtcOffset::CST);
    b.insert("reqTime".into(), earlier.into());
    check(srv, path, &bytes(&b), 20052, "验签失败", Signer::App(app));
    // Signed with another app's secret.
    let mut b = v.close_body(json!({}));
    v.other.sign(path, &mut b);
    check(srv, path, &bytes(&b), 20052, "验签失败", Signer::App(app));

    // Unknown fields are not signed: adding one does not break the signature, and the
    // request goes through (checked last, as it closes the victim).
    v.unchanged();
    let mut b = v.close_body(json!({}));
    b.insert("somethingElse".into(), "ignored".into());
    check(srv, path, &bytes(&b), 0, "success", Signer::App(app));
    assert_eq!(srv.status(app, VICTIM), "cancel");
}

#[test]
fn merchant_and_app_errors_change_nothing() {
    let v = victim();
    let (srv, app) = (&v.srv, &v.app);
    let path = "/unipay/close";

    let mut b = v.close_body(json!({"appId": "A_NOPE"}));
    b.insert("sign".into(), "0".repeat(32).into());
    check(
        srv,
        path,
        &bytes(&b),
        20023,
        "未找到指定的应用配置",
        Signer::Nobody,
    );
    let b = v.close_body(json!({"mchNo": "M_NOPE"}));
    check(
        srv,
        path,
        &bytes(&b),
        20023,
        "未找到指定的商户配置",
        Signer::App(app),
    );
    let b = v.close_body(json!({"mchNo": "M_NOPE", "appId": "A_NOPE"}));
    check(srv, path, &bytes(&b), 20023, "", Signer::Nobody);
    // A merchant and an app that exist but do not belong together.
    let b = v.close_body(json!({"mchNo": v.other.mch_no}));
    check(
        srv,
        path,
        &bytes(&b),
        10506,
        "验证参数错误",
        Signer::App(app),
    );
    let b = v.other.signed(
        path,
        json!({"mchNo": v.app.mch_no, "bizOrderNo": VICTIM, "useCancel": true}),
    );
    check(
        srv,
        path,
        &bytes(&b),
        10506,
        "验证参数错误",
        Signer::App(&v.other),
    );
    v.unchanged();
}

/// Runs one `UPDATE` on the server's database from outside it (as an operator would).
fn db_update(srv: &TestServer, sql: &str, param: &str) {
    let c = rusqlite::Connection::open(&srv.db).expect("open db");
    c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(c.execute(sql, [param]).unwrap(), 1, "{sql}");
}

/// Queries the victim until the reply has `code` and exactly `msg`: the server trusts a
/// merchant and app it read for 2 s, so a change made outside it shows within that time.
#[track_caller]
fn wait_for_query(v: &Victim, code: i64, msg: &str) {
    wait_for(&format!("a query answered {code} {msg}"), || {
        let r = v.srv.post_signed(
            &v.app,
            "/unipay/query/payOrder",
            json!({ "bizOrderNo": VICTIM }),
        );
        (r.code() == code && (code == 0 || r.msg() == msg)).then_some(())
    });
}

#[test]
fn a_disabled_merchant_or_app_is_20023_signed_and_changes_nothing() {
    let mut v = victim();
    let path = "/unipay/close";

    // A disabled merchant, seen by a new process (nothing remembered).
    db_update(
        &v.srv,
        "UPDATE merchant SET enabled = 0 WHERE mch_no = ?1",
        &v.app.mch_no,
    );
    v.srv.restart();
    let reply = v.srv.post_map(path, &v.close_body(json!({})));
    reply.expect(20023, "商户未启用").signed_by(&v.app);
    assert_eq!(reply.msg(), "商户未启用");

    // The merchant enabled again and the app disabled, seen by the running process once what
    // it remembers is stale (polled with queries, which change nothing).
    db_update(
        &v.srv,
        "UPDATE merchant SET enabled = 1 WHERE mch_no = ?1",
        &v.app.mch_no,
    );
    db_update(
        &v.srv,
        "UPDATE app SET enabled = 0 WHERE app_id = ?1",
        &v.app.app_id,
    );
    wait_for_query(&v, 20023, "商户应用未启用");
    let reply = v.srv.post_map(path, &v.close_body(json!({})));
    reply.expect(20023, "商户应用未启用").signed_by(&v.app);
    assert_eq!(reply.msg(), "商户应用未启用");
    // A pay of a disabled app creates nothing.
    let pay = v.app.signed(
        "/unipay/pay",
        json!({"bizOrderNo": "B_DISABLED", "title": "t", "amount": 1, "channel": "sandbox", "method": "wap"}),
    );
    let reply = v.srv.post_map("/unipay/pay", &pay);
    reply.expect(20023, "商户应用未启用").signed_by(&v.app);
    assert_eq!(
        v.srv.count(
            "SELECT count(*) FROM pay_order WHERE biz_order_no = ?1",
            "B_DISABLED"
        ),
        0
    );

    // Enabled again: the victim is exactly as it was.
    db_update(
        &v.srv,
        "UPDATE app SET enabled = 1 WHERE app_id = ?1",
        &v.app.app_id,
    );
    wait_for_query(&v, 0, "success");
    v.unchanged();
}

#[test]
fn field_errors_change_nothing() {
    let v = victim();
    let (srv, app) = (&v.srv, &v.app);
    let path = "/unipay/close";
    let spoil = |f: &dyn Fn(&mut Map<String, Value>)| {
        let mut b = v.close_body(json!({}));
        f(&mut b);
        bytes(&b)
    };

    // Missing required fields (10506).
    let b = spoil(&|b| {
        b.remove("reqTime");
    });
    check(srv, path, &b, 10506, "验证参数错误", Signer::App(app));
    let b = spoil(&|b| {
        b.insert("reqTime".into(), Value::Null);
    });
    check(srv, path, &b, 10506, "验证参数错误", Signer::App(app));
    let b = spoil(&|b| {
        b.remove("appId");
    });
    check(srv, path, &b, 10506, "验证参数错误", Signer::Nobody);
    let b = spoil(&|b| {
        b.remove("mchNo");
    });
    check(srv, path, &b, 10506, "验证参数错误", Signer::App(app));
    let b = spoil(&|b| {
        b.insert("mchNo".into(), "".into());
    });
    check(srv, path, &b, 10506, "验证参数错误", Signer::App(app));

    // Too long (10506).
    let b = spoil(&|b| {
        b.insert("bizOrderNo".into(), "B".repeat(101).into());
    });
    check(srv, path, &b, 10506, "100", Signer::App(app));
    let b = spoil(&|b| {
        b.insert("outOrderNo".into(), "O".repeat(151).into());
    });
    check(srv, path, &b, 10506, "150", Signer::App(app));
    let b = spoil(&|b| {
        b.insert("nonceStr".into(), "n".repeat(33).into());
    });
    check(srv, path, &b, 10506, "验证参数错误", Signer::App(app));
    let b = spoil(&|b| {
        b.insert("mchNo".into(), "M".repeat(33).into());
    });
    check(srv, path, &b, 10506, "验证参数错误", Signer::App(app));
    let b = spoil(&|b| {
        b.insert("appId".into(), "A".repeat(33).into());
    });
    check(srv, path, &b, 10506, "验证参数错误", Signer::Nobody);
    // A bad client IP (10506).
    let b = spoil(&|b| {
        b.insert("clientIp".into(), "300.1.1.1".into());
    });
    check(srv, path, &b, 10506, "验证参数错误", Signer::App(app));

    // Bad time format and wrong JSON types (10505).
    for bad in [
        "2025/04/10 17:02:14",
        "2025-04-10T17:02:14",
        "2025-02-30 10:00:00",
        "2025-04-10 17:02",
    ] {
        let b = spoil(&|b| {
            b.insert("reqTime".into(), bad.into());
        });
        check(srv, path, &b, 10505, "", Signer::App(app));
    }
    let b = spoil(&|b| {
        b.insert("reqTime".into(), 1744275734000i64.into());
    });
    check(srv, path, &b, 10505, "", Signer::App(app));
    let b = spoil(&|b| {
        b.insert("useCancel".into(), "yes".into());
    });
    check(srv, path, &b, 10505, "", Signer::App(app));
    let b = spoil(&|b| {
        b.insert("bizOrderNo".into(), 42.into());
    });
    check(srv, path, &b, 10505, "", Signer::App(app));

    // No order number at all: 10506 "支付订单号不能都为空".
    let b = app.signed(path, json!({"useCancel": true}));
    check(
        srv,
        path,
        &bytes(&b),
        10506,
        "支付订单号不能都为空",
        Signer::App(app),
    );
    let b = app.signed(
        path,
        json!({"orderNo": "", "bizOrderNo": "", "outOrderNo": "", "useCancel": true}),
    );
    check(
        srv,
        path,
        &bytes(&b),
        10506,
        "支付订单号不能都为空",
        Signer::App(app),
    );
    let b = app.signed(path, json!({"orderNo": null, "bizOrderNo": null}));
    check(
        srv,
        path,
        &bytes(&b),
        10506,
        "支付订单号不能都为空",
        Signer::App(app),
    );

    // Unknown order: 20041.
    let b = app.signed(path, json!({"bizOrderNo": "B_NO_SUCH"}));
    check(
        srv,
        path,
        &bytes(&b),
        20041,
        "支付订单不存在",
        Signer::App(app),
    );
    let b = app.signed(path, json!({"outOrderNo": "OUT_NO_SUCH"}));
    check(
        srv,
        path,
        &bytes(&b),
        20041,
        "支付订单不存在",
        Signer::App(app),
    );
    v.unchanged();
}

#[test]
fn body_errors_change_nothing() {
    let v = victim();
    let (srv, app) = (&v.srv, &v.app);
    let path = "/unipay/close";
    for body in [
        &b"hello"[..],
        b"{",
        b"[1,2]",
        b"\"a string\"",
        b"null",
        b"{\"bizOrderNo\":\"B_VICTIM\",}",
        b"\xff\xfe{}",
    ] {
        check(srv, path, body, 10505, "", Signer::Nobody);
    }
    // Empty bodies.
    check(srv, path, b"", 10505, "", Signer::Nobody);
    check(srv, path, b"  \r\n ", 10505, "", Signer::Nobody);

    // A body over 64 KiB: refused with a JSON error envelope, nothing read into the order.
    let mut b = v.close_body(json!({}));
    b.insert("padding".into(), "x".repeat(70 * 1024).into());
    let reply = srv.post_raw(path, &bytes(&b));
    assert_eq!(reply.status, 413, "{}", reply.body);
    reply.envelope();
    assert_ne!(reply.code(), 0, "{}", reply.body);
    // Just under the limit is read normally (and the unknown field ignored).
    let mut b = v.close_body(json!({"bizOrderNo": "B_DECOY"}));
    let base = bytes(&b).len();
    b.insert("padding".into(), "x".repeat(64 * 1024 - base - 20).into());
    assert!(bytes(&b).len() <= 64 * 1024);
    srv.post_raw(path, &bytes(&b))
        .expect(0, "success")
        .signed_by(app);
    v.unchanged();
}

#[test]
fn unknown_path_is_404_and_wrong_method_is_405() {
    let v = victim();
    let srv = &v.srv;
    for path in [
        "/unipay/close",
        "/unipay/pay",
        "/unipay/query/payOrder",
        "/unipay/gateway/prePay",
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 405, "GET {path}: {}", r.body);
        r.envelope();
        assert_ne!(r.code(), 0);
    }
    let b = bytes(&v.close_body(json!({})));
    let r = srv.request("PUT", "/unipay/close", &b);
    assert_eq!(r.status, 405, "{}", r.body);
    let r = srv.request("DELETE", "/unipay/close", &b);
    assert_eq!(r.status, 405, "{}", r.body);
    for path in ["/unipay/nope", "/unipay", "/unipay/refunds", "/api/close"] {
        let r = srv.post_raw(path, &b);
        assert_eq!(r.status, 404, "POST {path}: {}", r.body);
        r.envelope();
        assert_eq!(r.code(), 10404, "{}", r.body);
        assert!(r.msg().contains("页面或资源不存在"), "{}", r.body);
    }
    assert_eq!(srv.get("/nowhere").status, 404);
    // The sandbox pages: the cashier is read with GET, the payment is a POST.
    let r = srv.get(&format!("/sandbox/pay/{}", v.order_no));
    assert_eq!(r.status, 405, "{}", r.body);
    let r = srv.post_raw(&format!("/sandbox/cashier/{}", v.order_no), b"");
    assert_eq!(r.status, 405, "{}", r.body);
    // A query string does not change the route.
    let b = v
        .app
        .signed("/unipay/query/payOrder", json!({"bizOrderNo": VICTIM}));
    srv.post_map("/unipay/query/payOrder?from=sdk", &b)
        .expect(0, "success")
        .signed_by(&v.app);
    v.unchanged();
}

#[test]
fn closing_an_already_closed_order_is_20044() {
    let v = victim();
    let (srv, app) = (&v.srv, &v.app);
    srv.close(app, json!({"bizOrderNo": VICTIM}))
        .expect(0, "success");
    for body in [
        json!({"bizOrderNo": VICTIM}),
        json!({"bizOrderNo": VICTIM, "useCancel": true}),
        json!({"orderNo": v.order_no}),
    ] {
        srv.close(app, body)
            .expect(20044, "订单不是支付中, 无法进行关闭订单");
    }
    assert_eq!(srv.status(app, VICTIM), "close");
    assert_eq!(srv.successful_close_records(&v.order_no), 1);
    assert_eq!(srv.notify_events(&v.order_no), 0, "no notify URL set");
}

/// Every sign type works with a correct signature and refuses an md5 one (sm3 is real SM3).
#[test]
fn sm3_and_hmac_sha256_apps() {
    let srv = TestServer::start();
    for (app_id, sign_type) in [("A_SM3", SignType::Sm3), ("A_HMAC", SignType::HmacSha256)] {
        let app = srv.create_app(
            &format!("M_{app_id}"),
            app_id,
            &["--sign-type", sign_type.as_str(), "--secret", "123456"],
        );
        assert_eq!(app.sign_type, sign_type);
        // Correct signature: pay, query and close all go through, replies signed the same way.
        srv.pay(&app, "B_ST");
        srv.pre_pay(&app, "B_ST_W");
        let path = "/unipay/close";
        // An md5 signature (what DaxPay's server computes for sm3 apps) is refused.
        let mut b = app.fill(json!({"bizOrderNo": "B_ST"}));
        let md5 = request_sign(SignType::Md5, "123456", path, &b).unwrap();
        b.insert("sign".into(), md5.into());
        srv.post_map(path, &b)
            .expect(20052, "验签失败")
            .signed_by(&app);
        assert_eq!(srv.status(&app, "B_ST"), "progress");
        srv.close(&app, json!({"bizOrderNo": "B_ST"}))
            .expect(0, "success");
        srv.close(&app, json!({"bizOrderNo": "B_ST_W"}))
            .expect(0, "success");
        assert_eq!(srv.status(&app, "B_ST"), "close");
    }
}

/// The seed's request signed as SM3 and HMAC-SHA256 (spec vectors V2, V3) is accepted by apps
/// of those types.
#[test]
fn seed_request_with_v2_and_v3_signatures() {
    #[rustfmt::skip]
    let cases = [
        ("hmac_sha256", "79c614ad380fa37365b8d8eb41fee336643480c08846c2ab207a11f9f6065eb4"),
        ("sm3",         "1dc99761a8374e10375119f7fb34789c6ee94f9957bf3734e8dee391180aab2b"),
    ];
    for (sign_type, signature) in cases {
        let srv = TestServer::start();
        let app = srv.create_app(
            "M1723635576766",
            "M8207639754663343",
            &[
                "--secret",
                "123456",
                "--sign-type",
                sign_type,
                "--req-timeout",
                "0",
            ],
        );
        srv.pay(&app, "SDK_1721807811589");
        let body =
            crate::close::SEED_REQUEST.replace("71cb5cc7c575651ad0bef8fb3348aeb7", signature);
        srv.post_raw("/unipay/close", body.as_bytes())
            .expect(0, "success")
            .signed_by(&app);
        assert_eq!(srv.status(&app, "SDK_1721807811589"), "cancel");
    }
}

#[test]
fn upper_case_signature_is_accepted() {
    let srv = TestServer::start();
    let app = srv.app("A_UPPER");
    srv.pay(&app, "B_UPPER");
    let mut b = app.signed("/unipay/close", json!({"bizOrderNo": "B_UPPER"}));
    let upper = b["sign"].as_str().unwrap().to_uppercase();
    b.insert("sign".into(), upper.into());
    srv.post_map("/unipay/close", &b)
        .expect(0, "success")
        .signed_by(&app);
    assert_eq!(srv.status(&app, "B_UPPER"), "close");
}

#[test]
fn app_without_request_signing_accepts_unsigned_requests() {
    let srv = TestServer::start();
    let app = srv.create_app("M_NOSIGN", "A_NOSIGN", &["--no-req-sign"]);
    let b = app.fill(json!({
        "bizOrderNo": "B_NS", "title": "t", "amount": 0.01, "channel": "sandbox", "method": "wap"
    }));
    srv.post_map("/unipay/pay", &b)
        .expect(0, "success")
        .signed_by(&app);
    let b = app.fill(json!({"bizOrderNo": "B_NS"}));
    srv.post_map("/unipay/close", &b)
        .expect(0, "success")
        .signed_by(&app);
    assert_eq!(srv.status(&app, "B_NS"), "close");
    // The reply signature really depends on the secret.
    let r = srv.post_map(
        "/unipay/query/payOrder",
        &app.fill(json!({"bizOrderNo": "B_NS"})),
    );
    let v = r.json();
    let wrong = sign::sign(
        SignType::Md5,
        &[
            ("code", "0"),
            ("msg", v["msg"].as_str().unwrap()),
            ("resTime", v["resTime"].as_str().unwrap()),
            ("traceId", v["traceId"].as_str().unwrap()),
        ],
        "other",
    );
    assert_ne!(v["sign"].as_str().unwrap(), wrong);
}

/// Spec §2's check order: fields → merchant and app → signature → request-time window.
#[test]
fn checks_run_in_the_spec_order() {
    let srv = TestServer::start();
    let app = srv.create_app("M_ORDER", "A_ORDER", &["--req-timeout", "30"]);
    srv.pay(&app, "B_ORDER");
    let path = "/unipay/close";
    let stale = time_text(-3600, UtcOffset::CST);
    // A bad field and an unknown app: the field is reported.
    let mut b = app.fill(json!({"bizOrderNo": "B".repeat(101), "appId": "A_NOPE"}));
    b.insert("sign".into(), "bad".into());
    check(
        &srv,
        path,
        &bytes(&b),
        10506,
        "验证参数错误",
        Signer::Nobody,
    );
    // An unknown merchant and a bad signature: the merchant is reported.
    let mut b = app.fill(json!({"bizOrderNo": "B_ORDER", "mchNo": "M_NOPE"}));
    b.insert("sign".into(), "bad".into());
    check(
        &srv,
        path,
        &bytes(&b),
        20023,
        "未找到指定的商户配置",
        Signer::App(&app),
    );
    // A bad signature and a stale time: the signature is reported.
    let mut b = app.fill(json!({"bizOrderNo": "B_ORDER", "reqTime": stale}));
    b.insert("sign".into(), "bad".into());
    check(&srv, path, &bytes(&b), 20052, "验签失败", Signer::App(&app));
    // Correctly signed but stale: the window.
    let b = app.signed(path, json!({"bizOrderNo": "B_ORDER", "reqTime": stale}));
    check(
        &srv,
        path,
        &bytes(&b),
        10506,
        "请求已过期，请重新发送！",
        Signer::App(&app),
    );
    // A sign longer than 64 characters is a field error, before any signature check.
    let mut b = app.fill(json!({"bizOrderNo": "B_ORDER"}));
    b.insert("sign".into(), "a".repeat(65).into());
    check(
        &srv,
        path,
        &bytes(&b),
        10506,
        "验证参数错误",
        Signer::App(&app),
    );
    assert_eq!(srv.status(&app, "B_ORDER"), "progress");
}

/// Replies are JSON, and their trace id is written in the log line of the request.
#[test]
fn replies_are_json_and_trace_ids_are_logged() {
    let srv = TestServer::start();
    let app = srv.app("A_TRACE");
    let ok = srv.pay(&app, "B_TRACE");
    let replies = [
        srv.close(&app, json!({"bizOrderNo": "B_NOPE"})),
        srv.post_raw("/unipay/close", b"not json"),
        srv.post_raw("/unipay/nowhere", b"{}"),
        srv.get("/unipay/close"),
        srv.sandbox_pay(ok["orderNo"].as_str().unwrap()),
    ];
    for r in &replies {
        let ct = r.header("content-type").unwrap_or("");
        assert!(ct.starts_with("application/json"), "{ct}: {}", r.body);
        r.envelope();
    }
    let traces: Vec<&str> = replies
        .iter()
        .map(|r| r.json()["traceId"].as_str().unwrap())
        .collect();
    let mut unique = traces.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), traces.len(), "trace ids differ: {traces:?}");
    wait_for("every trace id in the log", || {
        let log = srv.stderr();
        traces.iter().all(|t| log.contains(t)).then_some(())
    });
}

#[test]
fn ipv6_client_ip_is_accepted_and_recorded() {
    let srv = TestServer::start();
    let app = srv.app("A_IPV6");
    let o = srv.pay(&app, "B_IPV6");
    srv.close(
        &app,
        json!({"bizOrderNo": "B_IPV6", "clientIp": "2001:db8::1"}),
    )
    .expect(0, "success");
    let ip: String = srv
        .db_read()
        .query_row(
            "SELECT client_ip FROM close_record WHERE order_no = ?1",
            [o["orderNo"].as_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ip, "2001:db8::1");
}
