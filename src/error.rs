//! The one error type of the request path, and the only table from errors to DaxPay codes.
//!
//! Every failure a merchant can see is a variant here; `code()` and `message()` are the whole
//! mapping. `Internal` keeps its cause for the log and shows the merchant a fixed text.

use std::fmt;

/// Why a request failed.
#[derive(Debug, Clone)]
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
    /// 20021: the app's channel is set but disabled.
    ChannelDisabled(&'static str),
    /// 20023: merchant, app or the app's channel settings unknown or disabled; the text says
    /// which.
    Config(&'static str),
    /// 20030: the channel cannot do this (close, cancel).
    Unsupported(String),
    /// 20041: no such order for this app.
    OrderNotFound,
    /// 20041: no such refund for this app; the text says it as the endpoint does.
    RefundNotFound(&'static str),
    /// 10507: a sync of this order or refund is at the channel right now.
    SyncBusy(&'static str),
    /// 20080: a sync could not ask the channel, or could not trust its answer.
    SyncFailed(String),
    /// 20080: a sync asked sooner than the channel allows; the text says when.
    SyncTooSoon(&'static str),
    /// 20043: a close of this order is already running.
    Closing,
    /// 20044: the order's status does not allow this; the text says why.
    TradeStatus(String),
    /// 20052: signature missing or wrong.
    BadSign,
    /// 20060: the amount is above the app's limit.
    AmountLimit,
    /// 20080: the channel refused or failed the close, or its outcome is unknown.
    CloseFailed(String),
    /// 20080: the channel refused to start the payment, or its answer could not be trusted.
    PayFailed(String),
    /// 10500: the request was not handled (it did not arrive in time, the server is full, the
    /// database's disk is full); the text says why. Nothing was done: send it again.
    Unavailable(&'static str),
    /// 10500: anything else; the cause is logged, never sent.
    Internal(std::sync::Arc<dyn std::error::Error + Send + Sync>),
}

/// The code of every reply that did not finish (`Unavailable`, `Internal`): the request may or
/// may not have been acted on.
pub const CODE_SYSTEM_ERROR: i32 = 10500;

// The texts merchants see, by the code they come with. Every merchant-facing text of the
// program is here (the admin console's own page texts are in `admin`).

// 10500 (`Unavailable`).
/// A request was not received within the request timeout (HTTP 408).
pub const MSG_REQUEST_TIMEOUT: &str = "请求超时，未在时限内收到完整请求，请重新发送";
/// The server is at its connection limit (HTTP 503).
pub const MSG_OVERLOADED: &str = "系统繁忙，请稍后重试";
/// The background integrity check found damage: nothing is written any more.
pub const MSG_DB_DAMAGED: &str = "数据库文件已损坏, 已停止写入, 请从备份恢复";
/// The database's disk is full: nothing was written.
pub const MSG_STORE_FULL: &str = "存储空间已满，暂时无法写入，请稍后重试";

// 10506 (`Validation`).
pub const MSG_BODY_TOO_LARGE: &str = "请求体过大";
pub const MSG_HEADERS_TOO_LARGE: &str = "请求头过大";
pub const MSG_ORDER_KEY_MISSING: &str = "支付订单号不能都为空";
pub const MSG_MCH_APP_MISMATCH: &str = "商户号与应用不匹配";
pub const MSG_REQ_TIME_MISSING: &str = "请求时间必填";
pub const MSG_REQ_STALE: &str = "请求已过期，请重新发送！";
pub const MSG_REQ_IN_FUTURE: &str = "请求时间晚于服务器接收到的时间，请检查";
pub const MSG_NONCE_REUSED: &str = "nonceStr已被使用, 且请求参数不同";
pub const MSG_CLIENT_IP_BAD: &str = "客户端ip格式不正确";
pub const MSG_EXPIRED_TIME_PAST: &str = "过期时间必须晚于当前时间";
pub const MSG_AMOUNT_MISSING: &str = "支付金额不可为空";
pub const MSG_AMOUNT_FORMAT: &str = "支付金额格式错误";
pub const MSG_AMOUNT_PRECISION: &str = "支付金额精度到分, 且要小于一亿元";
pub const MSG_AMOUNT_MIN: &str = "支付金额不可小于0.01元";

/// 10506: a required field is absent or blank.
pub fn msg_missing(label: &str) -> String {
    format!("{label}不可为空")
}

/// 10506: a field is longer than its limit.
pub fn msg_too_long(label: &str, max: usize) -> String {
    format!("{label}不可超过{max}位")
}

/// 10506: a pay method DaxPay does not know.
pub fn msg_unknown_method(method: &str) -> String {
    format!("不支持的支付方式: {method}")
}

// Refunds and syncs (refund-sync.md).
pub const MSG_REFUND_KEY_MISSING: &str = "退款号或商户退款号不能都为空";
pub const MSG_REFUND_NOT_FOUND: &str = "退款订单不存在";
pub const MSG_REFUND_SYNC_NOT_FOUND: &str = "未查询到退款订单";
pub const MSG_REFUND_AMOUNT_MISSING: &str = "退款金额不可为空";
pub const MSG_REFUND_OVER_BALANCE: &str = "退款金额不能大于支付金额";
pub const MSG_REFUND_NO_EXISTS: &str = "退款单号已存在";
pub const MSG_FULLY_REFUNDED: &str = "当前支付单退款状态[全部退款]不允许发起退款操作";
pub const MSG_SYNC_NOT_STARTED: &str = "订单未开始支付, 请重新确认支付状态";
pub const MSG_PAY_SYNC_BUSY: &str = "支付同步处理中，请勿重复操作";
pub const MSG_REFUND_SYNC_BUSY: &str = "退款同步处理中，请勿重复操作";
pub const MSG_ALIPAY_REFUND_QUERY_TOO_SOON: &str = "间隔10秒以上再发起退款查询请求";
pub const MSG_SANDBOX_REFUND_FAILED: &str = "沙箱退款失败";
pub const MSG_REFUND_ABNORMAL: &str = "退款异常";
pub const MSG_SANDBOX_REFUND_FINAL: &str = "沙箱退款已结束, 无法再变更";
pub const MSG_SANDBOX_REFUND_RESULT: &str = "result 应为 success、close 或 abnormal";

/// 20044: a refund of an order that is not `success` (DaxPay's words, sic 单订).
pub fn msg_refund_order_status(label: &str) -> String {
    format!("当前支付单订状态[{label}]不允许发起退款操作")
}

// 20023 (`Config`).
pub const MSG_NO_MERCHANT: &str = "未找到指定的商户配置";
pub const MSG_NO_APP: &str = "未找到指定的应用配置";
pub const MSG_MERCHANT_DISABLED: &str = "商户未启用";
pub const MSG_APP_DISABLED: &str = "商户应用未启用";

pub const MSG_NO_CHANNEL_CONFIG: &str = "未找到指定的支付通道配置";
// 20021 (`ChannelDisabled`).
pub const MSG_CHANNEL_DISABLED: &str = "支付通道未启用";

// 20044 (`TradeStatus`).
pub const MSG_NOT_CLOSABLE: &str = "订单不是支付中, 无法进行关闭订单";
pub const MSG_PAID_NOT_CLOSABLE: &str = "订单已支付成功, 无法关闭";
pub const MSG_PAY_EXPIRED: &str = "订单已过期, 无法支付";
pub const MSG_STATUS_CHANGED_QUERY: &str = "订单状态已变化, 请重新查询";
pub const MSG_ALREADY_PAID: &str = "已经支付成功，请勿重新支付";
pub const MSG_FAILED_OR_CLOSED: &str = "该订单支付失败或已经被关闭";
// The sandbox payer's refusals.
pub const MSG_PAY_ORDER_PAID: &str = "订单已支付成功, 请勿重复支付";
pub const MSG_PAY_ORDER_CLOSED: &str = "订单已关闭, 无法支付";
pub const MSG_PAY_ORDER_CANCELLED: &str = "订单已撤销, 无法支付";
pub const MSG_PAY_ORDER_FAILED: &str = "订单支付失败, 无法支付";
pub const MSG_PAY_NOT_SANDBOX: &str = "订单不是沙箱通道的订单";
pub const MSG_PAY_TRADE_CLOSED: &str = "交易已关闭, 无法支付";
pub const MSG_PAY_TRADE_CANCELLED: &str = "交易已撤销, 无法支付";
pub const MSG_PAY_TRADE_PAID: &str = "交易已支付, 请勿重复支付";
pub const MSG_PAY_STATUS_CHANGED: &str = "订单状态已变化, 无法支付";

/// Why an order needs an operator: money arrived after it was closed, cancelled or failed.
pub fn msg_late_payment(label: &str, trade_no: &str, status: &str) -> String {
    format!(
        "订单状态为{label}时通道交易{trade_no}已支付, 订单已改为支付成功, 请人工处理 (money arrived for a {status} order)"
    )
}

// Close records (shown to operators in the console).
pub const MSG_RECORD_STATUS_CHANGED: &str = "订单状态已变化";
pub const MSG_RECORD_PAID_AT_CHANNEL: &str = "通道交易已支付, 订单状态同步为支付成功";
pub const MSG_RECORD_INTERRUPTED: &str =
    "关闭未完成: 进程停止时通道交易仍未关闭, 已撤销 (interrupted before the channel closed)";
pub const MSG_RECORD_REFUNDED: &str =
    "通道交易已支付, 撤销时通道已全额退款 (the channel refunded the payment when cancelling)";

impl Error {
    /// The DaxPay code of this error.
    pub fn code(&self) -> i32 {
        match self {
            Error::NoSuchPath => 10404,
            Error::MethodNotAllowed => 10405,
            Error::Unavailable(_) | Error::Internal(_) => CODE_SYSTEM_ERROR,
            Error::JsonParse(_) => 10505,
            Error::Validation(_) => 10506,
            Error::NoSuchChannel => 20011,
            Error::ChannelDisabled(_) => 20021,
            Error::Config(_) => 20023,
            Error::Unsupported(_) => 20030,
            Error::OrderNotFound | Error::RefundNotFound(_) => 20041,
            Error::SyncBusy(_) => 10507,
            Error::SyncFailed(_) | Error::SyncTooSoon(_) => 20080,
            Error::Closing => 20043,
            Error::TradeStatus(_) => 20044,
            Error::BadSign => 20052,
            Error::AmountLimit => 20060,
            Error::CloseFailed(_) | Error::PayFailed(_) => 20080,
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
            Error::Config(what) | Error::ChannelDisabled(what) => (*what).into(),
            Error::Unsupported(channel) => format!("不支持的能力: {channel}"),
            Error::OrderNotFound => "支付订单不存在".into(),
            Error::RefundNotFound(what) | Error::SyncBusy(what) | Error::SyncTooSoon(what) => {
                (*what).into()
            }
            Error::SyncFailed(why) => format!("同步失败: {why}"),
            Error::Closing => "支付订单已在关闭中，请勿重复发起".into(),
            Error::TradeStatus(why) => why.clone(),
            Error::BadSign => "验签失败".into(),
            Error::AmountLimit => "支付金额超过限额".into(),
            Error::CloseFailed(why) if why.is_empty() => "关闭订单失败".into(),
            Error::CloseFailed(why) => format!("关闭订单失败: {why}"),
            Error::PayFailed(why) => format!("支付失败: {why}"),
        }
    }

    /// Whether this is a write refused for a full disk.
    pub fn is_store_full(&self) -> bool {
        matches!(self, Error::Unavailable(why) if *why == MSG_STORE_FULL)
    }

    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        let boxed: Box<dyn std::error::Error + Send + Sync> = e.into();
        Error::Internal(boxed.into())
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
    /// A full disk is said as such (the store logs it once per episode, not per request);
    /// any other database error is a system error, its cause for the log.
    fn from(e: rusqlite::Error) -> Error {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Error::Unavailable(MSG_STORE_FULL),
            _ => Error::Internal(std::sync::Arc::new(e)),
        }
    }
}
