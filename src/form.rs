//! Query strings, form bodies, cookies and percent-encoding (pure functions): the console reads
//! its inputs and builds its links here, and channels read and write their form-encoded
//! messages here.

/// The `name=value` pairs of a query string or an `application/x-www-form-urlencoded` body, in
/// order: `+` is a space, `%XX` a byte, bytes that are not UTF-8 become U+FFFD, and a pair
/// without `=` has an empty value. Empty pairs (`a=1&&b=2`) are skipped.
pub fn parse(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name, true), decode(value, true))
        })
        .collect()
}

/// The first value of `name` in `pairs`.
pub fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Percent-decodes `text`; with `plus_is_space` a `+` is a space (query strings and forms, not
/// paths). A `%` not followed by two hex digits stays as it is.
pub fn decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes everything but the unreserved characters of RFC 3986 (`A-Z a-z 0-9 - . _
/// ~`), so the result is safe in a path segment, a query value and an HTML attribute.
pub fn encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
    out
}

/// A query string of the non-empty `pairs`, encoded, without the leading `?`.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&encode(name));
        out.push('=');
        out.push_str(&encode(value));
    }
    out
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`).
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (n, v) = part.trim().split_once('=')?;
        (n.trim() == name).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_plus_and_percent() {
        assert_eq!(
            parse("q=P2025+01%2F02&status=close&empty=&flag&&x=%E6%94%AF%E4%BB%98"),
            vec![
                ("q".into(), "P2025 01/02".into()),
                ("status".into(), "close".into()),
                ("empty".into(), "".into()),
                ("flag".into(), "".into()),
                ("x".into(), "支付".into()),
            ]
        );
        let pairs = parse("from=2025-01-01+00%3A00%3A00&a%20b=c%2Bd");
        assert_eq!(get(&pairs, "from"), Some("2025-01-01 00:00:00"));
        assert_eq!(get(&pairs, "a b"), Some("c+d"));
        assert_eq!(get(&pairs, "missing"), None);
    }

    #[test]
    fn broken_escapes_stay_literal() {
        assert_eq!(decode("100%", true), "100%");
        assert_eq!(decode("%4", true), "%4");
        assert_eq!(decode("%zz%41", true), "%zzA");
        assert_eq!(decode("%FF", true), "\u{FFFD}");
        assert_eq!(decode("a+b", false), "a+b");
        assert_eq!(parse(""), vec![]);
    }

    #[test]
    fn encode_round_trips() {
        for s in ["P2025", "a b&c=d/é<\"'>", "支付关闭", "%+", ""] {
            assert_eq!(decode(&encode(s), true), s);
            assert_eq!(decode(&encode(s), false), s);
        }
        assert_eq!(encode("a b/<"), "a%20b%2F%3C");
        assert_eq!(
            query(&[
                ("status", "close"),
                ("q", ""),
                ("from", "2025-01-01 00:00:00")
            ]),
            "status=close&from=2025-01-01%2000%3A00%3A00"
        );
    }

    #[test]
    fn cookies_are_found_by_name() {
        let h = "theme=dark; unipay_admin=abc123 ;other=x=y";
        assert_eq!(cookie(h, "unipay_admin"), Some("abc123"));
        assert_eq!(cookie(h, "other"), Some("x=y"));
        assert_eq!(cookie(h, "unipay"), None);
        assert_eq!(cookie("", "unipay_admin"), None);
    }
}
