//! The writer thread: the one owner of the write connection, committing in groups.
//!
//! Request threads hand it a job and wait. It takes every job that is waiting (up to
//! `MAX_BATCH`), runs each inside its own savepoint of one `BEGIN IMMEDIATE` transaction, commits
//! once with `synchronous=FULL`, and only then wakes every waiter with its own result. A job that
//! fails is rolled back to its savepoint and does not disturb its neighbours; a failed commit
//! fails them all. So "my job returned Ok" always means "my change is on disk".
//!
//! Copying the WAL back into the database file (a checkpoint) is mostly not the writer's job: SQLite
//! would do it inside a commit every 1,000 pages, and on a big database that is a thousand
//! scattered page writes and an fsync while every waiter waits. A checkpointer thread with a
//! connection of its own runs a `PASSIVE` checkpoint (which never blocks the writer) at most
//! every `CHECKPOINT_GAP` after commits, so the pages are mostly copied by the time the WAL is
//! `WRITER_AUTOCHECKPOINT` pages long. Then the writer's own checkpoint in a commit only has
//! the last few pages left to copy, and SQLite starts the WAL over from its beginning (under
//! steady load the checkpointer is never exactly caught up, so that restart needs the writer).
//! `WAL_SIZE_LIMIT` truncates the WAL file when it is restarted. A reader that holds an old
//! snapshot (the background integrity check, for instance) keeps both checkpoints from
//! copying past it: the WAL grows meanwhile and is copied once it ends.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use rusqlite::functions::FunctionFlags;
use rusqlite::{ffi, Connection};

use crate::error::Error;

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 256;

/// Shortest time between two checkpoints of the checkpointer thread.
const CHECKPOINT_GAP: Duration = Duration::from_millis(25);

/// WAL pages after which the writer checkpoints itself (SQLite's default is 1,000).
const WRITER_AUTOCHECKPOINT: i64 = 4_000;

/// Bytes of WAL file kept when the WAL starts over (`journal_size_limit`).
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// State that lives with the write connection, reachable only from jobs.
pub struct WriterState {
    /// The last order id handed out (order numbers embed it, so they are unique).
    pub last_order_id: i64,
    /// Set by a job that wrote outbox rows; the writer raises `events` after the commit.
    pub events_enqueued: bool,
    /// Raised after every commit that wrote outbox rows.
    pub events: Arc<Signal>,
    /// Set by the writer for the job that `TestFault` fails (tests only).
    pub(super) fault_now: bool,
}

/// A fault injected by tests through `UNIPAY_TEST_FAULT=ioerr:JOB:BATCHES` (test-only: never
/// set it in production). In each of the first `batches` batches that have more than `job`
/// jobs, the `job`-th job (from 1) fails at its first statement with `SQLITE_IOERR`, raised by
/// SQLite itself in a statement that reads the database, so SQLite rolls the whole transaction
/// back as it may for a real I/O error, a full disk or a lack of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestFault {
    pub job: usize,
    pub batches: usize,
}

impl TestFault {
    /// Parses `ioerr:JOB:BATCHES` (both at least 1).
    pub fn parse(spec: &str) -> Result<TestFault, String> {
        let bad = || format!("`{spec}` is not ioerr:JOB:BATCHES (two numbers from 1)");
        let mut parts = spec.split(':');
        let (Some("ioerr"), Some(job), Some(batches), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let number = |s: &str| s.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(bad);
        Ok(TestFault {
            job: number(job)?,
            batches: number(batches)?,
        })
    }

    /// The index of the job of a batch of `len` jobs to fail, if this batch has one.
    fn due(&mut self, len: usize) -> Option<usize> {
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

/// The SQL function behind `TestFault`: it fails with `SQLITE_IOERR` (and no message of its
/// own, which would turn the code into a plain `SQLITE_ERROR`).
const FAULT_FUNCTION: &str = "unipay_test_ioerr";

/// Runs the failing statement of `TestFault` and returns its error.
fn inject_ioerr(conn: &Connection) -> Error {
    let sql = format!("SELECT {FAULT_FUNCTION}() FROM sqlite_schema LIMIT 1");
    match conn.query_row(&sql, [], |_| Ok(())) {
        Err(e) => e.into(),
        Ok(()) => Error::internal("the test fault did not fail"),
    }
}

/// A wake-up flag for a thread that sleeps until something happens or a timeout passes.
#[derive(Default)]
pub struct Signal {
    raised: Mutex<bool>,
    cond: Condvar,
}

impl Signal {
    pub fn raise(&self) {
        *self.raised.lock().expect("signal lock") = true;
        self.cond.notify_all();
    }

    /// Waits until raised or `timeout` passes; returns whether it was raised, and lowers it.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.raised.lock().expect("signal lock");
        let (mut guard, _) = self
            .cond
            .wait_timeout_while(guard, timeout, |raised| !*raised)
            .expect("signal lock");
        std::mem::replace(&mut *guard, false)
    }
}

/// What a job tells the writer: whether to keep its changes, and how to deliver its result
/// once the commit is known.
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection, &mut WriterState) -> (bool, Finish) + Send>;

/// A handle to the writer thread. Cloning it is cheap.
#[derive(Clone)]
pub struct Writer {
    tx: SyncSender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn`, and the checkpointer on `checkpointer`, a second
    /// connection to the same file.
    pub fn start(
        conn: Connection,
        checkpointer: Connection,
        state: WriterState,
        fault: Option<TestFault>,
    ) -> std::io::Result<Writer> {
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT)
            .and_then(|_| conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT))
            .map_err(std::io::Error::other)?;
        if fault.is_some() {
            conn.create_scalar_function(FAULT_FUNCTION, 0, FunctionFlags::SQLITE_UTF8, |_| {
                let code = ffi::Error::new(ffi::SQLITE_IOERR);
                Err::<i64, _>(rusqlite::Error::SqliteFailure(code, None))
            })
            .map_err(std::io::Error::other)?;
        }
        // One pending request is enough: it means "there are commits since the last one".
        let (ckpt_tx, ckpt_rx) = mpsc::sync_channel::<()>(1);
        thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, ckpt_rx))?;
        let (tx, rx) = mpsc::sync_channel::<Job>(4096);
        let (wake_tx, wake_rx) = mpsc::channel::<Woken>();
        // Waking the waiters of a batch is a system call per waiter: it is done on a thread of
        // its own, so that the writer goes on with the next batch meanwhile.
        thread::Builder::new()
            .name("store-waker".into())
            .spawn(move || {
                for (commit, finishes) in wake_rx {
                    for finish in finishes {
                        finish(commit.clone());
                    }
                }
            })?;
        thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, state, fault, rx, wake_tx, ckpt_tx))?;
        Ok(Writer { tx })
    }

    /// Runs `f` in the next group transaction and returns its result once committed.
    ///
    /// `f` runs on the writer thread inside a savepoint; an `Err` rolls its changes back.
    pub fn write<R, F>(&self, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> Result<R, Error> + Send + 'static,
    {
        let (done_tx, done_rx) = mpsc::sync_channel::<Result<R, Error>>(1);
        let job: Job = Box::new(move |conn, state| {
            let result = match std::mem::take(&mut state.fault_now) {
                true => Err(inject_ioerr(conn)),
                false => match catch_unwind(AssertUnwindSafe(|| f(conn, state))) {
                    Ok(r) => r,
                    Err(_) => Err(Error::internal("a store job panicked")),
                },
            };
            let keep = result.is_ok();
            let finish: Finish = Box::new(move |commit| {
                let outcome = match (result, commit) {
                    (Ok(r), Ok(())) => Ok(r),
                    (Ok(_), Err(e)) => Err(Error::internal(format!("commit failed: {e}"))),
                    (Err(e), _) => Err(e),
                };
                let _ = done_tx.send(outcome);
            });
            (keep, finish)
        });
        self.tx
            .send(job)
            .map_err(|_| Error::internal("the store writer has stopped"))?;
        done_rx
            .recv()
            .map_err(|_| Error::internal("the store writer dropped a job"))?
    }
}

/// A committed (or failed) batch: the commit's outcome and the results to deliver.
type Woken = (Result<(), String>, Vec<Finish>);

fn run(
    conn: Connection,
    mut state: WriterState,
    mut fault: Option<TestFault>,
    rx: Receiver<Job>,
    waker: Sender<Woken>,
    checkpoint: SyncSender<()>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let (mut batches, mut jobs) = (0u64, 0u64);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let began = exec(&conn, "BEGIN IMMEDIATE");
        if let Err(e) = began {
            // Dropping a job unrun closes its reply channel: its waiter gets an error.
            log::error!("store: cannot begin a transaction: {e}");
            batch.clear();
            continue;
        }
        batches += 1;
        jobs += batch.len() as u64;
        if batches % 1000 == 0 {
            log::debug!(
                "store writer: {batches} commits, {:.1} jobs per commit",
                jobs as f64 / batches as f64
            );
        }
        let saved_last_id = state.last_order_id;
        let fault_at = fault.as_mut().and_then(|f| f.due(batch.len()));
        let mut finishes: Vec<Finish> = Vec::with_capacity(batch.len());
        for (i, job) in batch.drain(..).enumerate() {
            if let Err(e) = exec(&conn, "SAVEPOINT job") {
                log::error!("store: cannot open a savepoint: {e}");
                drop(job);
                continue;
            }
            state.fault_now = fault_at == Some(i);
            let (keep, finish) = job(&conn, &mut state);
            let end = if keep {
                exec(&conn, "RELEASE job")
            } else {
                exec(&conn, "ROLLBACK TO job").and_then(|_| exec(&conn, "RELEASE job"))
            };
            if let Err(e) = end {
                log::error!("store: savepoint end failed: {e}");
            }
            finishes.push(finish);
        }
        let commit = exec(&conn, "COMMIT").map_err(|e| e.to_string());
        if let Err(e) = &commit {
            log::error!("store: commit of {} jobs failed: {e}", finishes.len());
            let _ = exec(&conn, "ROLLBACK");
            state.last_order_id = saved_last_id;
        } else {
            // Full means a checkpoint is already asked for: nothing to add.
            let _ = checkpoint.try_send(());
            if std::mem::take(&mut state.events_enqueued) {
                state.events.raise();
            }
        }
        if let Err(mpsc::SendError((commit, finishes))) = waker.send((commit, finishes)) {
            // The waker is gone (it cannot panic in practice): wake them here.
            for finish in finishes {
                finish(commit.clone());
            }
        }
    }
    log::debug!("store writer: all handles dropped, stopping");
}

/// The checkpointer thread: after commits, a `PASSIVE` checkpoint, then a pause. It stops when
/// the writer does (its sender is dropped).
fn checkpoint_loop(conn: Connection, asked: Receiver<()>) {
    while asked.recv().is_ok() {
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match result {
            Ok((wal_pages, copied)) => {
                log::trace!("checkpoint: {copied} of {wal_pages} WAL pages in the database")
            }
            Err(e) => log::warn!("store: checkpoint failed: {e}"),
        }
        thread::sleep(CHECKPOINT_GAP);
    }
}

/// Runs one cached statement: transaction control runs for every job, so it is never re-parsed.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}
