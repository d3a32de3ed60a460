//! The operations on pay orders: new and repeated orders, closes, the payer paying, payments
//! that fail or whose callback is lost at the channel, late money, expiry sweeps, clock jumps.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use serde_json::json;
use unipay::expiry;
use unipay::store::Payment;
use unipay::sys::{self, UtcOffset};

use super::channel::SimCrash;
use super::nonce::Target;
use super::unchanged::Allow;
use super::{count, yuan, World};

fn outcome_name(p: &Payment) -> &'static str {
    match p {
        Payment::Paid(_) => "paid",
        Payment::AlreadyPaid(_) => "already paid",
        Payment::Attention(_) => "needs attention",
    }
}

impl World {
    pub(super) fn op_new_order(&mut self) {
        self.next_biz += 1;
        let biz = format!("B{}", self.next_biz);
        let expires = self.now() + (5 + self.rng.below(120) as i64) * 1000;
        let cents = (1 + self.rng.below(500) as i64) * 100 + self.rng.below(100) as i64;
        self.asked.insert(biz.clone(), cents);
        let mut body = json!({
            "bizOrderNo": biz,
            "title": "sim",
            "amount": yuan(cents),
            "expiredTime": sys::format_time(expires, UtcOffset::CST),
            "notifyUrl": "http://merchant.invalid/notify",
        });
        let path = if self.rng.chance(70) {
            body["channel"] = "sandbox".into();
            body["method"] = "wap".into();
            "/unipay/pay"
        } else {
            "/unipay/gateway/prePay"
        };
        let reply = if self.rng.chance(30) {
            count("nonce'd pays");
            self.post_nonced(path, body, Target::Biz(biz.clone()))
        } else {
            self.post(path, Some(body))
        };
        // Known to the client or not, an order that was created is there.
        if let Some(order_no) = self.order_no_of(&biz) {
            if !self.orders.contains(&order_no) {
                self.orders.push(order_no);
            }
        }
        let Some(reply) = reply else {
            return;
        };
        self.log
            .push(format!("new {path} {biz} -> {}", reply["code"]));
        let seed = self.seed;
        match reply["code"].as_i64() {
            Some(0) => {
                let order_no = self.order_no_of(&biz);
                assert!(
                    order_no.is_some(),
                    "seed {seed}: a created order is missing"
                );
            }
            Some(20080) if path == "/unipay/pay" => {
                // The channel refused the payment: the order is over, `fail`, without a trade.
                let order_no = self.order_no_of(&biz).expect("the refused order");
                let trades: i64 = self
                    .read()
                    .query_row(
                        "SELECT count(*) FROM sandbox_trade WHERE order_no = ?1",
                        [&order_no],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(
                    (self.status_of(&order_no).as_str(), trades),
                    ("fail", 0),
                    "seed {seed}: a pay the channel refused left {order_no}"
                );
                count("pays refused by the channel: the order fails");
            }
            _ => panic!("seed {seed}: a new order answered {reply}"),
        }
    }

    pub(super) fn order_no_of(&self, biz: &str) -> Option<String> {
        let c = self.read();
        c.query_row(
            "SELECT order_no FROM pay_order WHERE biz_order_no = ?1",
            [biz],
            |r| r.get(0),
        )
        .ok()
    }

    /// The merchant sends an order again with its `bizOrderNo` (another amount, maybe): an open
    /// one is returned as it is (a `wait` one paid for is handed to the channel), a final one
    /// refused; its amount is the first one asked, always.
    pub(super) fn op_repeat_order(&mut self) {
        let Some(order_no) = self.pick_order() else {
            return;
        };
        let (biz, was, expired): (String, String, bool) = self
            .read()
            .query_row(
                "SELECT biz_order_no, status, expired_time <= ?2 FROM pay_order WHERE order_no = ?1",
                rusqlite::params![order_no, self.now()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let cents = match self.rng.chance(50) {
            true => self.asked[&biz],
            false => 1 + self.rng.below(50_000) as i64,
        };
        let expires = self.now() + (5 + self.rng.below(120) as i64) * 1000;
        let mut body = json!({
            "bizOrderNo": biz,
            "title": "sim again",
            "amount": yuan(cents),
            "expiredTime": sys::format_time(expires, UtcOffset::CST),
        });
        let pay = self.rng.chance(50);
        let path = match pay {
            true => {
                body["channel"] = "sandbox".into();
                body["method"] = "wap".into();
                "/unipay/pay"
            }
            false => "/unipay/gateway/prePay",
        };
        let before = self.snap(&order_no);
        let Some(reply) = self.post(path, Some(body)) else {
            return;
        };
        self.log.push(format!(
            "again {path} {biz} ({was}) {} -> {} {}",
            yuan(cents),
            reply["code"],
            reply["msg"]
        ));
        let seed = self.seed;
        let open = matches!(was.as_str(), "wait" | "progress");
        let handed = pay && was == "wait";
        match reply["code"].as_i64() {
            Some(20044) => {
                assert!(
                    !open || (handed && expired),
                    "seed {seed}: {order_no} ({was}) again was refused: {reply}"
                );
                self.unchanged("a refused repeat", &order_no, &before, Allow::default());
                count("repeated orders refused: nothing changed");
            }
            Some(0) => {
                assert!(
                    open,
                    "seed {seed}: {order_no} ({was}) again answered {reply}"
                );
                if pay {
                    assert_eq!(reply["data"]["orderNo"], order_no.as_str());
                }
                if !handed {
                    self.unchanged("a repeat", &order_no, &before, Allow::default());
                }
                count("repeated orders: the first amount kept");
            }
            // The channel refused the order handed to it.
            Some(20080) if handed => assert_eq!(self.status_of(&order_no), "fail"),
            _ => panic!("seed {seed}: {order_no} ({was}) again answered {reply}"),
        }
    }

    pub(super) fn op_close(&mut self) {
        let Some(mut order_no) = self.pick_order() else {
            return;
        };
        if self.rng.chance(3) {
            order_no = "P_NO_SUCH_ORDER".into();
        }
        let use_cancel = self.rng.chance(40);
        let body = json!({"orderNo": order_no, "useCancel": use_cancel});
        let was = self.snap(&order_no);
        let status = self.order_status(&order_no);
        let reply = if self.rng.chance(30) {
            count("nonce'd closes");
            self.post_nonced("/unipay/close", body, Target::Order(order_no.clone()))
        } else {
            self.post("/unipay/close", Some(body))
        };
        let Some(reply) = reply else {
            return;
        };
        self.log.push(format!(
            "close {order_no} ({status:?}) cancel={use_cancel} -> {} {}",
            reply["code"], reply["msg"]
        ));
        let seed = self.seed;
        let code = reply["code"].as_i64();
        count(match code {
            Some(0) => "closes answered 0",
            Some(20041) => "closes answered 20041 (no such order)",
            Some(20043) => "closes answered 20043 (already closing)",
            Some(20044) => "closes answered 20044 (not open)",
            Some(20080) => "closes answered 20080 (channel failed)",
            _ => panic!("seed {seed}: a close answered {reply}"),
        });
        let at_channel = status.as_deref() == Some("progress");
        match code {
            Some(0) => {
                let want = if use_cancel { "cancel" } else { "close" };
                let status = self.status_of(&order_no);
                // A wait order closes locally whatever useCancel says.
                assert!(
                    status == want || status == "close",
                    "seed {seed}: a code-0 close left {order_no} {status}"
                );
                self.closed_ok.insert(order_no, status);
                return;
            }
            Some(20044) if at_channel => {
                // The channel found the trade paid: money wins, the close failed.
                let allow = Allow {
                    order: true,
                    failed_closes: 1,
                    exact_closes: true,
                    intents: true,
                    trade: true,
                };
                self.unchanged("a close that found money", &order_no, &was, allow);
                assert_eq!(self.status_of(&order_no), "success", "seed {seed}");
                count("closes answered 20044 after finding money at the channel");
                return;
            }
            Some(20080) => {
                assert!(at_channel, "seed {seed}: {order_no} ({status:?}) got 20080");
                let allow = Allow {
                    failed_closes: 1,
                    exact_closes: true,
                    intents: true,
                    trade: true,
                    ..Allow::default()
                };
                self.unchanged("a failed close", &order_no, &was, allow);
                count("closes answered 20080: only a failed close record added");
                return;
            }
            Some(20041) => assert!(status.is_none(), "seed {seed}: {order_no} not found"),
            Some(20043) => assert!(at_channel, "seed {seed}: {order_no} ({status:?}) closing"),
            _ => assert!(
                !matches!(status.as_deref(), Some("wait" | "progress")),
                "seed {seed}: the open {order_no} was not closable"
            ),
        }
        self.unchanged("a refused close", &order_no, &was, Allow::default());
        count("closes refused: nothing changed");
    }

    pub(super) fn op_pay(&mut self) {
        let Some(order_no) = self.pick_order() else {
            return;
        };
        let before = self.snap(&order_no);
        let Some(reply) = self.post(&format!("/sandbox/pay/{order_no}"), None) else {
            return;
        };
        self.log.push(format!(
            "pay {order_no} -> {} {}",
            reply["code"], reply["msg"]
        ));
        if reply["code"] == 0 {
            count("payments accepted");
            assert_eq!(
                self.status_of(&order_no),
                "success",
                "seed {}: a code-0 payment",
                self.seed
            );
        } else {
            count("payments refused");
            assert_eq!(reply["code"], 20044, "seed {}: {reply}", self.seed);
            self.unchanged("a refused payment", &order_no, &before, Allow::default());
            count("payments refused: nothing changed");
        }
    }

    pub(super) fn op_sweep(&mut self) {
        let gw = self.node().gw.clone();
        let swept = catch_unwind(AssertUnwindSafe(|| {
            let report = expiry::sweep(&gw);
            (report, expiry::settle_refunds(&gw))
        }));
        match swept {
            Ok((report, refunds)) => {
                if refunds > 0 {
                    count("sweeps that settled refunds");
                }
                if report.closed > 0 {
                    count("sweeps that closed expired orders");
                }
                if report.paid > 0 {
                    count("sweeps that found money at the channel");
                }
                self.log
                    .push(format!("sweep -> {report:?}, {refunds} refund(s) settled"))
            }
            Err(payload) if payload.is::<SimCrash>() => {
                let SimCrash(what) = payload.downcast_ref::<SimCrash>().unwrap();
                count(what);
                self.log.push(format!("sweep -> crash: {what}"));
                self.crash();
            }
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// The wall clock jumps: mostly ahead, sometimes back (an NTP step, a dead RTC battery
    /// fixed by hand). Nothing may depend on time never going backwards.
    pub(super) fn op_clock_jump(&mut self) {
        let jump = match self.rng.below(12) {
            0 => 3_600_000,
            1..=3 => 60_000 + self.rng.below(60_000) as i64,
            4 => -(self.rng.below(120_000) as i64) - 1,
            5 => -3_600_000,
            _ => self.rng.below(20_000) as i64,
        };
        if jump < 0 {
            count("clock jumps backwards");
        }
        self.clock.0.fetch_add(jump, Ordering::SeqCst);
        self.log.push(format!("clock {jump:+}ms"));
    }

    /// A real channel may report money for a trade unipay already closed (an unscanned QR code
    /// closed locally, then paid before its expiry at the channel). Money wins: the order
    /// becomes `success`, flagged for an operator, and the merchant is notified.
    pub(super) fn op_late_payment(&mut self) {
        let Some(order_no) = self.pick_order() else {
            return;
        };
        let store = self.node().store.clone();
        let order = store.order_by_no(&order_no).unwrap().unwrap();
        // Money only comes through a channel: an order never handed to one is never paid.
        if !matches!(order.status.as_str(), "close" | "cancel" | "fail") || order.channel.is_none()
        {
            return;
        }
        let now = self.now();
        let outcome = store
            .apply_payment(order.id, format!("LATE{}", order.id), now, now)
            .unwrap();
        self.log.push(format!(
            "late payment {order_no} -> {}",
            outcome_name(&outcome)
        ));
        assert!(
            matches!(&outcome, Payment::Attention(o) if o.status.as_str() == "success"),
            "seed {}: money for a {} order did not make it success",
            self.seed,
            order.status.as_str()
        );
        count("late payments: success, flagged for attention");
        if order.status.as_str() == "fail" {
            count("late payments to failed orders");
        }
        self.paid_late
            .insert(order_no, order.status.as_str().to_string());
    }

    /// The channel's own side of the world: its book, not unipay's order.
    fn channel_book(&self) -> rusqlite::Connection {
        let book = rusqlite::Connection::open(&self.path).unwrap();
        book.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        book
    }

    /// The payer pays at the channel but its callback to unipay is lost: the channel's book says
    /// paid while the order is still `progress`. Whoever asks the channel next (a close, the
    /// sweeper, recovery) must find the money.
    pub(super) fn op_silent_payment(&mut self) {
        let Some(order_no) = self.pick_order() else {
            return;
        };
        let changed = self
            .channel_book()
            .execute(
                "UPDATE sandbox_trade SET state = 'paid', updated_at = ?2
                 WHERE order_no = ?1 AND state = 'open'",
                rusqlite::params![order_no, self.now()],
            )
            .unwrap();
        if changed == 1 {
            count("payments whose callback was lost");
        }
        self.log.push(format!(
            "silent payment at the channel {order_no} -> {changed}"
        ));
    }

    /// The payer's payment fails at the channel (WeChat's `PAYERROR`): the trade can no longer
    /// be paid, and the channel says "failed" when asked. A pay sync makes the order `fail`; a
    /// close, the sweeper or recovery closes it.
    pub(super) fn op_payment_fails(&mut self) {
        let open: Vec<String> = {
            let mut st = self
                .read()
                .prepare_cached(
                    "SELECT o.order_no FROM pay_order o JOIN sandbox_trade t USING (order_no)
                     WHERE o.status = 'progress' AND t.state = 'open'",
                )
                .unwrap();
            let rows = st.query_map([], |r| r.get(0)).unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        if open.is_empty() {
            return;
        }
        let order_no = open[self.rng.below(open.len() as u64) as usize].clone();
        self.channel_book()
            .execute(
                "UPDATE sandbox_trade SET state = 'closed', updated_at = ?2
                 WHERE order_no = ?1 AND state = 'open'",
                rusqlite::params![order_no, self.now()],
            )
            .unwrap();
        self.faults.lock().unwrap().failed.insert(order_no.clone());
        count("payments that failed at the channel");
        self.log
            .push(format!("the payment of {order_no} fails at the channel"));
    }
}
