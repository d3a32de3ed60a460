//! The commands behind `main`: `serve`, `app create`, `app list`, `call`, `backup`, ….

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;

use crate::admin;
use crate::channel::{alipay, wechat, Channels, Reach};
use crate::config::{
    AppCreateConfig, CallConfig, ChannelArgs, ChannelCommand, Command, ServeConfig, UsageError,
};
use crate::domain::App;
use crate::expiry;
use crate::gateway::Gateway;
use crate::http::{self, Limits};
use crate::notify;
use crate::router::Router;
use crate::sign;
use crate::signal;
use crate::stop::Stop;
use crate::store::{self, CreateAppError, EventFilter, Offline, Store};
use crate::sys::{self, Clock, OsRandom, Random, SystemClock};
use crate::wire::{self, Params};

/// A failure of a command, with the context a person needs to fix it.
pub type RunError = Box<dyn std::error::Error + Send + Sync>;

/// Runs a parsed command.
pub fn run(command: Command) -> Result<(), RunError> {
    match command {
        Command::Serve(cfg) => serve(&cfg),
        Command::AppCreate(cfg) => app_create(&cfg),
        Command::AppList { db } => app_list(&db),
        Command::NotifyList { db, filter, offset } => notify_list(&db, filter, offset),
        Command::OrderAttention { db, offset } => order_attention(&db, offset),
        Command::NotifyResend { db, event_id } => notify_resend(&db, event_id),
        Command::Call(cfg) => call(&cfg),
        Command::Channel(cmd) => channel(cmd),
        Command::RefundList { db, status, offset } => {
            let (db, _) = Offline::open(&db)?;
            for refund in db.list_refunds(status, 1000)? {
                println!("{}", wire::refund_line(&refund, offset));
            }
            Ok(())
        }
        Command::Backup { db, out } => backup(&db, &out),
        Command::Healthcheck { url } => healthcheck(&url),
        Command::Help(text) => {
            print!("{text}");
            Ok(())
        }
        Command::Version => {
            println!("unipay {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

/// The demo merchant and app created on a brand-new database.
const DEMO_MCH_NO: &str = "DEMO_MCH";
const DEMO_APP_ID: &str = "DEMO_APP";

fn serve(cfg: &ServeConfig) -> Result<(), RunError> {
    refuse_absent(&cfg.db, cfg.create)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let random: Arc<dyn Random> = Arc::new(OsRandom);
    // A damaged file is refused before anything (the migration, the demo app) writes to it; a
    // big one is checked whole once serving (below), so that start-up stays fast.
    let checked = store::check_file(&cfg.db, store::CHECK_BEFORE_SERVING_MAX_BYTES)?;
    let (mut db, fresh) = Offline::open(&cfg.db)?;
    let demo = match fresh {
        true => {
            let app = App {
                app_id: DEMO_APP_ID.into(),
                mch_no: DEMO_MCH_NO.into(),
                sign_type: sign::SignType::Md5,
                secret: sys::random_alnum(random.as_ref(), 32),
                req_sign: true,
                req_timeout_secs: 300,
                notify_url: None,
                order_timeout_min: 30,
                limit_amount: None,
                enabled: true,
                mch_enabled: true,
            };
            db.create_app(&app, clock.now_ms()).map_err(create_error)?;
            Some(app)
        }
        false => None,
    };
    drop(db);
    let (store, _) = Store::open_with_fault(&cfg.db, cfg.offset, cfg.test_fault.clone())?;
    let store = Arc::new(store);
    let listener = TcpListener::bind(&cfg.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    // The console's token is settled once the address is ours, so that a generated token is
    // never stored without being printed.
    let admin_token = {
        let (mut db, _) = Offline::open(&cfg.db)?;
        let given = cfg.admin_token.as_ref().map(|t| t.0.as_str());
        admin::prepare_token(&mut db, given, random.as_ref(), clock.now_ms())?
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {base_url}")?;
        if let Some(app) = &demo {
            writeln!(
                out,
                "new database {}: demo merchant created (shown once)\n  mchNo={} appId={} signType={} secret={}",
                cfg.db.display(),
                app.mch_no,
                app.app_id,
                app.sign_type.as_str(),
                app.secret
            )?;
        }
        if let Some(token) = &admin_token {
            writeln!(
                out,
                "new admin token for {base_url}/admin (shown once): {token}"
            )?;
        }
        out.flush()?;
    }
    log::info!(
        "serving {base_url} db={} tz-offset={}",
        cfg.db.display(),
        cfg.offset
    );
    let reach = Reach {
        base_url: base_url.clone(),
        public_url: cfg.public_url.clone().unwrap_or_else(|| base_url.clone()),
        timeout: cfg.channel_timeout,
        sandbox: cfg.sandbox,
    };
    let channels = Channels::builtin(store.clone(), clock.clone(), random.clone(), reach);
    // Handled from here on: a SIGTERM during start-up stops gracefully too.
    let signals = signal::listen()?;
    let stop = Stop::new();
    notify::start(
        store.clone(),
        clock.clone(),
        random.clone(),
        cfg.offset,
        cfg.notify.clone(),
        stop.clone(),
    )?;
    if cfg.sandbox && store.any_channel_enabled()? {
        log::warn!(
            "the sandbox channel is on while apps take real payments: anyone who can reach this \
             server can \"pay\" sandbox orders without money; start with --no-sandbox in production"
        );
    }
    let mut gateway = Gateway::new(store, channels, clock, random, base_url);
    gateway.sandbox = cfg.sandbox;
    gateway.stop = stop;
    gateway.metrics_public = cfg.metrics_public;
    let gateway = Arc::new(gateway);
    let settled = expiry::recover(&gateway, i64::MAX);
    if settled > 0 {
        log::warn!("settled {settled} close(s) interrupted by the last shutdown");
    }
    // Refunds under way when the last process stopped are looked at first.
    gateway.store.all_refunds_due(gateway.now())?;
    let changed = expiry::settle_refunds(&gateway);
    if changed > 0 {
        log::info!("settled {changed} refund(s) under way at the last shutdown");
    }
    expiry::start(gateway.clone(), cfg.sweep_interval)?;
    // Every connection holds a file descriptor: the bound leaves room for the rest.
    let limits = Limits {
        max_conns_per_ip: cfg.max_conns_per_ip,
        ..Limits::DEFAULT
    };
    let (limits, soft) = limits.within_open_files();
    log::debug!(
        "max connections {} (soft open-file limit {}, {} descriptors kept for the database and sockets), {} per client address",
        limits.max_connections,
        soft.map_or("unlimited or unknown".to_string(), |n| n.to_string()),
        http::FD_RESERVE,
        limits.max_conns_per_ip
    );
    let router = Router {
        gw: gateway.clone(),
    };
    let handle = http::serve(listener, limits, Arc::new(router))?;
    if checked == store::Checked::SchemaOnly {
        check_in_background(cfg.db.clone(), gateway.store.clone())?;
    }
    match signals.recv() {
        Ok(sig) => stop_gracefully(sig, signals, handle, &gateway, cfg.shutdown_grace),
        Err(_) => {
            handle.join();
            Ok(())
        }
    }
}

/// The graceful stop after `sig`: the listener closes, idle connections close, and the
/// requests, channel calls, notification attempts and sweeps under way finish within `grace`;
/// then what the writer holds is committed. Past `grace` the process exits with status 1 (as
/// after a crash, nothing acknowledged is lost: start-up recovery settles the rest). A second
/// signal exits at once.
fn stop_gracefully(
    sig: i32,
    signals: std::sync::mpsc::Receiver<i32>,
    handle: http::ServerHandle,
    gw: &Gateway,
    grace: std::time::Duration,
) -> Result<(), RunError> {
    let started = std::time::Instant::now();
    let deadline = started + grace;
    log::info!(
        "{}: stopping; the work under way has {grace:?} to finish",
        signal::name(sig)
    );
    std::thread::Builder::new()
        .name("second-signal".into())
        .spawn(move || {
            if let Ok(sig) = signals.recv() {
                log::warn!("{} again: exiting now", signal::name(sig));
                std::process::exit(128 + sig);
            }
        })?;
    gw.stop.set();
    let drained = handle.stop(deadline);
    let (background, unfinished) = gw.stop.wait_idle(deadline);
    let unfinished = drained.unfinished + unfinished;
    if unfinished > 0 {
        log::error!(
            "stopped after {:.1}s with {unfinished} request(s) or background task(s) still running (a channel call that does not answer?); exiting with status 1; what was acknowledged is on disk, and the next start settles the rest",
            started.elapsed().as_secs_f64()
        );
        std::process::exit(1);
    }
    // Everything handed to the writer so far is committed.
    gw.store.flush()?;
    log::info!(
        "stopped in {:.1}s: {} request(s) in flight finished, {} idle connection(s) closed, {background} notification attempt(s) or sweep(s) finished",
        started.elapsed().as_secs_f64(),
        drained.in_flight,
        drained.idle_closed
    );
    Ok(())
}

/// A database file that is missing (or empty) is made new only when that is wanted: with
/// `--no-create` a volume that did not mount is not a first start. And never when its `-wal` or
/// `-shm` file is there: that database's main file is gone, and a new one beside its WAL would
/// lose the WAL or mix the two. Both are refused as usage errors (exit code 2).
fn refuse_absent(db: &std::path::Path, create: bool) -> Result<(), UsageError> {
    if !store::is_absent(db) {
        return Ok(());
    }
    let found = store::leftovers(db);
    if !found.is_empty() {
        return Err(UsageError(store::orphaned_message(db, &found)));
    }
    if !create {
        return Err(UsageError(format!(
            "no database at {} (the file is missing or empty) and --no-create is given: \
             refusing to create one. Is its volume mounted?",
            db.display()
        )));
    }
    Ok(())
}

/// Checks a big database whole while serving. Damage found is logged with the message a small
/// damaged file gets at start-up, and the store stops writing: every write is refused, and
/// `/healthz` answers 503 saying why, so that a supervisor or a load balancer sees it
/// (acknowledged changes are on disk already; the file needs restoring from a backup). A check
/// that could not run (busy, out of file descriptors) is tried again later.
fn check_in_background(db: std::path::PathBuf, store: Arc<Store>) -> std::io::Result<()> {
    let mib = std::fs::metadata(&db).map(|m| m.len() >> 20).unwrap_or(0);
    log::info!(
        "database check (PRAGMA quick_check) of {} ({mib} MiB) runs in the background",
        db.display()
    );
    std::thread::Builder::new()
        .name("db-check".into())
        .spawn(move || loop {
            let t0 = std::time::Instant::now();
            match store::check_whole(&db) {
                Ok(()) => {
                    log::info!(
                        "database check passed in {:.1}s",
                        t0.elapsed().as_secs_f64()
                    );
                    return;
                }
                Err(store::CheckFailure::Damaged(e)) => {
                    log::error!("{e}; nothing is written any more, /healthz answers 503");
                    store.mark_damaged(e.to_string());
                    return;
                }
                Err(store::CheckFailure::NotRun(e)) => {
                    log::warn!("{e}; the database check runs again in a minute");
                    std::thread::sleep(std::time::Duration::from_secs(60));
                }
            }
        })
        .map(|_| ())
}

/// `unipay healthcheck`: 200 from the URL, or an error (exit 1) saying what came back.
fn healthcheck(url: &str) -> Result<(), RunError> {
    let timeout = std::time::Duration::from_secs(5);
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(timeout)
        .timeout(timeout)
        .redirects(0)
        .build();
    match agent.get(url).call() {
        Ok(resp) if resp.status() == 200 => Ok(()),
        Ok(resp) => Err(format!("{url}: HTTP {}", resp.status()).into()),
        Err(ureq::Error::Status(code, resp)) => {
            let body = resp.into_string().unwrap_or_default();
            Err(format!("{url}: HTTP {code} {}", body.trim()).into())
        }
        Err(e) => Err(format!("{url}: {e}").into()),
    }
}

/// `unipay backup`: an online, checked copy of the database.
fn backup(db: &std::path::Path, out: &std::path::Path) -> Result<(), RunError> {
    if !db.exists() {
        return Err(format!("no database at {}", db.display()).into());
    }
    store::backup(db, out)?;
    println!("backed up {} to {}", db.display(), out.display());
    Ok(())
}

fn create_error(e: CreateAppError) -> RunError {
    match e {
        CreateAppError::Exists => "an app with this id already exists".into(),
        CreateAppError::Sqlite(e) => format!("cannot create the app: {e}").into(),
    }
}

fn app_create(cfg: &AppCreateConfig) -> Result<(), RunError> {
    let (mut db, _) = Offline::open(&cfg.db)?;
    let app = App {
        app_id: cfg.app_id.clone(),
        mch_no: cfg.mch_no.clone(),
        sign_type: cfg.sign_type,
        secret: cfg
            .secret
            .clone()
            .unwrap_or_else(|| sys::random_alnum(&OsRandom, 32)),
        req_sign: cfg.req_sign,
        req_timeout_secs: cfg.req_timeout_secs,
        notify_url: cfg.notify_url.clone(),
        order_timeout_min: cfg.order_timeout_min,
        limit_amount: cfg.limit_amount,
        enabled: true,
        mch_enabled: true,
    };
    db.create_app(&app, SystemClock.now_ms())
        .map_err(create_error)?;
    println!("{}", wire::app_line(&app));
    Ok(())
}

fn app_list(db: &std::path::Path) -> Result<(), RunError> {
    let (db, _) = Offline::open(db)?;
    for app in db.list_apps()? {
        println!("{}", wire::app_line(&app));
    }
    Ok(())
}

fn order_attention(db: &std::path::Path, offset: sys::UtcOffset) -> Result<(), RunError> {
    let (db, _) = Offline::open(db)?;
    for order in db.attention_orders(1000)? {
        println!("{}", wire::attention_line(&order, offset));
    }
    Ok(())
}

fn notify_list(
    db: &std::path::Path,
    filter: EventFilter,
    offset: sys::UtcOffset,
) -> Result<(), RunError> {
    let (db, _) = Offline::open(db)?;
    for ev in db.list_events(filter, 1000)? {
        println!("{}", wire::event_line(&ev, offset));
    }
    Ok(())
}

fn notify_resend(db: &std::path::Path, event_id: i64) -> Result<(), RunError> {
    let (db, _) = Offline::open(db)?;
    if !db.resend_event(event_id, SystemClock.now_ms())? {
        return Err(format!("no notification event {event_id}").into());
    }
    println!("event {event_id} is due now; a running server delivers it within a second");
    Ok(())
}

/// `unipay channel set|list|disable`. A key that does not load is a usage error (exit 2).
fn channel(cmd: ChannelCommand) -> Result<(), RunError> {
    let now = SystemClock.now_ms();
    match cmd {
        ChannelCommand::Set {
            db,
            app_id,
            settings,
        } => {
            let read = |path: &std::path::Path| {
                std::fs::read_to_string(path)
                    .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))
            };
            let stored = match &settings {
                ChannelArgs::AliPay {
                    alipay_app_id,
                    private_key_file,
                    alipay_public_key_file,
                    gateway,
                } => alipay::settings::Settings::from_texts(
                    alipay_app_id,
                    &read(private_key_file)?,
                    &read(alipay_public_key_file)?,
                    gateway.as_deref(),
                )
                .map_err(UsageError)?
                .to_stored(),
                ChannelArgs::WechatPay {
                    mchid,
                    wx_appid,
                    serial_no,
                    private_key_file,
                    apiv3_key_file,
                    platform_public_key_file,
                    platform_public_key_id,
                    base_url,
                } => wechat::settings::Settings::from_given(&wechat::settings::Given {
                    mchid,
                    wx_appid,
                    serial_no,
                    private_key: &read(private_key_file)?,
                    apiv3_key: &read(apiv3_key_file)?,
                    platform_public_key: &read(platform_public_key_file)?,
                    platform_public_key_id,
                    base_url: base_url.as_deref(),
                })
                .map_err(UsageError)?
                .to_stored(),
            };
            let (db_handle, _) = Offline::open(&db)?;
            if db_handle.app(&app_id)?.is_none() {
                return Err(UsageError(format!("no app `{app_id}` in {}", db.display())).into());
            }
            db_handle.set_channel_config(&app_id, settings.channel(), &stored, now)?;
            println!(
                "{} set for app {app_id}; a running server uses it within seconds",
                settings.channel()
            );
        }
        ChannelCommand::List { db, app_id } => {
            let (db, _) = Offline::open(&db)?;
            for cfg in db.channel_configs(app_id.as_deref())? {
                let view = match cfg.channel.as_str() {
                    alipay::NAME => alipay::settings::Settings::public_view(&cfg.settings),
                    wechat::NAME => wechat::settings::Settings::public_view(&cfg.settings),
                    _ => Vec::new(),
                };
                let line = wire::channel_line(&cfg.app_id, &cfg.channel, cfg.enabled, &view);
                println!("{line}");
            }
        }
        ChannelCommand::Disable {
            db,
            app_id,
            channel,
        } => {
            let (db, _) = Offline::open(&db)?;
            if !db.disable_channel(&app_id, &channel, now)? {
                return Err(format!("app `{app_id}` has no {channel} settings").into());
            }
            println!("{channel} disabled for app {app_id}");
        }
    }
    Ok(())
}

/// The known fields of an endpoint, for signing a request to it.
fn endpoint_fields(path: &str) -> Option<&'static [wire::Field]> {
    match path {
        "/unipay/pay" => Some(wire::PAY),
        "/unipay/gateway/prePay" => Some(wire::PRE_PAY),
        "/unipay/close" => Some(wire::CLOSE),
        "/unipay/query/payOrder" => Some(wire::QUERY),
        "/unipay/refund" => Some(wire::REFUND),
        "/unipay/query/refundOrder" | "/unipay/sync/order/refund" => Some(wire::QUERY_REFUND),
        "/unipay/sync/order/pay" => Some(wire::SYNC_PAY),
        _ => None,
    }
}

fn call(cfg: &CallConfig) -> Result<(), RunError> {
    let (db, _) = Offline::open(&cfg.db)?;
    let app = db
        .app(&cfg.app_id)?
        .ok_or_else(|| format!("no app `{}` in {}", cfg.app_id, cfg.db.display()))?;
    drop(db);
    let now = SystemClock.now_ms();
    let body = wire::signed_request(&cfg.json, &app, &sys::format_time(now, cfg.offset), |raw| {
        // A request that does not validate is sent unsigned: the server says what is wrong.
        let fields = endpoint_fields(&cfg.endpoint)?;
        let params = Params::parse(raw, &[wire::COMMON, fields], cfg.offset).ok()?;
        Some(sign::sign(app.sign_type, &params.sign_pairs(), &app.secret))
    })?;
    let url = format!("{}{}", cfg.url, cfg.endpoint);
    let reply = ureq::post(&url)
        .set("Content-Type", "application/json; charset=UTF-8")
        .send_bytes(&body);
    let text = match reply {
        Ok(resp) => resp.into_string()?,
        Err(ureq::Error::Status(_, resp)) => resp.into_string()?,
        Err(e) => return Err(format!("cannot reach {url}: {e}").into()),
    };
    println!("{text}");
    Ok(())
}
