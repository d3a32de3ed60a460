//! `Offline`: the database of a command (`app create`, `notify list`, …) or of start-up before
//! the server runs, on one plain connection, without the writer thread. Each method is one
//! statement or one short transaction, so it works while `serve` runs on the same file (SQLite's
//! locks and the busy timeout order the two processes).

use std::path::Path;

use rusqlite::Connection;

use super::{
    admin, apps, channels, orders, outbox, ChannelConfig, CreateAppError, EventFilter, EventInfo,
    OpenError,
};
use crate::domain::{App, Order};

/// The database on one connection, for commands that run beside (or before) the server.
pub struct Offline {
    conn: Connection,
}

impl Offline {
    /// Opens (creating or migrating) the database; also says whether it was brand new.
    pub fn open(path: &Path) -> Result<(Offline, bool), OpenError> {
        let (conn, fresh) = super::open_connection(path)?;
        Ok((Offline { conn }, fresh))
    }

    /// Creates the merchant if needed and the app, in one transaction.
    pub fn create_app(&mut self, app: &App, now: i64) -> Result<(), CreateAppError> {
        apps::create_app(&mut self.conn, app, now)
    }

    /// The app with this id.
    pub fn app(&self, app_id: &str) -> rusqlite::Result<Option<App>> {
        apps::app_by_id(&self.conn, app_id)
    }

    /// Every app, in creation order.
    pub fn list_apps(&self) -> rusqlite::Result<Vec<App>> {
        apps::list_apps(&self.conn)
    }

    /// Orders flagged for an operator, newest first.
    pub fn attention_orders(&self, limit: usize) -> rusqlite::Result<Vec<Order>> {
        orders::attention_orders(&self.conn, limit)
    }

    /// Notification events, newest first.
    pub fn list_events(
        &self,
        filter: EventFilter,
        limit: usize,
    ) -> rusqlite::Result<Vec<EventInfo>> {
        outbox::list_events(&self.conn, filter, limit)
    }

    /// Makes an event pending and due now; false when there is no such event.
    pub fn resend_event(&self, event_id: i64, now: i64) -> rusqlite::Result<bool> {
        outbox::resend_event(&self.conn, event_id, now)
    }

    /// The sha256 hex of the console's token, if one was set.
    pub fn admin_token_hash(&self) -> rusqlite::Result<Option<String>> {
        admin::admin_token_hash(&self.conn)
    }

    /// Sets the console's token hash. A changed token ends every browser session.
    pub fn set_admin_token_hash(&mut self, hash: &str, now: i64) -> rusqlite::Result<()> {
        admin::set_admin_token_hash(&mut self.conn, hash, now)
    }

    /// Stores (or replaces, and enables) the settings of `channel` for `app_id`. The app must
    /// exist.
    pub fn set_channel_config(
        &self,
        app_id: &str,
        channel: &str,
        settings: &str,
        now: i64,
    ) -> rusqlite::Result<()> {
        channels::set_channel_config(&self.conn, app_id, channel, settings, now)
    }

    /// Disables a channel of an app; false when it was never set.
    pub fn disable_channel(&self, app_id: &str, channel: &str, now: i64) -> rusqlite::Result<bool> {
        channels::disable_channel(&self.conn, app_id, channel, now)
    }

    /// Refunds, newest first, of one status or all.
    pub fn list_refunds(
        &self,
        status: Option<crate::domain::RefundStatus>,
        limit: usize,
    ) -> rusqlite::Result<Vec<crate::domain::Refund>> {
        super::refunds::list_refunds(&self.conn, status, limit)
    }

    /// The channel settings of one app, or of every app.
    pub fn channel_configs(&self, app_id: Option<&str>) -> rusqlite::Result<Vec<ChannelConfig>> {
        channels::channel_configs(&self.conn, app_id)
    }
}
