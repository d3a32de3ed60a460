//! Races of refunds that the endpoints alone cannot time: a sweeper's or a sync's old copy of a
//! refund that another path settled meanwhile, a channel that says "refunded" about a refund
//! unipay holds as failed, and two refunds of one Alipay order sent at once (Alipay wants them
//! 3 s apart).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;
use unipay::channel::{Channel, Channels, PayExtra, PayStart, TradeState};
use unipay::domain::{
    ChannelCloseOutcome, CloseType, Order, Refund, RefundAnswer, RefundKey, RefundStatus,
};
use unipay::error::Error;
use unipay::inflight::InFlight;
use unipay::refund::Refunds;
use unipay::store::Store;
use unipay::sys::UtcOffset;

use crate::alipay::{qr_order, setup};
use crate::helpers::*;

/// A sandbox stand-in: a query finds nothing, a send succeeds; counts the sends.
struct Counting(Arc<AtomicUsize>);

impl Channel for Counting {
    fn name(&self) -> &'static str {
        "sandbox"
    }
    fn start(&self, _: &Order, _: &PayExtra) -> Result<PayStart, Error> {
        unreachable!()
    }
    fn pay_body(&self, _: &Order) -> Option<String> {
        None
    }
    fn close(&self, _: &Order, _: CloseType) -> Result<ChannelCloseOutcome, Error> {
        unreachable!()
    }
    fn query(&self, _: &Order) -> Result<TradeState, Error> {
        unreachable!()
    }
    fn check_refund(&self, _: &str) -> Result<(), Error> {
        Ok(())
    }
    fn refund(&self, _: &Order, _: &Refund) -> RefundAnswer {
        self.0.fetch_add(1, Ordering::SeqCst);
        RefundAnswer::Success {
            out_refund_no: None,
            finish_time: None,
        }
    }
    fn query_refund(&self, _: &Order, _: &Refund) -> RefundAnswer {
        RefundAnswer::NotFound
    }
}

#[test]
fn an_old_progress_copy_never_sends_a_failed_refund_again() {
    let mut srv = TestServer::start();
    let app = srv.app("A_STALE");
    let data = srv.pay_with(&app, "O1", json!({"amount": "10.00"}));
    srv.sandbox_pay(data["orderNo"].as_str().unwrap())
        .expect(0, "success");
    let r = srv.post_signed(
        &app,
        "/unipay/refund",
        json!({"bizOrderNo": "O1", "bizRefundNo": "R1",
        "amount": "2.00", "extraParam": json!({"sandboxRefund": "lost"}).to_string()}),
    );
    assert_eq!(r.data()["status"], "progress");
    srv.kill9();
    let (store, _) = Store::open(&srv.db, UtcOffset::CST).unwrap();
    let stale = store
        .find_refund("A_STALE", &RefundKey::BizRefundNo("R1".into()))
        .unwrap()
        .unwrap();
    assert_eq!(stale.status, RefundStatus::Progress);
    // Meanwhile another path settles it as refused (a send, a sync): fail, money back.
    let now = now_ms();
    let (failed, changed) = store
        .apply_refund(
            stale.id,
            RefundAnswer::Refused("refused".into()),
            true,
            now,
            now,
            None,
        )
        .unwrap();
    assert!(changed && failed.status == RefundStatus::Fail);
    // The sweeper (or a sync) still holds its progress copy read before that.
    let sends = Arc::new(AtomicUsize::new(0));
    let channels = Channels::new(vec![Arc::new(Counting(sends.clone()))]);
    let busy = InFlight::default();
    let refunds = Refunds {
        store: &store,
        channels: &channels,
        busy: &busy,
    };
    let (after, changed) = refunds.settle(&stale, now + 1).unwrap();
    assert_eq!((after.status, changed), (RefundStatus::Fail, false));
    assert_eq!(
        sends.load(Ordering::SeqCst),
        0,
        "a fail refund was sent to the channel again"
    );
    // A channel that reports a failed refund as refunded: the money stays as it is, and the
    // order waits for an operator.
    let order = store.order_by_no(&failed.order_no).unwrap().unwrap();
    assert!(order.attention.is_none());
    let answer = RefundAnswer::Success {
        out_refund_no: None,
        finish_time: None,
    };
    let (after, changed) = store
        .apply_refund(stale.id, answer, false, now, now, None)
        .unwrap();
    assert_eq!((after.status, changed), (RefundStatus::Fail, false));
    let order = store.order_by_no(&failed.order_no).unwrap().unwrap();
    assert!(order.attention.is_some(), "the disagreement is flagged");
    assert_eq!(order.refundable_balance.0, 1000, "the money did not move");
}

#[test]
fn two_refunds_of_one_alipay_order_at_once_are_sent_three_seconds_apart() {
    let (srv, app, fake) = setup(&[]);
    let mut violations = 0;
    for i in 0..5 {
        let biz = format!("SP{i}");
        let (order_no, _) = qr_order(&srv, &app, &biz);
        fake.pay(&order_no);
        srv.post_signed(&app, "/unipay/sync/order/pay", json!({"bizOrderNo": biz}))
            .expect(0, "success");
        std::thread::scope(|s| {
            for k in 0..2 {
                let (srv, app, biz) = (&srv, &app, &biz);
                s.spawn(move || {
                    srv.post_signed(
                        app,
                        "/unipay/refund",
                        json!({"bizOrderNo": biz,
                        "bizRefundNo": format!("{biz}_{k}"), "amount": "1.00"}),
                    )
                    .expect(0, "success");
                });
            }
        });
        violations += fake.refund_spacing_violations(&order_no);
    }
    assert_eq!(
        violations, 0,
        "refunds of one order sent less than 3 s apart"
    );
}
