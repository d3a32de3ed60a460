//! Unit-test helpers for the modules above the store (close, expiry, refund, sync): a fresh
//! store with one app, and new orders of that app.

use std::path::Path;

use super::{NewOrder, Offline, Store};
use crate::domain::{Amount, App, PayStatus};
use crate::sign::SignType;
use crate::sys::UtcOffset;

/// A store on a fresh database at `path` with one enabled app, `A` of merchant `M` (md5,
/// secret `s`, no request-time window, 30-minute orders), created at `now`.
pub fn store_with_app(path: &Path, now: i64) -> Store {
    let app = App {
        app_id: "A".into(),
        mch_no: "M".into(),
        sign_type: SignType::Md5,
        secret: "s".into(),
        req_sign: true,
        req_timeout_secs: 0,
        notify_url: None,
        order_timeout_min: 30,
        limit_amount: None,
        enabled: true,
        mch_enabled: true,
    };
    let (mut db, _) = Offline::open(path).unwrap();
    db.create_app(&app, now).unwrap();
    drop(db);
    Store::open(path, UtcOffset::CST).unwrap().0
}

/// A new order `biz` of app `A`, titled `t`, with nothing optional but its `channel`.
pub fn new_order(
    biz: &str,
    channel: Option<&str>,
    status: PayStatus,
    amount: i64,
    expired_time: i64,
    now: i64,
) -> NewOrder {
    NewOrder {
        mch_no: "M".into(),
        app_id: "A".into(),
        biz_order_no: biz.into(),
        title: "t".into(),
        description: None,
        allocation: None,
        auto_allocation: None,
        channel: channel.map(str::to_string),
        method: None,
        other_method: None,
        limit_pay: None,
        amount: Amount(amount),
        status,
        expired_time,
        attach: None,
        notify_url: None,
        return_url: None,
        extra_param: None,
        client_ip: None,
        now,
    }
}
