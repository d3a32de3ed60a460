//! A missing database file is not a fresh start: `serve --no-create` (or `UNIPAY_NO_CREATE=1`)
//! refuses to start without it, and a database file that is missing while its `-wal` or `-shm`
//! file is there is refused in any mode, by `serve` (exit code 2) and by the other commands.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// What a `serve` that is expected to refuse did: its exit code, stdout and stderr. Fails the
/// test if it is still running after the deadline (it started instead).
fn serve_refused(
    db: &Path,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let mut child = Command::new(bin())
        .args(["serve", "--db", path_str(db), "--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("UNIPAY_DB")
        .env_remove("UNIPAY_NO_CREATE")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn unipay serve");
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve {extra:?} {envs:?} on {} started", db.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), out, err)
}

fn with_ext(db: &Path, ext: &str) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(ext);
    name.into()
}

#[test]
fn no_create_refuses_a_missing_or_empty_database() {
    let dir = temp_dir("no-create");
    let db = dir.join("gw.db");
    let flag: (&[&str], &[(&str, &str)]) = (&["--no-create"], &[]);
    let env: (&[&str], &[(&str, &str)]) = (&[], &[("UNIPAY_NO_CREATE", "1")]);
    for (extra, envs) in [flag, env] {
        let (code, out, err) = serve_refused(&db, extra, envs);
        assert_eq!(code, Some(2), "{extra:?} {envs:?}: {err}");
        assert!(out.is_empty(), "it must not listen: {out}");
        assert!(
            err.contains(path_str(&db)) && err.contains("--no-create"),
            "{err}"
        );
        assert!(!db.exists(), "no database was created");
        assert!(with_ext(&db, "-wal").symlink_metadata().is_err());
    }
    // An empty file holds no database either.
    std::fs::write(&db, b"").unwrap();
    let (code, _, err) = serve_refused(&db, &["--no-create"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "the file is untouched"
    );
    std::fs::remove_file(&db).unwrap();

    // A database that is there is served with --no-create.
    let mut srv = TestServer::start();
    let app = srv.app("A_NOCREATE");
    srv.pre_pay(&app, "B1");
    srv.restart_with(&["--no-create"]);
    assert_eq!(srv.status(&app, "B1"), "wait");
    // UNIPAY_NO_CREATE=0 is no flag: a first start creates the database and its demo app.
    let fresh = TestServer::start_with_env(&[], &[("UNIPAY_NO_CREATE", "0")]);
    assert!(fresh.db.exists());
    wait_for("the demo app", || {
        let lines = fresh.stdout_lines();
        lines
            .iter()
            .any(|l| l.contains("demo merchant created"))
            .then_some(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_database_file_gone_beside_its_wal_is_never_replaced() {
    // A server is killed with changes in its WAL; then the main file goes missing (a volume
    // that half failed, a restore gone wrong).
    let mut srv = TestServer::start();
    let app = srv.app("A_ORPHAN");
    for i in 0..20 {
        srv.pre_pay(&app, &format!("O{i:02}"));
    }
    srv.kill9();
    let wal = with_ext(&srv.db, "-wal");
    let shm = with_ext(&srv.db, "-shm");
    assert!(
        wal.exists() && shm.exists(),
        "a killed server leaves its WAL"
    );
    let wal_bytes = std::fs::read(&wal).unwrap();
    let away = srv.dir.join("gw.db.away");
    std::fs::rename(&srv.db, &away).unwrap();

    // serve refuses, with or without --no-create, whether the file is missing or empty, and
    // with only the -shm left as well; nothing is written.
    for (extra, empty) in [
        (&[][..], false),
        (&["--no-create"][..], false),
        (&[][..], true),
    ] {
        if empty {
            std::fs::write(&srv.db, b"").unwrap();
        }
        let (code, out, err) = serve_refused(&srv.db, extra, &[]);
        assert_eq!(code, Some(2), "{extra:?}: {err}");
        assert!(out.is_empty(), "it must not listen: {out}");
        assert!(err.contains(path_str(&srv.db)), "{err}");
        assert!(
            err.contains(path_str(&wal)) && err.contains("refusing"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&wal).unwrap(),
            wal_bytes,
            "the WAL is untouched"
        );
        assert_eq!(std::fs::metadata(&srv.db).map(|m| m.len()).unwrap_or(0), 0);
    }
    std::fs::remove_file(&srv.db).unwrap();
    // The other commands refuse it too (exit code 1, the same message).
    let out = run_cli(&[
        "app",
        "create",
        "--db",
        path_str(&srv.db),
        "--mch-no",
        "M",
        "--app-id",
        "A",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(path_str(&wal)) && err.contains("refusing"),
        "{err}"
    );
    assert!(!srv.db.exists());
    // Only the -shm left: refused as well.
    let wal_aside = srv.dir.join("gw.db-wal.aside");
    std::fs::rename(&wal, &wal_aside).unwrap();
    let (code, _, err) = serve_refused(&srv.db, &[], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(path_str(&shm)), "{err}");

    // The database file back in place: served, with every order.
    std::fs::rename(&wal_aside, &wal).unwrap();
    std::fs::rename(&away, &srv.db).unwrap();
    srv.restart_with(&["--no-create"]);
    for i in 0..20 {
        assert_eq!(srv.status(&app, &format!("O{i:02}")), "wait");
    }
}

#[test]
fn serve_help_mentions_no_create() {
    let out = run_cli(&["serve", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--no-create") && help.contains("UNIPAY_NO_CREATE"),
        "{help}"
    );
    assert!(help.contains("-wal or -shm"), "{help}");
}
