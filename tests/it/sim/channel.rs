//! The sandbox channel with the faults of a real one injected around it: timeouts before and
//! after it acts, crashes on either side of its answer, payers paying just before a close, trades
//! it never opened, payments it refuses or that fail at it, refunds whose answer is lost.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use unipay::channel::{Channel, PayExtra, PayStart, Sandbox, TradeState};
use unipay::domain::{ChannelCloseOutcome, CloseType, Order, Refund, RefundAnswer};
use unipay::error::Error;
use unipay::store::Store;
use unipay::sys::Clock;

use super::{count, Rng, SimClock};

/// The payload of a simulated crash (a panic that unwinds out of the request), with where it
/// struck.
pub(super) struct SimCrash(pub(super) &'static str);

/// Fault rates in percent, and what the channel should do next.
pub(super) struct Faults {
    pub(super) rng: Rng,
    pub(super) enabled: bool,
    /// The trades whose payment failed at the channel (WeChat's `PAYERROR`): closed in the
    /// sandbox's book, and reported as failed by a query. The channel's own memory: it outlives
    /// unipay's crashes.
    pub(super) failed: BTreeSet<String>,
    /// The orders a payer paid during the current step, racing a close: their change is the
    /// payer's, not the request's.
    pub(super) raced: Vec<String>,
}

impl Faults {
    pub(super) fn new(rng: Rng) -> Faults {
        Faults {
            rng,
            enabled: true,
            failed: BTreeSet::new(),
            raced: Vec::new(),
        }
    }

    pub(super) fn roll(&mut self, percent: u64) -> bool {
        self.enabled && self.rng.chance(percent)
    }
}

/// The sandbox channel, with the faults of a real channel injected around it.
pub(super) struct FaultyChannel {
    pub(super) inner: Sandbox,
    pub(super) store: Arc<Store>,
    pub(super) clock: Arc<SimClock>,
    pub(super) faults: Arc<Mutex<Faults>>,
}

impl Channel for FaultyChannel {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn start(&self, order: &Order, extra: &PayExtra) -> Result<PayStart, Error> {
        let (lost, refused, crash_before, crash_after) = {
            let mut f = self.faults.lock().unwrap();
            (f.roll(10), f.roll(5), f.roll(3), f.roll(3))
        };
        if refused {
            // The channel refuses the payment (a risk check, a closed merchant account): the
            // order fails.
            return Err(Error::PayFailed("simulated refusal of the payment".into()));
        }
        if lost {
            // The channel never opened the trade (its reply was lost, say): "not found" later.
            return Ok(PayStart {
                pay_body: "lost".into(),
                remember: false,
            });
        }
        if crash_before {
            // The `progress` order is committed; the channel never heard of it.
            std::panic::panic_any(SimCrash("crashes before the channel opened a trade"));
        }
        let start = self.inner.start(order, extra)?;
        if crash_after {
            // The trade is open; the reply (and a nonce'd request's memo) never came to be.
            std::panic::panic_any(SimCrash(
                "crashes after the channel opened a trade, before the reply",
            ));
        }
        Ok(start)
    }

    fn pay_body(&self, order: &Order) -> Option<String> {
        self.inner.pay_body(order)
    }

    fn close(&self, order: &Order, close_type: CloseType) -> Result<ChannelCloseOutcome, Error> {
        let (pay_first, timeout_before, crash_before, timeout_after, crash_after) = {
            let mut f = self.faults.lock().unwrap();
            (f.roll(20), f.roll(8), f.roll(5), f.roll(8), f.roll(8))
        };
        if pay_first {
            count("payers paying just before a close reached the channel");
            // The payer pays just before the close reaches the channel.
            let trade_no = format!("RACE{}", order.id);
            let paid =
                self.store
                    .sandbox_pay(order.order_no.clone(), trade_no, self.clock.now_ms());
            if paid.is_ok() {
                let mut f = self.faults.lock().unwrap();
                f.raced.push(order.order_no.clone());
            }
        }
        if timeout_before {
            return Err(Error::internal(
                "simulated timeout before the channel acted",
            ));
        }
        if crash_before {
            // The intent is committed, the channel never heard of the close.
            std::panic::panic_any(SimCrash("crashes before the channel acted on a close"));
        }
        let outcome = self.inner.close(order, close_type)?;
        if crash_after {
            std::panic::panic_any(SimCrash("crashes between the channel and the local update"));
        }
        if timeout_after {
            return Err(Error::internal("simulated timeout after the channel acted"));
        }
        Ok(outcome)
    }

    fn query(&self, order: &Order) -> Result<TradeState, Error> {
        if self.faults.lock().unwrap().roll(10) {
            return Err(Error::internal("simulated query timeout"));
        }
        let state = self.inner.query(order)?;
        let failed = self.faults.lock().unwrap().failed.contains(&order.order_no);
        Ok(match state {
            // The sandbox's book keeps a failed trade closed; the channel says why.
            TradeState::Closed if failed => TradeState::Failed,
            state => state,
        })
    }

    fn check_refund(&self, app_id: &str) -> Result<(), Error> {
        self.inner.check_refund(app_id)
    }

    fn refund(&self, order: &Order, refund: &Refund) -> RefundAnswer {
        let (timeout_before, crash_before, crash_after, timeout_after) = {
            let mut f = self.faults.lock().unwrap();
            (f.roll(8), f.roll(4), f.roll(6), f.roll(8))
        };
        if timeout_before {
            count("refund sends lost before the channel acted");
            return RefundAnswer::Unknown("simulated timeout before the channel acted".into());
        }
        if crash_before {
            // The refund row is committed; the channel never heard of it.
            std::panic::panic_any(SimCrash("crashes before the channel acted on a refund"));
        }
        let answer = self.inner.refund(order, refund);
        if crash_after {
            std::panic::panic_any(SimCrash(
                "crashes between a refund at the channel and the local update",
            ));
        }
        if timeout_after {
            count("refund answers lost after the channel acted");
            return RefundAnswer::Unknown("simulated timeout after the channel acted".into());
        }
        answer
    }

    fn query_refund(&self, order: &Order, refund: &Refund) -> RefundAnswer {
        if self.faults.lock().unwrap().roll(10) {
            return RefundAnswer::Unknown("simulated query timeout".into());
        }
        self.inner.query_refund(order, refund)
    }

    fn refund_spacing(&self) -> (i64, i64) {
        self.inner.refund_spacing()
    }
}
