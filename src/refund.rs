//! The refund of a paid order, shared by the API, the console, the sweeper and the syncs
//! (refund-sync.md §3, §7).
//!
//! A refund is created `progress` in one transaction that checks and reserves its amount; then
//! its channel is asked, outside any transaction, and the answer applied with a conditional
//! update (`Store::apply_refund`). An answer that does not settle it (processing, unknown, a
//! refund that waits out a channel's spacing rule) leaves it `progress` with a time to look
//! again; `settle` looks (the sweeper, start-up, a sync): it asks the channel how the refund
//! stands, sends it again when the channel never received it, and applies the answer. A refusal
//! after a send whose outcome was unknown counts only once a query shows nothing was refunded.

use crate::channel::{Channel, Channels};
use crate::domain::{OrderKey, PayStatus, Refund, RefundAnswer, RefundStatus};
use crate::error::{Error, MSG_REFUND_NO_EXISTS};
use crate::inflight::InFlight;
use crate::store::{CreatedRefund, NewRefund, ReplyMemo, SendSlot, Store};
use crate::wire::RefundInput;

const MINUTE: i64 = 60_000;

/// Where refunds go: the store, the channels, and who is talking to a channel right now.
pub struct Refunds<'a> {
    pub store: &'a Store,
    pub channels: &'a Channels,
    pub busy: &'a InFlight,
}

/// Who asks for a refund, for its record.
#[derive(Debug, Clone, Default)]
pub struct Asker {
    pub client_ip: Option<String>,
    pub req_time: Option<i64>,
}

impl Refunds<'_> {
    fn channel(&self, name: &str) -> Result<&dyn Channel, Error> {
        self.channels
            .get(name)
            .ok_or_else(|| Error::Unsupported(name.to_string()))
    }

    /// `POST /unipay/refund` for `app_id` (and the console's refund): a new refund, or the
    /// answer to a repeated `bizRefundNo` (§3.4). `memo` remembers a nonce'd request's reply
    /// with the change that answers it.
    pub fn refund(
        &self,
        app_id: &str,
        input: RefundInput,
        asker: Asker,
        now: i64,
        memo: Option<&ReplyMemo>,
    ) -> Result<Refund, Error> {
        let key = crate::domain::RefundKey::BizRefundNo(input.biz_refund_no.clone());
        if let Some(existing) = self.store.find_refund(app_id, &key)? {
            return self.repeat(existing, &input, asker, now, memo);
        }
        let order = self
            .store
            .find_order(app_id, &input.order)?
            .ok_or(Error::OrderNotFound)?;
        let first_check = match order.channel.as_deref() {
            Some(name) => {
                let channel = self.channel(name)?;
                channel.check_refund(app_id)?;
                channel.refund_spacing().1
            }
            // An order never handed to a channel was never paid: the status check says so.
            None if order.status != PayStatus::Success => 0,
            // Paid without a channel cannot happen; it would have nowhere to send a refund.
            None => return Err(Error::Unsupported("none".into())),
        };
        let new = NewRefund {
            biz_refund_no: input.biz_refund_no.clone(),
            amount: input.amount,
            reason: input.reason.clone(),
            attach: input.attach.clone(),
            notify_url: input.notify_url.clone(),
            extra_param: input.extra_param.clone(),
            client_ip: asker.client_ip.clone(),
            req_time: asker.req_time,
            // The request sends it itself; the sweeper looks only if that went wrong.
            first_check_at: now + first_check.max(MINUTE),
            now,
        };
        match self.store.create_refund(order.id, new)? {
            CreatedRefund::Created(refund) => self.send(refund, now, memo),
            // A twin of this request created it meanwhile.
            CreatedRefund::Existing(existing) => self.repeat(existing, &input, asker, now, memo),
        }
    }

    /// A repeated `bizRefundNo`: the same refund again, or a retry of a failed one.
    fn repeat(
        &self,
        existing: Refund,
        input: &RefundInput,
        asker: Asker,
        now: i64,
        memo: Option<&ReplyMemo>,
    ) -> Result<Refund, Error> {
        let same_order = match &input.order {
            OrderKey::OrderNo(n) => *n == existing.order_no,
            OrderKey::BizOrderNo(b) => *b == existing.biz_order_no,
            OrderKey::OutOrderNo(o) => existing.out_order_no.as_deref() == Some(o.as_str()),
        };
        if !same_order || input.amount != existing.amount {
            return Err(Error::Validation(MSG_REFUND_NO_EXISTS.into()));
        }
        if existing.status != RefundStatus::Fail {
            return Ok(existing);
        }
        let channel = self.channel(&existing.channel)?;
        channel.check_refund(&existing.app_id)?;
        let update = NewRefund {
            biz_refund_no: existing.biz_refund_no.clone(),
            amount: existing.amount,
            reason: None,
            attach: input.attach.clone(),
            notify_url: input.notify_url.clone(),
            extra_param: input.extra_param.clone(),
            client_ip: asker.client_ip,
            req_time: asker.req_time,
            first_check_at: now + channel.refund_spacing().1.max(MINUTE),
            now,
        };
        match self.store.retry_refund(existing.id, update)? {
            Some(refund) => self.send(refund, now, memo),
            // No longer `fail`: a twin retried it meanwhile.
            None => self
                .store
                .refund_by_no(&existing.refund_no)?
                .ok_or(Error::OrderNotFound),
        }
    }

    /// Sends a `progress` refund to its channel and applies the answer.
    fn send(&self, refund: Refund, now: i64, memo: Option<&ReplyMemo>) -> Result<Refund, Error> {
        let reply = memo.map(|m| m.refund_memo(|r| Ok(Some(crate::wire::refund_data(r)))));
        let key = ("refund".to_string(), refund.refund_no.clone());
        let Some(_claim) = self.busy.try_claim(key) else {
            // Another send or check of it is at the channel: it answers for both.
            return self.keep(refund, None, now, reply);
        };
        self.send_claimed(refund, now, reply)
    }

    /// `send`, with the refund's key already claimed.
    fn send_claimed(
        &self,
        refund: Refund,
        now: i64,
        reply: Option<crate::store::RefundMemo>,
    ) -> Result<Refund, Error> {
        let order = self
            .store
            .order_by_no(&refund.order_no)?
            .ok_or(Error::OrderNotFound)?;
        let channel = self.channel(&refund.channel)?;
        let (spacing, first_check) = channel.refund_spacing();
        let sent = match self.store.reserve_refund_send(refund.id, spacing, now)? {
            SendSlot::Reserved(sent) => sent,
            // The channel's spacing rule: the sweeper sends it when due.
            SendSlot::Wait(due) => return self.keep(refund, Some(due), now, reply),
            // Settled meanwhile (a notification, the sandbox's settle): nothing to send.
            SendSlot::NotProgress(now_is) => return self.keep(now_is, None, now, reply),
        };
        let mut answer = channel.refund(&order, &sent);
        if matches!(answer, RefundAnswer::Refused(_)) && sent.unknown_sends > 0 {
            // An earlier send may have gone through: the money goes back only if the channel
            // has not refunded it (§7 step 4).
            answer = match channel.query_refund(&order, &sent) {
                RefundAnswer::NotFound => answer,
                RefundAnswer::Refused(why) => RefundAnswer::Unknown(why),
                known => known,
            };
        }
        let next = (now + first_check).max(sent.next_check(now));
        let (after, _) = self
            .store
            .apply_refund(sent.id, answer, true, next, now, reply)?;
        Ok(after)
    }

    /// Leaves a refund `progress`, to be looked at `at` (or on the usual schedule).
    fn keep(
        &self,
        refund: Refund,
        at: Option<i64>,
        now: i64,
        reply: Option<crate::store::RefundMemo>,
    ) -> Result<Refund, Error> {
        let next = at.unwrap_or_else(|| refund.next_check(now));
        let answer = RefundAnswer::Processing {
            out_refund_no: None,
        };
        Ok(self
            .store
            .apply_refund(refund.id, answer, false, next, now, reply)?
            .0)
    }

    /// Settles a `progress` refund whose outcome is not known (§7): asks the channel, sends it
    /// again when the channel never received it, applies the answer. Returns the refund as it
    /// now is and whether its status changed.
    pub fn settle(&self, refund: &Refund, now: i64) -> Result<(Refund, bool), Error> {
        if refund.status != RefundStatus::Progress {
            return Ok((refund.clone(), false));
        }
        let key = ("refund".to_string(), refund.refund_no.clone());
        let Some(_claim) = self.busy.try_claim(key) else {
            return Ok((refund.clone(), false));
        };
        // The copy given may be old (a due list, a sync's read): what it is now decides.
        let refund = &self
            .store
            .refund_by_no(&refund.refund_no)?
            .ok_or(Error::RefundNotFound(crate::error::MSG_REFUND_NOT_FOUND))?;
        if refund.status != RefundStatus::Progress {
            return Ok((refund.clone(), false));
        }
        let order = self
            .store
            .order_by_no(&refund.order_no)?
            .ok_or(Error::OrderNotFound)?;
        let answer = self.channel(&refund.channel)?.query_refund(&order, refund);
        self.settle_with(refund, answer, now)
    }

    /// Applies a query's `answer` to a `progress` refund whose key the caller holds (§7).
    pub fn settle_with(
        &self,
        refund: &Refund,
        answer: RefundAnswer,
        now: i64,
    ) -> Result<(Refund, bool), Error> {
        let channel = self.channel(&refund.channel)?;
        if now - refund.created_at > 24 * 60 * MINUTE {
            let why = format!("退款{}超过一天仍未完成", refund.refund_no);
            self.store.flag_attention(refund.order_id, why, now)?;
        }
        match answer {
            RefundAnswer::NotFound => {
                // Never received (or refused): the same refund number again, at most once.
                let after = self.send_claimed(refund.clone(), now, None)?;
                let changed = after.status != RefundStatus::Progress;
                Ok((after, changed))
            }
            RefundAnswer::Refused(why) => self.store.apply_refund(
                refund.id,
                RefundAnswer::Unknown(why),
                false,
                refund.next_check(now),
                now,
                None,
            ),
            answer => {
                let (_, first_check) = channel.refund_spacing();
                let next = refund
                    .next_check(now)
                    .max(refund.last_send_at.unwrap_or(0) + first_check);
                self.store
                    .apply_refund(refund.id, answer, false, next, now, None)
            }
        }
    }

    /// Settles every `progress` refund that is due at `now`, while `keep_going` says so;
    /// returns how many changed.
    pub fn settle_due(&self, now: i64, keep_going: &dyn Fn() -> bool) -> usize {
        let due = match self.store.due_refunds(now, 200) {
            Ok(d) => d,
            Err(e) => {
                log::error!("refunds: cannot read the due ones: {e}");
                return 0;
            }
        };
        let mut changed = 0;
        for refund in due {
            if !keep_going() {
                break;
            }
            // Not sooner after a send than the channel advises (a start-up makes all due).
            let first_check = self
                .channels
                .get(&refund.channel)
                .map_or(0, |c| c.refund_spacing().1);
            if let Some(last) = refund
                .last_send_at
                .filter(|l| now >= *l && now < l + first_check)
            {
                if let Err(e) = self.store.refund_check_at(refund.id, last + first_check) {
                    log::warn!("refund {}: {e}", refund.refund_no);
                }
                continue;
            }
            match self.settle(&refund, now) {
                Ok((after, true)) => {
                    log::info!(
                        "refund {} settled: {}",
                        after.refund_no,
                        after.status.as_str()
                    );
                    changed += 1;
                }
                Ok(_) => {}
                Err(e) => log::warn!("refund {}: cannot settle it now: {e}", refund.refund_no),
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::channel::{PayExtra, PayStart, TradeState};
    use crate::domain::{Amount, ChannelCloseOutcome, CloseType, Order};

    use crate::store::Inserted;

    const T0: i64 = 1_780_000_000_000;

    /// What the channel answers, in order, and what it saw.
    #[derive(Default)]
    struct Script {
        sends: VecDeque<RefundAnswer>,
        queries: VecDeque<RefundAnswer>,
        /// `send` or `query`, in the order they reached the channel.
        calls: Vec<&'static str>,
        /// The refund's stored `next_check_at` when each send reached the channel: what a
        /// crash right then would leave for the sweeper.
        stored_next_check: Vec<Option<i64>>,
    }

    /// A channel named `scripted` that refunds as its script says.
    struct Scripted {
        store: Arc<Store>,
        spacing: (i64, i64),
        script: Mutex<Script>,
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
            Ok(TradeState::Open)
        }
        fn check_refund(&self, _: &str) -> Result<(), Error> {
            Ok(())
        }
        fn refund(&self, _: &Order, refund: &Refund) -> RefundAnswer {
            let stored = self.store.refund_by_no(&refund.refund_no).unwrap().unwrap();
            let mut s = self.script.lock().unwrap();
            s.calls.push("send");
            s.stored_next_check.push(stored.next_check_at);
            s.sends.pop_front().unwrap_or(RefundAnswer::Processing {
                out_refund_no: None,
            })
        }
        fn query_refund(&self, _: &Order, _: &Refund) -> RefundAnswer {
            let mut s = self.script.lock().unwrap();
            s.calls.push("query");
            s.queries
                .pop_front()
                .unwrap_or(RefundAnswer::Unknown("nothing scripted".into()))
        }
        fn refund_spacing(&self) -> (i64, i64) {
            self.spacing
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
        fn new(tag: &str, spacing: (i64, i64)) -> Setup {
            let dir =
                std::env::temp_dir().join(format!("unipay-refund-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("r.db");
            let store = Arc::new(crate::store::testkit::store_with_app(&path, T0));
            let channel = Arc::new(Scripted {
                store: store.clone(),
                spacing,
                script: Mutex::default(),
            });
            let channels = Channels::new(vec![channel.clone()]);
            Setup {
                store,
                channel,
                channels,
                busy: InFlight::default(),
                dir,
            }
        }

        fn refunds(&self) -> Refunds<'_> {
            Refunds {
                store: &self.store,
                channels: &self.channels,
                busy: &self.busy,
            }
        }

        fn script(&self) -> std::sync::MutexGuard<'_, Script> {
            self.channel.script.lock().unwrap()
        }

        /// An order of `channel` in `status`; a `success` one is paid as the channel's trade
        /// `T_<biz>` (its outOrderNo).
        fn order(&self, biz: &str, channel: Option<&str>, status: PayStatus) -> Order {
            let new = crate::store::testkit::new_order(
                biz,
                channel,
                if channel.is_some() {
                    PayStatus::Progress
                } else {
                    status
                },
                100,
                T0 + 3_600_000,
                T0,
            );
            let Inserted::Created(order) = self.store.insert_order(new, None).unwrap() else {
                panic!("{biz} exists");
            };
            if channel.is_none() || status != PayStatus::Success {
                return order;
            }
            let trade = format!("T_{biz}");
            self.store.apply_payment(order.id, trade, T0, T0).unwrap();
            self.store.order_by_no(&order.order_no).unwrap().unwrap()
        }

        fn paid(&self, biz: &str) -> Order {
            self.order(biz, Some("scripted"), PayStatus::Success)
        }

        fn refund(&self, order: OrderKey, biz_refund_no: &str, now: i64) -> Result<Refund, Error> {
            let input = RefundInput {
                order,
                biz_refund_no: biz_refund_no.into(),
                amount: Amount(40),
                reason: None,
                attach: None,
                notify_url: None,
                extra_param: None,
            };
            self.refunds()
                .refund("A", input, Asker::default(), now, None)
        }
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_paid_order_without_a_channel_cannot_be_refunded_and_nothing_is_written() {
        let s = Setup::new("nochannel", (0, 0));
        let order = s.order("B_NC", None, PayStatus::Success);
        let err = s
            .refund(OrderKey::BizOrderNo("B_NC".into()), "BR_NC", T0)
            .unwrap_err();
        assert_eq!(err.code(), 20030, "{err:?}");
        assert_eq!(err.message(), "不支持的能力: none");
        assert!(s.store.refunds_of_order(order.id).unwrap().is_empty());
    }

    #[test]
    fn a_refund_on_its_way_to_the_channel_is_due_a_minute_later_also_when_retried() {
        let s = Setup::new("firstcheck", (0, 0));
        s.paid("B_FC");
        s.script()
            .sends
            .push_back(RefundAnswer::Refused("NO".into()));
        let failed = s
            .refund(OrderKey::BizOrderNo("B_FC".into()), "BR_FC", T0)
            .unwrap();
        assert_eq!(failed.status, RefundStatus::Fail);
        // The same bizRefundNo again retries the failed refund.
        let t1 = T0 + 7 * MINUTE;
        let retried = s
            .refund(OrderKey::BizOrderNo("B_FC".into()), "BR_FC", t1)
            .unwrap();
        assert_eq!(retried.status, RefundStatus::Progress);
        assert_eq!(
            s.script().stored_next_check,
            [Some(T0 + MINUTE), Some(t1 + MINUTE)]
        );
    }

    #[test]
    fn a_repeat_naming_the_order_by_its_out_order_no_is_the_same_refund() {
        let s = Setup::new("outorderno", (0, 0));
        s.paid("B_OUT");
        let key = || OrderKey::OutOrderNo("T_B_OUT".into());
        let first = s.refund(key(), "BR_OUT", T0).unwrap();
        let again = s.refund(key(), "BR_OUT", T0 + 1).unwrap();
        assert_eq!(again.refund_no, first.refund_no);
        assert_eq!(s.script().calls, ["send"], "a repeat is not sent again");
        let other = s.refund(OrderKey::OutOrderNo("T_OTHER".into()), "BR_OUT", T0 + 2);
        assert_eq!(other.unwrap_err().code(), 10506);
    }

    #[test]
    fn a_refusal_counts_at_once_after_known_sends_only() {
        let s = Setup::new("refusal", (0, 0));
        s.paid("B_RF");
        s.script()
            .sends
            .push_back(RefundAnswer::Refused("NO".into()));
        // A query would say it was refunded: it must not be asked.
        s.script().queries.push_back(RefundAnswer::Success {
            out_refund_no: None,
            finish_time: None,
        });
        let r = s
            .refund(OrderKey::BizOrderNo("B_RF".into()), "BR_RF", T0)
            .unwrap();
        assert_eq!(r.status, RefundStatus::Fail);
        assert_eq!(s.script().calls, ["send"]);
    }

    #[test]
    fn a_refusal_after_a_send_of_unknown_outcome_asks_the_channel_first() {
        let s = Setup::new("unknown", (0, 0));
        s.paid("B_UK");
        {
            let mut script = s.script();
            script
                .sends
                .push_back(RefundAnswer::Unknown("timeout".into()));
            script
                .sends
                .push_back(RefundAnswer::Refused("DUPLICATE".into()));
            // The sweeper's query: never received; then, after the refusal: it was refunded.
            script.queries.push_back(RefundAnswer::NotFound);
            script.queries.push_back(RefundAnswer::Success {
                out_refund_no: Some("C1".into()),
                finish_time: Some(T0 + 2 * MINUTE),
            });
        }
        let r = s
            .refund(OrderKey::BizOrderNo("B_UK".into()), "BR_UK", T0)
            .unwrap();
        assert_eq!((r.status, r.unknown_sends), (RefundStatus::Progress, 1));
        let (after, changed) = s.refunds().settle(&r, T0 + 2 * MINUTE).unwrap();
        assert!(changed);
        assert_eq!(after.status, RefundStatus::Success);
        assert_eq!(s.script().calls, ["send", "query", "send", "query"]);
    }

    #[test]
    fn after_a_send_the_next_look_waits_for_the_channels_advice() {
        let s = Setup::new("advice", (0, 30 * MINUTE));
        s.paid("B_ADV");
        let r = s
            .refund(OrderKey::BizOrderNo("B_ADV".into()), "BR_ADV", T0)
            .unwrap();
        assert_eq!(r.status, RefundStatus::Progress);
        assert_eq!(r.next_check_at, Some(T0 + 30 * MINUTE));
    }

    #[test]
    fn a_refund_unsettled_after_a_day_flags_its_order() {
        let s = Setup::new("day", (0, 0));
        let order = s.paid("B_DAY");
        let r = s
            .refund(OrderKey::BizOrderNo("B_DAY".into()), "BR_DAY", T0)
            .unwrap();
        let processing = || RefundAnswer::Processing {
            out_refund_no: None,
        };
        let attention = || {
            s.store
                .order_by_no(&order.order_no)
                .unwrap()
                .unwrap()
                .attention
        };
        s.refunds()
            .settle_with(&r, processing(), T0 + 24 * 60 * MINUTE)
            .unwrap();
        assert_eq!(attention(), None, "a day old is not yet overdue");
        s.refunds()
            .settle_with(&r, processing(), T0 + 24 * 60 * MINUTE + 1)
            .unwrap();
        let why = attention().expect("flagged");
        assert!(why.contains(&r.refund_no), "{why}");
    }

    #[test]
    fn a_look_after_a_send_waits_for_the_channels_advice() {
        let s = Setup::new("lookadvice", (0, 30 * MINUTE));
        s.paid("B_LA");
        let r = s
            .refund(OrderKey::BizOrderNo("B_LA".into()), "BR_LA", T0)
            .unwrap();
        assert_eq!(r.last_send_at, Some(T0));
        let processing = RefundAnswer::Processing {
            out_refund_no: None,
        };
        let (after, changed) = s
            .refunds()
            .settle_with(&r, processing, T0 + MINUTE)
            .unwrap();
        assert!(!changed);
        assert_eq!(after.next_check_at, Some(T0 + 30 * MINUTE));
    }

    #[test]
    fn the_sweeper_does_not_ask_sooner_after_a_send_than_the_channel_advises() {
        let s = Setup::new("sweepadvice", (0, 30 * MINUTE));
        s.paid("B_SA");
        let r = s
            .refund(OrderKey::BizOrderNo("B_SA".into()), "BR_SA", T0)
            .unwrap();
        let stored = |s: &Setup| s.store.refund_by_no(&r.refund_no).unwrap().unwrap();
        // A start-up makes every progress refund due at once.
        let t1 = T0 + 10 * MINUTE;
        s.store.all_refunds_due(t1).unwrap();
        assert_eq!(s.refunds().settle_due(t1, &|| true), 0);
        assert_eq!(s.script().calls, ["send"], "not asked yet");
        assert_eq!(stored(&s).next_check_at, Some(T0 + 30 * MINUTE));
        // When the advice is over, it is asked.
        let t2 = T0 + 30 * MINUTE;
        s.refunds().settle_due(t2, &|| true);
        assert_eq!(s.script().calls, ["send", "query"]);
        // A clock that went back to before the send does not hold it up either.
        s.store.all_refunds_due(T0 - MINUTE).unwrap();
        s.refunds().settle_due(T0 - MINUTE, &|| true);
        assert_eq!(s.script().calls, ["send", "query", "query"]);
    }

    /// Kills `store/refunds.rs` `apply_refund`: `from_send && Unknown` with `||` (a send
    /// answered "processing" would count as a send of unknown outcome), and
    /// `refunds_of_order` answering nothing.
    #[test]
    fn a_send_answered_processing_is_not_a_send_of_unknown_outcome() {
        let s = Setup::new("known", (0, 0));
        let order = s.paid("B_KN");
        let r = s
            .refund(OrderKey::BizOrderNo("B_KN".into()), "BR_KN", T0)
            .unwrap();
        assert_eq!((r.status, r.unknown_sends), (RefundStatus::Progress, 0));
        let listed = s.store.refunds_of_order(order.id).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].refund_no, r.refund_no);
        // A look whose answer is unknown is not a send either.
        let (after, _) = s
            .refunds()
            .settle_with(&r, RefundAnswer::Unknown("timeout".into()), T0 + MINUTE)
            .unwrap();
        assert_eq!(after.unknown_sends, 0);
    }

    /// Kills `store/refunds.rs` `apply_refund`: the arm that flags an order when the channel
    /// calls a successful refund closed, and the arm that flags it when the channel asks for
    /// an operator (`Attention`).
    #[test]
    fn a_channel_disagreeing_with_a_finished_refund_or_asking_for_an_operator_flags_its_order() {
        let s = Setup::new("disagree", (0, 0));
        let attention = |order: &Order| {
            s.store
                .order_by_no(&order.order_no)
                .unwrap()
                .unwrap()
                .attention
        };
        let order = s.paid("B_DIS");
        s.script().sends.push_back(RefundAnswer::Success {
            out_refund_no: Some("C_DIS".into()),
            finish_time: Some(T0),
        });
        let done = s
            .refund(OrderKey::BizOrderNo("B_DIS".into()), "BR_DIS", T0)
            .unwrap();
        assert_eq!(done.status, RefundStatus::Success);
        assert_eq!(attention(&order), None);
        let closed = RefundAnswer::Closed {
            out_refund_no: None,
        };
        let (after, changed) = s.refunds().settle_with(&done, closed, T0 + MINUTE).unwrap();
        assert!(!changed);
        assert_eq!(
            after.status,
            RefundStatus::Success,
            "the money stays as it is"
        );
        let why = attention(&order).expect("flagged");
        assert!(
            why.contains(&done.refund_no) && why.contains("已关闭"),
            "{why}"
        );

        let other = s.paid("B_ATT");
        let r = s
            .refund(OrderKey::BizOrderNo("B_ATT".into()), "BR_ATT", T0)
            .unwrap();
        assert_eq!(attention(&other), None);
        let ask = RefundAnswer::Attention("CHANNEL SAYS LOOK".into());
        s.refunds().settle_with(&r, ask, T0 + MINUTE).unwrap();
        let why = attention(&other).expect("flagged");
        assert!(why.contains("CHANNEL SAYS LOOK"), "{why}");
    }

    /// Kills `store/refunds.rs` `refunds_due_now` doing nothing: a channel's word about an
    /// order makes its `progress` refunds due at once, and leaves finished ones alone.
    #[test]
    fn a_channel_notice_makes_the_orders_progress_refunds_due_now() {
        let s = Setup::new("duenow", (0, 30 * MINUTE));
        let order = s.paid("B_DN");
        let r = s
            .refund(OrderKey::BizOrderNo("B_DN".into()), "BR_DN", T0)
            .unwrap();
        assert_eq!(r.next_check_at, Some(T0 + 30 * MINUTE));
        s.store.refunds_due_now(order.id, T0 + MINUTE).unwrap();
        let stored = s.store.refund_by_no(&r.refund_no).unwrap().unwrap();
        assert_eq!(stored.next_check_at, Some(T0 + MINUTE));
        assert_eq!(s.store.due_refunds(T0 + MINUTE, 10).unwrap().len(), 1);
    }

    /// Kills `store/refunds.rs` `reserve_refund_send`: the spacing's `last + spacing` with `-`
    /// or `*`, and `now < due` with `<=` or `==`. Two refunds of one order: the second waits
    /// until exactly three seconds after the first send, and goes at that millisecond.
    #[test]
    fn a_second_refund_of_an_order_is_sent_exactly_when_the_spacing_is_over() {
        let s = Setup::new("spacing", (3_000, 0));
        s.paid("B_SP");
        let key = || OrderKey::BizOrderNo("B_SP".into());
        s.refund(key(), "BR_SP1", T0).unwrap();
        let second = s.refund(key(), "BR_SP2", T0 + 1_000).unwrap();
        assert_eq!(second.status, RefundStatus::Progress);
        assert_eq!(
            second.next_check_at,
            Some(T0 + 3_000),
            "due when the spacing is over"
        );
        assert_eq!(s.script().calls, ["send"], "not sent before");
        // The sweeper's look: the channel never received it, so it is sent when it may be.
        s.script().queries.push_back(RefundAnswer::NotFound);
        s.refunds().settle(&second, T0 + 2_999).unwrap();
        assert_eq!(
            s.script().calls,
            ["send", "query"],
            "not a millisecond early"
        );
        s.script().queries.push_back(RefundAnswer::NotFound);
        s.refunds().settle(&second, T0 + 3_000).unwrap();
        assert_eq!(
            s.script().calls,
            ["send", "query", "query", "send"],
            "sent at the millisecond it is due"
        );
    }
}
