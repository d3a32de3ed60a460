//! Payment channels: where the payer's money actually moves.
//!
//! A `Channel` is asked to start a payment, and to close or cancel a trade so that no money can
//! arrive any more. The close logic (`close`) only speaks this trait, so real channels
//! (Alipay, WeChat Pay) can be added beside `sandbox` without touching it. Channel calls are
//! network I/O for real channels: they are never made inside a store transaction.

mod sandbox;

use std::sync::Arc;

use crate::domain::{ChannelCloseOutcome, CloseType, Order};
use crate::error::Error;
use crate::store::Store;
use crate::sys::{Clock, Random};

pub use sandbox::{cashier_url, Sandbox};

/// What a channel hands back when a payment starts.
#[derive(Debug, Clone)]
pub struct PayStart {
    /// What the merchant gives the payer to pay with (a URL, a QR payload, …).
    pub pay_body: String,
}

/// A payment channel.
pub trait Channel: Send + Sync {
    fn name(&self) -> &'static str;

    /// Opens a trade for `order` at the channel.
    fn start(&self, order: &Order) -> Result<PayStart, Error>;

    /// What the payer is sent to for an order that already has a trade.
    fn pay_body(&self, order: &Order) -> Option<String>;

    /// Whether this channel can do this kind of close at all. The close logic asks before it
    /// commits a close intent, so that an unsupported close (20030) changes and records nothing.
    fn supports(&self, close_type: CloseType) -> bool {
        let _ = close_type;
        true
    }

    /// Closes (or cancels) the trade of `order` so that it can no longer be paid. Only called
    /// for a `close_type` the channel `supports`; `Err(Error::Unsupported)` if it cannot do it
    /// after all; any other `Err` means the channel's answer is unknown (a timeout: the trade
    /// may or may not be closed).
    fn close(&self, order: &Order, close_type: CloseType) -> Result<ChannelCloseOutcome, Error>;

    /// What the channel's trade of `order` is now. `Err` when the channel could not be asked.
    fn query(&self, order: &Order) -> Result<TradeState, Error>;
}

/// A trade as its channel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeState {
    /// The payer can still pay.
    Open,
    /// The money arrived.
    Paid { trade_no: String, paid_at: i64 },
    /// Closed or cancelled: it can no longer be paid.
    Closed,
    /// The channel has no such trade: it can never be paid.
    NotFound,
}

/// The channels this server knows, by name.
pub struct Channels {
    channels: Vec<Arc<dyn Channel>>,
}

impl Channels {
    pub fn new(channels: Vec<Arc<dyn Channel>>) -> Channels {
        Channels { channels }
    }

    /// The built-in channels. `base_url` is where the server can be reached (cashier links).
    pub fn builtin(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        base_url: String,
    ) -> Channels {
        Channels {
            channels: vec![Arc::new(Sandbox::new(store, clock, random, base_url))],
        }
    }

    pub fn get(&self, name: &str) -> Option<&dyn Channel> {
        self.channels
            .iter()
            .find(|c| c.name() == name)
            .map(|c| c.as_ref())
    }
}
