//! A refused request changed nothing: the rows of its order are read before it and after it
//! (one query), and compared.
//!
//! What each refusal may change (protocol.md §5, §7; refund-sync.md §3.6, §5):
//! - close 20041, 20043; a close 20044 of an order that was not `wait`/`progress`; a refund
//!   10506, 20041, 20044 (a retry of a failed one too); a payer's pay refused (20044, 20041);
//!   a repeated `bizOrderNo` refused (20044); a pay sync 20044 (never started); a refund
//!   sync 20080; a nonce reused with another body (10506): nothing at all;
//! - close 20044 of a `progress` order: the channel was asked and found the trade paid: the
//!   order is `success` (its notice written), one failed close record added, the intent ended;
//! - close 20080 (the channel failed, or its outcome is unknown): the order row and its notices
//!   unchanged, one failed close record added; the intent may stay (unknown: recovery settles
//!   it) and the channel's trade may have changed (it may have acted before the timeout);
//! - pay sync 20080: as close 20080, but the close record only when the sync tried to close an
//!   expired order (its sync record is not compared);
//! - a refund repeat answered 0 (the refund is not `fail`): nothing at all.
//!
//! A payer who paid while the channel was being asked (`Faults::raced`) changed the order, its
//! notices and its trade: those are then not compared. Rows of other orders are never touched
//! by a request about one order (their counts and times are compared).

use std::sync::OnceLock;

use super::World;

/// The rows of one order, and a fingerprint of everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Snap {
    order: Option<String>,
    closes: String,
    close_count: i64,
    closed_count: i64,
    intents: String,
    events: String,
    refunds: String,
    trade: Option<String>,
    book: String,
    others: String,
}

/// What a refusal may change (see the module doc); nothing by default.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Allow {
    /// The order row and its notices.
    pub(super) order: bool,
    /// Failed close records it may add, at most.
    pub(super) failed_closes: i64,
    /// Exactly that many (else at most).
    pub(super) exact_closes: bool,
    pub(super) intents: bool,
    /// The channel's trade.
    pub(super) trade: bool,
}

/// `quote(a)||'|'||quote(b)…` over every column of `table`.
fn row_expr(c: &rusqlite::Connection, table: &str) -> String {
    let mut st = c
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .unwrap();
    let cols: Vec<String> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    cols.iter()
        .map(|c| format!("quote({c})"))
        .collect::<Vec<_>>()
        .join("||'|'||")
}

fn snap_sql(c: &rusqlite::Connection) -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let all = |table: &str, filter: &str| {
            format!(
                "(SELECT group_concat({}, ' / ' ORDER BY rowid) FROM {table} WHERE {filter})",
                row_expr(c, table)
            )
        };
        let id = "(SELECT id FROM pay_order WHERE order_no = ?1)";
        format!(
            "SELECT {order}, coalesce({closes}, ''),
                (SELECT count(*) FROM close_record WHERE order_no = ?1),
                (SELECT coalesce(sum(closed), 0) FROM close_record WHERE order_no = ?1),
                coalesce({intents}, ''), coalesce({events}, ''), coalesce({refunds}, ''),
                {trade}, coalesce({book}, ''),
                (SELECT count(*) || ',' || coalesce(sum(updated_at), 0) || ','
                    || coalesce(sum(refundable_balance), 0) || ',' || count(attention)
                    FROM pay_order WHERE order_no <> ?1)
                || ';' || (SELECT count(*) FROM close_record WHERE order_no <> ?1)
                || ';' || (SELECT count(*) FROM close_intent WHERE order_id IS NOT {id})
                || ';' || (SELECT count(*) FROM notify_event WHERE order_id IS NOT {id})
                || ';' || (SELECT count(*) || ',' || coalesce(sum(updated_at), 0)
                    FROM refund_order WHERE order_no <> ?1)
                || ';' || (SELECT count(*) || ',' || coalesce(sum(updated_at), 0)
                    FROM sandbox_trade WHERE order_no <> ?1)
                || ';' || (SELECT count(*) || ',' || coalesce(sum(updated_at), 0)
                    FROM sandbox_refund WHERE order_no <> ?1)",
            order = all("pay_order", "order_no = ?1"),
            closes = all("close_record", "order_no = ?1"),
            intents = all("close_intent", &format!("order_id = {id}")),
            events = all("notify_event", &format!("order_id = {id}")),
            refunds = all("refund_order", "order_no = ?1"),
            trade = all("sandbox_trade", "order_no = ?1"),
            book = all("sandbox_refund", "order_no = ?1"),
        )
    })
}

impl World {
    /// The rows of `order_no` (any text: an unknown order has none) and a fingerprint of the
    /// rest.
    pub(super) fn snap(&self, order_no: &str) -> Snap {
        let c = self.read();
        let mut st = c.prepare_cached(snap_sql(c)).unwrap();
        st.query_row([order_no], |r| {
            Ok(Snap {
                order: r.get(0)?,
                closes: r.get(1)?,
                close_count: r.get(2)?,
                closed_count: r.get(3)?,
                intents: r.get(4)?,
                events: r.get(5)?,
                refunds: r.get(6)?,
                trade: r.get(7)?,
                book: r.get(8)?,
                others: r.get(9)?,
            })
        })
        .unwrap()
    }

    /// Asserts that `what`, about `order_no`, changed nothing since `before` but what `allow`
    /// allows.
    pub(super) fn unchanged(&self, what: &str, order_no: &str, before: &Snap, allow: Allow) {
        let after = self.snap(order_no);
        let seed = self.seed;
        let raced = self
            .faults
            .lock()
            .unwrap()
            .raced
            .iter()
            .any(|o| o == order_no);
        let same = |field: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
            let (a, b) = (format!("{a:?}"), format!("{b:?}"));
            assert!(
                a == b,
                "seed {seed}: {what} ({order_no}) changed its {field}:\n  before {a}\n  after  {b}"
            );
        };
        if !(allow.order || raced) {
            same("order", &before.order, &after.order);
            same("notices", &before.events, &after.events);
        }
        if !(allow.trade || raced) {
            same("trade", &before.trade, &after.trade);
        }
        if !allow.intents {
            same("close intent", &before.intents, &after.intents);
        }
        same("refunds", &before.refunds, &after.refunds);
        same("refunds at the channel", &before.book, &after.book);
        same("other orders", &before.others, &after.others);
        // Close records: only failed ones added, the earlier ones as they were.
        same(
            "successful close records",
            &before.closed_count,
            &after.closed_count,
        );
        let added = after.close_count - before.close_count;
        let ok = match allow.exact_closes {
            true => added == allow.failed_closes,
            false => (0..=allow.failed_closes).contains(&added),
        };
        assert!(
            ok && after.closes.starts_with(&before.closes),
            "seed {seed}: {what} ({order_no}) added {added} close record(s):\n  before {}\n  after  {}",
            before.closes,
            after.closes
        );
    }
}
