//! Secrets never reach the log: with `RUST_LOG=trace`, neither the server nor the command line
//! logs an app's secret or a signing string, and `Debug` output redacts the secret.

use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::notify::Merchant;

#[test]
fn secrets_and_signing_strings_never_reach_the_log_at_trace_level() {
    let merchant = Merchant::start(&[(500, "no")]);
    let srv = TestServer::start_with_env(
        &["--notify-retry-schedule", "1s,1s,1s"],
        &[("RUST_LOG", "trace")],
    );
    let secrets = [
        "Md5-Secret-Do-Not-Log-1",
        "hmac-secret-do-not-log-2",
        "Sm3SecretDoNotLog3",
    ];
    let mut cli_logs = String::new();
    let mut create = |mch: &str, id: &str, args: &[&str]| {
        let db = path_str(&srv.db);
        let mut all = vec!["app", "create", "--db", db, "--mch-no", mch, "--app-id", id];
        all.extend_from_slice(args);
        let out = Command::new(bin())
            .args(&all)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success());
        cli_logs.push_str(&String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        App {
            mch_no: mch.into(),
            app_id: id.into(),
            secret: v["secret"].as_str().unwrap().into(),
            sign_type: unipay::sign::SignType::parse(v["signType"].as_str().unwrap()).unwrap(),
        }
    };
    let apps = [
        create("M_LOG1", "A_LOG1", &["--secret", secrets[0]]),
        create(
            "M_LOG2",
            "A_LOG2",
            &[
                "--secret",
                secrets[1],
                "--sign-type",
                "hmac_sha256",
                "--notify-url",
                &merchant.url,
            ],
        ),
        create(
            "M_LOG3",
            "A_LOG3",
            &[
                "--secret",
                secrets[2],
                "--sign-type",
                "sm3",
                "--notify-url",
                &merchant.url,
            ],
        ),
    ];
    for (i, app) in apps.iter().enumerate() {
        let b = |n: &str| format!("B_LOG{i}_{n}");
        let paid = srv.pay_with(app, &b("paid"), json!({"notifyUrl": merchant.url}));
        srv.sandbox_pay(paid["orderNo"].as_str().unwrap())
            .expect(0, "");
        srv.pay(app, &b("closed"));
        let nonce = json!({"bizOrderNo": b("closed"), "nonceStr": "log-nonce"});
        let body = app.signed("/unipay/close", nonce);
        srv.post_map("/unipay/close", &body).expect(0, "success");
        srv.post_map("/unipay/close", &body).expect(0, "success");
        srv.pre_pay(app, &b("wait"));
        srv.order(app, &b("wait"));
        // A bad signature and a bad field.
        let mut bad = app.signed("/unipay/close", json!({"bizOrderNo": b("wait")}));
        bad.insert("sign".into(), "0".repeat(32).into());
        srv.post_map("/unipay/close", &bad).expect(20052, "");
        srv.close(app, json!({"bizOrderNo": b("wait"), "clientIp": "x"}))
            .expect(10506, "");
    }
    let call = Command::new(bin())
        .args([
            "call",
            "--db",
            path_str(&srv.db),
            "--app-id",
            "A_LOG1",
            "--url",
            &srv.base_url(),
            "query",
            r#"{"bizOrderNo":"B_LOG0_wait"}"#,
        ])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(call.status.success());
    cli_logs.push_str(&String::from_utf8_lossy(&call.stderr));
    // Notifications: a failed attempt, then deliveries, for two apps.
    // 7 events (the first attempt fails once): 8 requests at the merchant.
    wait_for("notifications", || (merchant.count() >= 8).then_some(()));
    let log = srv.stderr() + &cli_logs;
    assert!(log.contains("DEBUG"), "the log ran at trace level");
    assert!(
        log.contains("notify event="),
        "notification attempts are logged"
    );
    let upper = log.to_uppercase();
    for s in secrets {
        assert!(!log.contains(s), "secret {s} is in the log");
        assert!(
            !upper.contains(&s.to_uppercase()),
            "secret {s} (upper-cased) is in the log"
        );
    }
    assert!(!upper.contains("&KEY="), "a signing string is in the log");
}

/// `Debug` output (what a careless log line would print) never shows a secret.
#[test]
fn debug_output_never_shows_a_secret() {
    let app = unipay::domain::App {
        app_id: "A".into(),
        mch_no: "M".into(),
        sign_type: unipay::sign::SignType::Md5,
        secret: "debug-secret-value".into(),
        req_sign: true,
        req_timeout_secs: 300,
        notify_url: None,
        order_timeout_min: 30,
        limit_amount: None,
        enabled: true,
        mch_enabled: true,
    };
    let text = format!("{app:?} {app:#?}");
    assert!(!text.contains("debug-secret-value"), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
}
