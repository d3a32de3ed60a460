//! The command line: help, usage errors, `app create` / `app list`, the demo app printed on a
//! fresh database, and the quick start with `unipay call`.

use std::collections::HashMap;

use serde_json::Value;

use crate::helpers::*;
use unipay::sign::SignType;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_on_every_command_exits_0() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["help"],
        &["serve", "--help"],
        &["serve", "-h"],
        &["app", "--help"],
        &["app", "create", "--help"],
        &["app", "list", "--help"],
        &["call", "--help"],
        &["call", "-h"],
        &["notify", "--help"],
        &["notify", "list", "--help"],
        &["notify", "resend", "--help"],
    ] {
        let out = run_cli(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        assert!(stdout.contains("Usage"), "{args:?} prints usage: {stdout}");
    }
    let top = text(&run_cli(&["--help"]).stdout);
    for cmd in ["serve", "app create", "app list", "call"] {
        assert!(top.contains(cmd), "--help names `{cmd}`: {top}");
    }
    let serve = text(&run_cli(&["serve", "--help"]).stdout);
    for flag in ["--db", "--listen", "--tz-offset", "--max-conns-per-ip"] {
        assert!(serve.contains(flag), "serve --help names {flag}: {serve}");
    }
    let app = text(&run_cli(&["app", "--help"]).stdout);
    for flag in [
        "--mch-no",
        "--app-id",
        "--sign-type",
        "--secret",
        "--req-timeout",
        "--no-req-sign",
        "--notify-url",
        "--order-timeout",
        "--limit-amount",
    ] {
        assert!(app.contains(flag), "app --help names {flag}: {app}");
    }
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let dir = temp_dir("usage");
    let db = dir.join("u.db");
    let db = path_str(&db);
    #[rustfmt::skip]
    let cases = [
        (&["serve", "--bogus"][..],                                                                   "--bogus"),
        (&["serve", "--db"],                                                                          "--db"),
        (&["serve", "--tz-offset", "8"],                                                              "--tz-offset"),
        (&["serve", "--listen", "nowhere"],                                                           "--listen"),
        (&["serve", "--max-conns-per-ip", "0"],                                                       "--max-conns-per-ip"),
        (&["frobnicate"],                                                                             "frobnicate"),
        (&["app", "frob"],                                                                            "frob"),
        (&["app", "create", "--db", db, "--mch-no", "M"],                                             "--app-id"),
        (&["app", "create", "--db", db, "--mch-no", "M", "--app-id", "A", "--bogus"],                 "--bogus"),
        (&["app", "create", "--db", db, "--mch-no", "M", "--app-id", "A", "--sign-type", "rsa"],      "rsa"),
        (&["app", "create", "--db", db, "--mch-no", "M", "--app-id", "A", "--req-timeout", "3"],      "--req-timeout"),
        (&["app", "create", "--db", db, "--mch-no", "M", "--app-id", "A", "--notify-url", "ftp://x"], "--notify-url"),
        (&["app", "create", "--db", db, "--mch-no", "M", "--app-id", "A", "--limit-amount", "abc"],   "--limit-amount"),
        (&["app", "create", "--db", db, "--mch-no", "M", "--app-id", &"A".repeat(33)],                "--app-id"),
        (&["app", "list"],                                                                            "--db"),
        (&["app", "list", "--bogus"],                                                                 "--bogus"),
        (&["call", "--bogus"],                                                                        "--bogus"),
        (&["call", "--db", db, "--app-id", "A", "close"],                                             "JSON"),
        (&["call", "--db", db, "--app-id", "A", "nope", "{}"],                                        "nope"),
        (&["call", "--app-id", "A", "close", "{}"],                                                   "--db"),
        (&["notify", "list", "--bogus"],                                                              "--bogus"),
        (&["notify", "resend", "--db", db],                                                           "EVENT_ID"),
    ];
    for (args, needle) in cases {
        let out = run_cli(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: the message names {needle}: {stderr}"
        );
    }
    assert!(
        !std::path::Path::new(db).exists(),
        "a usage error touches no database"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn app_create_and_list_work_while_serve_runs() {
    let srv = TestServer::start();
    let db = path_str(&srv.db).to_string();
    // Without --secret: a 32-character random secret; defaults shown.
    let out = run_cli(&[
        "app", "create", "--db", &db, "--mch-no", "M_CLI", "--app-id", "A_CLI1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let a1: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = a1["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32, "{a1}");
    assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()), "{a1}");
    assert_eq!(a1["signType"], "md5");
    assert_eq!(a1["reqTimeout"].to_string(), "300");
    let a2 = srv.create_app(
        "M_CLI",
        "A_CLI2",
        &[
            "--sign-type",
            "sm3",
            "--secret",
            "abc",
            "--req-timeout",
            "0",
            "--no-req-sign",
            "--limit-amount",
            "12.5",
            "--order-timeout",
            "5",
        ],
    );
    assert_eq!(a2.sign_type, SignType::Sm3);
    assert_eq!(a2.secret, "abc");
    // A second app with the same id is refused.
    let dup = run_cli(&[
        "app", "create", "--db", &db, "--mch-no", "M_CLI", "--app-id", "A_CLI1",
    ]);
    assert!(!dup.status.success(), "duplicate app id accepted");
    assert!(!text(&dup.stderr).is_empty());

    let out = run_cli(&["app", "list", "--db", &db]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Vec<Value> = text(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let by_id: HashMap<&str, &Value> = listed
        .iter()
        .map(|a| (a["appId"].as_str().unwrap(), a))
        .collect();
    assert!(by_id.contains_key("DEMO_APP"), "{listed:?}");
    let l1 = by_id["A_CLI1"];
    assert_eq!(l1["mchNo"], "M_CLI");
    assert_eq!(l1["secret"], secret);
    let l2 = by_id["A_CLI2"];
    assert_eq!(l2["signType"], "sm3");
    assert_eq!(l2["reqSign"], false);
    assert_eq!(l2["reqTimeout"].to_string(), "0");
    assert_eq!(l2["orderTimeout"].to_string(), "5");
    assert_eq!(l2["limitAmount"].to_string(), "12.5");

    // The running server sees the new apps at once.
    let a1 = App {
        mch_no: "M_CLI".into(),
        app_id: "A_CLI1".into(),
        secret: secret.into(),
        sign_type: SignType::Md5,
    };
    srv.pay(&a1, "B_CLI");
    // An app without request signing, limited to 12.5 yuan.
    let over = a2.fill(serde_json::json!({
        "bizOrderNo": "B_CLI", "title": "t", "amount": 12.51, "channel": "sandbox", "method": "wap"
    }));
    srv.post_map("/unipay/pay", &over)
        .expect(20060, "支付金额超过限额")
        .signed_by(&a2);
}

/// The demo credentials printed on a fresh database: `mchNo=… appId=… signType=… secret=…`.
fn demo_credentials(lines: &[String]) -> Option<HashMap<String, String>> {
    let line = lines.iter().skip(1).find(|l| l.contains("secret="))?;
    Some(
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// `unipay call --db <db> --app-id DEMO_APP ENDPOINT JSON`, exactly as the README writes it,
/// pointed at the test server through `UNIPAY_URL` (the README's server is on the default
/// port); the reply it prints.
fn call(srv: &TestServer, endpoint: &str, json: &str) -> Reply {
    let db = path_str(&srv.db);
    let out = std::process::Command::new(bin())
        .args(["call", "--db", db, "--app-id", "DEMO_APP", endpoint, json])
        .env("UNIPAY_URL", srv.base_url())
        .env_remove("UNIPAY_DB")
        .env_remove("UNIPAY_TZ_OFFSET")
        .output()
        .expect("run unipay call");
    printed_reply(endpoint, out)
}

fn printed_reply(endpoint: &str, out: std::process::Output) -> Reply {
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "unipay call {endpoint} failed: {stdout}{}",
        text(&out.stderr)
    );
    let body = stdout.trim().to_string();
    Reply {
        status: 200,
        headers: Vec::new(),
        json: serde_json::from_str(&body).ok(),
        body,
    }
}

/// The README's quick start: serve a fresh database, read the demo app from stdout, then the
/// README's `unipay call` lines: pay, query, close, close again (20044); and the sandbox payment.
#[test]
fn quick_start_with_the_demo_app_and_unipay_call() {
    let mut srv = TestServer::start();
    let creds = wait_for("the demo app on stdout", || {
        demo_credentials(&srv.stdout_lines())
    });
    let lines = srv.stdout_lines();
    assert!(lines[0].starts_with("listening on http://"), "{lines:?}");
    let demo = App {
        mch_no: creds.get("mchNo").expect("mchNo printed").clone(),
        app_id: creds.get("appId").expect("appId printed").clone(),
        secret: creds.get("secret").expect("secret printed").clone(),
        sign_type: SignType::parse(creds.get("signType").expect("signType printed")).unwrap(),
    };
    assert_eq!(demo.app_id, "DEMO_APP");
    assert_eq!(demo.mch_no, "DEMO_MCH");
    assert!(demo.secret.len() >= 16, "{creds:?}");

    let r = call(
        &srv,
        "pay",
        r#"{"bizOrderNo":"ORDER-1","title":"Coffee","amount":"12.50","channel":"sandbox","method":"wap"}"#,
    );
    r.expect(0, "success").signed_by(&demo);
    assert_eq!(r.data()["status"], "progress");
    let order_no = r.data()["orderNo"].as_str().unwrap().to_string();
    let pay_body = r.data()["payBody"].as_str().unwrap();
    assert!(pay_body.contains("/sandbox/cashier/"), "{pay_body}");

    let r = call(&srv, "query", r#"{"bizOrderNo":"ORDER-1"}"#);
    r.expect(0, "success").signed_by(&demo);
    assert_eq!(r.data()["orderNo"], order_no.as_str());
    assert_eq!(r.data()["amount"].to_string(), "12.5");
    assert_eq!(r.data()["status"], "progress");

    let r = call(&srv, "close", r#"{"bizOrderNo":"ORDER-1"}"#);
    r.expect(0, "success").signed_by(&demo);
    let r = call(&srv, "close", r#"{"bizOrderNo":"ORDER-1"}"#);
    r.expect(20044, "订单不是支付中, 无法进行关闭订单")
        .signed_by(&demo);
    assert_eq!(srv.status(&demo, "ORDER-1"), "close");

    // "To see a payment instead": a new order paid at the sandbox, then a close is refused.
    let r = call(
        &srv,
        "pay",
        r#"{"bizOrderNo":"ORDER-2","title":"Tea","amount":"3","channel":"sandbox","method":"wap"}"#,
    );
    r.expect(0, "success");
    let order2 = r.data()["orderNo"].as_str().unwrap().to_string();
    let page = srv.get(url_path(r.data()["payBody"].as_str().unwrap()));
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&order2));
    srv.sandbox_pay(&order2).expect(0, "success");
    call(&srv, "close", r#"{"bizOrderNo":"ORDER-2"}"#).expect(20044, "");
    assert_eq!(srv.status(&demo, "ORDER-2"), "success");

    // `--url`, a path as ENDPOINT, and a request that fails validation (printed, not hidden).
    srv.pre_pay(&demo, "ORDER-3");
    let out = run_cli(&[
        "call",
        "--db",
        path_str(&srv.db),
        "--url",
        &srv.base_url(),
        "--app-id",
        "DEMO_APP",
        "/unipay/close",
        r#"{"bizOrderNo":"ORDER-3","useCancel":true}"#,
    ]);
    printed_reply("/unipay/close", out).expect(0, "success");
    assert_eq!(srv.status(&demo, "ORDER-3"), "close");
    call(&srv, "close", "{}").expect(10506, "支付订单号不能都为空");

    // The demo credentials are printed once: not again on a database that exists.
    srv.restart();
    assert_eq!(srv.status(&demo, "ORDER-1"), "close");
    srv.kill9();
    let lines = srv.stdout_lines();
    let listening = lines
        .iter()
        .filter(|l| l.starts_with("listening on http://"));
    assert_eq!(listening.count(), 2, "{lines:?}");
    let secrets = lines.iter().filter(|l| l.contains("secret=")).count();
    assert_eq!(secrets, 1, "demo credentials printed once: {lines:?}");
}

/// Runtime failures (not usage errors) exit non-zero with a message: a busy port, a database
/// that cannot be opened, `call` with an unknown app or an unreachable server.
#[test]
fn runtime_failures_exit_non_zero_with_a_message() {
    let srv = TestServer::start();
    let db = path_str(&srv.db);
    let dir = temp_dir("runtime");
    let other_db = dir.join("other.db");
    let busy = run_cli(&["serve", "--db", path_str(&other_db), "--listen", &srv.addr]);
    assert!(!busy.status.success());
    assert!(
        text(&busy.stderr).contains(&srv.addr),
        "{}",
        text(&busy.stderr)
    );
    let missing_dir = dir.join("no/such/dir/x.db");
    let bad_db = run_cli(&["app", "list", "--db", path_str(&missing_dir)]);
    assert!(!bad_db.status.success());
    assert!(!text(&bad_db.stderr).is_empty());
    let no_app = run_cli(&[
        "call",
        "--db",
        db,
        "--url",
        &srv.base_url(),
        "--app-id",
        "A_NONE",
        "close",
        "{}",
    ]);
    assert!(!no_app.status.success());
    assert!(
        text(&no_app.stderr).contains("A_NONE"),
        "{}",
        text(&no_app.stderr)
    );
    srv.app("A_UNREACH");
    let unreachable = run_cli(&[
        "call",
        "--db",
        db,
        "--url",
        "http://127.0.0.1:9",
        "--app-id",
        "A_UNREACH",
        "close",
        "{}",
    ]);
    assert!(!unreachable.status.success());
    assert!(!text(&unreachable.stderr).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `version` is a command of `--help` too: `--help` on it prints its usage, and a wrong flag
/// is a usage error (issue 2: "--help on every command; a wrong flag gets a clear message and
/// exit code 2").
#[test]
fn version_command_has_help_and_rejects_wrong_flags() {
    let help = run_cli(&["version", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(
        text(&help.stdout).contains("Usage"),
        "`unipay version --help` prints usage, not: {}",
        text(&help.stdout)
    );
    let bogus = run_cli(&["version", "--bogus"]);
    assert_eq!(
        bogus.status.code(),
        Some(2),
        "`unipay version --bogus` exits 2, not with: {}",
        text(&bogus.stdout)
    );
    assert!(text(&bogus.stderr).contains("--bogus"));
}

#[test]
fn version_prints_the_version() {
    let out = run_cli(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// Spawns `unipay <args>` in `cwd` with `envs`, returns the first stdout line, then kills it.
fn first_line_of_serve(cwd: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("UNIPAY_DB")
        .env_remove("UNIPAY_LISTEN")
        .env_remove("UNIPAY_TZ_OFFSET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn unipay");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(DEADLINE);
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    line.expect("a first line from serve")
        .trim_end()
        .to_string()
}

/// `serve` defaults to `./unipay.db`; `UNIPAY_DB` and `UNIPAY_LISTEN` stand in for the flags;
/// no command at all means `serve`.
#[test]
fn serve_defaults_and_environment() {
    let dir = temp_dir("defaults");
    let line = first_line_of_serve(&dir, &["serve", "--listen", "127.0.0.1:0"], &[]);
    assert!(line.starts_with("listening on http://127.0.0.1:"), "{line}");
    assert!(
        dir.join("unipay.db").exists(),
        "the default database is ./unipay.db"
    );

    let env_db = dir.join("env.db");
    let line = first_line_of_serve(
        &dir,
        &[],
        &[
            ("UNIPAY_DB", path_str(&env_db)),
            ("UNIPAY_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert!(line.starts_with("listening on http://127.0.0.1:"), "{line}");
    assert!(!line.ends_with(":0"), "{line}");
    assert!(env_db.exists(), "UNIPAY_DB names the database");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `unipay order attention` prints one JSON line per order flagged for an operator, with the
/// fields an operator acts on, and nothing when no order is flagged. The late payments are
/// real: a sandbox order closed, then paid at the channel after all, found by a pay sync.
#[test]
fn order_attention_lists_every_late_payment_and_nothing_when_there_is_none() {
    let srv = TestServer::start_with(&["--sweep-interval", "1h"]);
    let app = srv.app("A_ATT");
    let attention = || {
        let out = run_cli(&["order", "attention", "--db", path_str(&srv.db)]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    // Orders, paid and closed, but none flagged: nothing.
    let paid = srv.pay(&app, "ATT_OK")["orderNo"]
        .as_str()
        .unwrap()
        .to_string();
    srv.sandbox_pay(&paid).expect(0, "success");
    srv.pay(&app, "ATT_CLOSED");
    srv.close(&app, serde_json::json!({"bizOrderNo": "ATT_CLOSED"}))
        .expect(0, "success");
    assert_eq!(attention(), "");

    // Two orders closed, then paid at the channel after all; a pay sync finds the money.
    let mut late = HashMap::new();
    for (biz, amount, trade_no) in [("ATT1", "3.00", "LATE_T1"), ("ATT2", "45.60", "LATE_T2")] {
        let data = srv.pay_with(&app, biz, serde_json::json!({ "amount": amount }));
        let order_no = data["orderNo"].as_str().unwrap().to_string();
        srv.close(&app, serde_json::json!({ "bizOrderNo": biz }))
            .expect(0, "success");
        let book = rusqlite::Connection::open(&srv.db).unwrap();
        book.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        let n = book
            .execute(
                "UPDATE sandbox_trade SET state = 'paid', trade_no = ?2 WHERE order_no = ?1",
                [&order_no, trade_no],
            )
            .unwrap();
        assert_eq!(n, 1);
        drop(book);
        let s = srv.post_signed(
            &app,
            "/unipay/sync/order/pay",
            serde_json::json!({ "bizOrderNo": biz }),
        );
        s.expect(0, "success");
        assert_eq!(s.data()["orderStatus"], "success", "{}", s.body);
        late.insert(order_no, (biz, amount, trade_no));
    }

    let out = attention();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let mut seen = Vec::new();
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "amount",
            "appId",
            "attention",
            "bizOrderNo",
            "orderNo",
            "outOrderNo",
            "since",
            "status",
        ];
        want.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, want, "{line}");
        let order_no = v["orderNo"].as_str().unwrap().to_string();
        let (biz, amount, trade_no) = late[&order_no];
        assert_eq!(v["bizOrderNo"], biz, "{line}");
        assert_eq!(v["appId"], "A_ATT", "{line}");
        assert_eq!(v["status"], "success", "{line}");
        assert_eq!(v["amount"], amount, "{line}");
        assert_eq!(v["outOrderNo"], trade_no, "{line}");
        assert_eq!(
            v["attention"],
            format!(
                "订单状态为支付关闭时通道交易{trade_no}已支付, 订单已改为支付成功, 请人工处理 \
                 (money arrived for a close order)"
            )
            .as_str(),
            "{line}"
        );
        let since = v["since"].as_str().unwrap();
        let since_ms = unipay::sys::parse_time(since, unipay::sys::UtcOffset::CST)
            .unwrap_or_else(|| panic!("since {since:?} is not yyyy-MM-dd HH:mm:ss"));
        assert!((now_ms() - since_ms).abs() < 60_000, "{line}");
        seen.push(order_no);
    }
    seen.sort();
    let mut want: Vec<String> = late.keys().cloned().collect();
    want.sort();
    assert_eq!(seen, want, "each late payment once");
}
