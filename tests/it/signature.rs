//! Requests signed by hand, from canonical strings written out here by the rules of spec §3
//! (not by the library's field reader): the server must accept exactly these signatures.

use serde_json::Value;
use unipay::sign::{digest, SignType};

use crate::helpers::*;
use unipay::sys::UtcOffset;

/// The canonical string of spec §3 built by hand: sorted `key=value`, `"` and `\` deleted,
/// `&key=<secret>` appended, all upper-cased.
fn canonical(pairs: &[(&str, &str)], secret: &str) -> String {
    let mut pairs = pairs.to_vec();
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let joined: String = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
        .chars()
        .filter(|c| *c != '"' && *c != '\\')
        .collect();
    format!("{joined}&key={secret}").to_uppercase()
}

/// Posts a body template where `{SIGN}` is replaced by the signature of `pairs`.
#[track_caller]
fn post_hand_signed(
    srv: &TestServer,
    app: &App,
    path: &str,
    template: &str,
    pairs: &[(&str, &str)],
) -> Reply {
    let s = canonical(pairs, &app.secret);
    let signature = digest(app.sign_type, &s, &app.secret);
    let body = template.replace("{SIGN}", &signature);
    let reply = srv.post_raw(path, body.as_bytes());
    reply.signed_by(app);
    reply
}

#[test]
fn hand_signed_requests_are_accepted() {
    let srv = TestServer::start();
    let app = srv.create_app("M_HAND", "A_HAND", &["--secret", "Se\"cr\\et9"]);
    let (m, a) = (app.mch_no.as_str(), app.app_id.as_str());
    let t = time_text(0, UtcOffset::CST);

    // pay: a decimal with a trailing zero, a title with quotes and a backslash, a Boolean
    // field, Chinese text, an unknown field and a null field (neither signed).
    let template = format!(
        r#"{{"mchNo":"{m}","appId":"{a}","reqTime":"{t}","bizOrderNo":"B_HAND_1","title":"Tea \"Earl\" \\ Grey","description":"红茶 straße","amount":1.10,"allocation":false,"channel":"sandbox","method":"wap","notifyUrl":"http://127.0.0.1:9/n?a=1&b=2","unknown":"x","attach":null,"sign":"{{SIGN}}"}}"#
    );
    #[rustfmt::skip]
    let pairs = [
        ("mchNo",       m),
        ("appId",       a),
        ("reqTime",     t.as_str()),
        ("bizOrderNo",  "B_HAND_1"),
        ("title",       r#"Tea "Earl" \ Grey"#),
        ("description", "红茶 straße"),
        ("amount",      "1.1"),
        ("allocation",  "false"),
        ("channel",     "sandbox"),
        ("method",      "wap"),
        ("notifyUrl",   "http://127.0.0.1:9/n?a=1&b=2"),
    ];
    let r = post_hand_signed(&srv, &app, "/unipay/pay", &template, &pairs);
    r.expect(0, "success");
    let o = srv.order(&app, "B_HAND_1");
    assert_eq!(o["title"], r#"Tea "Earl" \ Grey"#);
    assert_eq!(o["amount"].to_string(), "1.1");
    assert_eq!(o["allocation"], false);

    // prePay: a numeric string amount with zeros to strip.
    let template = format!(
        r#"{{"mchNo":"{m}","appId":"{a}","reqTime":"{t}","bizOrderNo":"B_HAND_2","title":"w","amount":"2.00","sign":"{{SIGN}}"}}"#
    );
    #[rustfmt::skip]
    let pairs = [
        ("mchNo",      m),
        ("appId",      a),
        ("reqTime",    t.as_str()),
        ("bizOrderNo", "B_HAND_2"),
        ("title",      "w"),
        ("amount",     "2"),
    ];
    post_hand_signed(&srv, &app, "/unipay/gateway/prePay", &template, &pairs).expect(0, "success");

    // query: an empty orderNo is signed as `orderNo=` and does not hide bizOrderNo.
    let template = format!(
        r#"{{"mchNo":"{m}","appId":"{a}","reqTime":"{t}","orderNo":"","bizOrderNo":"B_HAND_2","sign":"{{SIGN}}"}}"#
    );
    #[rustfmt::skip]
    let pairs = [
        ("mchNo",      m),
        ("appId",      a),
        ("reqTime",    t.as_str()),
        ("orderNo",    ""),
        ("bizOrderNo", "B_HAND_2"),
    ];
    let r = post_hand_signed(&srv, &app, "/unipay/query/payOrder", &template, &pairs);
    r.expect(0, "success");
    assert_eq!(r.data()["status"], "wait");
    assert_eq!(r.data()["amount"].to_string(), "2");

    // close (V8's shape): useCancel absent is signed as `useCancel=false`; nonceStr and an empty
    // outOrderNo are signed; an unknown field and a null orderNo are not.
    let template = format!(
        r#"{{"mchNo":"{m}","appId":"{a}","reqTime":"{t}","bizOrderNo":"B_HAND_1","nonceStr":"abc","outOrderNo":"","extra":"x","orderNo":null,"sign":"{{SIGN}}"}}"#
    );
    #[rustfmt::skip]
    let pairs = [
        ("mchNo",      m),
        ("appId",      a),
        ("reqTime",    t.as_str()),
        ("bizOrderNo", "B_HAND_1"),
        ("nonceStr",   "abc"),
        ("outOrderNo", ""),
        ("useCancel",  "false"),
    ];
    // Without `useCancel=false` in the canonical string, the signature is wrong.
    post_hand_signed(&srv, &app, "/unipay/close", &template, &pairs[..6]).expect(20052, "验签失败");
    post_hand_signed(&srv, &app, "/unipay/close", &template, &pairs).expect(0, "success");
    assert_eq!(srv.status(&app, "B_HAND_1"), "close");
}

/// HMAC-SHA256 keys the MAC with the secret as given, not upper-cased (spec §3 step 5).
#[test]
fn hmac_key_is_the_secret_as_given() {
    let srv = TestServer::start();
    let app = srv.create_app(
        "M_HMACK",
        "A_HMACK",
        &["--sign-type", "hmac_sha256", "--secret", "abcDEF"],
    );
    srv.pre_pay(&app, "B_K");
    let t = time_text(0, UtcOffset::CST);
    let (m, a) = (app.mch_no.as_str(), app.app_id.as_str());
    let template = format!(
        r#"{{"mchNo":"{m}","appId":"{a}","reqTime":"{t}","bizOrderNo":"B_K","useCancel":true,"sign":"{{SIGN}}"}}"#
    );
    #[rustfmt::skip]
    let pairs = [
        ("mchNo",      m),
        ("appId",      a),
        ("reqTime",    t.as_str()),
        ("bizOrderNo", "B_K"),
        ("useCancel",  "true"),
    ];
    let s = canonical(&pairs, &app.secret);
    for wrong_key in ["ABCDEF", "abcdef"] {
        let sig = digest(SignType::HmacSha256, &s, wrong_key);
        let r = srv.post_raw("/unipay/close", template.replace("{SIGN}", &sig).as_bytes());
        r.expect(20052, "验签失败").signed_by(&app);
    }
    post_hand_signed(&srv, &app, "/unipay/close", &template, &pairs).expect(0, "success");
    assert_eq!(srv.status(&app, "B_K"), "close");
}

/// The reply's `data` is signed as its raw JSON text with quotes deleted (checked here by
/// hand for the query reply, whose data holds quotes and backslashes).
#[test]
fn reply_data_is_signed_as_its_json_text() {
    let srv = TestServer::start();
    let app = srv.create_app("M_RD", "A_RD", &["--secret", "rd-secret"]);
    srv.pre_pay_with(
        &app,
        "B_RD",
        serde_json::json!({"attach": "{\"q\":\"x\\\\y\"}", "description": "说明"}),
    );
    let r = srv.post_signed(
        &app,
        "/unipay/query/payOrder",
        serde_json::json!({"bizOrderNo": "B_RD"}),
    );
    r.expect(0, "success");
    let v: &Value = r.json();
    let data = raw_data(&r.body).unwrap();
    let code = v["code"].to_string();
    #[rustfmt::skip]
    let pairs = [
        ("code",    code.as_str()),
        ("msg",     v["msg"].as_str().unwrap()),
        ("data",    data.as_str()),
        ("resTime", v["resTime"].as_str().unwrap()),
        ("traceId", v["traceId"].as_str().unwrap()),
    ];
    let want = digest(SignType::Md5, &canonical(&pairs, "rd-secret"), "rd-secret");
    assert_eq!(v["sign"].as_str().unwrap(), want, "{}", r.body);
}
