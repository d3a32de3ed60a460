//! Orders and their status changes: the one state machine every transition goes through.
//!
//! Every change of status is `transition`: a compare-and-set (`UPDATE … WHERE status IN (…)`)
//! that writes the outbox rows of the change in the same transaction. A transition that lost a
//! race changes nothing and the caller reports the order's real state. Closes of `progress`
//! orders are bracketed by a `close_intent` row so that a crash while the channel is being asked
//! leaves a trace that start-up recovery finishes or undoes.

use rusqlite::{params, Connection, OptionalExtension};

use super::nonce::{remember, Memo};
use super::{find_order, order_by_id, order_cols, Store, WriterState};
use crate::domain::{
    plan_close, Actor, Amount, ChannelCloseOutcome, ClosePlan, CloseRequest, CloseType, Order,
    OrderKey, PayStatus,
};
use crate::error::{
    msg_late_payment, Error, MSG_NOT_CLOSABLE, MSG_RECORD_PAID_AT_CHANNEL, MSG_RECORD_REFUNDED,
    MSG_RECORD_STATUS_CHANGED,
};
use crate::sys::{self, UtcOffset};
use crate::wire;

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

/// Which order a store operation is about: its id, or an app's key (the API's lookup rule).
#[derive(Debug, Clone)]
pub enum OrderRef {
    Id(i64),
    Key { app_id: String, key: OrderKey },
}

/// What `close_local` did.
#[derive(Debug)]
pub enum LocalClose {
    /// The order was `wait`: it is closed, with its close record and outbox rows.
    Closed(Order),
    /// The order is `progress`: its channel must close or cancel the trade first; nothing was
    /// written.
    AtChannel(Order, CloseType),
}

/// What happened when the money of an order arrived.
#[derive(Debug)]
pub enum Payment {
    /// The order is now `success`.
    Paid(Order),
    /// The order was already `success`: nothing changed.
    AlreadyPaid(Order),
    /// The order was already closed, cancelled or failed: the money still wins, so it is now
    /// `success` (the merchant is notified) and flagged for an operator, who refunds or
    /// reconciles it.
    Attention(Order),
}

/// A close that was talking to its channel when the process stopped.
#[derive(Debug, Clone)]
pub struct CloseIntent {
    pub order: Order,
    pub close_type: CloseType,
    pub req: CloseRequest,
}

impl Store {
    /// Creates an order unless the app already has one with this `bizOrderNo`; `memo` remembers
    /// the request's reply with the new order.
    pub fn insert_order(&self, new: NewOrder, memo: Option<Memo>) -> Result<Inserted, Error> {
        let offset = self.offset;
        self.write(move |c, state| {
            let key = OrderKey::BizOrderNo(new.biz_order_no.clone());
            if let Some(existing) = find_order(c, &new.app_id, &key)? {
                return Ok(Inserted::Existing(existing));
            }
            let id = state.last_order_id + 1;
            let order_no = format!("P{}{:06}", sys::format_compact(new.now, offset), id);
            let mut st = c.prepare_cached(
                "INSERT INTO pay_order (id, order_no, mch_no, app_id, biz_order_no, title, description,
                    allocation, auto_allocation, channel, method, other_method, limit_pay, amount,
                    refundable_balance, refund_status, status, expired_time, attach, notify_url,
                    return_url, extra_param, client_ip, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, 'no_refund', ?15, ?16,
                    ?17, ?18, ?19, ?20, ?21, ?22, ?22)",
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
            let order = order_by_id(c, id)?.ok_or_else(|| Error::internal("new order vanished"))?;
            remember(c, memo, &order)?;
            Ok(Inserted::Created(order))
        })
    }

    /// Hands a `wait` order to a channel: it becomes `progress` (no notification: not a final
    /// status). `None` if it is no longer `wait`.
    pub fn hand_to_channel(
        &self,
        order_id: i64,
        channel: String,
        method: String,
        now: i64,
    ) -> Result<Option<Order>, Error> {
        let offset = self.offset;
        self.write(move |c, state| {
            let mut st = c.prepare_cached(
                "UPDATE pay_order SET channel = ?2, method = ?3
                 WHERE id = ?1 AND status = 'wait' AND expired_time > ?4",
            )?;
            if st.execute(params![order_id, channel, method, now])? != 1 {
                return Ok(None);
            }
            let (from, to) = (&[PayStatus::Wait][..], PayStatus::Progress);
            transition(c, state, order_id, from, to, now, None, offset)
        })
    }

    /// Marks an open order `fail` (its channel refused it).
    pub fn fail_order(
        &self,
        order_id: i64,
        error_msg: String,
        now: i64,
        memo: Option<Memo>,
    ) -> Result<Option<Order>, Error> {
        let offset = self.offset;
        self.write(move |c, state| {
            let (from, to) = (&PayStatus::CLOSABLE[..], PayStatus::Fail);
            let failed = transition(c, state, order_id, from, to, now, Some(&error_msg), offset)?;
            if let Some(order) = &failed {
                remember(c, memo, order)?;
            }
            Ok(failed)
        })
    }

    /// Finds the order and closes it if it is `wait` (one write job: the API's hot path), or
    /// says that its channel must close it first (`progress`, the close type of `plan_close`).
    /// Any other status is 20044; an unknown order 20041.
    pub fn close_local(
        &self,
        order: OrderRef,
        use_cancel: bool,
        req: CloseRequest,
        memo: Option<Memo>,
    ) -> Result<LocalClose, Error> {
        let offset = self.offset;
        self.write(move |c, state| {
            let order = match &order {
                OrderRef::Id(id) => order_by_id(c, *id)?,
                OrderRef::Key { app_id, key } => find_order(c, app_id, key)?,
            }
            .ok_or(Error::OrderNotFound)?;
            match plan_close(order.status, use_cancel) {
                Err(_) => Err(Error::TradeStatus(MSG_NOT_CLOSABLE.into())),
                Ok(ClosePlan::AtChannel(close_type)) => {
                    Ok(LocalClose::AtChannel(order, close_type))
                }
                Ok(ClosePlan::Local) => {
                    let (from, to) = (&[PayStatus::Wait][..], PayStatus::Close);
                    let closed = transition(c, state, order.id, from, to, req.now, None, offset)?
                        .ok_or_else(|| Error::TradeStatus(MSG_NOT_CLOSABLE.into()))?;
                    insert_close_record(c, &closed, CloseType::Close, true, None, &req)?;
                    remember(c, memo, &closed)?;
                    Ok(LocalClose::Closed(closed))
                }
            }
        })
    }

    /// Commits the intent to close a `progress` order at its channel. `Err(Closing)` (20043)
    /// when a close of it is already running; 20044 when it is no longer `progress`.
    pub fn begin_close(
        &self,
        order_id: i64,
        close_type: CloseType,
        req: CloseRequest,
    ) -> Result<Order, Error> {
        self.write(move |c, _| {
            let order = order_by_id(c, order_id)?.ok_or(Error::OrderNotFound)?;
            if order.status != PayStatus::Progress {
                return Err(Error::TradeStatus(MSG_NOT_CLOSABLE.into()));
            }
            let mut st = c.prepare_cached(
                "INSERT INTO close_intent (order_id, close_type, actor, client_ip, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (order_id) DO NOTHING",
            )?;
            let inserted = st.execute(params![
                order_id,
                close_type.as_str(),
                req.actor.as_str(),
                req.client_ip,
                req.now
            ])?;
            if inserted != 1 {
                return Err(Error::Closing);
            }
            Ok(order)
        })
    }

    /// Applies what the channel said about closing a `progress` order and ends its intent: the
    /// order becomes `close`/`cancel` when the trade is closed, `success` when it was paid, and
    /// stays as it is when the channel failed. Returns the order as it now is, and whether this
    /// call changed its status; when it did, `memo` remembers the request's reply with it.
    pub fn finish_channel_close(
        &self,
        order_id: i64,
        close_type: CloseType,
        outcome: ChannelCloseOutcome,
        req: CloseRequest,
        memo: Option<Memo>,
    ) -> Result<(Order, bool), Error> {
        let offset = self.offset;
        self.write(move |c, state| {
            c.prepare_cached("DELETE FROM close_intent WHERE order_id = ?1")?
                .execute([order_id])?;
            let order = order_by_id(c, order_id)?.ok_or(Error::OrderNotFound)?;
            let result: Result<(Order, bool), Error> = match outcome {
                ChannelCloseOutcome::Closed | ChannelCloseOutcome::Refunded => {
                    let note = match outcome {
                        ChannelCloseOutcome::Refunded => Some(MSG_RECORD_REFUNDED),
                        _ => None,
                    };
                    let (from, to) = (&[PayStatus::Progress][..], close_type.target());
                    match transition(c, state, order_id, from, to, req.now, None, offset)? {
                        Some(closed) => {
                            insert_close_record(c, &closed, close_type, true, note, &req)?;
                            Ok((closed, true))
                        }
                        None => {
                            let msg = Some(MSG_RECORD_STATUS_CHANGED);
                            insert_close_record(c, &order, close_type, false, msg, &req)?;
                            Ok((order, false))
                        }
                    }
                }
                ChannelCloseOutcome::Paid { trade_no, paid_at } => {
                    let msg = Some(MSG_RECORD_PAID_AT_CHANNEL);
                    insert_close_record(c, &order, close_type, false, msg, &req)?;
                    match apply_payment(c, state, order_id, &trade_no, paid_at, req.now, offset)? {
                        Payment::Paid(paid) => Ok((paid, true)),
                        Payment::AlreadyPaid(o) | Payment::Attention(o) => Ok((o, false)),
                    }
                }
                ChannelCloseOutcome::Failed(msg) => {
                    insert_close_record(c, &order, close_type, false, Some(&msg), &req)?;
                    Ok((order, false))
                }
            };
            let result = result?;
            if result.1 {
                remember(c, memo, &result.0)?;
            }
            Ok(result)
        })
    }

    /// The money of an order arrived at its channel (a callback, a query, a close that found
    /// the trade paid). Money wins: the order becomes `success`, and one that was already
    /// closed, cancelled or failed is also flagged for an operator.
    pub fn apply_payment(
        &self,
        order_id: i64,
        trade_no: String,
        paid_at: i64,
        now: i64,
    ) -> Result<Payment, Error> {
        let offset = self.offset;
        self.write(move |c, state| {
            apply_payment(c, state, order_id, &trade_no, paid_at, now, offset)
        })
    }

    /// Orders still open after their expiry time, oldest expiry first.
    pub fn expired_open_orders(&self, now: i64, limit: usize) -> Result<Vec<Order>, Error> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {} FROM pay_order WHERE status IN ('wait', 'progress') AND expired_time <= ?1
                 ORDER BY expired_time LIMIT ?2",
                super::ORDER_COLS
            ))?;
            let rows = st.query_map(params![now, limit as i64], super::row_to_order)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Close intents created at or before `before`, oldest first.
    pub fn close_intents(&self, before: i64) -> Result<Vec<CloseIntent>, Error> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT order_id, close_type, actor, client_ip, created_at FROM close_intent
                 WHERE created_at <= ?1 ORDER BY created_at",
            )?;
            let rows = st.query_map([before], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (order_id, close_type, actor, client_ip, created_at) = row?;
                let Some(order) = order_by_id(c, order_id)? else {
                    continue;
                };
                out.push(CloseIntent {
                    order,
                    close_type: CloseType::parse(&close_type),
                    req: CloseRequest {
                        actor: Actor::parse(&actor),
                        client_ip,
                        now: created_at,
                    },
                });
            }
            Ok(out)
        })
    }

    /// Records a close attempt whose outcome at the channel is unknown (a timeout, an answer
    /// that does not verify): the order stays `progress` and the intent stays, for recovery to
    /// settle by asking the channel.
    pub fn record_unknown_close(
        &self,
        order_id: i64,
        close_type: CloseType,
        req: CloseRequest,
        why: String,
    ) -> Result<Order, Error> {
        self.write(move |c, _| {
            let order = order_by_id(c, order_id)?.ok_or(Error::OrderNotFound)?;
            insert_close_record(c, &order, close_type, false, Some(&why), &req)?;
            Ok(order)
        })
    }

    /// Ends an intent whose close never reached the channel: the order stays `progress`.
    pub fn abandon_close(
        &self,
        order_id: i64,
        close_type: CloseType,
        req: CloseRequest,
        why: String,
    ) -> Result<(), Error> {
        self.write(move |c, _| {
            let deleted = c
                .prepare_cached("DELETE FROM close_intent WHERE order_id = ?1")?
                .execute([order_id])?;
            if deleted == 1 {
                if let Some(order) = order_by_id(c, order_id)? {
                    insert_close_record(c, &order, close_type, false, Some(&why), &req)?;
                }
            }
            Ok(())
        })
    }
}

/// The highest order id on disk (0 without orders): new orders take the next ones.
pub(super) fn last_order_id(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT coalesce(max(id), 0) FROM pay_order")?
        .query_row([], |r| r.get(0))
}

/// Orders flagged for an operator, newest first (the CLI uses its own connection).
pub(super) fn attention_orders(c: &Connection, limit: usize) -> rusqlite::Result<Vec<Order>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {} FROM pay_order WHERE attention IS NOT NULL ORDER BY attention_at DESC LIMIT ?1",
        super::ORDER_COLS
    ))?;
    let rows = st.query_map([limit as i64], super::row_to_order)?;
    rows.collect()
}

/// Moves an order from one of `from` (at most two statuses) to `to` if it is still in one of
/// them, and writes the outbox rows when `to` is final. Returns the changed order, or `None` if
/// its status was not in `from` (the caller reports the real state).
#[allow(clippy::too_many_arguments)]
pub(super) fn transition(
    c: &Connection,
    state: &mut WriterState,
    order_id: i64,
    from: &[PayStatus],
    to: PayStatus,
    now: i64,
    error_msg: Option<&str>,
    offset: UtcOffset,
) -> Result<Option<Order>, Error> {
    let a = from[0].as_str();
    let b = from.get(1).unwrap_or(&from[0]).as_str();
    let mut st = c.prepare_cached(TRANSITION_SQL)?;
    let changed = st
        .query_row(
            params![order_id, to.as_str(), now, error_msg, a, b],
            super::row_to_order,
        )
        .optional()?;
    let Some(order) = changed else {
        return Ok(None);
    };
    if to.is_terminal() {
        // A final status ends any close in flight: its intent has nothing left to settle.
        if from.contains(&PayStatus::Progress) {
            c.prepare_cached("DELETE FROM close_intent WHERE order_id = ?1")?
                .execute([order_id])?;
        }
        if enqueue_notifications(c, &order, now, offset)? {
            state.events_enqueued = true;
        }
    }
    Ok(Some(order))
}

/// The compare-and-set of `transition`, returning the changed row.
const TRANSITION_SQL: &str = concat!(
    "UPDATE pay_order SET status = ?2, updated_at = ?3,
        close_time = CASE WHEN ?2 IN ('close', 'cancel') THEN ?3 ELSE close_time END,
        error_msg = coalesce(?4, error_msg)
     WHERE id = ?1 AND status IN (?5, ?6) RETURNING ",
    order_cols!()
);

/// Money arrived for an order: see `Store::apply_payment`.
pub(super) fn apply_payment(
    c: &Connection,
    state: &mut WriterState,
    order_id: i64,
    trade_no: &str,
    paid_at: i64,
    now: i64,
    offset: UtcOffset,
) -> Result<Payment, Error> {
    let order = order_by_id(c, order_id)?.ok_or(Error::OrderNotFound)?;
    let (from, late): (&[PayStatus], bool) = match order.status {
        PayStatus::Success => return Ok(Payment::AlreadyPaid(order)),
        PayStatus::Wait | PayStatus::Progress => (&PayStatus::PAYABLE, false),
        // Money for an order that is already over: it still wins (the merchant must learn of
        // real money), and an operator is asked to look at it.
        late @ (PayStatus::Close | PayStatus::Cancel | PayStatus::Fail) => {
            let why = msg_late_payment(late.label(), trade_no, late.as_str());
            let mut st = c.prepare_cached(
                "UPDATE pay_order SET attention = ?2, attention_at = ?3 WHERE id = ?1",
            )?;
            st.execute(params![order_id, why, now])?;
            log::warn!("order {} needs attention: {why}", order.order_no);
            let from: &[PayStatus] = match late {
                PayStatus::Close => &[PayStatus::Close],
                PayStatus::Cancel => &[PayStatus::Cancel],
                _ => &[PayStatus::Fail],
            };
            (from, true)
        }
    };
    let mut st = c.prepare_cached(
        "UPDATE pay_order SET out_order_no = coalesce(nullif(?2, ''), out_order_no), pay_time = ?3,
            refundable_balance = amount, refund_status = 'no_refund'
         WHERE id = ?1",
    )?;
    st.execute(params![order_id, trade_no, paid_at])?;
    match transition(
        c,
        state,
        order_id,
        from,
        PayStatus::Success,
        now,
        None,
        offset,
    )? {
        Some(paid) if late => Ok(Payment::Attention(paid)),
        Some(paid) => Ok(Payment::Paid(paid)),
        None => Err(Error::internal(
            "an order changed inside its own transaction",
        )),
    }
}

/// Writes one outbox row per target of an order's status change: the order's own notify URL,
/// and the app's notify URL when the app subscribes. Returns whether it wrote any.
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

pub(super) fn insert_close_record(
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
