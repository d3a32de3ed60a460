//! Counters and histograms, and their Prometheus text exposition (format 0.0.4).
//!
//! One process-wide set (`get()`), like the logger: any layer records into it without being
//! handed it. Names and labels follow Prometheus' conventions: base units (`_seconds`,
//! `_bytes`), `_total` on counters. A family's series are created on first use; recording into
//! an existing series takes a read lock and an atomic add. Gauges that are facts of the moment
//! (the outbox backlog, the database's size, the process's memory) are measured at scrape time
//! and passed to `render`.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

/// Latency buckets, in seconds: 100 µs to 10 s.
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Jobs per group commit.
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counts of observations at or below each bound, their sum and count.
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bound, not cumulative; the last is for values above every bound.
    buckets: Vec<AtomicU64>,
    /// The sum, in millionths of the unit.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6).max(0.0) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(
            out,
            "{name}_count{} {}",
            braces(labels),
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// A metric with labels: one series per combination of label values.
pub struct Family<T> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    make: fn() -> T,
    /// The series by the hash of their label values (a lookup allocates nothing), each bucket
    /// with the values themselves.
    series: RwLock<HashMap<u64, Vec<(Vec<String>, Arc<T>)>>>,
}

fn hash_values(values: &[&str]) -> u64 {
    let mut h = DefaultHasher::new();
    for v in values {
        v.hash(&mut h);
    }
    h.finish()
}

fn same(key: &[String], values: &[&str]) -> bool {
    key.len() == values.len() && key.iter().zip(values).all(|(k, v)| k == v)
}

impl<T> Family<T> {
    fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        make: fn() -> T,
    ) -> Family<T> {
        Family {
            name,
            help,
            labels,
            make,
            series: RwLock::new(HashMap::new()),
        }
    }

    /// The series of these label values (in the family's label order).
    pub fn with(&self, values: &[&str]) -> Arc<T> {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let hash = hash_values(values);
        {
            let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, s)) = series
                .get(&hash)
                .and_then(|b| b.iter().find(|(k, _)| same(k, values)))
            {
                return Arc::clone(s);
            }
        }
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        let bucket = series.entry(hash).or_default();
        if let Some((_, s)) = bucket.iter().find(|(k, _)| same(k, values)) {
            return Arc::clone(s);
        }
        let s = Arc::new((self.make)());
        bucket.push((
            values.iter().map(|v| v.to_string()).collect(),
            Arc::clone(&s),
        ));
        s
    }

    /// Calls `f` with each series' rendered labels, in the order of their values.
    fn each(&self, mut f: impl FnMut(&str, &T)) {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<&(Vec<String>, Arc<T>)> = series.values().flatten().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for (values, s) in all {
            let labels: Vec<String> = self
                .labels
                .iter()
                .zip(values)
                .map(|(l, v)| format!("{l}=\"{}\"", escape(v)))
                .collect();
            f(&labels.join(","), s);
        }
    }
}

impl Family<Counter> {
    pub fn inc(&self, values: &[&str]) {
        self.with(values).inc();
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        self.each(|labels, c| {
            let _ = writeln!(out, "{}{{{labels}}} {}", self.name, c.get());
        });
    }
}

impl Family<Histogram> {
    pub fn observe(&self, values: &[&str], d: Duration) {
        self.with(values).observe_duration(d);
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        self.each(|labels, h| h.render(out, self.name, labels));
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the exposition format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every metric unipay records.
pub struct Metrics {
    pub requests: Family<Counter>,
    pub request_seconds: Family<Histogram>,
    pub closes: Family<Counter>,
    pub channel_calls: Family<Counter>,
    pub channel_seconds: Family<Histogram>,
    pub notify_attempts: Family<Counter>,
    pub batch_jobs: Histogram,
    pub commit_seconds: Histogram,
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        requests: Family::new(
            "unipay_http_requests_total",
            "HTTP requests answered, by endpoint, HTTP status and DaxPay code.",
            &["endpoint", "status", "code"],
            Counter::default,
        ),
        request_seconds: Family::new(
            "unipay_http_request_duration_seconds",
            "Time to answer a request, by endpoint.",
            &["endpoint"],
            || Histogram::new(SECONDS),
        ),
        closes: Family::new(
            "unipay_closes_total",
            "Closes and cancels of orders, by who asked and how they ended.",
            &["actor", "outcome"],
            Counter::default,
        ),
        channel_calls: Family::new(
            "unipay_channel_calls_total",
            "Calls to payment channels, by channel, operation and outcome.",
            &["channel", "operation", "outcome"],
            Counter::default,
        ),
        channel_seconds: Family::new(
            "unipay_channel_call_duration_seconds",
            "Time a payment channel took to answer, by channel and operation.",
            &["channel", "operation"],
            || Histogram::new(SECONDS),
        ),
        notify_attempts: Family::new(
            "unipay_notify_attempts_total",
            "Notification deliveries to merchants, by outcome.",
            &["outcome"],
            Counter::default,
        ),
        batch_jobs: Histogram::new(BATCH),
        commit_seconds: Histogram::new(SECONDS),
    })
}

/// A value measured at scrape time: a gauge, or a counter kept elsewhere (the kernel's CPU
/// time of the process).
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub value: f64,
}

impl Gauge {
    fn kind(&self) -> &'static str {
        if self.name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        }
    }
}

/// The exposition text of every metric, then `gauges`, then the process's own.
pub fn render(gauges: &[Gauge]) -> String {
    let m = get();
    let mut out = String::with_capacity(16 * 1024);
    m.requests.render(&mut out);
    m.request_seconds.render(&mut out);
    m.closes.render(&mut out);
    m.channel_calls.render(&mut out);
    m.channel_seconds.render(&mut out);
    m.notify_attempts.render(&mut out);
    header(
        &mut out,
        "unipay_store_batch_jobs",
        "Jobs per group commit of the store's writer.",
        "histogram",
    );
    m.batch_jobs.render(&mut out, "unipay_store_batch_jobs", "");
    header(
        &mut out,
        "unipay_store_commit_duration_seconds",
        "Time of one group commit (the fsync included).",
        "histogram",
    );
    m.commit_seconds
        .render(&mut out, "unipay_store_commit_duration_seconds", "");
    for g in gauges.iter().chain(process_gauges().iter()) {
        header(&mut out, g.name, g.help, g.kind());
        let _ = writeln!(out, "{} {}", g.name, g.value);
    }
    out
}

/// The standard `process_*` metrics, from `/proc/self` (Linux); none elsewhere.
fn process_gauges() -> Vec<Gauge> {
    let mut out = Vec::new();
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return out;
    };
    // Fields after the command name (which may hold spaces), which ends with the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // proc(5): utime 14, stime 15, starttime 22, vsize 23, rss 24 (1-based, counting from pid);
    // `fields` starts at field 3.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let ticks = 100.0; // sysconf(_SC_CLK_TCK) on Linux
    let page = 4096.0;
    if let (Some(u), Some(s)) = (field(14), field(15)) {
        out.push(Gauge {
            name: "process_cpu_seconds_total",
            help: "Total user and system CPU time spent in seconds.",
            value: (u + s) / ticks,
        });
    }
    if let Some(v) = field(23) {
        out.push(Gauge {
            name: "process_virtual_memory_bytes",
            help: "Virtual memory size in bytes.",
            value: v,
        });
    }
    if let Some(r) = field(24) {
        out.push(Gauge {
            name: "process_resident_memory_bytes",
            help: "Resident memory size in bytes.",
            value: r * page,
        });
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let (Some(boot), Some(start)) = (boot, field(22)) {
        out.push(Gauge {
            name: "process_start_time_seconds",
            help: "Start time of the process since unix epoch in seconds.",
            value: boot + start / ticks,
        });
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        out.push(Gauge {
            name: "process_open_fds",
            help: "Number of open file descriptors.",
            value: dir.count() as f64,
        });
    }
    if let Some(max) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| crate::http::soft_open_files(&t))
    {
        out.push(Gauge {
            name: "process_max_fds",
            help: "Maximum number of open file descriptors.",
            value: max as f64,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_families_render_their_labels() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "a=\"b\"");
        assert_eq!(
            out,
            "x_seconds_bucket{a=\"b\",le=\"0.1\"} 1\n\
             x_seconds_bucket{a=\"b\",le=\"1\"} 2\n\
             x_seconds_bucket{a=\"b\",le=\"+Inf\"} 3\n\
             x_seconds_sum{a=\"b\"} 5.55\n\
             x_seconds_count{a=\"b\"} 3\n"
        );
        let f = Family::new("t_total", "T.", &["k"], Counter::default);
        f.inc(&["v\"1"]);
        f.inc(&["v\"1"]);
        f.inc(&["w"]);
        let mut out = String::new();
        f.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_total T.\n# TYPE t_total counter\nt_total{k=\"v\\\"1\"} 2\nt_total{k=\"w\"} 1\n"
        );
    }

    #[test]
    fn the_process_metrics_are_read() {
        let text = render(&[]);
        if std::path::Path::new("/proc/self/stat").exists() {
            for name in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_open_fds",
                "process_start_time_seconds",
            ] {
                assert!(text.contains(&format!("\n{name} ")), "{name}: {text}");
            }
        }
    }
}
