//! Option values: durations, schedules, UTC offsets, whole numbers.

use std::time::Duration;

use super::UsageError;
use crate::sys::UtcOffset;

/// Parses a duration like `500ms`, `15s`, `3m` or `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 15s"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("`{text}`: the unit must be ms, s, m or h")),
    })
}

/// The `--tz-offset` value (or `UNIPAY_TZ_OFFSET`), `+08:00` when neither is given.
pub(super) fn parse_offset(given: Option<String>) -> Result<UtcOffset, UsageError> {
    let s = given.as_deref().unwrap_or("+08:00");
    UtcOffset::parse(s)
        .ok_or_else(|| UsageError(format!("--tz-offset: `{s}` is not an offset like +08:00")))
}

pub(super) fn parse_int(flag: &str, s: &str, min: i64) -> Result<i64, UsageError> {
    match s.parse::<i64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(UsageError(format!(
            "{flag}: `{s}` is not a whole number ≥ {min}"
        ))),
    }
}

/// Parses a schedule like `15s,15s,30s,3m,1h` (see `parse_duration`).
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let out = text
        .split(',')
        .map(|part| parse_duration(part.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if out.is_empty() || out.len() > 100 {
        return Err("the schedule needs 1 to 100 durations".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse() {
        assert_eq!(
            parse_schedule("1s,1s,2s").unwrap(),
            vec![
                Duration::from_secs(1),
                Duration::from_secs(1),
                Duration::from_secs(2)
            ]
        );
        assert_eq!(
            parse_schedule("500ms,3m,1h").unwrap()[2],
            Duration::from_secs(3600)
        );
        assert!(parse_schedule("").is_err());
        assert!(parse_schedule("1d").is_err());
        assert!(parse_schedule("x").is_err());
    }
}
