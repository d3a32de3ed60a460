//! All SQL of the program, and the connections it runs on.
//!
//! `Store` owns one write connection, held by the writer thread (`writer`), which commits
//! waiting changes in groups, and a small pool of read connections for queries that never wait
//! for the writer. Methods speak the domain (`close_local`, `finish_channel_close`, …); every
//! status change is a conditional `UPDATE … WHERE status IN (…)` committed in the same
//! transaction as its close record and its outbox rows. The schema is `schema.sql` at the top of
//! the repository; later steps are appended to `MIGRATIONS`, keyed on `PRAGMA user_version`.

mod outbox;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use crate::domain::{
    plan_close, Actor, Amount, App, ClosePlan, CloseType, Order, OrderKey, PayStatus,
};
use crate::error::{Error, MSG_NOT_CLOSABLE};
use crate::sign::SignType;
use crate::sys::{self, UtcOffset};
use crate::wire;

pub use outbox::{attempts, list_events, resend_event, Attempt, DueEvent, EventFilter, EventInfo};
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
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;",
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
    /// Raised after each commit that wrote notification rows.
    events: Arc<Signal>,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    offset: UtcOffset,
}

/// Most idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 16;

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
        let writer = Writer::start(conn, state).map_err(OpenError::Thread)?;
        let store = Store {
            path: path.to_path_buf(),
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

    /// Whether the merchant exists (`None` if not) and is enabled.
    pub fn merchant_enabled(&self, mch_no: &str) -> Result<Option<bool>, Error> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT enabled FROM merchant WHERE mch_no = ?1")?;
            Ok(st.query_row([mch_no], |r| r.get(0)).optional()?)
        })
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
            let mut st = c.prepare_cached(&format!(
                "SELECT {ORDER_COLS} FROM pay_order WHERE order_no = ?1"
            ))?;
            Ok(st.query_row([order_no], row_to_order).optional()?)
        })
    }

    /// Creates an order unless the app already has one with this `bizOrderNo`.
    pub fn insert_order(&self, new: NewOrder) -> Result<Inserted, Error> {
        let offset = self.offset;
        self.write(move |c, state| {
            if let Some(existing) = find_order(c, &new.app_id, &OrderKey::BizOrderNo(new.biz_order_no.clone()))? {
                return Ok(Inserted::Existing(existing));
            }
            let id = state.last_order_id + 1;
            let order_no = format!("P{}{:06}", sys::format_compact(new.now, offset), id);
            let mut st = c.prepare_cached(
                "INSERT INTO pay_order (id, order_no, mch_no, app_id, biz_order_no, title, description,
                    allocation, auto_allocation, channel, method, other_method, limit_pay, amount,
                    refundable_balance, status, pay_time, close_time, expired_time, attach, notify_url,
                    return_url, extra_param, client_ip, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 0, ?15, NULL, NULL,
                    ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?22)",
            )?;
            st.execute(params![
                id,
                order_no,
                new.mch_no,
                new.app_id,
                new.biz_order_no,
                new.title,
                new.description,
                new.allocation,
                new.auto_allocation,
                new.channel,
                new.method,
                new.other_method,
                new.limit_pay,
                new.amount.0,
                new.status.as_str(),
                new.expired_time,
                new.attach,
                new.notify_url,
                new.return_url,
                new.extra_param,
                new.client_ip,
                new.now,
            ])?;
            state.last_order_id = id;
            let order = order_by_id(c, id)?.ok_or_else(|| Error::internal("inserted order vanished"))?;
            Ok(Inserted::Created(order))
        })
    }

    /// Marks an order `fail` (its channel refused it), if it is still open.
    pub fn fail_order(
        &self,
        order_id: i64,
        error_msg: String,
        now: i64,
    ) -> Result<Option<Order>, Error> {
        let offset = self.offset;
        self.write(move |c, state| {
            transition(
                c,
                state,
                order_id,
                &PayStatus::CLOSABLE,
                PayStatus::Fail,
                now,
                Some(&error_msg),
                offset,
            )
        })
    }

    /// Closes a `wait` order locally, in one transaction with its close record and outbox rows.
    /// A `progress` order is returned as `NeedsChannel`; any other status is 20044.
    pub fn close_local(&self, order_id: i64, req: CloseRequest) -> Result<LocalClose, Error> {
        let offset = self.offset;
        self.write(move |c, state| {
            let order = order_by_id(c, order_id)?.ok_or(Error::OrderNotFound)?;
            match plan_close(order.status, false) {
                Err(_) => Err(Error::TradeStatus(MSG_NOT_CLOSABLE.into())),
                Ok(ClosePlan::AtChannel(_)) => Ok(LocalClose::NeedsChannel(order)),
                Ok(ClosePlan::Local) => {
                    let closed = transition(
                        c,
                        state,
                        order_id,
                        &[PayStatus::Wait],
                        PayStatus::Close,
                        req.now,
                        None,
                        offset,
                    )?
                    .ok_or_else(|| Error::TradeStatus(MSG_NOT_CLOSABLE.into()))?;
                    insert_close_record(c, &closed, CloseType::Close, true, None, &req)?;
                    Ok(LocalClose::Closed(closed))
                }
            }
        })
    }

    /// Records what the channel said about closing a `progress` order, and applies it: the order
    /// becomes `close`/`cancel` when the channel closed the trade, `success` when the channel
    /// says it was paid. Returns the order as it now is, and whether this call changed it.
    pub fn finish_channel_close(
        &self,
        order_id: i64,
        close_type: CloseType,
        outcome: ChannelCloseOutcome,
        req: CloseRequest,
    ) -> Result<(Order, bool), Error> {
        let offset = self.offset;
        self.write(move |c, state| {
            let order = order_by_id(c, order_id)?.ok_or(Error::OrderNotFound)?;
            match outcome {
                ChannelCloseOutcome::Closed => {
                    match transition(c, state, order_id, &[PayStatus::Progress], close_type.target(), req.now, None, offset)? {
                        Some(closed) => {
                            insert_close_record(c, &closed, close_type, true, None, &req)?;
                            Ok((closed, true))
                        }
                        None => {
                            let msg = "订单状态已变化";
                            insert_close_record(c, &order, close_type, false, Some(msg), &req)?;
                            Ok((order, false))
                        }
                    }
                }
                ChannelCloseOutcome::Paid { trade_no, paid_at } => {
                    let msg = "通道交易已支付, 订单状态同步为支付成功";
                    insert_close_record(c, &order, close_type, false, Some(msg), &req)?;
                    let mut st = c.prepare_cached(
                        "UPDATE pay_order SET out_order_no = coalesce(out_order_no, ?2), pay_time = ?3
                         WHERE id = ?1 AND status IN ('wait', 'progress')",
                    )?;
                    st.execute(params![order_id, trade_no, paid_at])?;
                    match transition(c, state, order_id, &PayStatus::PAYABLE, PayStatus::Success, req.now, None, offset)? {
                        Some(paid) => Ok((paid, true)),
                        None => Ok((order, false)),
                    }
                }
                ChannelCloseOutcome::Failed(msg) => {
                    insert_close_record(c, &order, close_type, false, Some(&msg), &req)?;
                    Ok((order, false))
                }
            }
        })
    }

    /// Opens a sandbox trade for an order.
    pub fn sandbox_open(
        &self,
        order_no: String,
        amount: Amount,
        trade_no: String,
        now: i64,
    ) -> Result<(), Error> {
        self.write(move |c, _| {
            let mut st = c.prepare_cached(
                "INSERT OR IGNORE INTO sandbox_trade (order_no, trade_no, amount, state, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'open', ?4, ?4)",
            )?;
            st.execute(params![order_no, trade_no, amount.0, now])?;
            Ok(())
        })
    }

    /// Closes or cancels a sandbox trade if it is open; reports what the trade is now.
    pub fn sandbox_close(
        &self,
        order_no: String,
        cancel: bool,
        now: i64,
    ) -> Result<SandboxTrade, Error> {
        self.write(move |c, _| {
            let to = if cancel { "cancelled" } else { "closed" };
            let mut st = c.prepare_cached(
                "UPDATE sandbox_trade SET state = ?2, updated_at = ?3 WHERE order_no = ?1 AND state = 'open'",
            )?;
            st.execute(params![order_no, to, now])?;
            sandbox_trade(c, &order_no)?.ok_or(Error::OrderNotFound)
        })
    }

    /// The payer pays a sandbox order: the trade becomes paid and the order `success`, in one
    /// transaction, as a channel's payment callback would do. Refused (20044) when the trade or
    /// the order is closed, cancelled, paid or expired.
    pub fn sandbox_pay(
        &self,
        order_no: String,
        trade_no: String,
        now: i64,
    ) -> Result<Order, Error> {
        let offset = self.offset;
        self.write(move |c, state| {
            let mut st = c.prepare_cached(&format!("SELECT {ORDER_COLS} FROM pay_order WHERE order_no = ?1"))?;
            let order = st.query_row([&order_no], row_to_order).optional()?.ok_or(Error::OrderNotFound)?;
            let refuse = |why: &str| Err(Error::TradeStatus(why.to_string()));
            match order.status {
                PayStatus::Success => return refuse("订单已支付成功, 请勿重复支付"),
                PayStatus::Close => return refuse("订单已关闭, 无法支付"),
                PayStatus::Cancel => return refuse("订单已撤销, 无法支付"),
                PayStatus::Fail => return refuse("订单支付失败, 无法支付"),
                PayStatus::Wait | PayStatus::Progress => {}
            }
            if order.channel.as_deref().is_some_and(|ch| ch != crate::channel::SANDBOX) {
                return refuse("订单不是沙箱通道的订单");
            }
            let trade = sandbox_trade(c, &order_no)?;
            match trade.as_ref().map(|t| t.state.as_str()) {
                Some("closed") => return refuse("交易已关闭, 无法支付"),
                Some("cancelled") => return refuse("交易已撤销, 无法支付"),
                Some("paid") => return refuse("交易已支付, 请勿重复支付"),
                _ => {}
            }
            if now >= order.expired_time {
                return refuse("订单已过期, 无法支付");
            }
            let trade_no = match trade {
                Some(t) => {
                    let mut st = c.prepare_cached(
                        "UPDATE sandbox_trade SET state = 'paid', updated_at = ?2 WHERE order_no = ?1 AND state = 'open'",
                    )?;
                    if st.execute(params![order_no, now])? != 1 {
                        return refuse("交易状态已变化, 无法支付");
                    }
                    t.trade_no
                }
                None => {
                    let mut st = c.prepare_cached(
                        "INSERT INTO sandbox_trade (order_no, trade_no, amount, state, created_at, updated_at)
                         VALUES (?1, ?2, ?3, 'paid', ?4, ?4)",
                    )?;
                    st.execute(params![order_no, trade_no, order.amount.0, now])?;
                    trade_no
                }
            };
            let mut st = c.prepare_cached(
                "UPDATE pay_order SET out_order_no = ?2, pay_time = ?3, channel = coalesce(channel, ?4),
                    method = coalesce(method, 'web'), refundable_balance = amount
                 WHERE id = ?1 AND status IN ('wait', 'progress')",
            )?;
            st.execute(params![order.id, trade_no, now, crate::channel::SANDBOX])?;
            transition(c, state, order.id, &PayStatus::PAYABLE, PayStatus::Success, now, None, offset)?
                .ok_or_else(|| Error::TradeStatus("订单状态已变化, 无法支付".into()))
        })
    }

    /// The sandbox trade of an order, if any.
    pub fn sandbox_trade(&self, order_no: &str) -> Result<Option<SandboxTrade>, Error> {
        self.read(|c| sandbox_trade(c, order_no))
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

/// A new order before it has an id and a number.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub mch_no: String,
    pub app_id: String,
    pub biz_order_no: String,
    pub title: String,
    pub description: Option<String>,
    pub allocation: Option<bool>,
    pub auto_allocation: Option<bool>,
    pub channel: Option<String>,
    pub method: Option<String>,
    pub other_method: Option<String>,
    pub limit_pay: Option<String>,
    pub amount: Amount,
    pub status: PayStatus,
    pub expired_time: i64,
    pub attach: Option<String>,
    pub notify_url: Option<String>,
    pub return_url: Option<String>,
    pub extra_param: Option<String>,
    pub client_ip: Option<String>,
    pub now: i64,
}

/// What `insert_order` did.
#[derive(Debug)]
pub enum Inserted {
    Created(Order),
    /// The app already has an order with this `bizOrderNo`; nothing was written.
    Existing(Order),
}

/// Who closes, from where, when: what a close record needs besides the order.
#[derive(Debug, Clone)]
pub struct CloseRequest {
    pub actor: Actor,
    pub client_ip: Option<String>,
    pub now: i64,
}

/// What `close_local` found.
#[derive(Debug)]
pub enum LocalClose {
    /// The `wait` order is now closed.
    Closed(Order),
    /// The order is `progress`: its channel must close the trade first.
    NeedsChannel(Order),
}

/// What a channel said when asked to close a trade.
#[derive(Debug, Clone)]
pub enum ChannelCloseOutcome {
    /// The trade is closed (or cancelled): no money can arrive any more.
    Closed,
    /// The trade was already paid: the order must become `success`.
    Paid { trade_no: String, paid_at: i64 },
    /// The channel refused or failed; the order is unchanged.
    Failed(String),
}

/// A trade in the sandbox channel's book.
#[derive(Debug, Clone)]
pub struct SandboxTrade {
    pub trade_no: String,
    pub amount: Amount,
    /// `open`, `paid`, `closed` or `cancelled`.
    pub state: String,
    pub updated_at: i64,
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

/// The columns of `row_to_order`, in its order.
const ORDER_COLS: &str = "id, order_no, biz_order_no, out_order_no, mch_no, app_id, title, description,
    allocation, auto_allocation, channel, method, other_method, limit_pay, amount, refundable_balance,
    status, refund_status, alloc_status, pay_time, close_time, expired_time, attach, error_msg,
    notify_url, return_url, extra_param, client_ip, created_at, updated_at";

fn row_to_order(r: &Row) -> rusqlite::Result<Order> {
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
        created_at: r.get(28)?,
        updated_at: r.get(29)?,
    })
}

fn order_by_id(c: &Connection, id: i64) -> Result<Option<Order>, Error> {
    let mut st = c.prepare_cached(&format!("SELECT {ORDER_COLS} FROM pay_order WHERE id = ?1"))?;
    Ok(st.query_row([id], row_to_order).optional()?)
}

fn find_order(c: &Connection, app_id: &str, key: &OrderKey) -> rusqlite::Result<Option<Order>> {
    let (sql, value) = match key {
        OrderKey::OrderNo(v) => ("order_no = ?2", v),
        OrderKey::BizOrderNo(v) => ("biz_order_no = ?2", v),
        OrderKey::OutOrderNo(v) => ("out_order_no = ?2", v),
    };
    let mut st = c.prepare_cached(&format!(
        "SELECT {ORDER_COLS} FROM pay_order WHERE app_id = ?1 AND {sql} ORDER BY id DESC LIMIT 1"
    ))?;
    st.query_row(params![app_id, value], row_to_order)
        .optional()
}

/// Moves an order from one of `from` to `to` if it is still in one of them, and writes the
/// outbox rows for the change. Returns the changed order, or `None` if its status was not in
/// `from` (the caller reports the real state).
fn transition(
    c: &Connection,
    state: &mut WriterState,
    order_id: i64,
    from: &[PayStatus],
    to: PayStatus,
    now: i64,
    error_msg: Option<&str>,
    offset: UtcOffset,
) -> Result<Option<Order>, Error> {
    let from_list: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    // At most two source statuses exist; binding them keeps one cached statement per shape.
    let (a, b) = (from_list[0], *from_list.get(1).unwrap_or(&from_list[0]));
    let mut st = c.prepare_cached(
        "UPDATE pay_order SET status = ?2, updated_at = ?3,
            close_time = CASE WHEN ?2 IN ('close', 'cancel') THEN ?3 ELSE close_time END,
            error_msg = coalesce(?4, error_msg)
         WHERE id = ?1 AND status IN (?5, ?6)",
    )?;
    if st.execute(params![order_id, to.as_str(), now, error_msg, a, b])? != 1 {
        return Ok(None);
    }
    let order =
        order_by_id(c, order_id)?.ok_or_else(|| Error::internal("changed order vanished"))?;
    if to.is_terminal() && enqueue_notifications(c, &order, now, offset)? {
        state.events_enqueued = true;
    }
    Ok(Some(order))
}

/// Writes one outbox row per target of an order's status change: the order's own notify URL,
/// and the app's notify URL when the app subscribes.
fn enqueue_notifications(
    c: &Connection,
    order: &Order,
    now: i64,
    offset: UtcOffset,
) -> Result<bool, Error> {
    let mut st = c.prepare_cached("SELECT notify_url FROM app WHERE app_id = ?1")?;
    let app_url: Option<String> = st
        .query_row([&order.app_id], |r| r.get(0))
        .optional()?
        .flatten();
    let targets = [
        ("callback", order.notify_url.as_deref()),
        ("subscribe", app_url.as_deref()),
    ];
    let mut data = None;
    for (target, url) in targets {
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            continue;
        };
        let data: &str = data.get_or_insert_with(|| wire::order_data(order, offset));
        let mut st = c.prepare_cached(
            "INSERT INTO notify_event (order_id, app_id, target, url, status, data, next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        )?;
        st.execute(params![
            order.id,
            order.app_id,
            target,
            url,
            order.status.as_str(),
            data,
            now
        ])?;
    }
    Ok(data.is_some())
}

fn insert_close_record(
    c: &Connection,
    order: &Order,
    close_type: CloseType,
    closed: bool,
    error_msg: Option<&str>,
    req: &CloseRequest,
) -> Result<(), Error> {
    let mut st = c.prepare_cached(
        "INSERT INTO close_record (order_id, order_no, biz_order_no, out_order_no, channel, close_type,
            closed, error_msg, client_ip, actor, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    st.execute(params![
        order.id,
        order.order_no,
        order.biz_order_no,
        order.out_order_no,
        order.channel,
        close_type.as_str(),
        closed,
        error_msg,
        req.client_ip,
        req.actor.as_str(),
        req.now,
    ])?;
    Ok(())
}

fn sandbox_trade(c: &Connection, order_no: &str) -> Result<Option<SandboxTrade>, Error> {
    let mut st = c.prepare_cached(
        "SELECT trade_no, amount, state, updated_at FROM sandbox_trade WHERE order_no = ?1",
    )?;
    Ok(st
        .query_row([order_no], |r| {
            Ok(SandboxTrade {
                trade_no: r.get(0)?,
                amount: Amount(r.get(1)?),
                state: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })
        .optional()?)
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
