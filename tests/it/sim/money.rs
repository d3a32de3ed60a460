//! The invariants of money given back, checked against the database and the sandbox channel's
//! own book after every step: refunded ≤ paid, balance = paid − successful refunds − refunds in
//! progress, every refund for the amount first asked, booked at the channel for that amount.

use std::collections::BTreeMap;

use unipay::domain::{pay_refund_status, Amount};

use super::{yuan, World};

/// What the simulation reads of a refund.
struct RefundRow {
    refund_no: String,
    biz: String,
    order_no: String,
    status: String,
    amount: i64,
    /// The order's amount as the refund stored it.
    order_amount: i64,
    sends: i64,
    /// `sends`, `unknown_sends`, `checks`, `next_check_at`, `created_at`: for a failure's message.
    schedule: String,
    /// The sandbox channel's state of it, its amount and order, if its book has it.
    book: Option<String>,
    book_amount: Option<i64>,
    book_order: Option<String>,
    events: i64,
    last_event: Option<String>,
}

/// What the simulation reads of an order's refund fields.
pub(super) struct OrderMoney {
    pub(super) order_no: String,
    pub(super) status: String,
    pub(super) amount: i64,
    pub(super) balance: i64,
    pub(super) refund_status: Option<String>,
}

const ORDER_MONEY: &str = "SELECT order_no, status, amount, refundable_balance, refund_status
    FROM pay_order";

fn order_money(r: &rusqlite::Row) -> rusqlite::Result<OrderMoney> {
    Ok(OrderMoney {
        order_no: r.get(0)?,
        status: r.get(1)?,
        amount: r.get(2)?,
        balance: r.get(3)?,
        refund_status: r.get(4)?,
    })
}

impl World {
    pub(super) fn money_of(&self, order_no: &str) -> OrderMoney {
        self.read()
            .query_row(
                &format!("{ORDER_MONEY} WHERE order_no = ?1"),
                [order_no],
                order_money,
            )
            .unwrap()
    }

    fn refund_rows(&self) -> Vec<RefundRow> {
        let mut st = self
            .read()
            .prepare_cached(
                "SELECT r.refund_no, r.biz_refund_no, r.order_no, r.status, r.amount,
                    r.order_amount, r.sends, b.state, b.amount, b.order_no,
                    (SELECT count(*) FROM notify_event e WHERE e.refund_id = r.id),
                    (SELECT e.status FROM notify_event e WHERE e.refund_id = r.id
                        ORDER BY e.id DESC LIMIT 1),
                    printf('sends %d, unknown %d, checks %d, next check %d, created %d',
                        r.sends, r.unknown_sends, r.checks, r.next_check_at, r.created_at)
                 FROM refund_order r LEFT JOIN sandbox_refund b ON b.refund_no = r.refund_no
                 ORDER BY r.id",
            )
            .unwrap();
        let rows = st
            .query_map([], |r| {
                Ok(RefundRow {
                    refund_no: r.get(0)?,
                    biz: r.get(1)?,
                    order_no: r.get(2)?,
                    status: r.get(3)?,
                    amount: r.get(4)?,
                    order_amount: r.get(5)?,
                    sends: r.get(6)?,
                    book: r.get(7)?,
                    book_amount: r.get(8)?,
                    book_order: r.get(9)?,
                    events: r.get(10)?,
                    last_event: r.get(11)?,
                    schedule: r.get(12)?,
                })
            })
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    fn all_order_money(&self) -> Vec<OrderMoney> {
        let mut st = self
            .read()
            .prepare_cached(&format!("{ORDER_MONEY} ORDER BY id"))
            .unwrap();
        let rows = st.query_map([], order_money).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    /// The invariants of money given back. `strict`: everything is over, so no refund may be
    /// left in progress and unipay's book must agree with the channel's.
    pub(super) fn check_refunds(&mut self, strict: bool) {
        let seed = self.seed;
        // Per order: (in progress, succeeded, succeeded at the channel, refunds, their
        // orderAmount).
        let mut sums: BTreeMap<String, (i64, i64, i64, usize, i64)> = BTreeMap::new();
        for r in self.refund_rows() {
            let RefundRow {
                refund_no,
                status,
                book,
                ..
            } = &r;
            // A refund is for the amount first asked under its bizRefundNo, and the channel
            // booked it for that amount, for its order.
            let asked = self.refund_asked.get(&r.biz).copied();
            assert_eq!(
                Some(r.amount),
                asked,
                "seed {seed}: refund {refund_no} ({}) is for {}, {asked:?} was asked",
                r.biz,
                r.amount
            );
            if book.is_some() {
                assert_eq!(
                    (r.book_amount, r.book_order.as_deref()),
                    (Some(r.amount), Some(r.order_no.as_str())),
                    "seed {seed}: refund {refund_no} of {} for {} is booked otherwise",
                    r.order_no,
                    r.amount
                );
            }
            let sum = sums.entry(r.order_no.clone()).or_default();
            sum.3 += 1;
            sum.4 = r.order_amount;
            match status.as_str() {
                "progress" => sum.0 += r.amount,
                "success" => sum.1 += r.amount,
                _ => {}
            }
            if book.as_deref() == Some("success") {
                sum.2 += r.amount;
            }
            // A final refund stays final; only a failed one is sent again.
            if let Some(prev) = self.refund_status.get(refund_no) {
                assert!(
                    !matches!(prev.as_str(), "success" | "close") || prev == status,
                    "seed {seed}: refund {refund_no} left {prev} for {status}"
                );
            }
            // unipay's book and the channel's agree on what is over.
            let agrees = match status.as_str() {
                "success" => book.as_deref() == Some("success"),
                "close" => book.as_deref() == Some("closed"),
                // Failed: the channel refunded nothing (a refusal is never guessed).
                "fail" => matches!(book.as_deref(), None | Some("closed")),
                _ => !strict,
            };
            assert!(
                agrees,
                "seed {seed}: refund {refund_no} is {status}, the channel says {book:?} ({}; now {})",
                r.schedule,
                self.now()
            );
            // Money the channel gave back is never lost from unipay's book.
            if book.as_deref() == Some("success") {
                assert!(
                    matches!(status.as_str(), "progress" | "success"),
                    "seed {seed}: refund {refund_no} succeeded at the channel but is {status}"
                );
            }
            // Every final status was told to the merchant; nothing was told that never happened.
            if status != "progress" {
                assert_eq!(
                    r.last_event.as_deref(),
                    Some(status.as_str()),
                    "seed {seed}: refund {refund_no} is {status}, its last notice says otherwise"
                );
            }
            assert!(
                r.events <= r.sends,
                "seed {seed}: refund {refund_no} has {} notice(s) after {} send(s)",
                r.events,
                r.sends
            );
            self.refund_status.insert(refund_no.clone(), status.clone());
        }
        for o in self.all_order_money() {
            let (progress, refunded, at_channel, refunds, order_amount) =
                sums.get(&o.order_no).copied().unwrap_or_default();
            let no = &o.order_no;
            assert!(
                refunds == 0 || order_amount == o.amount,
                "seed {seed}: {no} of {} has refunds of an order of {}",
                yuan(o.amount),
                yuan(order_amount)
            );
            // Refunded ≤ paid, at unipay and at the channel.
            assert!(
                refunded <= o.amount && at_channel <= o.amount,
                "seed {seed}: {no} of {} has {} refunded ({} at the channel)",
                yuan(o.amount),
                yuan(refunded),
                yuan(at_channel)
            );
            // Balance = paid − (in progress + successful refunds), never below zero.
            assert_eq!(
                o.balance,
                o.amount - progress - refunded,
                "seed {seed}: {no} of {} has balance {} with {} in progress and {} refunded",
                yuan(o.amount),
                yuan(o.balance),
                yuan(progress),
                yuan(refunded)
            );
            assert!(o.balance >= 0, "seed {seed}: {no} has a negative balance");
            let want = pay_refund_status(progress > 0, Amount(refunded), Amount(o.amount));
            assert_eq!(
                o.refund_status.as_deref(),
                Some(want),
                "seed {seed}: {no}'s refundStatus"
            );
            // Only paid orders are refunded.
            assert!(
                refunds == 0 || o.status == "success",
                "seed {seed}: {no} is {} with {refunds} refund(s)",
                o.status
            );
            if strict && refunded > 0 {
                super::count(if refunded == o.amount {
                    "orders fully refunded"
                } else {
                    "orders partly refunded"
                });
            }
        }
    }
}
