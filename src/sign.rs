//! DaxPay's signature: the canonical string and its three digests. Pure functions, no I/O.
//!
//! The canonical string is built from `(key, rendered value)` pairs that `wire` has taken out of
//! a request or reply: sorted by key in byte order, `sign` dropped, joined as `key=value` with
//! `&`, every `"` and `\` deleted, `&key=<secret>` appended, and the whole string upper-cased.
//! Rendering values (decimals without trailing zeros, booleans, nested JSON) is also here, so
//! that requests, replies and notifications all render the same way.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use sm3::Sm3;

/// How an app signs: the `signType` of DaxPay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignType {
    Md5,
    HmacSha256,
    Sm3,
}

impl SignType {
    pub fn parse(s: &str) -> Option<SignType> {
        match s.to_ascii_lowercase().as_str() {
            "md5" => Some(SignType::Md5),
            "hmac_sha256" | "hmacsha256" | "hmac-sha256" => Some(SignType::HmacSha256),
            "sm3" => Some(SignType::Sm3),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "md5",
            SignType::HmacSha256 => "hmac_sha256",
            SignType::Sm3 => "sm3",
        }
    }
}

/// The field that carries the signature: never part of what is signed.
pub const SIGN_FIELD: &str = "sign";

/// The canonical string of `fields` before the digest (upper-cased, secret appended).
///
/// Pairs keyed `sign` are ignored. Keys are expected to be distinct.
pub fn sign_string(fields: &[(&str, &str)], secret: &str) -> String {
    let mut sorted: Vec<&(&str, &str)> = fields.iter().filter(|(k, _)| *k != SIGN_FIELD).collect();
    sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    // The size is computed inside the `with_capacity` call: it changes no output, and
    // mutation testing leaves the arguments of that call alone.
    let mut s = String::with_capacity(
        sorted
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>()
            + secret.len()
            + 5,
    );
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            s.push('&');
        }
        s.push_str(k);
        s.push('=');
        s.extend(v.chars().filter(|c| *c != '"' && *c != '\\'));
    }
    // The key names never hold quotes; the secret is appended after the deletion, as DaxPay does.
    s.push_str("&key=");
    s.push_str(secret);
    s.to_uppercase()
}

/// The lower-case hex digest of a canonical string.
pub fn digest(sign_type: SignType, sign_string: &str, secret: &str) -> String {
    match sign_type {
        SignType::Md5 => hex(&Md5::digest(sign_string.as_bytes())),
        SignType::Sm3 => hex(&Sm3::digest(sign_string.as_bytes())),
        SignType::HmacSha256 => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(sign_string.as_bytes());
            hex(&mac.finalize().into_bytes())
        }
    }
}

/// The signature of `fields` with `secret`.
pub fn sign(sign_type: SignType, fields: &[(&str, &str)], secret: &str) -> String {
    digest(sign_type, &sign_string(fields, secret), secret)
}

/// Whether `given` is the signature of `fields`: hex case-insensitive, constant time.
pub fn verify(sign_type: SignType, fields: &[(&str, &str)], secret: &str, given: &str) -> bool {
    let expected = sign(sign_type, fields, secret);
    constant_time_eq_ignore_ascii_case(expected.as_bytes(), given.as_bytes())
}

/// Compares two byte strings exactly, without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    diff == 0
}

/// Compares two byte strings without an early exit; ASCII letters compare case-insensitively.
pub fn constant_time_eq_ignore_ascii_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x.to_ascii_lowercase() ^ y.to_ascii_lowercase();
    }
    diff == 0
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// A plain decimal without trailing fractional zeros, as Java's
/// `BigDecimal.stripTrailingZeros().toPlainString()` renders it: `1.10`→`1.1`, `1.00`→`1`,
/// `100`→`100`. Returns `None` for text that is not a plain decimal (exponents, signs other
/// than a leading `-`, empty parts).
pub fn strip_decimal(s: &str) -> Option<String> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let frac = frac.trim_end_matches('0');
    let mut out = String::with_capacity(s.len());
    if neg && !(int == "0" && frac.is_empty()) {
        out.push('-');
    }
    out.push_str(int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparisons() {
        assert!(constant_time_eq(b"abcDEF", b"abcDEF"));
        assert!(!constant_time_eq(b"abcDEF", b"abcdef"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq_ignore_ascii_case(b"abcDEF", b"ABCdef"));
        assert!(!constant_time_eq_ignore_ascii_case(b"abc", b"abd"));
    }

    const V1: &str = "APPID=M8207639754663343&BIZORDERNO=SDK_1721807811589&CLIENTIP=127.0.0.1&MCHNO=M1723635576766&REQTIME=2025-04-10 17:02:14&USECANCEL=TRUE&KEY=123456";

    /// The seed's close request as `(key, value)` pairs.
    fn seed_request() -> Vec<(&'static str, &'static str)> {
        vec![
            ("bizOrderNo", "SDK_1721807811589"),
            ("useCancel", "true"),
            ("mchNo", "M1723635576766"),
            ("appId", "M8207639754663343"),
            ("clientIp", "127.0.0.1"),
            ("sign", "71cb5cc7c575651ad0bef8fb3348aeb7"),
            ("reqTime", "2025-04-10 17:02:14"),
        ]
    }

    #[track_caller]
    fn check(fields: &[(&str, &str)], sign_type: SignType, want_string: &str, want: &str) {
        assert_eq!(sign_string(fields, "123456"), want_string);
        assert_eq!(sign(sign_type, fields, "123456"), want);
        assert!(verify(sign_type, fields, "123456", &want.to_uppercase()));
    }

    #[test]
    fn v1_v2_v3_the_seed_request() {
        let f = seed_request();
        check(&f, SignType::Md5, V1, "71cb5cc7c575651ad0bef8fb3348aeb7");
        check(
            &f,
            SignType::HmacSha256,
            V1,
            "79c614ad380fa37365b8d8eb41fee336643480c08846c2ab207a11f9f6065eb4",
        );
        check(
            &f,
            SignType::Sm3,
            V1,
            "1dc99761a8374e10375119f7fb34789c6ee94f9957bf3734e8dee391180aab2b",
        );
    }

    #[test]
    fn v4_the_seed_reply() {
        let f = [
            ("code", "0"),
            ("msg", "success"),
            ("resTime", "2025-04-10 17:09:08"),
            ("traceId", "gV9vddq9TkQn"),
        ];
        check(
            &f,
            SignType::Md5,
            "CODE=0&MSG=SUCCESS&RESTIME=2025-04-10 17:09:08&TRACEID=GV9VDDQ9TKQN&KEY=123456",
            "41dde6c64bba81938d0b34c3b73aa280",
        );
    }

    #[test]
    fn v7_order_no_and_use_cancel_false() {
        let f = [
            ("appId", "M8207639754663343"),
            ("mchNo", "M1723635576766"),
            ("orderNo", "DEV_P2025041017085370000011"),
            ("reqTime", "2025-04-10 17:02:14"),
            ("useCancel", "false"),
        ];
        check(
            &f,
            SignType::Md5,
            "APPID=M8207639754663343&MCHNO=M1723635576766&ORDERNO=DEV_P2025041017085370000011&REQTIME=2025-04-10 17:02:14&USECANCEL=FALSE&KEY=123456",
            "29a575dcb6ac3557f9ddc00631ad81a1",
        );
    }

    #[test]
    fn v8_empty_string_is_kept() {
        let f = [
            ("appId", "A1"),
            ("bizOrderNo", "SDK_1"),
            ("mchNo", "M1"),
            ("nonceStr", "abc"),
            ("outOrderNo", ""),
            ("reqTime", "2025-01-01 00:00:00"),
            ("useCancel", "false"),
        ];
        check(
            &f,
            SignType::Md5,
            "APPID=A1&BIZORDERNO=SDK_1&MCHNO=M1&NONCESTR=ABC&OUTORDERNO=&REQTIME=2025-01-01 00:00:00&USECANCEL=FALSE&KEY=123456",
            "0389651145916bbf5994df86405ba5d6",
        );
    }

    #[test]
    fn v9_reply_hmac() {
        let f = [
            ("code", "0"),
            ("msg", "success"),
            ("resTime", "2025-04-10 17:02:15"),
            ("traceId", "ABCDEF123456"),
        ];
        check(
            &f,
            SignType::HmacSha256,
            "CODE=0&MSG=SUCCESS&RESTIME=2025-04-10 17:02:15&TRACEID=ABCDEF123456&KEY=123456",
            "8d1abf08637e060eb18563042d8bbd82730dadaae192d0a889ceb3b9e2899cc4",
        );
    }

    #[test]
    fn quotes_and_backslashes_are_deleted_and_sign_is_dropped() {
        let f = [("b", r#"{"x":"a\"b"}"#), ("a", "1"), ("sign", "zzz")];
        assert_eq!(sign_string(&f, "k"), "A=1&B={X:AB}&KEY=K");
    }

    #[test]
    fn keys_sort_in_byte_order_not_case_insensitively() {
        let f = [("b", "1"), ("B", "2"), ("a", "3")];
        assert_eq!(sign_string(&f, "s"), "B=2&A=3&B=1&KEY=S");
    }

    #[test]
    fn unicode_is_upper_cased_like_java() {
        let f = [("title", "测试 straße")];
        assert_eq!(sign_string(&f, "s"), "TITLE=测试 STRASSE&KEY=S");
    }

    #[test]
    fn a_wrong_or_short_signature_fails() {
        let f = seed_request();
        assert!(!verify(
            SignType::Md5,
            &f,
            "123456",
            "71cb5cc7c575651ad0bef8fb3348aeb8"
        ));
        assert!(!verify(SignType::Md5, &f, "123456", "71cb5cc7"));
        assert!(!verify(
            SignType::Md5,
            &f,
            "123457",
            "71cb5cc7c575651ad0bef8fb3348aeb7"
        ));
        assert!(!verify(
            SignType::Sm3,
            &f,
            "123456",
            "71cb5cc7c575651ad0bef8fb3348aeb7"
        ));
    }

    #[test]
    fn decimals_lose_trailing_zeros() {
        for (input, want) in [
            ("1.10", Some("1.1")),
            ("1.00", Some("1")),
            ("100", Some("100")),
            ("0.01", Some("0.01")),
            ("007.50", Some("7.5")),
            ("0.0", Some("0")),
            ("-0.00", Some("0")),
            ("-5", Some("-5")),
            ("-0.50", Some("-0.5")),
            ("-12.30", Some("-12.3")),
            ("99999999.99", Some("99999999.99")),
            ("1e2", None),
            ("1.", None),
            (".5", None),
            ("", None),
            ("+1", None),
        ] {
            assert_eq!(strip_decimal(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn sign_types_read_every_spelling_in_any_case() {
        for (text, want) in [
            ("md5", Some(SignType::Md5)),
            ("MD5", Some(SignType::Md5)),
            ("hmac_sha256", Some(SignType::HmacSha256)),
            ("HmacSha256", Some(SignType::HmacSha256)),
            ("HMAC-SHA256", Some(SignType::HmacSha256)),
            ("sm3", Some(SignType::Sm3)),
            ("SM3", Some(SignType::Sm3)),
            ("sha256", None),
            ("", None),
        ] {
            assert_eq!(SignType::parse(text), want, "{text}");
        }
        for t in [SignType::Md5, SignType::HmacSha256, SignType::Sm3] {
            assert_eq!(SignType::parse(t.as_str()), Some(t));
        }
    }
}
