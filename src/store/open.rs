//! Opening the database file: unipay's pragmas, and the schema brought up to date with the
//! steps of `MIGRATIONS`, keyed on `PRAGMA user_version` (never edit a released step).

use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{ffi, Connection};

use super::STATEMENT_CACHE;

/// The ordered schema steps; step N brings `user_version` to N. Never edit a released step.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../schema.sql"),
    include_str!("../../migrations/002-channels.sql"),
    include_str!("../../migrations/003-refunds.sql"),
    include_str!("../../migrations/004-sync-closes.sql"),
];

/// How long a connection waits for another process's lock (e.g. `unipay app create`).
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The database file grows by this much at a time (see `grow_in_chunks`).
const CHUNK_SIZE: c_int = 1 << 20;

/// Makes the database file grow by `CHUNK_SIZE` at a time (`SQLITE_FCNTL_CHUNK_SIZE`) when
/// `conn` writes to it, which in WAL mode only a checkpoint does. The file then mostly has room
/// for new pages already, so that a checkpoint rarely needs it to grow: on a full disk the
/// writer can still copy the WAL in and truncate it, giving the WAL's space back (`full`).
pub(super) fn grow_in_chunks(conn: &Connection) -> rusqlite::Result<()> {
    let mut size = CHUNK_SIZE;
    // SAFETY: the handle is that of `conn`, alive for the call and used by this thread only;
    // SQLite reads one int through the pointer, which outlives the call.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_CHUNK_SIZE,
            (&mut size as *mut c_int).cast(),
        )
    };
    match rc {
        ffi::SQLITE_OK => Ok(()),
        code => Err(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)),
    }
}

/// Whether `path` holds no database: no file, or an empty one (SQLite makes a new database of
/// either). An error other than "not found" counts as there: opening it says what is wrong.
pub fn is_absent(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => meta.len() == 0,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// The `-wal` and `-shm` files of the database at `path` that exist.
pub fn leftovers(path: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm"]
        .iter()
        .map(|ext| {
            let mut name = path.as_os_str().to_owned();
            name.push(ext);
            PathBuf::from(name)
        })
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect()
}

/// The message for a database file that is absent while its `-wal` or `-shm` file is there.
pub fn orphaned_message(path: &Path, found: &[PathBuf]) -> String {
    let found: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
    format!(
        "database {} is missing or empty but {} is there: refusing to start a new database \
         beside the files of one that is gone. Restore the database file (see `unipay backup \
         --help`), or move {} aside if that database is really not wanted",
        path.display(),
        found.join(" and "),
        found.join(" and ")
    )
}

/// Why the database could not be opened.
#[derive(Debug)]
pub enum OpenError {
    Sqlite(PathBuf, rusqlite::Error),
    /// The database file is missing or empty but its `-wal` or `-shm` file is there.
    Orphaned(PathBuf, Vec<PathBuf>),
    /// The writer thread could not be started.
    Thread(std::io::Error),
    /// The file was written by a newer unipay.
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Sqlite(path, e) => write!(f, "cannot open database {}: {e}", path.display()),
            OpenError::Orphaned(path, found) => f.write_str(&orphaned_message(path, found)),
            OpenError::Thread(e) => write!(f, "cannot start the store writer thread: {e}"),
            OpenError::TooNew { path, found, known } => write!(
                f,
                "database {} has schema version {found}, newer than this unipay knows ({known}); \
                 use a newer unipay",
                path.display()
            ),
        }
    }
}

impl std::error::Error for OpenError {}

/// Opens a connection with unipay's pragmas and brings the schema up to date. A database file
/// that is missing or empty while its `-wal` or `-shm` file is there is refused.
///
/// Returns the connection and whether the database was brand new (no schema before). The
/// program reaches the database through `Store` and `Offline`; this is public for tests and
/// tools that fill a database directly.
pub fn open_connection(path: &Path) -> Result<(Connection, bool), OpenError> {
    let err = |e| OpenError::Sqlite(path.to_path_buf(), e);
    // A new database beside the WAL of a missing one would lose that WAL, or mix the two.
    if is_absent(path) {
        let found = leftovers(path);
        if !found.is_empty() {
            return Err(OpenError::Orphaned(path.to_path_buf(), found));
        }
    }
    let mut conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;",
    )
    .map_err(err)?;
    let fresh = migrate(&mut conn, path)?;
    Ok((conn, fresh))
}

/// Applies the steps after the current `user_version` in one transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<bool, OpenError> {
    let err = |e| OpenError::Sqlite(path.to_path_buf(), e);
    let known = MIGRATIONS.len() as i64;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if found > known {
        return Err(OpenError::TooNew {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(step).map_err(err)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(err)?;
    }
    tx.commit().map_err(err)?;
    Ok(found == 0)
}
