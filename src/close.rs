//! The close of an order, shared by the API (`api::close`), the admin console and the expiry
//! sweeper: one path, whoever asks.
//!
//! A `wait` order is closed locally in one transaction. A `progress` order's channel must stop
//! taking money first: the intent to close is committed (a second close now gets 20043), the
//! channel closes or cancels the trade outside any transaction, and its answer is applied in one
//! transaction with a conditional update, the close record and the outbox rows, which also ends
//! the intent. If the process dies in between, start-up recovery (`expiry::recover`) asks the
//! channel and finishes or undoes the close.

use crate::channel::Channels;
use crate::domain::{ChannelCloseOutcome, CloseRequest, CloseType, Order, PayStatus};
use crate::error::{Error, MSG_NOT_CLOSABLE, MSG_PAID_NOT_CLOSABLE};
use crate::metrics;
use crate::store::{LocalClose, OrderRef, ReplyMemo, Store};

/// Closes the order `order` names (or cancels it at its channel with `use_cancel`), for any
/// actor. `Ok` means this call changed the order and the change is on disk. With `memo` (a
/// request with a `nonceStr`), the request's reply is remembered in the transaction of the
/// change.
pub fn close_order(
    store: &Store,
    channels: &Channels,
    order: OrderRef,
    use_cancel: bool,
    req: CloseRequest,
    memo: Option<&ReplyMemo>,
) -> Result<Order, Error> {
    let actor = req.actor.as_str();
    // The store decides on the status inside its transaction: a `wait` order is closed there
    // and then; a `progress` one comes back for its channel.
    let local_memo = memo.map(|m| m.memo(|_| Ok(None)));
    let result = match store.close_local(order, use_cancel, req.clone(), local_memo) {
        Ok(LocalClose::Closed(closed)) => Ok(closed),
        Ok(LocalClose::AtChannel(order, close_type)) => {
            close_at_channel(store, channels, &order, close_type, req, memo)
        }
        Err(e) => Err(e),
    };
    let outcome = match &result {
        Ok(o) if o.status == PayStatus::Cancel => "cancelled",
        Ok(_) => "closed",
        Err(Error::TradeStatus(_)) => "not_open",
        Err(Error::Closing) => "already_closing",
        Err(Error::CloseFailed(_)) => "channel_failed",
        Err(Error::Unsupported(_)) => "unsupported",
        Err(Error::OrderNotFound) => "not_found",
        Err(_) => "error",
    };
    metrics::get().closes.inc(&[actor, outcome]);
    result
}

/// Closes a `progress` order: intent, channel, answer (see the module doc).
fn close_at_channel(
    store: &Store,
    channels: &Channels,
    order: &Order,
    close_type: CloseType,
    req: CloseRequest,
    memo: Option<&ReplyMemo>,
) -> Result<Order, Error> {
    let channel_name = order.channel.clone().unwrap_or_default();
    let channel = channels
        .get(&channel_name)
        .ok_or_else(|| Error::Unsupported(channel_name.clone()))?;
    // Before any intent is committed: a close the channel cannot do changes nothing (20030).
    if !channel.supports(order, close_type) {
        return Err(Error::Unsupported(channel_name));
    }
    let order = store.begin_close(order.id, close_type, req.clone())?;
    let mut unsupported = false;
    let outcome = match channel.close(&order, close_type) {
        Ok(outcome) => outcome,
        Err(e @ Error::Unsupported(_)) => {
            // The channel said so only once asked: the attempt reached it, so it is recorded
            // (and the intent ended) like any failed close, but the answer is still 20030.
            log::warn!("close of {} at {channel_name}: {e}", order.order_no);
            unsupported = true;
            ChannelCloseOutcome::Failed(e.message())
        }
        Err(e) => {
            // Unknown: the trade may or may not be closed. The intent stays (a second close is
            // 20043) and recovery settles it by asking the channel; the attempt is recorded.
            log::warn!(
                "close of {} at {channel_name}: outcome unknown: {e}",
                order.order_no
            );
            store.record_unknown_close(order.id, close_type, req, e.message())?;
            return Err(match e {
                Error::CloseFailed(why) => Error::CloseFailed(why),
                other => Error::CloseFailed(other.message()),
            });
        }
    };
    // The reply when the answer changes the order, remembered with the change.
    let memo = memo.map(|m| {
        let outcome = outcome.clone();
        m.memo(move |_| answer(&outcome, true).map(|()| None))
    });
    let (after, changed) =
        store.finish_channel_close(order.id, close_type, outcome.clone(), req, memo)?;
    match outcome {
        ChannelCloseOutcome::Failed(_) if unsupported => Err(Error::Unsupported(channel_name)),
        outcome => answer(&outcome, changed).map(|()| after),
    }
}

/// What a close answers after its channel's `outcome`, given whether the order changed.
fn answer(outcome: &ChannelCloseOutcome, changed: bool) -> Result<(), Error> {
    match outcome {
        ChannelCloseOutcome::Closed | ChannelCloseOutcome::Refunded if changed => Ok(()),
        ChannelCloseOutcome::Closed | ChannelCloseOutcome::Refunded => {
            Err(Error::TradeStatus(MSG_NOT_CLOSABLE.into()))
        }
        ChannelCloseOutcome::Paid { .. } => Err(Error::TradeStatus(MSG_PAID_NOT_CLOSABLE.into())),
        ChannelCloseOutcome::Failed(msg) => Err(Error::CloseFailed(msg.clone())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::channel::{Channel, PayExtra, PayStart, TradeState};
    use crate::domain::{Actor, PayStatus};

    use crate::store::{Inserted, NewOrder};
    use crate::sys::{Clock, SystemClock};

    /// A channel that can close its trades but not cancel them. With `admits`, it does not say
    /// so beforehand (`supports` is true) and refuses only once asked.
    struct CannotCancel {
        closes: Arc<AtomicUsize>,
        admits: bool,
    }

    impl Channel for CannotCancel {
        fn name(&self) -> &'static str {
            "nocancel"
        }
        fn start(&self, _: &Order, _: &PayExtra) -> Result<PayStart, Error> {
            Ok(PayStart {
                pay_body: String::new(),
                remember: false,
            })
        }
        fn pay_body(&self, _: &Order) -> Option<String> {
            None
        }
        fn supports(&self, _: &Order, close_type: CloseType) -> bool {
            self.admits || close_type == CloseType::Close
        }
        fn close(&self, _: &Order, close_type: CloseType) -> Result<ChannelCloseOutcome, Error> {
            self.closes.fetch_add(1, Ordering::SeqCst);
            match close_type {
                CloseType::Close => Ok(ChannelCloseOutcome::Closed),
                CloseType::Cancel => Err(Error::Unsupported("nocancel".into())),
            }
        }
        fn query(&self, _: &Order) -> Result<TradeState, Error> {
            Ok(TradeState::Open)
        }
    }

    fn progress_order(store: &Store, biz_order_no: &str, now: i64) -> Order {
        let new = NewOrder {
            method: Some("wap".into()),
            ..crate::store::testkit::new_order(
                biz_order_no,
                Some("nocancel"),
                PayStatus::Progress,
                1,
                now + 3_600_000,
                now,
            )
        };
        match store.insert_order(new, None).unwrap() {
            Inserted::Created(o) => o,
            Inserted::Existing(o) => panic!("{} exists", o.order_no),
        }
    }

    /// A store on a fresh database in `dir` with one app (`M`/`A`), and the `nocancel` channel.
    fn setup(dir: &std::path::Path, admits: bool) -> (Arc<Store>, Channels, Arc<AtomicUsize>) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("c.db");
        let store = crate::store::testkit::store_with_app(&path, SystemClock.now_ms());
        let closes = Arc::new(AtomicUsize::new(0));
        let channel = CannotCancel {
            closes: closes.clone(),
            admits,
        };
        let channels = Channels::new(vec![Arc::new(channel)]);
        (Arc::new(store), channels, closes)
    }

    fn temp(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("unipay-close-{tag}-{}", std::process::id()))
    }

    #[test]
    fn a_cancel_the_channel_cannot_do_is_20030_and_changes_nothing() {
        let dir = temp("unsupported");
        let (store, channels, closes) = setup(&dir, false);
        let now = SystemClock.now_ms();
        let req = CloseRequest {
            actor: Actor::Api,
            client_ip: None,
            now,
        };

        let order = progress_order(&store, "B1", now);
        let err = close_order(
            &store,
            &channels,
            OrderRef::Id(order.id),
            true,
            req.clone(),
            None,
        )
        .unwrap_err();
        assert_eq!(err.code(), 20030, "{err}");
        assert_eq!(err.message(), "不支持的能力: nocancel");
        assert_eq!(
            closes.load(Ordering::SeqCst),
            0,
            "the channel was not asked"
        );
        let after = store.order_by_no(&order.order_no).unwrap().unwrap();
        assert_eq!(after.status, PayStatus::Progress);
        assert_eq!(after.updated_at, order.updated_at);
        assert!(
            store.close_records(order.id).unwrap().is_empty(),
            "no close record"
        );
        assert!(
            store.close_intents(i64::MAX).unwrap().is_empty(),
            "no close intent"
        );

        // A second try is 20030 again, not 20043: nothing was left behind.
        let err = close_order(
            &store,
            &channels,
            OrderRef::Id(order.id),
            true,
            req.clone(),
            None,
        )
        .unwrap_err();
        assert_eq!(err.code(), 20030, "{err}");

        // The kind of close the channel can do still works on the same order.
        let closed =
            close_order(&store, &channels, OrderRef::Id(order.id), false, req, None).unwrap();
        assert_eq!(closed.status, PayStatus::Close);
        assert_eq!(closes.load(Ordering::SeqCst), 1);
        assert_eq!(store.close_records(order.id).unwrap().len(), 1);
        drop(channels);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_channel_that_refuses_only_when_asked_is_20030_and_ends_its_intent() {
        let dir = temp("refused");
        let (store, channels, closes) = setup(&dir, true);
        let now = SystemClock.now_ms();
        let req = CloseRequest {
            actor: Actor::Api,
            client_ip: None,
            now,
        };
        let order = progress_order(&store, "B2", now);
        let err = close_order(
            &store,
            &channels,
            OrderRef::Id(order.id),
            true,
            req.clone(),
            None,
        )
        .unwrap_err();
        assert_eq!(err.code(), 20030, "{err}");
        assert_eq!(closes.load(Ordering::SeqCst), 1);
        let after = store.order_by_no(&order.order_no).unwrap().unwrap();
        assert_eq!(after.status, PayStatus::Progress);
        // The channel was reached: one failed close record, and no intent left behind.
        let records = store.close_records(order.id).unwrap();
        assert_eq!(records.len(), 1);
        assert!(!records[0].closed);
        assert!(store.close_intents(i64::MAX).unwrap().is_empty());
        drop(channels);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// What `Scripted::close` does: it may change the order first (a payment racing the close).
    type CloseScript =
        dyn Fn(&Order, CloseType) -> Result<ChannelCloseOutcome, Error> + Send + Sync;

    /// A channel named `scripted` whose close answers as its script says.
    struct Scripted(Box<CloseScript>);

    impl Channel for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn start(&self, _: &Order, _: &PayExtra) -> Result<PayStart, Error> {
            Ok(PayStart {
                pay_body: String::new(),
                remember: false,
            })
        }
        fn pay_body(&self, _: &Order) -> Option<String> {
            None
        }
        fn close(
            &self,
            order: &Order,
            close_type: CloseType,
        ) -> Result<ChannelCloseOutcome, Error> {
            (self.0)(order, close_type)
        }
        fn query(&self, _: &Order) -> Result<TradeState, Error> {
            Ok(TradeState::Open)
        }
    }

    /// An order of the `scripted` channel in `status`.
    fn scripted_order(store: &Store, biz_order_no: &str, status: PayStatus, now: i64) -> Order {
        let new = NewOrder {
            method: Some("wap".into()),
            ..crate::store::testkit::new_order(
                biz_order_no,
                Some("scripted"),
                status,
                1,
                now + 3_600_000,
                now,
            )
        };
        match store.insert_order(new, None).unwrap() {
            Inserted::Created(o) => o,
            Inserted::Existing(o) => panic!("{} exists", o.order_no),
        }
    }

    fn sync_request() -> CloseRequest {
        CloseRequest {
            actor: Actor::Sync,
            client_ip: None,
            now: SystemClock.now_ms(),
        }
    }

    #[test]
    fn the_close_metric_tells_closed_from_cancelled() {
        let dir = temp("metric");
        let (store, _, _) = setup(&dir, false);
        let channels = Channels::new(vec![Arc::new(Scripted(Box::new(|_, _| {
            Ok(ChannelCloseOutcome::Closed)
        })))]);
        // The actor `sync` is this test's own: no other unit test closes as it.
        let count = |outcome: &str| metrics::get().closes.with(&["sync", outcome]).get();
        let (closed, cancelled) = (count("closed"), count("cancelled"));
        let now = SystemClock.now_ms();

        let wait = scripted_order(&store, "BM1", PayStatus::Wait, now);
        let req = sync_request();
        let after = close_order(&store, &channels, OrderRef::Id(wait.id), true, req, None);
        assert_eq!(after.unwrap().status, PayStatus::Close);
        assert_eq!(count("closed"), closed + 1);
        assert_eq!(count("cancelled"), cancelled);

        let progress = scripted_order(&store, "BM2", PayStatus::Progress, now);
        let req = sync_request();
        let after = close_order(
            &store,
            &channels,
            OrderRef::Id(progress.id),
            true,
            req,
            None,
        );
        assert_eq!(after.unwrap().status, PayStatus::Cancel);
        assert_eq!(count("cancelled"), cancelled + 1);
        assert_eq!(count("closed"), closed + 1);
        drop(channels);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_close_the_channel_refuses_is_20080_with_its_reason() {
        let dir = temp("failed");
        let (store, _, _) = setup(&dir, false);
        let channels = Channels::new(vec![Arc::new(Scripted(Box::new(|_, _| {
            Ok(ChannelCloseOutcome::Failed("TRADE_BUSY".into()))
        })))]);
        let order = scripted_order(&store, "BF1", PayStatus::Progress, SystemClock.now_ms());
        let req = sync_request();
        let err =
            close_order(&store, &channels, OrderRef::Id(order.id), false, req, None).unwrap_err();
        assert!(
            matches!(&err, Error::CloseFailed(why) if why == "TRADE_BUSY"),
            "{err:?}"
        );
        let after = store.order_by_no(&order.order_no).unwrap().unwrap();
        assert_eq!(after.status, PayStatus::Progress);
        assert!(store.close_intents(i64::MAX).unwrap().is_empty());
        drop(channels);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_close_that_a_payment_overtook_is_20044_and_the_order_stays_paid() {
        let dir = temp("overtaken");
        let (store, _, _) = setup(&dir, false);
        let payer = store.clone();
        let channels = Channels::new(vec![Arc::new(Scripted(Box::new(move |order, _| {
            // The payer pays while the close is at the channel; the channel still says closed.
            let now = SystemClock.now_ms();
            payer
                .apply_payment(order.id, "T1".into(), now, now)
                .unwrap();
            Ok(ChannelCloseOutcome::Closed)
        })))]);
        let order = scripted_order(&store, "BO1", PayStatus::Progress, SystemClock.now_ms());
        let req = sync_request();
        let err =
            close_order(&store, &channels, OrderRef::Id(order.id), false, req, None).unwrap_err();
        assert_eq!(err.code(), 20044, "{err:?}");
        assert_eq!(err.message(), MSG_NOT_CLOSABLE);
        let after = store.order_by_no(&order.order_no).unwrap().unwrap();
        assert_eq!(after.status, PayStatus::Success);
        let records = store.close_records(order.id).unwrap();
        assert_eq!(records.len(), 1);
        assert!(!records[0].closed);
        drop(channels);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
