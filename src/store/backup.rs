//! The database file as a whole: the integrity checks run at start-up, and the online backup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::BUSY_TIMEOUT;

/// How often a backup step that found the source busy is retried before giving up.
const BUSY_RETRIES: u32 = 200;

/// Runs `PRAGMA quick_check` and returns its complaints (empty when the file is sound).
pub fn quick_check(c: &Connection) -> rusqlite::Result<Vec<String>> {
    check(c, "PRAGMA quick_check(20)")
}

/// Runs the full `PRAGMA integrity_check` (indexes too) and returns its complaints.
pub fn integrity_check(c: &Connection) -> rusqlite::Result<Vec<String>> {
    check(c, "PRAGMA integrity_check(20)")
}

fn check(c: &Connection, pragma: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare(pragma)?;
    let lines = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(match lines.as_slice() {
        [ok] if ok == "ok" => Vec::new(),
        _ => lines,
    })
}

/// Copies the database at `src` to a new file `out` with SQLite's online backup, as one
/// snapshot: a running server keeps writing meanwhile (WAL readers do not block the writer).
/// The copy is checked with `integrity_check` before it is given its final name.
pub fn backup(src: &Path, out: &Path) -> Result<(), String> {
    if out.exists() {
        return Err(format!(
            "{} already exists; choose a new file",
            out.display()
        ));
    }
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open database {}: {e}", src.display()))?;
    source
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    let partial = PathBuf::from(name);
    let _ = std::fs::remove_file(&partial);
    let result = copy_to(&source, &partial).and_then(|()| {
        std::fs::rename(&partial, out).map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                partial.display(),
                out.display()
            )
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn copy_to(source: &Connection, partial: &Path) -> Result<(), String> {
    let fail = |what: &str, e: rusqlite::Error| format!("{what} {}: {e}", partial.display());
    let mut dest = Connection::open(partial).map_err(|e| fail("cannot create", e))?;
    {
        let backup =
            Backup::new(source, &mut dest).map_err(|e| fail("cannot start the backup into", e))?;
        // One step copies every page under one read transaction: a consistent snapshot that a
        // concurrent writer cannot restart (it only appends to the WAL meanwhile).
        let mut busy = 0;
        loop {
            match backup.step(-1) {
                Ok(StepResult::Done) => break,
                Ok(StepResult::More) => continue,
                Ok(_) if busy < BUSY_RETRIES => {
                    busy += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(_) => return Err("the source database stayed locked".to_string()),
                Err(e) => return Err(fail("backup into", e)),
            }
        }
    }
    // The copy is a standalone file: no WAL beside it, checked, on disk.
    dest.execute_batch("PRAGMA journal_mode = DELETE;")
        .map_err(|e| fail("cannot finish", e))?;
    let problems = integrity_check(&dest).map_err(|e| fail("cannot check", e))?;
    if !problems.is_empty() {
        return Err(format!(
            "the copy failed its integrity check: {}",
            problems.join("; ")
        ));
    }
    drop(dest);
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", partial.display()))
}

/// Files up to this size are checked whole before serving; `PRAGMA quick_check` reads about
/// 80 MB a second here, so this keeps start-up well under a second. Bigger files are checked
/// whole in the background while serving (see `check_file`).
pub const CHECK_BEFORE_SERVING_MAX_BYTES: u64 = 32 << 20;

/// How far `check_file` checked a database before serving it.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// Checked whole (or there is no file yet): nothing left to do.
    Whole,
    /// Bigger than the limit: its schema was read, and the whole file must still be checked
    /// (`check_whole`), while serving.
    SchemaOnly,
}

/// Refuses a damaged database file before anything writes to it: runs `PRAGMA quick_check` on
/// `path` when it is at most `max_bytes` long; a bigger file only has its schema read here
/// (a damaged header or schema is refused at once) and `Checked::SchemaOnly` says that
/// `check_whole` must still run. A missing file passes (it is created later); the error says
/// what is wrong and what to do.
pub fn check_file(path: &Path, max_bytes: u64) -> Result<Checked, String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(Checked::Whole);
    };
    let conn = open_for_check(path)?;
    if meta.len() <= max_bytes {
        return match check_conn(path, &conn, "refusing to serve it") {
            Ok(()) => Ok(Checked::Whole),
            Err(CheckFailure::Damaged(e) | CheckFailure::NotRun(e)) => Err(e),
        };
    }
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| {
        damaged(
            path,
            format!("its schema cannot be read: {e}"),
            "refusing to serve it",
        )
    })?;
    Ok(Checked::SchemaOnly)
}

/// Why a whole-file check did not pass.
#[derive(Debug, PartialEq, Eq)]
pub enum CheckFailure {
    /// The file is damaged: `quick_check` reported problems, or SQLite found it corrupt. The
    /// message says what to do.
    Damaged(String),
    /// The check could not run (busy, out of file descriptors, …): nothing is known yet.
    NotRun(String),
}

/// Runs `PRAGMA quick_check` over the whole of `path` (on a connection of its own: it can run
/// while the server writes, and sees one snapshot).
pub fn check_whole(path: &Path) -> Result<(), CheckFailure> {
    let conn = open_for_check(path).map_err(CheckFailure::NotRun)?;
    check_conn(path, &conn, "stopping the server")
}

fn open_for_check(path: &Path) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    Ok(conn)
}

/// `then` says what happens to a damaged file ("refusing to serve it", …).
fn check_conn(path: &Path, conn: &Connection, then: &str) -> Result<(), CheckFailure> {
    match quick_check(conn) {
        Ok(problems) if problems.is_empty() => Ok(()),
        Ok(problems) => Err(CheckFailure::Damaged(damaged(
            path,
            format!("PRAGMA quick_check: {}", problems.join("; ")),
            then,
        ))),
        Err(e) if is_corruption(&e) => Err(CheckFailure::Damaged(damaged(
            path,
            format!("PRAGMA quick_check failed: {e}"),
            then,
        ))),
        Err(e) => Err(CheckFailure::NotRun(format!(
            "cannot check database {}: PRAGMA quick_check failed: {e}",
            path.display()
        ))),
    }
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

fn damaged(path: &Path, why: String, then: &str) -> String {
    format!(
        "database {} is damaged ({why}); {then}. Restore the last backup \
         (see `unipay backup --help`) or repair the file with the sqlite3 shell's `.recover`",
        path.display()
    )
}
