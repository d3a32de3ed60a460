//! Merchant notifications: the outbox, signatures, retries, restarts, operators' CLI.
//! A fake merchant (tiny_http on 127.0.0.1:0) records what it receives and answers from a script.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use unipay::sign::{self, SignType};
use unipay::sys::UtcOffset;
use unipay::wire;

use crate::helpers::{now_ms, raw_data, run_cli, wait_for, TestServer};

/// One notification as the merchant received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    /// The same moment as wall-clock milliseconds, to compare with the server's records.
    pub at_ms: i64,
    pub event_id: String,
    pub content_type: String,
    pub body: String,
}

/// How the fake merchant answers one request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// A `Location` header (for redirects).
    pub location: Option<String>,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Answer {
    pub fn new(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.to_string(),
            location: None,
            delay: Duration::ZERO,
        }
    }
}

/// A fake merchant server.
pub struct Merchant {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    server: Arc<tiny_http::Server>,
}

impl Merchant {
    /// A merchant that answers from `script` in turn, then `200 SUCCESS` for ever.
    pub fn start(script: &[(u16, &'static str)]) -> Merchant {
        Merchant::start_on("127.0.0.1:0", script)
    }

    pub fn start_on(addr: &str, script: &[(u16, &'static str)]) -> Merchant {
        let answers = script.iter().map(|(s, t)| Answer::new(*s, t)).collect();
        Merchant::start_answers_on(addr, answers)
    }

    /// A merchant that gives `answers` in turn, then `200 SUCCESS` for ever.
    pub fn start_answers(answers: Vec<Answer>) -> Merchant {
        Merchant::start_answers_on("127.0.0.1:0", answers)
    }

    fn start_answers_on(addr: &str, answers: Vec<Answer>) -> Merchant {
        let server = Arc::new(tiny_http::Server::http(addr).expect("bind the fake merchant"));
        let url = format!("http://{}/notify", server.server_addr().to_ip().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(answers.into_iter().collect::<VecDeque<_>>()));
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
                        at_ms: now_ms(),
                        event_id: header("X-Unipay-Event-Id"),
                        content_type: header("Content-Type"),
                        body,
                    };
                    let answer = script
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or_else(|| Answer::new(200, "SUCCESS"));
                    got.lock().unwrap().push(rec);
                    // The slow merchant of a test: it holds only this handler thread.
                    thread::sleep(answer.delay);
                    let mut response = tiny_http::Response::from_string(answer.body)
                        .with_status_code(answer.status);
                    if let Some(to) = answer.location {
                        let h = tiny_http::Header::from_bytes("Location", to.as_bytes()).unwrap();
                        response = response.with_header(h);
                    }
                    let _ = req.respond(response);
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
        s.extend(std::iter::repeat_n(Answer::new(status, text), 10_000));
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

/// The attempt records of the events of an order: (attempt, at, outcome, http_status, detail).
type AttemptRow = (i64, i64, String, Option<i64>, Option<String>);

fn attempt_rows(srv: &TestServer, order_no: &str) -> Vec<AttemptRow> {
    let c = srv.db_read();
    let mut st = c
        .prepare(
            "SELECT a.attempt, a.at, a.outcome, a.http_status, a.detail FROM notify_attempt a
             JOIN notify_event e ON e.id = a.event_id JOIN pay_order o ON o.id = e.order_id
             WHERE o.order_no = ?1 ORDER BY a.id",
        )
        .unwrap();
    let rows = st
        .query_map([order_no], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap();
    rows.collect::<Result<Vec<_>, _>>().unwrap()
}

#[test]
fn retries_on_error_status_and_wrong_body_until_success_then_stops() {
    let merchant = Merchant::start(&[(500, "SUCCESS?"), (200, "fail")]);
    let srv = TestServer::start_with(&["--notify-retry-schedule", "1s,2s,4s"]);
    let app = srv.create_app("M_N1", "A_N1", &["--sign-type", "hmac_sha256"]);
    let order_no = srv.pre_pay_with(&app, "N1", json!({"notifyUrl": merchant.url}));
    srv.close(&app, json!({"bizOrderNo": "N1"}))
        .expect(0, "success");

    wait_for("three attempts", || (merchant.count() >= 3).then_some(()));
    wait_for("the event delivered", || {
        (event_state(&srv, &order_no).0 == "delivered").then_some(())
    });
    let got = merchant.received();
    assert_eq!(got.len(), 3, "three attempts");
    // Spaced by the schedule: 1 s after the first failure, 2 s after the second.
    let gaps: Vec<Duration> = got.windows(2).map(|p| p[1].at - p[0].at).collect();
    let ms = |n| Duration::from_millis(n);
    assert!(
        (ms(900)..=ms(1900)).contains(&gaps[0]),
        "first retry about 1 s later: {gaps:?}"
    );
    assert!(
        (ms(1900)..=ms(3600)).contains(&gaps[1]),
        "second retry about 2 s later: {gaps:?}"
    );
    // Delivered: no more attempts, not even at the next step of the schedule (4 s).
    thread::sleep(ms(4500));
    assert_eq!(merchant.count(), 3, "exactly three attempts, then no more");
    assert_eq!(event_state(&srv, &order_no), ("delivered".to_string(), 3));

    let ids: HashSet<_> = got.iter().map(|r| r.event_id.clone()).collect();
    assert_eq!(ids.len(), 1, "the same event id on every attempt: {ids:?}");
    assert!(got[0].content_type.starts_with("application/json"));
    let last = verify_notice(&got[2].body, SignType::HmacSha256, &app.secret);
    assert_eq!(last["data"]["status"], "close");
    assert_eq!(last["data"]["orderNo"], order_no.as_str());
    assert_eq!(last["mchNo"], "M_N1");

    // Every attempt is recorded: its number, HTTP status, outcome and the reply.
    let rows = attempt_rows(&srv, &order_no);
    let summary: Vec<(i64, &str, Option<i64>, Option<&str>)> = rows
        .iter()
        .map(|(n, _, outcome, status, detail)| (*n, outcome.as_str(), *status, detail.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "failed", Some(500), Some("SUCCESS?")),
            (2, "failed", Some(200), Some("fail")),
            (3, "delivered", Some(200), Some("SUCCESS")),
        ]
    );
}

#[test]
fn replies_are_judged_by_their_body_never_followed_and_recorded_to_300_characters() {
    // A 1000-character reply, multi-byte characters among them: 300 characters are kept.
    let long: String = (0..1000)
        .map(|i| if i % 3 == 0 { '汉' } else { 'a' })
        .collect();
    let error_status = Merchant::start_answers(vec![Answer::new(500, "SUCCESS")]);
    let elsewhere = Merchant::start_answers(vec![Answer::new(200, "fail")]);
    let redirect = Merchant::start_answers(vec![Answer {
        location: Some(elsewhere.url.clone()),
        ..Answer::new(302, "moved")
    }]);
    let verbose = Merchant::start_answers(vec![Answer::new(200, &long)]);
    // The default schedule: a failed attempt is retried only 15 s later, after this test.
    let srv = TestServer::start();
    let app = srv.app("A_N7");
    let mut orders = Vec::new();
    for (biz, m) in [
        ("N7a", &error_status),
        ("N7b", &redirect),
        ("N7c", &verbose),
    ] {
        orders.push(srv.pre_pay_with(&app, biz, json!({"notifyUrl": m.url})));
        srv.close(&app, json!({"bizOrderNo": biz}))
            .expect(0, "success");
    }
    for order_no in &orders {
        wait_for("one attempt recorded", || {
            (attempt_rows(&srv, order_no).len() == 1).then_some(())
        });
    }
    let one = |order_no: &str| {
        let (n, _, outcome, status, detail) = attempt_rows(&srv, order_no).remove(0);
        (n, outcome, status, detail.unwrap_or_default())
    };

    // "SUCCESS" with HTTP 500: delivered; the status does not matter.
    assert_eq!(
        one(&orders[0]),
        (1, "delivered".into(), Some(500), "SUCCESS".into())
    );
    assert_eq!(event_state(&srv, &orders[0]), ("delivered".to_string(), 1));
    // A redirect is not followed: a failed attempt, and its target hears nothing.
    let (n, outcome, status, _) = one(&orders[1]);
    assert_eq!((n, outcome.as_str(), status), (1, "failed", Some(302)));
    assert_eq!(event_state(&srv, &orders[1]), ("pending".to_string(), 1));
    // A long reply: a failed attempt whose detail is its first 300 characters.
    let (_, outcome, status, detail) = one(&orders[2]);
    assert_eq!((outcome.as_str(), status), ("failed", Some(200)));
    assert_eq!(detail.chars().count(), 300);
    assert_eq!(detail, long.chars().take(300).collect::<String>());

    // Nothing more happens: no second delivery, no request to the redirect's target.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(error_status.count(), 1);
    assert_eq!(redirect.count(), 1);
    assert_eq!(verbose.count(), 1);
    assert_eq!(elsewhere.count(), 0, "the redirect was not followed");
}

#[test]
fn a_slow_merchant_times_out_after_5_s_and_holds_up_nobody() {
    let slow = Merchant::start_answers(vec![Answer {
        delay: Duration::from_secs(6),
        ..Answer::new(200, "SUCCESS")
    }]);
    let fast = Merchant::start(&[]);
    let srv = TestServer::start();
    let app = srv.app("A_N8");
    let slow_order = srv.pre_pay_with(&app, "N8a", json!({"notifyUrl": slow.url}));
    let fast_order = srv.pre_pay_with(&app, "N8b", json!({"notifyUrl": fast.url}));
    srv.close(&app, json!({"bizOrderNo": "N8a"}))
        .expect(0, "success");
    wait_for("the slow merchant to be called", || {
        (slow.count() == 1).then_some(())
    });
    let started = slow.received()[0].clone();

    // While that attempt waits for its reply, a close and its delivery go through at once.
    let t0 = Instant::now();
    srv.close(&app, json!({"bizOrderNo": "N8b"}))
        .expect(0, "success");
    let close_took = t0.elapsed();
    wait_for("the other merchant's delivery recorded", || {
        (event_state(&srv, &fast_order).0 == "delivered").then_some(())
    });
    assert!(
        close_took < Duration::from_secs(2),
        "a close is not held up by a slow merchant: {close_took:?}"
    );
    assert!(
        attempt_rows(&srv, &slow_order).is_empty(),
        "the other delivery finished while the slow attempt was still in flight ({:?} after it \
         started)",
        started.at.elapsed()
    );
    assert_eq!(fast.count(), 1);

    // The slow attempt is given up after the 5 s timeout and recorded as failed.
    let (n, at, outcome, status, detail) = wait_for("the slow attempt recorded", || {
        attempt_rows(&srv, &slow_order).pop()
    });
    assert_eq!((n, outcome.as_str(), status), (1, "failed", None));
    assert!(
        !detail.unwrap_or_default().is_empty(),
        "the error is recorded"
    );
    let after = at - started.at_ms;
    assert!(
        (4_500..=6_500).contains(&after),
        "recorded about 5 s after the request reached the merchant: {after} ms"
    );
    // Its late "SUCCESS" changes nothing: the event waits for its next attempt.
    assert_eq!(event_state(&srv, &slow_order), ("pending".to_string(), 1));
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
    // Nothing more arrives afterwards.
    thread::sleep(Duration::from_secs(1));
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
    // Times are printed in --tz-offset (+08:00 by default): the same instants.
    let utc = run_cli(&[
        "notify",
        "list",
        "--db",
        &db,
        "--failed",
        "--tz-offset",
        "+00:00",
    ]);
    assert!(utc.status.success());
    let utc_text = String::from_utf8(utc.stdout).unwrap();
    let utc_line: Value = serde_json::from_str(utc_text.lines().next().unwrap()).unwrap();
    for field in ["createdAt", "finishedAt"] {
        let cst = line[field].as_str().unwrap();
        let zulu = utc_line[field].as_str().unwrap();
        assert_ne!(cst, zulu, "{field}");
        assert_eq!(
            unipay::sys::parse_time(cst, UtcOffset::CST),
            unipay::sys::parse_time(zulu, UtcOffset::parse("+00:00").unwrap()),
            "{field}: {cst} at +08:00 is {zulu} at +00:00"
        );
    }
    let bad_offset = run_cli(&["notify", "list", "--db", &db, "--tz-offset", "8"]);
    assert_eq!(bad_offset.status.code(), Some(2));
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
