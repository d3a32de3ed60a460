//! The invariants of pay orders, checked against the database and the sandbox channel's book
//! after every step: statuses, notices, close records and intents, and the money (an order's
//! amount is the one first asked; what the channel took for it is that amount).

use super::World;

/// What the simulation reads of an order.
struct OrderRow {
    order_no: String,
    biz: String,
    status: String,
    attention: bool,
    has_pay_time: bool,
    has_error: bool,
    /// The order's own notices (not its refunds').
    events: i64,
    /// Successful close records.
    closes: i64,
    intents: i64,
    amount: i64,
    /// The sandbox channel's trade: its state and amount.
    trade: Option<String>,
    trade_amount: Option<i64>,
    /// What the channel's book holds of refunds of it (not closed ones).
    book_refunds: i64,
}

impl World {
    pub(super) fn read(&self) -> &rusqlite::Connection {
        self.reader.as_ref().expect("the reader is opened at boot")
    }

    pub(super) fn status_of(&self, order_no: &str) -> String {
        self.order_status(order_no).expect("a known order")
    }

    pub(super) fn order_status(&self, order_no: &str) -> Option<String> {
        self.read()
            .query_row(
                "SELECT status FROM pay_order WHERE order_no = ?1",
                [order_no],
                |r| r.get(0),
            )
            .ok()
    }

    fn order_rows(&self) -> Vec<OrderRow> {
        let mut st = self
            .read()
            .prepare_cached(
                "SELECT o.order_no, o.biz_order_no, o.status, o.attention IS NOT NULL,
                    o.pay_time IS NOT NULL, o.error_msg IS NOT NULL,
                    (SELECT count(*) FROM notify_event e
                        WHERE e.order_id = o.id AND e.refund_id IS NULL),
                    (SELECT count(*) FROM close_record r WHERE r.order_id = o.id AND r.closed = 1),
                    (SELECT count(*) FROM close_intent i WHERE i.order_id = o.id),
                    o.amount, t.state, t.amount,
                    (SELECT coalesce(sum(b.amount), 0) FROM sandbox_refund b
                        WHERE b.order_no = o.order_no AND b.state <> 'closed')
                 FROM pay_order o LEFT JOIN sandbox_trade t ON t.order_no = o.order_no
                 ORDER BY o.id",
            )
            .unwrap();
        let rows = st
            .query_map([], |r| {
                Ok(OrderRow {
                    order_no: r.get(0)?,
                    biz: r.get(1)?,
                    status: r.get(2)?,
                    attention: r.get(3)?,
                    has_pay_time: r.get(4)?,
                    has_error: r.get(5)?,
                    events: r.get(6)?,
                    closes: r.get(7)?,
                    intents: r.get(8)?,
                    amount: r.get(9)?,
                    trade: r.get(10)?,
                    trade_amount: r.get(11)?,
                    book_refunds: r.get(12)?,
                })
            })
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    pub(super) fn check(&mut self, strict_intents: bool) {
        let seed = self.seed;
        for o in self.order_rows() {
            let OrderRow {
                order_no,
                status,
                trade,
                closes,
                events,
                intents,
                ..
            } = &o;
            let terminal = !matches!(status.as_str(), "wait" | "progress");
            let late = self.paid_late.get(order_no).cloned();
            // Each order is in one state and never leaves a final one, but for money that came
            // late (it turns a closed, cancelled or failed order into `success`).
            if let Some(prev) = self.last_status.get(order_no) {
                let prev_terminal = !matches!(prev.as_str(), "wait" | "progress");
                let by_money = late.as_ref() == Some(prev) && status == "success";
                assert!(
                    !prev_terminal || prev == status || by_money,
                    "seed {seed}: {order_no} left {prev} for {status}"
                );
            }
            // Every final status has exactly one notification event (one target per order):
            // one when the order ended, one more when late money made it `success`.
            let finals = terminal as i64 + late.is_some() as i64;
            assert_eq!(
                *events, finals,
                "seed {seed}: {order_no} is {status} with {events} event(s)"
            );
            // A code-0 close is never undone, but by money that came late.
            if let Some(closed) = self.closed_ok.get(order_no) {
                assert!(
                    closed == status || (late.is_some() && status == "success"),
                    "seed {seed}: the code-0 close of {order_no} was undone ({status})"
                );
            }
            // A closed trade is never paid at the channel.
            let trade_closed = matches!(trade.as_deref(), Some("closed" | "cancelled"));
            if self
                .trade_was_closed
                .get(order_no)
                .copied()
                .unwrap_or(false)
            {
                assert!(
                    trade_closed,
                    "seed {seed}: the closed trade of {order_no} became {trade:?}"
                );
            }
            self.trade_was_closed.insert(order_no.clone(), trade_closed);
            match status.as_str() {
                "close" | "cancel" => {
                    assert_eq!(*closes, 1, "seed {seed}: {order_no} is {status} with {closes} successful close records");
                    assert_ne!(
                        trade.as_deref(),
                        Some("paid"),
                        "seed {seed}: {order_no} is {status} but its trade is paid"
                    );
                }
                "success" if late.is_some() => {
                    assert!(
                        *closes <= 1,
                        "seed {seed}: late-paid {order_no} has {closes} successful close records"
                    );
                    assert!(
                        o.has_pay_time,
                        "seed {seed}: paid {order_no} has no payTime"
                    );
                }
                "success" => {
                    assert_eq!(
                        *closes, 0,
                        "seed {seed}: paid {order_no} has a successful close record"
                    );
                    assert!(
                        o.has_pay_time,
                        "seed {seed}: paid {order_no} has no payTime"
                    );
                    // The money came through the channel: its trade is paid.
                    assert_eq!(
                        trade.as_deref(),
                        Some("paid"),
                        "seed {seed}: paid {order_no}, trade {trade:?}"
                    );
                }
                "fail" => {
                    assert_eq!(
                        *closes, 0,
                        "seed {seed}: failed {order_no} has a successful close record"
                    );
                    assert!(o.has_error, "seed {seed}: failed {order_no} says not why");
                    // Refused before a trade was opened, or failed at the channel (its trade is
                    // closed in the book): never payable there.
                    assert!(
                        matches!(trade.as_deref(), None | Some("closed")),
                        "seed {seed}: failed {order_no}, trade {trade:?}"
                    );
                }
                _ => assert_eq!(
                    *closes, 0,
                    "seed {seed}: open {order_no} has a successful close record"
                ),
            }
            // Money that came for a closed order made it `success` and flagged it.
            if let Some(was) = &late {
                assert!(
                    o.attention,
                    "seed {seed}: {order_no} ({was}, paid late) lost its needs-attention flag"
                );
                assert_eq!(
                    status, "success",
                    "seed {seed}: the late-paid {order_no} is {status}"
                );
            }
            // A close intent only ever belongs to an order still in progress.
            assert!(
                *intents == 0 || status == "progress",
                "seed {seed}: {order_no} is {status} with an open intent"
            );
            if strict_intents {
                assert_eq!(
                    *intents, 0,
                    "seed {seed}: {order_no} is stuck with a close intent"
                );
                assert!(
                    terminal,
                    "seed {seed}: {order_no} is still {status} after everything expired"
                );
            }
            self.check_amounts(&o);
            self.last_status.insert(order_no.clone(), status.clone());
        }
        self.check_refunds(strict_intents);
    }

    /// The money of one order: what was asked, what the channel opened and took, what its book
    /// gave back.
    fn check_amounts(&self, o: &OrderRow) {
        let (seed, no) = (self.seed, &o.order_no);
        // The amount is the one first asked for the `bizOrderNo`: a repeat never changes it.
        let asked = self.asked.get(&o.biz).copied();
        assert_eq!(
            Some(o.amount),
            asked,
            "seed {seed}: {no} ({}) is for {}, {asked:?} was asked",
            o.biz,
            o.amount
        );
        // The channel's trade is for the order's amount: a paid order was paid its amount.
        if let Some(taken) = o.trade_amount {
            assert_eq!(
                taken, o.amount,
                "seed {seed}: {no} of {} has a trade of {taken} ({:?})",
                o.amount, o.trade
            );
        }
        // The channel never gives back more than it took (refunds it holds included).
        assert!(
            o.book_refunds <= o.trade_amount.unwrap_or(0),
            "seed {seed}: {no}'s channel refunds {} of a trade of {:?}",
            o.book_refunds,
            o.trade_amount
        );
    }
}
