//! All SQL of the program, and the connections it runs on.
//!
//! `Store` owns one write connection, held by the writer thread (`writer`), which commits
//! waiting changes in groups, and a small pool of read connections for queries that never wait
//! for the writer. Methods speak the domain (`close_local`, `finish_channel_close`, …); every
//! status change is a conditional `UPDATE … WHERE status IN (…)` committed in the same
//! transaction as its close record and its outbox rows. The schema is `schema.sql` at the top of
//! the repository; later steps are appended to `MIGRATIONS`, keyed on `PRAGMA user_version`.

pub mod admin;
mod apps;
mod backup;
mod channels;
mod fault;
mod full;
mod nonce;
mod offline;
mod open;
mod orders;
mod outbox;
mod refunds;
mod sandbox;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use crate::domain::{Amount, App, Order, OrderKey, PayStatus};
use crate::error::Error;
use crate::sys::UtcOffset;
use open::BUSY_TIMEOUT;

pub use crate::domain::EventInfo;
pub use apps::CreateAppError;
pub use backup::{
    backup, check_file, check_whole, integrity_check, quick_check, CheckFailure, Checked,
    CHECK_BEFORE_SERVING_MAX_BYTES,
};
pub use channels::ChannelConfig;
pub use fault::TestFault;
pub use nonce::{Memo, NewNonce, Render, ReplyMemo, SeenNonce};
pub use offline::Offline;
use open::grow_in_chunks;
pub use open::{is_absent, leftovers, open_connection, orphaned_message, OpenError};
pub use orders::{CloseIntent, Inserted, LocalClose, NewOrder, OrderRef, Payment};
pub use outbox::{Attempt, DueEvent, EventFilter};
pub use refunds::{CreatedRefund, NewRefund, RefundMemo, SendSlot, SyncRecord};
pub use sandbox::{SandboxRefund, SandboxRefunded, SandboxTrade};
pub use writer::{Signal, Writer, WriterState};

/// The database of a running server: a writer thread and read connections.
pub struct Store {
    path: PathBuf,
    /// Recently read (merchant enabled, app) pairs by app id; see `merchant_and_app`.
    apps: Mutex<HashMap<String, (Instant, bool, App)>>,
    /// Raised after each commit that wrote notification rows.
    events: Arc<Signal>,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    offset: UtcOffset,
    /// Set when a check found the file damaged: writes are refused from then on.
    damaged: std::sync::OnceLock<String>,
}

/// Most idle read connections kept for reuse: enough for every request thread under load, so
/// that no request pays for opening a connection and preparing its statements.
const MAX_IDLE_READERS: usize = 64;

/// How long a merchant and app read from the database are trusted: changes to an existing app
/// or merchant take effect within this time.
pub(super) const APP_CACHE_TTL: Duration = Duration::from_secs(2);

/// Prepared statements kept per connection: more than the program has, so none is re-parsed.
pub(super) const STATEMENT_CACHE: usize = 128;

/// Page cache of each read connection, in KiB (SQLite's default is 2 MiB per connection).
const READER_CACHE_KIB: i64 = 512;

impl Store {
    /// Opens (creating or migrating) the database and starts its writer thread.
    /// Returns the store and whether the database was brand new.
    pub fn open(path: &Path, offset: UtcOffset) -> Result<(Store, bool), OpenError> {
        Store::open_with_fault(path, offset, None)
    }

    /// `open`, with a fault for tests (`TestFault`; `None` in production).
    pub fn open_with_fault(
        path: &Path,
        offset: UtcOffset,
        fault: Option<TestFault>,
    ) -> Result<(Store, bool), OpenError> {
        let (conn, fresh) = open_connection(path)?;
        let events = Arc::new(Signal::default());
        let state = WriterState::load(&conn, events.clone())
            .map_err(|e| OpenError::Sqlite(path.to_path_buf(), e))?;
        // A checkpoint copies pages from the WAL to the file: it needs no page cache of its own.
        let checkpointer = Connection::open(path)
            .and_then(|c| c.busy_timeout(BUSY_TIMEOUT).map(|_| c))
            .and_then(|c| c.pragma_update(None, "cache_size", -64).map(|_| c))
            .and_then(|c| grow_in_chunks(&c).map(|_| c))
            .and_then(|c| grow_in_chunks(&conn).map(|_| c))
            .map_err(|e| OpenError::Sqlite(path.to_path_buf(), e))?;
        let writer = Writer::start(conn, checkpointer, state, fault).map_err(OpenError::Thread)?;
        let store = Store {
            path: path.to_path_buf(),
            apps: Mutex::new(HashMap::new()),
            events,
            writer,
            readers: Mutex::new(Vec::new()),
            offset,
            damaged: std::sync::OnceLock::new(),
        };
        Ok((store, fresh))
    }

    /// Runs `f` on a read connection (never waits for the writer).
    fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R, Error>) -> Result<R, Error> {
        let pooled = self.readers.lock().expect("reader pool lock").pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(BUSY_TIMEOUT)?;
                c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                c.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
                c
            }
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().expect("reader pool lock");
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        result
    }

    /// Runs `f` in the next group commit; returns once it is on disk.
    fn write<R, F>(&self, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> Result<R, Error> + Send + 'static,
    {
        if self.damaged.get().is_some() {
            return Err(Error::Unavailable(crate::error::MSG_DB_DAMAGED));
        }
        self.writer.write(f)
    }

    /// Marks the database damaged (`why`: what the check said): every write is refused from
    /// now on, and `health` says so.
    pub fn mark_damaged(&self, why: String) {
        let _ = self.damaged.set(why);
    }

    /// The bytes of the database file and its write-ahead log.
    pub fn size_bytes(&self) -> u64 {
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        size(&self.path) + size(Path::new(&wal))
    }

    /// Whether the store can serve: the database answers a read, and the writer is alive and
    /// committing. `Err` says what is wrong.
    pub fn health(&self) -> Result<(), String> {
        if let Some(why) = self.damaged.get() {
            return Err(format!("damaged: {why}"));
        }
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .map_err(|e| format!("the database does not answer: {e}"))?;
        self.writer.health()
    }

    /// Returns once everything handed to the writer before this call is committed.
    pub fn flush(&self) -> Result<(), Error> {
        self.write(|_, _| Ok(()))
    }

    pub fn offset(&self) -> UtcOffset {
        self.offset
    }

    /// Raised after every commit that wrote notification rows (the notifier waits on it).
    pub fn events_signal(&self) -> Arc<Signal> {
        self.events.clone()
    }

    /// The order of `app_id` named by `key`.
    pub fn find_order(&self, app_id: &str, key: &OrderKey) -> Result<Option<Order>, Error> {
        self.read(|c| Ok(find_order(c, app_id, key)?))
    }

    /// The order with this order number, whatever its app.
    pub fn order_by_no(&self, order_no: &str) -> Result<Option<Order>, Error> {
        self.read(|c| {
            let mut st = c.prepare_cached(ORDER_BY_NO_SQL)?;
            Ok(st.query_row([order_no], row_to_order).optional()?)
        })
    }

    /// The close records of an order, oldest first.
    pub fn close_records(&self, order_id: i64) -> Result<Vec<CloseRecord>, Error> {
        self.read(|c| Ok(close_records(c, order_id)?))
    }
}

/// One close attempt of an order.
#[derive(Debug, Clone)]
pub struct CloseRecord {
    pub close_type: String,
    pub closed: bool,
    pub error_msg: Option<String>,
    pub client_ip: Option<String>,
    pub actor: String,
    pub created_at: i64,
    pub channel: Option<String>,
}

/// The close records of an order, oldest first.
pub(crate) fn close_records(c: &Connection, order_id: i64) -> rusqlite::Result<Vec<CloseRecord>> {
    let mut st = c.prepare_cached(
        "SELECT close_type, closed, error_msg, client_ip, actor, created_at, channel
         FROM close_record WHERE order_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([order_id], |r| {
        Ok(CloseRecord {
            close_type: r.get(0)?,
            closed: r.get(1)?,
            error_msg: r.get(2)?,
            client_ip: r.get(3)?,
            actor: r.get(4)?,
            created_at: r.get(5)?,
            channel: r.get(6)?,
        })
    })?;
    rows.collect()
}

/// The columns of `row_to_order`, in its order (a macro, so that SQL can be built with
/// `concat!` at compile time).
macro_rules! order_cols {
    () => {
        "id, order_no, biz_order_no, out_order_no, mch_no, app_id, title, description,
    allocation, auto_allocation, channel, method, other_method, limit_pay, amount, refundable_balance,
    status, refund_status, alloc_status, pay_time, close_time, expired_time, attach, error_msg,
    notify_url, return_url, extra_param, client_ip, attention, attention_at, created_at, updated_at"
    };
}
pub(crate) use order_cols;

pub(crate) const ORDER_COLS: &str = order_cols!();

/// One order by its number.
pub(crate) const ORDER_BY_NO_SQL: &str = concat!(
    "SELECT ",
    order_cols!(),
    " FROM pay_order WHERE order_no = ?1"
);

pub(crate) fn row_to_order(r: &Row) -> rusqlite::Result<Order> {
    let status: String = r.get(16)?;
    Ok(Order {
        id: r.get(0)?,
        order_no: r.get(1)?,
        biz_order_no: r.get(2)?,
        out_order_no: r.get(3)?,
        mch_no: r.get(4)?,
        app_id: r.get(5)?,
        title: r.get(6)?,
        description: r.get(7)?,
        allocation: r.get(8)?,
        auto_allocation: r.get(9)?,
        channel: r.get(10)?,
        method: r.get(11)?,
        other_method: r.get(12)?,
        limit_pay: r.get(13)?,
        amount: Amount(r.get(14)?),
        refundable_balance: Amount(r.get(15)?),
        status: PayStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                16,
                rusqlite::types::Type::Text,
                format!("bad status {status}").into(),
            )
        })?,
        refund_status: r.get(17)?,
        alloc_status: r.get(18)?,
        pay_time: r.get(19)?,
        close_time: r.get(20)?,
        expired_time: r.get(21)?,
        attach: r.get(22)?,
        error_msg: r.get(23)?,
        notify_url: r.get(24)?,
        return_url: r.get(25)?,
        extra_param: r.get(26)?,
        client_ip: r.get(27)?,
        attention: r.get(28)?,
        attention_at: r.get(29)?,
        created_at: r.get(30)?,
        updated_at: r.get(31)?,
    })
}

pub(crate) fn order_by_id(c: &Connection, id: i64) -> Result<Option<Order>, Error> {
    let mut st = c.prepare_cached(concat!(
        "SELECT ",
        order_cols!(),
        " FROM pay_order WHERE id = ?1"
    ))?;
    Ok(st.query_row([id], row_to_order).optional()?)
}

pub(crate) fn find_order(
    c: &Connection,
    app_id: &str,
    key: &OrderKey,
) -> rusqlite::Result<Option<Order>> {
    let (sql, value) = match key {
        OrderKey::OrderNo(v) => (
            concat!(
                "SELECT ",
                order_cols!(),
                " FROM pay_order WHERE app_id = ?1 AND order_no = ?2"
            ),
            v,
        ),
        OrderKey::BizOrderNo(v) => (
            concat!(
                "SELECT ",
                order_cols!(),
                " FROM pay_order WHERE app_id = ?1 AND biz_order_no = ?2"
            ),
            v,
        ),
        OrderKey::OutOrderNo(v) => (
            concat!(
                "SELECT ",
                order_cols!(),
                " FROM pay_order WHERE app_id = ?1 AND out_order_no = ?2 ORDER BY id DESC LIMIT 1"
            ),
            v,
        ),
    };
    let mut st = c.prepare_cached(sql)?;
    st.query_row(params![app_id, value], row_to_order)
        .optional()
}

#[cfg(test)]
pub mod testkit;
#[cfg(test)]
mod tests;
