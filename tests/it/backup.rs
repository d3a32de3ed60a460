//! Backups and the integrity check: `unipay backup` taken under load restores every
//! acknowledged order, its command line, and a damaged database refused at start or, when too big
//! to check before serving, found in the background and stopping the server.

use std::io::{BufRead, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

#[test]
fn backup_taken_during_load_restores_every_acknowledged_order() {
    let mut srv = TestServer::start();
    let app = srv.create_app("M_BAK", "A_BAK", &["--secret", "bak-secret"]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let n = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (addr, app) = (srv.addr.clone(), app.clone());
            let (stop, acked, n) = (stop.clone(), acked.clone(), n.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let biz = format!("B_BAK{:05}", n.fetch_add(1, Ordering::SeqCst));
                    let body = app.signed(
                        "/unipay/gateway/prePay",
                        json!({"bizOrderNo": biz, "title": "t", "amount": "2.00"}),
                    );
                    let raw = serde_json::to_vec(&body).unwrap();
                    let r = http(&addr, "POST", "/unipay/gateway/prePay", &raw);
                    assert_eq!(r.code(), 0, "{}", r.body);
                    acked.lock().unwrap().push(biz);
                }
            })
        })
        .collect();
    wait_for("some orders", || {
        (acked.lock().unwrap().len() >= 100).then_some(())
    });
    let before: Vec<String> = acked.lock().unwrap().clone();
    let out = srv.dir.join("backup.db");
    let res = run_cli(&["backup", "--db", path_str(&srv.db), "--out", path_str(&out)]);
    assert!(
        res.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    wait_for("load after the backup", || {
        (acked.lock().unwrap().len() >= before.len() + 50).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    // A second backup to the same file is refused: nothing is overwritten.
    let again = run_cli(&["backup", "--db", path_str(&srv.db), "--out", path_str(&out)]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // The copy is sound and holds every order acknowledged before the backup started.
    {
        let c = rusqlite::Connection::open(&out).unwrap();
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let mut st = c
            .prepare("SELECT count(*) FROM pay_order WHERE biz_order_no = ?1")
            .unwrap();
        for biz in &before {
            let n: i64 = st.query_row([biz], |r| r.get(0)).unwrap();
            assert_eq!(n, 1, "{biz} acknowledged before the backup is missing");
        }
    }
    // Restore as the README says: stop, put the copy in place, remove -wal/-shm, start.
    srv.kill9();
    std::fs::copy(&out, &srv.db).unwrap();
    for ext in ["-wal", "-shm"] {
        let mut p = srv.db.as_os_str().to_owned();
        p.push(ext);
        let _ = std::fs::remove_file(p);
    }
    srv.restart();
    assert_eq!(srv.status(&app, &before[0]), "wait");
    assert_eq!(srv.status(&app, before.last().unwrap()), "wait");
    srv.pre_pay(&app, "B_AFTER_RESTORE");
}

/// A database with many pages, no WAL beside it.
fn make_big_db(path: &Path) {
    let (mut c, _) = unipay::store::open_connection(path).unwrap();
    let tx = c.transaction().unwrap();
    for i in 0..4000 {
        tx.execute(
            "INSERT INTO merchant (mch_no, enabled, created_at) VALUES (?1, 1, ?2)",
            rusqlite::params![format!("M{i:08}-{}", "x".repeat(20)), i],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
        .unwrap();
}

#[test]
fn a_damaged_database_is_refused_at_start() {
    let dir = temp_dir("damaged");
    let good = dir.join("good.db");
    make_big_db(&good);
    let bad = dir.join("bad.db");
    std::fs::copy(&good, &bad).unwrap();
    // Overwrite 64 bytes in the middle of a page in the middle of the file.
    let mut bytes = std::fs::read(&bad).unwrap();
    let page = 4096;
    let pages = bytes.len() / page;
    assert!(pages > 20, "{pages} pages");
    let at = (pages / 2) * page + page / 2;
    bytes[at..at + 64].fill(0xA5);
    std::fs::write(&bad, &bytes).unwrap();

    let serve = |db: &Path| {
        Command::new(bin())
            .args(["serve", "--db", path_str(db), "--listen", "127.0.0.1:0"])
            .env_remove("UNIPAY_DB")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = serve(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served a damaged database: {stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "it must not listen"
    );
    assert!(
        stderr.contains("is damaged") && stderr.contains("quick_check"),
        "{stderr}"
    );
    assert!(stderr.contains(path_str(&bad)), "{stderr}");

    // The same file undamaged starts (and is then stopped).
    let mut child = Command::new(bin())
        .args(["serve", "--db", path_str(&good), "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 12];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"listening on");
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damage_in_a_big_database_is_found_after_start_up_stops_writes_and_fails_healthz() {
    let dir = temp_dir("damaged-big");
    let db = dir.join("big.db");
    {
        // Past the size checked before serving: 10,000 pages of one row each.
        let (c, _) = unipay::store::open_connection(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE filler (x BLOB NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
             INSERT INTO filler (x) SELECT zeroblob(3500) FROM n;
             PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;",
        )
        .unwrap();
    }
    let made = run_cli(&[
        "app",
        "create",
        "--db",
        path_str(&db),
        "--mch-no",
        "M_DMG",
        "--app-id",
        "A_DMG",
    ]);
    assert!(made.status.success(), "{made:?}");
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() as u64 > unipay::store::CHECK_BEFORE_SERVING_MAX_BYTES);
    // The b-tree header of a page in the middle of the file (a filler page, not the schema).
    let page = 4096;
    let at = (bytes.len() / page / 2) * page;
    bytes[at..at + 8].fill(0xA5);
    std::fs::write(&db, &bytes).unwrap();

    let mut child = Command::new(bin())
        .args(["serve", "--db", path_str(&db), "--listen", "127.0.0.1:0"])
        .env_remove("UNIPAY_DB")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It listens at once (the whole check would hold a restart of a big database up)...
    // (stdout stays open: the admin token is printed after the first line.)
    let mut stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(&mut stdout)
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    // ... and stops writing as soon as the check in the background finds the damage; its
    // health check says so.
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        let health = http(&addr, "GET", "/healthz", b"");
        if health.status != 200 {
            break health;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("/healthz still 200 for a damaged database after 60 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(health.status, 503);
    assert!(health.body.contains("damaged"), "{}", health.body);
    // A write through the server is refused.
    let url = format!("http://{addr}");
    let write = run_cli(&[
        "call",
        "--db",
        path_str(&db),
        "--app-id",
        "A_DMG",
        "--url",
        &url,
        "prePay",
        r#"{"bizOrderNo":"D1","title":"t","amount":"1.00"}"#,
    ]);
    let printed = String::from_utf8_lossy(&write.stdout);
    assert!(
        printed.contains("10500") && printed.contains("数据库文件已损坏"),
        "{printed} {}",
        String::from_utf8_lossy(&write.stderr)
    );
    // A stop cannot commit what it holds: exit 1.
    let status = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("runs in the background"), "{stderr}");
    assert!(
        stderr.contains("is damaged") && stderr.contains("quick_check"),
        "{stderr}"
    );
    assert!(stderr.contains(path_str(&db)), "{stderr}");
    drop(stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn backup_command_line() {
    let out = run_cli(&["backup", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage: unipay backup --db PATH --out FILE"),
        "{help}"
    );
    assert!(help.contains("To restore"), "{help}");
    assert!(String::from_utf8_lossy(&run_cli(&["--help"]).stdout).contains("backup"));
    #[rustfmt::skip]
    let cases = [
        (&["backup", "--db", "x.db"][..],                         "--out"),
        (&["backup", "--out", "y.db"],                            "--db"),
        (&["backup", "--db", "x.db", "--out", "y.db", "--bogus"], "--bogus"),
    ];
    for (args, needle) in cases {
        let out = run_cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{args:?}"
        );
    }
    let dir = temp_dir("backup-cli");
    let missing = dir.join("missing.db");
    let out = run_cli(&[
        "backup",
        "--db",
        path_str(&missing),
        "--out",
        path_str(&dir.join("b.db")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database at"));
    assert!(!missing.exists(), "no database is created by a backup");
    let _ = std::fs::remove_dir_all(&dir);
}
