//! A panic in a handler is answered `10500` and logged under the reply's trace id, and the server
//! goes on. Unlike the other modules, this one serves the library's router in the test process
//! (with a clock that panics on demand) instead of running the binary.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::json;

use crate::helpers::*;
use unipay::sys::UtcOffset;

/// Records the router's error lines (the only ones this test binary keeps).
struct RouterLog(Mutex<Vec<String>>);

impl log::Log for RouterLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("unipay::router")
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            self.0.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn router_log() -> &'static RouterLog {
    static LOG: OnceLock<&'static RouterLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static RouterLog = Box::leak(Box::new(RouterLog(Mutex::new(Vec::new()))));
        log::set_logger(log).expect("no other logger in the test binary");
        log::set_max_level(log::LevelFilter::Error);
        log
    })
}

/// A clock that panics once when armed: a stand-in for any bug in a handler.
struct ArmedClock(AtomicBool);

impl unipay::sys::Clock for ArmedClock {
    fn now_ms(&self) -> i64 {
        if self.0.swap(false, Ordering::SeqCst) {
            panic!("armed test clock");
        }
        unipay::sys::SystemClock.now_ms()
    }
}

#[test]
fn a_handler_panic_is_answered_10500_under_the_logged_trace_id() {
    use unipay::channel::Channels;
    use unipay::gateway::Gateway;
    use unipay::router::Router;
    use unipay::store::{Offline, Store};
    use unipay::sys::{Clock, OsRandom, Random};

    let logs = router_log();
    let dir = temp_dir("panic");
    let db = dir.join("p.db");
    let app = unipay::domain::App {
        app_id: "A_PANIC".into(),
        mch_no: "M_PANIC".into(),
        sign_type: unipay::sign::SignType::Md5,
        secret: "panic-secret".into(),
        req_sign: true,
        req_timeout_secs: 300,
        notify_url: None,
        order_timeout_min: 30,
        limit_amount: None,
        enabled: true,
        mch_enabled: true,
    };
    {
        let (mut c, _) = Offline::open(&db).unwrap();
        c.create_app(&app, now_ms()).unwrap();
    }
    let (st, _) = Store::open(&db, UtcOffset::CST).unwrap();
    let st = Arc::new(st);
    let armed = Arc::new(ArmedClock(AtomicBool::new(false)));
    let clock: Arc<dyn Clock> = armed.clone();
    let random: Arc<dyn Random> = Arc::new(OsRandom);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let reach = unipay::channel::Reach {
        base_url: base.clone(),
        public_url: base.clone(),
        timeout: std::time::Duration::from_secs(1),
        sandbox: true,
    };
    let channels = Channels::builtin(st.clone(), clock.clone(), random.clone(), reach);
    let gw = Arc::new(Gateway::new(st, channels, clock, random, base));
    let handle = unipay::http::serve(
        listener,
        unipay::http::Limits::DEFAULT,
        Arc::new(Router { gw }),
    )
    .unwrap();
    let addr = handle.local_addr().to_string();
    let client = App {
        mch_no: "M_PANIC".into(),
        app_id: "A_PANIC".into(),
        secret: "panic-secret".into(),
        sign_type: unipay::sign::SignType::Md5,
    };
    let body = serde_json::to_vec(&client.signed(
        "/unipay/gateway/prePay",
        json!({"bizOrderNo": "B_P", "title": "t", "amount": "1"}),
    ))
    .unwrap();

    armed.0.store(true, Ordering::SeqCst);
    let r = http(&addr, "POST", "/unipay/gateway/prePay", &body);
    r.expect(10500, "系统错误").signed_by(&client);
    let trace = r.json()["traceId"].as_str().unwrap().to_string();
    let lines = logs.0.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("panicked") && l.contains(&format!("trace={trace}"))),
        "no panic line with trace {trace}: {lines:?}"
    );
    // Nothing was done, and the server goes on.
    let r = http(&addr, "POST", "/unipay/gateway/prePay", &body);
    r.expect(0, "success");
    let _ = std::fs::remove_dir_all(&dir);
}
