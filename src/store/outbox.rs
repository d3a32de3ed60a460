//! The outbox side of the store: which notifications are due, and what each attempt did.
//!
//! Rows are written by `transition` in the same transaction as the status change they report;
//! this file only reads them for delivery and records attempts.

use rusqlite::{params, Connection, Row};

use super::Store;
use crate::domain::EventInfo;
use crate::error::Error;
use crate::sign::SignType;

impl std::fmt::Debug for DueEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DueEvent")
            .field("id", &self.id)
            .field("order_no", &self.order_no)
            .field("url", &self.url)
            .field("attempts", &self.attempts)
            .field("app_id", &self.app_id)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A notification ready to be sent, with what signing it needs. Its `Debug` leaves the secret
/// out, so that no log line can carry it.
#[derive(Clone)]
pub struct DueEvent {
    pub id: i64,
    pub order_no: String,
    pub url: String,
    /// The order's JSON (query field order) right after the change.
    pub data: String,
    /// Attempts made in the current round (since creation or the last resend).
    pub attempts: i64,
    pub mch_no: String,
    pub app_id: String,
    pub sign_type: SignType,
    pub secret: String,
    /// `refund` for a refund notice to the app's own notify URL (its `noticeType`).
    pub notice_type: Option<String>,
}

/// What one delivery attempt did.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: i64,
    pub delivered: bool,
    pub http_status: Option<u16>,
    /// The first characters of the reply body, or the error.
    pub detail: String,
    /// When to try again after a failure; `None` gives up.
    pub retry_at: Option<i64>,
}

/// Which events `list_events` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Pending,
    GivenUp,
}

impl Store {
    /// How many notifications wait to be delivered.
    pub fn pending_events(&self) -> Result<i64, Error> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT count(*) FROM notify_event WHERE state = 'pending'")?
                    .query_row([], |r| r.get(0))?,
            )
        })
    }

    /// Pending events whose time has come, oldest due first.
    pub fn due_events(&self, now: i64, limit: usize) -> Result<Vec<DueEvent>, Error> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT e.id, o.order_no, e.url, e.data, e.attempts, a.mch_no, a.app_id, a.sign_type, a.secret,
                    CASE WHEN e.refund_id IS NOT NULL AND e.target = 'subscribe' THEN 'refund' END
                 FROM notify_event e
                 JOIN pay_order o ON o.id = e.order_id
                 JOIN app a ON a.app_id = e.app_id
                 WHERE e.state = 'pending' AND e.next_attempt_at <= ?1
                 ORDER BY e.next_attempt_at, e.id LIMIT ?2",
            )?;
            let rows = st.query_map(params![now, limit as i64], |r| {
                let sign_type: String = r.get(7)?;
                Ok(DueEvent {
                    id: r.get(0)?,
                    order_no: r.get(1)?,
                    url: r.get(2)?,
                    data: r.get(3)?,
                    attempts: r.get(4)?,
                    mch_no: r.get(5)?,
                    app_id: r.get(6)?,
                    sign_type: SignType::parse(&sign_type).unwrap_or(SignType::Md5),
                    secret: r.get(8)?,
                    notice_type: r.get(9)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// When the next pending event after `now` is due, if any.
    pub fn next_due_after(&self, now: i64) -> Result<Option<i64>, Error> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT min(next_attempt_at) FROM notify_event WHERE state = 'pending' AND next_attempt_at > ?1",
            )?;
            Ok(st.query_row([now], |r| r.get(0))?)
        })
    }

    /// Records one attempt and moves the event on: delivered, retried later, or given up.
    /// Does nothing to an event that is no longer pending.
    pub fn record_attempt(&self, event_id: i64, attempt: Attempt) -> Result<(), Error> {
        self.write(move |c, _| record_attempt(c, event_id, &attempt))
    }

    /// Makes an event pending again, due now, with a fresh round of attempts.
    pub fn resend_event(&self, event_id: i64, now: i64) -> Result<bool, Error> {
        self.write(move |c, _| Ok(resend_event(c, event_id, now)?))
    }
}

fn record_attempt(c: &Connection, event_id: i64, a: &Attempt) -> Result<(), Error> {
    let mut st = c.prepare_cached("SELECT count(*) FROM notify_attempt WHERE event_id = ?1")?;
    let number: i64 = st.query_row([event_id], |r| r.get::<_, i64>(0))? + 1;
    let (state, next, finished) = match (a.delivered, a.retry_at) {
        (true, _) => ("delivered", None, Some(a.at)),
        (false, Some(at)) => ("pending", Some(at), None),
        (false, None) => ("given_up", None, Some(a.at)),
    };
    let mut st = c.prepare_cached(
        "UPDATE notify_event SET state = ?2, attempts = attempts + 1,
            next_attempt_at = coalesce(?3, next_attempt_at), last_error = ?4, finished_at = ?5
         WHERE id = ?1 AND state = 'pending'",
    )?;
    let last_error = (!a.delivered).then_some(a.detail.as_str());
    if st.execute(params![event_id, state, next, last_error, finished])? != 1 {
        return Ok(());
    }
    let mut st = c.prepare_cached(
        "INSERT INTO notify_attempt (event_id, attempt, at, outcome, http_status, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let outcome = if a.delivered { "delivered" } else { "failed" };
    st.execute(params![
        event_id,
        number,
        a.at,
        outcome,
        a.http_status,
        a.detail
    ])?;
    Ok(())
}

/// The columns of `row_to_event`, from `notify_event e JOIN pay_order o`.
pub(super) const EVENT_COLS: &str = "e.id, o.order_no, e.target, e.url, e.status, e.state,
    e.attempts, e.next_attempt_at, e.last_error, e.created_at, e.finished_at";

pub(super) fn row_to_event(r: &Row) -> rusqlite::Result<EventInfo> {
    Ok(EventInfo {
        id: r.get(0)?,
        order_no: r.get(1)?,
        target: r.get(2)?,
        url: r.get(3)?,
        status: r.get(4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        next_attempt_at: r.get(7)?,
        last_error: r.get(8)?,
        created_at: r.get(9)?,
        finished_at: r.get(10)?,
    })
}

/// Events for operators, newest first (used by the CLI on its own connection too).
pub(super) fn list_events(
    c: &Connection,
    filter: EventFilter,
    limit: usize,
) -> rusqlite::Result<Vec<EventInfo>> {
    let state = match filter {
        EventFilter::All => None,
        EventFilter::Pending => Some("pending"),
        EventFilter::GivenUp => Some("given_up"),
    };
    let mut st = c.prepare_cached(&format!(
        "SELECT {EVENT_COLS} FROM notify_event e JOIN pay_order o ON o.id = e.order_id
         WHERE ?1 IS NULL OR e.state = ?1
         ORDER BY e.id DESC LIMIT ?2"
    ))?;
    let rows = st.query_map(params![state, limit as i64], row_to_event)?;
    rows.collect()
}

/// Makes an event pending and due now (used by the CLI on its own connection too).
pub(super) fn resend_event(c: &Connection, event_id: i64, now: i64) -> rusqlite::Result<bool> {
    let mut st = c.prepare_cached(
        "UPDATE notify_event SET state = 'pending', attempts = 0, next_attempt_at = ?2, finished_at = NULL
         WHERE id = ?1",
    )?;
    Ok(st.execute(params![event_id, now])? == 1)
}

/// One delivery attempt of a notification.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub attempt: i64,
    pub at: i64,
    pub outcome: String,
    pub http_status: Option<i64>,
    pub detail: Option<String>,
}

/// The attempts of one event, oldest first.
pub(super) fn attempts(c: &Connection, event_id: i64) -> rusqlite::Result<Vec<AttemptRow>> {
    let mut st = c.prepare_cached(
        "SELECT attempt, at, outcome, http_status, detail FROM notify_attempt
         WHERE event_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([event_id], |r| {
        Ok(AttemptRow {
            attempt: r.get(0)?,
            at: r.get(1)?,
            outcome: r.get(2)?,
            http_status: r.get(3)?,
            detail: r.get(4)?,
        })
    })?;
    rows.collect()
}
