//! The WeChat Pay channel (`wechat_pay`): API v3 for a directly connected merchant (直连商户).
//!
//! - pay: `qrcode` → `POST /v3/pay/transactions/native` (`code_url`), `jsapi` → `…/jsapi` (the
//!   signed parameters a page passes to `wx.requestPayment`), `wap` → `…/h5` (`h5_url`);
//!   `out_trade_no` is unipay's `orderNo`, `amount.total` in fen, `time_expire` RFC 3339 in
//!   +08:00.
//! - close: `POST …/out-trade-no/{orderNo}/close`, mapped as channels.md §B6 says; a cancel is
//!   only for 付款码 orders, so `useCancel` on any other order is 20030 before anything happens;
//!   query: `GET …/out-trade-no/{orderNo}?mchid=`.
//! - refund: `POST /v3/refund/domestic/refunds`, query `GET …/refunds/{refundNo}`, a minute
//!   between two sends for one order and before the first query (`refund`).
//! - notifications: `POST /callback/wechat_pay/{appId}` (`notify`): payments and refunds.
//!
//! Every reply is verified with WeChat Pay's public key (a 2xx without a valid signature is
//! forged); one that does not verify is an unknown outcome and changes no order.

mod api;
mod notify;
pub mod refund;
pub mod settings;
pub mod sign;

use std::sync::Arc;

use serde_json::{json, Value};

use self::api::Answer;
use self::settings::Settings;
use super::client::Client;
use super::settings::Cache;
use super::{Channel, PayExtra, PayStart, TradeState};
use crate::domain::{ChannelCloseOutcome, CloseType, Order, Refund, RefundAnswer};
use crate::error::{msg_missing, Error};
use crate::form;
use crate::http::{Request, Response};
use crate::store::Store;
use crate::sys::{self, Clock, Random, UtcOffset};

/// The channel's name on the DaxPay wire.
pub const NAME: &str = "wechat_pay";

/// The pay methods WeChat Pay takes here.
const METHODS: &[&str] = &["qrcode", "jsapi", "wap"];

pub struct WechatPay {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    client: Client,
    public_url: String,
    settings: Cache<Settings>,
}

impl WechatPay {
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        client: Client,
        public_url: String,
    ) -> WechatPay {
        WechatPay {
            settings: Cache::new(NAME, store.clone()),
            store,
            clock,
            random,
            client,
            public_url,
        }
    }

    fn now_secs(&self) -> i64 {
        self.clock.now_ms().div_euclid(1000)
    }

    /// One call; `Err` (no answer: a network failure, a timeout) says why.
    fn call(
        &self,
        s: &Settings,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let nonce = sys::random_alnum(self.random.as_ref(), 32);
        api::call(&self.client, s, method, path, body, &nonce, self.now_secs())
    }

    fn notify_url(&self, app_id: &str) -> String {
        format!(
            "{}/callback/{NAME}/{}",
            self.public_url.trim_end_matches('/'),
            form::encode(app_id)
        )
    }

    /// What the payer gets for a JSAPI prepay id: the signed parameters of
    /// `wx.requestPayment` / `WeixinJSBridge`, as JSON.
    fn jsapi_params(&self, s: &Settings, prepay_id: &str) -> String {
        let timestamp = self.now_secs().to_string();
        let nonce = sys::random_alnum(self.random.as_ref(), 32);
        let package = format!("prepay_id={prepay_id}");
        let pay_sign = sign::pay_sign(&s.private_key, &s.appid, &timestamp, &nonce, &package);
        json!({
            "appId": s.appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": pay_sign,
        })
        .to_string()
    }

    /// After a close WeChat refused: ask what the trade is.
    fn settle_by_query(&self, order: &Order, why: &str) -> Result<ChannelCloseOutcome, Error> {
        match self.query(order)? {
            TradeState::Paid { trade_no, paid_at } => {
                Ok(ChannelCloseOutcome::Paid { trade_no, paid_at })
            }
            TradeState::Closed | TradeState::Revoked | TradeState::Failed => {
                Ok(ChannelCloseOutcome::Closed)
            }
            // Still unpaid: the close did not happen; the merchant may try again later.
            TradeState::Open => Ok(ChannelCloseOutcome::Failed(format!(
                "{why}; 微信支付订单仍未支付 (NOTPAY)"
            ))),
            TradeState::NotFound => Err(unknown("query", "the order is unknown after all")),
        }
    }
}

/// An answer that settles nothing: the outcome at WeChat Pay is unknown.
fn unknown(what: &str, why: &str) -> Error {
    Error::CloseFailed(format!("微信支付 {what} 结果未知: {why}"))
}

impl Channel for WechatPay {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check_pay(&self, app_id: &str, method: &str, extra: &PayExtra) -> Result<(), Error> {
        self.settings.get(app_id)?;
        if !METHODS.contains(&method) {
            return Err(Error::Unsupported(format!("{NAME} {method}")));
        }
        if method == "jsapi" && extra.open_id.is_none() {
            return Err(Error::Validation(msg_missing("用户标识(openId)")));
        }
        if method == "wap" && extra.client_ip.is_none() {
            return Err(Error::Validation(msg_missing("客户端ip(clientIp)")));
        }
        Ok(())
    }

    fn start(&self, order: &Order, extra: &PayExtra) -> Result<PayStart, Error> {
        let s = self.settings.get(&order.app_id)?;
        let (path, field) = match order.method.as_deref() {
            Some("qrcode") => ("/v3/pay/transactions/native", "code_url"),
            Some("jsapi") => ("/v3/pay/transactions/jsapi", "prepay_id"),
            Some("wap") => ("/v3/pay/transactions/h5", "h5_url"),
            _ => return Err(Error::Unsupported(NAME.into())),
        };
        let mut body = json!({
            "appid": s.appid,
            "mchid": s.mchid,
            "description": order.title,
            "out_trade_no": order.order_no,
            "time_expire": sys::format_rfc3339(order.expired_time, UtcOffset::CST),
            "notify_url": self.notify_url(&order.app_id),
            "amount": { "total": order.amount.0, "currency": "CNY" },
        });
        if let Some(attach) = order.attach.as_deref().filter(|a| !a.is_empty()) {
            body["attach"] = json!(attach);
        }
        if let Some(open_id) = &extra.open_id {
            body["payer"] = json!({ "openid": open_id });
        }
        if order.method.as_deref() == Some("wap") {
            body["scene_info"] = json!({
                "payer_client_ip": extra.client_ip.as_deref().unwrap_or_default(),
                "h5_info": { "type": "Wap" },
            });
        }
        let answer = self
            .call(&s, "POST", path, Some(&body))
            .map_err(|why| Error::PayFailed(format!("微信支付下单结果未知: {why}")))?;
        if !answer.verified() {
            return Err(Error::PayFailed(format!(
                "微信支付下单应答验签失败: {}",
                answer.unverified.unwrap_or_default()
            )));
        }
        match answer.str(field) {
            Some(value) if answer.ok() => {
                let pay_body = match field {
                    "prepay_id" => self.jsapi_params(&s, value),
                    _ => value.to_string(),
                };
                Ok(PayStart {
                    pay_body,
                    remember: true,
                })
            }
            _ => Err(Error::PayFailed(answer.message())),
        }
    }

    fn pay_body(&self, order: &Order) -> Option<String> {
        self.store.pay_body(order.id).ok().flatten()
    }

    fn supports(&self, order: &Order, close_type: CloseType) -> bool {
        // A cancel (reverse) exists only for 付款码 orders, which unipay does not take.
        close_type == CloseType::Close || order.method.as_deref() == Some("barcode")
    }

    fn close(&self, order: &Order, close_type: CloseType) -> Result<ChannelCloseOutcome, Error> {
        if close_type == CloseType::Cancel {
            return Err(Error::Unsupported(NAME.into()));
        }
        let s = self.settings.get_any(&order.app_id)?;
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}/close",
            form::encode(&order.order_no)
        );
        let answer = self
            .call(&s, "POST", &path, Some(&json!({ "mchid": s.mchid })))
            .map_err(|why| unknown("close", &why))?;
        let verified = answer.verified();
        match (answer.status, answer.code()) {
            (204 | 200, _) if verified => Ok(ChannelCloseOutcome::Closed),
            (400, Some("ORDER_CLOSED")) if verified => Ok(ChannelCloseOutcome::Closed),
            (404, Some("ORDER_NOT_EXIST" | "ORDERNOTEXIST")) if verified => {
                Ok(ChannelCloseOutcome::Closed)
            }
            // Any other refusal (a "paid" code among them): ask what the trade is. The query's
            // answer is verified on its own, so an unsigned refusal may lead here too.
            (400..=499, _) => self.settle_by_query(order, &answer.message()),
            _ if !verified => Err(unknown(
                "close",
                answer.unverified.unwrap_or("the reply does not verify"),
            )),
            _ => Err(unknown("close", &answer.message())),
        }
    }

    fn query(&self, order: &Order) -> Result<TradeState, Error> {
        let s = self.settings.get_any(&order.app_id)?;
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}?mchid={}",
            form::encode(&order.order_no),
            form::encode(&s.mchid)
        );
        let answer = self
            .call(&s, "GET", &path, None)
            .map_err(|why| unknown("query", &why))?;
        if !answer.verified() {
            return Err(unknown(
                "query",
                answer.unverified.unwrap_or("the reply does not verify"),
            ));
        }
        if answer.status == 404
            && matches!(answer.code(), Some("ORDER_NOT_EXIST" | "ORDERNOTEXIST"))
        {
            return Ok(TradeState::NotFound);
        }
        if !answer.ok() {
            return Err(unknown("query", &answer.message()));
        }
        let paid = || TradeState::Paid {
            trade_no: answer.str("transaction_id").unwrap_or_default().to_string(),
            paid_at: answer
                .str("success_time")
                .and_then(sys::parse_rfc3339)
                .unwrap_or_else(|| self.clock.now_ms()),
        };
        match answer.str("trade_state") {
            Some("SUCCESS" | "REFUND") => Ok(paid()),
            Some("NOTPAY" | "USERPAYING" | "ACCEPT") => Ok(TradeState::Open),
            Some("CLOSED") => Ok(TradeState::Closed),
            Some("REVOKED") => Ok(TradeState::Revoked),
            Some("PAYERROR") => Ok(TradeState::Failed),
            other => Err(unknown(
                "query",
                &format!("unknown trade_state {}", other.unwrap_or("(none)")),
            )),
        }
    }

    fn check_refund(&self, app_id: &str) -> Result<(), Error> {
        self.settings.get(app_id).map(|_| ())
    }

    fn refund(&self, order: &Order, refund: &Refund) -> RefundAnswer {
        refund::send(self, order, refund)
    }

    fn query_refund(&self, order: &Order, refund: &Refund) -> RefundAnswer {
        refund::query(self, order, refund)
    }

    fn refund_spacing(&self) -> (i64, i64) {
        (refund::SEND_SPACING_MS, refund::FIRST_QUERY_MS)
    }

    fn callback(&self, app_id: &str, req: &Request) -> Response {
        notify::handle(self, app_id, req)
    }
}
