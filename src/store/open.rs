//! Opening the database file: unipay's pragmas, and the schema brought up to date with the
//! steps of `MIGRATIONS`, keyed on `PRAGMA user_version` (never edit a released step).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

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

/// Why the database could not be opened.
#[derive(Debug)]
pub enum OpenError {
    Sqlite(PathBuf, rusqlite::Error),
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

/// Opens a connection with unipay's pragmas and brings the schema up to date.
///
/// Returns the connection and whether the database was brand new (no schema before). The
/// program reaches the database through `Store` and `Offline`; this is public for tests and
/// tools that fill a database directly.
pub fn open_connection(path: &Path) -> Result<(Connection, bool), OpenError> {
    let err = |e| OpenError::Sqlite(path.to_path_buf(), e);
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
