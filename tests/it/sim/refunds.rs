//! Refunds and syncs in the simulation: the merchant refunding (new refunds, repeats, retries of
//! failed ones, amounts over the balance), the sandbox channel finishing the refunds it holds,
//! pay and refund syncs; and the invariants of money given back, checked against the database
//! and the sandbox channel's own book after every step.

use std::collections::BTreeMap;

use serde_json::json;
use unipay::domain::{pay_refund_status, Amount};

use super::{count, World};

/// What the simulation reads of a refund.
struct RefundRow {
    refund_no: String,
    order_no: String,
    status: String,
    amount: i64,
    sends: i64,
    /// `sends`, `unknown_sends`, `checks`, `next_check_at`, `created_at`: for a failure's message.
    schedule: String,
    /// The sandbox channel's state of it, if its book has it.
    book: Option<String>,
    events: i64,
    last_event: Option<String>,
}

/// What the simulation reads of an order's refund fields.
struct OrderMoney {
    order_no: String,
    status: String,
    amount: i64,
    balance: i64,
    refund_status: Option<String>,
}

fn yuan(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

impl World {
    fn money_of(&self, order_no: &str) -> OrderMoney {
        self.read()
            .query_row(
                "SELECT order_no, status, amount, refundable_balance, refund_status
                 FROM pay_order WHERE order_no = ?1",
                [order_no],
                |r| {
                    Ok(OrderMoney {
                        order_no: r.get(0)?,
                        status: r.get(1)?,
                        amount: r.get(2)?,
                        balance: r.get(3)?,
                        refund_status: r.get(4)?,
                    })
                },
            )
            .unwrap()
    }

    /// The refund number and status of the app's refund `biz`, if there is one.
    fn refund_of_biz(&self, biz: &str) -> Option<(String, String)> {
        self.read()
            .query_row(
                "SELECT refund_no, status FROM refund_order WHERE biz_refund_no = ?1",
                [biz],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok()
    }

    fn refund_status_of(&self, refund_no: &str) -> String {
        self.read()
            .query_row(
                "SELECT status FROM refund_order WHERE refund_no = ?1",
                [refund_no],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// An order to refund: mostly a paid one.
    fn pick_refundable(&mut self) -> Option<String> {
        if self.rng.chance(75) {
            let paid: Vec<String> = {
                let mut st = self
                    .read()
                    .prepare_cached("SELECT order_no FROM pay_order WHERE status = 'success'")
                    .unwrap();
                let rows = st.query_map([], |r| r.get(0)).unwrap();
                rows.collect::<Result<_, _>>().unwrap()
            };
            if !paid.is_empty() {
                let i = self.rng.below(paid.len() as u64) as usize;
                return Some(paid[i].clone());
            }
        }
        self.pick_order()
    }

    /// The merchant asks for a refund: a new one, or a request it made before again.
    pub(super) fn op_refund(&mut self) {
        if !self.biz_refunds.is_empty() && self.rng.chance(25) {
            return self.op_refund_again();
        }
        let Some(order_no) = self.pick_refundable() else {
            return;
        };
        let before = self.money_of(&order_no);
        let amount = match self.rng.below(10) {
            // What is left, all of it.
            0..=4 if before.balance > 0 => before.balance,
            // More than is left.
            5 | 6 => before.balance + 1 + self.rng.below(200) as i64,
            _ => 1 + self.rng.below(before.amount as u64) as i64,
        };
        self.next_biz += 1;
        let biz = format!("RB{}", self.next_biz);
        let mut body = json!({
            "bizRefundNo": biz,
            "orderNo": order_no,
            "amount": yuan(amount),
            "reason": "sim",
            "notifyUrl": "http://merchant.invalid/refund",
        });
        if self.rng.chance(20) {
            let control = ["fail", "lost", "processing", "timeout"][self.rng.below(4) as usize];
            body["extraParam"] = json!({ "sandboxRefund": control }).to_string().into();
        }
        let reply = self.post("/unipay/refund", Some(body));
        if self.refund_of_biz(&biz).is_some() {
            self.biz_refunds
                .push((biz.clone(), order_no.clone(), yuan(amount)));
        }
        let Some(reply) = reply else {
            return;
        };
        self.log.push(format!(
            "refund {biz} of {order_no} {} (balance {}) -> {} {} {}",
            yuan(amount),
            yuan(before.balance),
            reply["code"],
            reply["msg"],
            reply["data"]["status"]
        ));
        let seed = self.seed;
        let refundable =
            before.status == "success" && before.refund_status.as_deref() != Some("refunded");
        match reply["code"].as_i64() {
            Some(0) => {
                assert!(
                    refundable && amount <= before.balance,
                    "seed {seed}: a refund of {} from {order_no} ({}, balance {}) was accepted",
                    yuan(amount),
                    before.status,
                    yuan(before.balance)
                );
                count(match reply["data"]["status"].as_str() {
                    Some("success") => "refunds answered success",
                    Some("progress") => "refunds answered progress",
                    Some("fail") => "refunds answered fail",
                    other => panic!("seed {seed}: a refund answered status {other:?}"),
                });
            }
            Some(10506) => {
                assert!(
                    refundable && amount > before.balance,
                    "seed {seed}: a refund of {} from {order_no} (balance {}) was refused: {}",
                    yuan(amount),
                    yuan(before.balance),
                    reply["msg"]
                );
                count("refunds refused: over the balance");
            }
            Some(20044) => {
                assert!(
                    !refundable,
                    "seed {seed}: a refund of the refundable {order_no} was refused: {}",
                    reply["msg"]
                );
                count("refunds refused: order not paid");
            }
            _ => panic!("seed {seed}: a refund answered {reply}"),
        }
    }

    /// A refund request again: the same (idempotent, or a retry of a failed one) or the same
    /// `bizRefundNo` with another amount (refused, nothing changes).
    fn op_refund_again(&mut self) {
        let i = self.rng.below(self.biz_refunds.len() as u64) as usize;
        let (biz, order_no, amount) = self.biz_refunds[i].clone();
        let other_amount = self.rng.chance(15);
        let sent = if other_amount {
            format!("{amount}1")
        } else {
            amount.clone()
        };
        let (refund_no, was) = self.refund_of_biz(&biz).expect("a refund that was created");
        let body = json!({
            "bizRefundNo": biz,
            "orderNo": order_no,
            "amount": sent,
            "notifyUrl": "http://merchant.invalid/refund",
        });
        let Some(reply) = self.post("/unipay/refund", Some(body)) else {
            return;
        };
        self.log.push(format!(
            "refund {biz} again ({was}, amount {sent}) -> {} {} {}",
            reply["code"], reply["msg"], reply["data"]["status"]
        ));
        let seed = self.seed;
        if other_amount {
            assert_eq!(
                reply["code"], 10506,
                "seed {seed}: {biz} again with another amount"
            );
            assert_eq!(
                self.refund_status_of(&refund_no),
                was,
                "seed {seed}: a refused repeat of {biz} changed it"
            );
            count("refund repeats refused: another order or amount");
            return;
        }
        if reply["code"] != 0 {
            // A retry of a failed refund whose order was refunded meanwhile.
            assert!(
                was == "fail" && matches!(reply["code"].as_i64(), Some(10506 | 20044)),
                "seed {seed}: {biz} ({was}) again answered {reply}"
            );
            return;
        }
        assert_eq!(
            reply["data"]["refundNo"], refund_no,
            "seed {seed}: {biz} again answered another refund"
        );
        if was == "fail" {
            count("refund retries after a failure");
        } else {
            assert_eq!(
                reply["data"]["status"], was,
                "seed {seed}: a repeat of {biz} changed it"
            );
            count("refund repeats answered with the same refund");
        }
    }

    /// The sandbox channel finishes a refund it holds as processing (or abnormal).
    pub(super) fn op_finish_refund(&mut self) {
        let held: Vec<String> = {
            let mut st = self
                .read()
                .prepare_cached(
                    "SELECT refund_no FROM sandbox_refund WHERE state IN ('processing', 'abnormal')",
                )
                .unwrap();
            let rows = st.query_map([], |r| r.get(0)).unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        if held.is_empty() {
            return;
        }
        let refund_no = held[self.rng.below(held.len() as u64) as usize].clone();
        let result = ["success", "success", "close", "abnormal"][self.rng.below(4) as usize];
        self.finish_book_refund(&refund_no, result);
    }

    fn finish_book_refund(&mut self, refund_no: &str, result: &str) {
        let path = format!("/sandbox/refund/{refund_no}");
        let Some(reply) = self.post_query(&path, &format!("result={result}"), None) else {
            return;
        };
        self.log.push(format!(
            "the channel finishes {refund_no}: {result} -> {} {}",
            reply["code"], reply["msg"]
        ));
        assert_eq!(reply["code"], 0, "seed {}: {reply}", self.seed);
        count("sandbox refunds finished by the channel");
    }

    /// The end: the channel finishes every refund it holds.
    pub(super) fn finish_book_refunds(&mut self) {
        let held: Vec<String> = {
            let mut st = self
                .read()
                .prepare_cached(
                    "SELECT refund_no FROM sandbox_refund WHERE state IN ('processing', 'abnormal')",
                )
                .unwrap();
            let rows = st.query_map([], |r| r.get(0)).unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        for refund_no in held {
            let result = if self.rng.chance(70) {
                "success"
            } else {
                "close"
            };
            self.finish_book_refund(&refund_no, result);
        }
    }

    /// The merchant asks unipay to repair an order from its channel.
    pub(super) fn op_sync_pay(&mut self) {
        let Some(order_no) = self.pick_order() else {
            return;
        };
        let was = self.status_of(&order_no);
        let body = json!({ "orderNo": order_no });
        let Some(reply) = self.post("/unipay/sync/order/pay", Some(body)) else {
            return;
        };
        let now = self.status_of(&order_no);
        self.log.push(format!(
            "sync pay {order_no} ({was}) -> {} {} {} -> {now}",
            reply["code"], reply["msg"], reply["data"]
        ));
        if reply["code"] != 0 {
            assert_eq!(
                was, now,
                "seed {}: a failed sync changed {order_no}",
                self.seed
            );
            return;
        }
        let adjust = reply["data"]["adjust"].as_bool().expect("adjust is a bool");
        assert_eq!(
            adjust,
            was != now,
            "seed {}: sync of {order_no} ({was} -> {now}) said adjust {adjust}",
            self.seed
        );
        assert_eq!(reply["data"]["orderStatus"], now.as_str());
        count(if adjust {
            "pay syncs that adjusted an order"
        } else {
            "pay syncs that changed nothing"
        });
    }

    /// The merchant asks unipay to repair a refund from its channel.
    pub(super) fn op_sync_refund(&mut self) {
        if self.biz_refunds.is_empty() {
            return;
        }
        let i = self.rng.below(self.biz_refunds.len() as u64) as usize;
        let biz = self.biz_refunds[i].0.clone();
        let (refund_no, was) = self.refund_of_biz(&biz).expect("a refund that was created");
        let body = json!({ "refundNo": refund_no });
        let Some(reply) = self.post("/unipay/sync/order/refund", Some(body)) else {
            return;
        };
        let now = self.refund_status_of(&refund_no);
        self.log.push(format!(
            "sync refund {refund_no} ({was}) -> {} {} {} -> {now}",
            reply["code"], reply["msg"], reply["data"]
        ));
        if reply["code"] != 0 {
            assert_eq!(
                was, now,
                "seed {}: a failed sync changed {refund_no}",
                self.seed
            );
            return;
        }
        let adjust = reply["data"]["adjust"].as_bool().expect("adjust is a bool");
        assert_eq!(
            adjust,
            was != now,
            "seed {}: sync of {refund_no} ({was} -> {now}) said adjust {adjust}",
            self.seed
        );
        count(if adjust {
            "refund syncs that adjusted a refund"
        } else {
            "refund syncs that changed nothing"
        });
    }

    // ---- invariants ----

    fn refund_rows(&self) -> Vec<RefundRow> {
        let mut st = self
            .read()
            .prepare_cached(
                "SELECT r.refund_no, r.order_no, r.status, r.amount, r.sends,
                    (SELECT b.state FROM sandbox_refund b WHERE b.refund_no = r.refund_no),
                    (SELECT count(*) FROM notify_event e WHERE e.refund_id = r.id),
                    (SELECT e.status FROM notify_event e WHERE e.refund_id = r.id
                        ORDER BY e.id DESC LIMIT 1),
                    printf('sends %d, unknown %d, checks %d, next check %d, created %d',
                        r.sends, r.unknown_sends, r.checks, r.next_check_at, r.created_at)
                 FROM refund_order r ORDER BY r.id",
            )
            .unwrap();
        let rows = st
            .query_map([], |r| {
                Ok(RefundRow {
                    refund_no: r.get(0)?,
                    order_no: r.get(1)?,
                    status: r.get(2)?,
                    amount: r.get(3)?,
                    sends: r.get(4)?,
                    book: r.get(5)?,
                    events: r.get(6)?,
                    last_event: r.get(7)?,
                    schedule: r.get(8)?,
                })
            })
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    fn order_money(&self) -> Vec<OrderMoney> {
        let mut st = self
            .read()
            .prepare_cached(
                "SELECT order_no, status, amount, refundable_balance, refund_status
                 FROM pay_order ORDER BY id",
            )
            .unwrap();
        let rows = st
            .query_map([], |r| {
                Ok(OrderMoney {
                    order_no: r.get(0)?,
                    status: r.get(1)?,
                    amount: r.get(2)?,
                    balance: r.get(3)?,
                    refund_status: r.get(4)?,
                })
            })
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    /// The invariants of money given back. `strict`: everything is over, so no refund may be
    /// left in progress and unipay's book must agree with the channel's.
    pub(super) fn check_refunds(&mut self, strict: bool) {
        let seed = self.seed;
        // Per order: (in progress, succeeded, succeeded at the channel, refunds).
        let mut sums: BTreeMap<String, (i64, i64, i64, usize)> = BTreeMap::new();
        for r in self.refund_rows() {
            let RefundRow {
                refund_no,
                status,
                book,
                ..
            } = &r;
            let sum = sums.entry(r.order_no.clone()).or_default();
            sum.3 += 1;
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
        for o in self.order_money() {
            let (progress, refunded, at_channel, refunds) =
                sums.get(&o.order_no).copied().unwrap_or_default();
            let no = &o.order_no;
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
                count(if refunded == o.amount {
                    "orders fully refunded"
                } else {
                    "orders partly refunded"
                });
            }
        }
    }
}
