//! A graceful stop (SIGTERM, SIGINT): requests under way finish and are answered whole, idle
//! connections and the listener close, the process exits 0 within `--shutdown-grace`; a channel
//! call that hangs makes it exit 1 just past the grace, and recovery settles that close; a
//! second signal exits at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::alipay::{qr_order, setup};
use crate::fake_alipay::Mode;
use crate::helpers::*;

/// What one request on a kept-alive connection got.
enum Got {
    /// A whole reply: its body, and whether the server closes the connection after it.
    Reply(Vec<u8>, bool),
    /// The connection ended before any byte of a reply.
    Nothing,
}

/// A client on one kept-alive connection.
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: &str) -> Option<Client> {
        let stream = TcpStream::connect(addr).ok()?;
        stream.set_read_timeout(Some(DEADLINE)).ok()?;
        let reader = BufReader::new(stream.try_clone().ok()?);
        Some(Client { stream, reader })
    }

    /// Posts `body`; a reply that starts but does not arrive whole is an `Err`.
    fn post(&mut self, addr: &str, path: &str, body: &[u8]) -> Result<Got, String> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        if self.stream.write_all(&bytes).is_err() {
            return Ok(Got::Nothing);
        }
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => return Ok(Got::Nothing),
            Ok(_) => {}
        }
        let mut length = None;
        let mut close = false;
        loop {
            let mut h = String::new();
            match self.reader.read_line(&mut h) {
                Ok(n) if n > 0 => {}
                other => return Err(format!("a reply cut in its head: {line:?} {other:?}")),
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "connection" => close = value.trim().eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = vec![0; length.ok_or("no Content-Length")?];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| format!("a reply cut in its body: {e}"))?;
        Ok(Got::Reply(body, close))
    }
}

#[test]
fn sigterm_during_a_burst_of_closes_answers_every_close_it_made_and_exits_0() {
    let mut srv = TestServer::start_with(&["--shutdown-grace", "10s"]);
    let app = srv.app("A_STOP");
    let orders: Vec<String> = (0..600).map(|i| format!("S{i}")).collect();
    for biz in &orders {
        srv.pay(&app, biz);
    }
    let queue = Arc::new(Mutex::new(orders.clone()));
    let answered: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (addr, app) = (srv.addr.clone(), app.clone());
            let (queue, answered, count) = (queue.clone(), answered.clone(), count.clone());
            thread::spawn(move || -> Result<(), String> {
                let Some(mut client) = Client::connect(&addr) else {
                    return Ok(());
                };
                loop {
                    let Some(biz) = queue.lock().unwrap().pop() else {
                        return Ok(());
                    };
                    let body = app.signed("/unipay/close", json!({ "bizOrderNo": biz }));
                    let body = serde_json::to_vec(&body).unwrap();
                    match client.post(&addr, "/unipay/close", &body)? {
                        Got::Reply(body, close) => {
                            let v: Value = serde_json::from_slice(&body)
                                .map_err(|e| format!("a reply that is not JSON: {e}"))?;
                            answered
                                .lock()
                                .unwrap()
                                .push((biz, v["code"].as_i64().unwrap()));
                            count.fetch_add(1, Ordering::SeqCst);
                            if close {
                                let Some(c) = Client::connect(&addr) else {
                                    return Ok(());
                                };
                                client = c;
                            }
                        }
                        // Stopping: this request was never read; a new connection is refused.
                        Got::Nothing => match Client::connect(&addr) {
                            Some(c) => client = c,
                            None => return Ok(()),
                        },
                    }
                }
            })
        })
        .collect();
    wait_for("50 closes answered", || {
        (count.load(Ordering::SeqCst) >= 50).then_some(())
    });
    let signalled = Instant::now();
    srv.signal("TERM");
    let status = srv.wait_exit(Duration::from_secs(15));
    let took = signalled.elapsed();
    for c in clients {
        c.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(status.code(), Some(0), "{}", srv.stderr());
    assert!(took < Duration::from_secs(10), "{took:?}");
    let answered = answered.lock().unwrap().clone();
    let closed_ok: Vec<&String> = answered
        .iter()
        .filter(|(_, code)| *code == 0)
        .map(|(biz, _)| biz)
        .collect();
    assert!(closed_ok.len() >= 50, "{}", closed_ok.len());
    // Every close answered 0 is on disk; and nothing was closed without its answer arriving.
    let db = srv.db_read();
    for biz in &closed_ok {
        let status: String = db
            .query_row(
                "SELECT status FROM pay_order WHERE biz_order_no = ?1",
                [biz],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(status, "close", "{biz}");
    }
    let closed: i64 = db
        .query_row(
            "SELECT count(*) FROM pay_order WHERE app_id = 'A_STOP' AND status = 'close'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        closed as usize,
        closed_ok.len(),
        "closes made without their answer"
    );
    drop(db);
    let stderr = srv.stderr();
    eprintln!(
        "{} of {} closes answered; {}",
        closed_ok.len(),
        orders.len(),
        stderr
            .lines()
            .find(|l| l.contains("stopped in"))
            .unwrap_or("")
    );
    assert!(stderr.contains("SIGTERM: stopping"), "{stderr}");
    assert!(stderr.contains("stopped in"), "{stderr}");
    // A new process finds nothing left over.
    srv.restart();
    assert_eq!(intents(&srv), 0);
}

fn intents(srv: &TestServer) -> i64 {
    srv.db_read()
        .query_row("SELECT count(*) FROM close_intent", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn sigterm_while_a_channel_call_hangs_exits_1_after_the_grace_and_recovery_settles_it() {
    let (mut srv, app, fake) = setup(&["--channel-timeout", "30s", "--shutdown-grace", "1s"]);
    let (order_no, _) = qr_order(&srv, &app, "H1");
    fake.scan(&order_no);
    fake.set_mode("alipay.trade.close", Mode::Hang);
    let addr = srv.addr.clone();
    let body =
        serde_json::to_vec(&app.signed("/unipay/close", json!({"bizOrderNo": "H1"}))).unwrap();
    let client = thread::spawn(move || try_http(&addr, "POST", "/unipay/close", &body));
    wait_for("the close to reach Alipay", || {
        (fake.calls("alipay.trade.close") == 1).then_some(())
    });
    let signalled = Instant::now();
    srv.signal("TERM");
    let status = srv.wait_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(1), "{}", srv.stderr());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(
        client.join().unwrap().is_none(),
        "no reply to the hung close"
    );
    assert!(srv.stderr().contains("exiting with status 1"));
    // Alipay closed the trade before it hung; the next start asks and finishes the close.
    fake.set_mode("alipay.trade.close", Mode::Normal);
    srv.restart();
    assert_eq!(srv.status(&app, "H1"), "close");
    assert_eq!(intents(&srv), 0);
}

#[test]
fn a_second_signal_exits_at_once() {
    let (mut srv, app, fake) = setup(&["--channel-timeout", "30s", "--shutdown-grace", "30s"]);
    let (order_no, _) = qr_order(&srv, &app, "H2");
    fake.scan(&order_no);
    fake.set_mode("alipay.trade.close", Mode::Hang);
    let addr = srv.addr.clone();
    let body =
        serde_json::to_vec(&app.signed("/unipay/close", json!({"bizOrderNo": "H2"}))).unwrap();
    let _client = thread::spawn(move || try_http(&addr, "POST", "/unipay/close", &body));
    wait_for("the close to reach Alipay", || {
        (fake.calls("alipay.trade.close") == 1).then_some(())
    });
    srv.signal("INT");
    wait_for("the stop to begin", || {
        srv.stderr().contains("SIGINT: stopping").then_some(())
    });
    let signalled = Instant::now();
    srv.signal("TERM");
    let status = srv.wait_exit(Duration::from_secs(10));
    assert!(signalled.elapsed() < Duration::from_secs(1));
    assert_eq!(status.code(), Some(128 + 15), "{}", srv.stderr());
}
