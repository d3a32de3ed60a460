//! Refunds (`refund_order`) and the pay order's refund fields, one state machine.
//!
//! A refund is created `progress` in the transaction that checks and reserves its amount from
//! the order's refundable balance (unique per app and `bizRefundNo`). Every later change is a
//! conditional update from `progress`, in one transaction with the order's `refundableBalance`
//! and `refundStatus` recomputed from its refunds and the refund notice's outbox rows
//! (refund-sync.md §2). The amount goes back to the balance at most once: on the transition
//! from `progress` to `fail` or `close`.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{order_by_id, Store, WriterState};
use crate::domain::{
    pay_refund_status, Amount, Order, PayStatus, Refund, RefundAnswer, RefundKey, RefundStatus,
};
use crate::error::{
    msg_refund_order_status, Error, MSG_FULLY_REFUNDED, MSG_REFUND_ABNORMAL,
    MSG_REFUND_OVER_BALANCE,
};
use crate::sys::{self, UtcOffset};
use crate::wire;

/// A refund to create.
#[derive(Debug, Clone)]
pub struct NewRefund {
    pub biz_refund_no: String,
    pub amount: Amount,
    pub reason: Option<String>,
    pub attach: Option<String>,
    pub notify_url: Option<String>,
    pub extra_param: Option<String>,
    pub client_ip: Option<String>,
    pub req_time: Option<i64>,
    /// When the sweeper may first look at it (the request sends it itself before that).
    pub first_check_at: i64,
    pub now: i64,
}

/// What `create_refund` did.
#[derive(Debug)]
pub enum CreatedRefund {
    Created(Refund),
    /// The app has a refund with this `bizRefundNo` already: nothing was written.
    Existing(Refund),
}

/// What `reserve_refund_send` found.
#[derive(Debug)]
pub enum SendSlot {
    /// The send is noted: send it now (the refund as it now is).
    Reserved(Refund),
    /// A refund of the order was sent too recently: send it at this time.
    Wait(i64),
    /// No longer `progress`: nothing to send.
    NotProgress(Refund),
}

/// A nonce'd request's reply, given the refund as the change left it.
pub type RefundMemo = Box<dyn FnOnce(&Refund) -> super::NewNonce + Send>;

/// A sync's record.
#[derive(Debug, Clone)]
pub struct SyncRecord {
    /// `pay` or `refund`.
    pub kind: &'static str,
    pub order_no: String,
    pub refund_no: Option<String>,
    pub channel: Option<String>,
    pub channel_status: Option<String>,
    pub adjusted: bool,
    pub error_msg: Option<String>,
    pub client_ip: Option<String>,
    pub now: i64,
}

const REFUND_COLS: &str = "id, refund_no, app_id, mch_no, order_id, order_no, biz_order_no,
    out_order_no, channel, order_amount, title, biz_refund_no, amount, reason, attach, notify_url,
    extra_param, client_ip, req_time, status, out_refund_no, finish_time, error_msg, sends,
    last_send_at, unknown_sends, checks, next_check_at, created_at, updated_at";

fn row_to_refund(r: &Row) -> rusqlite::Result<Refund> {
    let status: String = r.get(19)?;
    Ok(Refund {
        id: r.get(0)?,
        refund_no: r.get(1)?,
        app_id: r.get(2)?,
        mch_no: r.get(3)?,
        order_id: r.get(4)?,
        order_no: r.get(5)?,
        biz_order_no: r.get(6)?,
        out_order_no: r.get(7)?,
        channel: r.get(8)?,
        order_amount: Amount(r.get(9)?),
        title: r.get(10)?,
        biz_refund_no: r.get(11)?,
        amount: Amount(r.get(12)?),
        reason: r.get(13)?,
        attach: r.get(14)?,
        notify_url: r.get(15)?,
        extra_param: r.get(16)?,
        client_ip: r.get(17)?,
        req_time: r.get(18)?,
        status: RefundStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                19,
                rusqlite::types::Type::Text,
                format!("bad refund status {status}").into(),
            )
        })?,
        out_refund_no: r.get(20)?,
        finish_time: r.get(21)?,
        error_msg: r.get(22)?,
        sends: r.get(23)?,
        last_send_at: r.get(24)?,
        unknown_sends: r.get(25)?,
        checks: r.get(26)?,
        next_check_at: r.get(27)?,
        created_at: r.get(28)?,
        updated_at: r.get(29)?,
    })
}

pub(super) fn refund_by_id(c: &Connection, id: i64) -> Result<Option<Refund>, Error> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {REFUND_COLS} FROM refund_order WHERE id = ?1"
    ))?;
    Ok(st.query_row([id], row_to_refund).optional()?)
}

fn refund_by_biz(c: &Connection, app_id: &str, biz: &str) -> Result<Option<Refund>, Error> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {REFUND_COLS} FROM refund_order WHERE app_id = ?1 AND biz_refund_no = ?2"
    ))?;
    Ok(st.query_row([app_id, biz], row_to_refund).optional()?)
}

/// The order's refund fields as functions of its refunds (refund-sync.md §2.2).
fn recompute_order(c: &Connection, order_id: i64, now: i64) -> Result<(), Error> {
    let mut st = c.prepare_cached(
        "SELECT o.amount,
            coalesce(sum(CASE WHEN r.status = 'progress' THEN r.amount END), 0),
            coalesce(sum(CASE WHEN r.status = 'success' THEN r.amount END), 0),
            count(CASE WHEN r.status = 'progress' THEN 1 END)
         FROM pay_order o LEFT JOIN refund_order r ON r.order_id = o.id
         WHERE o.id = ?1 GROUP BY o.id",
    )?;
    let (amount, held, refunded, progress): (i64, i64, i64, i64) = st
        .query_row([order_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
    let status = pay_refund_status(progress > 0, Amount(refunded), Amount(amount));
    c.prepare_cached(
        "UPDATE pay_order SET refundable_balance = ?2, refund_status = ?3, updated_at = ?4
         WHERE id = ?1",
    )?
    .execute(params![order_id, amount - held - refunded, status, now])?;
    Ok(())
}

/// Flags an order for an operator (keeping the first reason).
fn flag_order(c: &Connection, order_id: i64, why: &str, now: i64) -> Result<(), Error> {
    c.prepare_cached(
        "UPDATE pay_order SET attention = coalesce(attention, ?2),
            attention_at = coalesce(attention_at, ?3)
         WHERE id = ?1",
    )?
    .execute(params![order_id, why, now])?;
    log::warn!("order id={order_id} needs attention: {why}");
    Ok(())
}

/// The refund-sync.md §3.2 step 6 checks of an order about to reserve `amount`.
fn check_refundable(order: &Order, amount: Amount) -> Result<(), Error> {
    if order.status != PayStatus::Success {
        let label = match order.status {
            PayStatus::Fail => "失败",
            other => other.label(),
        };
        return Err(Error::TradeStatus(msg_refund_order_status(label)));
    }
    if order.refund_status.as_deref() == Some("refunded") {
        return Err(Error::TradeStatus(MSG_FULLY_REFUNDED.into()));
    }
    if amount > order.refundable_balance {
        return Err(Error::Validation(MSG_REFUND_OVER_BALANCE.into()));
    }
    Ok(())
}

/// Writes the refund notice's outbox rows: the refund's own notify URL, and the app's notify
/// URL (with `noticeType` "refund" when delivered).
fn enqueue_refund_notice(
    c: &Connection,
    state: &mut WriterState,
    refund: &Refund,
    now: i64,
    offset: UtcOffset,
) -> Result<(), Error> {
    let mut st = c.prepare_cached("SELECT notify_url FROM app WHERE app_id = ?1")?;
    let app_url: Option<String> = st
        .query_row([&refund.app_id], |r| r.get(0))
        .optional()?
        .flatten();
    let targets = [
        ("callback", refund.notify_url.as_deref()),
        ("subscribe", app_url.as_deref()),
    ];
    let mut data = None;
    for (target, url) in targets {
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            continue;
        };
        let data: &str = data.get_or_insert_with(|| wire::refund_order_data(refund, offset));
        c.prepare_cached(
            "INSERT INTO notify_event (order_id, app_id, target, url, status, data, next_attempt_at,
                created_at, refund_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
        )?
        .execute(params![
            refund.order_id,
            refund.app_id,
            target,
            url,
            refund.status.as_str(),
            data,
            now,
            refund.id
        ])?;
    }
    if data.is_some() {
        state.events_enqueued = true;
    }
    Ok(())
}

impl Store {
    /// Creates a refund of the order, checking and reserving its amount in the same
    /// transaction; a refund of the app with the same `bizRefundNo` is returned instead.
    pub fn create_refund(&self, order_id: i64, new: NewRefund) -> Result<CreatedRefund, Error> {
        let offset = self.offset;
        self.write(move |c, _| {
            let order = order_by_id(c, order_id)?.ok_or(Error::OrderNotFound)?;
            if let Some(existing) = refund_by_biz(c, &order.app_id, &new.biz_refund_no)? {
                return Ok(CreatedRefund::Existing(existing));
            }
            check_refundable(&order, new.amount)?;
            let seq: i64 = c
                .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM refund_order")?
                .query_row([], |r| r.get(0))?;
            let refund_no = format!("R{}{:06}", sys::format_compact(new.now, offset), seq);
            c.prepare_cached(
                "INSERT INTO refund_order (id, refund_no, app_id, mch_no, order_id, order_no,
                    biz_order_no, out_order_no, channel, order_amount, title, biz_refund_no, amount,
                    reason, attach, notify_url, extra_param, client_ip, req_time, status,
                    next_check_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18, ?19, 'progress', ?20, ?21, ?21)",
            )?
            .execute(params![
                seq,
                refund_no,
                order.app_id,
                order.mch_no,
                order.id,
                order.order_no,
                order.biz_order_no,
                order.out_order_no,
                order.channel.clone().unwrap_or_default(),
                order.amount.0,
                format!("{} - 退款", order.title),
                new.biz_refund_no,
                new.amount.0,
                new.reason,
                new.attach,
                new.notify_url,
                new.extra_param,
                new.client_ip,
                new.req_time,
                new.first_check_at,
                new.now,
            ])?;
            recompute_order(c, order.id, new.now)?;
            let refund =
                refund_by_id(c, seq)?.ok_or_else(|| Error::internal("new refund vanished"))?;
            Ok(CreatedRefund::Created(refund))
        })
    }

    /// Sends a `fail` refund again (refund-sync.md §3.4): the checks run again, the amount is
    /// reserved again, the status is `progress`. Non-null fields of the retry replace the stored
    /// ones. `Ok(None)` when it is no longer `fail`.
    pub fn retry_refund(&self, refund_id: i64, update: NewRefund) -> Result<Option<Refund>, Error> {
        self.write(move |c, _| {
            let Some(refund) = refund_by_id(c, refund_id)? else {
                return Ok(None);
            };
            if refund.status != RefundStatus::Fail {
                return Ok(None);
            }
            let order = order_by_id(c, refund.order_id)?.ok_or(Error::OrderNotFound)?;
            check_refundable(&order, refund.amount)?;
            c.prepare_cached(
                "UPDATE refund_order SET status = 'progress', error_msg = NULL,
                    attach = coalesce(?2, attach), notify_url = coalesce(?3, notify_url),
                    extra_param = coalesce(?4, extra_param), client_ip = coalesce(?5, client_ip),
                    req_time = coalesce(?6, req_time), next_check_at = ?7, updated_at = ?8
                 WHERE id = ?1 AND status = 'fail'",
            )?
            .execute(params![
                refund_id,
                update.attach,
                update.notify_url,
                update.extra_param,
                update.client_ip,
                update.req_time,
                update.first_check_at,
                update.now
            ])?;
            recompute_order(c, order.id, update.now)?;
            refund_by_id(c, refund_id)
        })
    }

    /// Reserves a send of a `progress` refund now: in one transaction, checks that no refund
    /// of its order was sent less than `spacing` ago (a channel's rule; a send "later" than now
    /// means the clock went back, and the spacing counts from now) and notes the send. Two
    /// refunds of one order can never both pass the check.
    pub fn reserve_refund_send(
        &self,
        refund_id: i64,
        spacing: i64,
        now: i64,
    ) -> Result<SendSlot, Error> {
        self.write(move |c, _| {
            let refund = refund_by_id(c, refund_id)?
                .ok_or(Error::RefundNotFound(crate::error::MSG_REFUND_NOT_FOUND))?;
            if refund.status != RefundStatus::Progress {
                return Ok(SendSlot::NotProgress(refund));
            }
            if spacing > 0 {
                let last: Option<i64> = c
                    .prepare_cached(
                        "SELECT max(last_send_at) FROM refund_order WHERE order_id = ?1",
                    )?
                    .query_row([refund.order_id], |r| r.get(0))?;
                if let Some(last) = last {
                    let due = last.min(now) + spacing;
                    if now < due {
                        return Ok(SendSlot::Wait(due));
                    }
                }
            }
            c.prepare_cached(
                "UPDATE refund_order SET sends = sends + 1, last_send_at = ?2 WHERE id = ?1",
            )?
            .execute(params![refund_id, now])?;
            let sent =
                refund_by_id(c, refund_id)?.ok_or_else(|| Error::internal("refund vanished"))?;
            Ok(SendSlot::Reserved(sent))
        })
    }

    /// Moves a `progress` refund's next check to `at`.
    pub fn refund_check_at(&self, refund_id: i64, at: i64) -> Result<(), Error> {
        self.write(move |c, _| {
            c.prepare_cached(
                "UPDATE refund_order SET next_check_at = ?2 WHERE id = ?1 AND status = 'progress'",
            )?
            .execute(params![refund_id, at])?;
            Ok(())
        })
    }

    /// Applies a channel's answer to a `progress` refund, in one transaction with the order's
    /// refund fields, the notice's outbox rows and `memo` (a nonce'd request's reply, given the
    /// refund as it then is). `from_send`: the answer is a send's (an unknown one is counted).
    /// `next_check_at`: when to look again if it stays `progress`. Returns the refund as it now
    /// is and whether its status changed.
    pub fn apply_refund(
        &self,
        refund_id: i64,
        answer: RefundAnswer,
        from_send: bool,
        next_check_at: i64,
        now: i64,
        memo: Option<RefundMemo>,
    ) -> Result<(Refund, bool), Error> {
        let offset = self.offset;
        self.write(move |c, state| {
            let refund = refund_by_id(c, refund_id)?.ok_or(Error::RefundNotFound(
                crate::error::MSG_REFUND_NOT_FOUND,
            ))?;
            let to = match &answer {
                _ if refund.status != RefundStatus::Progress => None,
                RefundAnswer::Success { .. } => Some(RefundStatus::Success),
                RefundAnswer::Closed { .. } => Some(RefundStatus::Close),
                RefundAnswer::Refused(_) => Some(RefundStatus::Fail),
                _ => None,
            };
            let out = match &answer {
                RefundAnswer::Success { out_refund_no, .. }
                | RefundAnswer::Processing { out_refund_no }
                | RefundAnswer::Closed { out_refund_no }
                | RefundAnswer::Abnormal { out_refund_no } => out_refund_no.clone(),
                _ => None,
            };
            let (finish, error) = match &answer {
                RefundAnswer::Success { finish_time, .. } => (Some(finish_time.unwrap_or(now)), None),
                RefundAnswer::Refused(msg) => (None, Some(msg.clone())),
                RefundAnswer::Abnormal { .. } => (None, Some(MSG_REFUND_ABNORMAL.to_string())),
                _ => (None, None),
            };
            let unknown = from_send && matches!(answer, RefundAnswer::Unknown(_));
            let changed = match to {
                Some(to) => {
                    c.prepare_cached(
                        "UPDATE refund_order SET status = ?2, out_refund_no = coalesce(?3, out_refund_no),
                            finish_time = ?4, error_msg = ?5, next_check_at = NULL, updated_at = ?6
                         WHERE id = ?1 AND status = 'progress'",
                    )?
                    .execute(params![refund_id, to.as_str(), out, finish, error, now])?
                        == 1
                }
                None if refund.status == RefundStatus::Progress => {
                    c.prepare_cached(
                        "UPDATE refund_order SET out_refund_no = coalesce(?2, out_refund_no),
                            error_msg = coalesce(?3, error_msg), unknown_sends = unknown_sends + ?4,
                            checks = checks + 1, next_check_at = ?5, updated_at = ?6
                         WHERE id = ?1 AND status = 'progress'",
                    )?
                    .execute(params![refund_id, out, error, unknown as i64, next_check_at, now])?;
                    false
                }
                None => false,
            };
            // The channel disagrees with a refund that is over: its money stays as it is, and
            // an operator looks.
            let disagrees = match (&answer, refund.status) {
                (RefundAnswer::Success { .. }, RefundStatus::Fail | RefundStatus::Close) => true,
                (RefundAnswer::Closed { .. }, RefundStatus::Success) => true,
                _ => false,
            };
            if disagrees {
                let why = format!(
                    "退款{}为{}, 但通道称其{}",
                    refund.refund_no,
                    refund.status.label(),
                    if matches!(answer, RefundAnswer::Success { .. }) { "退款成功" } else { "已关闭" }
                );
                flag_order(c, refund.order_id, &why, now)?;
            }
            match &answer {
                RefundAnswer::Abnormal { .. } => {
                    flag_order(c, refund.order_id, &format!("退款{}异常, 请在通道处理", refund.refund_no), now)?;
                }
                RefundAnswer::Attention(why) => {
                    flag_order(c, refund.order_id, &format!("退款{}: {why}", refund.refund_no), now)?;
                }
                _ => {}
            }
            if changed {
                recompute_order(c, refund.order_id, now)?;
            }
            let after = refund_by_id(c, refund_id)?.ok_or_else(|| Error::internal("refund vanished"))?;
            if changed {
                enqueue_refund_notice(c, state, &after, now, offset)?;
            }
            if let Some(memo) = memo {
                super::nonce::insert_nonce(c, &memo(&after))?;
            }
            Ok((after, changed))
        })
    }

    /// Flags an order for an operator.
    pub fn flag_attention(&self, order_id: i64, why: String, now: i64) -> Result<(), Error> {
        self.write(move |c, _| flag_order(c, order_id, &why, now))
    }

    /// The refund of `app_id` named by `key`.
    pub fn find_refund(&self, app_id: &str, key: &RefundKey) -> Result<Option<Refund>, Error> {
        self.read(|c| match key {
            RefundKey::BizRefundNo(b) => refund_by_biz(c, app_id, b),
            RefundKey::RefundNo(n) => {
                let mut st = c.prepare_cached(&format!(
                    "SELECT {REFUND_COLS} FROM refund_order WHERE app_id = ?1 AND refund_no = ?2"
                ))?;
                Ok(st.query_row([app_id, n], row_to_refund).optional()?)
            }
        })
    }

    /// The refund with this number, whatever its app (the sandbox's payer side).
    pub fn refund_by_no(&self, refund_no: &str) -> Result<Option<Refund>, Error> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {REFUND_COLS} FROM refund_order WHERE refund_no = ?1"
            ))?;
            Ok(st.query_row([refund_no], row_to_refund).optional()?)
        })
    }

    /// The refunds of an order, oldest first.
    pub fn refunds_of_order(&self, order_id: i64) -> Result<Vec<Refund>, Error> {
        self.read(|c| Ok(refunds_of_order(c, order_id)?))
    }

    /// `progress` refunds due for a check at `now`, soonest first.
    pub fn due_refunds(&self, now: i64, limit: usize) -> Result<Vec<Refund>, Error> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {REFUND_COLS} FROM refund_order
                 WHERE status = 'progress' AND coalesce(next_check_at, 0) <= ?1
                 ORDER BY next_check_at LIMIT ?2"
            ))?;
            let rows = st.query_map(params![now, limit as i64], row_to_refund)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Makes every `progress` refund of an order due now (a channel said something happened).
    pub fn refunds_due_now(&self, order_id: i64, now: i64) -> Result<(), Error> {
        self.write(move |c, _| {
            c.prepare_cached(
                "UPDATE refund_order SET next_check_at = ?2 WHERE order_id = ?1 AND status = 'progress'",
            )?
            .execute(params![order_id, now])?;
            Ok(())
        })
    }

    /// Makes every `progress` refund due at `now` (at start-up: whatever was under way when the
    /// last process stopped is looked at first).
    pub fn all_refunds_due(&self, now: i64) -> Result<usize, Error> {
        self.write(move |c, _| {
            Ok(c.prepare_cached(
                "UPDATE refund_order SET next_check_at = ?1
                 WHERE status = 'progress' AND coalesce(next_check_at, 0) > ?1",
            )?
            .execute([now])?)
        })
    }

    /// Writes a sync's record.
    pub fn record_sync(&self, r: SyncRecord) -> Result<(), Error> {
        self.write(move |c, _| {
            c.prepare_cached(
                "INSERT INTO sync_record (kind, order_no, refund_no, channel, channel_status,
                    adjusted, error_msg, client_ip, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                r.kind,
                r.order_no,
                r.refund_no,
                r.channel,
                r.channel_status,
                r.adjusted,
                r.error_msg,
                r.client_ip,
                r.now
            ])?;
            Ok(())
        })
    }

    /// The last sync record written: the channel's word, and whether the sync changed
    /// anything (for the sync module's tests).
    #[cfg(test)]
    pub fn last_sync_record(&self) -> Result<(Option<String>, bool), Error> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT channel_status, adjusted FROM sync_record ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
    }
}

pub(super) fn refunds_of_order(c: &Connection, order_id: i64) -> rusqlite::Result<Vec<Refund>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {REFUND_COLS} FROM refund_order WHERE order_id = ?1 ORDER BY id"
    ))?;
    let rows = st.query_map([order_id], row_to_refund)?;
    rows.collect()
}

/// Refunds for operators, newest first, of one status or all.
pub(super) fn list_refunds(
    c: &Connection,
    status: Option<RefundStatus>,
    limit: usize,
) -> rusqlite::Result<Vec<Refund>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {REFUND_COLS} FROM refund_order WHERE ?1 IS NULL OR status = ?1
         ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = st.query_map(
        params![status.map(|s| s.as_str()), limit as i64],
        row_to_refund,
    )?;
    rows.collect()
}
