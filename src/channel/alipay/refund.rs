//! Refunds at Alipay (refund-sync.md §9.2): `alipay.trade.refund` to send one, and
//! `alipay.trade.fastpay.refund.query` to ask how it stands.
//!
//! The refund's `refundNo` is always its `out_request_no`: Alipay refunds one request number at
//! most once, so a refund whose outcome is unknown can be sent again safely. Only a verified
//! answer settles anything: an unsigned or unverifiable reply, a timeout, `20000` or a code this
//! table does not know is an unknown outcome (`progress`, settled later by query). `10000` only
//! says Alipay accepted the request: the money went back when `fund_change` is `Y`; `N` or no
//! value means "ask the refund query". The query's absent `refund_status` means the request
//! never arrived or was refused (the caller sends it again).

use serde_json::json;

use super::gateway::{self, Reply};
use super::settings::Settings;
use super::AliPay;
use crate::domain::{Amount, Order, Refund, RefundAnswer};
use crate::sys::{self, UtcOffset};

pub const REFUND: &str = "alipay.trade.refund";
pub const REFUND_QUERY: &str = "alipay.trade.fastpay.refund.query";

/// Alipay's rule: refunds of one trade at least 3 s apart.
pub const SEND_SPACING_MS: i64 = 3_000;
/// Alipay's advice: query a refund no sooner than 10 s after it was sent.
pub const QUERY_AFTER_MS: i64 = 10_000;

/// DaxPay's prefix of a refusal's message (`AlipayRefundService`).
pub const REFUSED: &str = "支付宝退款失败";

/// Codes that are a definite refusal of the request besides the `40004` business failures
/// (missing or invalid parameters, no permission, no authorisation).
const REFUSING_CODES: &[&str] = &["40001", "40002", "40006", "20001"];

impl AliPay {
    /// Calls `method` with `biz`; `Err` is the reason the outcome is unknown.
    fn refund_call(
        &self,
        app_id: &str,
        method: &str,
        biz: &serde_json::Value,
    ) -> Result<Reply, String> {
        // A refund under way is still sent and asked about when the app's channel was turned
        // off meanwhile (as a trade opened before is still closed and queried).
        let s: std::sync::Arc<Settings> = self
            .settings
            .get_any(app_id)
            .map_err(|e| format!("no {} settings: {}", super::NAME, e.message()))?;
        let reply = gateway::call(
            &self.client,
            &s,
            method,
            &biz.to_string(),
            &[],
            self.clock.now_ms(),
        )?;
        if !reply.verified {
            return Err("the reply is unsigned or its signature does not verify".into());
        }
        Ok(reply)
    }

    /// `alipay.trade.refund` of `refund` (refund-sync.md §9.2, "Refund").
    pub(super) fn send_refund(&self, order: &Order, refund: &Refund) -> RefundAnswer {
        let mut biz = json!({
            "out_trade_no": order.order_no,
            "refund_amount": refund.amount.to_yuan_fixed(),
            "out_request_no": refund.refund_no,
        });
        if let Some(reason) = refund.reason.as_deref().filter(|r| !r.is_empty()) {
            biz["refund_reason"] = json!(reason);
        }
        match self.refund_call(&order.app_id, REFUND, &biz) {
            Ok(reply) => refund_answer(&reply, &order.order_no),
            Err(why) => unknown(REFUND, &why),
        }
    }

    /// `alipay.trade.fastpay.refund.query` of `refund` (refund-sync.md §9.2, "Query").
    pub(super) fn query_refund_state(&self, order: &Order, refund: &Refund) -> RefundAnswer {
        let biz = json!({
            "out_trade_no": order.order_no,
            "out_request_no": refund.refund_no,
            "query_options": ["gmt_refund_pay"],
        });
        match self.refund_call(&order.app_id, REFUND_QUERY, &biz) {
            Ok(reply) => query_answer(&reply, &order.order_no, &refund.refund_no, refund.amount),
            Err(why) => unknown(REFUND_QUERY, &why),
        }
    }
}

fn unknown(method: &str, why: &str) -> RefundAnswer {
    RefundAnswer::Unknown(format!("支付宝 {method} 结果未知: {why}"))
}

/// What a verified answer to `alipay.trade.refund` means.
pub fn refund_answer(reply: &Reply, order_no: &str) -> RefundAnswer {
    debug_assert!(reply.verified);
    match reply.str("code") {
        Some("10000") => {
            if let Some(answer) = other_trade(reply, order_no) {
                return answer;
            }
            match reply.str("fund_change") {
                Some("Y") => RefundAnswer::Success {
                    out_refund_no: None,
                    finish_time: reply.str("gmt_refund_pay").and_then(alipay_time),
                },
                // Accepted (or a repeat of a refund already done): the query says how it ended.
                _ => RefundAnswer::Processing {
                    out_refund_no: None,
                },
            }
        }
        Some("40004") => match reply.str("sub_code") {
            // "当前请求的退款可能成功也可能失败": retry with the same parameters, or query.
            Some("ACQ.SYSTEM_ERROR") => unknown(REFUND, &reply.message()),
            // Retry later: the query finds nothing and the refund is sent again.
            Some("ACQ.REFUND_CHARGE_ERROR") => unknown(REFUND, &reply.message()),
            // This request number already refunded another amount.
            Some("ACQ.DISCORDANT_REPEAT_REQUEST") => RefundAnswer::Attention(format!(
                "支付宝: 退款请求号已用于另一金额 ({})",
                reply.message()
            )),
            _ => refused(reply),
        },
        Some(code) if REFUSING_CODES.contains(&code) => refused(reply),
        // 20000 (service unavailable) and anything this table does not know.
        _ => unknown(REFUND, &reply.message()),
    }
}

/// A definite refusal: `支付宝退款失败: <sub_msg>`.
fn refused(reply: &Reply) -> RefundAnswer {
    let text = reply.str("sub_msg").or(reply.str("msg")).unwrap_or("");
    RefundAnswer::Refused(format!("{REFUSED}: {text}"))
}

/// An answer about another trade (or request number) than the one asked about.
fn other_trade(reply: &Reply, order_no: &str) -> Option<RefundAnswer> {
    let no = reply.str("out_trade_no")?;
    (no != order_no)
        .then(|| RefundAnswer::Attention(format!("支付宝应答的交易{no}不是本订单{order_no}")))
}

/// What a verified answer to `alipay.trade.fastpay.refund.query` means.
pub fn query_answer(
    reply: &Reply,
    order_no: &str,
    refund_no: &str,
    amount: Amount,
) -> RefundAnswer {
    debug_assert!(reply.verified);
    match (reply.str("code"), reply.str("sub_code")) {
        (Some("10000"), _) => {}
        // Alipay does not know the trade: nothing to send again, an operator looks.
        (Some("40004"), Some("ACQ.TRADE_NOT_EXIST")) => {
            return RefundAnswer::Attention(format!("支付宝查询退款: 交易{order_no}不存在"))
        }
        _ => return unknown(REFUND_QUERY, &reply.message()),
    }
    if let Some(answer) = other_trade(reply, order_no) {
        return answer;
    }
    if let Some(no) = reply.str("out_request_no") {
        if no != refund_no {
            return RefundAnswer::Attention(format!(
                "支付宝应答的退款请求号{no}不是退款{refund_no}"
            ));
        }
    }
    match reply.str("refund_status") {
        // "退款请求未收到或者退款失败": the same request number is sent again.
        None => RefundAnswer::NotFound,
        Some("REFUND_SUCCESS") => match reply.str("refund_amount").map(Amount::parse_yuan) {
            Some(Ok(got)) if got == amount => RefundAnswer::Success {
                out_refund_no: None,
                finish_time: reply.str("gmt_refund_pay").and_then(alipay_time),
            },
            Some(Ok(got)) => RefundAnswer::Attention(format!(
                "支付宝退款{refund_no}的金额为{}, 本地为{}",
                got.to_yuan_fixed(),
                amount.to_yuan_fixed()
            )),
            _ => unknown(
                REFUND_QUERY,
                "REFUND_SUCCESS without a readable refund_amount",
            ),
        },
        Some(other) => unknown(REFUND_QUERY, &format!("unknown refund_status {other}")),
    }
}

/// An Alipay time (UTC+8): `yyyy-MM-dd HH:mm:ss`, with or without a fraction of a second
/// (`gmt_refund` is written `2015-04-28 15:45:57.320`).
pub fn alipay_time(text: &str) -> Option<i64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, "0"));
    let ms = sys::parse_time(whole, UtcOffset::CST)?;
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    Some(ms + millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn reply(verified: bool, fields: Value) -> Reply {
        let Value::Object(fields) = fields else {
            unreachable!()
        };
        Reply { verified, fields }
    }

    fn sent(fields: Value) -> RefundAnswer {
        refund_answer(&reply(true, fields), "P1")
    }

    fn asked(fields: Value) -> RefundAnswer {
        query_answer(&reply(true, fields), "P1", "R1", Amount(300))
    }

    fn is_unknown(a: &RefundAnswer) -> bool {
        matches!(a, RefundAnswer::Unknown(_))
    }

    #[test]
    fn refund_answers_as_the_table_says() {
        let ok = json!({"code": "10000", "msg": "Success", "out_trade_no": "P1",
                        "fund_change": "Y", "gmt_refund_pay": "2025-04-10 17:02:16"});
        assert_eq!(
            sent(ok.clone()),
            RefundAnswer::Success {
                out_refund_no: None,
                finish_time: sys::parse_time("2025-04-10 17:02:16", UtcOffset::CST),
            }
        );
        let mut no_time = ok.clone();
        no_time.as_object_mut().unwrap().remove("gmt_refund_pay");
        assert!(matches!(
            sent(no_time),
            RefundAnswer::Success {
                finish_time: None,
                ..
            }
        ));
        for fund_change in [json!("N"), Value::Null] {
            let mut v = ok.clone();
            v["fund_change"] = fund_change;
            assert_eq!(
                sent(v),
                RefundAnswer::Processing {
                    out_refund_no: None
                }
            );
        }
        let mut other = ok.clone();
        other["out_trade_no"] = json!("P2");
        assert!(matches!(sent(other), RefundAnswer::Attention(_)));
        let fail = |code: &str, sub: &str| {
            sent(
                json!({"code": code, "msg": "Business Failed", "sub_code": sub,
                        "sub_msg": "交易不存在"}),
            )
        };
        for sub in ["ACQ.SYSTEM_ERROR", "ACQ.REFUND_CHARGE_ERROR"] {
            assert!(is_unknown(&fail("40004", sub)), "{sub}");
        }
        assert!(matches!(
            fail("40004", "ACQ.DISCORDANT_REPEAT_REQUEST"),
            RefundAnswer::Attention(_)
        ));
        for (code, sub) in [
            ("40004", "ACQ.TRADE_NOT_EXIST"),
            ("40004", "ACQ.SELLER_BALANCE_NOT_ENOUGH"),
            ("40001", "isv.missing-signature"),
            ("40002", "isv.invalid-signature"),
            ("40006", "isv.insufficient-isv-permissions"),
            ("20001", "aop.invalid-auth-token"),
        ] {
            assert_eq!(
                fail(code, sub),
                RefundAnswer::Refused("支付宝退款失败: 交易不存在".into()),
                "{code} {sub}"
            );
        }
        for (code, sub) in [("20000", "isp.unknow-error"), ("40003", "x"), ("", "")] {
            assert!(is_unknown(&fail(code, sub)), "{code}");
        }
    }

    #[test]
    fn query_answers_as_the_table_says() {
        let ok = json!({"code": "10000", "msg": "Success", "out_trade_no": "P1",
                        "out_request_no": "R1", "refund_status": "REFUND_SUCCESS",
                        "refund_amount": "3.00", "gmt_refund_pay": "2025-04-10 17:02:16"});
        assert!(matches!(
            asked(ok.clone()),
            RefundAnswer::Success {
                finish_time: Some(_),
                ..
            }
        ));
        let with = |k: &str, v: Value| {
            let mut x = ok.clone();
            x[k] = v;
            x
        };
        let attention = |a: RefundAnswer| matches!(a, RefundAnswer::Attention(_));
        assert!(attention(asked(with("refund_amount", json!("3.01")))));
        assert!(attention(asked(with("out_trade_no", json!("P2")))));
        assert!(attention(asked(with("out_request_no", json!("R2")))));
        assert_eq!(
            asked(with("refund_status", Value::Null)),
            RefundAnswer::NotFound
        );
        assert!(is_unknown(&asked(with(
            "refund_status",
            json!("REFUND_PROCESSING")
        ))));
        assert!(is_unknown(&asked(with("refund_amount", Value::Null))));
        let not_exist = json!({"code": "40004", "msg": "Business Failed",
                               "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"});
        assert!(attention(asked(not_exist)));
        let busy = json!({"code": "40004", "msg": "Business Failed",
                          "sub_code": "ACQ.SYSTEM_ERROR", "sub_msg": "系统错误"});
        assert!(is_unknown(&asked(busy)));
        assert!(is_unknown(&asked(json!({"code": "20000"}))));
    }

    #[test]
    fn alipay_times_with_or_without_milliseconds() {
        let base = sys::parse_time("2015-04-28 15:45:57", UtcOffset::CST).unwrap();
        assert_eq!(alipay_time("2015-04-28 15:45:57"), Some(base));
        assert_eq!(alipay_time("2015-04-28 15:45:57.320"), Some(base + 320));
        assert_eq!(alipay_time("2015-04-28 15:45:57.3"), Some(base + 300));
        for bad in [
            "2015-04-28 15:45:57.",
            "2015-04-28 15:45:57.x",
            "2015-04-28",
            "",
        ] {
            assert_eq!(alipay_time(bad), None, "{bad}");
        }
    }
}
