//! The two inputs unipay takes from the outside world besides requests: the time and
//! randomness. Both come in through small traits so that tests can drive them; everything else
//! in the program is a function of its inputs and the database.
//!
//! This module also owns the one wall-clock text format of the protocol, `yyyy-MM-dd HH:mm:ss`
//! in a fixed UTC offset.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time, in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A source of random bytes, good enough for secrets and tokens.
pub trait Random: Send + Sync {
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's random source.
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        // Bytes are drawn from the OS a block at a time per thread: a trace id per request
        // would otherwise cost a system call per request.
        thread_local! {
            static POOL: std::cell::RefCell<(Vec<u8>, usize)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
        }
        const BLOCK: usize = 512;
        POOL.with(|pool| {
            let (bytes, used) = &mut *pool.borrow_mut();
            let mut filled = 0;
            while filled < buf.len() {
                if *used == bytes.len() {
                    bytes.resize(BLOCK, 0);
                    getrandom::getrandom(bytes).expect("the operating system has a random source");
                    *used = 0;
                }
                let n = (buf.len() - filled).min(bytes.len() - *used);
                buf[filled..filled + n].copy_from_slice(&bytes[*used..*used + n]);
                // Bytes handed out are erased from the pool.
                bytes[*used..*used + n].fill(0);
                *used += n;
                filled += n;
            }
        });
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `len` random characters from `[A-Za-z0-9]` (trace ids, secrets, tokens).
pub fn random_alnum(random: &dyn Random, len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    // A few more bytes than characters: about 3 % of bytes are rejected below.
    let want = (len + len / 8 + 4).min(buf.len());
    while out.len() < len {
        random.fill(&mut buf[..want]);
        for &b in &buf[..want] {
            // 62 * 4 = 248: rejecting 248..=255 keeps every character equally likely.
            if b < 248 && out.len() < len {
                out.push(ALNUM[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// A fixed offset from UTC, in seconds, as given by `--tz-offset +08:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcOffset(pub i32);

impl UtcOffset {
    /// China Standard Time, where DaxPay deployments run.
    pub const CST: UtcOffset = UtcOffset(8 * 3600);

    /// Parses `+08:00`, `-05:30`, `+0800`, `Z` or `+8`.
    pub fn parse(s: &str) -> Option<UtcOffset> {
        if s == "Z" || s == "z" {
            return Some(UtcOffset(0));
        }
        let (sign, rest) = match s.as_bytes().first()? {
            b'+' => (1, &s[1..]),
            b'-' => (-1, &s[1..]),
            _ => return None,
        };
        let (h, m) = match rest.split_once(':') {
            Some((h, m)) => (h, m),
            None if rest.len() == 4 => rest.split_at(2),
            None => (rest, "0"),
        };
        if h.is_empty() || h.len() > 2 || m.is_empty() || m.len() > 2 {
            return None;
        }
        let h: i32 = h.parse().ok()?;
        let m: i32 = m.parse().ok()?;
        if h > 14 || m > 59 {
            return None;
        }
        Some(UtcOffset(sign * (h * 3600 + m * 60)))
    }
}

impl std::fmt::Display for UtcOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { '-' } else { '+' };
        let a = self.0.abs();
        write!(f, "{}{:02}:{:02}", sign, a / 3600, a % 3600 / 60)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The date of a day number since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The fields of a local time: year, month, day, hour, minute, second.
pub fn local_fields(ms: i64, offset: UtcOffset) -> [i64; 6] {
    let secs = ms.div_euclid(1000) + offset.0 as i64;
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (y, mo, d) = civil_from_days(days);
    [y, mo, d, sod / 3600, sod % 3600 / 60, sod % 60]
}

/// `yyyy-MM-dd HH:mm:ss` of an instant, seen in `offset`.
pub fn format_time(ms: i64, offset: UtcOffset) -> String {
    let [y, mo, d, h, mi, s] = local_fields(ms, offset);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// `yyyyMMddHHmmss` of an instant, seen in `offset` (order numbers).
pub fn format_compact(ms: i64, offset: UtcOffset) -> String {
    let [y, mo, d, h, mi, s] = local_fields(ms, offset);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// Reads a strict `yyyy-MM-dd HH:mm:ss` in `offset` as milliseconds since the epoch.
pub fn parse_time(s: &str, offset: UtcOffset) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = &b[r];
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] {
        return None;
    }
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset.0 as i64;
    Some(secs * 1000)
}

/// RFC 3339 of an instant in `offset`, to the second: `2018-06-08T10:34:56+08:00`.
pub fn format_rfc3339(ms: i64, offset: UtcOffset) -> String {
    let [y, mo, d, h, mi, s] = local_fields(ms, offset);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{offset}")
}

/// Reads an RFC 3339 time with any offset (`+08:00`, `Z`), fractions of a second ignored.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    if s.len() < 20 || s.as_bytes()[10] != b'T' && s.as_bytes()[10] != b't' {
        return None;
    }
    let (date, rest) = s.split_at(10);
    let rest = &rest[1..];
    if rest.len() < 9 {
        return None;
    }
    let (clock, mut zone) = rest.split_at(8);
    if let Some(frac) = zone.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        zone = &frac[digits..];
    }
    let offset = UtcOffset::parse(zone).filter(|_| zone.len() == 1 || zone.len() == 6)?;
    parse_time(&format!("{date} {clock}"), offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips_in_cst() {
        let ms = parse_time("2025-04-10 17:02:14", UtcOffset::CST).unwrap();
        assert_eq!(ms, 1_744_275_734_000);
        assert_eq!(format_time(ms, UtcOffset::CST), "2025-04-10 17:02:14");
        assert_eq!(format_time(ms, UtcOffset(0)), "2025-04-10 09:02:14");
        assert_eq!(format_compact(ms, UtcOffset::CST), "20250410170214");
    }

    #[test]
    fn bad_times_are_refused() {
        for s in [
            "2025-02-29 00:00:00",
            "2025-4-10 17:02:14",
            "2025-04-10T17:02:14",
            "2025-04-10 24:00:00",
            "2025-13-01 00:00:00",
            "2025-04-10 17:02:1x",
            "",
        ] {
            assert_eq!(parse_time(s, UtcOffset::CST), None, "{s}");
        }
        assert!(parse_time("2024-02-29 23:59:59", UtcOffset::CST).is_some());
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(UtcOffset::parse("+08:00"), Some(UtcOffset::CST));
        assert_eq!(UtcOffset::parse("-05:30"), Some(UtcOffset(-19800)));
        assert_eq!(UtcOffset::parse("+0800"), Some(UtcOffset::CST));
        assert_eq!(UtcOffset::parse("Z"), Some(UtcOffset(0)));
        assert_eq!(UtcOffset::parse("08:00"), None);
        assert_eq!(UtcOffset::parse("+25:00"), None);
        assert_eq!(UtcOffset::CST.to_string(), "+08:00");
    }

    #[test]
    fn random_alnum_has_the_right_alphabet() {
        let s = random_alnum(&OsRandom, 100);
        assert_eq!(s.len(), 100);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn rfc3339_in_any_offset() {
        let ms = parse_time("2018-06-08 10:34:56", UtcOffset::CST).unwrap();
        assert_eq!(
            format_rfc3339(ms, UtcOffset::CST),
            "2018-06-08T10:34:56+08:00"
        );
        assert_eq!(parse_rfc3339("2018-06-08T10:34:56+08:00"), Some(ms));
        assert_eq!(parse_rfc3339("2018-06-08T02:34:56Z"), Some(ms));
        assert_eq!(parse_rfc3339("2018-06-08T02:34:56.123Z"), Some(ms));
        assert_eq!(parse_rfc3339("2018-06-07T21:34:56-05:00"), Some(ms));
        for bad in [
            "2018-06-08 10:34:56",
            "2018-06-08T10:34:56",
            "2018-06-08T10:34:56+8",
            "x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
