//! A deterministic simulation of closes, payments, refunds, syncs, expiry, channel faults,
//! `nonceStr` replays and crashes.
//!
//! One seed drives everything: which operation comes next (an API close or cancel, a payer
//! paying, a payment failing at the channel, a repeated order, a refund, a repeated or retried
//! refund, the channel finishing a refund or reporting a finished one again, a pay or refund
//! sync (checked against refund-sync.md §5's table), a replay of a request that carried a
//! `nonceStr`, an expiry sweep, a clock jump, a crash and restart, a channel's late payment
//! report), which faults the channel shows (timeouts before or after it acted, the payer
//! paying just before a close reaches it, trades it never opened, payments it refuses, crashes
//! on either side of its answer), the clock, and every random number unipay draws. The real
//! request handlers, store, sandbox channel, sweeper and recovery run against a real SQLite
//! file, in one thread, without sockets. After every step the invariants are checked against
//! the database (`check`, `money`); a refused request is checked to have changed nothing
//! (`unchanged`); a replayed `nonceStr` to get its first reply byte for byte (`nonce`).
//!
//! The crash points, and what each models:
//! - between two requests (`crash`): a restart; nothing acknowledged is lost;
//! - after a request's last commit, before its reply reached the client (`send`, "replies
//!   lost"): the client cannot tell whether it was done; a nonce'd retry must get that reply;
//! - before a channel acts on a close (the intent is committed, the channel never heard of it),
//!   and between its answer and the local update: recovery at boot finishes or undoes the close;
//! - before the channel opens a trade (the `progress` order is committed, the trade is not) and
//!   after it opened one, before the reply was remembered;
//! - before the channel acts on a refund (the refund and its send are committed) and between
//!   the channel's refund and the local update: the sweeper settles it from the channel's book.
//!
//! `UNIPAY_SIM_SEEDS=N` sets how many seeds run (default 1000); `UNIPAY_SIM_SEED=S` runs one
//! seed, as printed by a failure, to reproduce it.

mod channel;
mod check;
mod money;
mod nonce;
mod orders;
mod refunds;
mod unchanged;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Once};

use serde_json::Value;
use unipay::channel::{Channels, Sandbox};
use unipay::domain::App;
use unipay::expiry;
use unipay::gateway::Gateway;
use unipay::http::{Handler, Request};
use unipay::router::Router;
use unipay::sign::SignType;
use unipay::store::{Offline, Store};
use unipay::sys::{self, Clock, Random, UtcOffset};

use channel::{Faults, FaultyChannel, SimCrash};

// ---- what happened, across all seeds: proof that the interesting paths ran ---------------

static STATS: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

fn count(what: &'static str) {
    *STATS.lock().unwrap().entry(what).or_default() += 1;
}

// ---- determinism: one random stream, one clock -------------------------------------------

/// splitmix64: small, fast, and the same everywhere.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct SimClock(AtomicI64);

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct SimRandom(Mutex<Rng>);

impl Random for SimRandom {
    fn fill(&self, buf: &mut [u8]) {
        let mut rng = self.0.lock().unwrap();
        for b in buf {
            *b = rng.next() as u8;
        }
    }
}

/// Cents as the wire's yuan.
fn yuan(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

// ---- the world ---------------------------------------------------------------------------

const APP_ID: &str = "SIM_APP";
const MCH_NO: &str = "SIM_MCH";

/// One running "process": store, gateway, router.
struct Node {
    router: Router,
    gw: Arc<Gateway>,
    store: Arc<Store>,
}

/// What became of one request.
enum Sent {
    /// The client got this reply.
    Answered(Vec<u8>),
    /// The process crashed inside the request (a simulated crash in a channel call).
    Crashed,
    /// The request finished and its reply was built, but the process died before the client
    /// got it.
    Lost(Vec<u8>),
}

struct World {
    seed: u64,
    rng: Rng,
    path: PathBuf,
    clock: Arc<SimClock>,
    random: Arc<SimRandom>,
    faults: Arc<Mutex<Faults>>,
    node: Option<Node>,
    /// Order numbers in creation order.
    orders: Vec<String>,
    /// The amount (cents) first asked for each `bizOrderNo`: its order's amount, forever.
    asked: BTreeMap<String, i64>,
    /// What the simulation knows must hold of each order.
    closed_ok: BTreeMap<String, String>,
    last_status: BTreeMap<String, String>,
    trade_was_closed: BTreeMap<String, bool>,
    /// Orders whose money came after they were over: the status they had then.
    paid_late: BTreeMap<String, String>,
    log: Vec<String>,
    next_biz: u64,
    /// The merchant's refund requests so far: (bizRefundNo, orderNo, amount as sent).
    biz_refunds: Vec<(String, String, String)>,
    /// The amount (cents) of the first request of each `bizRefundNo`: its refund's amount.
    refund_asked: BTreeMap<String, i64>,
    /// The status each refund had at the last check.
    refund_status: BTreeMap<String, String>,
    /// The requests sent with a `nonceStr`, for replays.
    nonced: Vec<nonce::Nonced>,
    /// The simulation's own read connection (it outlives simulated crashes, as an observer).
    reader: Option<rusqlite::Connection>,
}

fn sim_dir() -> PathBuf {
    // tmpfs when there is one: fsync there is free, and a crash here is a simulated one.
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("unipay-sim-{}", std::process::id()))
}

impl World {
    fn new(seed: u64) -> World {
        let dir = sim_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("seed-{seed}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let mut rng = Rng(seed);
        let start = 1_750_000_000_000 + (rng.below(86_400) as i64) * 1000;
        let (mut db, _) = Offline::open(&path).unwrap();
        let app = App {
            app_id: APP_ID.into(),
            mch_no: MCH_NO.into(),
            sign_type: SignType::Md5,
            secret: "sim".into(),
            req_sign: false,
            req_timeout_secs: 0,
            notify_url: None,
            order_timeout_min: 30,
            limit_amount: None,
            enabled: true,
            mch_enabled: true,
        };
        db.create_app(&app, start).unwrap();
        drop(db);
        let faults = Faults::new(Rng(seed ^ 0xFA17));
        let mut w = World {
            seed,
            rng,
            path,
            clock: Arc::new(SimClock(AtomicI64::new(start))),
            random: Arc::new(SimRandom(Mutex::new(Rng(seed ^ 0x5EED)))),
            faults: Arc::new(Mutex::new(faults)),
            node: None,
            orders: Vec::new(),
            asked: BTreeMap::new(),
            closed_ok: BTreeMap::new(),
            last_status: BTreeMap::new(),
            trade_was_closed: BTreeMap::new(),
            paid_late: BTreeMap::new(),
            log: Vec::new(),
            next_biz: 0,
            biz_refunds: Vec::new(),
            refund_asked: BTreeMap::new(),
            refund_status: BTreeMap::new(),
            nonced: Vec::new(),
            reader: None,
        };
        w.boot();
        w
    }

    /// Starts a "process" on the database and settles interrupted closes, as `serve` does.
    fn boot(&mut self) {
        let (store, _) = Store::open(&self.path, UtcOffset::CST).unwrap();
        let store = Arc::new(store);
        let clock: Arc<dyn Clock> = self.clock.clone();
        let random: Arc<dyn Random> = self.random.clone();
        let base = "http://sim".to_string();
        let channel = FaultyChannel {
            inner: Sandbox::new(store.clone(), clock.clone(), random.clone(), base.clone()),
            store: store.clone(),
            clock: self.clock.clone(),
            faults: self.faults.clone(),
        };
        let channels = Channels::new(vec![Arc::new(channel)]);
        let gw = Arc::new(Gateway::new(store.clone(), channels, clock, random, base));
        let interrupted: Vec<String> = match &self.reader {
            None => Vec::new(),
            Some(c) => {
                let mut st = c
                    .prepare(
                        "SELECT o.order_no FROM close_intent i
                         JOIN pay_order o ON o.id = i.order_id",
                    )
                    .unwrap();
                let rows = st.query_map([], |r| r.get(0)).unwrap();
                rows.collect::<Result<_, _>>().unwrap()
            }
        };
        let settled = expiry::recover(&gw, i64::MAX);
        // As `serve` does: every refund still in progress is looked at on the first sweep.
        store.all_refunds_due(self.clock.now_ms()).unwrap();
        self.log
            .push(format!("boot: settled {settled} interrupted close(s)"));
        if settled > 0 {
            count("interrupted closes settled at boot");
        }
        for order_no in &interrupted {
            let status: String = self
                .reader
                .as_ref()
                .unwrap()
                .query_row(
                    "SELECT status FROM pay_order WHERE order_no = ?1",
                    [order_no],
                    |r| r.get(0),
                )
                .unwrap();
            count(match status.as_str() {
                "close" | "cancel" => "interrupted closes finished at boot",
                "success" => "interrupted closes that found money at boot",
                "progress" => "interrupted closes undone at boot (trade still open)",
                _ => "interrupted closes in another state at boot",
            });
        }
        self.node = Some(Node {
            router: Router { gw: gw.clone() },
            gw,
            store,
        });
        if self.reader.is_none() {
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
            let c = rusqlite::Connection::open_with_flags(&self.path, flags).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            self.reader = Some(c);
        }
    }

    fn crash(&mut self) {
        // Every write is synchronous, so dropping the process loses exactly what a crash
        // between two requests loses: nothing that was acknowledged.
        self.node = None;
        self.boot();
    }

    fn node(&self) -> &Node {
        self.node.as_ref().expect("a running node")
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A request body as a client sends it: `body` with the common fields, as bytes (empty for
    /// none).
    fn body_bytes(&self, body: Option<Value>) -> Vec<u8> {
        let Some(mut body) = body else {
            return Vec::new();
        };
        if let Value::Object(map) = &mut body {
            map.insert("mchNo".into(), MCH_NO.into());
            map.insert("appId".into(), APP_ID.into());
            map.insert(
                "reqTime".into(),
                sys::format_time(self.now(), UtcOffset::CST).into(),
            );
        }
        serde_json::to_vec(&body).unwrap()
    }

    /// Sends `body` through the real router (minus the socket). A simulated crash inside the
    /// request, or one right after it (its reply lost), restarts the node.
    fn send(&mut self, path: &str, query: &str, body: Vec<u8>) -> Sent {
        let req = Request {
            method: "POST".into(),
            path: path.into(),
            query: query.into(),
            headers: Vec::new(),
            remote_addr: "127.0.0.1:1".parse().unwrap(),
            body,
        };
        let lose = self.faults.lock().unwrap().roll(3);
        let router = &self.node().router;
        match catch_unwind(AssertUnwindSafe(|| router.handle(&req))) {
            Ok(resp) if lose => {
                count("replies lost: a crash after the request's last commit");
                self.log.push(format!(
                    "  {path}: crash after the reply was built, before the client got it: {}",
                    String::from_utf8_lossy(&resp.body)
                ));
                self.crash();
                Sent::Lost(resp.body)
            }
            Ok(resp) => Sent::Answered(resp.body),
            Err(payload) if payload.is::<SimCrash>() => {
                let SimCrash(what) = payload.downcast_ref::<SimCrash>().unwrap();
                count(what);
                self.log
                    .push(format!("  {path}: crash inside the request: {what}"));
                self.crash();
                Sent::Crashed
            }
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// A request; `None` when the client got no reply (a crash inside it or right after).
    fn post(&mut self, path: &str, body: Option<Value>) -> Option<Value> {
        self.post_query(path, "", body)
    }

    /// `post`, with a query string.
    fn post_query(&mut self, path: &str, query: &str, body: Option<Value>) -> Option<Value> {
        let body = self.body_bytes(body);
        match self.send(path, query, body) {
            Sent::Answered(reply) => {
                Some(serde_json::from_slice(&reply).expect("replies are JSON"))
            }
            Sent::Crashed | Sent::Lost(_) => None,
        }
    }

    fn pick_order(&mut self) -> Option<String> {
        if self.orders.is_empty() {
            return None;
        }
        let i = self.rng.below(self.orders.len() as u64) as usize;
        Some(self.orders[i].clone())
    }

    fn step(&mut self) {
        self.faults.lock().unwrap().raced.clear();
        match self.rng.below(136) {
            100..=111 => self.op_refund(),
            112..=114 => self.op_finish_refund(),
            115..=119 => self.op_sync_pay(),
            120..=124 => self.op_sync_refund(),
            125..=128 => self.op_replay(),
            129 => self.op_refund_reported_again(),
            130..=132 => self.op_repeat_order(),
            133..=135 => self.op_payment_fails(),
            0..=24 => self.op_new_order(),
            25..=49 => self.op_close(),
            50..=65 => self.op_pay(),
            66..=69 => self.op_silent_payment(),
            70..=79 => self.op_sweep(),
            80..=89 => self.op_clock_jump(),
            90..=94 => {
                self.log.push("crash and restart".into());
                self.crash();
            }
            _ => self.op_late_payment(),
        }
    }

    /// The end: no more faults, time runs a day ahead, a restart and a sweep: nothing may stay
    /// open or in limbo.
    fn settle(&mut self) {
        self.faults.lock().unwrap().enabled = false;
        self.finish_book_refunds();
        self.clock.0.fetch_add(86_400_000, Ordering::SeqCst);
        self.crash();
        self.op_sweep();
        // A refund whose first send is lost (a test control) needs one more look.
        self.clock.0.fetch_add(86_400_000, Ordering::SeqCst);
        self.op_sweep();
        self.check(true);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.node = None;
        self.reader = None;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

/// Runs one seed; panics with the seed and the last steps on a broken invariant.
fn run_seed(seed: u64, steps: usize) {
    let mut world = World::new(seed);
    let result = catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..steps {
            world.step();
            world.check(false);
        }
        world.settle();
    }));
    if let Err(payload) = result {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let tail: Vec<&String> = world
            .log
            .iter()
            .rev()
            .take(25)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "simulation failed for seed {seed}: {msg}\nreproduce: UNIPAY_SIM_SEED={seed} cargo test --test it sim\nlast steps:\n  {}",
            tail.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")
        );
    }
}

/// Silences the panics that stand for simulated crashes; every other panic prints as usual.
fn quiet_simulated_crashes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<SimCrash>() {
                previous(info);
            }
        }));
    });
}

/// The paths that must all have run when many seeds ran: if one did not, the simulation has
/// stopped exercising it and proves nothing about it.
const MUST_RUN: &[&str] = &[
    "closes answered 0",
    "closes answered 20041 (no such order)",
    "closes answered 20043 (already closing)",
    "closes answered 20044 (not open)",
    "closes answered 20080 (channel failed)",
    "closes refused: nothing changed",
    "closes answered 20044 after finding money at the channel",
    "closes answered 20080: only a failed close record added",
    "payments accepted",
    "payments refused",
    "payments refused: nothing changed",
    "crashes between the channel and the local update",
    "crashes before the channel acted on a close",
    "crashes before the channel opened a trade",
    "crashes after the channel opened a trade, before the reply",
    "replies lost: a crash after the request's last commit",
    "interrupted closes settled at boot",
    "interrupted closes finished at boot",
    "interrupted closes undone at boot (trade still open)",
    "interrupted closes that found money at boot",
    "clock jumps backwards",
    "sweeps that closed expired orders",
    "sweeps that found money at the channel",
    "payments whose callback was lost",
    "payments that failed at the channel",
    "pays refused by the channel: the order fails",
    "pay syncs that failed an order",
    "late payments: success, flagged for attention",
    "late payments to failed orders",
    "payers paying just before a close reached the channel",
    "repeated orders: the first amount kept",
    "repeated orders refused: nothing changed",
    "refunds answered success",
    "refunds answered progress",
    "refunds answered fail",
    "refunds refused: over the balance",
    "refunds refused: order not paid",
    "refunds refused: nothing changed",
    "refund repeats answered with the same refund",
    "refund repeats refused: another order or amount",
    "refund retries after a failure",
    "refund sends lost before the channel acted",
    "refund answers lost after the channel acted",
    "crashes before the channel acted on a refund",
    "crashes between a refund at the channel and the local update",
    "sweeps that settled refunds",
    "sandbox refunds finished by the channel",
    "pay syncs that adjusted an order",
    "pay syncs that changed nothing",
    "pay syncs refused: nothing changed but the attempt",
    "refund syncs that adjusted a refund",
    "refund syncs refused: nothing changed but the attempt",
    "refund outcomes reported again: nothing changed",
    "refund syncs that changed nothing",
    "orders fully refunded",
    "orders partly refunded",
    "nonce'd closes",
    "nonce'd pays",
    "nonce'd refunds",
    "nonce'd requests whose reply was lost: remembered as built",
    "nonce'd requests that crashed: nothing remembered",
    "nonce replays: the first reply, nothing done",
    "nonce replays of a lost reply: the same bytes",
    "nonce replays after a crash: acted",
    "nonce replays right after a crash or a lost reply",
    "nonces reused with another body: refused, nothing done",
];

#[test]
fn simulation_of_closes_payments_refunds_syncs_expiry_faults_and_crashes() {
    quiet_simulated_crashes();
    if let Ok(seed) = std::env::var("UNIPAY_SIM_SEED") {
        run_seed(seed.parse().expect("UNIPAY_SIM_SEED is a number"), 80);
        return;
    }
    let seeds: u64 = std::env::var("UNIPAY_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let threads = 2;
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for seed in (t..seeds).step_by(threads as usize) {
                    run_seed(seed, 80);
                }
            });
        }
    });
    let _ = std::fs::remove_dir_all(sim_dir());
    let stats = STATS.lock().unwrap().clone();
    eprintln!("simulation of {seeds} seeds: {stats:#?}");
    if seeds >= 100 {
        for path in MUST_RUN {
            assert!(
                stats.get(path).copied().unwrap_or(0) > 0,
                "the simulation never exercised: {path}"
            );
        }
    }
}
