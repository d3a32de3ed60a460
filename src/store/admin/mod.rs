//! The admin console's side of the store: its token and sessions, and the reads behind its
//! pages (filtered order lists, counts per status, one order with its history, the dashboard).
//!
//! Every list is a walk down one index ordered by `created_at` (see the console's indexes at the
//! end of `schema.sql`), fetched in two steps: the ids of the page from the index alone, then
//! those rows. Counts per status come from `admin_order_count` (kept by triggers in the same
//! transaction as every insert and status change) for whole UTC days, and from the orders
//! themselves only for the partial days at the edges of a time range, so a count never scans a
//! big table. This file changes no order: the console's actions go through `close`, `refund`
//! and `resend_event` like every other caller.

mod list;

use rusqlite::{params, Connection, OptionalExtension};

use super::outbox::{attempts, row_to_event, EVENT_COLS};
use super::{close_records, row_to_order, CloseRecord, EventInfo, Store, ORDER_COLS};
use crate::domain::{Amount, Order, Refund};
use crate::error::Error;
use list::status_counts;
pub use list::{OrderFilter, StatusCounts};

pub use super::outbox::AttemptRow;

/// A notification event with every attempt made to deliver it.
#[derive(Debug, Clone)]
pub struct EventHistory {
    pub event: EventInfo,
    pub attempts: Vec<AttemptRow>,
}

/// A close of the order that is talking to its channel right now.
#[derive(Debug, Clone)]
pub struct ClosingInfo {
    pub close_type: String,
    pub actor: String,
    pub since: i64,
}

/// One order and everything that happened to it.
#[derive(Debug, Clone)]
pub struct OrderDetail {
    pub order: Order,
    pub close_records: Vec<CloseRecord>,
    pub closing: Option<ClosingInfo>,
    pub events: Vec<EventHistory>,
    /// Its refunds, oldest first.
    pub refunds: Vec<Refund>,
}

/// What the dashboard shows.
#[derive(Debug, Clone)]
pub struct Dashboard {
    /// Orders created today, by status.
    pub today: StatusCounts,
    /// Orders closed or cancelled today, and their amount.
    pub closed_today: i64,
    pub closed_amount_today: Amount,
    pub pending_events: i64,
    pub given_up_events: i64,
    /// The next pending notifications, soonest first.
    pub pending: Vec<EventInfo>,
    /// The last notifications given up, newest first.
    pub given_up: Vec<EventInfo>,
    /// Orders flagged for an operator, newest first.
    pub attention: Vec<Order>,
}

/// Most events listed on the dashboard in each list.
const DASHBOARD_EVENTS: i64 = 20;
/// Most needs-attention orders listed on the dashboard.
const DASHBOARD_ATTENTION: i64 = 50;

impl Store {
    /// The sha256 hex of the console's token, if one was set.
    pub fn admin_token_hash(&self) -> Result<Option<String>, Error> {
        self.read(|c| Ok(admin_token_hash(c)?))
    }

    /// Records a new browser session; removes the expired ones on the way.
    pub fn create_admin_session(
        &self,
        id_hash: String,
        csrf: String,
        now: i64,
        expires_at: i64,
    ) -> Result<(), Error> {
        self.write(move |c, _| {
            c.prepare_cached("DELETE FROM admin_session WHERE expires_at <= ?1")?
                .execute([now])?;
            c.prepare_cached(
                "INSERT INTO admin_session (id_hash, csrf, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id_hash, csrf, now, expires_at])?;
            Ok(())
        })
    }

    /// The CSRF token of a live session.
    pub fn admin_session(&self, id_hash: &str, now: i64) -> Result<Option<String>, Error> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT csrf FROM admin_session WHERE id_hash = ?1 AND expires_at > ?2",
            )?;
            Ok(st
                .query_row(params![id_hash, now], |r| r.get(0))
                .optional()?)
        })
    }

    /// Ends a session (logout).
    pub fn delete_admin_session(&self, id_hash: String) -> Result<(), Error> {
        self.write(move |c, _| {
            c.prepare_cached("DELETE FROM admin_session WHERE id_hash = ?1")?
                .execute([id_hash])?;
            Ok(())
        })
    }

    /// An order by its number with its close records, running close, events and attempts, and
    /// refunds, read in one snapshot.
    pub fn admin_order(&self, order_no: &str) -> Result<Option<OrderDetail>, Error> {
        self.read(|c| {
            let tx = c.unchecked_transaction()?;
            let mut st = tx.prepare_cached(&format!(
                "SELECT {ORDER_COLS} FROM pay_order WHERE order_no = ?1"
            ))?;
            let Some(order) = st.query_row([order_no], row_to_order).optional()? else {
                return Ok(None);
            };
            let detail = OrderDetail {
                close_records: close_records(&tx, order.id)?,
                closing: closing(&tx, order.id)?,
                events: events(&tx, order.id)?,
                refunds: super::refunds::refunds_of_order(&tx, order.id)?,
                order,
            };
            Ok(Some(detail))
        })
    }

    /// The order number of a notification event.
    pub fn admin_event_order_no(&self, event_id: i64) -> Result<Option<String>, Error> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT o.order_no FROM notify_event e JOIN pay_order o ON o.id = e.order_id
                 WHERE e.id = ?1",
            )?;
            Ok(st.query_row([event_id], |r| r.get(0)).optional()?)
        })
    }

    /// The dashboard of the day `[day_start, day_end]` (ms, inclusive).
    pub fn admin_dashboard(&self, day_start: i64, day_end: i64) -> Result<Dashboard, Error> {
        self.read(|c| {
            let today = OrderFilter {
                from: Some(day_start),
                to: Some(day_end),
                ..OrderFilter::default()
            };
            // `+status`: the close_time index finds today's closes; the status index would
            // walk every closed order ever.
            let mut st = c.prepare_cached(
                "SELECT count(*), coalesce(sum(amount), 0) FROM pay_order
                 WHERE close_time BETWEEN ?1 AND ?2 AND +status IN ('close', 'cancel')",
            )?;
            let (closed_today, closed_amount) =
                st.query_row(params![day_start, day_end], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let count = |sql: &str| -> rusqlite::Result<i64> {
                c.prepare_cached(sql)?.query_row([], |r| r.get(0))
            };
            let pending_events =
                count("SELECT count(*) FROM notify_event WHERE state = 'pending'")?;
            let given_up_events =
                count("SELECT count(*) FROM notify_event WHERE state = 'given_up'")?;
            let pending = event_list(
                c,
                "e.state = 'pending' ORDER BY e.next_attempt_at, e.id",
                DASHBOARD_EVENTS,
            )?;
            let given_up = event_list(
                c,
                "e.state = 'given_up' ORDER BY e.finished_at DESC, e.id DESC",
                DASHBOARD_EVENTS,
            )?;
            Ok(Dashboard {
                today: status_counts(c, &today)?,
                closed_today,
                closed_amount_today: Amount(closed_amount),
                pending_events,
                given_up_events,
                pending,
                given_up,
                attention: super::orders::attention_orders(c, DASHBOARD_ATTENTION as usize)?,
            })
        })
    }
}

/// The sha256 hex of the console's token, if one was set (the command line reads it at start).
pub fn admin_token_hash(c: &Connection) -> rusqlite::Result<Option<String>> {
    let mut st = c.prepare_cached("SELECT token_hash FROM admin_token WHERE id = 1")?;
    st.query_row([], |r| r.get(0)).optional()
}

/// Sets the console's token hash. A changed token ends every browser session.
pub fn set_admin_token_hash(c: &mut Connection, hash: &str, now: i64) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let old = admin_token_hash(&tx)?;
    if old.as_deref() != Some(hash) {
        tx.execute("DELETE FROM admin_session", [])?;
        tx.execute(
            "INSERT INTO admin_token (id, token_hash, created_at) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash,
                created_at = excluded.created_at",
            params![hash, now],
        )?;
    }
    tx.commit()
}

fn closing(c: &Connection, order_id: i64) -> rusqlite::Result<Option<ClosingInfo>> {
    let mut st = c.prepare_cached(
        "SELECT close_type, actor, created_at FROM close_intent WHERE order_id = ?1",
    )?;
    st.query_row([order_id], |r| {
        Ok(ClosingInfo {
            close_type: r.get(0)?,
            actor: r.get(1)?,
            since: r.get(2)?,
        })
    })
    .optional()
}

/// Events matching `tail` (a fixed condition and order), at most `limit`.
fn event_list(c: &Connection, tail: &str, limit: i64) -> rusqlite::Result<Vec<EventInfo>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {EVENT_COLS} FROM notify_event e JOIN pay_order o ON o.id = e.order_id
         WHERE {tail} LIMIT ?1"
    ))?;
    let rows = st.query_map([limit], row_to_event)?;
    rows.collect()
}

fn events(c: &Connection, order_id: i64) -> rusqlite::Result<Vec<EventHistory>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {EVENT_COLS} FROM notify_event e JOIN pay_order o ON o.id = e.order_id
         WHERE e.order_id = ?1 ORDER BY e.id"
    ))?;
    let events = st
        .query_map([order_id], row_to_event)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let attempts = attempts(c, event.id)?;
        out.push(EventHistory { event, attempts });
    }
    Ok(out)
}
