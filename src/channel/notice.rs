//! What every channel does with a payment notification once its signature verified: find the
//! order (of this app, at this channel), check the amount, and apply the payment through the one
//! state machine (`Store::apply_payment`). The channel answers its channel afterwards, only once
//! the change is on disk. Nothing here logs the notification itself.

use crate::domain::{Amount, OrderKey};
use crate::store::{Payment, Store};

/// Why a notification was not taken.
#[derive(Debug)]
pub enum Refused {
    /// It failed a check: the channel retries, to no avail until someone looks.
    Check(String),
    /// unipay could not apply it now: a retry may succeed.
    Internal(String),
}

impl Refused {
    pub fn check(why: impl Into<String>) -> Refused {
        Refused::Check(why.into())
    }
}

/// A verified payment as the channel reported it.
#[derive(Debug)]
pub struct Paid<'a> {
    pub channel: &'static str,
    pub app_id: &'a str,
    /// unipay's `orderNo` (the channel's `out_trade_no`).
    pub order_no: &'a str,
    /// What the channel says was paid, in cents.
    pub amount: Amount,
    /// The channel's trade number (becomes `outOrderNo`).
    pub trade_no: &'a str,
    pub paid_at: i64,
    pub now: i64,
}

/// Checks that the payment is for an order of this app at this channel, for its exact amount,
/// and applies it. Says what it did.
pub fn apply_paid(store: &Store, paid: &Paid) -> Result<String, Refused> {
    let order_no = paid.order_no;
    let order = store
        .find_order(paid.app_id, &OrderKey::OrderNo(order_no.to_string()))
        .map_err(|e| Refused::Internal(e.to_string()))?
        .filter(|o| o.channel.as_deref() == Some(paid.channel))
        .ok_or_else(|| {
            Refused::check(format!(
                "{order_no} is not a {} order of the app",
                paid.channel
            ))
        })?;
    if paid.amount != order.amount {
        return Err(Refused::check(format!(
            "the amount paid is not the amount of {order_no}"
        )));
    }
    if paid.trade_no.is_empty() {
        return Err(Refused::check("no trade number"));
    }
    let outcome = store
        .apply_payment(order.id, paid.trade_no.to_string(), paid.paid_at, paid.now)
        .map_err(|e| Refused::Internal(e.to_string()))?;
    Ok(match outcome {
        Payment::Paid(_) => format!("{order_no} paid"),
        Payment::AlreadyPaid(_) => format!("{order_no} was already paid"),
        Payment::Attention(_) => format!("{order_no} paid after it was closed: needs attention"),
    })
}
