//! The one error type of the request path, and the only table from errors to DaxPay codes.
//!
//! Every failure a merchant can see is a variant here; `code()` and `message()` are the whole
//! mapping. `Internal` keeps its cause for the log and shows the merchant a fixed text.

use std::fmt;

/// Why a request failed.
#[derive(Debug)]
pub enum Error {
    /// 10404: no such path.
    NoSuchPath,
    /// 10405: the path exists but not for this method.
    MethodNotAllowed,
    /// 10505: the body is not JSON, or a field has the wrong JSON type or time format.
    JsonParse(String),
    /// 10506: a field is missing, too long, out of range, or the request is stale.
    Validation(String),
    /// 20011: the pay request names a channel unipay does not have.
    NoSuchChannel,
    /// 20023: merchant or app unknown or disabled; the text says which.
    Config(&'static str),
    /// 20030: the channel cannot do this (close, cancel).
    Unsupported(String),
    /// 20041: no such order for this app.
    OrderNotFound,
    /// 20043: a close of this order is already running.
    Closing,
    /// 20044: the order's status does not allow this; the text says why.
    TradeStatus(String),
    /// 20052: signature missing or wrong.
    BadSign,
    /// 20060: the amount is above the app's limit.
    AmountLimit,
    /// 20080: the channel refused or failed the close.
    CloseFailed(String),
    /// 10500: the request was not handled (it did not arrive in time, the server is full);
    /// the text says why. Nothing was done: send it again.
    Unavailable(&'static str),
    /// 10500: anything else; the cause is logged, never sent.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

pub const MSG_NOT_CLOSABLE: &str = "订单不是支付中, 无法进行关闭订单";

impl Error {
    /// The DaxPay code of this error.
    pub fn code(&self) -> i32 {
        match self {
            Error::NoSuchPath => 10404,
            Error::MethodNotAllowed => 10405,
            Error::Unavailable(_) | Error::Internal(_) => 10500,
            Error::JsonParse(_) => 10505,
            Error::Validation(_) => 10506,
            Error::NoSuchChannel => 20011,
            Error::Config(_) => 20023,
            Error::Unsupported(_) => 20030,
            Error::OrderNotFound => 20041,
            Error::Closing => 20043,
            Error::TradeStatus(_) => 20044,
            Error::BadSign => 20052,
            Error::AmountLimit => 20060,
            Error::CloseFailed(_) => 20080,
        }
    }

    /// The text the merchant sees.
    pub fn message(&self) -> String {
        match self {
            Error::NoSuchPath => "页面或资源不存在".into(),
            Error::MethodNotAllowed => "不支持的请求方法".into(),
            Error::Unavailable(why) => (*why).into(),
            Error::Internal(_) => "系统错误".into(),
            Error::JsonParse(detail) => format!("JSON parse error: {detail}"),
            Error::Validation(detail) => format!("验证参数错误\n{detail}"),
            Error::NoSuchChannel => "不存在的支付通道".into(),
            Error::Config(what) => (*what).into(),
            Error::Unsupported(channel) => format!("不支持的能力: {channel}"),
            Error::OrderNotFound => "支付订单不存在".into(),
            Error::Closing => "支付订单已在关闭中，请勿重复发起".into(),
            Error::TradeStatus(why) => why.clone(),
            Error::BadSign => "验签失败".into(),
            Error::AmountLimit => "支付金额超过限额".into(),
            Error::CloseFailed(why) if why.is_empty() => "关闭订单失败".into(),
            Error::CloseFailed(why) => format!("关闭订单失败: {why}"),
        }
    }

    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Internal(e.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Internal(cause) => write!(f, "internal error: {cause}"),
            other => write!(f, "{} {}", other.code(), other.message()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Internal(cause) => Some(cause.as_ref()),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Internal(Box::new(e))
    }
}
