//! The Alipay channel (`ali_pay`): 支付宝开放平台 OpenAPI over `gateway.do`, RSA2.
//!
//! - pay: `qrcode` → `alipay.trade.precreate` (the QR code's text), `wap` →
//!   `alipay.trade.wap.pay` and `web` → `alipay.trade.page.pay` (a signed GET URL, no call);
//!   `out_trade_no` is unipay's `orderNo`, `time_expire` the order's expiry in UTC+8, so that
//!   Alipay itself refuses a late payment.
//! - close / cancel: `alipay.trade.close` / `alipay.trade.cancel`, mapped as channels.md §A6
//!   says (`close_outcome`); query: `alipay.trade.query` (`trade_state`).
//! - refunds: `alipay.trade.refund` with the refund's `refundNo` as `out_request_no`, and
//!   `alipay.trade.fastpay.refund.query`, mapped as refund-sync.md §9.2 says (`refund`); refunds
//!   of one order 3 s apart, the first query 10 s after a send.
//! - notifications: `POST /callback/ali_pay/{appId}` (`notify`): payments, and the refund
//!   notices Alipay sends through the same notification.
//!
//! Every reply is verified over its raw bytes; one that does not verify is an unknown outcome
//! and changes no order. Settings per app: `settings` (`unipay channel set … ali_pay`).

mod gateway;
mod notify;
pub mod refund;
pub mod settings;
pub mod sign;

use std::sync::Arc;

use serde_json::json;

use self::gateway::Reply;
use self::settings::Settings;
use super::client::Client;
use super::settings::Cache;
use super::{Channel, PayExtra, PayStart, TradeState};
use crate::domain::{ChannelCloseOutcome, CloseType, Order, Refund, RefundAnswer};
use crate::error::{Error, MSG_ALIPAY_REFUND_QUERY_TOO_SOON};
use crate::form;
use crate::http::{Request, Response};
use crate::store::Store;
use crate::sys::{self, Clock, UtcOffset};

/// The channel's name on the DaxPay wire.
pub const NAME: &str = "ali_pay";

/// The pay methods Alipay takes here.
const METHODS: &[&str] = &["qrcode", "wap", "web"];

/// 20021 for an app whose Alipay settings are turned off (DaxPay's words, refund-sync.md §3.6).
pub const MSG_DISABLED: &str = "支付宝支付通道未启用";

/// Most calls of a cancel that Alipay asks to retry (`retry_flag=Y`).
const CANCEL_TRIES: usize = 3;

pub struct AliPay {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    client: Client,
    public_url: String,
    settings: Cache<Settings>,
}

impl AliPay {
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        client: Client,
        public_url: String,
    ) -> AliPay {
        AliPay {
            settings: Cache::new(NAME, store.clone()),
            store,
            clock,
            client,
            public_url,
        }
    }

    /// The app's settings when they are set and enabled (20023 / 20021).
    fn enabled(&self, app_id: &str) -> Result<Arc<Settings>, Error> {
        self.settings.get(app_id).map_err(|e| match e {
            Error::ChannelDisabled(_) => Error::ChannelDisabled(MSG_DISABLED),
            other => other,
        })
    }

    /// Where Alipay sends the payment notifications of an app's orders.
    fn notify_url(&self, app_id: &str) -> String {
        format!(
            "{}/callback/{NAME}/{}",
            self.public_url.trim_end_matches('/'),
            form::encode(app_id)
        )
    }

    fn call(&self, s: &Settings, method: &str, biz: &serde_json::Value) -> Result<Reply, Error> {
        gateway::call(
            &self.client,
            s,
            method,
            &biz.to_string(),
            &[],
            self.clock.now_ms(),
        )
        .map_err(|why| unknown(method, &why))
    }

    /// The business content of a new trade.
    fn trade_biz(order: &Order, product_code: Option<&str>, quit_url: Option<&str>) -> String {
        let mut biz = json!({
            "out_trade_no": order.order_no,
            "total_amount": order.amount.to_yuan_fixed(),
            "subject": order.title,
            "time_expire": sys::format_time(order.expired_time, UtcOffset::CST),
        });
        if let Some(code) = product_code {
            biz["product_code"] = json!(code);
        }
        if let Some(url) = quit_url.filter(|u| !u.is_empty()) {
            biz["quit_url"] = json!(url);
        }
        biz.to_string()
    }

    /// The signed URL of a page method for `order`.
    fn page_url(&self, s: &Settings, order: &Order, quit_url: Option<&str>) -> Option<String> {
        let (method, product_code) = match order.method.as_deref()? {
            "wap" => ("alipay.trade.wap.pay", "QUICK_WAP_WAY"),
            "web" => ("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
            _ => return None,
        };
        let notify_url = self.notify_url(&order.app_id);
        let extra = [
            ("notify_url", notify_url.as_str()),
            ("return_url", order.return_url.as_deref().unwrap_or("")),
        ];
        let biz = AliPay::trade_biz(order, Some(product_code), quit_url);
        Some(gateway::page_url(
            s,
            method,
            &biz,
            &extra,
            self.clock.now_ms(),
        ))
    }

    /// Asks Alipay what the trade is after a close or cancel it refused for the trade's status.
    fn settle_by_query(&self, order: &Order, why: &str) -> Result<ChannelCloseOutcome, Error> {
        match self.query(order)? {
            TradeState::Paid { trade_no, paid_at } => {
                Ok(ChannelCloseOutcome::Paid { trade_no, paid_at })
            }
            TradeState::Closed | TradeState::Revoked | TradeState::Failed => {
                Ok(ChannelCloseOutcome::Closed)
            }
            // Still payable, or unknown to the query although the close saw it: not settled.
            TradeState::Open | TradeState::NotFound => Err(unknown(
                "alipay.trade.query",
                &format!("{why}; the trade is still open"),
            )),
        }
    }
}

/// An answer that settles nothing: the outcome at Alipay is unknown (20080 for the merchant,
/// settled later by a query).
fn unknown(method: &str, why: &str) -> Error {
    Error::CloseFailed(format!("支付宝 {method} 结果未知: {why}"))
}

/// A `10000` whose signature did not verify is not a success; nor is an unsigned failure that
/// would change an order.
fn unverified(method: &str) -> Error {
    unknown(method, "the reply's signature does not verify")
}

impl Channel for AliPay {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check_pay(&self, app_id: &str, method: &str, _: &PayExtra) -> Result<(), Error> {
        self.enabled(app_id)?;
        if !METHODS.contains(&method) {
            return Err(Error::Unsupported(format!("{NAME} {method}")));
        }
        Ok(())
    }

    fn start(&self, order: &Order, extra: &PayExtra) -> Result<PayStart, Error> {
        let s = self.enabled(&order.app_id)?;
        if order.method.as_deref() != Some("qrcode") {
            let pay_body = self
                .page_url(&s, order, extra.quit_url.as_deref())
                .ok_or_else(|| Error::Unsupported(NAME.into()))?;
            return Ok(PayStart {
                pay_body,
                remember: false,
            });
        }
        let method = "alipay.trade.precreate";
        let notify_url = self.notify_url(&order.app_id);
        let biz = AliPay::trade_biz(order, None, None);
        let reply = gateway::call(
            &self.client,
            &s,
            method,
            &biz,
            &[("notify_url", &notify_url)],
            self.clock.now_ms(),
        )
        .map_err(|why| Error::PayFailed(format!("支付宝下单结果未知: {why}")))?;
        if !reply.verified {
            return Err(Error::PayFailed(
                "支付宝下单应答验签失败 (the reply's signature does not verify)".into(),
            ));
        }
        match reply.str("qr_code") {
            Some(qr) if reply.success() => Ok(PayStart {
                pay_body: qr.to_string(),
                remember: true,
            }),
            _ => Err(Error::PayFailed(reply.message())),
        }
    }

    fn pay_body(&self, order: &Order) -> Option<String> {
        match order.method.as_deref() {
            Some("qrcode") => self.store.pay_body(order.id).ok().flatten(),
            _ => {
                let s = self.settings.get_any(&order.app_id).ok()?;
                self.page_url(&s, order, None)
            }
        }
    }

    fn close(&self, order: &Order, close_type: CloseType) -> Result<ChannelCloseOutcome, Error> {
        let s = self.settings.get_any(&order.app_id)?;
        let biz = json!({ "out_trade_no": order.order_no });
        match close_type {
            CloseType::Close => {
                let method = "alipay.trade.close";
                let reply = self.call(&s, method, &biz)?;
                if reply.success() {
                    return Ok(ChannelCloseOutcome::Closed);
                }
                match reply.sub_code() {
                    // Never created (a QR code nobody scanned): nothing can be paid any more
                    // but through `time_expire`, and a late payment still wins.
                    Some("ACQ.TRADE_NOT_EXIST") => Ok(ChannelCloseOutcome::Closed),
                    Some(
                        "ACQ.TRADE_STATUS_ERROR"
                        | "ACQ.REASON_TRADE_STATUS_INVALID"
                        | "ACQ.REASON_ILLEGAL_STATUS",
                    ) => self.settle_by_query(order, &reply.message()),
                    Some("ACQ.SYSTEM_ERROR") | None => match reply.verified {
                        true => Err(unknown(method, &reply.message())),
                        false => Err(unverified(method)),
                    },
                    Some(_) if reply.str("code") == Some("20000") => {
                        Err(unknown(method, &reply.message()))
                    }
                    Some(_) => Ok(ChannelCloseOutcome::Failed(reply.message())),
                }
            }
            CloseType::Cancel => {
                let method = "alipay.trade.cancel";
                for _ in 0..CANCEL_TRIES {
                    let reply = self.call(&s, method, &biz)?;
                    if reply.success() {
                        return Ok(match reply.str("action") {
                            // The trade had been paid: Alipay refunded the payer.
                            Some("refund") => ChannelCloseOutcome::Refunded,
                            // Closed, or no such trade: nothing can be paid any more.
                            _ => ChannelCloseOutcome::Closed,
                        });
                    }
                    if !reply.verified {
                        return Err(unverified(method));
                    }
                    if reply.str("retry_flag") == Some("Y") {
                        continue;
                    }
                    return match reply.sub_code() {
                        Some(
                            "ACQ.TRADE_HAS_FINISHED"
                            | "ACQ.CANCEL_NOT_ALLOWED"
                            | "ACQ.TRADE_STATUS_ERROR"
                            | "ACQ.REASON_TRADE_STATUS_INVALID",
                        ) => self.settle_by_query(order, &reply.message()),
                        Some("ACQ.SYSTEM_ERROR") | None => Err(unknown(method, &reply.message())),
                        Some(_) if reply.str("code") == Some("20000") => {
                            Err(unknown(method, &reply.message()))
                        }
                        Some(_) => Ok(ChannelCloseOutcome::Failed(reply.message())),
                    };
                }
                Err(unknown(method, "Alipay asked to retry, and still did"))
            }
        }
    }

    fn query(&self, order: &Order) -> Result<TradeState, Error> {
        let s = self.settings.get_any(&order.app_id)?;
        let method = "alipay.trade.query";
        let reply = self.call(&s, method, &json!({ "out_trade_no": order.order_no }))?;
        if !reply.verified {
            return Err(unverified(method));
        }
        if !reply.success() {
            return match reply.sub_code() {
                Some("ACQ.TRADE_NOT_EXIST") => Ok(TradeState::NotFound),
                _ => Err(unknown(method, &reply.message())),
            };
        }
        let paid = || TradeState::Paid {
            trade_no: reply.str("trade_no").unwrap_or_default().to_string(),
            paid_at: reply
                .str("send_pay_date")
                .and_then(|t| sys::parse_time(t, UtcOffset::CST))
                .unwrap_or_else(|| self.clock.now_ms()),
        };
        match reply.str("trade_status") {
            Some("WAIT_BUYER_PAY") => Ok(TradeState::Open),
            Some("TRADE_SUCCESS" | "TRADE_FINISHED") => Ok(paid()),
            // Closed after a payment (refunded in full): the money did arrive.
            Some("TRADE_CLOSED") if reply.str("send_pay_date").is_some() => Ok(paid()),
            Some("TRADE_CLOSED") => Ok(TradeState::Closed),
            other => Err(unknown(
                method,
                &format!("unknown trade_status {}", other.unwrap_or("(none)")),
            )),
        }
    }

    fn check_refund(&self, app_id: &str) -> Result<(), Error> {
        self.enabled(app_id).map(|_| ())
    }

    fn refund(&self, order: &Order, refund: &Refund) -> RefundAnswer {
        self.send_refund(order, refund)
    }

    fn query_refund(&self, order: &Order, refund: &Refund) -> RefundAnswer {
        self.query_refund_state(order, refund)
    }

    fn refund_spacing(&self) -> (i64, i64) {
        (refund::SEND_SPACING_MS, refund::QUERY_AFTER_MS)
    }

    fn refund_sync_too_soon(&self, refund: &Refund, now: i64) -> Option<&'static str> {
        let since = now - refund.last_send_at?;
        (0..refund::QUERY_AFTER_MS)
            .contains(&since)
            .then_some(MSG_ALIPAY_REFUND_QUERY_TOO_SOON)
    }

    fn callback(&self, app_id: &str, req: &Request) -> Response {
        notify::handle(self, app_id, req)
    }
}
