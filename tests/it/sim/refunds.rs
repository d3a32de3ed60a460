//! Refunds and syncs in the simulation: the merchant refunding (new refunds, repeats, retries of
//! failed ones, amounts over the balance), the sandbox channel finishing the refunds it holds,
//! pay and refund syncs. A refused one is checked to have changed nothing (`unchanged`); the
//! invariants of the money are in `money`.

use serde_json::json;
use unipay::channel::sandbox_refund_answer;
use unipay::domain::RefundStatus;

use super::nonce::Target;
use super::unchanged::Allow;
use super::{count, yuan, World};

impl World {
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
        let snap = self.snap(&order_no);
        let reply = if self.rng.chance(30) {
            count("nonce'd refunds");
            self.post_nonced("/unipay/refund", body, Target::Order(order_no.clone()))
        } else {
            self.post("/unipay/refund", Some(body))
        };
        if self.refund_of_biz(&biz).is_some() {
            self.biz_refunds
                .push((biz.clone(), order_no.clone(), yuan(amount)));
            self.refund_asked.insert(biz.clone(), amount);
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
        if reply["code"] != 0 {
            self.unchanged("a refused refund", &order_no, &snap, Allow::default());
            count("refunds refused: nothing changed");
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
        let snap = self.snap(&order_no);
        let reply = if self.rng.chance(30) {
            count("nonce'd refunds");
            self.post_nonced("/unipay/refund", body, Target::Order(order_no.clone()))
        } else {
            self.post("/unipay/refund", Some(body))
        };
        let Some(reply) = reply else {
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
            self.unchanged("a refused repeat", &order_no, &snap, Allow::default());
            count("refund repeats refused: another order or amount");
            return;
        }
        if reply["code"] != 0 {
            // A retry of a failed refund whose order was refunded meanwhile.
            assert!(
                was == "fail" && matches!(reply["code"].as_i64(), Some(10506 | 20044)),
                "seed {seed}: {biz} ({was}) again answered {reply}"
            );
            self.unchanged("a refused retry", &order_no, &snap, Allow::default());
            count("refunds refused: nothing changed");
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
            // A repeat is answered from the refund as it stands: nothing is sent or changed.
            self.unchanged("a refund repeat", &order_no, &snap, Allow::default());
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

    /// The channel reports the outcome of a refund it finished again (its notification
    /// delivered twice, or late, after a sync or the sweeper settled the refund): a refund
    /// already final changes nothing, no second notice, no money moved twice.
    pub(super) fn op_refund_reported_again(&mut self) {
        let done: Vec<(String, String)> = {
            let mut st = self
                .read()
                .prepare_cached(
                    "SELECT r.refund_no, r.order_no FROM refund_order r
                     JOIN sandbox_refund b USING (refund_no) WHERE b.state IN ('success', 'closed')",
                )
                .unwrap();
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        if done.is_empty() {
            return;
        }
        let (refund_no, order_no) = done[self.rng.below(done.len() as u64) as usize].clone();
        let store = self.node().store.clone();
        let refund = store.refund_by_no(&refund_no).unwrap().unwrap();
        let booked = store.sandbox_refund_state(&refund_no).unwrap().unwrap();
        let answer = sandbox_refund_answer(&booked, &refund);
        let before = self.snap(&order_no);
        let now = self.now();
        let next = refund.next_check(now);
        let (after, changed) = store
            .apply_refund(refund.id, answer, false, next, now, None)
            .unwrap();
        self.log.push(format!(
            "the channel reports {refund_no} ({}) again: {} -> {}",
            refund.status.as_str(),
            booked.state,
            after.status.as_str()
        ));
        if refund.status == RefundStatus::Progress {
            // Its answer had been lost: now it is settled.
            return count("refund outcomes reported late: settled");
        }
        assert!(!changed, "seed {}: {refund_no} changed again", self.seed);
        self.unchanged(
            "a refund reported again",
            &order_no,
            &before,
            Allow::default(),
        );
        count("refund outcomes reported again: nothing changed");
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
        // Mostly any order; sometimes one whose payment failed at the channel.
        let failed: Vec<String> = match self.rng.chance(50) {
            true => self.faults.lock().unwrap().failed.iter().cloned().collect(),
            false => Vec::new(),
        };
        let order_no = match failed.is_empty() {
            false => failed[self.rng.below(failed.len() as u64) as usize].clone(),
            true => match self.pick_order() {
                Some(o) => o,
                None => return,
            },
        };
        let was = self.status_of(&order_no);
        // What the channel's book says, for refund-sync.md §5's table.
        let (book, expired): (Option<String>, bool) = self
            .read()
            .query_row(
                "SELECT (SELECT state FROM sandbox_trade t WHERE t.order_no = o.order_no),
                    o.expired_time <= ?2
                 FROM pay_order o WHERE o.order_no = ?1",
                rusqlite::params![order_no, self.now()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let failed = self.faults.lock().unwrap().failed.contains(&order_no);
        let body = json!({ "orderNo": order_no });
        let snap = self.snap(&order_no);
        let Some(reply) = self.post("/unipay/sync/order/pay", Some(body)) else {
            return;
        };
        let now = self.status_of(&order_no);
        self.log.push(format!(
            "sync pay {order_no} ({was}) -> {} {} {} -> {now}",
            reply["code"], reply["msg"], reply["data"]
        ));
        let seed = self.seed;
        match reply["code"].as_i64() {
            Some(0) => {}
            // Never handed to a channel: nothing to ask, nothing done.
            Some(20044) => {
                let unstarted: bool = self
                    .read()
                    .query_row(
                        "SELECT status = 'wait' OR channel IS NULL FROM pay_order
                         WHERE order_no = ?1",
                        [&order_no],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert!(unstarted, "seed {seed}: a sync of {order_no}: {reply}");
                self.unchanged("a refused sync", &order_no, &snap, Allow::default());
                return count("pay syncs refused: nothing changed but the attempt");
            }
            // The channel could not be asked, or the close of an expired order failed: at
            // most that close's attempt is recorded.
            Some(20080) => {
                let allow = Allow {
                    failed_closes: 1,
                    intents: true,
                    trade: true,
                    ..Allow::default()
                };
                self.unchanged("a failed sync", &order_no, &snap, allow);
                return count("pay syncs refused: nothing changed but the attempt");
            }
            _ => panic!("seed {seed}: a sync of {order_no} answered {reply}"),
        }
        let adjust = reply["data"]["adjust"].as_bool().expect("adjust is a bool");
        assert_eq!(
            adjust,
            was != now,
            "seed {seed}: sync of {order_no} ({was} -> {now}) said adjust {adjust}"
        );
        assert_eq!(reply["data"]["orderStatus"], now.as_str());
        // refund-sync.md §5: money wins; a trade over at the channel ends a `progress` order as
        // the channel says (the sandbox's closed and cancelled trades both read "closed"); an
        // open or unknown trade past its expiry is closed as expiry does; else nothing changes.
        let want = match (was.as_str(), book.as_deref()) {
            (_, Some("paid")) => "success",
            ("progress", Some("closed" | "cancelled")) if failed => "fail",
            ("progress", Some("closed" | "cancelled")) => "close",
            ("progress", _) if expired => "close",
            (was, _) => was,
        };
        assert_eq!(
            now, want,
            "seed {seed}: a sync of {order_no} ({was}, trade {book:?}, failed {failed}, expired {expired})"
        );
        if adjust && now == "fail" {
            count("pay syncs that failed an order");
        }
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
        let order_no = self.biz_refunds[i].1.clone();
        let snap = self.snap(&order_no);
        let Some(reply) = self.post("/unipay/sync/order/refund", Some(body)) else {
            return;
        };
        let now = self.refund_status_of(&refund_no);
        self.log.push(format!(
            "sync refund {refund_no} ({was}) -> {} {} {} -> {now}",
            reply["code"], reply["msg"], reply["data"]
        ));
        if reply["code"] != 0 {
            // The channel could not be asked: nothing changed (but the sync's own record).
            assert_eq!(reply["code"], 20080, "seed {}: {reply}", self.seed);
            self.unchanged("a failed refund sync", &order_no, &snap, Allow::default());
            return count("refund syncs refused: nothing changed but the attempt");
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
}
