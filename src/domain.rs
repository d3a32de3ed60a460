//! The payment domain: order statuses and their transitions, money in cents, apps.
//!
//! This is the only module that decides which status may follow which. It knows nothing of
//! JSON (see `wire`) or SQL (see `store`).

use crate::error::{MSG_AMOUNT_FORMAT, MSG_AMOUNT_MIN, MSG_AMOUNT_PRECISION};
use crate::sign::SignType;

/// The name of the built-in sandbox channel.
pub const SANDBOX: &str = "sandbox";

/// How long a request's `nonceStr` and its reply are remembered: 24 hours.
pub const NONCE_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// The status of a payment order (DaxPay `PayStatusEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayStatus {
    /// 待支付: created, waiting for the payer to choose how to pay.
    Wait,
    /// 支付中: handed to a channel, the payer may be paying.
    Progress,
    /// 支付成功.
    Success,
    /// 支付关闭.
    Close,
    /// 支付撤销.
    Cancel,
    /// 支付失败.
    Fail,
}

impl PayStatus {
    pub const ALL: [PayStatus; 6] = [
        PayStatus::Wait,
        PayStatus::Progress,
        PayStatus::Success,
        PayStatus::Close,
        PayStatus::Cancel,
        PayStatus::Fail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PayStatus::Wait => "wait",
            PayStatus::Progress => "progress",
            PayStatus::Success => "success",
            PayStatus::Close => "close",
            PayStatus::Cancel => "cancel",
            PayStatus::Fail => "fail",
        }
    }

    pub fn parse(s: &str) -> Option<PayStatus> {
        PayStatus::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The Chinese label merchants know.
    pub fn label(self) -> &'static str {
        match self {
            PayStatus::Wait => "待支付",
            PayStatus::Progress => "支付中",
            PayStatus::Success => "支付成功",
            PayStatus::Close => "支付关闭",
            PayStatus::Cancel => "支付撤销",
            PayStatus::Fail => "支付失败",
        }
    }

    /// Nothing but money leaves a terminal status: a payment that arrives for a closed,
    /// cancelled or failed order still makes it `success` (flagged for an operator).
    pub fn is_terminal(self) -> bool {
        !matches!(self, PayStatus::Wait | PayStatus::Progress)
    }

    /// The statuses an order may be closed (or cancelled) from.
    pub const CLOSABLE: [PayStatus; 2] = [PayStatus::Wait, PayStatus::Progress];

    /// The statuses a payment may complete from.
    pub const PAYABLE: [PayStatus; 2] = [PayStatus::Wait, PayStatus::Progress];
}

/// How a close stops the channel from taking money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseType {
    /// Close the trade at the channel; the order becomes `close`.
    Close,
    /// Cancel (reverse) the trade at the channel; the order becomes `cancel`.
    Cancel,
}

impl CloseType {
    /// The close a request's `useCancel` asks for.
    pub fn from_use_cancel(use_cancel: bool) -> CloseType {
        if use_cancel {
            CloseType::Cancel
        } else {
            CloseType::Close
        }
    }

    /// Reads `as_str`'s text back; anything else is a close.
    pub fn parse(s: &str) -> CloseType {
        CloseType::from_use_cancel(s == "cancel")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CloseType::Close => "close",
            CloseType::Cancel => "cancel",
        }
    }

    /// The status an order ends in after a successful close of this type.
    pub fn target(self) -> PayStatus {
        match self {
            CloseType::Close => PayStatus::Close,
            CloseType::Cancel => PayStatus::Cancel,
        }
    }
}

/// The close to perform on an order in `status`, or why there is none.
///
/// A `wait` order has no trade at any channel: it is closed locally whatever `use_cancel` says.
/// A `progress` order is closed or cancelled at its channel first.
pub fn plan_close(status: PayStatus, use_cancel: bool) -> Result<ClosePlan, PayStatus> {
    match status {
        PayStatus::Wait => Ok(ClosePlan::Local),
        PayStatus::Progress => Ok(ClosePlan::AtChannel(CloseType::from_use_cancel(use_cancel))),
        other => Err(other),
    }
}

/// What closing an order involves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosePlan {
    /// Only the local record changes (a `wait` order).
    Local,
    /// The channel's trade is closed or cancelled first.
    AtChannel(CloseType),
}

/// Who asked for a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Api,
    Admin,
    Expiry,
    /// A pay sync that found the trade over at the channel.
    Sync,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Api => "api",
            Actor::Admin => "admin",
            Actor::Expiry => "expiry",
            Actor::Sync => "sync",
        }
    }

    /// Reads `as_str`'s text back; anything unknown is the API.
    pub fn parse(s: &str) -> Actor {
        match s {
            "admin" => Actor::Admin,
            "expiry" => Actor::Expiry,
            "sync" => Actor::Sync,
            _ => Actor::Api,
        }
    }
}

/// Who closes, from where, when: what a close record needs besides the order.
#[derive(Debug, Clone)]
pub struct CloseRequest {
    pub actor: Actor,
    pub client_ip: Option<String>,
    pub now: i64,
}

/// What a channel said when asked to close a trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelCloseOutcome {
    /// The trade is closed (or cancelled, or never existed): no money can arrive any more.
    Closed,
    /// The trade had been paid and the cancel refunded the payer: no money stays, the order is
    /// cancelled (the refund is in its close record).
    Refunded,
    /// The trade was already paid: the order must become `success`.
    Paid { trade_no: String, paid_at: i64 },
    /// The channel refused or failed; the order is unchanged.
    Failed(String),
}

/// Money in cents (分). The wire speaks yuan with two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(pub i64);

impl Amount {
    /// The largest amount an order may have: 99,999,999.99 yuan.
    pub const MAX: Amount = Amount(9_999_999_999);

    /// Reads plain decimal yuan text (`0.01`, `12`, `3.50`) with at most two decimals.
    pub fn parse_yuan(s: &str) -> Result<Amount, &'static str> {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || (s.contains('.') && frac.is_empty())
        {
            return Err(MSG_AMOUNT_FORMAT);
        }
        let frac_trimmed = frac.trim_end_matches('0');
        if frac_trimmed.len() > 2 {
            return Err(MSG_AMOUNT_PRECISION);
        }
        let int = int.trim_start_matches('0');
        if int.len() > 8 {
            return Err(MSG_AMOUNT_PRECISION);
        }
        let yuan: i64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| MSG_AMOUNT_FORMAT)?
        };
        let mut cents_text = frac_trimmed.to_string();
        while cents_text.len() < 2 {
            cents_text.push('0');
        }
        let cents: i64 = cents_text.parse().map_err(|_| MSG_AMOUNT_FORMAT)?;
        let amount = Amount(yuan * 100 + cents);
        if amount.0 < 1 {
            return Err(MSG_AMOUNT_MIN);
        }
        Ok(amount)
    }

    /// Yuan without trailing zeros, as signatures render decimals: `1`, `0.5`, `0.01`.
    pub fn to_yuan(self) -> String {
        let (y, c) = (self.0 / 100, self.0 % 100);
        match c {
            0 => format!("{y}"),
            c if c % 10 == 0 => format!("{y}.{}", c / 10),
            c => format!("{y}.{c:02}"),
        }
    }

    /// Yuan with exactly two decimals, for people.
    pub fn to_yuan_fixed(self) -> String {
        format!("{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("app_id", &self.app_id)
            .field("mch_no", &self.mch_no)
            .field("sign_type", &self.sign_type)
            .field("secret", &"<redacted>")
            .field("req_sign", &self.req_sign)
            .field("req_timeout_secs", &self.req_timeout_secs)
            .field("enabled", &self.enabled)
            .field("mch_enabled", &self.mch_enabled)
            .finish_non_exhaustive()
    }
}

/// A merchant application: who may call, and how its calls are signed. Its `Debug` leaves the
/// secret out, so that no log line can carry it.
#[derive(Clone)]
pub struct App {
    pub app_id: String,
    pub mch_no: String,
    pub sign_type: SignType,
    pub secret: String,
    /// Whether requests must carry a valid `sign`.
    pub req_sign: bool,
    /// The request-time window in seconds; 0 is off.
    pub req_timeout_secs: i64,
    /// The app's own notify URL (subscribed to `pay` events), if any.
    pub notify_url: Option<String>,
    /// Default order lifetime in minutes.
    pub order_timeout_min: i64,
    /// Largest amount of one order, if limited.
    pub limit_amount: Option<Amount>,
    pub enabled: bool,
    pub mch_enabled: bool,
}

/// A payment order as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: i64,
    pub order_no: String,
    pub biz_order_no: String,
    pub out_order_no: Option<String>,
    pub mch_no: String,
    pub app_id: String,
    pub title: String,
    pub description: Option<String>,
    pub allocation: Option<bool>,
    pub auto_allocation: Option<bool>,
    pub channel: Option<String>,
    pub method: Option<String>,
    pub other_method: Option<String>,
    pub limit_pay: Option<String>,
    pub amount: Amount,
    pub refundable_balance: Amount,
    pub status: PayStatus,
    pub refund_status: Option<String>,
    pub alloc_status: Option<String>,
    pub pay_time: Option<i64>,
    pub close_time: Option<i64>,
    pub expired_time: i64,
    pub attach: Option<String>,
    pub error_msg: Option<String>,
    pub notify_url: Option<String>,
    pub return_url: Option<String>,
    pub extra_param: Option<String>,
    pub client_ip: Option<String>,
    /// Why an operator must look at this order (money arrived after it was closed).
    pub attention: Option<String>,
    pub attention_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A merchant notification event (one target of one status change), as operators see it.
#[derive(Debug, Clone)]
pub struct EventInfo {
    pub id: i64,
    pub order_no: String,
    pub target: String,
    pub url: String,
    pub status: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// The status of a refund (DaxPay `RefundStatusEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundStatus {
    /// 退款中: created; at the channel, or its outcome not known yet. Its amount is reserved.
    Progress,
    /// 退款成功: the channel confirmed that the money went back.
    Success,
    /// 退款关闭: the channel closed it without paying it; the amount went back to the balance.
    Close,
    /// 退款失败: the channel refused it (a definite answer); the amount went back.
    Fail,
}

impl RefundStatus {
    pub const ALL: [RefundStatus; 4] = [
        RefundStatus::Progress,
        RefundStatus::Success,
        RefundStatus::Close,
        RefundStatus::Fail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Progress => "progress",
            RefundStatus::Success => "success",
            RefundStatus::Close => "close",
            RefundStatus::Fail => "fail",
        }
    }

    pub fn parse(s: &str) -> Option<RefundStatus> {
        RefundStatus::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            RefundStatus::Progress => "退款中",
            RefundStatus::Success => "退款成功",
            RefundStatus::Close => "退款关闭",
            RefundStatus::Fail => "退款失败",
        }
    }

    /// Whether the refund's amount is out of the order's refundable balance.
    pub fn holds_money(self) -> bool {
        matches!(self, RefundStatus::Progress | RefundStatus::Success)
    }
}

/// A pay order's `refundStatus` (DaxPay `PayRefundStatusEnum`), a function of its refunds.
pub fn pay_refund_status(any_progress: bool, refunded: Amount, amount: Amount) -> &'static str {
    match () {
        _ if any_progress => "refunding",
        _ if refunded >= amount => "refunded",
        _ if refunded.0 > 0 => "partial_refund",
        _ => "no_refund",
    }
}

/// A refund as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub id: i64,
    pub refund_no: String,
    pub app_id: String,
    pub mch_no: String,
    pub order_id: i64,
    pub order_no: String,
    pub biz_order_no: String,
    pub out_order_no: Option<String>,
    pub channel: String,
    pub order_amount: Amount,
    pub title: String,
    pub biz_refund_no: String,
    pub amount: Amount,
    pub reason: Option<String>,
    pub attach: Option<String>,
    pub notify_url: Option<String>,
    pub extra_param: Option<String>,
    pub client_ip: Option<String>,
    pub req_time: Option<i64>,
    pub status: RefundStatus,
    pub out_refund_no: Option<String>,
    pub finish_time: Option<i64>,
    pub error_msg: Option<String>,
    /// How often it was sent to the channel, and when last.
    pub sends: i64,
    pub last_send_at: Option<i64>,
    /// Sends whose outcome was unknown: a later refusal needs a query first.
    pub unknown_sends: i64,
    pub checks: i64,
    pub next_check_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Refund {
    /// When a `progress` refund is looked at next, at `now`: every minute for its first ten
    /// minutes, every ten minutes up to an hour, hourly up to a day, daily after.
    pub fn next_check(&self, now: i64) -> i64 {
        const MINUTE: i64 = 60_000;
        let step = match now - self.created_at {
            a if a < 10 * MINUTE => MINUTE,
            a if a < 60 * MINUTE => 10 * MINUTE,
            a if a < 24 * 60 * MINUTE => 60 * MINUTE,
            _ => 24 * 60 * MINUTE,
        };
        now + step
    }
}

/// What a channel said about a refund, when asked to make it or asked how it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundAnswer {
    /// The money went back.
    Success {
        out_refund_no: Option<String>,
        finish_time: Option<i64>,
    },
    /// Accepted, not finished yet.
    Processing { out_refund_no: Option<String> },
    /// Closed by the channel without paying it.
    Closed { out_refund_no: Option<String> },
    /// Stuck at the channel (WeChat `ABNORMAL`): it stays `progress`, an operator looks.
    Abnormal { out_refund_no: Option<String> },
    /// The channel refused the request (a definite answer, from a send only).
    Refused(String),
    /// The channel has no such refund (from a query): it never arrived; send it again.
    NotFound,
    /// The outcome is not known (a timeout, a 5xx, an answer that does not verify, "try again").
    Unknown(String),
    /// The answer does not fit the refund (another amount, an unknown trade): it stays
    /// `progress` and an operator looks.
    Attention(String),
}

/// How a request names a refund: `refundNo` > `bizRefundNo`, the first given non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundKey {
    RefundNo(String),
    BizRefundNo(String),
}

impl RefundKey {
    pub fn pick(refund_no: Option<&str>, biz_refund_no: Option<&str>) -> Option<RefundKey> {
        let given = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_string);
        given(refund_no)
            .map(RefundKey::RefundNo)
            .or_else(|| given(biz_refund_no).map(RefundKey::BizRefundNo))
    }
}

/// How a request names an order: the first non-empty of orderNo, bizOrderNo, outOrderNo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKey {
    OrderNo(String),
    BizOrderNo(String),
    OutOrderNo(String),
}

impl OrderKey {
    /// The lookup rule of the spec, with unipay's fix: an empty string does not hide the next.
    pub fn pick(
        order_no: Option<&str>,
        biz_order_no: Option<&str>,
        out_order_no: Option<&str>,
    ) -> Option<OrderKey> {
        let given = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_string);
        given(order_no)
            .map(OrderKey::OrderNo)
            .or_else(|| given(biz_order_no).map(OrderKey::BizOrderNo))
            .or_else(|| given(out_order_no).map(OrderKey::OutOrderNo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wait_and_progress_can_close() {
        assert_eq!(plan_close(PayStatus::Wait, true), Ok(ClosePlan::Local));
        assert_eq!(
            plan_close(PayStatus::Progress, false),
            Ok(ClosePlan::AtChannel(CloseType::Close))
        );
        assert_eq!(
            plan_close(PayStatus::Progress, true),
            Ok(ClosePlan::AtChannel(CloseType::Cancel))
        );
        for s in [
            PayStatus::Success,
            PayStatus::Close,
            PayStatus::Cancel,
            PayStatus::Fail,
        ] {
            assert_eq!(plan_close(s, false), Err(s));
            assert!(s.is_terminal());
        }
    }

    #[test]
    fn statuses_round_trip() {
        for s in PayStatus::ALL {
            assert_eq!(PayStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(PayStatus::parse("WAIT"), None);
    }

    #[test]
    fn amounts_parse_in_cents() {
        assert_eq!(Amount::parse_yuan("0.01"), Ok(Amount(1)));
        assert_eq!(Amount::parse_yuan("1.00"), Ok(Amount(100)));
        assert_eq!(Amount::parse_yuan("1.1"), Ok(Amount(110)));
        assert_eq!(Amount::parse_yuan("1.100"), Ok(Amount(110)));
        assert_eq!(Amount::parse_yuan("99999999.99"), Ok(Amount::MAX));
        assert!(Amount::parse_yuan("100000000").is_err());
        assert!(Amount::parse_yuan("0.001").is_err());
        assert!(Amount::parse_yuan("0").is_err());
        assert!(Amount::parse_yuan("0.00").is_err());
        assert!(Amount::parse_yuan("-1").is_err());
        assert!(Amount::parse_yuan("1e2").is_err());
        assert!(Amount::parse_yuan("").is_err());
        assert!(Amount::parse_yuan("1.").is_err());
    }

    #[test]
    fn amounts_render_without_trailing_zeros() {
        assert_eq!(Amount(1).to_yuan(), "0.01");
        assert_eq!(Amount(10).to_yuan(), "0.1");
        assert_eq!(Amount(100).to_yuan(), "1");
        assert_eq!(Amount(123456).to_yuan(), "1234.56");
        assert_eq!(Amount(150).to_yuan_fixed(), "1.50");
    }

    #[test]
    fn empty_order_no_does_not_hide_biz_order_no() {
        assert_eq!(
            OrderKey::pick(Some(""), Some("B1"), None),
            Some(OrderKey::BizOrderNo("B1".into()))
        );
        assert_eq!(
            OrderKey::pick(Some("P1"), Some("B1"), Some("O1")),
            Some(OrderKey::OrderNo("P1".into()))
        );
        assert_eq!(OrderKey::pick(Some(""), Some(""), Some("")), None);
        assert_eq!(OrderKey::pick(None, None, None), None);
    }

    #[test]
    fn a_nonce_is_remembered_for_exactly_one_day() {
        assert_eq!(NONCE_TTL_MS, 86_400_000);
    }

    #[test]
    fn only_wait_and_progress_are_open() {
        assert!(!PayStatus::Wait.is_terminal());
        assert!(!PayStatus::Progress.is_terminal());
    }

    #[test]
    fn labels_are_daxpays_names() {
        let pay: Vec<&str> = PayStatus::ALL.iter().map(|s| s.label()).collect();
        assert_eq!(
            pay,
            [
                "待支付",
                "支付中",
                "支付成功",
                "支付关闭",
                "支付撤销",
                "支付失败"
            ]
        );
        let refund: Vec<&str> = RefundStatus::ALL.iter().map(|s| s.label()).collect();
        assert_eq!(refund, ["退款中", "退款成功", "退款关闭", "退款失败"]);
    }

    #[test]
    fn close_types_and_actors_read_back_what_they_write() {
        for t in [CloseType::Close, CloseType::Cancel] {
            assert_eq!(CloseType::parse(t.as_str()), t);
        }
        assert_eq!(CloseType::parse("anything"), CloseType::Close);
        assert_eq!(CloseType::Close.target(), PayStatus::Close);
        assert_eq!(CloseType::Cancel.target(), PayStatus::Cancel);
        for a in [Actor::Api, Actor::Admin, Actor::Expiry, Actor::Sync] {
            assert_eq!(Actor::parse(a.as_str()), a);
        }
        assert_eq!(Actor::parse("someone"), Actor::Api);
    }

    #[test]
    fn amounts_are_refused_with_the_right_reason() {
        for (input, want) in [
            ("-1", MSG_AMOUNT_FORMAT),
            ("+1", MSG_AMOUNT_FORMAT),
            ("1.-5", MSG_AMOUNT_FORMAT),
            ("1.5x", MSG_AMOUNT_FORMAT),
            ("x", MSG_AMOUNT_FORMAT),
            ("", MSG_AMOUNT_FORMAT),
            (".5", MSG_AMOUNT_FORMAT),
            ("1.", MSG_AMOUNT_FORMAT),
            ("0.001", MSG_AMOUNT_PRECISION),
            ("100000000", MSG_AMOUNT_PRECISION),
            ("0", MSG_AMOUNT_MIN),
            ("0.00", MSG_AMOUNT_MIN),
        ] {
            assert_eq!(Amount::parse_yuan(input), Err(want), "{input}");
        }
        assert_eq!(Amount::parse_yuan("000000012.50"), Ok(Amount(1250)));
        assert_eq!(Amount::parse_yuan("0.010"), Ok(Amount(1)));
    }

    #[test]
    fn an_apps_debug_names_it_but_hides_its_secret() {
        let app = App {
            app_id: "A_DBG".into(),
            mch_no: "M_DBG".into(),
            sign_type: SignType::Md5,
            secret: "s3cr3t".into(),
            req_sign: true,
            req_timeout_secs: 0,
            notify_url: None,
            order_timeout_min: 30,
            limit_amount: None,
            enabled: true,
            mch_enabled: true,
        };
        let text = format!("{app:?}");
        assert!(text.contains("A_DBG") && text.contains("M_DBG"), "{text}");
        assert!(
            text.contains("<redacted>") && !text.contains("s3cr3t"),
            "{text}"
        );
    }

    #[test]
    fn refund_statuses_round_trip_and_hold_money_until_they_fail_or_close() {
        for s in RefundStatus::ALL {
            assert_eq!(RefundStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(RefundStatus::parse("PROGRESS"), None);
        assert!(RefundStatus::Progress.holds_money());
        assert!(RefundStatus::Success.holds_money());
        assert!(!RefundStatus::Close.holds_money());
        assert!(!RefundStatus::Fail.holds_money());
    }

    #[test]
    fn an_orders_refund_status_follows_its_refunds() {
        for (progress, refunded, want) in [
            (true, 0, "refunding"),
            (true, 100, "refunding"),
            (false, 100, "refunded"),
            (false, 99, "partial_refund"),
            (false, 1, "partial_refund"),
            (false, 0, "no_refund"),
        ] {
            assert_eq!(
                pay_refund_status(progress, Amount(refunded), Amount(100)),
                want,
                "{progress} {refunded}"
            );
        }
    }

    #[test]
    fn a_progress_refund_is_looked_at_less_often_as_it_ages() {
        const MIN: i64 = 60_000;
        let created = 1_700_000_000_000;
        let refund = Refund {
            id: 1,
            refund_no: "R1".into(),
            app_id: "A".into(),
            mch_no: "M".into(),
            order_id: 1,
            order_no: "P1".into(),
            biz_order_no: "B1".into(),
            out_order_no: None,
            channel: SANDBOX.into(),
            order_amount: Amount(100),
            title: "t".into(),
            biz_refund_no: "BR1".into(),
            amount: Amount(100),
            reason: None,
            attach: None,
            notify_url: None,
            extra_param: None,
            client_ip: None,
            req_time: None,
            status: RefundStatus::Progress,
            out_refund_no: None,
            finish_time: None,
            error_msg: None,
            sends: 0,
            last_send_at: None,
            unknown_sends: 0,
            checks: 0,
            next_check_at: None,
            created_at: created,
            updated_at: created,
        };
        for (age, step) in [
            (0, MIN),
            (10 * MIN - 1, MIN),
            (10 * MIN, 10 * MIN),
            (60 * MIN - 1, 10 * MIN),
            (60 * MIN, 60 * MIN),
            (24 * 60 * MIN - 1, 60 * MIN),
            (24 * 60 * MIN, 24 * 60 * MIN),
            (30 * 24 * 60 * MIN, 24 * 60 * MIN),
        ] {
            let now = created + age;
            assert_eq!(refund.next_check(now), now + step, "age {age}");
        }
    }

    #[test]
    fn refund_no_has_priority_and_empty_does_not_hide_biz_refund_no() {
        assert_eq!(
            RefundKey::pick(Some("R1"), Some("BR1")),
            Some(RefundKey::RefundNo("R1".into()))
        );
        assert_eq!(
            RefundKey::pick(Some(""), Some("BR1")),
            Some(RefundKey::BizRefundNo("BR1".into()))
        );
        assert_eq!(
            RefundKey::pick(None, Some("BR1")),
            Some(RefundKey::BizRefundNo("BR1".into()))
        );
        assert_eq!(RefundKey::pick(Some(""), Some("")), None);
        assert_eq!(RefundKey::pick(None, None), None);
    }
}
