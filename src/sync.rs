//! Repairing an order or a refund from its channel's truth (`/unipay/sync/order/pay|refund`,
//! refund-sync.md §5, §6).
//!
//! A pay sync asks the channel what the trade is and applies refund-sync.md §5's table through
//! the one state machine: money wins (also over a close, which is then flagged for an
//! operator), a trade over at the channel ends the open order the same way, an open trade past
//! its expiry is closed as expiry does, and a `success` order the channel does not call paid is
//! flagged, never changed. A refund sync settles a `progress` refund once (`refund::settle`)
//! and flags a final one the channel disagrees with. Every sync is recorded; `adjust` says
//! whether this call changed the status. Nothing is held while the channel is asked.

use crate::channel::{Channels, TradeState};
use crate::close::close_order;
use crate::domain::{
    Actor, ChannelCloseOutcome, CloseRequest, CloseType, Order, PayStatus, Refund, RefundAnswer,
    RefundStatus,
};
use crate::error::{Error, MSG_PAY_SYNC_BUSY, MSG_REFUND_SYNC_BUSY, MSG_SYNC_NOT_STARTED};
use crate::inflight::InFlight;
use crate::refund::Refunds;
use crate::store::{OrderRef, Store, SyncRecord};

/// What a sync did: the status after it, and whether this call changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub status: String,
    pub adjust: bool,
}

fn trade_word(state: &TradeState) -> &'static str {
    match state {
        TradeState::Open => "open",
        TradeState::Paid { .. } => "paid",
        TradeState::Closed => "closed",
        TradeState::Revoked => "revoked",
        TradeState::Failed => "failed",
        TradeState::NotFound => "not found",
    }
}

/// `POST /unipay/sync/order/pay` for `order` (of the caller's app).
pub fn sync_pay(
    store: &Store,
    channels: &Channels,
    busy: &InFlight,
    order: &Order,
    client_ip: Option<String>,
    now: i64,
) -> Result<Synced, Error> {
    // Never handed to a channel (still `wait`, or closed while it was): nothing to ask.
    if order.status == PayStatus::Wait || order.channel.is_none() {
        return Err(Error::TradeStatus(MSG_SYNC_NOT_STARTED.into()));
    }
    let Some(_claim) = busy.try_claim(("sync-pay".into(), order.order_no.clone())) else {
        return Err(Error::SyncBusy(MSG_PAY_SYNC_BUSY));
    };
    let name = order.channel.clone().unwrap_or_default();
    let channel = channels
        .get(&name)
        .ok_or_else(|| Error::Unsupported(name.clone()))?;
    let record = |status: Option<&str>, adjusted: bool, error: Option<String>| {
        store.record_sync(SyncRecord {
            kind: "pay",
            order_no: order.order_no.clone(),
            refund_no: None,
            channel: Some(name.clone()),
            channel_status: status.map(str::to_string),
            adjusted,
            error_msg: error,
            client_ip: client_ip.clone(),
            now,
        })
    };
    let state = match channel.query(order) {
        Ok(state) => state,
        // The app's settings of the channel are missing or off: said as for a pay.
        Err(e @ (Error::Config(_) | Error::ChannelDisabled(_))) => return Err(e),
        Err(e) => {
            let why = e.message();
            record(None, false, Some(why.clone()))?;
            return Err(Error::SyncFailed(why));
        }
    };
    let req = CloseRequest {
        actor: Actor::Sync,
        client_ip: client_ip.clone(),
        now,
    };
    let end = |close_type: CloseType| {
        store
            .finish_channel_close(
                order.id,
                close_type,
                ChannelCloseOutcome::Closed,
                req.clone(),
                None,
            )
            .map(|(_, changed)| changed)
    };
    let expired = now >= order.expired_time;
    let changed = match (order.status, &state) {
        (_, TradeState::Paid { trade_no, paid_at }) => {
            // Money wins over an open order and over one that is already over (flagged).
            let paid = store.apply_payment(order.id, trade_no.clone(), *paid_at, now)?;
            !matches!(paid, crate::store::Payment::AlreadyPaid(_))
        }
        (PayStatus::Progress, TradeState::Closed) => end(CloseType::Close)?,
        (PayStatus::Progress, TradeState::Revoked) => end(CloseType::Cancel)?,
        (PayStatus::Progress, TradeState::Failed) => store
            .fail_order(order.id, "通道支付失败".into(), now, None)?
            .is_some(),
        (PayStatus::Progress, TradeState::Open | TradeState::NotFound) if expired => {
            // As automatic expiry does: the channel closes the trade first.
            match close_order(
                store,
                channels,
                OrderRef::Id(order.id),
                false,
                req.clone(),
                None,
            ) {
                Ok(_) => true,
                Err(e) => {
                    record(Some(trade_word(&state)), false, Some(e.message()))?;
                    return Err(Error::SyncFailed(e.message()));
                }
            }
        }
        (PayStatus::Success, _) => {
            let why = format!(
                "订单支付成功, 但通道交易为 {} (a pay sync disagrees)",
                trade_word(&state)
            );
            store.flag_attention(order.id, why, now)?;
            false
        }
        _ => false,
    };
    record(Some(trade_word(&state)), changed, None)?;
    let after = store
        .order_by_no(&order.order_no)?
        .ok_or(Error::OrderNotFound)?;
    Ok(Synced {
        status: after.status.as_str().to_string(),
        adjust: changed,
    })
}

/// `POST /unipay/sync/order/refund` for `refund` (of the caller's app).
pub fn sync_refund(
    refunds: &Refunds,
    refund: &Refund,
    client_ip: Option<String>,
    now: i64,
) -> Result<Synced, Error> {
    let Some(_claim) = refunds
        .busy
        .try_claim(("sync-refund".into(), refund.refund_no.clone()))
    else {
        return Err(Error::SyncBusy(MSG_REFUND_SYNC_BUSY));
    };
    let channel = refunds
        .channels
        .get(&refund.channel)
        .ok_or_else(|| Error::Unsupported(refund.channel.clone()))?;
    if let Some(why) = channel.refund_sync_too_soon(refund, now) {
        return Err(Error::SyncTooSoon(why));
    }
    let record = |status: Option<&str>, adjusted: bool, error: Option<String>| {
        refunds.store.record_sync(SyncRecord {
            kind: "refund",
            order_no: refund.order_no.clone(),
            refund_no: Some(refund.refund_no.clone()),
            channel: Some(refund.channel.clone()),
            channel_status: status.map(str::to_string),
            adjusted,
            error_msg: error,
            client_ip: client_ip.clone(),
            now,
        })
    };
    let Some(_held) = refunds
        .busy
        .try_claim(("refund".into(), refund.refund_no.clone()))
    else {
        return Err(Error::SyncBusy(MSG_REFUND_SYNC_BUSY));
    };
    let order = refunds
        .store
        .order_by_no(&refund.order_no)?
        .ok_or(Error::OrderNotFound)?;
    let answer = channel.query_refund(&order, refund);
    if let RefundAnswer::Unknown(why) = &answer {
        record(None, false, Some(why.clone()))?;
        return Err(Error::SyncFailed(why.clone()));
    }
    if refund.status == RefundStatus::Progress {
        let (after, changed) = refunds.settle_with(refund, answer, now)?;
        record(Some(after.status.as_str()), changed, None)?;
        return Ok(Synced {
            status: after.status.as_str().to_string(),
            adjust: changed,
        });
    }
    // A final refund is never changed; a channel that disagrees is an operator's matter.
    let (word, agrees) = match (&answer, refund.status) {
        (RefundAnswer::Unknown(_), _) => ("unknown", true),
        (RefundAnswer::Success { .. }, s) => ("success", s == RefundStatus::Success),
        (RefundAnswer::Closed { .. }, s) => ("closed", s == RefundStatus::Close),
        (RefundAnswer::NotFound, s) => ("not found", s == RefundStatus::Fail),
        (RefundAnswer::Processing { .. }, _) => ("processing", false),
        (RefundAnswer::Abnormal { .. }, _) => ("abnormal", false),
        (RefundAnswer::Refused(_), s) => ("refused", s == RefundStatus::Fail),
        (RefundAnswer::Attention(_), _) => ("mismatch", false),
    };
    if !agrees {
        let why = format!(
            "退款{}本地为{}, 通道为{word} (a refund sync disagrees)",
            refund.refund_no,
            refund.status.label()
        );
        refunds.store.flag_attention(order.id, why, now)?;
    }
    record(Some(word), false, None)?;
    Ok(Synced {
        status: refund.status.as_str().to_string(),
        adjust: false,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::channel::{Channel, PayExtra, PayStart};
    use crate::domain::{Amount, OrderKey};
    use crate::refund::Asker;

    use crate::store::Inserted;

    use crate::wire::RefundInput;

    const T0: i64 = 1_780_000_000_000;

    /// A channel named `scripted`: its trades are in `trade`, its refunds answer from `sends`
    /// and `queries` in order.
    #[derive(Default)]
    struct Scripted {
        trade: Mutex<Option<TradeState>>,
        sends: Mutex<VecDeque<RefundAnswer>>,
        queries: Mutex<VecDeque<RefundAnswer>>,
    }

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
        fn close(&self, _: &Order, _: CloseType) -> Result<ChannelCloseOutcome, Error> {
            Ok(ChannelCloseOutcome::Closed)
        }
        fn query(&self, _: &Order) -> Result<TradeState, Error> {
            Ok(self
                .trade
                .lock()
                .unwrap()
                .clone()
                .unwrap_or(TradeState::Open))
        }
        fn check_refund(&self, _: &str) -> Result<(), Error> {
            Ok(())
        }
        fn refund(&self, _: &Order, _: &Refund) -> RefundAnswer {
            self.sends.lock().unwrap().pop_front().unwrap()
        }
        fn query_refund(&self, _: &Order, _: &Refund) -> RefundAnswer {
            self.queries.lock().unwrap().pop_front().unwrap()
        }
    }

    struct Setup {
        store: Arc<Store>,
        channel: Arc<Scripted>,
        channels: Channels,
        busy: InFlight,
        dir: std::path::PathBuf,
    }

    impl Setup {
        fn new(tag: &str) -> Setup {
            let dir =
                std::env::temp_dir().join(format!("unipay-sync-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("s.db");
            let store = Arc::new(crate::store::testkit::store_with_app(&path, T0));
            let channel = Arc::new(Scripted::default());
            let channels = Channels::new(vec![channel.clone()]);
            Setup {
                store,
                channel,
                channels,
                busy: InFlight::default(),
                dir,
            }
        }

        /// A `progress` order of the scripted channel, expiring an hour after `T0`.
        fn progress(&self, biz: &str) -> Order {
            let new = crate::store::testkit::new_order(
                biz,
                Some("scripted"),
                PayStatus::Progress,
                100,
                T0 + 3_600_000,
                T0,
            );
            match self.store.insert_order(new, None).unwrap() {
                Inserted::Created(o) => o,
                Inserted::Existing(o) => panic!("{} exists", o.order_no),
            }
        }

        fn paid(&self, biz: &str) -> Order {
            let o = self.progress(biz);
            self.store
                .apply_payment(o.id, format!("T_{biz}"), T0, T0)
                .unwrap();
            self.reload(&o)
        }

        fn reload(&self, o: &Order) -> Order {
            self.store.order_by_no(&o.order_no).unwrap().unwrap()
        }

        fn sync_pay(&self, o: &Order, trade: TradeState, now: i64) -> Synced {
            *self.channel.trade.lock().unwrap() = Some(trade);
            sync_pay(&self.store, &self.channels, &self.busy, o, None, now).unwrap()
        }

        fn refunds(&self) -> Refunds<'_> {
            Refunds {
                store: &self.store,
                channels: &self.channels,
                busy: &self.busy,
            }
        }

        /// A refund of a new paid order, settled by the channel's answer to its send.
        fn refund(&self, biz: &str, send: RefundAnswer) -> Refund {
            self.paid(biz);
            self.channel.sends.lock().unwrap().push_back(send);
            let input = RefundInput {
                order: OrderKey::BizOrderNo(biz.into()),
                biz_refund_no: format!("R_{biz}"),
                amount: Amount(100),
                reason: None,
                attach: None,
                notify_url: None,
                extra_param: None,
            };
            self.refunds()
                .refund("A", input, Asker::default(), T0, None)
                .unwrap()
        }

        /// The last sync record: the channel's word, and whether it changed anything.
        fn last_record(&self) -> (Option<String>, bool) {
            self.store.last_sync_record().unwrap()
        }
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_pay_sync_ends_an_open_order_as_its_trade_ended() {
        let s = Setup::new("ended");
        for (biz, trade, status, word) in [
            ("B_CL", TradeState::Closed, "close", "closed"),
            ("B_RV", TradeState::Revoked, "cancel", "revoked"),
            ("B_FL", TradeState::Failed, "fail", "failed"),
        ] {
            let o = s.progress(biz);
            let synced = s.sync_pay(&o, trade, T0 + 1);
            assert_eq!(
                synced,
                Synced {
                    status: status.into(),
                    adjust: true
                },
                "{biz}"
            );
            assert_eq!(s.reload(&o).status.as_str(), status);
            assert_eq!(s.last_record(), (Some(word.to_string()), true), "{biz}");
        }
    }

    #[test]
    fn a_pay_sync_closes_an_open_trade_only_once_the_order_expired() {
        let s = Setup::new("expired");
        let o = s.progress("B_EX");
        let early = s.sync_pay(&o, TradeState::Open, o.expired_time - 1);
        assert_eq!(
            early,
            Synced {
                status: "progress".into(),
                adjust: false
            }
        );
        assert_eq!(s.last_record(), (Some("open".to_string()), false));
        let due = s.sync_pay(&o, TradeState::Open, o.expired_time);
        assert_eq!(
            due,
            Synced {
                status: "close".into(),
                adjust: true
            }
        );
    }

    #[test]
    fn a_pay_sync_that_disagrees_with_a_paid_order_flags_it_and_changes_nothing() {
        let s = Setup::new("paiddisagrees");
        let o = s.paid("B_PD");
        let synced = s.sync_pay(&o, TradeState::Closed, T0 + 1);
        assert_eq!(
            synced,
            Synced {
                status: "success".into(),
                adjust: false
            }
        );
        let why = s.reload(&o).attention.expect("flagged");
        assert!(why.contains("closed"), "{why}");
    }

    #[test]
    fn a_refund_sync_flags_a_final_refund_only_when_the_channel_disagrees() {
        let s = Setup::new("finalrefund");
        let success = || RefundAnswer::Success {
            out_refund_no: None,
            finish_time: None,
        };
        let closed = || RefundAnswer::Closed {
            out_refund_no: None,
        };
        for (biz, send, query, word, flagged) in [
            ("B_SS", success(), success(), "success", false),
            ("B_SC", success(), closed(), "closed", true),
            ("B_CC", closed(), closed(), "closed", false),
            ("B_CS", closed(), success(), "success", true),
            (
                "B_FN",
                RefundAnswer::Refused("NO".into()),
                RefundAnswer::NotFound,
                "not found",
                false,
            ),
            (
                "B_FS",
                RefundAnswer::Refused("NO".into()),
                success(),
                "success",
                true,
            ),
            (
                "B_FR",
                RefundAnswer::Refused("NO".into()),
                RefundAnswer::Refused("NO".into()),
                "refused",
                false,
            ),
        ] {
            let refund = s.refund(biz, send);
            let before = s.store.order_by_no(&refund.order_no).unwrap().unwrap();
            assert_eq!(before.attention, None, "{biz}: not flagged before the sync");
            s.channel.queries.lock().unwrap().push_back(query);
            let synced = sync_refund(&s.refunds(), &refund, None, T0 + 1).unwrap();
            assert_eq!(
                synced,
                Synced {
                    status: refund.status.as_str().into(),
                    adjust: false
                },
                "{biz}"
            );
            assert_eq!(s.last_record(), (Some(word.to_string()), false), "{biz}");
            let after = s.store.order_by_no(&refund.order_no).unwrap().unwrap();
            assert_eq!(
                after.attention.is_some(),
                flagged,
                "{biz}: {:?}",
                after.attention
            );
        }
    }
}
