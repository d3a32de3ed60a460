//! All SQL of the program, and the connections it runs on.
//!
//! `Store` owns one write connection, held by the writer thread (`writer`), which commits
//! waiting changes in groups, and a small pool of read connections for queries that never wait
//! for the writer. Methods speak the domain (`close_local`, `finish_channel_close`, …); every
//! status change is a conditional `UPDATE … WHERE status IN (…)` committed in the same
//! transaction as its close record and its outbox rows. The schema is `schema.sql` at the top of
//! the repository; later steps are appended to `MIGRATIONS`, keyed on `PRAGMA user_version`.

pub mod admin;
mod backup;
mod nonce;
mod orders;
mod outbox;
mod sandbox;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use crate::domain::{Amount, App, Order, OrderKey, PayStatus};
use crate::error::Error;
use crate::sign::SignType;
use crate::sys::UtcOffset;

pub use backup::{
    backup, check_file, check_whole, integrity_check, quick_check, CheckFailure, Checked,
    CHECK_BEFORE_SERVING_MAX_BYTES,
};
pub use nonce::{NewNonce, SeenNonce};
pub use orders::{
    attention_orders, ChannelCloseOutcome, CloseIntent, CloseRequest, Inserted, NewOrder, Payment,
};
pub use outbox::{attempts, list_events, resend_event, Attempt, DueEvent, EventFilter, EventInfo};
pub use sandbox::SandboxTrade;
pub use writer::{Signal, Writer, WriterState};

/// The ordered schema steps; step N brings `user_version` to N. Never edit a released step.
const MIGRATIONS: &[&str] = &[include_str!("../../schema.sql")];

/// How long a connection waits for another process's lock (e.g. `unipay app create`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
/// Returns the connection and whether the database was brand new (no schema before).
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
}

/// Most idle read connections kept for reuse: enough for every request thread under load, so
/// that no request pays for opening a connection and preparing its statements.
const MAX_IDLE_READERS: usize = 64;

/// How long a merchant and app read from the database are trusted: changes to an existing app
/// or merchant take effect within this time.
const APP_CACHE_TTL: Duration = Duration::from_secs(2);

/// Prepared statements kept per connection: more than the program has, so none is re-parsed.
const STATEMENT_CACHE: usize = 128;

/// Page cache of each read connection, in KiB (SQLite's default is 2 MiB per connection).
const READER_CACHE_KIB: i64 = 512;

impl Store {
    /// Opens (creating or migrating) the database and starts its writer thread.
    /// Returns the store and whether the database was brand new.
    pub fn open(path: &Path, offset: UtcOffset) -> Result<(Store, bool), OpenError> {
        let (conn, fresh) = open_connection(path)?;
        let last_order_id: i64 = conn
            .query_row("SELECT coalesce(max(id), 0) FROM pay_order", [], |r| {
                r.get(0)
            })
            .map_err(|e| OpenError::Sqlite(path.to_path_buf(), e))?;
        let events = Arc::new(Signal::default());
        let state = WriterState {
            last_order_id,
            events_enqueued: false,
            events: events.clone(),
        };
        // A checkpoint copies pages from the WAL to the file: it needs no page cache of its own.
        let checkpointer = Connection::open(path)
            .and_then(|c| c.busy_timeout(BUSY_TIMEOUT).map(|_| c))
            .and_then(|c| c.pragma_update(None, "cache_size", -64).map(|_| c))
            .map_err(|e| OpenError::Sqlite(path.to_path_buf(), e))?;
        let writer = Writer::start(conn, checkpointer, state).map_err(OpenError::Thread)?;
        let store = Store {
            path: path.to_path_buf(),
            apps: Mutex::new(HashMap::new()),
            events,
            writer,
            readers: Mutex::new(Vec::new()),
            offset,
        };
        Ok((store, fresh))
    }

    /// Runs `f` on a read connection (never waits for the writer).
    pub fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R, Error>) -> Result<R, Error> {
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
    pub fn write<R, F>(&self, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> Result<R, Error> + Send + 'static,
    {
        self.writer.write(f)
    }

    pub fn offset(&self) -> UtcOffset {
        self.offset
    }

    /// Raised after every commit that wrote notification rows (the notifier waits on it).
    pub fn events_signal(&self) -> Arc<Signal> {
        self.events.clone()
    }

    /// Both lookups of a request's common checks: whether the merchant exists and is enabled,
    /// and the app. Found pairs are remembered for `APP_CACHE_TTL`, so that a busy server does
    /// not read them for every request; an app created meanwhile (by `unipay app create`) is
    /// seen at once, because misses are never remembered.
    pub fn merchant_and_app(
        &self,
        mch_no: &str,
        app_id: &str,
    ) -> Result<(Option<bool>, Option<App>), Error> {
        {
            let cache = self.apps.lock().expect("app cache lock");
            if let Some((at, enabled, app)) = cache.get(app_id) {
                if at.elapsed() < APP_CACHE_TTL && app.mch_no == mch_no {
                    return Ok((Some(*enabled), Some(app.clone())));
                }
            }
        }
        let (mch, app) = self.read(|c| {
            let mut st = c.prepare_cached("SELECT enabled FROM merchant WHERE mch_no = ?1")?;
            let mch: Option<bool> = st.query_row([mch_no], |r| r.get(0)).optional()?;
            Ok((mch, app_by_id(c, app_id)?))
        })?;
        if let (Some(enabled), Some(app)) = (mch, &app) {
            if app.mch_no == mch_no {
                let mut cache = self.apps.lock().expect("app cache lock");
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(app_id.to_string(), (Instant::now(), enabled, app.clone()));
            }
        }
        Ok((mch, app))
    }

    /// The app with this id, with its merchant's enabled flag.
    pub fn app(&self, app_id: &str) -> Result<Option<App>, Error> {
        self.read(|c| Ok(app_by_id(c, app_id)?))
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
        self.read(|c| {
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
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
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

// ---- Apps and merchants: used by the server (reads) and by the command line (writes). ----

const APP_COLS: &str =
    "a.app_id, a.mch_no, a.sign_type, a.secret, a.req_sign, a.req_timeout, a.notify_url,
    a.order_timeout, a.limit_amount, a.enabled, m.enabled";

fn row_to_app(r: &Row) -> rusqlite::Result<App> {
    let sign_type: String = r.get(2)?;
    Ok(App {
        app_id: r.get(0)?,
        mch_no: r.get(1)?,
        sign_type: SignType::parse(&sign_type).unwrap_or(SignType::Md5),
        secret: r.get(3)?,
        req_sign: r.get(4)?,
        req_timeout_secs: r.get(5)?,
        notify_url: r.get(6)?,
        order_timeout_min: r.get(7)?,
        limit_amount: r.get::<_, Option<i64>>(8)?.map(Amount),
        enabled: r.get(9)?,
        mch_enabled: r.get(10)?,
    })
}

/// The app with this id.
pub fn app_by_id(c: &Connection, app_id: &str) -> rusqlite::Result<Option<App>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {APP_COLS} FROM app a JOIN merchant m ON m.mch_no = a.mch_no WHERE a.app_id = ?1"
    ))?;
    st.query_row([app_id], row_to_app).optional()
}

/// Every app, in creation order.
pub fn list_apps(c: &Connection) -> rusqlite::Result<Vec<App>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {APP_COLS} FROM app a JOIN merchant m ON m.mch_no = a.mch_no ORDER BY a.created_at, a.app_id"
    ))?;
    let rows = st.query_map([], row_to_app)?;
    rows.collect()
}

/// Why an app could not be created.
#[derive(Debug)]
pub enum CreateAppError {
    Exists,
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for CreateAppError {
    fn from(e: rusqlite::Error) -> Self {
        CreateAppError::Sqlite(e)
    }
}

/// Creates the merchant if needed and the app, in one transaction.
pub fn create_app(c: &mut Connection, app: &App, now: i64) -> Result<(), CreateAppError> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    insert_app(&tx, app, now)?;
    tx.commit()?;
    Ok(())
}

/// Inserts the merchant if needed and the app, inside the caller's transaction.
pub fn insert_app(tx: &Connection, app: &App, now: i64) -> Result<(), CreateAppError> {
    tx.execute(
        "INSERT OR IGNORE INTO merchant (mch_no, enabled, created_at) VALUES (?1, 1, ?2)",
        params![app.mch_no, now],
    )?;
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO app (app_id, mch_no, sign_type, secret, req_sign, req_timeout, notify_url,
            order_timeout, limit_amount, enabled, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            app.app_id,
            app.mch_no,
            app.sign_type.as_str(),
            app.secret,
            app.req_sign,
            app.req_timeout_secs,
            app.notify_url,
            app.order_timeout_min,
            app.limit_amount.map(|a| a.0),
            app.enabled,
            now
        ],
    )?;
    if inserted == 0 {
        return Err(CreateAppError::Exists);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
