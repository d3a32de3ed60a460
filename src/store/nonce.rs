//! The replies remembered for `nonceStr` (table `request_nonce`).
//!
//! A signed request that carries a `nonceStr` is answered at most once per app and nonce within
//! a day (`api::nonce` decides); these are the statements behind it: look a nonce up, remember a
//! reply, and prune the old ones.
//!
//! A request that changes an order remembers its reply in the very transaction of the change
//! (`ReplyMemo`): a crash can never leave the change without the reply, so a retry gets the
//! first answer, not a new one computed from the changed order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};

use super::Store;
use crate::domain::Order;
use crate::error::Error;

/// A reply remembered for an app's nonce.
#[derive(Debug, Clone)]
pub struct SeenNonce {
    /// The sha256 of the path and the signed fields of the request that used the nonce first.
    pub fingerprint: Vec<u8>,
    pub code: i32,
    pub trace_id: String,
    /// The reply body exactly as it was sent.
    pub reply: Vec<u8>,
}

/// A reply to remember.
#[derive(Debug, Clone)]
pub struct NewNonce {
    pub app_id: String,
    pub nonce: String,
    pub fingerprint: Vec<u8>,
    pub code: i32,
    pub trace_id: String,
    pub reply: Vec<u8>,
    pub now: i64,
}

/// What a nonce'd request's reply is built from once its outcome is known: a pure function of
/// the outcome (the envelope's time, trace id and signer are fixed before the request acts).
pub type Render = dyn Fn(Result<Option<String>, Error>) -> (i32, Vec<u8>) + Send + Sync;

/// The reply of a nonce'd request, to be remembered inside the transaction that changes an
/// order: the store operation that makes the change calls `Memo` with the changed order and
/// writes the row in the same transaction.
#[derive(Clone)]
pub struct ReplyMemo {
    pub app_id: String,
    pub nonce: String,
    pub fingerprint: Vec<u8>,
    pub trace_id: String,
    pub now: i64,
    pub render: Arc<Render>,
    stored: Arc<AtomicBool>,
}

/// The row a store operation writes when it changed an order: given the changed order, the
/// request's outcome is known.
pub type Memo = Box<dyn FnOnce(&Order) -> NewNonce + Send>;

impl ReplyMemo {
    pub fn new(
        app_id: String,
        nonce: String,
        fingerprint: Vec<u8>,
        trace_id: String,
        now: i64,
        render: Arc<Render>,
    ) -> ReplyMemo {
        ReplyMemo {
            app_id,
            nonce,
            fingerprint,
            trace_id,
            now,
            render,
            stored: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The reply for `outcome`, as a row.
    pub fn row(&self, outcome: Result<Option<String>, Error>) -> NewNonce {
        let (code, reply) = (self.render)(outcome);
        NewNonce {
            app_id: self.app_id.clone(),
            nonce: self.nonce.clone(),
            fingerprint: self.fingerprint.clone(),
            code,
            trace_id: self.trace_id.clone(),
            reply,
            now: self.now,
        }
    }

    /// A `Memo` whose outcome `outcome` gives from the changed order.
    pub fn memo(
        &self,
        outcome: impl FnOnce(&Order) -> Result<Option<String>, Error> + Send + 'static,
    ) -> Memo {
        let this = self.clone();
        Box::new(move |order: &Order| {
            let row = this.row(outcome(order));
            this.stored.store(true, Ordering::SeqCst);
            row
        })
    }

    /// A memo for a refund's change: the outcome follows from the refund as it then is.
    pub fn refund_memo(
        &self,
        outcome: impl FnOnce(&crate::domain::Refund) -> Result<Option<String>, Error> + Send + 'static,
    ) -> super::RefundMemo {
        let this = self.clone();
        Box::new(move |refund| {
            let row = this.row(outcome(refund));
            this.stored.store(true, Ordering::SeqCst);
            row
        })
    }

    /// Whether a store operation remembered the reply with its change.
    pub fn stored(&self) -> bool {
        self.stored.load(Ordering::SeqCst)
    }
}

/// Writes a remembered reply (replacing an expired row of the same nonce).
pub(super) fn insert_nonce(c: &Connection, n: &NewNonce) -> Result<(), Error> {
    let mut st = c.prepare_cached(
        "INSERT INTO request_nonce
            (app_id, nonce, fingerprint, code, trace_id, reply, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (app_id, nonce) DO UPDATE SET fingerprint = excluded.fingerprint,
            code = excluded.code, trace_id = excluded.trace_id, reply = excluded.reply,
            created_at = excluded.created_at",
    )?;
    st.execute(params![
        n.app_id,
        n.nonce,
        n.fingerprint,
        n.code,
        n.trace_id,
        n.reply,
        n.now
    ])?;
    Ok(())
}

/// Calls the memo of an operation that changed `order`, and writes its row.
pub(super) fn remember(c: &Connection, memo: Option<Memo>, order: &Order) -> Result<(), Error> {
    match memo {
        Some(memo) => insert_nonce(c, &memo(order)),
        None => Ok(()),
    }
}

/// Most rows one prune statement deletes, so that it never holds the writer for long.
const PRUNE_BATCH: i64 = 2000;

impl Store {
    /// The reply remembered for `nonce` of `app_id`, if it was stored after `since`.
    pub fn seen_nonce(
        &self,
        app_id: &str,
        nonce: &str,
        since: i64,
    ) -> Result<Option<SeenNonce>, Error> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT fingerprint, code, trace_id, reply FROM request_nonce
                 WHERE app_id = ?1 AND nonce = ?2 AND created_at > ?3",
            )?;
            let row = st.query_row(params![app_id, nonce, since], |r| {
                Ok(SeenNonce {
                    fingerprint: r.get(0)?,
                    code: r.get(1)?,
                    trace_id: r.get(2)?,
                    reply: r.get(3)?,
                })
            });
            Ok(row.optional()?)
        })
    }

    /// Remembers a reply (replacing an expired row of the same nonce); on disk when it returns.
    pub fn remember_nonce(&self, n: NewNonce) -> Result<(), Error> {
        self.write(move |c, _| insert_nonce(c, &n))
    }

    /// Deletes the replies stored at or before `until`; returns how many went.
    pub fn prune_nonces(&self, until: i64) -> Result<usize, Error> {
        let mut total = 0;
        loop {
            let n = self.write(move |c, _| {
                let mut st = c.prepare_cached(
                    "DELETE FROM request_nonce WHERE id IN
                        (SELECT id FROM request_nonce WHERE created_at <= ?1 LIMIT ?2)",
                )?;
                Ok(st.execute(params![until, PRUNE_BATCH])?)
            })?;
            total += n;
            if (n as i64) < PRUNE_BATCH {
                return Ok(total);
            }
        }
    }
}
