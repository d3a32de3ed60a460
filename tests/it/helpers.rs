//! The harness: a real `unipay serve` per test, the real `unipay app create` to make apps, a
//! tiny HTTP/1.1 client, request signing with the library, and a reply checker that verifies
//! the reply's signature independently of the server.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use unipay::sign::{self, SignType};
use unipay::sys::{self, Clock, SystemClock, UtcOffset};
use unipay::wire::{self, Params};

/// How long any wait in the harness may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_unipay")
}

/// A fresh, unique directory under the system temp dir (no tempfile crate).
pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("unipay-it-{}-{}-{}", std::process::id(), n, tag));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Runs the binary with `args` and returns its output.
pub fn run_cli(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("UNIPAY_DB")
        .env_remove("UNIPAY_LISTEN")
        .env_remove("UNIPAY_TZ_OFFSET")
        .env_remove("UNIPAY_URL")
        .env_remove("UNIPAY_PUBLIC_URL")
        .env_remove("UNIPAY_CHANNEL_TIMEOUT")
        .env_remove("UNIPAY_NO_SANDBOX")
        .stdin(Stdio::null())
        .output()
        .expect("run unipay")
}

pub fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// `yyyy-MM-dd HH:mm:ss` of now + `delta_secs`, in `offset`.
pub fn time_text(delta_secs: i64, offset: UtcOffset) -> String {
    sys::format_time(now_ms() + delta_secs * 1000, offset)
}

/// Polls `f` until it returns `Some`, or fails the test after `DEADLINE`.
#[track_caller]
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// One running `unipay serve` process.
struct Proc {
    child: Child,
    drain: Option<JoinHandle<()>>,
}

/// A `unipay serve` on its own database in its own temp dir; killed and removed on drop.
pub struct TestServer {
    pub dir: PathBuf,
    pub db: PathBuf,
    /// `127.0.0.1:PORT` of the current process.
    pub addr: String,
    extra: Vec<String>,
    /// Extra environment variables of every process started (e.g. `RUST_LOG`).
    envs: Vec<(String, String)>,
    proc: Option<Proc>,
    /// The soft open-file limit (`ulimit -Sn`) the server runs under, when set.
    open_files: Option<u64>,
    /// The zone the server reads request times in (`--tz-offset`); requests are dated in it.
    pub offset: UtcOffset,
    /// Every stdout line of every process started, in order.
    pub stdout: Arc<Mutex<Vec<String>>>,
    starts: usize,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Starts a server with extra `serve` arguments (e.g. `--tz-offset +00:00`).
    pub fn start_with(extra: &[&str]) -> TestServer {
        TestServer::start_with_env(extra, &[])
    }

    /// Starts a server with extra `serve` arguments and environment variables (they override
    /// the harness's own, e.g. `RUST_LOG`).
    pub fn start_with_env(extra: &[&str], envs: &[(&str, &str)]) -> TestServer {
        let dir = temp_dir("srv");
        let db = dir.join("gw.db");
        TestServer::start_in(dir, db, extra, envs)
    }

    /// Starts a server on the database at `db` (on a file system of its own, say); its logs
    /// stay in a temp dir of their own.
    pub fn start_on(db: PathBuf, extra: &[&str]) -> TestServer {
        TestServer::start_in(temp_dir("srv"), db, extra, &[])
    }

    fn start_in(dir: PathBuf, db: PathBuf, extra: &[&str], envs: &[(&str, &str)]) -> TestServer {
        let offset = extra
            .iter()
            .position(|a| *a == "--tz-offset")
            .map(|i| UtcOffset::parse(extra[i + 1]).expect("a valid --tz-offset"))
            .unwrap_or(UtcOffset::CST);
        let mut s = TestServer {
            offset,
            dir,
            db,
            addr: String::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            proc: None,
            open_files: None,
            stdout: Arc::new(Mutex::new(Vec::new())),
            starts: 0,
        };
        s.spawn();
        s
    }

    /// Starts a server whose soft open-file limit is `n` (set by the shell's `ulimit -Sn`,
    /// which then `exec`s the server, so the process is the server itself).
    pub fn start_with_open_files(n: u64) -> TestServer {
        let mut s = TestServer::start();
        s.kill9();
        s.open_files = Some(n);
        s.spawn();
        s
    }

    fn stderr_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("stderr-{n}.log"))
    }

    /// Everything the server processes wrote to stderr so far (their logs).
    pub fn stderr(&self) -> String {
        let mut out = String::new();
        for n in 0..self.starts {
            out.push_str(&std::fs::read_to_string(self.stderr_path(n)).unwrap_or_default());
        }
        out
    }

    fn spawn(&mut self) {
        assert!(self.proc.is_none(), "a server process is already running");
        let n = self.starts;
        self.starts += 1;
        let stderr = std::fs::File::create(self.stderr_path(n)).expect("stderr file");
        let db = self.db.to_str().unwrap().to_string();
        let mut args = vec![
            "serve".to_string(),
            "--db".into(),
            db,
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(self.extra.iter().cloned());
        let mut cmd = match self.open_files {
            None => Command::new(bin()),
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -Sn {n} && exec \"$0\" \"$@\""))
                    .arg(bin());
                c
            }
        };
        let mut child = cmd
            .args(&args)
            .env_remove("UNIPAY_DB")
            .env_remove("UNIPAY_LISTEN")
            .env_remove("UNIPAY_TZ_OFFSET")
            .env_remove("UNIPAY_PUBLIC_URL")
            .env_remove("UNIPAY_CHANNEL_TIMEOUT")
            .env_remove("UNIPAY_NO_SANDBOX")
            .env_remove("UNIPAY_ADMIN_TOKEN")
            .env("RUST_LOG", "info")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn unipay serve");
        let stdout = child.stdout.take().unwrap();
        let lines = self.stdout.clone();
        let (first_tx, first_rx) = mpsc::channel::<String>();
        let drain = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = Some(first_tx);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = line.trim_end().to_string();
                        lines.lock().unwrap().push(line.clone());
                        if let Some(tx) = first.take() {
                            let _ = tx.send(line);
                        }
                    }
                }
            }
        });
        self.proc = Some(Proc {
            child,
            drain: Some(drain),
        });
        let first = match first_rx.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(_) => {
                let status = self.proc.as_mut().unwrap().child.try_wait();
                panic!(
                    "unipay serve printed no first line (exit: {status:?}); stderr:\n{}",
                    self.stderr()
                );
            }
        };
        let addr = first
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first stdout line: {first:?}"));
        assert!(
            addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
            "the first line must name the real port: {first:?}"
        );
        self.addr = addr.to_string();
    }

    /// SIGKILLs the running process and waits until its stdout is fully drained.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
            if let Some(d) = p.drain.take() {
                let _ = d.join();
            }
        }
    }

    /// Sends `signal` (`TERM`, `INT`, …) to the running process.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("a running server");
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {pid}");
    }

    /// Waits (at most `within`) for the running process to exit by itself; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut p = self.proc.take().expect("a running server");
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = p.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = p.child.kill();
                let _ = p.child.wait();
                panic!(
                    "the server still ran {within:?} later; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if let Some(d) = p.drain.take() {
            let _ = d.join();
        }
        status
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.child.id())
    }

    /// SIGKILLs the server and starts a new process on the same database.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Restarts the server with other extra `serve` arguments.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.kill9();
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.spawn();
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The stdout lines seen so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    // ---- apps ----

    /// `unipay app create --db <db> --mch-no M --app-id A <args…>`, parsed.
    #[track_caller]
    pub fn create_app(&self, mch_no: &str, app_id: &str, args: &[&str]) -> App {
        let db = self.db.to_str().unwrap();
        let mut all = vec![
            "app", "create", "--db", db, "--mch-no", mch_no, "--app-id", app_id,
        ];
        all.extend_from_slice(args);
        let out = run_cli(&all);
        assert!(
            out.status.success(),
            "app create failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let v: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("app create printed no JSON ({e}): {text}"));
        assert_eq!(v["mchNo"], mch_no, "{text}");
        assert_eq!(v["appId"], app_id, "{text}");
        App {
            mch_no: mch_no.into(),
            app_id: app_id.into(),
            secret: v["secret"].as_str().expect("secret").into(),
            sign_type: SignType::parse(v["signType"].as_str().expect("signType"))
                .expect("sign type"),
        }
    }

    /// A plain md5 app with a random secret and the default settings.
    pub fn app(&self, app_id: &str) -> App {
        self.create_app(&format!("M_{app_id}"), app_id, &[])
    }

    // ---- HTTP ----

    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        http(&self.addr, method, path, body)
    }

    pub fn post_raw(&self, path: &str, body: &[u8]) -> Reply {
        self.request("POST", path, body)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, b"")
    }

    pub fn post_map(&self, path: &str, body: &Map<String, Value>) -> Reply {
        self.post_raw(path, &serde_json::to_vec(body).unwrap())
    }

    /// Fills mchNo/appId/reqTime (unless given), signs with the app, posts, and checks that
    /// the reply is signed with the app's secret (every reply is, when the app is known).
    #[track_caller]
    pub fn post_signed(&self, app: &App, path: &str, mut body: Value) -> Reply {
        if body.get("reqTime").is_none() {
            merge(&mut body, json!({"reqTime": time_text(0, self.offset)}));
        }
        let map = app.signed(path, body);
        let reply = self.post_map(path, &map);
        reply.signed_by(app);
        reply
    }

    // ---- the endpoints, for tests that need an order or a status ----

    /// `/unipay/pay` on the sandbox channel; returns the reply data (orderNo, payBody, …).
    #[track_caller]
    pub fn pay(&self, app: &App, biz_order_no: &str) -> Value {
        self.pay_with(app, biz_order_no, json!({}))
    }

    /// `/unipay/pay` with extra fields.
    #[track_caller]
    pub fn pay_with(&self, app: &App, biz_order_no: &str, extra: Value) -> Value {
        let mut body = json!({
            "bizOrderNo": biz_order_no,
            "title": "测试订单",
            "amount": 0.01,
            "channel": "sandbox",
            "method": "wap",
        });
        merge(&mut body, extra);
        let reply = self.post_signed(app, "/unipay/pay", body);
        reply.expect(0, "success");
        let data = reply.data().clone();
        assert_eq!(data["status"], "progress", "{}", reply.body);
        assert_eq!(data["bizOrderNo"], biz_order_no, "{}", reply.body);
        data
    }

    /// `/unipay/gateway/prePay`; returns the order number of the new `wait` order.
    #[track_caller]
    pub fn pre_pay(&self, app: &App, biz_order_no: &str) -> String {
        self.pre_pay_with(app, biz_order_no, json!({}))
    }

    #[track_caller]
    pub fn pre_pay_with(&self, app: &App, biz_order_no: &str, extra: Value) -> String {
        let mut body = json!({"bizOrderNo": biz_order_no, "title": "网关订单", "amount": "1.00"});
        merge(&mut body, extra);
        let reply = self.post_signed(app, "/unipay/gateway/prePay", body);
        reply.expect(0, "success");
        let order = self.order(app, biz_order_no);
        assert_eq!(order["status"], "wait", "{order}");
        order["orderNo"].as_str().unwrap().to_string()
    }

    /// `/unipay/query/payOrder` by bizOrderNo; the order (reply data).
    #[track_caller]
    pub fn order(&self, app: &App, biz_order_no: &str) -> Value {
        let reply = self.post_signed(
            app,
            "/unipay/query/payOrder",
            json!({ "bizOrderNo": biz_order_no }),
        );
        reply.expect(0, "success");
        reply.data().clone()
    }

    /// The status of an order, by bizOrderNo.
    #[track_caller]
    pub fn status(&self, app: &App, biz_order_no: &str) -> String {
        self.order(app, biz_order_no)["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[track_caller]
    pub fn close(&self, app: &App, body: Value) -> Reply {
        self.post_signed(app, "/unipay/close", body)
    }

    /// `POST /sandbox/pay/{orderNo}`: the payer pays.
    pub fn sandbox_pay(&self, order_no: &str) -> Reply {
        self.post_raw(&format!("/sandbox/pay/{order_no}"), b"")
    }

    // ---- the database, read only ----

    pub fn db_read(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open_with_flags(
            &self.db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open db read-only");
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c
    }

    /// `SELECT count(*) …` with one text parameter.
    pub fn count(&self, sql: &str, param: &str) -> i64 {
        self.db_read()
            .query_row(sql, [param], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn close_records(&self, order_no: &str) -> i64 {
        self.count(
            "SELECT count(*) FROM close_record WHERE order_no = ?1",
            order_no,
        )
    }

    pub fn successful_close_records(&self, order_no: &str) -> i64 {
        self.count(
            "SELECT count(*) FROM close_record WHERE order_no = ?1 AND closed = 1",
            order_no,
        )
    }

    pub fn notify_events(&self, order_no: &str) -> i64 {
        self.count(
            "SELECT count(*) FROM notify_event e JOIN pay_order o ON o.id = e.order_id
             WHERE o.order_no = ?1",
            order_no,
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Adds (or replaces) the fields of `extra` in `body`.
pub fn merge(body: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Apps and signing
// ---------------------------------------------------------------------------------------------

/// A merchant app as `unipay app create` printed it.
#[derive(Debug, Clone)]
pub struct App {
    pub mch_no: String,
    pub app_id: String,
    pub secret: String,
    pub sign_type: SignType,
}

/// The known fields of an endpoint, for signing.
pub fn fields_of(path: &str) -> &'static [wire::Field] {
    match path {
        "/unipay/close" => wire::CLOSE,
        "/unipay/pay" => wire::PAY,
        "/unipay/gateway/prePay" => wire::PRE_PAY,
        "/unipay/query/payOrder" => wire::QUERY,
        "/unipay/refund" => wire::REFUND,
        "/unipay/query/refundOrder" | "/unipay/sync/order/refund" => wire::QUERY_REFUND,
        "/unipay/sync/order/pay" => wire::SYNC_PAY,
        other => panic!("no fields known for {other}"),
    }
}

/// The signature of a request body for `path`, by the library's canonical rules; `None` when
/// the body does not validate (then no signature can be computed).
pub fn request_sign(
    sign_type: SignType,
    secret: &str,
    path: &str,
    body: &Map<String, Value>,
) -> Option<String> {
    let raw = serde_json::to_vec(body).unwrap();
    let params = Params::parse(&raw, &[wire::COMMON, fields_of(path)], UtcOffset::CST).ok()?;
    Some(sign::sign(sign_type, &params.sign_pairs(), secret))
}

impl App {
    /// `body` with mchNo, appId and reqTime (now, +08:00) filled in unless given.
    pub fn fill(&self, body: Value) -> Map<String, Value> {
        let Value::Object(mut map) = body else {
            panic!("a request body is a JSON object");
        };
        map.entry("mchNo")
            .or_insert_with(|| self.mch_no.clone().into());
        map.entry("appId")
            .or_insert_with(|| self.app_id.clone().into());
        map.entry("reqTime")
            .or_insert_with(|| time_text(0, UtcOffset::CST).into());
        map
    }

    /// Signs `map` for `path` in place (replacing any `sign`). A body that does not validate
    /// cannot be signed (its canonical string is undefined) and is left unsigned, as `unipay
    /// call` does: the server reports its fields before it looks at a signature.
    pub fn sign(&self, path: &str, map: &mut Map<String, Value>) {
        map.remove("sign");
        if let Some(s) = request_sign(self.sign_type, &self.secret, path, map) {
            map.insert("sign".into(), s.into());
        }
    }

    /// `fill` and `sign`.
    #[track_caller]
    pub fn signed(&self, path: &str, body: Value) -> Map<String, Value> {
        let mut map = self.fill(body);
        self.sign(path, &mut map);
        map
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client and replies
// ---------------------------------------------------------------------------------------------

/// Like `http`, but `None` instead of a panic when the server cannot be reached or gives no
/// complete reply (for tests that kill the server under load).
pub fn try_http(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<Reply> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    stream.set_write_timeout(Some(DEADLINE)).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    parse_response(&raw)
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`, read to the end).
pub fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if method != "GET" && method != "HEAD" {
        req.push_str("Content-Type: application/json; charset=UTF-8\r\n");
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    // The server may answer (and stop reading) before a too-large body is sent: a failed write
    // is not an error as long as a reply can be read.
    let _ = stream.write_all(&bytes);
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    if raw.is_empty() {
        panic!("{method} {path}: no reply ({read:?})");
    }
    parse_response(&raw).unwrap_or_else(|| {
        panic!(
            "{method} {path}: unparseable reply: {}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// One HTTP/1.1 exchange with the given extra header lines (`("Cookie", "a=b")`, …) and body;
/// no Content-Type is added (pass one). For the admin console's forms, cookies and tokens.
pub fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" && method != "HEAD" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    stream
        .write_all(&bytes)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw).unwrap_or_else(|| {
        panic!(
            "{method} {path}: unparseable reply: {}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse_response(raw: &[u8]) -> Option<Reply> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    let mut length = None;
    for line in lines {
        let (k, v) = line.split_once(':')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        if k == "content-length" {
            length = v.parse::<usize>().ok();
        }
        headers.push((k, v));
    }
    let mut body = &raw[head_end + 4..];
    if let Some(n) = length {
        if body.len() < n {
            return None;
        }
        body = &body[..n];
    }
    let body = String::from_utf8(body.to_vec()).ok()?;
    let json = serde_json::from_str::<Value>(&body).ok();
    Some(Reply {
        status,
        headers,
        body,
        json,
    })
}

/// An HTTP reply, with its body parsed as JSON when it is JSON.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub json: Option<Value>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[track_caller]
    pub fn json(&self) -> &Value {
        self.json
            .as_ref()
            .unwrap_or_else(|| panic!("reply is not JSON (HTTP {}): {}", self.status, self.body))
    }

    #[track_caller]
    pub fn code(&self) -> i64 {
        self.json()["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("reply has no numeric code: {}", self.body))
    }

    #[track_caller]
    pub fn msg(&self) -> &str {
        self.json()["msg"]
            .as_str()
            .unwrap_or_else(|| panic!("reply has no msg: {}", self.body))
    }

    #[track_caller]
    pub fn data(&self) -> &Value {
        &self.json()["data"]
    }

    /// Asserts the envelope's shape (spec §4): code, msg, `data` present, `resTime` in the
    /// time format, `traceId` 12 characters of `[A-Za-z0-9]`.
    #[track_caller]
    pub fn envelope(&self) -> &Self {
        let v = self.json();
        let ctx = &self.body;
        assert!(v["code"].is_i64(), "code: {ctx}");
        assert!(v["msg"].is_string(), "msg: {ctx}");
        assert!(v.get("data").is_some(), "data missing: {ctx}");
        let res_time = v["resTime"]
            .as_str()
            .unwrap_or_else(|| panic!("resTime missing: {ctx}"));
        assert!(
            sys::parse_time(res_time, UtcOffset::CST).is_some(),
            "resTime {res_time:?} is not yyyy-MM-dd HH:mm:ss: {ctx}"
        );
        let trace = v["traceId"]
            .as_str()
            .unwrap_or_else(|| panic!("traceId missing: {ctx}"));
        assert!(
            trace.len() == 12 && trace.bytes().all(|b| b.is_ascii_alphanumeric()),
            "traceId {trace:?} is not 12 [A-Za-z0-9]: {ctx}"
        );
        self
    }

    /// Asserts HTTP 200, the envelope, `code`, and that `msg` contains `msg_part`.
    #[track_caller]
    pub fn expect(&self, code: i64, msg_part: &str) -> &Self {
        assert_eq!(self.status, 200, "HTTP status: {}", self.body);
        self.envelope();
        assert_eq!(self.code(), code, "code: {}", self.body);
        assert!(
            self.msg().contains(msg_part),
            "msg {:?} does not contain {msg_part:?}: {}",
            self.msg(),
            self.body
        );
        self
    }

    /// Asserts that the reply is signed with `app`'s sign type and secret, verified here over
    /// `code, msg, data (raw text), resTime, traceId` with the library's signer.
    #[track_caller]
    pub fn signed_by(&self, app: &App) -> &Self {
        self.verify_sign(app.sign_type, &app.secret)
    }

    #[track_caller]
    pub fn verify_sign(&self, sign_type: SignType, secret: &str) -> &Self {
        self.envelope();
        let v = self.json();
        let given = v["sign"]
            .as_str()
            .unwrap_or_else(|| panic!("reply is not signed: {}", self.body));
        let code = v["code"].as_i64().unwrap().to_string();
        let msg = v["msg"].as_str().unwrap();
        let data = raw_data(&self.body);
        let res_time = v["resTime"].as_str().unwrap();
        let trace = v["traceId"].as_str().unwrap();
        let mut pairs = vec![("code", code.as_str()), ("msg", msg)];
        if let Some(d) = data.as_deref() {
            pairs.push(("data", d));
        }
        pairs.push(("resTime", res_time));
        pairs.push(("traceId", trace));
        assert!(
            sign::verify(sign_type, &pairs, secret, given),
            "reply signature does not verify with {sign_type:?}: {}",
            self.body
        );
        self
    }

    /// Asserts the reply carries no signature (no app could be known).
    #[track_caller]
    pub fn unsigned(&self) -> &Self {
        self.envelope();
        assert!(
            self.json()["sign"].is_null(),
            "reply should be unsigned: {}",
            self.body
        );
        self
    }
}

/// The raw text of the envelope's `data` object as it appears in `body`, `None` for `null`.
pub fn raw_data(body: &str) -> Option<String> {
    let at = body.find("\"data\":").expect("body has a data field") + "\"data\":".len();
    let rest = body[at..].trim_start();
    if rest.starts_with("null") {
        return None;
    }
    assert!(rest.starts_with('{'), "data is not an object: {body}");
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (i, c) in rest.char_indices() {
        if in_str {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(rest[..=i].to_string());
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced data object: {body}");
}

/// The path part of an absolute `http://host:port/path` URL.
pub fn url_path(url: &str) -> &str {
    let rest = url.strip_prefix("http://").expect("http URL");
    &rest[rest.find('/').expect("URL has a path")..]
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
