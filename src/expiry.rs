//! The expiry sweeper, and recovery of closes interrupted by a crash.
//!
//! Every `--sweep-interval` the sweeper closes the orders past their `expiredTime`, through the
//! same close as the API (actor `expiry`): a `wait` order locally; a `progress` order only after
//! its channel was asked, so that money that arrived wins (the order becomes `success`) and an
//! open trade is closed at the channel before the order is closed locally.
//!
//! The same thread prunes the `nonceStr` replies older than a day (`NONCE_TTL_MS`).
//!
//! `recover` finishes or undoes the closes whose intent outlived their process: it asks the
//! channel what the trade is, and applies that. The same thread settles the refunds whose
//! outcome is not known yet when they are due (`refund::Refunds::settle_due`).

use std::collections::HashSet;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::channel::TradeState;
use crate::close::close_order;
use crate::domain::{Actor, ChannelCloseOutcome, CloseRequest, Order, PayStatus, NONCE_TTL_MS};
use crate::error::{Error, MSG_RECORD_INTERRUPTED};
use crate::gateway::Gateway;
use crate::refund::Refunds;
use crate::store::{OrderRef, Payment};

/// Orders handled per batch of a sweep.
const BATCH: usize = 200;
/// An intent older than this belongs to no live close (channel calls time out long before).
const STALE_INTENT_MS: i64 = 5 * 60 * 1000;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Orders closed (or cancelled) because they expired.
    pub closed: usize,
    /// Orders found paid at their channel, now `success`.
    pub paid: usize,
    /// Orders left for the next sweep (channel unreachable, a close already running, …).
    pub skipped: usize,
}

/// Starts the sweeper thread: recovery of stale intents, then a sweep, every `interval`, until
/// `gw.stop` (a round under way finishes first; `Stop::wait_idle` waits for it).
pub fn start(gw: Arc<Gateway>, interval: Duration) -> std::io::Result<()> {
    thread::Builder::new()
        .name("expiry".into())
        .spawn(move || loop {
            let Some(busy) = gw.stop.work() else {
                return;
            };
            recover(&gw, gw.now() - STALE_INTENT_MS);
            match gw.store.prune_nonces(gw.now() - NONCE_TTL_MS) {
                Ok(0) => {}
                Ok(n) => log::debug!("expiry: pruned {n} remembered nonceStr replies"),
                Err(e) => log::error!("expiry: cannot prune nonceStr replies: {e}"),
            }
            let report = sweep(&gw);
            if report != SweepReport::default() {
                log::info!("expiry sweep: {report:?}");
            }
            settle_refunds(&gw);
            drop(busy);
            if gw.stop.sleep(interval) {
                return;
            }
        })?;
    Ok(())
}

/// Settles the `progress` refunds that are due (refund-sync.md §7); returns how many changed.
pub fn settle_refunds(gw: &Gateway) -> usize {
    let refunds = Refunds {
        store: &gw.store,
        channels: &gw.channels,
        busy: &gw.busy,
    };
    refunds.settle_due(gw.now(), &|| !gw.stop.is_set())
}

/// Closes every order that is open past its expiry time now.
pub fn sweep(gw: &Gateway) -> SweepReport {
    let mut report = SweepReport::default();
    let mut seen = HashSet::new();
    loop {
        let batch = match gw.store.expired_open_orders(gw.now(), BATCH + seen.len()) {
            Ok(b) => b,
            Err(e) => {
                log::error!("expiry: cannot read expired orders: {e}");
                return report;
            }
        };
        let fresh: Vec<Order> = batch.into_iter().filter(|o| seen.insert(o.id)).collect();
        if fresh.is_empty() {
            return report;
        }
        for order in fresh {
            if gw.stop.is_set() {
                return report;
            }
            match expire(gw, &order) {
                Ok(Expired::Closed) => report.closed += 1,
                Ok(Expired::Paid) => report.paid += 1,
                Err(e) => {
                    log::debug!("expiry: {} left for later: {e}", order.order_no);
                    report.skipped += 1;
                }
            }
        }
    }
}

enum Expired {
    Closed,
    Paid,
}

fn expire(gw: &Gateway, order: &Order) -> Result<Expired, Error> {
    let req = CloseRequest {
        actor: Actor::Expiry,
        client_ip: None,
        now: gw.now(),
    };
    if order.status == PayStatus::Progress {
        let name = order.channel.clone().unwrap_or_default();
        let channel = gw.channels.get(&name).ok_or(Error::Unsupported(name))?;
        // Ask first: money that already arrived wins over the expiry.
        if let TradeState::Paid { trade_no, paid_at } = channel.query(order)? {
            return match gw
                .store
                .apply_payment(order.id, trade_no, paid_at, req.now)?
            {
                Payment::Paid(_) => Ok(Expired::Paid),
                Payment::AlreadyPaid(_) | Payment::Attention(_) => {
                    Err(Error::TradeStatus("not open".into()))
                }
            };
        }
    }
    close_order(
        &gw.store,
        &gw.channels,
        OrderRef::Id(order.id),
        false,
        req,
        None,
    )
    .map(|_| Expired::Closed)
}

/// Finishes or undoes every close intent created at or before `before`, by asking the channel.
/// Returns how many were settled.
pub fn recover(gw: &Gateway, before: i64) -> usize {
    let intents = match gw.store.close_intents(before) {
        Ok(i) => i,
        Err(e) => {
            log::error!("recovery: cannot read close intents: {e}");
            return 0;
        }
    };
    let mut settled = 0;
    for intent in intents {
        let order = &intent.order;
        let req = CloseRequest {
            now: gw.now(),
            ..intent.req.clone()
        };
        let name = order.channel.clone().unwrap_or_default();
        let state = match gw.channels.get(&name).map(|c| c.query(order)) {
            Some(Ok(state)) => state,
            Some(Err(e)) => {
                log::warn!("recovery: cannot ask {name} about {}: {e}", order.order_no);
                continue;
            }
            None => TradeState::Open,
        };
        let result = match state {
            TradeState::Open => gw.store.abandon_close(
                order.id,
                intent.close_type,
                req,
                MSG_RECORD_INTERRUPTED.into(),
            ),
            TradeState::Closed
            | TradeState::NotFound
            | TradeState::Revoked
            | TradeState::Failed => gw
                .store
                .finish_channel_close(
                    order.id,
                    intent.close_type,
                    ChannelCloseOutcome::Closed,
                    req,
                    None,
                )
                .map(|_| ()),
            TradeState::Paid { trade_no, paid_at } => gw
                .store
                .finish_channel_close(
                    order.id,
                    intent.close_type,
                    ChannelCloseOutcome::Paid { trade_no, paid_at },
                    req,
                    None,
                )
                .map(|_| ()),
        };
        match result {
            Ok(()) => {
                log::info!(
                    "recovery: settled the interrupted close of {}",
                    order.order_no
                );
                settled += 1;
            }
            Err(e) => log::error!("recovery: {}: {e}", order.order_no),
        }
    }
    settled
}
