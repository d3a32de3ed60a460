//! The sandbox channel: a stand-in payment channel for local development and tests.
//!
//! It keeps its trades in its own table (`sandbox_trade`), as a real channel keeps them on its
//! side. A payer pays at `GET /sandbox/cashier/{orderNo}` (`POST /sandbox/pay/{orderNo}`); a close
//! turns an open trade into closed or cancelled, after which it can no longer be paid.

use std::sync::Arc;

use super::{Channel, PayExtra, PayStart, TradeState};
use crate::domain::{ChannelCloseOutcome, CloseType, Order, SANDBOX};
use crate::error::{Error, MSG_NO_CHANNEL_CONFIG};
use crate::store::{SandboxTrade, Store};
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
            TradeState::Closed | TradeState::NotFound => ChannelCloseOutcome::Closed,
            TradeState::Paid { trade_no, paid_at } => {
                ChannelCloseOutcome::Paid { trade_no, paid_at }
            }
            TradeState::Open => ChannelCloseOutcome::Failed("sandbox trade is still open".into()),
        })
    }

    fn query(&self, order: &Order) -> Result<TradeState, Error> {
        Ok(trade_state(self.store.sandbox_trade(&order.order_no)?))
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

/// The cashier page of an order.
pub fn cashier_url(base_url: &str, order_no: &str) -> String {
    format!("{base_url}/sandbox/cashier/{order_no}")
}
