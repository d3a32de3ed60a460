//! The store's pragmas and schema versioning, on real database files.

use std::path::PathBuf;

use super::open::MIGRATIONS;
use super::*;

/// A fresh, empty directory for one test's database.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("unipay-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_fresh_database_is_durable_wal_at_the_latest_schema_version() {
    let dir = temp_dir("fresh");
    let path = dir.join("s.db");
    let (store, fresh) = Store::open(&path, UtcOffset::CST).unwrap();
    assert!(fresh, "a new file is reported as brand new");
    // The pragmas of the connection that commits every change: the writer's.
    let (synchronous, journal_mode, user_version) = store
        .write(|c, _| {
            let synchronous: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            let journal_mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            let user_version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            Ok((synchronous, journal_mode, user_version))
        })
        .unwrap();
    assert_eq!(synchronous, 2, "synchronous = FULL");
    assert_eq!(journal_mode, "wal");
    assert_eq!(user_version, MIGRATIONS.len() as i64);
    drop(store);

    // Opening it again migrates nothing and is not brand new.
    let (conn, fresh) = open_connection(&path).unwrap();
    assert!(!fresh);
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, MIGRATIONS.len() as i64);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_database_from_a_newer_unipay_is_refused() {
    let dir = temp_dir("newer");
    let path = dir.join("s.db");
    let known = MIGRATIONS.len() as i64;
    {
        let (conn, _) = open_connection(&path).unwrap();
        conn.pragma_update(None, "user_version", known + 1).unwrap();
    }
    match Store::open(&path, UtcOffset::CST) {
        Err(OpenError::TooNew {
            path: p,
            found,
            known: k,
        }) => {
            assert_eq!(p, path);
            assert_eq!((found, k), (known + 1, known));
        }
        Err(other) => panic!("expected TooNew, got {other}"),
        Ok(_) => panic!("a database from a newer unipay was opened"),
    }
    // Nothing was changed by the refusal.
    let conn = Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, known + 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_big_file_is_checked_whole_after_its_schema_and_damage_is_found_either_way() {
    let dir = temp_dir("check");
    let path = dir.join("c.db");
    {
        // 200 pages of one row each past the schema.
        let (c, _) = open_connection(&path).unwrap();
        c.execute_batch("CREATE TABLE filler (x BLOB NOT NULL)")
            .unwrap();
        for _ in 0..200 {
            c.execute("INSERT INTO filler (x) VALUES (zeroblob(3500))", [])
                .unwrap();
        }
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
            .unwrap();
    }
    assert_eq!(check_file(&path, u64::MAX), Ok(Checked::Whole));
    assert_eq!(check_file(&path, 0), Ok(Checked::SchemaOnly));
    assert_eq!(check_whole(&path), Ok(()));
    assert_eq!(
        check_file(&dir.join("missing.db"), 0),
        Ok(Checked::Whole),
        "a file yet to be created passes"
    );

    // The b-tree header of a page in the middle of the file (a filler page, not the schema).
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096;
    let at = (bytes.len() / page / 2) * page;
    bytes[at..at + 8].fill(0xA5);
    std::fs::write(&path, &bytes).unwrap();

    let whole = check_file(&path, u64::MAX).unwrap_err();
    assert!(
        whole.contains("is damaged") && whole.contains("quick_check"),
        "{whole}"
    );
    // Past the size limit only the schema is read before serving; the whole check finds it.
    assert_eq!(check_file(&path, 0), Ok(Checked::SchemaOnly));
    match check_whole(&path) {
        Err(CheckFailure::Damaged(later)) => assert!(
            later.contains("is damaged") && later.contains("quick_check"),
            "{later}"
        ),
        other => panic!("{other:?}"),
    }
    // A file that cannot be opened is not called damaged: nothing is known about it.
    assert!(matches!(
        check_whole(&dir.join("no-such-dir").join("x.db")),
        Err(CheckFailure::NotRun(_))
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn step_4_keeps_the_closes_and_lets_a_sync_close() {
    let dir = temp_dir("step4");
    let path = dir.join("s.db");
    {
        // A database of steps 1–3 with a close record and a close intent.
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        let tx = conn.transaction().unwrap();
        for step in &MIGRATIONS[..3] {
            tx.execute_batch(step).unwrap();
        }
        tx.execute_batch(
            "INSERT INTO merchant (mch_no, created_at) VALUES ('M1', 1);
             INSERT INTO app (app_id, mch_no, sign_type, secret, created_at)
                 VALUES ('A1', 'M1', 'md5', 's', 1);
             INSERT INTO pay_order (id, order_no, mch_no, app_id, biz_order_no, title, amount,
                 refundable_balance, status, expired_time, created_at, updated_at)
                 VALUES (7, 'P1', 'M1', 'A1', 'B1', 't', 1, 1, 'progress', 9, 1, 1);
             INSERT INTO close_record (id, order_id, order_no, biz_order_no, close_type, closed,
                 actor, created_at) VALUES (3, 7, 'P1', 'B1', 'close', 0, 'api', 5);
             INSERT INTO close_intent (order_id, close_type, actor, created_at)
                 VALUES (7, 'cancel', 'expiry', 6);",
        )
        .unwrap();
        let sync = tx.execute(
            "INSERT INTO close_record (order_id, order_no, biz_order_no, close_type, closed,
                 actor, created_at) VALUES (7, 'P1', 'B1', 'close', 1, 'sync', 6)",
            [],
        );
        assert!(sync.is_err(), "steps 1–3 refuse a close by a sync");
        tx.pragma_update(None, "user_version", 3).unwrap();
        tx.commit().unwrap();
    }
    let (conn, fresh) = open_connection(&path).unwrap();
    assert!(!fresh);
    let kept: (i64, String, i64) = conn
        .query_row(
            "SELECT id, actor, created_at FROM close_record WHERE order_id = 7",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(kept, (3, "api".to_string(), 5));
    let intent: (String, String) = conn
        .query_row("SELECT close_type, actor FROM close_intent", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(intent, ("cancel".to_string(), "expiry".to_string()));
    conn.execute(
        "INSERT INTO close_record (order_id, order_no, biz_order_no, close_type, closed, actor,
             created_at) VALUES (7, 'P1', 'B1', 'close', 1, 'sync', 6)",
        [],
    )
    .unwrap();
    conn.execute("DELETE FROM close_intent", []).unwrap();
    conn.execute(
        "INSERT INTO close_intent (order_id, close_type, actor, created_at)
             VALUES (7, 'close', 'sync', 7)",
        [],
    )
    .unwrap();
    let bad = conn.execute(
        "INSERT INTO close_record (order_id, order_no, biz_order_no, close_type, closed, actor,
             created_at) VALUES (7, 'P1', 'B1', 'close', 1, 'nobody', 6)",
        [],
    );
    assert!(bad.is_err(), "the CHECK is still there");
    let index: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'close_record_order'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(index, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
