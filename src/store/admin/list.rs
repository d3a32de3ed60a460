//! The console's order list: filters, one page of orders newest first, and counts per status.
//!
//! A page is a walk down one index ordered by `created_at` (the one the filter narrows most),
//! fetched in two steps: the ids of the page from the index alone, then those rows. Counts come
//! from `admin_order_count` for whole UTC days and from the orders themselves only for the
//! partial days at the edges of a time range. The needs-attention filter walks the partial
//! index `pay_order_attention` instead (newest flag first), and counts the flagged orders
//! themselves: there are few.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::super::{row_to_order, Store, ORDER_COLS};
use crate::domain::{Order, PayStatus};
use crate::error::Error;

/// Milliseconds in a day: the bucket of `admin_order_count.day`.
const DAY_MS: i64 = 86_400_000;

/// Which orders a list or a count covers. `None` (or an empty list of them) is "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub status: Option<PayStatus>,
    pub channel: Option<String>,
    pub app_id: Option<String>,
    /// Any order number: `orderNo`, `bizOrderNo` or `outOrderNo`, exactly.
    pub q: Option<String>,
    /// Created at or after, in ms.
    pub from: Option<i64>,
    /// Created at or before, in ms (inclusive).
    pub to: Option<i64>,
    /// Only orders flagged for an operator (`attention`), newest flag first.
    pub attention: bool,
}

/// Orders per status, in the order of `PayStatus::ALL`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts(pub [i64; 6]);

impl StatusCounts {
    pub fn get(&self, status: PayStatus) -> i64 {
        self.0[status_index(status)]
    }

    pub fn total(&self) -> i64 {
        self.0.iter().sum()
    }

    fn add(&mut self, status: &str, n: i64) {
        if let Some(s) = PayStatus::parse(status) {
            self.0[status_index(s)] += n;
        }
    }
}

fn status_index(status: PayStatus) -> usize {
    PayStatus::ALL
        .iter()
        .position(|s| *s == status)
        .expect("every status is in PayStatus::ALL")
}

impl Store {
    /// Orders per status under `filter` (whatever its status), and one page of the orders
    /// that match it, newest first.
    pub fn admin_order_list(
        &self,
        filter: &OrderFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(StatusCounts, Vec<Order>), Error> {
        self.read(|c| {
            let counts = status_counts(c, filter)?;
            let total = match filter.status {
                Some(s) => counts.get(s),
                None => counts.total(),
            };
            // Past the last match there is nothing to walk an index for.
            if offset >= total {
                return Ok((counts, Vec::new()));
            }
            Ok((counts, order_page(c, filter, offset, limit)?))
        })
    }

    /// The channels orders were handed to, by name.
    pub fn admin_channels(&self) -> Result<Vec<String>, Error> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT DISTINCT channel FROM admin_order_count WHERE channel <> '' ORDER BY channel",
            )?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
    }
}

/// A `WHERE` clause built from fixed fragments, with its values bound in order.
#[derive(Default)]
struct Where {
    sql: String,
    values: Vec<Value>,
}

impl Where {
    fn and(&mut self, clause: &str, values: impl IntoIterator<Item = Value>) {
        self.sql.push_str(if self.sql.is_empty() {
            " WHERE "
        } else {
            " AND "
        });
        self.sql.push_str(clause);
        self.values.extend(values);
    }

    /// The filter's conditions, without the status and the time range when asked to. Only
    /// the `lead` column's terms (and the time range) may use an index: the others are written
    /// `+column`, which SQLite checks on the rows the lead's index gives and never walks.
    fn of(f: &OrderFilter, status: bool, range: Option<(i64, i64)>, lead: Lead) -> Where {
        let col = |name: &'static str, me: Lead| match lead == me || lead == Lead::Any {
            true => name.to_string(),
            false => format!("+{name}"),
        };
        let mut w = Where::default();
        if let (true, Some(s)) = (status, f.status) {
            let clause = format!("{} = ?", col("status", Lead::Status));
            w.and(&clause, [Value::from(s.as_str().to_string())]);
        }
        if let Some(ch) = &f.channel {
            let clause = format!("{} = ?", col("channel", Lead::Channel));
            w.and(&clause, [Value::from(ch.clone())]);
        }
        if let Some(app) = &f.app_id {
            let clause = format!("{} = ?", col("app_id", Lead::App));
            w.and(&clause, [Value::from(app.clone())]);
        }
        if f.attention {
            // Written as the partial index's own condition, so that the index can serve it.
            w.and("attention IS NOT NULL", []);
        }
        if let Some(q) = &f.q {
            let v = Value::from(q.clone());
            w.and(
                "(order_no = ? OR biz_order_no = ? OR out_order_no = ?)",
                [v.clone(), v.clone(), v],
            );
        }
        // Every console index ends in created_at: a time range narrows whichever one leads.
        let created = match lead {
            Lead::Number | Lead::Attention => "+created_at",
            _ => "created_at",
        };
        match range {
            Some((lo, hi)) => w.and(
                &format!("{created} BETWEEN ? AND ?"),
                [Value::from(lo), Value::from(hi)],
            ),
            None => {
                if let Some(from) = f.from {
                    w.and(&format!("{created} >= ?"), [Value::from(from)]);
                }
                if let Some(to) = f.to {
                    w.and(&format!("{created} <= ?"), [Value::from(to)]);
                }
            }
        }
        w
    }
}

/// The filter whose index a page walks: every console index ends in `created_at`, so any one
/// of them gives the orders newest first, and the other filters are checked on its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lead {
    /// SQLite chooses (at most one filter has an index).
    Any,
    /// The order numbers (multi-index OR over three unique-ish indexes).
    Number,
    /// The flagged orders (the partial index `pay_order_attention`, by `attention_at`).
    Attention,
    Status,
    Channel,
    App,
    Time,
}

/// Which filter's index to walk for `f`: the order numbers when given, else the flagged orders
/// when asked for, else the filter that
/// matches the fewest orders by `admin_order_count`. That bounds a page's walk by the smallest
/// filter, even when two broad filters have few orders in common (SQLite has no statistics to
/// see that, and would walk the first index it likes to its end).
fn choose_lead(c: &Connection, f: &OrderFilter) -> rusqlite::Result<Lead> {
    if f.q.is_some() {
        return Ok(Lead::Number);
    }
    if f.attention {
        return Ok(Lead::Attention);
    }
    let time = f.from.is_some() || f.to.is_some();
    let given = [
        f.status.is_some(),
        f.channel.is_some(),
        f.app_id.is_some(),
        time,
    ];
    if given.iter().filter(|g| **g).count() < 2 {
        return Ok(Lead::Any);
    }
    let days = |t: Option<i64>| t.map(|ms| ms.div_euclid(DAY_MS));
    let mut st = c.prepare_cached(
        "SELECT sum(CASE WHEN status = ?1 THEN n ELSE 0 END),
                sum(CASE WHEN channel = ?2 THEN n ELSE 0 END),
                sum(CASE WHEN app_id = ?3 THEN n ELSE 0 END),
                sum(CASE WHEN day BETWEEN coalesce(?4, day) AND coalesce(?5, day) THEN n ELSE 0 END)
         FROM admin_order_count",
    )?;
    let sizes: [Option<i64>; 4] = st.query_row(
        params![
            f.status.map(PayStatus::as_str),
            f.channel,
            f.app_id,
            days(f.from),
            days(f.to)
        ],
        |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]),
    )?;
    let leads = [Lead::Status, Lead::Channel, Lead::App, Lead::Time];
    let best = (0..4)
        .filter(|i| given[*i])
        .min_by_key(|i| sizes[*i].unwrap_or(0))
        .map_or(Lead::Any, |i| leads[i]);
    Ok(best)
}

fn order_page(
    c: &Connection,
    f: &OrderFilter,
    offset: i64,
    limit: i64,
) -> rusqlite::Result<Vec<Order>> {
    // The ids come from the lead filter's index alone (it holds created_at and the rowid); only
    // the rows of the page are read from the table, so a deep page skips index entries, not
    // rows.
    let lead = choose_lead(c, f)?;
    let mut w = Where::of(f, true, None, lead);
    w.values.push(Value::from(limit));
    w.values.push(Value::from(offset));
    let order = match f.attention {
        true => "attention_at DESC, id DESC",
        false => "created_at DESC, id DESC",
    };
    let mut st = c.prepare_cached(&format!(
        "SELECT id FROM {}{} ORDER BY {order} LIMIT ? OFFSET ?",
        from(lead),
        w.sql
    ))?;
    let ids = st
        .query_map(params_from_iter(w.values), |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut st = c.prepare_cached(&format!("SELECT {ORDER_COLS} FROM pay_order WHERE id = ?1"))?;
    let mut orders = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(order) = st.query_row([id], row_to_order).optional()? {
            orders.push(order);
        }
    }
    Ok(orders)
}

/// The table of a walk led by `lead`: the flagged orders are read through their partial index
/// by name (SQLite would rather walk the status index to group or sort, over every order).
fn from(lead: Lead) -> &'static str {
    match lead {
        Lead::Attention => "pay_order INDEXED BY pay_order_attention",
        _ => "pay_order",
    }
}

/// Orders per status under `f` (its status ignored): whole UTC days from `admin_order_count`,
/// the partial days at the edges of the time range from the orders themselves.
pub(super) fn status_counts(c: &Connection, f: &OrderFilter) -> rusqlite::Result<StatusCounts> {
    let mut counts = StatusCounts::default();
    if f.q.is_some() || f.attention {
        // An order number matches a handful of orders, and few are flagged: count them directly.
        let lead = match f.q {
            Some(_) => Lead::Number,
            None => Lead::Attention,
        };
        let w = Where::of(f, false, None, lead);
        let mut st = c.prepare_cached(&format!(
            "SELECT status, count(*) FROM {}{} GROUP BY status",
            from(lead),
            w.sql
        ))?;
        let mut rows = st.query(params_from_iter(w.values))?;
        while let Some(r) = rows.next()? {
            counts.add(&r.get::<_, String>(0)?, r.get(1)?);
        }
        return Ok(counts);
    }
    let (lo, hi) = (f.from.unwrap_or(i64::MIN), f.to.unwrap_or(i64::MAX));
    if lo > hi {
        return Ok(counts);
    }
    // The whole days inside [lo, hi]: first_day.. =last_day.
    let first_day = match f.from {
        Some(from) => from.div_euclid(DAY_MS) + i64::from(from.rem_euclid(DAY_MS) != 0),
        None => i64::MIN / DAY_MS,
    };
    let last_day = match f.to {
        Some(to) => (to + 1).div_euclid(DAY_MS) - 1,
        None => i64::MAX / DAY_MS,
    };
    if first_day > last_day {
        count_range(c, f, lo, hi, &mut counts)?;
        return Ok(counts);
    }
    let mut w = Where::default();
    w.and(
        "day BETWEEN ? AND ?",
        [Value::from(first_day), Value::from(last_day)],
    );
    if let Some(ch) = &f.channel {
        w.and("channel = ?", [Value::from(ch.clone())]);
    }
    if let Some(app) = &f.app_id {
        w.and("app_id = ?", [Value::from(app.clone())]);
    }
    let mut st = c.prepare_cached(&format!(
        "SELECT status, sum(n) FROM admin_order_count{} GROUP BY status",
        w.sql
    ))?;
    let mut rows = st.query(params_from_iter(w.values))?;
    while let Some(r) = rows.next()? {
        counts.add(&r.get::<_, String>(0)?, r.get(1)?);
    }
    if f.from.is_some() && lo < first_day * DAY_MS {
        count_range(c, f, lo, first_day * DAY_MS - 1, &mut counts)?;
    }
    if f.to.is_some() && hi >= (last_day + 1) * DAY_MS {
        count_range(c, f, (last_day + 1) * DAY_MS, hi, &mut counts)?;
    }
    Ok(counts)
}

/// Adds the orders created in `[lo, hi]` under `f` to `counts`, one status at a time (each a
/// range of the `(status, created_at)` index).
fn count_range(
    c: &Connection,
    f: &OrderFilter,
    lo: i64,
    hi: i64,
    counts: &mut StatusCounts,
) -> rusqlite::Result<()> {
    let w = Where::of(f, false, Some((lo, hi)), Lead::Any);
    let sql = format!("SELECT count(*) FROM pay_order{} AND status = ?", w.sql);
    let mut st = c.prepare_cached(&sql)?;
    for status in PayStatus::ALL {
        let mut values = w.values.clone();
        values.push(Value::from(status.as_str().to_string()));
        let n: i64 = st.query_row(params_from_iter(values), |r| r.get(0))?;
        counts.0[status_index(status)] += n;
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;

    /// A database with the schema and the orders `(created_at, status, app, channel)`.
    fn db(orders: &[(i64, &str, &str, Option<&str>)]) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(include_str!("../../../schema.sql"))
            .unwrap();
        c.execute_batch(
            "INSERT INTO merchant VALUES ('M', 1, 0);
             INSERT INTO app (app_id, mch_no, sign_type, secret, created_at)
             VALUES ('A', 'M', 'md5', 's', 0), ('B', 'M', 'md5', 's', 0);",
        )
        .unwrap();
        for (i, (at, status, app, channel)) in orders.iter().enumerate() {
            c.execute(
                "INSERT INTO pay_order (order_no, mch_no, app_id, biz_order_no, title, channel,
                    amount, refundable_balance, status, expired_time, created_at, updated_at)
                 VALUES (?1, 'M', ?2, ?3, 't', ?4, 100, 0, ?5, 0, ?6, ?6)",
                params![format!("P{i}"), app, format!("B{i}"), channel, status, at],
            )
            .unwrap();
        }
        c
    }

    /// Counts per status computed the slow way, for comparison.
    fn brute(c: &Connection, f: &OrderFilter) -> StatusCounts {
        let w = Where::of(f, false, None, Lead::Any);
        let mut st = c
            .prepare(&format!(
                "SELECT status, count(*) FROM pay_order{} GROUP BY status",
                w.sql
            ))
            .unwrap();
        let mut counts = StatusCounts::default();
        let mut rows = st.query(params_from_iter(w.values)).unwrap();
        while let Some(r) = rows.next().unwrap() {
            counts.add(&r.get::<_, String>(0).unwrap(), r.get(1).unwrap());
        }
        counts
    }

    #[test]
    fn counts_match_a_full_scan_for_any_range() {
        let day = DAY_MS;
        let mut orders = Vec::new();
        let statuses = ["wait", "progress", "success", "close", "cancel", "fail"];
        for i in 0..400i64 {
            let at = 10 * day + i * (day / 37) - 5 * day;
            let status = statuses[(i % 6) as usize];
            let app = if i % 3 == 0 { "A" } else { "B" };
            let channel = if i % 4 == 0 { None } else { Some("sandbox") };
            orders.push((at, status, app, channel));
        }
        let c = db(&orders);
        // A status change moves the order between buckets.
        c.execute(
            "UPDATE pay_order SET status = 'close', channel = 'sandbox' WHERE order_no = 'P0'",
            [],
        )
        .unwrap();
        c.execute("DELETE FROM pay_order WHERE order_no = 'P1'", [])
            .unwrap();
        let edges = [
            None,
            Some(5 * day),
            Some(6 * day - 1),
            Some(6 * day + 12345),
            Some(9 * day),
            Some(20 * day),
        ];
        for from in edges {
            for to in edges {
                for app in [None, Some("A")] {
                    for channel in [None, Some("sandbox")] {
                        let f = OrderFilter {
                            from,
                            to,
                            app_id: app.map(str::to_string),
                            channel: channel.map(str::to_string),
                            ..OrderFilter::default()
                        };
                        assert_eq!(status_counts(&c, &f).unwrap(), brute(&c, &f), "{f:?}");
                    }
                }
            }
        }
        let f = OrderFilter {
            q: Some("B7".into()),
            ..OrderFilter::default()
        };
        assert_eq!(status_counts(&c, &f).unwrap().total(), 1);
    }

    #[test]
    fn the_smallest_filter_leads_and_results_do_not_depend_on_it() {
        let mut orders = Vec::new();
        for i in 0..300i64 {
            // App A has every status but fail; the only fails are in app B.
            let (status, app) = match i % 10 {
                0 => ("fail", "B"),
                1..=3 => ("success", "B"),
                _ => ("success", "A"),
            };
            let channel = if i % 2 == 0 { Some("sandbox") } else { None };
            orders.push((i * 1000, status, app, channel));
        }
        let c = db(&orders);
        let f = |status: Option<PayStatus>, app: Option<&str>, channel: Option<&str>| OrderFilter {
            status,
            app_id: app.map(str::to_string),
            channel: channel.map(str::to_string),
            from: Some(5000),
            ..OrderFilter::default()
        };
        let fail_in_a = f(Some(PayStatus::Fail), Some("A"), None);
        assert_eq!(choose_lead(&c, &fail_in_a).unwrap(), Lead::Status);
        let success_in_b = f(Some(PayStatus::Success), Some("B"), None);
        assert_eq!(choose_lead(&c, &success_in_b).unwrap(), Lead::App);
        let q = OrderFilter {
            q: Some("B1".into()),
            ..success_in_b.clone()
        };
        assert_eq!(choose_lead(&c, &q).unwrap(), Lead::Number);
        for status in [None, Some(PayStatus::Fail), Some(PayStatus::Success)] {
            for app in [None, Some("A"), Some("B")] {
                for channel in [None, Some("sandbox")] {
                    let filter = f(status, app, channel);
                    let w = Where::of(&filter, true, None, Lead::Any);
                    let mut st = c
                        .prepare(&format!(
                            "SELECT order_no FROM pay_order{} ORDER BY created_at DESC, id DESC",
                            w.sql
                        ))
                        .unwrap();
                    let expected: Vec<String> = st
                        .query_map(params_from_iter(w.values), |r| r.get(0))
                        .unwrap()
                        .collect::<Result<_, _>>()
                        .unwrap();
                    let got: Vec<String> = order_page(&c, &filter, 0, 1000)
                        .unwrap()
                        .into_iter()
                        .map(|o| o.order_no)
                        .collect();
                    assert_eq!(got, expected, "{filter:?}");
                }
            }
        }
    }

    #[test]
    fn the_attention_filter_walks_its_index_newest_flag_first() {
        let mut orders = Vec::new();
        for i in 0..60i64 {
            let status = if i % 2 == 0 { "success" } else { "close" };
            let app = if i % 3 == 0 { "A" } else { "B" };
            orders.push((i * 1000, status, app, Some("sandbox")));
        }
        let c = db(&orders);
        // Every fifth order is flagged, the older ones later.
        for i in (0..60).step_by(5) {
            c.execute(
                "UPDATE pay_order SET attention = 'late', attention_at = ?2 WHERE order_no = ?1",
                params![format!("P{i}"), 100_000 - i],
            )
            .unwrap();
        }
        let nos = |sql: &str, values: Vec<Value>| -> Vec<String> {
            let mut st = c.prepare(sql).unwrap();
            let rows = st
                .query_map(params_from_iter(values), |r| r.get(0))
                .unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        for app in [None, Some("A")] {
            for status in [None, Some(PayStatus::Success), Some(PayStatus::Close)] {
                for from in [None, Some(20_000)] {
                    let f = OrderFilter {
                        attention: true,
                        app_id: app.map(str::to_string),
                        status,
                        from,
                        ..OrderFilter::default()
                    };
                    assert_eq!(choose_lead(&c, &f).unwrap(), Lead::Attention);
                    assert_eq!(status_counts(&c, &f).unwrap(), brute(&c, &f), "{f:?}");
                    let w = Where::of(&f, true, None, Lead::Any);
                    let expected = nos(
                        &format!(
                            "SELECT order_no FROM pay_order{} ORDER BY attention_at DESC",
                            w.sql
                        ),
                        w.values,
                    );
                    let got: Vec<String> = order_page(&c, &f, 0, 100)
                        .unwrap()
                        .into_iter()
                        .map(|o| o.order_no)
                        .collect();
                    assert_eq!(got, expected, "{f:?}");
                }
            }
        }
        let f = OrderFilter {
            attention: true,
            ..OrderFilter::default()
        };
        assert_eq!(status_counts(&c, &f).unwrap().total(), 12);
        assert_eq!(order_page(&c, &f, 0, 3).unwrap()[0].order_no, "P0");
        // The page is a walk down the partial index, in its order: no sort.
        let plan = |sql: &str, values: Vec<Value>| -> String {
            let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = st
                .query_map(params_from_iter(values), |r| r.get::<_, String>(3))
                .unwrap();
            rows.collect::<Result<Vec<_>, _>>().unwrap().join("; ")
        };
        let w = Where::of(&f, true, None, Lead::Attention);
        let page = plan(
            &format!(
                "SELECT id FROM {}{} ORDER BY attention_at DESC, id DESC",
                from(Lead::Attention),
                w.sql
            ),
            w.values,
        );
        assert!(page.contains("pay_order_attention"), "{page}");
        assert!(!page.contains("TEMP B-TREE"), "{page}");
        let w = Where::of(&f, false, None, Lead::Attention);
        let count = plan(
            &format!(
                "SELECT status, count(*) FROM {}{} GROUP BY status",
                from(Lead::Attention),
                w.sql
            ),
            w.values,
        );
        assert!(count.contains("pay_order_attention"), "{count}");
    }

    #[test]
    fn pages_are_newest_first_and_filtered() {
        let c = db(&[
            (1000, "wait", "A", None),
            (3000, "success", "B", Some("sandbox")),
            (2000, "close", "A", Some("sandbox")),
            (2000, "wait", "B", None),
        ]);
        let nos = |f: &OrderFilter, offset| -> Vec<String> {
            order_page(&c, f, offset, 2)
                .unwrap()
                .into_iter()
                .map(|o| o.order_no)
                .collect()
        };
        let all = OrderFilter::default();
        assert_eq!(nos(&all, 0), ["P1", "P3"]);
        assert_eq!(nos(&all, 2), ["P2", "P0"]);
        let wait = OrderFilter {
            status: Some(PayStatus::Wait),
            ..OrderFilter::default()
        };
        assert_eq!(nos(&wait, 0), ["P3", "P0"]);
        let range = OrderFilter {
            from: Some(1500),
            to: Some(2000),
            app_id: Some("A".into()),
            ..OrderFilter::default()
        };
        assert_eq!(nos(&range, 0), ["P2"]);
        let q = OrderFilter {
            q: Some("B3".into()),
            ..OrderFilter::default()
        };
        assert_eq!(nos(&q, 0), ["P3"]);
    }
}
