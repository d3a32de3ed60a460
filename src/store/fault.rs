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
}

impl TestFault {
    /// Parses `ioerr:JOB:BATCHES` (numbers from 1) or `stall:MS:FILE`.
    pub fn parse(spec: &str) -> Result<TestFault, String> {
        let bad = || format!("`{spec}` is not ioerr:JOB:BATCHES (numbers from 1) or stall:MS:FILE");
        let number = |s: &str| s.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(bad);
        match spec.splitn(3, ':').collect::<Vec<_>>()[..] {
            ["ioerr", job, batches] if !batches.contains(':') => Ok(TestFault {
                job: number(job)?,
                batches: number(batches)?,
                stall: None,
            }),
            ["stall", ms, file] if !file.is_empty() => Ok(TestFault {
                job: 0,
                batches: 0,
                stall: Some((number(ms)? as u64, file.into())),
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
