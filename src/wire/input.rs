//! Typed inputs: what each endpoint reads from a request's validated fields.

use super::{Params, METHODS};
use crate::domain::{Amount, OrderKey, RefundKey};
use crate::error::{
    msg_unknown_method, Error, MSG_AMOUNT_MISSING, MSG_ORDER_KEY_MISSING,
    MSG_REFUND_AMOUNT_MISSING, MSG_REFUND_KEY_MISSING,
};

/// The fields every signed request has (DaxPay `DaxPayRequest` plus `mchNo`), as sent. The
/// optional ones are `None` when absent or empty.
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    pub mch_no: &'a str,
    pub app_id: &'a str,
    pub sign: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    /// `reqTime` as milliseconds since the epoch.
    pub req_time: Option<i64>,
}

impl Params {
    /// The common fields of this request.
    pub fn common(&self) -> Common<'_> {
        Common {
            mch_no: self.str("mchNo").unwrap_or_default(),
            app_id: self.str("appId").unwrap_or_default(),
            sign: self.non_empty("sign"),
            nonce: self.non_empty("nonceStr"),
            client_ip: self.non_empty("clientIp"),
            req_time: self.time_ms("reqTime"),
        }
    }
}

/// The order a close or query names: the first non-empty of `orderNo`, `bizOrderNo`,
/// `outOrderNo` (10506 when all are empty or absent).
pub fn order_key(p: &Params) -> Result<OrderKey, Error> {
    OrderKey::pick(p.str("orderNo"), p.str("bizOrderNo"), p.str("outOrderNo"))
        .ok_or_else(|| Error::Validation(MSG_ORDER_KEY_MISSING.into()))
}

/// `POST /unipay/close`, typed.
#[derive(Debug, Clone)]
pub struct CloseInput {
    pub key: OrderKey,
    /// `useCancel`: cancel the trade at the channel instead of closing it (absent is false).
    pub use_cancel: bool,
}

pub fn close_input(p: &Params) -> Result<CloseInput, Error> {
    Ok(CloseInput {
        key: order_key(p)?,
        use_cancel: p.bool("useCancel").unwrap_or(false),
    })
}

/// The order fields `/unipay/pay` and `/unipay/gateway/prePay` share, typed.
#[derive(Debug, Clone)]
pub struct OrderInput {
    pub biz_order_no: String,
    pub title: String,
    pub description: Option<String>,
    pub allocation: Option<bool>,
    pub auto_allocation: Option<bool>,
    /// `expiredTime` in ms, when sent.
    pub expired_time: Option<i64>,
    pub amount: Amount,
    pub limit_pay: Option<String>,
    pub attach: Option<String>,
    /// `notifyUrl` when sent and not empty.
    pub notify_url: Option<String>,
    pub return_url: Option<String>,
}

/// Reads the order fields; 10506 for a missing or malformed amount.
pub fn order_input(p: &Params) -> Result<OrderInput, Error> {
    let owned = |name: &str| p.str(name).map(str::to_string);
    Ok(OrderInput {
        amount: amount(p)?,
        biz_order_no: owned("bizOrderNo").unwrap_or_default(),
        title: owned("title").unwrap_or_default(),
        description: owned("description"),
        allocation: p.bool("allocation"),
        auto_allocation: p.bool("autoAllocation"),
        expired_time: p.time_ms("expiredTime"),
        limit_pay: owned("limitPay"),
        attach: owned("attach"),
        notify_url: p.non_empty("notifyUrl").map(str::to_string),
        return_url: owned("returnUrl"),
    })
}

/// What `/unipay/pay` asks of the channel, typed (the order fields are `order_input`).
#[derive(Debug, Clone)]
pub struct PayInput {
    pub channel: String,
    /// One of `METHODS`.
    pub method: String,
    pub other_method: Option<String>,
    pub extra_param: Option<String>,
    /// `openId`: the payer at the channel (WeChat's JSAPI needs it).
    pub open_id: Option<String>,
    /// `quitUrl`: where a mobile cashier sends a payer who gives up.
    pub quit_url: Option<String>,
}

/// Reads the channel fields of a pay request; 10506 for a method DaxPay does not know.
pub fn pay_input(p: &Params) -> Result<PayInput, Error> {
    let method = p.str("method").unwrap_or_default();
    if !METHODS.contains(&method) {
        return Err(Error::Validation(msg_unknown_method(method)));
    }
    Ok(PayInput {
        channel: p.str("channel").unwrap_or_default().to_string(),
        method: method.to_string(),
        other_method: p.str("otherMethod").map(str::to_string),
        extra_param: p.str("extraParam").map(str::to_string),
        open_id: p.non_empty("openId").map(str::to_string),
        quit_url: p.non_empty("quitUrl").map(str::to_string),
    })
}

/// The validated `amount` of a pay request, in cents.
fn amount(params: &Params) -> Result<Amount, Error> {
    let text = params
        .decimal("amount")
        .ok_or_else(|| Error::Validation(MSG_AMOUNT_MISSING.into()))?;
    Amount::parse_yuan(text).map_err(|why| Error::Validation(why.into()))
}

/// `POST /unipay/refund`, typed.
#[derive(Debug, Clone)]
pub struct RefundInput {
    pub order: OrderKey,
    pub biz_refund_no: String,
    pub amount: Amount,
    pub reason: Option<String>,
    pub attach: Option<String>,
    pub notify_url: Option<String>,
    pub extra_param: Option<String>,
}

/// Reads a refund request: the pay order's number (10506 when none), the amount.
pub fn refund_input(p: &Params) -> Result<RefundInput, Error> {
    let order = order_key(p)?;
    let text = p
        .decimal("amount")
        .ok_or_else(|| Error::Validation(MSG_REFUND_AMOUNT_MISSING.into()))?;
    let amount = Amount::parse_yuan(text).map_err(|why| Error::Validation(why.into()))?;
    let owned = |name: &str| p.str(name).map(str::to_string);
    Ok(RefundInput {
        order,
        biz_refund_no: owned("bizRefundNo").unwrap_or_default(),
        amount,
        reason: owned("reason"),
        attach: owned("attach"),
        notify_url: p.non_empty("notifyUrl").map(str::to_string),
        extra_param: owned("extraParam"),
    })
}

/// The refund a query or sync names (`refundNo` > `bizRefundNo`), or `None` when neither.
pub fn refund_key(p: &Params) -> Option<RefundKey> {
    RefundKey::pick(p.str("refundNo"), p.str("bizRefundNo"))
}

/// The refund a query names; 10506 when neither number is given.
pub fn refund_key_required(p: &Params) -> Result<RefundKey, Error> {
    refund_key(p).ok_or_else(|| Error::Validation(MSG_REFUND_KEY_MISSING.into()))
}
