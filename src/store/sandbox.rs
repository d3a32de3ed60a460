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
