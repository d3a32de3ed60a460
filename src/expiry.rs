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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::channel::Channels;
    use crate::domain::CloseType;

    use crate::store::Inserted;
    use crate::sys::{Clock, OsRandom};

    struct TestClock(AtomicI64);

    impl Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    const T0: i64 = 1_780_000_000_000;

    /// A gateway without channels on a fresh database with one app (`M`/`A`), its clock at
    /// `T0`.
    fn gateway(tag: &str) -> (Gateway, Arc<TestClock>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("unipay-expiry-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("e.db");
        let store = crate::store::testkit::store_with_app(&path, T0);
        let clock = Arc::new(TestClock(AtomicI64::new(T0)));
        let gw = Gateway::new(
            Arc::new(store),
            Channels::new(Vec::new()),
            clock.clone(),
            Arc::new(OsRandom),
            "http://127.0.0.1:1".into(),
        );
        (gw, clock, dir)
    }

    /// An order of channel `gone` (which the gateway does not have), expiring at `expires`.
    fn order(gw: &Gateway, biz: &str, status: PayStatus, expires: i64) -> Order {
        let new = crate::store::testkit::new_order(
            biz,
            (status == PayStatus::Progress).then_some("gone"),
            status,
            1,
            expires,
            expires - 60_000,
        );
        match gw.store.insert_order(new, None).unwrap() {
            Inserted::Created(o) => o,
            Inserted::Existing(o) => panic!("{} exists", o.order_no),
        }
    }

    #[test]
    fn one_sweep_closes_every_expired_order_past_a_batch_and_counts_what_it_skipped() {
        let (gw, _, dir) = gateway("batches");
        // The progress order expires first: its channel is unknown, so it is skipped.
        order(&gw, "B_SKIP", PayStatus::Progress, T0 - 10_000);
        for i in 0..BATCH + 5 {
            order(
                &gw,
                &format!("B{i}"),
                PayStatus::Wait,
                T0 - 5_000 + i as i64,
            );
        }
        order(&gw, "B_LATER", PayStatus::Wait, T0 + 1);
        let report = sweep(&gw);
        let want = SweepReport {
            closed: BATCH + 5,
            paid: 0,
            skipped: 1,
        };
        assert_eq!(report, want);
        assert_eq!(gw.store.expired_open_orders(T0 + 1, 10).unwrap().len(), 2);
        drop(gw);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn recovery_records_the_time_it_settled_an_intent_not_the_time_the_close_began() {
        let (gw, clock, dir) = gateway("recover");
        let o = order(&gw, "B_INTENT", PayStatus::Progress, T0 + 3_600_000);
        let began = CloseRequest {
            actor: Actor::Api,
            client_ip: Some("10.0.0.9".into()),
            now: T0,
        };
        gw.store.begin_close(o.id, CloseType::Close, began).unwrap();
        let later = T0 + 10 * 60_000;
        clock.0.store(later, Ordering::SeqCst);
        // The channel is unknown, so the trade counts as open: the close is abandoned.
        assert_eq!(recover(&gw, later - STALE_INTENT_MS), 1);
        let records = gw.store.close_records(o.id).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].created_at, later);
        assert_eq!(
            (records[0].actor.as_str(), records[0].closed),
            ("api", false)
        );
        assert_eq!(records[0].client_ip.as_deref(), Some("10.0.0.9"));
        assert!(gw.store.close_intents(i64::MAX).unwrap().is_empty());
        drop(gw);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
