//! The sandbox channel's book of trades (`sandbox_trade`): what a real channel keeps on its side.

use rusqlite::{params, Connection, OptionalExtension};

use super::orders::{apply_payment, Payment};
use super::{row_to_order, Store, ORDER_BY_NO_SQL};
use crate::domain::{Amount, Order, PayStatus, SANDBOX};
use crate::error::{
    Error, MSG_PAY_EXPIRED, MSG_PAY_NOT_SANDBOX, MSG_PAY_ORDER_CANCELLED, MSG_PAY_ORDER_CLOSED,
    MSG_PAY_ORDER_FAILED, MSG_PAY_ORDER_PAID, MSG_PAY_STATUS_CHANGED, MSG_PAY_TRADE_CANCELLED,
    MSG_PAY_TRADE_CLOSED, MSG_PAY_TRADE_PAID,
};

/// A trade in the sandbox channel's book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxTrade {
    pub trade_no: String,
    pub amount: Amount,
    /// `open`, `paid`, `closed` or `cancelled`.
    pub state: String,
    pub updated_at: i64,
}

impl Store {
    /// Opens a sandbox trade for an order (nothing if it has one).
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

    /// Closes or cancels a sandbox trade if it is open; reports what the trade is now
    /// (`None`: there is no trade).
    pub fn sandbox_close(
        &self,
        order_no: String,
        cancel: bool,
        now: i64,
    ) -> Result<Option<SandboxTrade>, Error> {
        self.write(move |c, _| {
            let to = if cancel { "cancelled" } else { "closed" };
            let mut st = c.prepare_cached(
                "UPDATE sandbox_trade SET state = ?2, updated_at = ?3 WHERE order_no = ?1 AND state = 'open'",
            )?;
            st.execute(params![order_no, to, now])?;
            sandbox_trade(c, &order_no)
        })
    }

    /// The payer pays: the trade becomes paid and the order `success`, in one transaction, as a
    /// channel's payment callback would do. Refused (20044, nothing changes) when the order is
    /// not open or expired, or the trade is closed, cancelled or already paid. An order without
    /// a trade (a `wait` order at the cashier) gets one, paid.
    pub fn sandbox_pay(
        &self,
        order_no: String,
        trade_no: String,
        now: i64,
    ) -> Result<Order, Error> {
        let offset = self.offset;
        self.write(move |c, state| {
            let mut st = c.prepare_cached(ORDER_BY_NO_SQL)?;
            let order = st.query_row([&order_no], row_to_order).optional()?.ok_or(Error::OrderNotFound)?;
            let refuse = |why: &str| Err(Error::TradeStatus(why.to_string()));
            match order.status {
                PayStatus::Success => return refuse(MSG_PAY_ORDER_PAID),
                PayStatus::Close => return refuse(MSG_PAY_ORDER_CLOSED),
                PayStatus::Cancel => return refuse(MSG_PAY_ORDER_CANCELLED),
                PayStatus::Fail => return refuse(MSG_PAY_ORDER_FAILED),
                PayStatus::Wait | PayStatus::Progress => {}
            }
            if order.channel.as_deref().is_some_and(|ch| ch != SANDBOX) {
                return refuse(MSG_PAY_NOT_SANDBOX);
            }
            let trade = sandbox_trade(c, &order_no)?;
            match trade.as_ref().map(|t| t.state.as_str()) {
                Some("closed") => return refuse(MSG_PAY_TRADE_CLOSED),
                Some("cancelled") => return refuse(MSG_PAY_TRADE_CANCELLED),
                Some("paid") => return refuse(MSG_PAY_TRADE_PAID),
                _ => {}
            }
            if now >= order.expired_time {
                return refuse(MSG_PAY_EXPIRED);
            }
            let trade_no = match trade {
                Some(t) => {
                    let mut st = c.prepare_cached(
                        "UPDATE sandbox_trade SET state = 'paid', updated_at = ?2 WHERE order_no = ?1 AND state = 'open'",
                    )?;
                    st.execute(params![order_no, now])?;
                    t.trade_no
                }
                None => {
                    let mut st = c.prepare_cached(
                        "INSERT INTO sandbox_trade (order_no, trade_no, amount, state, created_at, updated_at)
                         VALUES (?1, ?2, ?3, 'paid', ?4, ?4)",
                    )?;
                    st.execute(params![order_no, trade_no, order.amount.0, now])?;
                    let mut st = c.prepare_cached(
                        "UPDATE pay_order SET channel = ?2, method = coalesce(method, 'web') WHERE id = ?1",
                    )?;
                    st.execute(params![order.id, SANDBOX])?;
                    trade_no
                }
            };
            match apply_payment(c, state, order.id, &trade_no, now, now, offset)? {
                Payment::Paid(paid) => Ok(paid),
                // The status was checked above inside this transaction.
                Payment::AlreadyPaid(_) | Payment::Attention(_) => refuse(MSG_PAY_STATUS_CHANGED),
            }
        })
    }

    /// The sandbox trade of an order, if any.
    pub fn sandbox_trade(&self, order_no: &str) -> Result<Option<SandboxTrade>, Error> {
        self.read(|c| sandbox_trade(c, order_no))
    }
}

fn sandbox_trade(c: &Connection, order_no: &str) -> Result<Option<SandboxTrade>, Error> {
    let mut st = c.prepare_cached(
        "SELECT trade_no, amount, state, updated_at FROM sandbox_trade WHERE order_no = ?1",
    )?;
    let trade = st
        .query_row([order_no], |r| {
            Ok(SandboxTrade {
                trade_no: r.get(0)?,
                amount: Amount(r.get(1)?),
                state: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })
        .optional()?;
    Ok(trade)
}

/// A refund in the sandbox's book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRefund {
    pub refund_no: String,
    pub order_no: String,
    pub amount: Amount,
    /// `success`, `processing`, `closed` or `abnormal`.
    pub state: String,
    pub out_refund_no: String,
    pub updated_at: i64,
}

/// What the sandbox's book did with a refund request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxRefunded {
    /// Booked now, or booked before under this refund number (never twice).
    Booked(SandboxRefund),
    /// The trade is not paid, or its refunds would pass its amount.
    Refused(&'static str),
}

impl Store {
    /// Books a refund of a paid sandbox trade (`processing` or at once `success`); a refund
    /// number booked before is answered with that refund again.
    pub fn sandbox_refund(
        &self,
        order_no: String,
        refund_no: String,
        amount: Amount,
        processing: bool,
        out_refund_no: String,
        now: i64,
    ) -> Result<SandboxRefunded, Error> {
        self.write(move |c, _| {
            if let Some(done) = sandbox_refund(c, &refund_no)? {
                return Ok(SandboxRefunded::Booked(done));
            }
            let Some(trade) = sandbox_trade(c, &order_no)? else {
                return Ok(SandboxRefunded::Refused("交易不存在"));
            };
            if trade.state != "paid" {
                return Ok(SandboxRefunded::Refused("交易未支付"));
            }
            let refunded: i64 = c
                .prepare_cached(
                    "SELECT coalesce(sum(amount), 0) FROM sandbox_refund
                     WHERE order_no = ?1 AND state <> 'closed'",
                )?
                .query_row([&order_no], |r| r.get(0))?;
            if refunded + amount.0 > trade.amount.0 {
                return Ok(SandboxRefunded::Refused("退款金额超过交易金额"));
            }
            let state = if processing { "processing" } else { "success" };
            c.prepare_cached(
                "INSERT INTO sandbox_refund (refund_no, order_no, amount, state, out_refund_no,
                    created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            )?
            .execute(params![
                refund_no,
                order_no,
                amount.0,
                state,
                out_refund_no,
                now
            ])?;
            let booked = sandbox_refund(c, &refund_no)?.ok_or(Error::OrderNotFound)?;
            Ok(SandboxRefunded::Booked(booked))
        })
    }

    /// Moves a processing (or abnormal) sandbox refund to `state`; `None` when there is no
    /// such refund, `Some(Err(state))` when it is already final.
    pub fn sandbox_settle_refund(
        &self,
        refund_no: String,
        state: &'static str,
        now: i64,
    ) -> Result<Option<Result<SandboxRefund, String>>, Error> {
        self.write(move |c, _| {
            let Some(refund) = sandbox_refund(c, &refund_no)? else {
                return Ok(None);
            };
            if refund.state != "processing" && refund.state != "abnormal" {
                return Ok(Some(Err(refund.state)));
            }
            c.prepare_cached(
                "UPDATE sandbox_refund SET state = ?2, updated_at = ?3 WHERE refund_no = ?1",
            )?
            .execute(params![refund_no, state, now])?;
            Ok(Some(Ok(
                sandbox_refund(c, &refund_no)?.ok_or(Error::OrderNotFound)?
            )))
        })
    }

    /// A sandbox refund, if the book has it.
    pub fn sandbox_refund_state(&self, refund_no: &str) -> Result<Option<SandboxRefund>, Error> {
        self.read(|c| sandbox_refund(c, refund_no))
    }
}

fn sandbox_refund(c: &Connection, refund_no: &str) -> Result<Option<SandboxRefund>, Error> {
    let mut st = c.prepare_cached(
        "SELECT refund_no, order_no, amount, state, out_refund_no, updated_at
         FROM sandbox_refund WHERE refund_no = ?1",
    )?;
    Ok(st
        .query_row([refund_no], |r| {
            Ok(SandboxRefund {
                refund_no: r.get(0)?,
                order_no: r.get(1)?,
                amount: Amount(r.get(2)?),
                state: r.get(3)?,
                out_refund_no: r.get(4)?,
                updated_at: r.get(5)?,
            })
        })
        .optional()?)
}
