//! The sandbox channel: a stand-in payment channel for local development and tests.
//!
//! It keeps its trades in its own table (`sandbox_trade`), as a real channel keeps them on its
//! side. A payer pays at `GET /sandbox/cashier/{orderNo}` (`POST /sandbox/pay/{orderNo}`); a close
//! turns an open trade into closed or cancelled, after which it can no longer be paid.
//!
//! Refunds go to its book of refunds (`sandbox_refund`): one of a paid trade succeeds at once,
//! never past the trade's amount, and a refund number is carried out at most once. Test
//! controls (refund-sync.md §9.1): an `extraParam` JSON object with `sandboxRefund` set to
//! `fail`, `processing`, `timeout` or `lost` changes the first send of that refund.

use std::sync::Arc;

use super::{Channel, PayExtra, PayStart, TradeState};
use crate::domain::{ChannelCloseOutcome, CloseType, Order, Refund, RefundAnswer, SANDBOX};
use crate::error::{Error, MSG_NO_CHANNEL_CONFIG, MSG_SANDBOX_REFUND_FAILED};
use crate::store::{SandboxRefund, SandboxRefunded, SandboxTrade, Store};
use crate::sys::{self, Clock, Random};

pub struct Sandbox {
    /// Off (`serve --no-sandbox`): new payments are refused as for an unset channel; trades
    /// opened before can still be closed and queried.
    enabled: bool,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    base_url: String,
}

impl Sandbox {
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        base_url: String,
    ) -> Sandbox {
        Sandbox {
            enabled: true,
            store,
            clock,
            random,
            base_url,
        }
    }

    /// The sandbox turned off for new payments (`serve --no-sandbox`).
    pub fn off(mut self) -> Sandbox {
        self.enabled = false;
        self
    }

    /// A new trade number, like a channel's own transaction id.
    pub fn new_trade_no(random: &dyn Random) -> String {
        format!("SBX{}", sys::random_alnum(random, 20))
    }
}

impl Channel for Sandbox {
    fn name(&self) -> &'static str {
        SANDBOX
    }

    fn check_pay(&self, _: &str, _: &str, _: &PayExtra) -> Result<(), Error> {
        match self.enabled {
            true => Ok(()),
            false => Err(Error::Config(MSG_NO_CHANNEL_CONFIG)),
        }
    }

    fn start(&self, order: &Order, _: &PayExtra) -> Result<PayStart, Error> {
        let trade_no = Sandbox::new_trade_no(self.random.as_ref());
        self.store.sandbox_open(
            order.order_no.clone(),
            order.amount,
            trade_no,
            self.clock.now_ms(),
        )?;
        Ok(PayStart {
            pay_body: cashier_url(&self.base_url, &order.order_no),
            remember: false,
        })
    }

    fn pay_body(&self, order: &Order) -> Option<String> {
        Some(cashier_url(&self.base_url, &order.order_no))
    }

    fn close(&self, order: &Order, close_type: CloseType) -> Result<ChannelCloseOutcome, Error> {
        let cancel = close_type == CloseType::Cancel;
        let trade =
            self.store
                .sandbox_close(order.order_no.clone(), cancel, self.clock.now_ms())?;
        Ok(match trade_state(trade) {
            // No trade at the channel: nothing can be paid, so the close holds.
            TradeState::Closed
            | TradeState::NotFound
            | TradeState::Revoked
            | TradeState::Failed => ChannelCloseOutcome::Closed,
            TradeState::Paid { trade_no, paid_at } => {
                ChannelCloseOutcome::Paid { trade_no, paid_at }
            }
            TradeState::Open => ChannelCloseOutcome::Failed("sandbox trade is still open".into()),
        })
    }

    fn query(&self, order: &Order) -> Result<TradeState, Error> {
        Ok(trade_state(self.store.sandbox_trade(&order.order_no)?))
    }

    fn check_refund(&self, _: &str) -> Result<(), Error> {
        Ok(())
    }

    fn refund(&self, order: &Order, refund: &Refund) -> RefundAnswer {
        // The test controls change the first send only.
        let control = match refund.sends {
            1 => test_control(refund.extra_param.as_deref()),
            _ => None,
        };
        match control.as_deref() {
            Some("fail") => return RefundAnswer::Refused(MSG_SANDBOX_REFUND_FAILED.into()),
            Some("lost") => return RefundAnswer::Unknown("sandbox: the refund was lost".into()),
            _ => {}
        }
        let booked = self.store.sandbox_refund(
            order.order_no.clone(),
            refund.refund_no.clone(),
            refund.amount,
            control.as_deref() == Some("processing"),
            format!("SBXR{}", sys::random_alnum(self.random.as_ref(), 20)),
            self.clock.now_ms(),
        );
        match booked {
            Err(e) => RefundAnswer::Unknown(e.to_string()),
            Ok(SandboxRefunded::Refused(why)) => {
                RefundAnswer::Refused(format!("{MSG_SANDBOX_REFUND_FAILED}: {why}"))
            }
            Ok(SandboxRefunded::Booked(_)) if control.as_deref() == Some("timeout") => {
                RefundAnswer::Unknown("sandbox: the answer was lost".into())
            }
            Ok(SandboxRefunded::Booked(r)) => refund_answer(&r, refund),
        }
    }

    fn query_refund(&self, _: &Order, refund: &Refund) -> RefundAnswer {
        match self.store.sandbox_refund_state(&refund.refund_no) {
            Err(e) => RefundAnswer::Unknown(e.to_string()),
            Ok(None) => RefundAnswer::NotFound,
            Ok(Some(r)) => refund_answer(&r, refund),
        }
    }
}

fn trade_state(trade: Option<SandboxTrade>) -> TradeState {
    match trade {
        None => TradeState::NotFound,
        Some(t) => match t.state.as_str() {
            "open" => TradeState::Open,
            "paid" => TradeState::Paid {
                trade_no: t.trade_no,
                paid_at: t.updated_at,
            },
            _ => TradeState::Closed,
        },
    }
}

/// A booked sandbox refund as an answer about `refund`.
pub fn refund_answer(booked: &SandboxRefund, refund: &Refund) -> RefundAnswer {
    if booked.amount != refund.amount || booked.order_no != refund.order_no {
        return RefundAnswer::Attention(format!(
            "沙箱退款{}的金额或订单与本地不符",
            refund.refund_no
        ));
    }
    let out_refund_no = Some(booked.out_refund_no.clone());
    match booked.state.as_str() {
        "success" => RefundAnswer::Success {
            out_refund_no,
            finish_time: Some(booked.updated_at),
        },
        "closed" => RefundAnswer::Closed { out_refund_no },
        "abnormal" => RefundAnswer::Abnormal { out_refund_no },
        _ => RefundAnswer::Processing { out_refund_no },
    }
}

/// The `sandboxRefund` test control of a refund's `extraParam`, if any.
fn test_control(extra_param: Option<&str>) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(extra_param?).ok()?;
    v.get("sandboxRefund")?.as_str().map(str::to_string)
}

/// The cashier page of an order.
pub fn cashier_url(base_url: &str, order_no: &str) -> String {
    format!("{base_url}/sandbox/cashier/{order_no}")
}
