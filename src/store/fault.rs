//! `UNIPAY_TEST_FAULT`: a fault the writer injects for tests. Test-only: never set it in
//! production.
//!
//! `ioerr:JOB:BATCHES`: in each of the first `BATCHES` batches that have more than `JOB` jobs,
//! the `JOB`-th job (from 1) fails at its first statement with `SQLITE_IOERR`. The error is
//! raised by SQLite itself, in a statement that reads the database, so SQLite rolls the whole
//! transaction back, as it may for a real I/O error, a full disk or a lack of memory.
//!
//! `stall:MS:FILE`: when the file `FILE` exists, the next batch removes it and waits `MS`
//! milliseconds before it begins, as a disk that does not answer an fsync would make it (for
//! the health check; the test decides when by creating the file).
//!
//! `commit:FILE`: when the file `FILE` exists, the next batch that changed rows removes it, and
//! its `COMMIT` fails: the writer's commit hook refuses it, so SQLite rolls the transaction back
//! and `COMMIT` returns an error, as it does when the disk fails the commit's write or fsync.
//! Every job of the batch must then be told the error (none of it is on disk). A batch that
//! changed nothing (a sweep with nothing to do) leaves the file, so only the test's request is
//! hit.

use rusqlite::functions::FunctionFlags;
use rusqlite::{ffi, Connection};

use crate::error::Error;

/// A fault for tests (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFault {
    pub job: usize,
    pub batches: usize,
    /// `stall:…`: how long a batch waits, and the file that asks for it.
    pub stall: Option<(u64, std::path::PathBuf)>,
    /// `commit:…`: the file that asks for a failed commit.
    pub commit: Option<std::path::PathBuf>,
}

impl TestFault {
    /// Parses `ioerr:JOB:BATCHES` (numbers from 1), `stall:MS:FILE` or `commit:FILE`.
    pub fn parse(spec: &str) -> Result<TestFault, String> {
        let bad = || {
            format!(
                "`{spec}` is not ioerr:JOB:BATCHES (numbers from 1), stall:MS:FILE or commit:FILE"
            )
        };
        if let Some(file) = spec.strip_prefix("commit:") {
            if file.is_empty() {
                return Err(bad());
            }
            return Ok(TestFault {
                job: 0,
                batches: 0,
                stall: None,
                commit: Some(file.into()),
            });
        }
        let number = |s: &str| s.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(bad);
        match spec.splitn(3, ':').collect::<Vec<_>>()[..] {
            ["ioerr", job, batches] if !batches.contains(':') => Ok(TestFault {
                job: number(job)?,
                batches: number(batches)?,
                stall: None,
                commit: None,
            }),
            ["stall", ms, file] if !file.is_empty() => Ok(TestFault {
                job: 0,
                batches: 0,
                stall: Some((number(ms)? as u64, file.into())),
                commit: None,
            }),
            _ => Err(bad()),
        }
    }

    /// How long this batch waits before it begins: `stall:…`'s time when its file exists.
    pub(super) fn stall(&mut self) -> Option<std::time::Duration> {
        let (ms, file) = self.stall.as_ref()?;
        std::fs::remove_file(file).ok()?;
        log::warn!("UNIPAY_TEST_FAULT: a batch waits {ms} ms before it begins");
        Some(std::time::Duration::from_millis(*ms))
    }

    /// Whether this batch's `COMMIT` is to fail: `commit:…`'s file exists (it is removed) and
    /// the batch `wrote` rows.
    pub(super) fn fail_commit(&mut self, wrote: bool) -> bool {
        let Some(file) = self.commit.as_ref().filter(|_| wrote) else {
            return false;
        };
        if std::fs::remove_file(file).is_err() {
            return false;
        }
        log::warn!("UNIPAY_TEST_FAULT: the commit hook refuses this batch's COMMIT");
        true
    }

    /// The index of the job to fail in a batch of `len` jobs, if this batch has one.
    pub(super) fn due(&mut self, len: usize) -> Option<usize> {
        if self.batches == 0 || len <= self.job {
            return None;
        }
        self.batches -= 1;
        log::warn!(
            "UNIPAY_TEST_FAULT: job {} of a batch of {len} fails with SQLITE_IOERR",
            self.job
        );
        Some(self.job - 1)
    }
}

/// The SQL function behind the fault.
const FUNCTION: &str = "unipay_test_ioerr";

/// Defines the failing function on the writer's connection. It fails with `SQLITE_IOERR` and
/// no message of its own (a message would turn the code into a plain `SQLITE_ERROR`).
pub(super) fn install(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(FUNCTION, 0, FunctionFlags::SQLITE_UTF8, |_| {
        let code = ffi::Error::new(ffi::SQLITE_IOERR);
        Err::<i64, _>(rusqlite::Error::SqliteFailure(code, None))
    })
}

/// Runs the failing statement and returns its error.
pub(super) fn inject_ioerr(conn: &Connection) -> Error {
    let sql = format!("SELECT {FUNCTION}() FROM sqlite_schema LIMIT 1");
    match conn.query_row(&sql, [], |_| Ok(())) {
        Err(e) => e.into(),
        Ok(()) => Error::internal("the test fault did not fail"),
    }
}
