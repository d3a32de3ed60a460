//! `unipay channel set|list|disable`: the flags of each real channel. The key files are named
//! here and read by the command (`cli`); their content is checked by the channel's module.

use std::path::PathBuf;

use super::{env, split_flag, unknown, Args, Command, UsageError, CHANNEL_HELP};

/// `unipay channel …`.
#[derive(Debug, Clone)]
pub enum ChannelCommand {
    Set {
        db: PathBuf,
        app_id: String,
        settings: ChannelArgs,
    },
    List {
        db: PathBuf,
        app_id: Option<String>,
    },
    Disable {
        db: PathBuf,
        app_id: String,
        channel: String,
    },
}

/// The settings of one channel as given on the command line.
#[derive(Debug, Clone)]
pub enum ChannelArgs {
    AliPay {
        alipay_app_id: String,
        private_key_file: PathBuf,
        alipay_public_key_file: PathBuf,
        gateway: Option<String>,
    },
    WechatPay {
        mchid: String,
        wx_appid: String,
        serial_no: String,
        private_key_file: PathBuf,
        apiv3_key_file: PathBuf,
        platform_public_key_file: PathBuf,
        platform_public_key_id: String,
        base_url: Option<String>,
    },
}

impl ChannelArgs {
    /// The channel's name on the wire.
    pub fn channel(&self) -> &'static str {
        match self {
            ChannelArgs::AliPay { .. } => "ali_pay",
            ChannelArgs::WechatPay { .. } => "wechat_pay",
        }
    }
}

/// The channels `channel set` knows.
const CHANNELS: &str = "ali_pay, wechat_pay";

pub(super) fn parse(args: &mut Args) -> Result<Command, UsageError> {
    let sub = args.next();
    let which = match sub.as_deref() {
        Some(s @ ("set" | "list" | "disable")) => s.to_string(),
        Some("-h" | "--help") | None => return Ok(Command::Help(CHANNEL_HELP)),
        Some(other) => {
            return Err(UsageError(format!(
                "unknown command `channel {other}` (try `channel set`, `list` or `disable`)"
            )))
        }
    };
    let command = format!("channel {which}");
    let mut db = env("UNIPAY_DB");
    let mut app_id = None;
    let mut channel = None;
    let mut flags: Vec<(String, String)> = Vec::new();
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "--db" => db = Some(args.value("--db", inline)?),
            "--app-id" => app_id = Some(args.value("--app-id", inline)?),
            "-h" | "--help" => return Ok(Command::Help(CHANNEL_HELP)),
            f if f.starts_with("--") && which == "set" => {
                let value = args.value(f, inline)?;
                flags.push((f.to_string(), value));
            }
            f if f.starts_with('-') => return Err(unknown(f, &command)),
            name if channel.is_none() && which != "list" => channel = Some(name.to_string()),
            extra => return Err(UsageError(format!("`{command}`: unexpected `{extra}`"))),
        }
    }
    let db = match db {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => return Err(UsageError("--db PATH is required".into())),
    };
    let app_id = app_id.filter(|a| !a.is_empty());
    if which == "list" {
        return Ok(Command::Channel(ChannelCommand::List { db, app_id }));
    }
    let app_id = app_id.ok_or_else(|| UsageError("--app-id APP is required".into()))?;
    let channel = channel.ok_or_else(|| UsageError(format!("which channel? ({CHANNELS})")))?;
    if which == "disable" {
        if channel != "ali_pay" && channel != "wechat_pay" {
            return Err(UsageError(format!(
                "unknown channel `{channel}` ({CHANNELS})"
            )));
        }
        return Ok(Command::Channel(ChannelCommand::Disable {
            db,
            app_id,
            channel,
        }));
    }
    let settings = match channel.as_str() {
        "ali_pay" => alipay(&command, flags)?,
        "wechat_pay" => wechat(&command, flags)?,
        other => {
            return Err(UsageError(format!(
                "unknown channel `{other}` ({CHANNELS})"
            )))
        }
    };
    Ok(Command::Channel(ChannelCommand::Set {
        db,
        app_id,
        settings,
    }))
}

fn alipay(command: &str, flags: Vec<(String, String)>) -> Result<ChannelArgs, UsageError> {
    let (mut app, mut key, mut public, mut gateway) = (None, None, None, None);
    for (flag, value) in flags {
        match flag.as_str() {
            "--alipay-app-id" => app = Some(value),
            "--private-key-file" => key = Some(value),
            "--alipay-public-key-file" => public = Some(value),
            "--gateway" => gateway = Some(value),
            other => return Err(unknown(other, &format!("{command} ali_pay"))),
        }
    }
    let required = |v: Option<String>, flag: &str| {
        v.filter(|v| !v.is_empty())
            .ok_or_else(|| UsageError(format!("{flag} is required for ali_pay")))
    };
    Ok(ChannelArgs::AliPay {
        alipay_app_id: required(app, "--alipay-app-id ID")?,
        private_key_file: PathBuf::from(required(key, "--private-key-file FILE")?),
        alipay_public_key_file: PathBuf::from(required(public, "--alipay-public-key-file FILE")?),
        gateway,
    })
}

fn wechat(command: &str, flags: Vec<(String, String)>) -> Result<ChannelArgs, UsageError> {
    let mut v: [Option<String>; 8] = Default::default();
    const FLAGS: [&str; 8] = [
        "--mchid",
        "--wx-appid",
        "--serial-no",
        "--private-key-file",
        "--apiv3-key-file",
        "--platform-public-key-file",
        "--platform-public-key-id",
        "--base-url",
    ];
    for (flag, value) in flags {
        match FLAGS.iter().position(|f| *f == flag) {
            Some(i) => v[i] = Some(value),
            None => return Err(unknown(&flag, &format!("{command} wechat_pay"))),
        }
    }
    let mut required = |i: usize, what: &str| {
        v[i].take()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| UsageError(format!("{} {what} is required for wechat_pay", FLAGS[i])))
    };
    Ok(ChannelArgs::WechatPay {
        mchid: required(0, "MCHID")?,
        wx_appid: required(1, "WXAPPID")?,
        serial_no: required(2, "SERIAL")?,
        private_key_file: PathBuf::from(required(3, "FILE")?),
        apiv3_key_file: PathBuf::from(required(4, "FILE")?),
        platform_public_key_file: PathBuf::from(required(5, "FILE")?),
        platform_public_key_id: required(6, "ID")?,
        base_url: v[7].take(),
    })
}
