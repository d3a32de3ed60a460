//! A full disk: the database on a small tmpfs of its own, filled with a file until nothing is
//! left. Writes are refused with 10500 and a message that says the store is full (logged once,
//! not per request), reads and queries go on, and once the file is removed writes work again
//! without a restart, with every acknowledged change there and no id used twice.
//!
//! The test mounts the tmpfs itself, which needs root (CI runs as root); where it cannot, it
//! says so and is skipped.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use unipay::error::MSG_STORE_FULL;

use crate::helpers::*;
use crate::notify::{Answer, Merchant};

/// A tmpfs mounted on a directory of its own, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = temp_dir("tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Writes zeros to `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = f.flush();
    written
}

/// What one phase of traffic was answered.
#[derive(Default, Debug)]
struct Tally {
    /// Orders created (code 0), and closes acknowledged (code 0), by bizOrderNo.
    created: Vec<String>,
    closed: Vec<String>,
    /// Orders whose creation got 10500 (the full-disk message), and orders created whose close
    /// did.
    refused: Vec<String>,
    not_closed: Vec<String>,
    /// 10500 replies (creations and closes).
    full: usize,
    queries: usize,
    /// The phase ran out of time before `stop` said so.
    timed_out: bool,
}

/// `clients` threads create orders (prePay) and close each one created, and query an order
/// created before, until `stop` says so (or a minute passed). Every reply is 0 or 10500 with
/// the full-disk text; every query is 0.
fn traffic(
    srv: &TestServer,
    app: &App,
    prefix: &str,
    clients: usize,
    known: &str,
    stop: impl Fn(&Tally) -> bool + Sync,
) -> Tally {
    let tally = Mutex::new(Tally::default());
    let next = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let answered = |path: &str, reply: &Reply| -> bool {
        match reply.code() {
            0 => true,
            10500 => {
                assert_eq!(reply.msg(), MSG_STORE_FULL, "{path}: {}", reply.body);
                false
            }
            _ => panic!("{path}: {}", reply.body),
        }
    };
    thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| loop {
                let mut t = tally.lock().unwrap();
                t.timed_out |= Instant::now() > deadline;
                if t.timed_out || stop(&t) {
                    return;
                }
                drop(t);
                let biz = format!("{prefix}{:05}", next.fetch_add(1, Ordering::SeqCst));
                let created = srv.post_signed(
                    app,
                    "/unipay/gateway/prePay",
                    json!({"bizOrderNo": biz, "title": "t", "amount": "1.00"}),
                );
                let query = srv.post_signed(
                    app,
                    "/unipay/query/payOrder",
                    json!({"bizOrderNo": known, "nonceStr": format!("q-{biz}")}),
                );
                query.expect(0, "success");
                let mut t = tally.lock().unwrap();
                t.queries += 1;
                if !answered("prePay", &created) {
                    t.full += 1;
                    t.refused.push(biz);
                    continue;
                }
                t.created.push(biz.clone());
                drop(t);
                let closed = srv.close(app, json!({"bizOrderNo": biz}));
                let mut t = tally.lock().unwrap();
                match answered("close", &closed) {
                    true => t.closed.push(biz),
                    false => {
                        t.full += 1;
                        t.not_closed.push(biz);
                    }
                }
            });
        }
    });
    tally.into_inner().unwrap()
}

#[test]
fn a_full_disk_refuses_writes_clearly_and_recovers_when_space_comes_back() {
    let fs = match Tmpfs::mount("8m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs for the full-disk test ({why})");
            return;
        }
    };
    let merchant = Merchant::start(&[]);
    let srv = TestServer::start_on(fs.dir.join("gw.db"), &[]);
    let app = srv.create_app("M_FULL", "A_FULL", &["--notify-url", &merchant.url]);
    srv.pre_pay(&app, "KNOWN");
    let before = traffic(&srv, &app, "A", 4, "KNOWN", |t| t.created.len() >= 60);
    assert_eq!(before.full, 0);
    // A notification in flight when the disk fills: its merchant answers after a second, and
    // then its attempt cannot be recorded.
    let slow = Merchant::start_answers(vec![Answer {
        delay: Duration::from_secs(1),
        ..Answer::new(200, "SUCCESS")
    }]);
    let other = srv.create_app("M_SLOW", "A_SLOW", &["--notify-url", &slow.url]);
    srv.pre_pay(&other, "SLOW");
    srv.close(&other, json!({"bizOrderNo": "SLOW"}))
        .expect(0, "success");
    wait_for("the slow notification sent", || {
        (slow.count() == 1).then_some(())
    });

    // The disk fills up, for two seconds and at least 50 writes refused (some writes still fit
    // in space the WAL already has, or gives back).
    let filler = fs.dir.join("filler");
    let filled = fill(&filler);
    let full_from = Instant::now();
    let during = traffic(&srv, &app, "B", 4, "KNOWN", |t| {
        t.full >= 50 && full_from.elapsed() >= Duration::from_secs(2)
    });
    assert!(during.full >= 50, "writes kept working on a full disk");
    let full_for = full_from.elapsed();
    // The health check says so (a load balancer takes the server out meanwhile).
    let health = srv.get("/healthz");
    assert_eq!(health.status, 503, "{}", health.body);
    assert!(health.body.contains("the disk is full"), "{}", health.body);

    // Space comes back: writes work again at once, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let after = traffic(&srv, &app, "C", 4, "KNOWN", |t| t.created.len() >= 100);
    assert_eq!(after.full, 0, "writes work again once space is back");
    assert!(!after.timed_out, "{after:?}");
    wait_for("the health check to pass again", || {
        (srv.get("/healthz").status == 200).then_some(())
    });
    let log = srv.stderr();
    let episodes = log.matches("the database's disk is full").count();
    let ended = log.matches("store: writes work again").count();
    let truncated = log
        .matches("the WAL is copied into the database file")
        .count();
    eprintln!(
        "filled {filled} bytes; for {full_for:.1?} while full: {} created, {} closed, {} \
         answered 10500 (the full-disk message), {} queries answered 0; then {} created, {} \
         closed, 0 refused; {episodes} full-disk episode(s) logged, {ended} ended, the WAL \
         truncated {truncated} time(s); the notification in flight sent {} time(s) meanwhile",
        during.created.len(),
        during.closed.len(),
        during.full,
        during.queries,
        after.created.len(),
        after.closed.len(),
        slow.count(),
    );
    // Logged once per episode, never per request; every episode ended.
    assert!(episodes >= 1, "{log}");
    assert_eq!(episodes, ended, "{log}");
    assert!(episodes <= truncated + 1, "{log}");
    for per_request in [
        "cannot remember the nonceStr reply",
        "cannot record the attempt",
    ] {
        assert!(!log.contains(per_request), "{log}");
    }
    assert!(
        log.matches("checkpoint failed").count() <= episodes,
        "{log}"
    );

    // A notification whose attempt could not be recorded is sent again after a pause, not at
    // once and over and over; once space is back every one is delivered and recorded.
    let mut sent: HashMap<String, usize> = HashMap::new();
    for r in merchant.received() {
        if r.at >= full_from && r.at <= full_from + full_for {
            *sent.entry(r.event_id).or_default() += 1;
        }
    }
    let most = sent.values().copied().max().unwrap_or(0);
    assert!(
        most as u64 <= 2 + full_for.as_secs() / 5,
        "one notification sent {most} times in {full_for:?}"
    );
    let slow_sent = slow.count();
    assert!(slow_sent <= 2, "sent {slow_sent} times");
    wait_for("every notification delivered", || {
        let pending: i64 = srv
            .db_read()
            .query_row(
                "SELECT count(*) FROM notify_event WHERE state != 'delivered'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (pending == 0).then_some(())
    });
    assert_eq!(
        slow.count(),
        2,
        "sent again once space was back, after its pause"
    );

    // Every acknowledged change is there, once; nothing refused was made; ids are unique.
    let db = srv.db_read();
    let status = |biz: &str| -> Option<String> {
        db.query_row(
            "SELECT status FROM pay_order WHERE biz_order_no = ?1",
            [biz],
            |r| r.get(0),
        )
        .ok()
    };
    for t in [&before, &during, &after] {
        for biz in &t.created {
            assert!(status(biz).is_some(), "{biz}: acknowledged, missing");
        }
        for biz in &t.closed {
            assert_eq!(status(biz).as_deref(), Some("close"), "{biz}");
        }
        for biz in &t.not_closed {
            assert_eq!(
                status(biz).as_deref(),
                Some("wait"),
                "{biz}: close refused, yet made"
            );
        }
        for biz in &t.refused {
            assert_eq!(status(biz), None, "{biz}: refused, yet made");
        }
    }
    let (orders, ids, numbers): (i64, i64, i64) = db
        .query_row(
            "SELECT count(*), count(DISTINCT id), count(DISTINCT order_no) FROM pay_order",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    // The orders acknowledged, and KNOWN and SLOW.
    let created = before.created.len() + during.created.len() + after.created.len() + 2;
    assert_eq!((orders, ids, numbers), (created as i64, orders, orders));
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(db);
    drop(srv);
}
