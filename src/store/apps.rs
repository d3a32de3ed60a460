//! Merchants and apps: the server reads them (`merchant_and_app`, cached briefly), the command
//! line writes them (`Offline::create_app`).

use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{Store, APP_CACHE_TTL};
use crate::domain::{Amount, App};
use crate::error::Error;
use crate::sign::SignType;

impl Store {
    /// Both lookups of a request's common checks: whether the merchant exists and is enabled,
    /// and the app. Found pairs are remembered for `APP_CACHE_TTL`, so that a busy server does
    /// not read them for every request; an app created meanwhile (by `unipay app create`) is
    /// seen at once, because misses are never remembered.
    pub fn merchant_and_app(
        &self,
        mch_no: &str,
        app_id: &str,
    ) -> Result<(Option<bool>, Option<App>), Error> {
        {
            let cache = self.apps.lock().expect("app cache lock");
            if let Some((at, enabled, app)) = cache.get(app_id) {
                if at.elapsed() < APP_CACHE_TTL && app.mch_no == mch_no {
                    return Ok((Some(*enabled), Some(app.clone())));
                }
            }
        }
        let (mch, app) = self.read(|c| {
            let mut st = c.prepare_cached("SELECT enabled FROM merchant WHERE mch_no = ?1")?;
            let mch: Option<bool> = st.query_row([mch_no], |r| r.get(0)).optional()?;
            Ok((mch, app_by_id(c, app_id)?))
        })?;
        if let (Some(enabled), Some(app)) = (mch, &app) {
            if app.mch_no == mch_no {
                let mut cache = self.apps.lock().expect("app cache lock");
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(app_id.to_string(), (Instant::now(), enabled, app.clone()));
            }
        }
        Ok((mch, app))
    }

    /// The app with this id, with its merchant's enabled flag.
    pub fn app(&self, app_id: &str) -> Result<Option<App>, Error> {
        self.read(|c| Ok(app_by_id(c, app_id)?))
    }

    /// Every app, in creation order.
    pub fn list_apps(&self) -> Result<Vec<App>, Error> {
        self.read(|c| Ok(list_apps(c)?))
    }
}

const APP_COLS: &str =
    "a.app_id, a.mch_no, a.sign_type, a.secret, a.req_sign, a.req_timeout, a.notify_url,
    a.order_timeout, a.limit_amount, a.enabled, m.enabled";

fn row_to_app(r: &Row) -> rusqlite::Result<App> {
    let sign_type: String = r.get(2)?;
    Ok(App {
        app_id: r.get(0)?,
        mch_no: r.get(1)?,
        sign_type: SignType::parse(&sign_type).unwrap_or(SignType::Md5),
        secret: r.get(3)?,
        req_sign: r.get(4)?,
        req_timeout_secs: r.get(5)?,
        notify_url: r.get(6)?,
        order_timeout_min: r.get(7)?,
        limit_amount: r.get::<_, Option<i64>>(8)?.map(Amount),
        enabled: r.get(9)?,
        mch_enabled: r.get(10)?,
    })
}

/// The app with this id.
pub(super) fn app_by_id(c: &Connection, app_id: &str) -> rusqlite::Result<Option<App>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {APP_COLS} FROM app a JOIN merchant m ON m.mch_no = a.mch_no WHERE a.app_id = ?1"
    ))?;
    st.query_row([app_id], row_to_app).optional()
}

/// Every app, in creation order.
pub(super) fn list_apps(c: &Connection) -> rusqlite::Result<Vec<App>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {APP_COLS} FROM app a JOIN merchant m ON m.mch_no = a.mch_no ORDER BY a.created_at, a.app_id"
    ))?;
    let rows = st.query_map([], row_to_app)?;
    rows.collect()
}

/// Why an app could not be created.
#[derive(Debug)]
pub enum CreateAppError {
    Exists,
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for CreateAppError {
    fn from(e: rusqlite::Error) -> Self {
        CreateAppError::Sqlite(e)
    }
}

/// Creates the merchant if needed and the app, in one transaction.
pub(super) fn create_app(c: &mut Connection, app: &App, now: i64) -> Result<(), CreateAppError> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    insert_app(&tx, app, now)?;
    tx.commit()?;
    Ok(())
}

/// Inserts the merchant if needed and the app, inside the caller's transaction.
pub(super) fn insert_app(tx: &Connection, app: &App, now: i64) -> Result<(), CreateAppError> {
    tx.execute(
        "INSERT OR IGNORE INTO merchant (mch_no, enabled, created_at) VALUES (?1, 1, ?2)",
        params![app.mch_no, now],
    )?;
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO app (app_id, mch_no, sign_type, secret, req_sign, req_timeout, notify_url,
            order_timeout, limit_amount, enabled, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            app.app_id,
            app.mch_no,
            app.sign_type.as_str(),
            app.secret,
            app.req_sign,
            app.req_timeout_secs,
            app.notify_url,
            app.order_timeout_min,
            app.limit_amount.map(|a| a.0),
            app.enabled,
            now
        ],
    )?;
    if inserted == 0 {
        return Err(CreateAppError::Exists);
    }
    Ok(())
}
