//! The commands an operator runs against a database, beside a server or instead of it:
//! `app list`, `order attention`, `refund list`, `notify list|resend`, `backup`,
//! `healthcheck`.

use super::*;

pub(super) fn parse_app_list(args: &mut Args) -> Result<Command, UsageError> {
    let mut db = env("UNIPAY_DB");
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "--db" => db = Some(args.value("--db", inline)?),
            "-h" | "--help" => return Ok(Command::Help(APP_HELP)),
            other => return Err(unknown(other, "app list")),
        }
    }
    Ok(Command::AppList {
        db: PathBuf::from(db.ok_or_else(|| UsageError("--db PATH is required".into()))?),
    })
}

pub(super) fn parse_order_attention(args: &mut Args) -> Result<Command, UsageError> {
    let mut db = env("UNIPAY_DB");
    let mut offset = env("UNIPAY_TZ_OFFSET");
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "--db" => db = Some(args.value("--db", inline)?),
            "--tz-offset" => offset = Some(args.value("--tz-offset", inline)?),
            "-h" | "--help" => return Ok(Command::Help(ORDER_HELP)),
            other => return Err(unknown(other, "order attention")),
        }
    }
    let db = PathBuf::from(db.ok_or_else(|| UsageError("--db PATH is required".into()))?);
    let offset = parse_offset(offset)?;
    Ok(Command::OrderAttention { db, offset })
}

pub(super) fn parse_refund_list(args: &mut Args) -> Result<Command, UsageError> {
    let mut db = env("UNIPAY_DB");
    let mut status = None;
    let mut offset = env("UNIPAY_TZ_OFFSET");
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "--db" => db = Some(args.value("--db", inline)?),
            "--tz-offset" => offset = Some(args.value("--tz-offset", inline)?),
            "--status" => {
                let s = args.value("--status", inline)?;
                status = Some(crate::domain::RefundStatus::parse(&s).ok_or_else(|| {
                    UsageError(format!(
                        "--status: `{s}` is not one of progress, success, close, fail"
                    ))
                })?);
            }
            "-h" | "--help" => return Ok(Command::Help(REFUND_HELP)),
            other => return Err(unknown(other, "refund list")),
        }
    }
    Ok(Command::RefundList {
        db: PathBuf::from(
            db.filter(|d| !d.is_empty())
                .ok_or_else(|| UsageError("--db PATH is required".into()))?,
        ),
        status,
        offset: parse_offset(offset)?,
    })
}

pub(super) fn parse_backup(args: &mut Args) -> Result<Command, UsageError> {
    let mut db = env("UNIPAY_DB");
    let mut out = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "--db" => db = Some(args.value("--db", inline)?),
            "--out" => out = Some(args.value("--out", inline)?),
            "-h" | "--help" => return Ok(Command::Help(BACKUP_HELP)),
            other => return Err(unknown(other, "backup")),
        }
    }
    let required = |v: Option<String>, flag: &str| match v {
        Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => Err(UsageError(format!("{flag} is required"))),
    };
    Ok(Command::Backup {
        db: required(db, "--db PATH")?,
        out: required(out, "--out FILE")?,
    })
}

pub(super) fn parse_healthcheck(args: &mut Args) -> Result<Command, UsageError> {
    let mut url = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "--url" => url = Some(args.value("--url", inline)?),
            "-h" | "--help" => return Ok(Command::Help(HEALTHCHECK_HELP)),
            other => return Err(unknown(other, "healthcheck")),
        }
    }
    let url = url.unwrap_or_else(|| "http://127.0.0.1:9999/healthz".into());
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(UsageError(format!("--url: `{url}` is not an http(s) URL")));
    }
    Ok(Command::Healthcheck { url })
}

pub(super) fn parse_notify_list(args: &mut Args) -> Result<Command, UsageError> {
    let mut db = env("UNIPAY_DB");
    let mut filter = EventFilter::All;
    let mut offset = env("UNIPAY_TZ_OFFSET");
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "--db" => db = Some(args.value("--db", inline)?),
            "--tz-offset" => offset = Some(args.value("--tz-offset", inline)?),
            "--pending" => filter = EventFilter::Pending,
            "--failed" => filter = EventFilter::GivenUp,
            "-h" | "--help" => return Ok(Command::Help(NOTIFY_HELP)),
            other => return Err(unknown(other, "notify list")),
        }
    }
    let db = PathBuf::from(db.ok_or_else(|| UsageError("--db PATH is required".into()))?);
    let offset = parse_offset(offset)?;
    Ok(Command::NotifyList { db, filter, offset })
}

pub(super) fn parse_notify_resend(args: &mut Args) -> Result<Command, UsageError> {
    let mut db = env("UNIPAY_DB");
    let mut event = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "--db" => db = Some(args.value("--db", inline)?),
            "-h" | "--help" => return Ok(Command::Help(NOTIFY_HELP)),
            other if other.starts_with('-') => return Err(unknown(other, "notify resend")),
            _ if event.is_none() => event = Some(parse_int("EVENT_ID", &arg, 1)?),
            _ => return Err(UsageError("notify resend takes one EVENT_ID".into())),
        }
    }
    Ok(Command::NotifyResend {
        db: PathBuf::from(db.ok_or_else(|| UsageError("--db PATH is required".into()))?),
        event_id: event.ok_or_else(|| UsageError("notify resend needs an EVENT_ID".into()))?,
    })
}
