//! The load generator: how fast unipay closes orders, measured against the floors of this
//! machine in the same run.
//!
//! It starts the release `unipay serve` on a fresh database, creates open orders through the
//! API, then closes them with C concurrent keep-alive connections sending properly signed
//! requests, each closing a different order. In the same run and with the same client it
//! measures the HTTP floor (`examples/http_floor.rs`: tiny_http answering a fixed 150-byte
//! reply) and the raw SQLite close-transaction rate, and prints the ratios. It also reports the
//! `/unipay/pay` and `/unipay/query/payOrder` rates, the server's peak RSS, and with `--big N`
//! the close rate and start-up time on a database of N orders against one of 10,000.
//!
//! Build first: `cargo build --release --bins --examples`, then
//! `target/release/examples/loadgen [--conns 64] [--seconds 5] [--runs 3] [--big 10000000]`.
//! Every connection must be served: a connection that got no reply fails the run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use unipay::domain::App;
use unipay::sign::{self, SignType};
use unipay::store;
use unipay::sys::{self, Clock, SystemClock, UtcOffset};
use unipay::wire::{self, Params};

const APP_ID: &str = "BENCH_APP";
const MCH_NO: &str = "BENCH_MCH";
const SECRET: &str = "bench-secret-0123456789";

struct Opts {
    conns: usize,
    seconds: u64,
    runs: usize,
    big: Option<u64>,
    big_cache: Option<PathBuf>,
    bin_dir: PathBuf,
    /// Every close carries its own `nonceStr` (the reply is remembered with the close).
    nonce: bool,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        conns: 64,
        seconds: 5,
        runs: 3,
        big: None,
        big_cache: None,
        bin_dir: PathBuf::from("target/release"),
        nonce: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("a value after the flag");
        match a.as_str() {
            "--conns" => o.conns = val().parse().expect("--conns N"),
            "--seconds" => o.seconds = val().parse().expect("--seconds N"),
            "--runs" => o.runs = val().parse().expect("--runs N"),
            "--big" => o.big = Some(val().parse().expect("--big N")),
            "--bin-dir" => o.bin_dir = PathBuf::from(val()),
            "--big-cache" => o.big_cache = Some(PathBuf::from(val())),
            "--nonce" => o.nonce = true,
            "-h" | "--help" => {
                println!("loadgen [--conns 64] [--seconds 5] [--runs 3] [--big N] [--big-cache DIR] [--bin-dir target/release] [--nonce]");
                println!("  --nonce gives every close its own nonceStr");
                println!("  --runs 0 with --big N measures only the big database");
                println!("  --big-cache DIR keeps the filled databases there and copies them for each run");
                std::process::exit(0);
            }
            other => panic!("unknown option {other}"),
        }
    }
    o
}

// ---- a running server ------------------------------------------------------------------

struct Server {
    child: Child,
    addr: String,
    started_in: Duration,
    /// Lines of the server's log about its database check.
    checks: std::sync::mpsc::Receiver<String>,
}

impl Server {
    fn spawn(bin: &Path, args: &[&str]) -> Server {
        let t0 = Instant::now();
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn,unipay::cli=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {}: {e} (build with `cargo build --release --bins --examples`)",
                    bin.display()
                )
            });
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("first line");
        let started_in = t0.elapsed();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .expect("listening line")
            .to_string();
        // Keep draining stdout and stderr so the child never blocks on them.
        thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        let err = BufReader::new(child.stderr.take().expect("stderr"));
        let (tx, checks) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                if line.contains("database check") || line.contains("is damaged") {
                    let _ = tx.send(line);
                }
            }
        });
        Server {
            child,
            addr,
            started_in,
            checks,
        }
    }

    /// Waits until the database check that runs in the background has passed (a big
    /// database is checked whole after start-up; the close rate is measured after it).
    fn wait_for_check(&self) -> String {
        loop {
            let line = self
                .checks
                .recv_timeout(Duration::from_secs(600))
                .unwrap_or_else(|e| panic!("no word of the server's database check: {e}"));
            if line.contains("passed") {
                return line;
            }
            assert!(line.contains("runs in the background"), "{line}");
            eprintln!("waiting for the server's database check");
        }
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the client ------------------------------------------------------------------------

/// One request, already rendered to bytes.
type Wire = Vec<u8>;

fn render(addr: &str, method: &str, path: &str, body: &[u8]) -> Wire {
    let mut w = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    w.extend_from_slice(body);
    w
}

/// Reads one HTTP response and parses its body as JSON (every reply, the floor's too); returns
/// whether it is a code-0 envelope.
fn read_response(r: &mut BufReader<TcpStream>, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut len = 0usize;
    loop {
        buf.clear();
        if r.read_until(b'\n', buf)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buf == b"\r\n" {
            break;
        }
        let line = String::from_utf8_lossy(buf).to_ascii_lowercase();
        if let Some(v) = line.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    buf.resize(len, 0);
    r.read_exact(buf)?;
    let reply: serde_json::Value = match serde_json::from_slice(buf) {
        Ok(v) => v,
        Err(_) => return Ok(false),
    };
    Ok(reply.get("code").and_then(|c| c.as_i64()) == Some(0))
}

/// What one load phase measured.
#[derive(Clone, Debug, Default)]
struct Measured {
    ok: u64,
    errors: u64,
    per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    conns_served: usize,
    conns: usize,
    /// Requests answered code 0, per connection, in order: connection k's requests were
    /// `k, k + conns, k + 2 * conns, …` of the dealt list, and the first `ok_per_conn[k]` of
    /// them succeeded (when errors is 0).
    ok_per_conn: Vec<u64>,
    /// CPU time (user + system) per request of the server process and of this client, in µs.
    server_cpu_us: f64,
    client_cpu_us: f64,
}

impl Measured {
    /// The indexes of the dealt requests that were answered code 0 (exact when `errors` is 0).
    fn done(&self) -> Vec<usize> {
        let mut out = Vec::new();
        for (k, &ok) in self.ok_per_conn.iter().enumerate() {
            out.extend((0..ok as usize).map(|j| k + j * self.conns));
        }
        out.sort_unstable();
        out
    }
}

/// CPU time (user + system) a process has used so far, in µs, from `/proc/PID/stat`.
fn cpu_us(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) end at the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; in ticks.
    // USER_HZ, which /proc reports in, is 100 on Linux whatever the kernel's tick rate.
    let hz = 100.0;
    (ticks(11) + ticks(12)) * 1e6 / hz
}

/// `load` against the server process `pid`, also measuring the CPU each side used per request.
fn load_on(pid: u32, addr: &str, work: Vec<Vec<Wire>>, seconds: u64) -> Measured {
    let pid = pid.to_string();
    let (s0, c0) = (cpu_us(&pid), cpu_us("self"));
    let mut m = load(addr, work, seconds);
    let (s1, c1) = (cpu_us(&pid), cpu_us("self"));
    let n = (m.ok + m.errors).max(1) as f64;
    m.server_cpu_us = (s1 - s0) / n;
    m.client_cpu_us = (c1 - c0) / n;
    m
}

/// Sends each connection's requests in turn on one keep-alive connection until its list or
/// the time runs out. `work[i]` is connection i's list.
fn load(addr: &str, work: Vec<Vec<Wire>>, seconds: u64) -> Measured {
    let conns = work.len();
    let barrier = Arc::new(Barrier::new(conns + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = work
        .into_iter()
        .map(|reqs| {
            let (addr, barrier, stop) = (addr.to_string(), barrier.clone(), stop.clone());
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let stream = TcpStream::connect(&addr).expect("connect");
                    stream.set_nodelay(true).expect("nodelay");
                    let mut writer = stream.try_clone().expect("clone");
                    let mut reader = BufReader::with_capacity(16 * 1024, stream);
                    let mut lat = Vec::with_capacity(reqs.len());
                    let (mut ok, mut errors) = (0u64, 0u64);
                    let mut buf = Vec::with_capacity(1024);
                    barrier.wait();
                    for req in &reqs {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let t = Instant::now();
                        if writer.write_all(req).is_err() {
                            errors += 1;
                            break;
                        }
                        match read_response(&mut reader, &mut buf) {
                            Ok(true) => ok += 1,
                            Ok(false) => errors += 1,
                            Err(_) => {
                                errors += 1;
                                break;
                            }
                        }
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    (ok, errors, lat)
                })
                .expect("spawn client thread")
        })
        .collect();
    barrier.wait();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(seconds);
    // Stop at the deadline, or when every connection finished its list.
    while Instant::now() < deadline && !handles.iter().all(|h| h.is_finished()) {
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let mut m = Measured {
        conns,
        ..Default::default()
    };
    let mut all = Vec::new();
    for h in handles {
        let (ok, errors, lat) = h.join().expect("client thread");
        m.ok += ok;
        m.errors += errors;
        m.ok_per_conn.push(ok);
        if ok + errors > 0 {
            m.conns_served += 1;
        }
        all.extend(lat);
    }
    let elapsed = t0.elapsed().as_secs_f64().min(seconds as f64).max(0.001);
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    m.per_sec = (m.ok + m.errors) as f64 / elapsed;
    m.p50_us = pct(0.50);
    m.p99_us = pct(0.99);
    m.max_us = all.last().copied().unwrap_or(0);
    m
}

// ---- requests ----------------------------------------------------------------------------

fn signed_body(
    path: &str,
    fields: &'static [wire::Field],
    mut body: serde_json::Map<String, serde_json::Value>,
) -> Vec<u8> {
    body.insert("mchNo".into(), MCH_NO.into());
    body.insert("appId".into(), APP_ID.into());
    body.insert(
        "reqTime".into(),
        sys::format_time(SystemClock.now_ms(), UtcOffset::CST).into(),
    );
    let raw = serde_json::to_vec(&body).expect("json");
    let params = Params::parse(&raw, &[wire::COMMON, fields], UtcOffset::CST)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    body.insert(
        "sign".into(),
        sign::sign(SignType::Md5, &params.sign_pairs(), SECRET).into(),
    );
    serde_json::to_vec(&body).expect("json")
}

fn obj(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn pay_req(addr: &str, biz: &str) -> Wire {
    let body = obj(
        serde_json::json!({"bizOrderNo": biz, "title": "bench", "amount": "1.00", "channel": "sandbox", "method": "wap"}),
    );
    render(
        addr,
        "POST",
        "/unipay/pay",
        &signed_body("/unipay/pay", wire::PAY, body),
    )
}

fn pre_pay_req(addr: &str, biz: &str) -> Wire {
    let body = obj(serde_json::json!({"bizOrderNo": biz, "title": "bench", "amount": "1.00"}));
    render(
        addr,
        "POST",
        "/unipay/gateway/prePay",
        &signed_body("/unipay/gateway/prePay", wire::PRE_PAY, body),
    )
}

fn query_req(addr: &str, biz: &str) -> Wire {
    let body = obj(serde_json::json!({"bizOrderNo": biz}));
    render(
        addr,
        "POST",
        "/unipay/query/payOrder",
        &signed_body("/unipay/query/payOrder", wire::QUERY, body),
    )
}

fn close_req(addr: &str, biz: &str, nonce: bool) -> Wire {
    let mut json = serde_json::json!({"bizOrderNo": biz, "useCancel": false});
    if nonce {
        json["nonceStr"] = serde_json::json!(format!("n{biz}"));
    }
    let body = obj(json);
    render(
        addr,
        "POST",
        "/unipay/close",
        &signed_body("/unipay/close", wire::CLOSE, body),
    )
}

/// `count` requests built by `make(i)`, dealt round-robin to `conns` connections.
fn deal(conns: usize, count: usize, make: impl Fn(usize) -> Wire) -> Vec<Vec<Wire>> {
    let mut work = vec![Vec::with_capacity(count / conns + 1); conns];
    for i in 0..count {
        work[i % conns].push(make(i));
    }
    work
}

// ---- databases ---------------------------------------------------------------------------

fn temp_db(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("unipay-bench-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("bench.db")
}

fn create_app(db: &Path) {
    let (mut db, _) = store::Offline::open(db).expect("open db");
    let app = App {
        app_id: APP_ID.into(),
        mch_no: MCH_NO.into(),
        sign_type: SignType::Md5,
        secret: SECRET.into(),
        req_sign: true,
        req_timeout_secs: 3600,
        notify_url: None,
        order_timeout_min: 24 * 60,
        limit_amount: None,
        enabled: true,
        mch_enabled: true,
    };
    db.create_app(&app, SystemClock.now_ms())
        .expect("create app");
}

/// Fills `db` with `n` `wait` orders named `BIG{i}` in bulk (not through the API: 10 million
/// orders through HTTP would take the whole benchmark budget).
fn fill(db: &Path, n: u64) {
    create_app(db);
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = WAL;")
        .expect("pragmas");
    let now = SystemClock.now_ms();
    let t0 = Instant::now();
    let mut i = 0;
    while i < n {
        conn.execute_batch("BEGIN").expect("begin");
        {
            let mut st = conn
                .prepare_cached(
                    "INSERT INTO pay_order (id, order_no, mch_no, app_id, biz_order_no, title, amount,
                        refundable_balance, status, expired_time, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'bench', 100, 0, 'wait', ?6, ?7, ?7)",
                )
                .expect("prepare");
            let end = (i + 100_000).min(n);
            while i < end {
                let id = i as i64 + 1;
                st.execute(rusqlite::params![
                    id,
                    format!("P20250101000000{id:08}"),
                    MCH_NO,
                    APP_ID,
                    format!("BIG{i}"),
                    now + 86_400_000,
                    now
                ])
                .expect("insert");
                i += 1;
            }
        }
        conn.execute_batch("COMMIT").expect("commit");
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    eprintln!("filled {n} orders in {:.1}s", t0.elapsed().as_secs_f64());
}

fn db_bytes(db: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum()
}

// ---- the SQLite floor ----------------------------------------------------------------------

/// The raw close transaction of unipay's schema (select + conditional update + close record +
/// outbox row), `per_commit` closes per `synchronous=FULL` commit, for `seconds`. Returns the
/// closes per second and the CPU time per close in µs (one thread: the rest is waiting on disk).
fn sqlite_floor(per_commit: usize, seconds: f64) -> (f64, f64) {
    let db = temp_db(&format!("sqlite-{per_commit}"));
    let n = 200_000u64;
    fill(&db, n);
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .expect("pragmas");
    let t0 = Instant::now();
    let cpu0 = cpu_us("self");
    let mut done = 0u64;
    while t0.elapsed().as_secs_f64() < seconds && done + (per_commit as u64) < n {
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        for _ in 0..per_commit {
            let biz = format!("BIG{done}");
            let id: i64 = conn
                .prepare_cached("SELECT id FROM pay_order WHERE app_id = ?1 AND biz_order_no = ?2")
                .expect("prepare")
                .query_row([APP_ID, biz.as_str()], |r| r.get(0))
                .expect("select");
            conn.prepare_cached("UPDATE pay_order SET status = 'close', close_time = ?2 WHERE id = ?1 AND status IN ('wait', 'progress')")
                .expect("prepare")
                .execute(rusqlite::params![id, 1])
                .expect("update");
            conn.prepare_cached(
                "INSERT INTO close_record (order_id, order_no, biz_order_no, close_type, closed, actor, created_at)
                 VALUES (?1, 'P', ?2, 'close', 1, 'api', 1)",
            )
            .expect("prepare")
            .execute(rusqlite::params![id, biz])
            .expect("insert");
            conn.prepare_cached(
                "INSERT INTO notify_event (order_id, app_id, target, url, status, data, next_attempt_at, created_at)
                 VALUES (?1, ?2, 'callback', 'http://x', 'close', '{}', 1, 1)",
            )
            .expect("prepare")
            .execute(rusqlite::params![id, APP_ID])
            .expect("insert");
            done += 1;
        }
        conn.execute_batch("COMMIT").expect("commit");
    }
    let rate = done as f64 / t0.elapsed().as_secs_f64();
    let cpu = (cpu_us("self") - cpu0) / done.max(1) as f64;
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
    (rate, cpu)
}

// ---- the runs ------------------------------------------------------------------------------

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    v[v.len() / 2]
}

fn median_by(mut v: Vec<Measured>) -> Measured {
    v.sort_by(|a, b| a.per_sec.partial_cmp(&b.per_sec).expect("numbers"));
    v[v.len() / 2].clone()
}

fn row(name: &str, m: &Measured) -> String {
    format!(
        "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {}/{} |",
        m.per_sec,
        m.p50_us as f64 / 1000.0,
        m.p99_us as f64 / 1000.0,
        m.max_us as f64 / 1000.0,
        m.errors,
        m.conns_served,
        m.conns
    )
}

/// One run of the API phases on a fresh server: pay, query, prePay, close.
fn api_run(o: &Opts) -> (Measured, Measured, Measured, u64) {
    let db = temp_db("api");
    create_app(&db);
    let bin = o.bin_dir.join("unipay");
    let server = Server::spawn(
        &bin,
        &[
            "serve",
            "--db",
            db.to_str().expect("path"),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let addr = server.addr.clone();
    // Enough orders that no connection runs out within the time.
    let count = 40_000 * o.seconds as usize;
    let pid = server.child.id();
    let pay = load_on(
        pid,
        &addr,
        deal(o.conns, count, |i| pay_req(&addr, &format!("PAY{i}"))),
        o.seconds,
    );
    let paid = pay.done();
    let query = load_on(
        pid,
        &addr,
        deal(o.conns, count, |i| {
            query_req(&addr, &format!("PAY{}", paid[i % paid.len()]))
        }),
        o.seconds,
    );
    // The orders to close: created through the API, open (`wait`), one per close request.
    let made = load(
        &addr,
        deal(o.conns, count, |i| pre_pay_req(&addr, &format!("W{i}"))),
        o.seconds * 4,
    )
    .done();
    let closes = deal(o.conns, made.len(), |i| {
        close_req(&addr, &format!("W{}", made[i]), o.nonce)
    });
    if let Ok(mark) = std::env::var("LOADGEN_MARK") {
        // For profiling: say which process to look at, and give the profiler a moment.
        std::fs::write(&mark, server.child.id().to_string()).expect("write the mark file");
        thread::sleep(Duration::from_millis(500));
    }
    let close = load_on(pid, &addr, closes, o.seconds);
    let rss = server.peak_rss_kib();
    drop(server);
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
    (pay, query, close, rss)
}

/// The HTTP floor with the same client doing the same work per reply: tiny_http answering the
/// close phase's requests (the same signed bodies, with or without `nonceStr`) with the bytes
/// of a real close reply, which the client parses like unipay's.
fn floor_run(o: &Opts, reply: &Path) -> Measured {
    let bin = o.bin_dir.join("examples").join("http_floor");
    let server = Server::spawn(&bin, &["127.0.0.1:0", reply.to_str().expect("reply path")]);
    let addr = server.addr.clone();
    let count = 100_000 * o.seconds as usize;
    load_on(
        server.child.id(),
        &addr,
        deal(o.conns, count, |i| {
            close_req(&addr, &format!("W{i}"), o.nonce)
        }),
        o.seconds,
    )
}

/// A real close reply (of an order closed on a fresh server), for the floor to answer with;
/// written to a file, whose path is returned with the reply's size.
fn sample_close_reply(o: &Opts) -> (PathBuf, usize) {
    let db = temp_db("sample");
    create_app(&db);
    let bin = o.bin_dir.join("unipay");
    let server = Server::spawn(
        &bin,
        &[
            "serve",
            "--db",
            db.to_str().expect("path"),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let addr = server.addr.clone();
    let made = load(&addr, vec![vec![pre_pay_req(&addr, "W0")]], 5).done();
    assert_eq!(made, vec![0], "the sample order was not created");
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream
        .write_all(&close_req(&addr, "W0", o.nonce))
        .expect("send the sample close");
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    assert!(
        read_response(&mut reader, &mut buf).expect("the sample close's reply"),
        "the sample close failed: {}",
        String::from_utf8_lossy(&buf)
    );
    drop(server);
    let path = db.parent().expect("dir").join("close-reply.json");
    std::fs::write(&path, &buf).expect("write the sample reply");
    (path, buf.len())
}

/// Close rate and start-up time on a database of `n` orders.
fn big_run(o: &Opts, n: u64) -> (Measured, Duration, f64) {
    let db = temp_db(&format!("big-{n}"));
    match &o.big_cache {
        // A filled database kept between runs, copied (the run closes orders in it).
        Some(dir) => {
            let kept = dir.join(format!("big-{n}.db"));
            if !kept.exists() {
                std::fs::create_dir_all(dir).expect("cache dir");
                let partial = dir.join(format!("big-{n}.db.partial"));
                let _ = std::fs::remove_file(&partial);
                fill(&partial, n);
                std::fs::rename(&partial, &kept).expect("rename");
            }
            std::fs::copy(&kept, &db).expect("copy the kept database");
        }
        None => fill(&db, n),
    }
    let bytes_per_order = db_bytes(&db) as f64 / n as f64;
    // The server decides on the main file alone, before opening it (any WAL is not counted).
    let main_file = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let bin = o.bin_dir.join("unipay");
    let server = Server::spawn(
        &bin,
        &[
            "serve",
            "--db",
            db.to_str().expect("path"),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let addr = server.addr.clone();
    if main_file > store::CHECK_BEFORE_SERVING_MAX_BYTES {
        eprintln!("{n} orders: {}", server.wait_for_check());
    }
    let count = (30_000 * o.seconds).min(n) as usize;
    // Spread the closed orders over the whole table.
    let stride = (n as usize / count).max(1);
    let m = load_on(
        server.child.id(),
        &addr,
        deal(o.conns, count, |i| {
            close_req(&addr, &format!("BIG{}", i * stride), o.nonce)
        }),
        o.seconds,
    );
    let started = server.started_in;
    drop(server);
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
    (m, started, bytes_per_order)
}

/// The median of `o.runs` runs of the floors and the API phases, printed.
fn api_runs(o: &Opts, cores: usize) {
    let (mut pays, mut queries, mut closes, mut floors, mut rss) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (reply, reply_len) = sample_close_reply(o);
    for run in 0..o.runs {
        let floor = floor_run(o, &reply);
        let (pay, query, close, peak) = api_run(o);
        eprintln!("run {}: floor {:.0}/s, close {:.0}/s (p99 {:.2} ms), pay {:.0}/s, query {:.0}/s, rss {} KiB", run + 1, floor.per_sec, close.per_sec, close.p99_us as f64 / 1000.0, pay.per_sec, query.per_sec, peak);
        for (name, m) in [("close", &close), ("pay", &pay), ("query", &query)] {
            assert!(
                m.conns_served == m.conns,
                "{name}: only {} of {} connections were served",
                m.conns_served,
                m.conns
            );
        }
        floors.push(floor);
        pays.push(pay);
        queries.push(query);
        closes.push(close);
        rss.push(peak as f64);
    }
    let singles: Vec<(f64, f64)> = (0..o.runs).map(|_| sqlite_floor(1, 2.0)).collect();
    let groups: Vec<(f64, f64)> = (0..o.runs).map(|_| sqlite_floor(64, 2.0)).collect();
    let sqlite_single = median(singles.iter().map(|r| r.0).collect());
    let sqlite_group = median(groups.iter().map(|r| r.0).collect());
    let sqlite_group_cpu = median(groups.iter().map(|r| r.1).collect());
    let (floor, close, pay, query) = (
        median_by(floors),
        median_by(closes),
        median_by(pays),
        median_by(queries),
    );
    let rss = median(rss);

    println!("| what | per second | p50 ms | p99 ms | max ms | errors | connections served |");
    println!("|---|---|---|---|---|---|---|");
    let floor_name = format!(
        "HTTP floor (tiny_http: the close phase's requests{}, a real {reply_len}-byte close reply)",
        if o.nonce { ", nonceStr each" } else { "" }
    );
    println!("{}", row(&floor_name, &floor));
    let close_name = match o.nonce {
        true => "**close** (signed, md5, nonceStr each, synchronous=FULL)",
        false => "**close** (signed, md5, synchronous=FULL)",
    };
    println!("{}", row(close_name, &close));
    println!("{}", row("pay (sandbox channel)", &pay));
    println!("{}", row("query", &query));
    println!();
    println!("| SQLite floor, close transaction, synchronous=FULL | per second |");
    println!("|---|---|");
    println!("| one close per commit | {sqlite_single:.0} |");
    println!("| 64 closes per commit | {sqlite_group:.0} |");
    println!();
    println!("| CPU per request, µs (user + system) | server | client | both | {cores}-core ceiling, /s |");
    println!("|---|---|---|---|---|");
    for (name, m) in [
        ("HTTP floor", &floor),
        ("close", &close),
        ("pay", &pay),
        ("query", &query),
    ] {
        let both = m.server_cpu_us + m.client_cpu_us;
        println!(
            "| {name} | {:.1} | {:.1} | {both:.1} | {:.0} |",
            m.server_cpu_us,
            m.client_cpu_us,
            cores as f64 * 1e6 / both.max(0.001)
        );
    }
    println!(
        "| SQLite close transaction, 64 per commit (one thread) | {sqlite_group_cpu:.1} | | | |"
    );
    // Client and server share the cores: half the floor's rate leaves a close twice the floor's
    // CPU, of which the client's own share is already spent.
    let budget = 2.0 * (floor.server_cpu_us + floor.client_cpu_us) - close.client_cpu_us;
    println!();
    println!(
        "- at 0.5 × the HTTP floor a close may use {budget:.1} µs of server CPU; it uses {:.1} µs, \
         of which the bare SQLite close transaction is {sqlite_group_cpu:.1} µs and the HTTP floor's \
         request handling {:.1} µs",
        close.server_cpu_us, floor.server_cpu_us
    );
    println!(
        "- closes/s ÷ HTTP floor = **{:.2}** (target ≥ 0.35; same client, same requests, a reply of the same bytes)",
        close.per_sec / floor.per_sec
    );
    println!(
        "- closes/s ÷ SQLite floor (one per commit) = {:.2}; ÷ (64 per commit) = {:.2}",
        close.per_sec / sqlite_single,
        close.per_sec / sqlite_group
    );
    println!(
        "- close p99 = {:.2} ms (target ≤ 10 ms); server peak RSS = {:.1} MiB (target ≤ 64 MiB)",
        close.p99_us as f64 / 1000.0,
        rss / 1024.0
    );
}

fn main() {
    let o = parse_opts();
    let cores = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("# unipay load generator: {} connections, {} s per phase, median of {} runs, {cores} cores\n", o.conns, o.seconds, o.runs);

    if o.runs > 0 {
        api_runs(&o, cores);
    }
    if let Some(n) = o.big {
        let (small, small_start, small_bytes) = big_run(&o, 10_000);
        let (big, big_start, big_bytes) = big_run(&o, n);
        println!();
        println!("| database | close/s | p99 ms | start-up ms | bytes per order |");
        println!("|---|---|---|---|---|");
        println!(
            "| 10,000 orders | {:.0} | {:.2} | {:.0} | {:.0} |",
            small.per_sec,
            small.p99_us as f64 / 1000.0,
            small_start.as_secs_f64() * 1000.0,
            small_bytes
        );
        println!(
            "| {n} orders | {:.0} | {:.2} | {:.0} | {:.0} |",
            big.per_sec,
            big.p99_us as f64 / 1000.0,
            big_start.as_secs_f64() * 1000.0,
            big_bytes
        );
        println!();
        println!("- big ÷ small close rate = {:.2} (target ≥ 0.7); start-up on the big database {:.0} ms (target < 1000)", big.per_sec / small.per_sec, big_start.as_secs_f64() * 1000.0);
    }
}
