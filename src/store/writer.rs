//! The writer thread: the one owner of the write connection, committing in groups.
//!
//! Request threads hand it a job and wait. It takes every job that is waiting (up to
//! `MAX_BATCH`), runs each inside its own savepoint of one `BEGIN IMMEDIATE` transaction, commits
//! once with `synchronous=FULL`, and only then wakes every waiter with its own result. A job that
//! fails is rolled back to its savepoint and does not disturb its neighbours; a failed commit
//! fails them all. So "my job returned Ok" always means "my change is on disk".
//!
//! When a statement fails with an I/O error, a full disk or a lack of memory, SQLite may roll
//! the whole transaction back by itself. The writer looks after every step whether the
//! connection is back in autocommit mode: then the batch's transaction is gone, every job of
//! the batch fails (none of it is on disk), the jobs not yet run fail without running (their
//! savepoints would open transactions of their own), and what the writer caches of the database
//! (`WriterState::last_order_id`) is read again before the next batch. A commit hook refuses
//! every commit but the writer's own `COMMIT`, so no statement can commit by itself either.
//! A full disk is one episode, logged when writes start failing and when they work again,
//! during which the writer gives the WAL's space back (`full`).
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::fault::{self, TestFault};
use super::full::FullDisk;
use crate::error::Error;
use crate::metrics;

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
    fault_now: bool,
}

impl WriterState {
    /// The state of a new writer: what it caches, read from the database.
    pub(super) fn load(conn: &Connection, events: Arc<Signal>) -> rusqlite::Result<WriterState> {
        let mut state = WriterState {
            last_order_id: 0,
            events_enqueued: false,
            events,
            fault_now: false,
        };
        state.reload(conn)?;
        Ok(state)
    }

    /// Reads what the writer caches from the database again.
    fn reload(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        self.last_order_id = super::orders::last_order_id(conn)?;
        Ok(())
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

/// Delivers a job's result once the outcome of its batch is known.
type Finish = Box<dyn FnOnce(Result<(), Error>) + Send>;
/// What a job that ran tells the writer: `Ok` to keep its changes, or its error (its changes
/// are rolled back to its savepoint); and its `Finish`.
type Ran = (Result<(), Error>, Finish);
/// A job runs on the write connection inside its savepoint, or is given `None` when its
/// batch's transaction is already gone: then it does not run and fails with its batch.
type Job = Box<dyn FnOnce(Option<(&Connection, &mut WriterState)>) -> Ran + Send>;

/// A handle to the writer thread. Cloning it is cheap.
#[derive(Clone)]
pub struct Writer {
    tx: SyncSender<Job>,
    shared: Arc<Shared>,
}

/// A batch that has not committed after this long means the writer is stuck (a disk that does
/// not answer an fsync, a job that never ends).
const STUCK: Duration = Duration::from_secs(5);

/// What the writer thread tells `Writer::health`.
struct Shared {
    epoch: Instant,
    /// When the batch under way began, in milliseconds since `epoch` plus one; 0 when idle.
    busy_since: AtomicU64,
    /// Whether writes are refused for a full disk now.
    full: AtomicBool,
    /// Whether the writer thread has ended.
    gone: AtomicBool,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }
}

/// Marks the writer gone when its thread ends, however it ends.
struct Gone(Arc<Shared>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.gone.store(true, Ordering::SeqCst);
    }
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
            fault::install(&conn).map_err(std::io::Error::other)?;
        }
        let committing = only_commit_commits(&conn);
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
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            busy_since: AtomicU64::new(0),
            full: AtomicBool::new(false),
            gone: AtomicBool::new(false),
        });
        let thread_shared = shared.clone();
        thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let _gone = Gone(thread_shared.clone());
                let batches = Batches {
                    shared: thread_shared,
                    conn,
                    state,
                    fault,
                    committing,
                    stale: false,
                    full: FullDisk::default(),
                };
                batches.run(rx, wake_tx, ckpt_tx)
            })?;
        Ok(Writer { tx, shared })
    }

    /// Whether the writer is alive and committing: `Err` when its thread has ended, when
    /// writes are refused for a full disk, or when a batch has not committed within `STUCK`.
    pub fn health(&self) -> Result<(), String> {
        let s = &self.shared;
        if s.gone.load(Ordering::SeqCst) {
            return Err("the store's writer has stopped".into());
        }
        if s.full.load(Ordering::SeqCst) {
            return Err("the disk is full: writes are refused".into());
        }
        let since = s.busy_since.load(Ordering::SeqCst);
        let busy = Duration::from_millis(s.now_ms().saturating_sub(since));
        if since != 0 && busy > STUCK {
            return Err(format!(
                "the store's writer has not committed for {:.0} s",
                busy.as_secs_f64()
            ));
        }
        Ok(())
    }

    /// Runs `f` in the next group transaction and returns its result once committed.
    ///
    /// `f` runs on the writer thread inside a savepoint; an `Err` rolls its changes back.
    pub fn write<R, F>(&self, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> Result<R, Error> + Send + 'static,
    {
        let (job, done) = job(f);
        self.tx
            .send(job)
            .map_err(|_| Error::internal("the store writer has stopped"))?;
        done.recv()
            .map_err(|_| Error::internal("the store writer dropped a job"))?
    }
}

/// Wraps `f` as a job, and the channel its result comes back on.
fn job<R, F>(f: F) -> (Job, Receiver<Result<R, Error>>)
where
    R: Send + 'static,
    F: FnOnce(&Connection, &mut WriterState) -> Result<R, Error> + Send + 'static,
{
    let (done_tx, done_rx) = mpsc::sync_channel::<Result<R, Error>>(1);
    let job: Job = Box::new(move |ctx| {
        let result = ctx.map(|(conn, state)| match std::mem::take(&mut state.fault_now) {
            true => Err(fault::inject_ioerr(conn)),
            false => catch_unwind(AssertUnwindSafe(|| f(conn, state)))
                .unwrap_or_else(|_| Err(Error::internal("a store job panicked"))),
        });
        let ran = match &result {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        };
        let finish: Finish = Box::new(move |batch| {
            let outcome = match (result, batch) {
                (Some(Err(e)), _) | (_, Err(e)) => Err(e),
                (Some(Ok(r)), Ok(())) => Ok(r),
                (None, Ok(())) => Err(Error::internal("a store job was not run")),
            };
            let _ = done_tx.send(outcome);
        });
        (ran, finish)
    });
    (job, done_rx)
}

/// Installs a commit hook that turns every commit into a rollback unless the returned flag is
/// set, which the writer does only around its own `COMMIT`. A statement that would commit by
/// itself (in autocommit mode, because SQLite rolled the transaction back under a job that
/// went on) fails instead, and a `RELEASE` cannot commit a transaction its `SAVEPOINT` began.
fn only_commit_commits(conn: &Connection) -> Arc<AtomicBool> {
    let committing = Arc::new(AtomicBool::new(false));
    let allowed = committing.clone();
    conn.commit_hook(Some(move || !allowed.load(Ordering::SeqCst)));
    committing
}

/// A committed (or failed) batch: its outcome and the results to deliver.
type Woken = (Result<(), Error>, Vec<Finish>);

/// The writer thread's own state.
struct Batches {
    conn: Connection,
    state: WriterState,
    fault: Option<TestFault>,
    /// Set only while the writer's `COMMIT` runs (see `only_commit_commits`).
    committing: Arc<AtomicBool>,
    /// A batch failed since `state` was last read from the database.
    stale: bool,
    /// Whether writes fail for a full disk.
    full: FullDisk,
    /// What `Writer::health` reads.
    shared: Arc<Shared>,
}

impl Batches {
    fn run(mut self, rx: Receiver<Job>, waker: Sender<Woken>, checkpoint: SyncSender<()>) {
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
            batches += 1;
            jobs += batch.len() as u64;
            if batches % 1000 == 0 {
                log::debug!(
                    "store writer: {batches} commits, {:.1} jobs per commit",
                    jobs as f64 / batches as f64
                );
            }
            let fault_at = self.fault.as_mut().and_then(|f| f.due(batch.len()));
            let changes = self.conn.total_changes();
            let began = Instant::now();
            self.shared
                .busy_since
                .store(self.shared.now_ms(), Ordering::SeqCst);
            let size = batch.len();
            if let Some(wait) = self.fault.as_mut().and_then(TestFault::stall) {
                thread::sleep(wait);
            }
            let (outcome, finishes) = self.run_batch(&mut batch, fault_at);
            self.shared.busy_since.store(0, Ordering::SeqCst);
            let m = metrics::get();
            m.batch_jobs.observe(size as f64);
            m.commit_seconds.observe_duration(began.elapsed());
            match &outcome {
                Ok(()) => {
                    let wrote = self.conn.total_changes() != changes;
                    self.full.committed(&self.conn, wrote);
                    // Full means a checkpoint is already asked for: nothing to add.
                    let _ = checkpoint.try_send(());
                    if std::mem::take(&mut self.state.events_enqueued) {
                        self.state.events.raise();
                    }
                }
                Err(e) if e.is_store_full() => {
                    self.state.events_enqueued = false;
                    self.full.refused(&self.conn, finishes.len());
                }
                Err(e) => {
                    self.state.events_enqueued = false;
                    log::error!(
                        "store: a batch of {} job(s) failed, none of it is on disk: {e}",
                        finishes.len()
                    );
                }
            }
            self.shared.full.store(self.full.active(), Ordering::SeqCst);
            if let Err(mpsc::SendError((outcome, finishes))) = waker.send((outcome, finishes)) {
                // The waker is gone (it cannot panic in practice): wake them here.
                for finish in finishes {
                    finish(outcome.clone());
                }
            }
        }
        log::debug!("store writer: all handles dropped, stopping");
    }

    /// Runs `batch` in one transaction and commits it. Returns the batch's outcome (what every
    /// job that ran and kept its changes, and every job that did not run, is told) and the
    /// jobs' finishes, in order.
    fn run_batch(
        &mut self,
        batch: &mut Vec<Job>,
        fault_at: Option<usize>,
    ) -> (Result<(), Error>, Vec<Finish>) {
        let mut finishes = Vec::with_capacity(batch.len());
        let changes = self.conn.total_changes();
        let mut jobs = batch.drain(..).enumerate();
        let mut outcome = self.begin();
        let conn = &self.conn;
        if outcome.is_ok() {
            for (i, job) in jobs.by_ref() {
                if let Err(e) = exec(conn, "SAVEPOINT job") {
                    outcome = Err(batch_error("cannot open a savepoint", e.into()));
                    finishes.push(job(None).1);
                    break;
                }
                self.state.fault_now = fault_at == Some(i);
                let (ran, finish) = job(Some((conn, &mut self.state)));
                finishes.push(finish);
                if let Err(e) = end_job(conn, ran) {
                    outcome = Err(e);
                    break;
                }
            }
        }
        // The transaction is gone: the jobs left fail without running.
        for (_, job) in jobs {
            finishes.push(job(None).1);
        }
        if outcome.is_ok() {
            // `UNIPAY_TEST_FAULT=commit:…` (tests only): the commit hook refuses this COMMIT.
            let wrote = conn.total_changes() != changes;
            let fail = self.fault.as_mut().is_some_and(|f| f.fail_commit(wrote));
            self.committing.store(!fail, Ordering::SeqCst);
            outcome = exec(conn, "COMMIT").map_err(|e| batch_error("commit failed", e.into()));
            self.committing.store(false, Ordering::SeqCst);
        }
        if outcome.is_err() {
            if !conn.is_autocommit() {
                if let Err(e) = exec(conn, "ROLLBACK") {
                    log::error!("store: cannot roll a failed batch back: {e}");
                }
            }
            self.stale = true;
        }
        (outcome, finishes)
    }

    /// Begins the batch's transaction, and reads the writer's state again after a failed batch.
    fn begin(&mut self) -> Result<(), Error> {
        let conn = &self.conn;
        // A transaction that a failed `ROLLBACK` left open must not take the batch in.
        if !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK");
        }
        exec(conn, "BEGIN IMMEDIATE")
            .map_err(|e| batch_error("cannot begin a transaction", e.into()))?;
        if self.stale {
            self.state
                .reload(conn)
                .map_err(|e| batch_error("cannot read the last order id", e.into()))?;
            self.stale = false;
        }
        Ok(())
    }
}

/// Ends a job's savepoint: released when the job succeeded, rolled back when it failed. An
/// `Err` is the batch's failure: SQLite rolled the whole transaction back (the connection is
/// in autocommit mode again), or the savepoint could not be ended.
fn end_job(conn: &Connection, ran: Result<(), Error>) -> Result<(), Error> {
    if conn.is_autocommit() {
        return Err(match ran {
            Err(e) => batch_error("SQLite rolled the transaction back after a job failed", e),
            Ok(()) => Error::internal("SQLite rolled the transaction back under a job"),
        });
    }
    let end = match ran {
        Ok(()) => exec(conn, "RELEASE job"),
        Err(_) => exec(conn, "ROLLBACK TO job").and_then(|_| exec(conn, "RELEASE job")),
    };
    end.map_err(|e| batch_error("cannot end a savepoint", e.into()))
}

/// The error every job of a failed batch gets: a full disk says so (`Unavailable`); anything
/// else is a system error, its cause for the log.
fn batch_error(what: &str, e: Error) -> Error {
    match e {
        Error::Unavailable(_) => e,
        Error::Internal(cause) => Error::internal(format!("{what}: {cause}")),
        other => Error::internal(format!("{what}: {other}")),
    }
}

/// The checkpointer thread: after commits, a `PASSIVE` checkpoint, then a pause. It stops when
/// the writer does (its sender is dropped).
fn checkpoint_loop(conn: Connection, asked: Receiver<()>) {
    // A checkpoint that fails (say, the database file cannot grow on a full disk) is logged
    // once until one works again.
    let mut failing = false;
    while asked.recv().is_ok() {
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match result {
            Ok((wal_pages, copied)) => {
                if std::mem::take(&mut failing) {
                    log::info!("store: checkpoints work again");
                }
                log::trace!("checkpoint: {copied} of {wal_pages} WAL pages in the database")
            }
            Err(e) if !failing => {
                log::warn!("store: checkpoint failed: {e} (logged once until one works)");
                failing = true;
            }
            Err(e) => log::debug!("store: checkpoint failed: {e}"),
        }
        thread::sleep(CHECKPOINT_GAP);
    }
}

/// Runs one cached statement: transaction control runs for every job, so it is never re-parsed.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's state on a fresh database, with the test fault's function defined.
    fn batches(tag: &str) -> Batches {
        let dir = std::env::temp_dir().join(format!("unipay-writer-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (conn, _) = super::super::open_connection(&dir.join("w.db")).unwrap();
        fault::install(&conn).unwrap();
        let committing = only_commit_commits(&conn);
        let state = WriterState::load(&conn, Arc::default()).unwrap();
        Batches {
            conn,
            state,
            fault: None,
            committing,
            stale: false,
            full: FullDisk::default(),
            shared: Arc::new(Shared {
                epoch: Instant::now(),
                busy_since: AtomicU64::new(0),
                full: AtomicBool::new(false),
                gone: AtomicBool::new(false),
            }),
        }
    }

    fn insert(mch_no: &'static str) -> (Job, Receiver<Result<(), Error>>) {
        job(move |c, _| {
            c.execute(
                "INSERT INTO merchant (mch_no, enabled, created_at) VALUES (?1, 1, 0)",
                [mch_no],
            )?;
            Ok(())
        })
    }

    /// Runs one batch and returns what each job was told.
    fn run<R>(b: &mut Batches, jobs: Vec<(Job, Receiver<R>)>, fault_at: Option<usize>) -> Vec<R> {
        let (mut batch, done): (Vec<Job>, Vec<_>) = jobs.into_iter().unzip();
        let (outcome, finishes) = b.run_batch(&mut batch, fault_at);
        for finish in finishes {
            finish(outcome.clone());
        }
        done.iter().map(|rx| rx.recv().unwrap()).collect()
    }

    fn merchants(b: &Batches) -> Vec<String> {
        let mut st = b
            .conn
            .prepare("SELECT mch_no FROM merchant ORDER BY 1")
            .unwrap();
        let rows = st.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn a_fault_fails_the_whole_batch_and_the_cache_is_read_again() {
        let mut b = batches("fault");
        b.state.last_order_id = 41; // as if the batch below had created orders 1 to 41
        let told = run(&mut b, vec![insert("A"), insert("B"), insert("C")], Some(1));
        assert!(told.iter().all(|r| r.is_err()), "{told:?}");
        assert!(b.conn.is_autocommit());
        assert_eq!(merchants(&b), Vec::<String>::new(), "nothing is on disk");
        let last = job(|_, state| Ok(state.last_order_id));
        let told = run(&mut b, vec![last], None);
        assert_eq!(
            told[0].as_ref().unwrap(),
            &0,
            "the last order id is read again"
        );
        assert!(run(&mut b, vec![insert("D")], None)[0].is_ok());
        assert_eq!(merchants(&b), ["D"]);
    }

    #[test]
    fn a_job_that_goes_on_after_sqlite_rolled_back_commits_nothing() {
        let mut b = batches("goes-on");
        // The job swallows the I/O error and writes on, in what is now autocommit mode.
        let goes_on = job(|c, _| {
            let _ = fault::inject_ioerr(c);
            let again = c.execute(
                "INSERT INTO merchant (mch_no, enabled, created_at) VALUES ('B', 1, 0)",
                [],
            );
            assert!(
                again.is_err(),
                "the commit hook refuses a commit of its own"
            );
            Ok(())
        });
        let told = run(&mut b, vec![insert("A"), goes_on, insert("C")], None);
        assert!(told.iter().all(|r| r.is_err()), "{told:?}");
        assert_eq!(merchants(&b), Vec::<String>::new());
        let told = run(&mut b, vec![insert("D")], None);
        assert!(told[0].is_ok());
        assert_eq!(merchants(&b), ["D"]);
    }
}
