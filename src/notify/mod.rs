//! The notifier: delivers the outbox to merchants, retrying until delivered or given up.
//!
//! One dispatcher thread finds due events (woken by the store after a commit that wrote outbox
//! rows, or when the next retry falls due) and hands them to a few worker threads, so one slow
//! merchant does not hold up the others. A worker signs and POSTs the body of spec §9, then
//! records the attempt through the store: delivered, retry at the next step of the schedule, or
//! given up. Nothing here holds a store lock during network I/O: reads and the attempt record are
//! separate short store calls around the HTTP request.
//!
//! Delivery is at least once: an attempt that was in flight when the process died was not
//! recorded, so its event is still pending and due, and is sent again after a restart. The
//! header `X-Unipay-Event-Id` is the same on every attempt of an event, for deduplication. An
//! attempt that could not be recorded (a full disk) leaves its event due too: it is handed out
//! again only after `UNRECORDED_PAUSE`, not at once and over and over.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::metrics;
use crate::stop::Stop;
use crate::store::{Attempt, DueEvent, Signal, Store};
use crate::sys::{self, Clock, Random, UtcOffset};
use crate::wire::{self, Signer};

/// DaxPay's retry schedule: the waits after the 1st, 2nd, … failed attempt (16 attempts).
pub const DEFAULT_SCHEDULE: [u64; 15] = [
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
];

/// How notifications are delivered.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The wait after each failed attempt; one more attempt than entries is made in all.
    pub schedule: Vec<Duration>,
    /// Delivery threads.
    pub workers: usize,
    /// Timeout of one attempt (connect and reply).
    pub timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            schedule: DEFAULT_SCHEDULE
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            workers: 4,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Most characters of a reply or an error kept in an attempt record.
const DETAIL_CHARS: usize = 300;
/// Most bytes of a merchant's reply read.
const MAX_REPLY: u64 = 64 * 1024;
/// Most events handed out per scan.
const SCAN_LIMIT: usize = 256;
/// Longest the dispatcher sleeps without looking (catches resends made by another process).
const MAX_IDLE: Duration = Duration::from_secs(1);
/// How long an event whose attempt could not be recorded waits before it is sent again.
const UNRECORDED_PAUSE: Duration = Duration::from_secs(5);

/// Events a worker finished: the id, and whether its attempt was recorded.
type Done = Arc<Mutex<Vec<(i64, bool)>>>;

/// Starts the dispatcher and its workers. They run until `stop`: then no attempt starts, and
/// those under way are recorded (`Stop::wait_idle` waits for them).
pub fn start(
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    offset: UtcOffset,
    cfg: NotifyConfig,
    stop: Arc<Stop>,
) -> std::io::Result<()> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(cfg.timeout)
        .timeout(cfg.timeout)
        .redirects(0)
        .build();
    let signal = store.events_signal();
    let done: Done = Arc::default();
    let (work_tx, work_rx) = mpsc::channel::<DueEvent>();
    let work_rx = Arc::new(Mutex::new(work_rx));
    let cfg = Arc::new(cfg);
    for i in 0..cfg.workers.max(1) {
        let worker = Worker {
            store: store.clone(),
            clock: clock.clone(),
            random: random.clone(),
            offset,
            cfg: cfg.clone(),
            agent: agent.clone(),
            done: done.clone(),
            signal: signal.clone(),
            stop: stop.clone(),
        };
        let rx = work_rx.clone();
        thread::Builder::new()
            .name(format!("notify-{i}"))
            .spawn(move || worker.run(rx))?;
    }
    thread::Builder::new()
        .name("notify-dispatch".into())
        .spawn(move || dispatch(store, clock, signal, done, work_tx, stop))?;
    Ok(())
}

/// Finds due events and hands each to a worker once; an event is handed out again only after
/// its worker reported it done (so after its attempt was committed), or `UNRECORDED_PAUSE`
/// after that when its attempt could not be recorded.
fn dispatch(
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    signal: Arc<Signal>,
    done: Done,
    work_tx: Sender<DueEvent>,
    stop: Arc<Stop>,
) {
    let mut in_flight: HashSet<i64> = HashSet::new();
    let mut held: HashMap<i64, Instant> = HashMap::new();
    loop {
        if stop.is_set() {
            // The workers' queue closes: they finish the attempt under way and end.
            return;
        }
        // Finished events first: their attempts are committed, so the scan below sees them.
        for (id, recorded) in done.lock().expect("notify done list").drain(..) {
            in_flight.remove(&id);
            if !recorded {
                held.insert(id, Instant::now() + UNRECORDED_PAUSE);
            }
        }
        held.retain(|_, until| *until > Instant::now());
        let now = clock.now_ms();
        let mut wait = held
            .values()
            .map(|until| until.saturating_duration_since(Instant::now()))
            .fold(MAX_IDLE, Duration::min);
        match store.due_events(now, SCAN_LIMIT + in_flight.len() + held.len()) {
            Ok(due) => {
                for ev in due {
                    if held.contains_key(&ev.id) {
                        continue;
                    }
                    if in_flight.insert(ev.id) && work_tx.send(ev).is_err() {
                        return;
                    }
                }
            }
            Err(e) => log::error!("notify: cannot read due events: {e}"),
        }
        if let Ok(Some(next)) = store.next_due_after(now) {
            let until = Duration::from_millis((next - clock.now_ms()).max(0) as u64);
            wait = wait.min(until);
        }
        signal.wait(wait);
    }
}

struct Worker {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    offset: UtcOffset,
    cfg: Arc<NotifyConfig>,
    agent: ureq::Agent,
    done: Done,
    signal: Arc<Signal>,
    stop: Arc<Stop>,
}

/// The result of one POST to a merchant.
struct Sent {
    delivered: bool,
    http_status: Option<u16>,
    detail: String,
}

impl Worker {
    fn run(self, rx: Arc<Mutex<Receiver<DueEvent>>>) {
        loop {
            let next = rx.lock().expect("notify work queue").recv();
            let Ok(ev) = next else { return };
            // After a stop, an event not yet attempted stays pending for the next start.
            let Some(_busy) = self.stop.work() else {
                return;
            };
            let id = ev.id;
            let recorded = self.attempt(ev);
            self.done
                .lock()
                .expect("notify done list")
                .push((id, recorded));
            self.signal.raise();
        }
    }

    /// One attempt at delivering `ev`; returns whether it was recorded.
    fn attempt(&self, ev: DueEvent) -> bool {
        let sent = self.send(&ev);
        let at = self.clock.now_ms();
        let round = ev.attempts as usize; // attempts before this one, in this round
        let retry_at = match sent.delivered {
            true => None,
            false => self
                .cfg
                .schedule
                .get(round)
                .map(|d| at + d.as_millis() as i64),
        };
        metrics::get()
            .notify_attempts
            .inc(&[match (sent.delivered, retry_at) {
                (true, _) => "delivered",
                (false, Some(_)) => "failed",
                (false, None) => "given_up",
            }]);
        log::info!(
            "notify event={} order={} attempt={} {} status={} {}",
            ev.id,
            ev.order_no,
            round + 1,
            match (sent.delivered, retry_at) {
                (true, _) => "delivered",
                (false, Some(_)) => "failed, will retry",
                (false, None) => "failed, giving up",
            },
            sent.http_status.map_or("-".to_string(), |s| s.to_string()),
            if sent.delivered {
                ""
            } else {
                sent.detail.as_str()
            },
        );
        let attempt = Attempt {
            at,
            delivered: sent.delivered,
            http_status: sent.http_status,
            detail: sent.detail,
            retry_at,
        };
        match self.store.record_attempt(ev.id, attempt) {
            Ok(()) => true,
            // Not recorded: the event stays due and is tried again (at least once). A full
            // disk is logged by the store, once.
            Err(e) if e.is_store_full() => {
                log::debug!("notify event={}: the attempt is not recorded: {e}", ev.id);
                false
            }
            Err(e) => {
                log::error!("notify event={}: cannot record the attempt: {e}", ev.id);
                false
            }
        }
    }

    fn send(&self, ev: &DueEvent) -> Sent {
        let data = match wire::sorted_data(&ev.data) {
            Ok(d) => d,
            Err(e) => {
                return Sent {
                    delivered: false,
                    http_status: None,
                    detail: format!("bad stored data: {e}"),
                }
            }
        };
        let now = self.clock.now_ms();
        let trace_id = sys::random_alnum(self.random.as_ref(), 12);
        let signer = Signer {
            sign_type: ev.sign_type,
            secret: &ev.secret,
        };
        let body = wire::notice_body(
            ev.notice_type.as_deref(),
            &ev.mch_no,
            &ev.app_id,
            &data,
            &sys::format_time(now, self.offset),
            &trace_id,
            &signer,
        );
        let reply = self
            .agent
            .post(&ev.url)
            .set("Content-Type", "application/json; charset=UTF-8")
            .set("X-Unipay-Event-Id", &ev.id.to_string())
            .send_string(&body);
        let response = match reply {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                return Sent {
                    delivered: false,
                    http_status: None,
                    detail: truncate(&t.to_string()),
                }
            }
        };
        let status = response.status();
        let mut text = String::new();
        let read = response
            .into_reader()
            .take(MAX_REPLY)
            .read_to_string(&mut text);
        if let Err(e) = read {
            return Sent {
                delivered: false,
                http_status: Some(status),
                detail: truncate(&format!("reading the reply: {e}")),
            };
        }
        Sent {
            delivered: text.trim().eq_ignore_ascii_case("SUCCESS"),
            http_status: Some(status),
            detail: truncate(&text),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(DETAIL_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_daxpays_sixteen_attempts() {
        let cfg = NotifyConfig::default();
        let secs = [
            15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
        ];
        let want: Vec<Duration> = secs.iter().map(|s| Duration::from_secs(*s)).collect();
        assert_eq!(cfg.schedule, want, "spec §9: 15s, 15s, 30s, 3m, … 6h, 6h");
        assert_eq!(cfg.schedule.len() + 1, 16);
        let total: u64 = DEFAULT_SCHEDULE.iter().sum();
        assert!((86_000..=90_000).contains(&total), "about 24 h: {total}");
    }
}
