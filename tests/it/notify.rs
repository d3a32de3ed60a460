//! Merchant notifications (issue 3): the outbox, signatures, retries, restarts, operators' CLI.
//! A fake merchant (tiny_http on 127.0.0.1:0) records what it receives and answers from a script.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use unipay::sign::{self, SignType};
use unipay::wire;

use crate::helpers::{raw_data, run_cli, wait_for, TestServer};

/// One notification as the merchant received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub event_id: String,
    pub content_type: String,
    pub body: String,
}

/// A fake merchant server.
pub struct Merchant {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<(u16, &'static str)>>>,
    server: Arc<tiny_http::Server>,
}

impl Merchant {
    /// A merchant that answers from `script` in turn, then `200 SUCCESS` for ever.
    pub fn start(script: &[(u16, &'static str)]) -> Merchant {
        Merchant::start_on("127.0.0.1:0", script)
    }

    pub fn start_on(addr: &str, script: &[(u16, &'static str)]) -> Merchant {
        let server = Arc::new(tiny_http::Server::http(addr).expect("bind the fake merchant"));
        let url = format!("http://{}/notify", server.server_addr().to_ip().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().cloned().collect::<VecDeque<_>>()));
        for _ in 0..4 {
            let (server, got, script) = (server.clone(), got.clone(), script.clone());
            thread::spawn(move || {
                for mut req in server.incoming_requests() {
                    let mut body = String::new();
                    let _ = req.as_reader().read_to_string(&mut body);
                    let header = |name: &'static str| {
                        req.headers()
                            .iter()
                            .find(|h| h.field.equiv(name))
                            .map(|h| h.value.as_str().to_string())
                            .unwrap_or_default()
                    };
                    let rec = Received {
                        at: Instant::now(),
                        event_id: header("X-Unipay-Event-Id"),
                        content_type: header("Content-Type"),
                        body,
                    };
                    let (status, text) = script
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or((200, "SUCCESS"));
                    got.lock().unwrap().push(rec);
                    let _ = req
                        .respond(tiny_http::Response::from_string(text).with_status_code(status));
                }
            });
        }
        Merchant {
            url,
            got,
            script,
            server,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// From now on, answer `(status, text)` to everything.
    pub fn answer_always(&self, status: u16, text: &'static str) {
        let mut s = self.script.lock().unwrap();
        s.clear();
        s.extend(std::iter::repeat((status, text)).take(10_000));
    }
}

impl Drop for Merchant {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// Verifies a notification body's signature by spec §9 and returns it parsed.
#[track_caller]
pub(crate) fn verify_notice(body: &str, sign_type: SignType, secret: &str) -> Value {
    let v: Value = serde_json::from_str(body).expect("notification is JSON");
    let data = raw_data(body).expect("notification has a data object");
    assert_eq!(
        wire::sorted_data(&data).unwrap(),
        data,
        "data keys are sorted case-insensitively"
    );
    let text = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {body}"))
            .to_string()
    };
    let (mch, app, res_time, trace) = (
        text("mchNo"),
        text("appId"),
        text("resTime"),
        text("traceId"),
    );
    assert_eq!(v["code"], 0);
    assert_eq!(v["msg"], "success");
    let pairs = [
        ("mchNo", mch.as_str()),
        ("appId", app.as_str()),
        ("code", "0"),
        ("msg", "success"),
        ("data", data.as_str()),
        ("resTime", res_time.as_str()),
        ("traceId", trace.as_str()),
    ];
    assert!(
        sign::verify(sign_type, &pairs, secret, &text("sign")),
        "the notification signature verifies: {body}"
    );
    v
}

fn event_state(srv: &TestServer, order_no: &str) -> (String, i64) {
    srv.db_read()
        .query_row(
            "SELECT e.state, e.attempts FROM notify_event e JOIN pay_order o ON o.id = e.order_id
             WHERE o.order_no = ?1",
            [order_no],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

#[test]
fn retries_on_error_status_and_wrong_body_until_success_then_stops() {
    let merchant = Merchant::start(&[(500, "SUCCESS?"), (200, "fail")]);
    let srv = TestServer::start_with(&["--notify-retry-schedule", "1s,1s,2s"]);
    let app = srv.create_app("M_N1", "A_N1", &["--sign-type", "hmac_sha256"]);
    let order_no = srv.pre_pay_with(&app, "N1", json!({"notifyUrl": merchant.url}));
    srv.close(&app, json!({"bizOrderNo": "N1"}))
        .expect(0, "success");

    wait_for("three attempts", || (merchant.count() >= 3).then_some(()));
    wait_for("the event delivered", || {
        (event_state(&srv, &order_no).0 == "delivered").then_some(())
    });
    let got = merchant.received();
    assert_eq!(got.len(), 3, "exactly three attempts, then no more");
    assert_eq!(event_state(&srv, &order_no), ("delivered".to_string(), 3));
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "spaced by the schedule: {gap:?}"
        );
    }
    let ids: HashSet<_> = got.iter().map(|r| r.event_id.clone()).collect();
    assert_eq!(ids.len(), 1, "the same event id on every attempt: {ids:?}");
    assert!(got[0].content_type.starts_with("application/json"));
    let last = verify_notice(&got[2].body, SignType::HmacSha256, &app.secret);
    assert_eq!(last["data"]["status"], "close");
    assert_eq!(last["data"]["orderNo"], order_no.as_str());
    assert_eq!(last["mchNo"], "M_N1");
    let attempts = srv.count(
        "SELECT count(*) FROM notify_attempt a JOIN notify_event e ON e.id = a.event_id
         JOIN pay_order o ON o.id = e.order_id WHERE o.order_no = ?1",
        &order_no,
    );
    assert_eq!(attempts, 3, "every attempt is recorded");
    let first_detail: String = srv
        .db_read()
        .query_row(
            "SELECT detail FROM notify_attempt ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(first_detail, "SUCCESS?");
}

#[test]
fn a_sigkill_after_a_failed_attempt_loses_nothing_and_delivers_once() {
    // A port with nobody listening: the merchant is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/notify");
    let mut srv = TestServer::start_with(&["--notify-retry-schedule", "1s"]);
    let app = srv.app("A_N2");
    let order_no = srv.pre_pay_with(&app, "N2", json!({"notifyUrl": url}));
    srv.close(&app, json!({"bizOrderNo": "N2"}))
        .expect(0, "success");
    wait_for("a failed attempt", || {
        let n = srv.count(
            "SELECT count(*) FROM notify_attempt WHERE outcome = ?1",
            "failed",
        );
        (n >= 1).then_some(())
    });
    srv.kill9();
    let merchant = Merchant::start_on(&format!("127.0.0.1:{port}"), &[]);
    srv.restart();
    wait_for("delivery after the restart", || {
        (merchant.count() >= 1).then_some(())
    });
    wait_for("the event delivered", || {
        (event_state(&srv, &order_no).0 == "delivered").then_some(())
    });
    assert_eq!(merchant.count(), 1, "delivered once");
    let v = verify_notice(&merchant.received()[0].body, app.sign_type, &app.secret);
    assert_eq!(v["data"]["status"], "close");
}

#[test]
fn the_app_notify_url_hears_every_order_and_two_targets_get_two_deliveries() {
    let subscriber = Merchant::start(&[]);
    let callback = Merchant::start(&[]);
    let srv = TestServer::start();
    let app = srv.create_app("M_N3", "A_N3", &["--notify-url", &subscriber.url]);
    // An order without a notifyUrl: only the app hears of it.
    let lone = srv.pre_pay(&app, "N3a");
    srv.close(&app, json!({"bizOrderNo": "N3a"}))
        .expect(0, "success");
    // An order with its own notifyUrl, paid at the sandbox: both hear of it.
    let pay = srv.pay_with(&app, "N3b", json!({"notifyUrl": callback.url}));
    let paid = pay["orderNo"].as_str().unwrap().to_string();
    srv.sandbox_pay(&paid).expect(0, "success");

    wait_for("two notices to the app", || {
        (subscriber.count() >= 2).then_some(())
    });
    wait_for("one notice to the order's URL", || {
        (callback.count() >= 1).then_some(())
    });
    let mut seen: Vec<(String, String)> = subscriber
        .received()
        .iter()
        .map(|r| {
            let v = verify_notice(&r.body, app.sign_type, &app.secret);
            (
                v["data"]["orderNo"].as_str().unwrap().into(),
                v["data"]["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![
        (lone, "close".to_string()),
        (paid.clone(), "success".to_string()),
    ];
    want.sort();
    assert_eq!(seen, want);
    let v = verify_notice(&callback.received()[0].body, app.sign_type, &app.secret);
    assert_eq!(v["data"]["status"], "success");
    assert!(v["data"]["payTime"].is_string(), "{v}");
    assert_eq!(srv.notify_events(&paid), 2, "two targets, two events");
}

#[test]
fn a_thousand_closes_make_exactly_a_thousand_deliveries() {
    const N: usize = 1000;
    const THREADS: usize = 8;
    let merchant = Merchant::start(&[]);
    let srv = Arc::new(TestServer::start());
    let app = srv.create_app(
        "M_N4",
        "A_N4",
        &["--notify-url", &merchant.url, "--req-timeout", "0"],
    );
    let work = |f: &(dyn Fn(usize) + Sync)| {
        thread::scope(|s| {
            for t in 0..THREADS {
                s.spawn(move || {
                    for i in (t..N).step_by(THREADS) {
                        f(i);
                    }
                });
            }
        })
    };
    work(&|i| {
        let body = json!({"bizOrderNo": format!("K{i}"), "title": "t", "amount": "0.01"});
        srv.post_signed(&app, "/unipay/gateway/prePay", body)
            .expect(0, "success");
    });
    work(&|i| {
        srv.close(&app, json!({"bizOrderNo": format!("K{i}")}))
            .expect(0, "success");
    });
    wait_for("1000 deliveries", || (merchant.count() >= N).then_some(()));
    wait_for("every event delivered", || {
        let n = srv.count(
            "SELECT count(*) FROM notify_event WHERE state = ?1",
            "delivered",
        );
        (n == N as i64).then_some(())
    });
    let got = merchant.received();
    assert_eq!(got.len(), N, "exactly {N} deliveries");
    let ids: HashSet<_> = got.iter().map(|r| r.event_id.clone()).collect();
    assert_eq!(ids.len(), N, "none twice");
    let orders: HashSet<String> = got
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(&r.body).unwrap();
            v["data"]["bizOrderNo"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(orders.len(), N, "one notice per order");
}

#[test]
fn given_up_events_are_listed_and_can_be_resent_while_serving() {
    let merchant = Merchant::start(&[]);
    merchant.answer_always(200, "fail");
    let srv = TestServer::start_with(&["--notify-retry-schedule", "200ms"]);
    let app = srv.app("A_N5");
    let order_no = srv.pre_pay_with(&app, "N5", json!({"notifyUrl": merchant.url}));
    srv.close(&app, json!({"bizOrderNo": "N5"}))
        .expect(0, "success");
    wait_for("the event given up", || {
        (event_state(&srv, &order_no).0 == "given_up").then_some(())
    });
    assert_eq!(
        merchant.count(),
        2,
        "a one-step schedule makes two attempts"
    );

    let db = srv.db.to_str().unwrap().to_string();
    let out = run_cli(&["notify", "list", "--db", &db, "--failed"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line: Value = serde_json::from_str(text.lines().next().expect("one failed event")).unwrap();
    assert_eq!(line["orderNo"], order_no.as_str());
    assert_eq!(line["state"], "given_up");
    assert_eq!(line["lastError"], "fail");
    let pending = run_cli(&["notify", "list", "--db", &db, "--pending"]);
    assert_eq!(String::from_utf8(pending.stdout).unwrap().trim(), "");

    merchant.answer_always(200, "success");
    let id = line["id"].to_string();
    let out = run_cli(&["notify", "resend", "--db", &db, &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the resent event delivered", || {
        (event_state(&srv, &order_no).0 == "delivered").then_some(())
    });
    assert_eq!(merchant.count(), 3);
    let bad = run_cli(&["notify", "resend", "--db", &db, "999999"]);
    assert!(!bad.status.success());
}

#[test]
fn no_notification_is_sent_for_a_new_order() {
    let merchant = Merchant::start(&[]);
    let srv = TestServer::start();
    let app = srv.app("A_N6");
    let order_no = srv.pre_pay_with(&app, "N6", json!({"notifyUrl": merchant.url}));
    srv.pay_with(&app, "N6b", json!({"notifyUrl": merchant.url}));
    assert_eq!(srv.notify_events(&order_no), 0);
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM notify_event WHERE url = ?1",
            &merchant.url
        ),
        0
    );
}
