//! Payment channels: where the payer's money actually moves.
//!
//! A `Channel` is asked whether an app can pay with a method, to start a payment, to close or
//! cancel a trade so that no money can arrive any more, what a trade is now, and it answers the
//! notifications its channel sends (`POST /callback/{channel}/{appId}`). The close logic
//! (`close`) only speaks this trait. Channel calls are network I/O for real channels: they are
//! never made inside a store transaction, and every one has a timeout (`client`).
//!
//! One folder per real channel (`alipay/`, `wechat/`); what they share is here: keys and signatures
//! (`keys`), the outbound HTTP client (`client`), and the per-app settings cache (`settings`).
//! No channel code lives anywhere else.

pub mod alipay;
pub mod client;
pub mod keys;
mod measured;
pub mod notice;
mod sandbox;
pub mod settings;
pub mod wechat;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{ChannelCloseOutcome, CloseType, Order, Refund, RefundAnswer};
use crate::error::Error;
use crate::http::{Request, Response};
use crate::store::Store;
use crate::sys::{Clock, Random};

pub use sandbox::{cashier_url, refund_answer as sandbox_refund_answer, Sandbox};

/// What a channel hands back when a payment starts.
#[derive(Debug, Clone)]
pub struct PayStart {
    /// What the merchant gives the payer to pay with (a URL, a QR payload, …).
    pub pay_body: String,
    /// Whether the pay body must be kept for a repeated pay of the same order (the channel
    /// cannot make it again without a network call).
    pub remember: bool,
}

/// What a pay request asks of a channel beyond the order itself.
#[derive(Debug, Clone, Default)]
pub struct PayExtra {
    /// The payer's id at the channel (`openId`, WeChat's JSAPI).
    pub open_id: Option<String>,
    /// Where a mobile cashier sends a payer who gives up (`quitUrl`).
    pub quit_url: Option<String>,
    /// The payer's IP address (`clientIp`; WeChat's H5 needs it).
    pub client_ip: Option<String>,
}

/// A payment channel.
pub trait Channel: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether `app_id` can pay with `method` here. The error is the answer to the pay request,
    /// given before any order is written: 20023 (not configured), 20021 (disabled), 20030 (a
    /// method the channel does not have), 10506 (a field the method needs).
    fn check_pay(&self, app_id: &str, method: &str, extra: &PayExtra) -> Result<(), Error> {
        let _ = (app_id, method, extra);
        Ok(())
    }

    /// Opens a trade for `order` at the channel. An `Err` fails the order (the payer was given
    /// nothing to pay with).
    fn start(&self, order: &Order, extra: &PayExtra) -> Result<PayStart, Error>;

    /// What the payer is sent to for an order that already has a trade.
    fn pay_body(&self, order: &Order) -> Option<String>;

    /// Whether this channel can do this kind of close of this order at all. The close logic
    /// asks before it commits a close intent, so that an unsupported close (20030) changes and
    /// records nothing.
    fn supports(&self, order: &Order, close_type: CloseType) -> bool {
        let _ = (order, close_type);
        true
    }

    /// Closes (or cancels) the trade of `order` so that it can no longer be paid. Only called
    /// for a close the channel `supports`. `Ok(Failed)` is a definite refusal (the trade is
    /// unchanged); `Err(Error::Unsupported)` if it cannot do it after all; any other `Err`
    /// means the outcome is unknown (a timeout, an answer that does not verify): the close
    /// intent stays and recovery settles it later by `query`.
    fn close(&self, order: &Order, close_type: CloseType) -> Result<ChannelCloseOutcome, Error>;

    /// What the channel's trade of `order` is now. `Err` when the channel could not be asked or
    /// its answer is unknown.
    fn query(&self, order: &Order) -> Result<TradeState, Error>;

    /// Whether an app can refund through this channel: 20030 when the channel cannot refund at
    /// all, 20023 / 20021 when the app's settings are missing or disabled.
    fn check_refund(&self, app_id: &str) -> Result<(), Error> {
        let _ = app_id;
        Err(Error::Unsupported(self.name().to_string()))
    }

    /// Sends a refund of `order` (its request number is the refund's `refund_no`; channels
    /// refund one request number at most once). Never `NotFound`.
    fn refund(&self, order: &Order, refund: &Refund) -> RefundAnswer {
        let _ = (order, refund);
        RefundAnswer::Refused(format!("不支持的能力: {}", self.name()))
    }

    /// Asks how a refund stands. `NotFound` when the channel never received it.
    fn query_refund(&self, order: &Order, refund: &Refund) -> RefundAnswer {
        let _ = (order, refund);
        RefundAnswer::Unknown(format!("{} cannot query refunds", self.name()))
    }

    /// The least time between two refund sends for one order, and between a send and the first
    /// query about it (milliseconds).
    fn refund_spacing(&self) -> (i64, i64) {
        (0, 0)
    }

    /// Why a refund sync must wait (a channel's advice), if it must.
    fn refund_sync_too_soon(&self, refund: &Refund, now: i64) -> Option<&'static str> {
        let _ = (refund, now);
        None
    }

    /// Answers a notification the channel sent to `POST /callback/{channel}/{app_id}`.
    fn callback(&self, app_id: &str, req: &Request) -> Response {
        let _ = (app_id, req);
        Response::text(404, "not found\n")
    }
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
    /// Reversed by the channel (WeChat `REVOKED`, 付款码): it can no longer be paid.
    Revoked,
    /// The payment failed at the channel (WeChat `PAYERROR`): it can no longer be paid.
    Failed,
    /// The channel has no such trade: it can never be paid.
    NotFound,
}

/// How the server reaches the channels, and how the channels reach it.
#[derive(Debug, Clone)]
pub struct Reach {
    /// Where this server is reached by people (cashier links): `http://127.0.0.1:9999`.
    pub base_url: String,
    /// Where the channels call back: `--public-url`, by default `base_url`.
    pub public_url: String,
    /// The timeout of every call to a channel.
    pub timeout: Duration,
    /// Whether the sandbox channel takes new payments (`serve --no-sandbox`: no).
    pub sandbox: bool,
}

/// The channels this server knows, by name.
pub struct Channels {
    channels: Vec<Arc<dyn Channel>>,
}

impl Channels {
    /// The channels, each measured for the metrics (`measured`).
    pub fn new(channels: Vec<Arc<dyn Channel>>) -> Channels {
        let channels = channels
            .into_iter()
            .map(|c| Arc::new(measured::Measured(c)) as Arc<dyn Channel>)
            .collect();
        Channels { channels }
    }

    /// The built-in channels: the sandbox and the real ones.
    pub fn builtin(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        reach: Reach,
    ) -> Channels {
        let client = client::Client::new(reach.timeout);
        Channels::new(vec![
            Arc::new({
                let sandbox = Sandbox::new(
                    store.clone(),
                    clock.clone(),
                    random.clone(),
                    reach.base_url.clone(),
                );
                if reach.sandbox {
                    sandbox
                } else {
                    sandbox.off()
                }
            }),
            Arc::new(alipay::AliPay::new(
                store.clone(),
                clock.clone(),
                client.clone(),
                reach.public_url.clone(),
            )),
            Arc::new(wechat::WechatPay::new(
                store,
                clock,
                random,
                client,
                reach.public_url,
            )),
        ])
    }

    pub fn get(&self, name: &str) -> Option<&dyn Channel> {
        self.channels
            .iter()
            .find(|c| c.name() == name)
            .map(|c| c.as_ref())
    }
}
