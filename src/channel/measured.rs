//! Every channel wrapped for the metrics: each call that reaches the channel (start, close,
//! query, refund, refund query, and the notifications it sends in) is counted by outcome and
//! timed. `Channels` wraps every channel it holds; nothing else changes.

use std::sync::Arc;
use std::time::Instant;

use super::{Channel, PayExtra, PayStart, TradeState};
use crate::domain::{ChannelCloseOutcome, CloseType, Order, Refund, RefundAnswer};
use crate::error::Error;
use crate::http::{Request, Response};
use crate::metrics;

pub(super) struct Measured(pub(super) Arc<dyn Channel>);

impl Measured {
    fn timed<T>(&self, operation: &str, call: impl FnOnce() -> T, outcome: fn(&T) -> &str) -> T {
        let started = Instant::now();
        let result = call();
        let m = metrics::get();
        let name = self.0.name();
        m.channel_calls.inc(&[name, operation, outcome(&result)]);
        m.channel_seconds
            .observe(&[name, operation], started.elapsed());
        result
    }
}

fn refund_outcome(a: &RefundAnswer) -> &'static str {
    match a {
        RefundAnswer::Refused(_) => "refused",
        RefundAnswer::Unknown(_) => "unknown",
        RefundAnswer::Attention(_) => "attention",
        _ => "ok",
    }
}

impl Channel for Measured {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn check_pay(&self, app_id: &str, method: &str, extra: &PayExtra) -> Result<(), Error> {
        self.0.check_pay(app_id, method, extra)
    }

    fn start(&self, order: &Order, extra: &PayExtra) -> Result<PayStart, Error> {
        self.timed(
            "start",
            || self.0.start(order, extra),
            |r| match r {
                Ok(_) => "ok",
                Err(_) => "error",
            },
        )
    }

    fn pay_body(&self, order: &Order) -> Option<String> {
        self.0.pay_body(order)
    }

    fn supports(&self, order: &Order, close_type: CloseType) -> bool {
        self.0.supports(order, close_type)
    }

    fn close(&self, order: &Order, close_type: CloseType) -> Result<ChannelCloseOutcome, Error> {
        let operation = match close_type {
            CloseType::Close => "close",
            CloseType::Cancel => "cancel",
        };
        self.timed(
            operation,
            || self.0.close(order, close_type),
            |r| match r {
                Ok(ChannelCloseOutcome::Failed(_)) => "refused",
                Ok(_) => "ok",
                Err(Error::Unsupported(_)) => "unsupported",
                Err(_) => "unknown",
            },
        )
    }

    fn query(&self, order: &Order) -> Result<TradeState, Error> {
        self.timed(
            "query",
            || self.0.query(order),
            |r| match r {
                Ok(_) => "ok",
                Err(_) => "unknown",
            },
        )
    }

    fn check_refund(&self, app_id: &str) -> Result<(), Error> {
        self.0.check_refund(app_id)
    }

    fn refund(&self, order: &Order, refund: &Refund) -> RefundAnswer {
        self.timed("refund", || self.0.refund(order, refund), refund_outcome)
    }

    fn query_refund(&self, order: &Order, refund: &Refund) -> RefundAnswer {
        self.timed(
            "refund_query",
            || self.0.query_refund(order, refund),
            refund_outcome,
        )
    }

    fn refund_spacing(&self) -> (i64, i64) {
        self.0.refund_spacing()
    }

    fn refund_sync_too_soon(&self, refund: &Refund, now: i64) -> Option<&'static str> {
        self.0.refund_sync_too_soon(refund, now)
    }

    fn callback(&self, app_id: &str, req: &Request) -> Response {
        self.timed(
            "notification",
            || self.0.callback(app_id, req),
            |r| {
                if r.status < 300 {
                    "ok"
                } else {
                    "refused"
                }
            },
        )
    }
}
