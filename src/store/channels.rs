//! The settings of the real channels per app (`channel_config`), and what a channel handed the
//! payer (`pay_order.pay_body`). The store keeps a channel's settings as its own text; the
//! channel's module reads and checks it.

use rusqlite::{params, Connection, OptionalExtension};

use super::nonce::{remember, Memo};
use super::{order_by_id, Store};
use crate::error::Error;

/// One app's settings of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    pub app_id: String,
    pub channel: String,
    pub enabled: bool,
    /// The channel's own text (its keys included): never logged or printed whole.
    pub settings: String,
    pub updated_at: i64,
}

impl Store {
    /// The settings of `channel` for `app_id`, enabled or not.
    pub fn channel_config(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<Option<ChannelConfig>, Error> {
        self.read(|c| Ok(channel_config(c, app_id, channel)?))
    }

    /// Whether any app has a real channel enabled.
    pub fn any_channel_enabled(&self) -> Result<bool, Error> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT EXISTS (SELECT 1 FROM channel_config WHERE enabled)")?;
            Ok(st.query_row([], |r| r.get(0))?)
        })
    }

    /// After a channel started a payment: remembers what the payer was given to pay with (when
    /// the channel cannot make it again), and the request's reply (`memo`), in one transaction.
    pub fn after_pay_start(
        &self,
        order_id: i64,
        pay_body: Option<String>,
        memo: Option<Memo>,
    ) -> Result<(), Error> {
        self.write(move |c, _| {
            if let Some(body) = pay_body {
                c.prepare_cached("UPDATE pay_order SET pay_body = ?2 WHERE id = ?1")?
                    .execute(params![order_id, body])?;
            }
            if let Some(memo) = memo {
                let order = order_by_id(c, order_id)?.ok_or(Error::OrderNotFound)?;
                remember(c, Some(memo), &order)?;
            }
            Ok(())
        })
    }

    /// What `set_pay_body` remembered for an order.
    pub fn pay_body(&self, order_id: i64) -> Result<Option<String>, Error> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT pay_body FROM pay_order WHERE id = ?1")?;
            Ok(st.query_row([order_id], |r| r.get(0)).optional()?.flatten())
        })
    }
}

const COLS: &str = "app_id, channel, enabled, settings, updated_at";

fn row(r: &rusqlite::Row) -> rusqlite::Result<ChannelConfig> {
    Ok(ChannelConfig {
        app_id: r.get(0)?,
        channel: r.get(1)?,
        enabled: r.get(2)?,
        settings: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

pub(super) fn channel_config(
    c: &Connection,
    app_id: &str,
    channel: &str,
) -> rusqlite::Result<Option<ChannelConfig>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM channel_config WHERE app_id = ?1 AND channel = ?2"
    ))?;
    st.query_row([app_id, channel], row).optional()
}

/// Stores (or replaces, enabled again) the settings of a channel for an app.
pub(super) fn set_channel_config(
    c: &Connection,
    app_id: &str,
    channel: &str,
    settings: &str,
    now: i64,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO channel_config (app_id, channel, enabled, settings, created_at, updated_at)
         VALUES (?1, ?2, 1, ?3, ?4, ?4)
         ON CONFLICT (app_id, channel) DO UPDATE SET enabled = 1,
            settings = excluded.settings, updated_at = excluded.updated_at",
        params![app_id, channel, settings, now],
    )?;
    Ok(())
}

/// Disables a channel of an app; false when it was never set.
pub(super) fn disable_channel(
    c: &Connection,
    app_id: &str,
    channel: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let n = c.execute(
        "UPDATE channel_config SET enabled = 0, updated_at = ?3 WHERE app_id = ?1 AND channel = ?2",
        params![app_id, channel, now],
    )?;
    Ok(n == 1)
}

/// Every channel setting, of one app or of all, by app and channel.
pub(super) fn channel_configs(
    c: &Connection,
    app_id: Option<&str>,
) -> rusqlite::Result<Vec<ChannelConfig>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM channel_config WHERE ?1 IS NULL OR app_id = ?1 ORDER BY app_id, channel"
    ))?;
    let rows = st.query_map([app_id], row)?;
    rows.collect()
}
