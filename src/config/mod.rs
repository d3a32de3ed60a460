//! The command line: raw arguments and `UNIPAY_*` environment variables in, one validated
//! `Command` out. Nothing else in the program reads arguments or the environment.

use std::path::PathBuf;
use std::time::Duration;

mod channel;
mod help;
mod operator;
mod values;

use crate::domain::Amount;
use crate::notify::NotifyConfig;
use crate::sign::SignType;
use crate::store::{EventFilter, TestFault};
use crate::sys::UtcOffset;

pub use channel::{ChannelArgs, ChannelCommand};
pub use help::*;
use operator::*;
pub use values::{parse_duration, parse_schedule};
use values::{parse_int, parse_offset};

/// What the user asked for.
#[derive(Debug)]
pub enum Command {
    Serve(ServeConfig),
    AppCreate(AppCreateConfig),
    AppList {
        db: PathBuf,
    },
    NotifyList {
        db: PathBuf,
        filter: EventFilter,
        /// The zone times are printed in (`--tz-offset`, as for `serve`).
        offset: UtcOffset,
    },
    OrderAttention {
        db: PathBuf,
        offset: UtcOffset,
    },
    NotifyResend {
        db: PathBuf,
        event_id: i64,
    },
    Call(CallConfig),
    /// `unipay channel set|list|disable`.
    Channel(ChannelCommand),
    /// `unipay refund list`.
    RefundList {
        db: PathBuf,
        status: Option<crate::domain::RefundStatus>,
        offset: UtcOffset,
    },
    /// `unipay backup`: an online copy of the database.
    Backup {
        db: PathBuf,
        out: PathBuf,
    },
    /// `unipay healthcheck`: GET a server's `/healthz`; exit 0 on 200.
    Healthcheck {
        url: String,
    },
    /// Print this text to stdout and exit 0.
    Help(&'static str),
    Version,
}

/// `unipay serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub db: PathBuf,
    pub listen: String,
    pub offset: UtcOffset,
    pub notify: NotifyConfig,
    /// How often expired orders are closed.
    pub sweep_interval: Duration,
    /// The admin console's token (`--admin-token`); `None` keeps the stored one or makes one.
    pub admin_token: Option<Redacted>,
    /// Where the channels send their notifications (`--public-url`); `None` is the bound
    /// address.
    pub public_url: Option<String>,
    /// The timeout of every call to a channel (`--channel-timeout`).
    pub channel_timeout: Duration,
    /// Whether the sandbox channel and its payer pages are on (`--no-sandbox` turns them off).
    pub sandbox: bool,
    /// Most connections at once from one client IP address (`--max-conns-per-ip`).
    pub max_conns_per_ip: usize,
    /// How long a stop (SIGTERM, SIGINT) lets the work under way finish (`--shutdown-grace`).
    pub shutdown_grace: Duration,
    /// Whether `/metrics` is served without the admin token (`--metrics-public`).
    pub metrics_public: bool,
    /// A store fault for tests (`UNIPAY_TEST_FAULT`, test-only; see `TestFault`).
    pub test_fault: Option<TestFault>,
    /// Whether a missing database file is created (`--no-create` turns it off).
    pub create: bool,
}

/// A secret from the command line: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `unipay app create`.
#[derive(Clone)]
pub struct AppCreateConfig {
    pub db: PathBuf,
    pub mch_no: String,
    pub app_id: String,
    pub sign_type: SignType,
    pub secret: Option<String>,
    pub req_timeout_secs: i64,
    pub req_sign: bool,
    pub notify_url: Option<String>,
    pub order_timeout_min: i64,
    pub limit_amount: Option<Amount>,
}

impl std::fmt::Debug for AppCreateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCreateConfig")
            .field("db", &self.db)
            .field("mch_no", &self.mch_no)
            .field("app_id", &self.app_id)
            .field("sign_type", &self.sign_type)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// `unipay call`.
#[derive(Debug, Clone)]
pub struct CallConfig {
    pub db: PathBuf,
    pub app_id: String,
    pub url: String,
    pub offset: UtcOffset,
    pub endpoint: String,
    pub json: String,
}

/// A command line that cannot be run; the text says why. Exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

/// The shortest admin token `--admin-token` takes.
pub const MIN_ADMIN_TOKEN: usize = 16;

impl std::error::Error for UsageError {}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A simple cursor over the arguments: `--flag value`, `--flag=value`, and positionals.
struct Args {
    items: Vec<String>,
    pos: usize,
}

impl Args {
    fn next(&mut self) -> Option<String> {
        let item = self.items.get(self.pos).cloned();
        self.pos += 1;
        item
    }

    /// The value of a flag just read (`--db PATH` or `--db=PATH`).
    fn value(&mut self, flag: &str, inline: Option<String>) -> Result<String, UsageError> {
        match inline {
            Some(v) => Ok(v),
            None => self
                .next()
                .ok_or_else(|| UsageError(format!("{flag} needs a value"))),
        }
    }
}

fn split_flag(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((f, v)) if arg.starts_with("--") => (f.to_string(), Some(v.to_string())),
        _ => (arg.to_string(), None),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn unknown(flag: &str, command: &str) -> UsageError {
    UsageError(format!("unknown option `{flag}` for `{command}`"))
}

impl Command {
    /// Parses the arguments after the program name.
    pub fn parse(argv: Vec<String>) -> Result<Command, UsageError> {
        let mut args = Args {
            items: argv,
            pos: 0,
        };
        let first = args.next();
        match first.as_deref() {
            None => parse_serve(&mut args),
            Some("serve") => parse_serve(&mut args),
            Some("app") => match args.next().as_deref() {
                Some("create") => parse_app_create(&mut args),
                Some("list") => parse_app_list(&mut args),
                Some("-h" | "--help") | None => Ok(Command::Help(APP_HELP)),
                Some(other) => Err(UsageError(format!(
                    "unknown command `app {other}` (try `app create` or `app list`)"
                ))),
            },
            Some("call") => parse_call(&mut args),
            Some("order") => match args.next().as_deref() {
                Some("attention") => parse_order_attention(&mut args),
                Some("-h" | "--help") | None => Ok(Command::Help(ORDER_HELP)),
                Some(other) => Err(UsageError(format!(
                    "unknown command `order {other}` (try `order attention`)"
                ))),
            },
            Some("notify") => match args.next().as_deref() {
                Some("list") => parse_notify_list(&mut args),
                Some("resend") => parse_notify_resend(&mut args),
                Some("-h" | "--help") | None => Ok(Command::Help(NOTIFY_HELP)),
                Some(other) => Err(UsageError(format!(
                    "unknown command `notify {other}` (try `notify list` or `notify resend`)"
                ))),
            },
            Some("backup") => parse_backup(&mut args),
            Some("healthcheck") => parse_healthcheck(&mut args),
            Some("channel") => channel::parse(&mut args),
            Some("refund") => match args.next().as_deref() {
                Some("list") => parse_refund_list(&mut args),
                Some("-h" | "--help") | None => Ok(Command::Help(REFUND_HELP)),
                Some(other) => Err(UsageError(format!(
                    "unknown command `refund {other}` (try `refund list`)"
                ))),
            },
            Some("--version" | "-V") => Ok(Command::Version),
            Some("version") => match args.next().as_deref() {
                None => Ok(Command::Version),
                Some("-h" | "--help") => Ok(Command::Help(VERSION_HELP)),
                Some(other) => Err(unknown(other, "version")),
            },
            Some("-h" | "--help" | "help") => Ok(Command::Help(HELP)),
            Some(flag) if flag.starts_with('-') => {
                args.pos -= 1;
                parse_serve(&mut args)
            }
            Some(other) => Err(UsageError(format!("unknown command `{other}`"))),
        }
    }
}

fn parse_serve(args: &mut Args) -> Result<Command, UsageError> {
    let mut db = env("UNIPAY_DB");
    let mut listen = env("UNIPAY_LISTEN");
    let mut offset = env("UNIPAY_TZ_OFFSET");
    let mut schedule = env("UNIPAY_NOTIFY_RETRY_SCHEDULE");
    let mut sweep = env("UNIPAY_SWEEP_INTERVAL");
    let mut admin_token = env("UNIPAY_ADMIN_TOKEN");
    let mut public_url = env("UNIPAY_PUBLIC_URL");
    let mut channel_timeout = env("UNIPAY_CHANNEL_TIMEOUT");
    let mut sandbox = env("UNIPAY_NO_SANDBOX").is_none_or(|v| v == "0");
    let mut create = env("UNIPAY_NO_CREATE").is_none_or(|v| v == "0");
    let mut max_conns_per_ip = env("UNIPAY_MAX_CONNS_PER_IP");
    let mut grace = env("UNIPAY_SHUTDOWN_GRACE");
    let mut metrics_public = env("UNIPAY_METRICS_PUBLIC").is_some_and(|v| v != "0");
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "--db" => db = Some(args.value("--db", inline)?),
            "--listen" => listen = Some(args.value("--listen", inline)?),
            "--sweep-interval" => sweep = Some(args.value("--sweep-interval", inline)?),
            "--admin-token" => admin_token = Some(args.value("--admin-token", inline)?),
            "--admin-token-file" => {
                let path = args.value("--admin-token-file", inline)?;
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    UsageError(format!("--admin-token-file: cannot read {path}: {e}"))
                })?;
                admin_token = Some(text.trim_end_matches(['\n', '\r']).to_string());
            }
            "--public-url" => public_url = Some(args.value("--public-url", inline)?),
            "--no-sandbox" if inline.is_none() => sandbox = false,
            "--metrics-public" if inline.is_none() => metrics_public = true,
            "--shutdown-grace" => grace = Some(args.value("--shutdown-grace", inline)?),
            "--no-create" if inline.is_none() => create = false,
            "--channel-timeout" => channel_timeout = Some(args.value("--channel-timeout", inline)?),
            "--max-conns-per-ip" => {
                max_conns_per_ip = Some(args.value("--max-conns-per-ip", inline)?)
            }
            "--notify-retry-schedule" => {
                schedule = Some(args.value("--notify-retry-schedule", inline)?)
            }
            "--tz-offset" => offset = Some(args.value("--tz-offset", inline)?),
            "-h" | "--help" => return Ok(Command::Help(SERVE_HELP)),
            other => return Err(unknown(other, "serve")),
        }
    }
    let listen = listen.unwrap_or_else(|| "127.0.0.1:9999".into());
    if !listen.contains(':') {
        return Err(UsageError(format!("--listen: `{listen}` is not HOST:PORT")));
    }
    let mut notify = NotifyConfig::default();
    if let Some(text) = schedule {
        notify.schedule = parse_schedule(&text)
            .map_err(|e| UsageError(format!("--notify-retry-schedule: {e}")))?;
    }
    let sweep_interval = match sweep {
        Some(text) => {
            parse_duration(&text).map_err(|e| UsageError(format!("--sweep-interval: {e}")))?
        }
        None => Duration::from_secs(60),
    };
    if sweep_interval < Duration::from_millis(100) {
        return Err(UsageError("--sweep-interval: at least 100ms".into()));
    }
    if admin_token
        .as_deref()
        .is_some_and(|t| t.trim() != t || t.is_empty())
    {
        return Err(UsageError(
            "--admin-token: must not be empty or start or end with spaces".into(),
        ));
    }
    if admin_token
        .as_deref()
        .is_some_and(|t| t.chars().count() < MIN_ADMIN_TOKEN)
    {
        return Err(UsageError(format!(
            "--admin-token: at least {MIN_ADMIN_TOKEN} characters (a longer random one is better)"
        )));
    }
    if let Some(url) = &public_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return Err(UsageError(format!(
                "--public-url: `{url}` is not an http(s) URL like https://pay.example.com"
            )));
        }
    }
    let channel_timeout = match channel_timeout {
        Some(text) => {
            parse_duration(&text).map_err(|e| UsageError(format!("--channel-timeout: {e}")))?
        }
        None => Duration::from_secs(10),
    };
    if channel_timeout < Duration::from_millis(100) || channel_timeout > Duration::from_secs(60) {
        return Err(UsageError(
            "--channel-timeout: between 100ms and 60s".into(),
        ));
    }
    let test_fault = match env("UNIPAY_TEST_FAULT") {
        Some(spec) => Some(
            TestFault::parse(&spec).map_err(|e| UsageError(format!("UNIPAY_TEST_FAULT: {e}")))?,
        ),
        None => None,
    };
    let max_conns_per_ip = match max_conns_per_ip {
        Some(text) => {
            usize::try_from(parse_int("--max-conns-per-ip", &text, 1)?).unwrap_or(usize::MAX)
        }
        None => crate::http::Limits::DEFAULT.max_conns_per_ip,
    };
    let shutdown_grace = match grace {
        Some(text) => {
            parse_duration(&text).map_err(|e| UsageError(format!("--shutdown-grace: {e}")))?
        }
        None => Duration::from_secs(10),
    };
    if shutdown_grace > Duration::from_secs(3600) {
        return Err(UsageError("--shutdown-grace: at most 1h".into()));
    }
    Ok(Command::Serve(ServeConfig {
        shutdown_grace,
        metrics_public,
        create,
        test_fault,
        max_conns_per_ip,
        public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
        sandbox,
        channel_timeout,
        admin_token: admin_token.map(Redacted),
        sweep_interval,
        db: PathBuf::from(db.unwrap_or_else(|| "./unipay.db".into())),
        listen,
        offset: parse_offset(offset)?,
        notify,
    }))
}

fn parse_app_create(args: &mut Args) -> Result<Command, UsageError> {
    let mut db = env("UNIPAY_DB");
    let (mut mch_no, mut app_id, mut secret, mut notify_url) = (None, None, None, None);
    let mut sign_type = SignType::Md5;
    let (mut req_timeout_secs, mut order_timeout_min) = (300, 30);
    let mut req_sign = true;
    let mut limit_amount = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "--db" => db = Some(args.value("--db", inline)?),
            "--mch-no" => mch_no = Some(args.value("--mch-no", inline)?),
            "--app-id" => app_id = Some(args.value("--app-id", inline)?),
            "--sign-type" => {
                let v = args.value("--sign-type", inline)?;
                sign_type = SignType::parse(&v).ok_or_else(|| {
                    UsageError(format!("--sign-type: `{v}` is not md5, hmac_sha256 or sm3"))
                })?;
            }
            "--secret" => secret = Some(args.value("--secret", inline)?),
            "--req-timeout" => {
                req_timeout_secs =
                    parse_int("--req-timeout", &args.value("--req-timeout", inline)?, 0)?
            }
            "--no-req-sign" => req_sign = false,
            "--notify-url" => notify_url = Some(args.value("--notify-url", inline)?),
            "--order-timeout" => {
                order_timeout_min = parse_int(
                    "--order-timeout",
                    &args.value("--order-timeout", inline)?,
                    1,
                )?
            }
            "--limit-amount" => {
                let v = args.value("--limit-amount", inline)?;
                limit_amount = Some(
                    Amount::parse_yuan(&v)
                        .map_err(|why| UsageError(format!("--limit-amount: `{v}`: {why}")))?,
                );
            }
            "-h" | "--help" => return Ok(Command::Help(APP_HELP)),
            other => return Err(unknown(other, "app create")),
        }
    }
    let need =
        |v: Option<String>, flag: &str| v.ok_or_else(|| UsageError(format!("{flag} is required")));
    let (mch_no, app_id) = (need(mch_no, "--mch-no")?, need(app_id, "--app-id")?);
    for (flag, v) in [("--mch-no", &mch_no), ("--app-id", &app_id)] {
        if v.is_empty() || v.chars().count() > 32 {
            return Err(UsageError(format!("{flag} must be 1 to 32 characters")));
        }
    }
    if secret.as_deref() == Some("") {
        return Err(UsageError("--secret must not be empty".into()));
    }
    if (1..5).contains(&req_timeout_secs) {
        return Err(UsageError(
            "--req-timeout: the window is at least 5 seconds (0 turns it off)".into(),
        ));
    }
    if let Some(url) = &notify_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(UsageError(format!(
                "--notify-url: `{url}` is not an http(s) URL"
            )));
        }
    }
    Ok(Command::AppCreate(AppCreateConfig {
        db: PathBuf::from(need(db, "--db")?),
        mch_no,
        app_id,
        sign_type,
        secret,
        req_timeout_secs,
        req_sign,
        notify_url,
        order_timeout_min,
        limit_amount,
    }))
}

fn parse_call(args: &mut Args) -> Result<Command, UsageError> {
    let mut db = env("UNIPAY_DB");
    let mut url = env("UNIPAY_URL");
    let mut offset = env("UNIPAY_TZ_OFFSET");
    let mut app_id = None;
    let mut positionals = Vec::new();
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "--db" => db = Some(args.value("--db", inline)?),
            "--app-id" => app_id = Some(args.value("--app-id", inline)?),
            "--url" => url = Some(args.value("--url", inline)?),
            "--tz-offset" => offset = Some(args.value("--tz-offset", inline)?),
            "-h" | "--help" => return Ok(Command::Help(CALL_HELP)),
            other if other.starts_with("--") => return Err(unknown(other, "call")),
            _ => positionals.push(arg),
        }
    }
    let [endpoint, json]: [String; 2] = positionals
        .try_into()
        .map_err(|_| UsageError("call takes two arguments: ENDPOINT JSON".into()))?;
    let endpoint = match endpoint.as_str() {
        "pay" => "/unipay/pay".to_string(),
        "prePay" | "prepay" => "/unipay/gateway/prePay".to_string(),
        "close" => "/unipay/close".to_string(),
        "query" => "/unipay/query/payOrder".to_string(),
        "refund" => "/unipay/refund".to_string(),
        "queryRefund" => "/unipay/query/refundOrder".to_string(),
        "syncPay" => "/unipay/sync/order/pay".to_string(),
        "syncRefund" => "/unipay/sync/order/refund".to_string(),
        p if p.starts_with('/') => p.to_string(),
        other => return Err(UsageError(format!("unknown endpoint `{other}`"))),
    };
    Ok(Command::Call(CallConfig {
        db: PathBuf::from(db.ok_or_else(|| UsageError("--db PATH is required".into()))?),
        app_id: app_id.ok_or_else(|| UsageError("--app-id is required".into()))?,
        url: url
            .unwrap_or_else(|| "http://127.0.0.1:9999".into())
            .trim_end_matches('/')
            .to_string(),
        offset: parse_offset(offset)?,
        endpoint,
        json,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, UsageError> {
        Command::parse(args.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn serve_defaults_and_flags() {
        match parse(&["serve", "--db=x.db", "--listen", "127.0.0.1:0"]).unwrap() {
            Command::Serve(c) => {
                assert_eq!(c.db, PathBuf::from("x.db"));
                assert_eq!(c.listen, "127.0.0.1:0");
                assert_eq!(c.offset, UtcOffset::CST);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["serve", "--bogus"]).is_err());
        assert!(parse(&["serve", "--db"]).is_err());
        assert!(parse(&["serve", "--tz-offset", "8"]).is_err());
    }

    #[test]
    fn no_create_is_a_flag() {
        let create = |args: &[&str]| match parse(args) {
            Ok(Command::Serve(c)) => Ok(c.create),
            other => Err(format!("{other:?}")),
        };
        assert_eq!(create(&["serve"]), Ok(true));
        assert_eq!(create(&["serve", "--no-create"]), Ok(false));
        assert!(create(&["serve", "--no-create=1"]).is_err());
    }

    #[test]
    fn max_conns_per_ip_is_at_least_one() {
        let per_ip = |args: &[&str]| match parse(args) {
            Ok(Command::Serve(c)) => Ok(c.max_conns_per_ip),
            other => Err(format!("{other:?}")),
        };
        assert_eq!(per_ip(&["serve"]), Ok(256));
        assert_eq!(per_ip(&["serve", "--max-conns-per-ip", "4"]), Ok(4));
        assert_eq!(per_ip(&["serve", "--max-conns-per-ip=1"]), Ok(1));
        for bad in ["0", "-3", "x", "", "99999999999999999999"] {
            let err = per_ip(&["serve", "--max-conns-per-ip", bad]).unwrap_err();
            assert!(err.contains("--max-conns-per-ip: "), "{bad}: {err}");
        }
    }

    #[test]
    fn admin_token_is_taken_and_never_shown() {
        match parse(&["serve", "--admin-token", "s3cret-token-0123"]).unwrap() {
            Command::Serve(c) => {
                assert_eq!(c.admin_token, Some(Redacted("s3cret-token-0123".into())));
                let shown = format!("{c:?}");
                assert!(!shown.contains("s3cret"), "{shown}");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["serve", "--admin-token", ""]).is_err());
        assert!(parse(&["serve", "--admin-token", " x"]).is_err());
        assert!(parse(&["serve", "--admin-token", "fifteen-chars-x"]).is_err());
        assert!(parse(&["serve", "--admin-token", "sixteen-chars-xx"]).is_ok());
    }

    #[test]
    fn app_create_validates() {
        let ok = parse(&[
            "app",
            "create",
            "--db",
            "d",
            "--mch-no",
            "M",
            "--app-id",
            "A",
            "--req-timeout",
            "0",
        ]);
        assert!(matches!(ok, Ok(Command::AppCreate(_))));
        assert!(parse(&["app", "create", "--db", "d", "--mch-no", "M"]).is_err());
        assert!(parse(&[
            "app",
            "create",
            "--db",
            "d",
            "--mch-no",
            "M",
            "--app-id",
            "A",
            "--sign-type",
            "rsa"
        ])
        .is_err());
        assert!(parse(&[
            "app",
            "create",
            "--db",
            "d",
            "--mch-no",
            "M",
            "--app-id",
            "A",
            "--req-timeout",
            "3"
        ])
        .is_err());
    }

    #[test]
    fn listings_print_times_in_the_tz_offset() {
        let east = UtcOffset::parse("+05:30").unwrap();
        match parse(&["order", "attention", "--db", "d", "--tz-offset", "+05:30"]).unwrap() {
            Command::OrderAttention { offset, .. } => assert_eq!(offset, east),
            other => panic!("{other:?}"),
        }
        match parse(&["order", "attention", "--db", "d"]).unwrap() {
            Command::OrderAttention { offset, .. } => assert_eq!(offset, UtcOffset::CST),
            other => panic!("{other:?}"),
        }
        match parse(&[
            "notify",
            "list",
            "--db",
            "d",
            "--pending",
            "--tz-offset=+05:30",
        ])
        .unwrap()
        {
            Command::NotifyList { offset, filter, .. } => {
                assert_eq!(offset, east);
                assert_eq!(filter, EventFilter::Pending);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["order", "attention", "--db", "d", "--tz-offset", "8"]).is_err());
        assert!(parse(&["notify", "list", "--db", "d", "--tz-offset", "x"]).is_err());
    }

    #[test]
    fn call_maps_short_endpoints() {
        match parse(&["call", "--db", "d", "--app-id", "A", "close", "{}"]).unwrap() {
            Command::Call(c) => assert_eq!(c.endpoint, "/unipay/close"),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["call", "--db", "d", "--app-id", "A", "close"]).is_err());
    }
}
