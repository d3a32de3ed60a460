//! WeChat Pay refunds, API v3 (refund-sync.md §9.3).
//!
//! - send: `POST /v3/refund/domestic/refunds` `{out_trade_no, out_refund_no, reason?,
//!   notify_url, amount: {refund, total, currency}}`: `out_refund_no` is unipay's `refundNo`
//!   (WeChat refunds one `out_refund_no` at most once, so a send again is safe), `reason` cut at
//!   a character boundary within 80 UTF-8 bytes, the notifications to the payment callback path.
//! - query: `GET /v3/refund/domestic/refunds/{out_refund_no}`; a verified `404
//!   RESOURCE_NOT_EXISTS` means WeChat never took it (sent again, §7 step 3).
//!
//! A verified 200 is read by its `status` (`SUCCESS`, `PROCESSING`, `CLOSED`, `ABNORMAL`), after
//! checking that it is about this refund: its `out_refund_no`, its order and its amount (else an
//! operator looks). Only a verified refusal of the table of §9.3 fails a refund; a 429, a 5xx, no
//! answer or an answer that does not verify leave its outcome unknown. `outRefundNo` is always
//! WeChat's `refund_id`.

use serde_json::{json, Value};

use super::api::Answer;
use super::{WechatPay, NAME};
use crate::domain::{Order, Refund, RefundAnswer};
use crate::form;
use crate::sys;

/// Where refunds are sent and asked about.
pub const REFUND_PATH: &str = "/v3/refund/domestic/refunds";

/// WeChat's rule: refunds of one order at least a minute apart.
pub const SEND_SPACING_MS: i64 = 60_000;

/// WeChat's advice: ask about a refund about a minute after it was sent.
pub const FIRST_QUERY_MS: i64 = 60_000;

/// WeChat's `reason` is `string[1,80]`; unipay counts bytes, to be safe.
pub const REASON_MAX_BYTES: usize = 80;

/// The prefix of a refusal's `errorMsg` (DaxPay's words).
pub const REFUSED_PREFIX: &str = "微信退款V3失败";

/// `reason` cut at a character boundary within `REASON_MAX_BYTES` UTF-8 bytes.
pub fn cut_reason(reason: &str) -> &str {
    if reason.len() <= REASON_MAX_BYTES {
        return reason;
    }
    let mut end = REASON_MAX_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// The body of a refund request: no JSON null anywhere.
/// `total` is the order's amount in fen.
pub fn request_body(notify_url: &str, total: i64, refund: &Refund) -> Value {
    let mut body = json!({
        "out_trade_no": refund.order_no,
        "out_refund_no": refund.refund_no,
        "notify_url": notify_url,
        "amount": { "refund": refund.amount.0, "total": total, "currency": "CNY" },
    });
    if let Some(reason) = refund.reason.as_deref().map(cut_reason) {
        if !reason.is_empty() {
            body["reason"] = json!(reason);
        }
    }
    body
}

/// Whether a verified error answer to a send is a definite refusal (§9.3's table).
fn is_refusal(status: u16, code: &str) -> bool {
    matches!(
        (status, code),
        (400, "PARAM_ERROR" | "INVALID_REQUEST")
            | (401, "SIGN_ERROR")
            | (403, "NOT_ENOUGH" | "USER_ACCOUNT_ABNORMAL" | "NO_AUTH")
            | (404, "RESOURCE_NOT_EXISTS" | "MCH_NOT_EXISTS")
    )
}

/// Sends `refund` of `order` and reads the answer.
pub(super) fn send(wx: &WechatPay, order: &Order, refund: &Refund) -> RefundAnswer {
    let s = match wx.settings.get_any(&order.app_id) {
        Ok(s) => s,
        Err(e) => return unknown(&format!("no {NAME} settings: {}", e.message())),
    };
    let body = request_body(&wx.notify_url(&order.app_id), order.amount.0, refund);
    let answer = match wx.call(&s, "POST", REFUND_PATH, Some(&body)) {
        Ok(answer) => answer,
        Err(why) => return unknown(&why),
    };
    if let Some(why) = answer.unverified {
        return unknown(&format!("the reply does not verify: {why}"));
    }
    match (answer.status, answer.code()) {
        (200, _) => read(&answer, refund),
        (status, Some(code)) if is_refusal(status, code) => {
            let message = answer.str("message").unwrap_or(code);
            RefundAnswer::Refused(format!("{REFUSED_PREFIX}: {message}"))
        }
        // 429 FREQUENCY_LIMITED (not taken: sent again later), 5xx (maybe taken: asked about),
        // and anything else.
        _ => unknown(&answer.message()),
    }
}

/// Asks how `refund` stands.
pub(super) fn query(wx: &WechatPay, order: &Order, refund: &Refund) -> RefundAnswer {
    let s = match wx.settings.get_any(&order.app_id) {
        Ok(s) => s,
        Err(e) => return unknown(&format!("no {NAME} settings: {}", e.message())),
    };
    let path = format!("{REFUND_PATH}/{}", form::encode(&refund.refund_no));
    let answer = match wx.call(&s, "GET", &path, None) {
        Ok(answer) => answer,
        Err(why) => return unknown(&why),
    };
    if let Some(why) = answer.unverified {
        return unknown(&format!("the reply does not verify: {why}"));
    }
    match (answer.status, answer.code()) {
        (200, _) => read(&answer, refund),
        (404, Some("RESOURCE_NOT_EXISTS")) => RefundAnswer::NotFound,
        _ => unknown(&answer.message()),
    }
}

/// A verified 200 with a Refund object, about `refund`.
fn read(answer: &Answer, refund: &Refund) -> RefundAnswer {
    let json = &answer.json;
    let same = answer.str("out_refund_no") == Some(refund.refund_no.as_str())
        && answer.str("out_trade_no") == Some(refund.order_no.as_str())
        && json.pointer("/amount/refund").and_then(Value::as_i64) == Some(refund.amount.0);
    if !same {
        return RefundAnswer::Attention(format!(
            "微信退款{}的退款单号、订单或金额与本地不符",
            refund.refund_no
        ));
    }
    let out_refund_no = answer.str("refund_id").map(str::to_string);
    match answer.str("status") {
        Some("SUCCESS") => RefundAnswer::Success {
            out_refund_no,
            finish_time: answer.str("success_time").and_then(sys::parse_rfc3339),
        },
        Some("PROCESSING") => RefundAnswer::Processing { out_refund_no },
        Some("CLOSED") => RefundAnswer::Closed { out_refund_no },
        Some("ABNORMAL") => RefundAnswer::Abnormal { out_refund_no },
        other => unknown(&format!(
            "unknown refund status {}",
            other.unwrap_or("(none)")
        )),
    }
}

fn unknown(why: &str) -> RefundAnswer {
    RefundAnswer::Unknown(format!("微信退款结果未知: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Amount, RefundStatus};

    #[test]
    fn reasons_are_cut_at_a_character_boundary_within_80_bytes() {
        assert_eq!(cut_reason("退货"), "退货");
        let ascii = "a".repeat(81);
        assert_eq!(cut_reason(&ascii), &ascii[..80]);
        assert_eq!(cut_reason(&ascii[..80]).len(), 80);
        // 27 characters of 3 bytes: 81 bytes; 26 of them fit (78 bytes).
        let han = "退".repeat(27);
        assert_eq!(cut_reason(&han), "退".repeat(26));
        // 79 ASCII bytes and a 3-byte character: the character does not fit.
        let mixed = format!("{}退", "a".repeat(79));
        assert_eq!(cut_reason(&mixed), "a".repeat(79));
        // A 4-byte character across the limit.
        let emoji = format!("{}😀x", "a".repeat(78));
        assert_eq!(cut_reason(&emoji), "a".repeat(78));
    }

    fn refund(reason: Option<&str>) -> Refund {
        Refund {
            id: 1,
            refund_no: "R1".into(),
            app_id: "A".into(),
            mch_no: "M".into(),
            order_id: 1,
            order_no: "P1".into(),
            biz_order_no: "B1".into(),
            out_order_no: None,
            channel: NAME.into(),
            order_amount: Amount(1000),
            title: "t - 退款".into(),
            biz_refund_no: "BR1".into(),
            amount: Amount(300),
            reason: reason.map(str::to_string),
            attach: None,
            notify_url: None,
            extra_param: None,
            client_ip: None,
            req_time: None,
            status: RefundStatus::Progress,
            out_refund_no: None,
            finish_time: None,
            error_msg: None,
            sends: 1,
            last_send_at: None,
            unknown_sends: 0,
            checks: 0,
            next_check_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn answer(status: u16, json: Value) -> Answer {
        Answer {
            status,
            unverified: None,
            json,
        }
    }

    #[test]
    fn answers_are_read_by_status_and_checked_against_the_refund() {
        let r = refund(None);
        let obj = |status: &str, amount: i64, trade: &str| {
            json!({"refund_id": "50000000382019052709732678859", "out_refund_no": "R1",
                   "out_trade_no": trade, "status": status,
                   "success_time": "2020-12-01T16:18:12+08:00",
                   "amount": {"refund": amount, "total": 1000, "currency": "CNY"}})
        };
        let id = Some("50000000382019052709732678859".to_string());
        assert_eq!(
            read(&answer(200, obj("SUCCESS", 300, "P1")), &r),
            RefundAnswer::Success {
                out_refund_no: id.clone(),
                finish_time: sys::parse_rfc3339("2020-12-01T16:18:12+08:00"),
            }
        );
        assert_eq!(
            read(&answer(200, obj("PROCESSING", 300, "P1")), &r),
            RefundAnswer::Processing {
                out_refund_no: id.clone()
            }
        );
        assert_eq!(
            read(&answer(200, obj("CLOSED", 300, "P1")), &r),
            RefundAnswer::Closed {
                out_refund_no: id.clone()
            }
        );
        assert_eq!(
            read(&answer(200, obj("ABNORMAL", 300, "P1")), &r),
            RefundAnswer::Abnormal { out_refund_no: id }
        );
        assert!(matches!(
            read(&answer(200, obj("WHAT", 300, "P1")), &r),
            RefundAnswer::Unknown(_)
        ));
        assert!(matches!(
            read(&answer(200, obj("SUCCESS", 301, "P1")), &r),
            RefundAnswer::Attention(_)
        ));
        assert!(matches!(
            read(&answer(200, obj("SUCCESS", 300, "P2")), &r),
            RefundAnswer::Attention(_)
        ));
        let mut other = obj("SUCCESS", 300, "P1");
        other["out_refund_no"] = json!("R2");
        assert!(matches!(
            read(&answer(200, other), &r),
            RefundAnswer::Attention(_)
        ));
    }

    #[test]
    fn the_request_body_has_no_null() {
        let body = request_body("http://x/callback/wechat_pay/A", 1000, &refund(None));
        assert_eq!(
            body,
            json!({"out_trade_no": "P1", "out_refund_no": "R1",
                   "notify_url": "http://x/callback/wechat_pay/A",
                   "amount": {"refund": 300, "total": 1000, "currency": "CNY"}})
        );
        let body = request_body("u", 1000, &refund(Some("")));
        assert!(body.get("reason").is_none());
        let body = request_body("u", 1000, &refund(Some("退货")));
        assert_eq!(body["reason"], "退货");
        assert!(is_refusal(403, "NOT_ENOUGH") && !is_refusal(429, "FREQUENCY_LIMITED"));
        assert!(!is_refusal(500, "SYSTEM_ERROR") && !is_refusal(400, "SYSTEM_ERROR"));
    }
}
