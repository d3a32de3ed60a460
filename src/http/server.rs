//! The HTTP/1.1 server behind `serve`: one accept thread and one thread per connection.
//!
//! The accept thread only accepts, counts and hands each connection to a fresh thread of its
//! own, so a kept-alive or stalled client can never keep another one waiting. A connection
//! thread reads requests through a reused buffer under hard limits (header bytes and lines,
//! body bytes, a deadline per request, an idle deadline between requests), answers each one
//! through the `Handler` with panics caught, and writes every response before a deadline
//! (`Limits::write_timeout` for the whole response, however slowly the client reads).
//! Past `Limits::max_connections` the accept thread answers `Handler::on_overload` (a 503) and
//! closes the socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{Handler, Limits, ReadError, Request, Response};

/// Stack size of a connection thread; handlers run on it, so it must not be too small.
const CONN_STACK_SIZE: usize = 512 * 1024;
/// Initial size of a connection's read buffer; it grows up to the header limit when needed.
const INITIAL_BUF: usize = 4096;
/// Compact the read buffer before a read when less than this much room is left at its end.
const MIN_READ_ROOM: usize = 1024;
/// Longest chunk-size line (size plus extensions) accepted in a chunked body.
const CHUNK_LINE_MAX: usize = 4096;
/// Longest time spent draining a connection after its final response was written.
const LINGER_TIME: Duration = Duration::from_secs(1);
/// Most bytes drained from a connection after its final response was written.
const LINGER_BYTES: usize = 1 << 20;
/// Write timeout for the 503 reply sent from the accept thread, which must never block long.
const REJECT_WRITE_TIMEOUT: Duration = Duration::from_millis(50);
/// Shortest socket read timeout ever set (a zero timeout would mean "block forever").
const MIN_READ_TIMEOUT: Duration = Duration::from_millis(1);
/// Largest response buffer kept for reuse between responses on one connection.
const MAX_KEPT_OUT: usize = 64 * 1024;

/// Shortest socket write timeout ever set (a zero timeout would mean "block forever").
const MIN_WRITE_TIMEOUT: Duration = Duration::from_millis(1);
/// Longest pause of the accept loop after a failed `accept` (out of file descriptors, …).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
const REPLY_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A running server: its address, and its accept thread to wait on.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl ServerHandle {
    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks the calling thread until the accept loop ends (normally never).
    pub fn join(self) {
        if self.accept.join().is_err() {
            log::error!("the HTTP accept thread panicked");
        }
    }
}

/// Starts serving on an already bound listener; returns at once (accept loop on its own thread).
///
/// Every accepted connection gets its own thread, at most `limits.max_connections` at once;
/// the connections past that are answered `503` and closed by the accept thread.
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    handler: Arc<dyn Handler>,
) -> io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(false)?;
    let limits = Arc::new(limits);
    let accept = thread::Builder::new()
        .name("http-accept".to_string())
        .spawn(move || accept_loop(listener, limits, handler))?;
    Ok(ServerHandle { addr, accept })
}

/// Holds one of the `max_connections` places; gives it back when the connection thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long the accept loop pauses after `failures` failed accepts in a row: 20 ms, doubling,
/// at most `MAX_ACCEPT_BACKOFF`.
fn accept_backoff(failures: u32) -> Duration {
    Duration::from_millis(10u64 << failures.min(7)).min(MAX_ACCEPT_BACKOFF)
}

fn accept_loop(listener: TcpListener, limits: Arc<Limits>, handler: Arc<dyn Handler>) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut failures: u32 = 0;
    let mut reject_buf = Vec::new();
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(pair) => {
                failures = 0;
                pair
            }
            Err(e) => {
                match e.kind() {
                    io::ErrorKind::Interrupted
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::ConnectionReset => {
                        log::debug!("accept: {e}");
                    }
                    _ => {
                        // Out of file descriptors (EMFILE, ENFILE) and the like: the pending
                        // connection stays queued, so retrying at once would spin. Back off
                        // and keep going.
                        failures = failures.saturating_add(1);
                        let backoff = accept_backoff(failures);
                        log::warn!("accept failed: {e}; retrying in {backoff:?}");
                        thread::sleep(backoff);
                    }
                }
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            active.fetch_sub(1, Ordering::AcqRel);
            log::debug!("too many connections; answering 503 to {peer}");
            reject(stream, &*handler, &mut reject_buf);
            continue;
        }
        let slot = Slot(Arc::clone(&active));
        let conn_limits = Arc::clone(&limits);
        let conn_handler = Arc::clone(&handler);
        let spawned = thread::Builder::new()
            .name("http-conn".to_string())
            .stack_size(CONN_STACK_SIZE)
            .spawn(move || {
                let _slot = slot;
                serve_connection(stream, peer, &conn_limits, &*conn_handler);
            });
        if let Err(e) = spawned {
            // The closure, with the stream and the slot, was dropped: the socket is closed.
            log::warn!("could not start a connection thread for {peer}: {e}");
        }
    }
}

/// Answers an over-limit connection with the handler's 503 without ever blocking the accept
/// loop for long.
fn reject(stream: TcpStream, handler: &dyn Handler, out: &mut Vec<u8>) {
    let resp = match catch_unwind(AssertUnwindSafe(|| handler.on_overload())) {
        Ok(resp) => resp,
        Err(_) => {
            log::error!("on_overload panicked");
            Response::text(503, reason_phrase(503))
        }
    };
    encode_response(out, &resp, false, false);
    let _ = stream.set_nodelay(true);
    match stream.set_write_timeout(Some(REJECT_WRITE_TIMEOUT)) {
        Ok(()) => {
            if let Err(e) = (&stream).write_all(out) {
                log::debug!("writing a 503: {e}");
            }
        }
        Err(e) => log::debug!("setting a write timeout: {e}"),
    }
    // Drain what already arrived, so that closing does not reset the connection (which could
    // destroy the reply before the client reads it).
    if stream.set_nonblocking(true).is_ok() {
        let mut scratch = [0u8; 2048];
        for _ in 0..4 {
            match (&stream).read(&mut scratch) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// Why reading stopped short of a complete request.
enum Fail {
    /// The request is unacceptable; it is answered through `Handler::on_read_error`.
    Read(ReadError),
    /// The peer closed the connection.
    Eof,
    /// The deadline passed.
    Timeout,
    /// The socket failed.
    Io(io::Error),
}

/// A failure to read a request, with what was read of it (no body).
struct Unread {
    fail: Fail,
    req: Option<Request>,
}

/// What the next request on a connection turned out to be.
enum Next {
    /// A complete request, and whether the client wants the connection kept alive.
    Request(Request, bool),
    /// An unreadable request, with what was read of it.
    Fail(ReadError, Option<Request>),
    /// The request started but did not arrive in time, with what was read of it.
    Timeout(Option<Request>),
    /// Nothing more will come (closed, idle, or a socket error): close silently.
    Close,
}

/// The parsed request line.
struct RequestLine {
    method: String,
    path: String,
    query: String,
    http10: bool,
}

/// One connection: its socket, its read buffer and its response buffer.
struct Conn<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    limits: &'a Limits,
    /// Unconsumed input is `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_buf: usize,
    /// The read timeout currently set on the socket.
    timeout: Option<Duration>,
    /// The write timeout currently set on the socket.
    write_timeout: Option<Duration>,
    out: Vec<u8>,
}

fn serve_connection(stream: TcpStream, peer: SocketAddr, limits: &Limits, handler: &dyn Handler) {
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("{peer}: set_nodelay: {e}");
    }
    let write_timeout = Some(limits.write_timeout).filter(|d| !d.is_zero());
    if let Err(e) = stream.set_write_timeout(write_timeout) {
        log::debug!("{peer}: set_write_timeout: {e}");
        return;
    }
    let max_buf = limits.max_header_bytes.max(CHUNK_LINE_MAX) + MIN_READ_ROOM;
    let mut conn = Conn {
        stream,
        peer,
        limits,
        buf: vec![0; INITIAL_BUF.min(max_buf)],
        start: 0,
        end: 0,
        max_buf,
        timeout: None,
        write_timeout,
        out: Vec::with_capacity(1024),
    };
    // The first request must start within the request timeout; later ones within the idle one.
    let mut wait = limits.request_timeout;
    loop {
        match conn.read_request(wait) {
            Next::Request(req, keep_alive) => {
                let resp = call_handler(handler, &req);
                let keep_alive = keep_alive && !wants_close(&resp);
                let head_only = req.method == "HEAD";
                if !conn.write_response(&resp, head_only, keep_alive) {
                    return;
                }
                if !keep_alive {
                    conn.linger_close();
                    return;
                }
            }
            Next::Fail(err, req) => {
                log::debug!("{peer}: unreadable request: {err:?}");
                let resp = call_on_read_error(handler, err, req.as_ref());
                let head_only = req.as_ref().is_some_and(|r| r.method == "HEAD");
                if conn.write_response(&resp, head_only, false) {
                    conn.linger_close();
                }
                return;
            }
            Next::Timeout(req) => {
                log::debug!("{peer}: request not received within the request timeout");
                let resp = call_on_read_error(handler, ReadError::Timeout, req.as_ref());
                if conn.write_response(&resp, false, false) {
                    conn.linger_close();
                }
                return;
            }
            Next::Close => return,
        }
        wait = limits.idle_timeout;
    }
}

/// Runs the handler with panics caught; a panic is answered by `on_panic`.
fn call_handler(handler: &dyn Handler, req: &Request) -> Response {
    match catch_unwind(AssertUnwindSafe(|| handler.handle(req))) {
        Ok(resp) => resp,
        Err(_) => {
            log::error!("handler panicked on {} {}", req.method, req.path);
            match catch_unwind(AssertUnwindSafe(|| handler.on_panic(req))) {
                Ok(resp) => resp,
                Err(_) => {
                    log::error!("on_panic panicked on {} {}", req.method, req.path);
                    Response::text(500, "Internal Server Error")
                }
            }
        }
    }
}

/// Runs `on_read_error` with panics caught.
fn call_on_read_error(handler: &dyn Handler, err: ReadError, req: Option<&Request>) -> Response {
    match catch_unwind(AssertUnwindSafe(|| handler.on_read_error(err, req))) {
        Ok(resp) => resp,
        Err(_) => {
            log::error!("on_read_error panicked on {err:?}");
            let status = match err {
                ReadError::BodyTooLarge => 413,
                ReadError::HeadersTooLarge => 431,
                ReadError::Malformed => 400,
                ReadError::Timeout => 408,
            };
            Response::text(status, reason_phrase(status))
        }
    }
}

/// Whether the handler asked for the connection to be closed with its own `Connection` header.
fn wants_close(resp: &Response) -> bool {
    resp.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("connection")
            && value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
    })
}

impl Conn<'_> {
    /// Reads the next request, waiting at most `wait` for its first byte.
    fn read_request(&mut self, wait: Duration) -> Next {
        if self.start == self.end {
            match self.fill(Instant::now() + wait) {
                Ok(()) => {}
                Err(Fail::Io(e)) => {
                    log::debug!("{}: read: {e}", self.peer);
                    return Next::Close;
                }
                Err(_) => return Next::Close,
            }
        }
        let deadline = Instant::now() + self.limits.request_timeout;
        match self.read_message(deadline) {
            Ok((req, keep_alive)) => Next::Request(req, keep_alive),
            Err(unread) => {
                let Unread { fail, req } = *unread;
                match fail {
                    Fail::Read(err) => Next::Fail(err, req),
                    Fail::Timeout => Next::Timeout(req),
                    Fail::Eof => Next::Close,
                    Fail::Io(e) => {
                        log::debug!("{}: read: {e}", self.peer);
                        Next::Close
                    }
                }
            }
        }
    }

    /// Reads a request line, headers and body, all before `deadline`.
    fn read_message(&mut self, deadline: Instant) -> Result<(Request, bool), Box<Unread>> {
        /// Returns the failure together with what was read of the request.
        macro_rules! attempt {
            ($e:expr, $req:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(fail) => return Err(Box::new(Unread { fail, req: $req })),
                }
            };
        }
        /// Fails with a read error, together with what was read of the request.
        macro_rules! fail_with {
            ($err:expr, $req:expr) => {
                return Err(Box::new(Unread {
                    fail: Fail::Read($err),
                    req: $req,
                }))
            };
        }
        let limits = self.limits;
        let max_head = limits.max_header_bytes;
        let mut used = 0usize;

        // The request line; empty lines before it (sent by some clients after a body) are
        // skipped, within the header budget.
        let line = loop {
            let budget = max_head.saturating_sub(used);
            let (s, e, n) = attempt!(
                self.read_line(budget, deadline, ReadError::HeadersTooLarge, true),
                None
            );
            used += n;
            if s < e {
                break parse_request_line(&self.buf[s..e]);
            }
        };
        let Some(line) = line else {
            fail_with!(ReadError::Malformed, None);
        };
        let mut req = Request {
            method: line.method,
            path: line.path,
            query: line.query,
            headers: Vec::with_capacity(8),
            remote_addr: self.peer,
            body: Vec::new(),
        };

        let mut content_length: Option<u64> = None;
        let mut chunked = false;
        let mut conn_close = false;
        let mut conn_keep_alive = false;
        let mut expect_continue = false;
        loop {
            let budget = max_head.saturating_sub(used);
            let (s, e, n) = attempt!(
                self.read_line(budget, deadline, ReadError::HeadersTooLarge, false),
                Some(req)
            );
            used += n;
            if s == e {
                break;
            }
            if req.headers.len() >= limits.max_headers {
                fail_with!(ReadError::HeadersTooLarge, Some(req));
            }
            let Some((name, value)) = parse_header(&self.buf[s..e]) else {
                fail_with!(ReadError::Malformed, Some(req));
            };
            let malformed = match name.as_str() {
                "content-length" => match parse_content_length(&value) {
                    Some(len) if content_length.is_none_or(|prev| prev == len) => {
                        content_length = Some(len);
                        false
                    }
                    _ => true,
                },
                "transfer-encoding" => {
                    let ok = !chunked && value.eq_ignore_ascii_case("chunked");
                    chunked = true;
                    !ok
                }
                "connection" => {
                    for token in value.split(',').map(str::trim) {
                        if token.eq_ignore_ascii_case("close") {
                            conn_close = true;
                        } else if token.eq_ignore_ascii_case("keep-alive") {
                            conn_keep_alive = true;
                        }
                    }
                    false
                }
                "expect" => {
                    expect_continue = value.eq_ignore_ascii_case("100-continue");
                    false
                }
                _ => false,
            };
            if malformed {
                fail_with!(ReadError::Malformed, Some(req));
            }
            req.headers.push((name, value));
        }
        if chunked && content_length.is_some() {
            fail_with!(ReadError::Malformed, Some(req));
        }
        let keep_alive = if line.http10 {
            conn_keep_alive && !conn_close
        } else {
            !conn_close
        };
        // A 100 Continue is only useful to an HTTP/1.1 client that has not sent its body yet.
        let send_continue = expect_continue && !line.http10 && self.start == self.end;

        if let Some(len) = content_length {
            if len > limits.max_body as u64 {
                fail_with!(ReadError::BodyTooLarge, Some(req));
            }
            let len = len as usize;
            if len > 0 {
                if send_continue {
                    attempt!(self.send_continue(), Some(req));
                }
                let mut body = vec![0; len];
                attempt!(self.copy_exact(&mut body, deadline), Some(req));
                req.body = body;
            }
        } else if chunked {
            if send_continue {
                attempt!(self.send_continue(), Some(req));
            }
            req.body = attempt!(self.read_chunked(deadline), Some(req));
        }
        Ok((req, keep_alive))
    }

    /// Decodes a chunked body: hex sizes, extensions ignored, trailers skipped.
    fn read_chunked(&mut self, deadline: Instant) -> Result<Vec<u8>, Fail> {
        let limits = self.limits;
        let mut body = Vec::new();
        loop {
            let (s, e, _) =
                self.read_line(CHUNK_LINE_MAX, deadline, ReadError::Malformed, false)?;
            let size = parse_chunk_size(&self.buf[s..e]).ok_or(Fail::Read(ReadError::Malformed))?;
            if size == 0 {
                break;
            }
            if size > (limits.max_body - body.len()) as u64 {
                return Err(Fail::Read(ReadError::BodyTooLarge));
            }
            let old = body.len();
            body.resize(old + size as usize, 0);
            self.copy_exact(&mut body[old..], deadline)?;
            let (s, e, _) = self.read_line(2, deadline, ReadError::Malformed, false)?;
            if s != e {
                return Err(Fail::Read(ReadError::Malformed));
            }
        }
        // Trailers are skipped, but bounded like a header block.
        let mut used = 0usize;
        let mut lines = 0usize;
        loop {
            let budget = limits.max_header_bytes.saturating_sub(used);
            let (s, e, n) = self.read_line(budget, deadline, ReadError::HeadersTooLarge, false)?;
            used += n;
            if s == e {
                return Ok(body);
            }
            lines += 1;
            if lines > limits.max_headers {
                return Err(Fail::Read(ReadError::HeadersTooLarge));
            }
        }
    }

    /// Takes the next line out of the buffer, reading more as needed; returns the line's range
    /// in `buf` without its line ending, and its length with it. A line (with its ending) longer
    /// than `max_len` fails with `too_long`. With `check_method`, input that cannot start a
    /// request line fails at once instead of waiting for a line ending.
    fn read_line(
        &mut self,
        max_len: usize,
        deadline: Instant,
        too_long: ReadError,
        check_method: bool,
    ) -> Result<(usize, usize, usize), Fail> {
        let mut scanned = 0;
        loop {
            let from = self.start + scanned;
            if let Some(i) = self.buf[from..self.end].iter().position(|&b| b == b'\n') {
                let nl = from + i;
                let len = nl + 1 - self.start;
                if len > max_len {
                    return Err(Fail::Read(too_long));
                }
                let s = self.start;
                let e = if nl > s && self.buf[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    nl
                };
                self.start = nl + 1;
                return Ok((s, e, len));
            }
            scanned = self.end - self.start;
            if scanned >= max_len {
                return Err(Fail::Read(too_long));
            }
            if check_method && !plausible_method(&self.buf[self.start..self.end]) {
                return Err(Fail::Read(ReadError::Malformed));
            }
            self.fill(deadline)?;
        }
    }

    /// Fills `dst` from the buffer, then from the socket.
    fn copy_exact(&mut self, dst: &mut [u8], deadline: Instant) -> Result<(), Fail> {
        let mut filled = 0;
        loop {
            let have = (self.end - self.start).min(dst.len() - filled);
            dst[filled..filled + have].copy_from_slice(&self.buf[self.start..self.start + have]);
            self.start += have;
            filled += have;
            if filled == dst.len() {
                return Ok(());
            }
            // The buffer is empty now. Large remainders go straight into `dst`; small ones
            // through the buffer, which may then also pick up what follows in one read.
            if dst.len() - filled >= self.buf.len() / 2 {
                filled += read_deadline(
                    &mut self.stream,
                    &mut self.timeout,
                    &mut dst[filled..],
                    deadline,
                )?;
            } else {
                self.fill(deadline)?;
            }
        }
    }

    /// Reads more input into the buffer (at least one byte) before `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<(), Fail> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.buf.len() - self.end < MIN_READ_ROOM {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= self.max_buf {
                // The callers' line limits keep this from happening; fail safe regardless.
                return Err(Fail::Read(ReadError::HeadersTooLarge));
            }
            let len = (self.buf.len() * 2).min(self.max_buf);
            self.buf.resize(len, 0);
        }
        let n = read_deadline(
            &mut self.stream,
            &mut self.timeout,
            &mut self.buf[self.end..],
            deadline,
        )?;
        self.end += n;
        Ok(())
    }

    fn send_continue(&mut self) -> Result<(), Fail> {
        let deadline = self.write_deadline();
        write_deadline(
            &mut self.stream,
            &mut self.write_timeout,
            REPLY_100,
            deadline,
        )
        .map_err(Fail::Io)
    }

    /// When a write that starts now must be done; `None`: no limit.
    fn write_deadline(&self) -> Option<Instant> {
        Some(self.limits.write_timeout)
            .filter(|d| !d.is_zero())
            .map(|d| Instant::now() + d)
    }

    /// Writes one response; false when the connection is unusable.
    fn write_response(&mut self, resp: &Response, head_only: bool, keep_alive: bool) -> bool {
        let mut out = std::mem::take(&mut self.out);
        encode_response(&mut out, resp, head_only, keep_alive);
        let ok = self.write_raw(&out);
        if out.capacity() <= MAX_KEPT_OUT {
            self.out = out;
        }
        ok
    }

    /// Writes bytes, all before the write deadline; false when the connection is unusable.
    fn write_raw(&mut self, bytes: &[u8]) -> bool {
        let deadline = self.write_deadline();
        match write_deadline(&mut self.stream, &mut self.write_timeout, bytes, deadline) {
            Ok(()) => true,
            Err(e) => {
                log::debug!("{}: write: {e}", self.peer);
                false
            }
        }
    }

    /// Closes after a final response: shuts the sending side (the client sees the end of the
    /// reply at once), then drains for a bounded time so that unread input does not make the
    /// close a reset, which could destroy the reply before the client reads it.
    fn linger_close(&mut self) {
        if let Err(e) = self.stream.shutdown(Shutdown::Write) {
            log::debug!("{}: shutdown: {e}", self.peer);
            return;
        }
        let deadline = Instant::now() + LINGER_TIME;
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match read_deadline(&mut self.stream, &mut self.timeout, &mut self.buf, deadline) {
                Ok(n) => drained += n,
                Err(_) => return,
            }
        }
    }
}

/// Reads at least one byte into `dst` before `deadline` (always trying at least once).
///
/// The socket's read timeout is only changed when it is notably longer than the time left
/// (or much shorter, to avoid spinning), so the steady keep-alive path costs no extra system
/// call; a read may overshoot the deadline by at most 1/32 of the time that was left.
fn read_deadline(
    stream: &mut TcpStream,
    current: &mut Option<Duration>,
    dst: &mut [u8],
    deadline: Instant,
) -> Result<usize, Fail> {
    loop {
        let want = deadline
            .saturating_duration_since(Instant::now())
            .max(MIN_READ_TIMEOUT);
        let reset = match *current {
            None => true,
            Some(cur) => cur > want + want / 32 || cur < want / 2,
        };
        if reset {
            stream.set_read_timeout(Some(want)).map_err(Fail::Io)?;
            *current = Some(want);
        }
        match stream.read(dst) {
            Ok(0) => return Err(Fail::Eof),
            Ok(n) => return Ok(n),
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    if Instant::now() >= deadline {
                        return Err(Fail::Timeout);
                    }
                }
                _ => return Err(Fail::Io(e)),
            },
        }
    }
}

/// Writes all of `bytes` before `deadline` (`None`: no deadline, the socket's own timeout per
/// call applies), however slowly the peer reads: each `write` may block only for the time left.
///
/// Like `read_deadline`, the socket's write timeout is only changed when it is notably longer
/// than the time left (or much shorter), so a response that goes out in one call costs no extra
/// system call.
fn write_deadline(
    stream: &mut TcpStream,
    current: &mut Option<Duration>,
    mut bytes: &[u8],
    deadline: Option<Instant>,
) -> io::Result<()> {
    while !bytes.is_empty() {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "response not written within the write timeout",
                ));
            }
            let want = left.max(MIN_WRITE_TIMEOUT);
            let reset = match *current {
                None => true,
                Some(cur) => cur > want + want / 32 || cur < want / 2,
            };
            if reset {
                stream.set_write_timeout(Some(want))?;
                *current = Some(want);
            }
        }
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted => {}
                // The loop checks the deadline; without one, the socket's timeout is final.
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut if deadline.is_some() => {}
                _ => return Err(e),
            },
        }
    }
    Ok(())
}

/// The `tchar` set of RFC 9110 (method and header name characters).
const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// Whether an incomplete first line can still become a request line (its method so far is
/// made of token characters), so that binary garbage is rejected without waiting.
fn plausible_method(partial: &[u8]) -> bool {
    for &b in partial {
        if b == b' ' || b == b'\r' {
            return true;
        }
        if !is_tchar(b) {
            return false;
        }
    }
    true
}

/// Parses `METHOD SP target SP HTTP/1.x`.
fn parse_request_line(line: &[u8]) -> Option<RequestLine> {
    let sp1 = line.iter().position(|&b| b == b' ')?;
    let method = &line[..sp1];
    let rest = &line[sp1 + 1..];
    let sp2 = rest.iter().position(|&b| b == b' ')?;
    let target = &rest[..sp2];
    let version = &rest[sp2 + 1..];
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    if target.is_empty() || !target.iter().all(|&b| b > b' ' && b != 0x7f) {
        return None;
    }
    let http10 = match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            *minor == b'0'
        }
        _ => return None,
    };
    let method = std::str::from_utf8(method).ok()?.to_string();
    let target = std::str::from_utf8(target).ok()?;
    let (path, query) = split_target(target);
    Some(RequestLine {
        method,
        path: path.to_string(),
        query: query.to_string(),
        http10,
    })
}

/// Splits a request target into path and query at the first `?`; an absolute-form target
/// (`http://host/path`) is reduced to its path.
fn split_target(target: &str) -> (&str, &str) {
    let mut target = target;
    for scheme in ["http://", "https://"] {
        let is_absolute = target
            .get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme));
        if is_absolute {
            let rest = &target[scheme.len()..];
            target = match rest.find(['/', '?']) {
                Some(i) => &rest[i..],
                None => "",
            };
            break;
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    (if path.is_empty() { "/" } else { path }, query)
}

/// Parses `name: value`; the name is lower-cased and the value trimmed. Obs-fold, bare CR and
/// other control characters, a missing colon or a non-token name give `None`.
fn parse_header(line: &[u8]) -> Option<(String, String)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        // This also rejects obs-fold, as a folded line starts with a space or a tab.
        return None;
    }
    let mut value = &line[colon + 1..];
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    if value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return None;
    }
    let name: String = name
        .iter()
        .map(|&b| b.to_ascii_lowercase() as char)
        .collect();
    let value = match std::str::from_utf8(value) {
        Ok(v) => v.to_string(),
        Err(_) => String::from_utf8_lossy(value).into_owned(),
    };
    Some((name, value))
}

/// Parses a Content-Length value: digits only; a value too big for `u64` saturates (and is
/// then over any body limit).
fn parse_content_length(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Parses a chunk-size line: hex digits, optional whitespace, optional `;extensions`. A size
/// too big for `u64` saturates.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let mut digits = match line.iter().position(|&b| b == b';') {
        Some(i) => &line[..i],
        None => line,
    };
    while let [rest @ .., b' ' | b'\t'] = digits {
        digits = rest;
    }
    if digits.is_empty() {
        return None;
    }
    let mut size = 0u64;
    for &b in digits {
        let digit = (b as char).to_digit(16)?;
        size = size.saturating_mul(16).saturating_add(u64::from(digit));
    }
    Some(size)
}

/// The reason phrase for a status code.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => match status / 100 {
            2 => "OK",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// Appends the decimal digits of `n`.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Serialises a response into `out` (cleared first). The server owns the framing: the
/// handler's own `Content-Length`, `Transfer-Encoding` and `Connection` headers are dropped,
/// header names that are not tokens are dropped, and CR and LF are stripped from values.
fn encode_response(out: &mut Vec<u8>, resp: &Response, head_only: bool, keep_alive: bool) {
    let status = if (200..=999).contains(&resp.status) {
        resp.status
    } else {
        log::warn!("handler returned status {}; sending 500", resp.status);
        500
    };
    let reason = reason_phrase(status);
    // 204 and 304 carry neither a body nor (here) a Content-Length.
    let bodiless = status == 204 || status == 304;
    let body: &[u8] = if head_only || bodiless {
        &[]
    } else {
        &resp.body
    };
    let mut size = b"HTTP/1.1 000 \r\n".len() + reason.len();
    size += b"Content-Length: \r\n".len() + 20 + b"Connection: keep-alive\r\n\r\n".len();
    for (name, value) in &resp.headers {
        size += name.len() + value.len() + 4;
    }
    size += body.len();
    out.clear();
    out.reserve(size);

    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &resp.headers {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            log::warn!("dropping a response header with an invalid name: {name:?}");
            continue;
        }
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("connection")
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        let value = value.as_bytes();
        if value.iter().any(|&b| b == b'\r' || b == b'\n') {
            out.extend(value.iter().filter(|&&b| b != b'\r' && b != b'\n'));
        } else {
            out.extend_from_slice(value);
        }
        out.extend_from_slice(b"\r\n");
    }
    if !bodiless {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, resp.body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Barrier;

    /// Echoes the request; `/panic` panics; read errors map to their usual status codes.
    struct TestHandler;

    impl Handler for TestHandler {
        fn handle(&self, req: &Request) -> Response {
            match req.path.as_str() {
                "/panic" => panic!("test handler panic (expected)"),
                "/inject" => Response::text(200, "x").with_header("X-Inj", "a\r\nEvil: 1".into()),
                "/close" => Response::text(200, "bye").with_header("Connection", "close".into()),
                "/big" => Response {
                    status: 200,
                    headers: Vec::new(),
                    body: vec![b'x'; BIG_BODY],
                },
                _ => {
                    let body = format!(
                        "{} {} {} {}",
                        req.method,
                        req.path,
                        req.query,
                        String::from_utf8_lossy(&req.body)
                    );
                    Response::text(200, &body)
                }
            }
        }

        fn on_read_error(&self, err: ReadError, req: Option<&Request>) -> Response {
            let status = match err {
                ReadError::BodyTooLarge => 413,
                ReadError::HeadersTooLarge => 431,
                ReadError::Malformed => 400,
                ReadError::Timeout => 408,
            };
            let path = req.map_or("-", |r| r.path.as_str());
            Response::text(status, &format!("{err:?} {path}"))
        }

        fn on_panic(&self, req: &Request) -> Response {
            Response::text(500, &format!("panic {}", req.path))
        }

        fn on_overload(&self) -> Response {
            Response::text(503, "overloaded")
        }
    }

    /// The size of `/big`: far more than the socket buffers on both sides hold.
    const BIG_BODY: usize = 48 << 20;

    fn limits() -> Limits {
        Limits {
            max_body: 1024,
            max_header_bytes: 1024,
            max_headers: 16,
            request_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(2),
            max_connections: 512,
        }
    }

    fn start(limits: Limits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        serve(listener, limits, Arc::new(TestHandler))
            .expect("serve")
            .local_addr()
    }

    struct Client {
        stream: TcpStream,
        reader: BufReader<TcpStream>,
    }

    impl Client {
        fn connect(addr: SocketAddr) -> Client {
            let stream = TcpStream::connect(addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("read timeout");
            let reader = BufReader::new(stream.try_clone().expect("clone"));
            Client { stream, reader }
        }

        fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).expect("send");
        }

        fn reply(&mut self) -> Reply {
            self.reply_to(false).expect("reply")
        }

        /// Reads one response; `head` means there is no body whatever Content-Length says.
        fn reply_to(&mut self, head: bool) -> io::Result<Reply> {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let status = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("status code");
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                self.reader.read_line(&mut line)?;
                let line = line.trim_end_matches(['\r', '\n']);
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').expect("header colon");
                headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
            let mut reply = Reply {
                status,
                headers,
                body: Vec::new(),
            };
            let len = reply
                .header("content-length")
                .map_or(0, |v| v.parse().expect("length"));
            if !head && status >= 200 {
                reply.body = vec![0; len];
                self.reader.read_exact(&mut reply.body)?;
            }
            Ok(reply)
        }

        /// Asserts that the server closed the connection with nothing more to say.
        fn assert_closed(&mut self) {
            let mut rest = [0u8; 64];
            match self.reader.read(&mut rest) {
                Ok(0) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                other => panic!("connection still open: {other:?}"),
            }
        }
    }

    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }

        fn text(&self) -> &str {
            std::str::from_utf8(&self.body).expect("utf-8 body")
        }
    }

    #[test]
    fn get_and_post_with_content_length() {
        let addr = start(limits());
        let mut c = Client::connect(addr);
        c.send(b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.reply();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "GET /a/b x=1&y=2 ");
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));

        c.send(b"POST /pay HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
        let r = c.reply();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "POST /pay  hello");

        // A POST without any length has an empty body.
        c.send(b"POST /empty HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.reply().text(), "POST /empty  ");

        // An absolute-form target is reduced to its path.
        c.send(b"GET http://example.com/abs?q HTTP/1.1\r\n\r\n");
        assert_eq!(c.reply().text(), "GET /abs q ");
    }

    #[test]
    fn keep_alive_serves_sequential_requests_and_head() {
        let addr = start(limits());
        let mut c = Client::connect(addr);
        for i in 0..3 {
            c.send(format!("GET /seq{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            assert_eq!(c.reply().text(), format!("GET /seq{i}  "));
        }
        // HEAD keeps the Content-Length but sends no body; the next reply must parse cleanly.
        c.send(b"HEAD /h HTTP/1.1\r\n\r\n");
        let r = c.reply_to(true).expect("head reply");
        assert_eq!(r.header("content-length"), Some("9"));
        c.send(b"GET /after HTTP/1.1\r\n\r\n");
        assert_eq!(c.reply().text(), "GET /after  ");
        // The handler may close the connection with its own header.
        c.send(b"GET /close HTTP/1.1\r\n\r\n");
        let r = c.reply();
        assert_eq!(r.header("connection"), Some("close"));
        c.assert_closed();
    }

    #[test]
    fn pipelined_requests_in_one_write() {
        let addr = start(limits());
        let mut c = Client::connect(addr);
        c.send(
            b"POST /one HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /two?z HTTP/1.1\n\n\
              GET /three HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(c.reply().text(), "POST /one  abc");
        assert_eq!(c.reply().text(), "GET /two z ");
        let r = c.reply();
        assert_eq!(r.text(), "GET /three  ");
        assert_eq!(r.header("connection"), Some("close"));
        c.assert_closed();
    }

    #[test]
    fn chunked_body_is_decoded() {
        let addr = start(limits());
        let mut c = Client::connect(addr);
        c.send(
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: a\r\n\r\n",
        );
        assert_eq!(c.reply().text(), "POST /c  hello world");
        // Sent in pieces, with upper-case hex, on the same connection.
        c.send(b"POST /d HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n01234");
        c.send(b"56789\r\n0\r\n\r\n");
        assert_eq!(c.reply().text(), "POST /d  0123456789");
    }

    #[test]
    fn body_over_limit_is_rejected_and_closed() {
        let addr = start(limits());
        let mut c = Client::connect(addr);
        c.send(b"POST /big HTTP/1.1\r\nContent-Length: 2000\r\n\r\n");
        c.send(&[b'x'; 500]);
        let r = c.reply();
        assert_eq!(r.status, 413);
        assert_eq!(r.text(), "BodyTooLarge /big");
        assert_eq!(r.header("connection"), Some("close"));
        c.assert_closed();

        let mut c = Client::connect(addr);
        c.send(b"POST /bigc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        c.send(b"400\r\n");
        c.send(&[b'x'; 1024]);
        c.send(b"\r\n1\r\nx\r\n0\r\n\r\n");
        let r = c.reply();
        assert_eq!(r.status, 413);
        assert_eq!(r.text(), "BodyTooLarge /bigc");
        c.assert_closed();
    }

    #[test]
    fn headers_too_large() {
        let addr = start(limits());
        let mut c = Client::connect(addr);
        let long = "v".repeat(1100);
        c.send(format!("GET /h HTTP/1.1\r\nX-Long: {long}\r\n\r\n").as_bytes());
        let r = c.reply();
        assert_eq!(r.status, 431);
        assert_eq!(r.text(), "HeadersTooLarge /h");
        c.assert_closed();

        let mut c = Client::connect(addr);
        let many: String = (0..17).map(|i| format!("X-{i}: v\r\n")).collect();
        c.send(format!("GET /n HTTP/1.1\r\n{many}\r\n").as_bytes());
        assert_eq!(c.reply().status, 431);
        c.assert_closed();

        // A request line alone over the limit has no partial request.
        let mut c = Client::connect(addr);
        c.send(format!("GET /{long} HTTP/1.1\r\n\r\n").as_bytes());
        let r = c.reply();
        assert_eq!((r.status, r.text()), (431, "HeadersTooLarge -"));
        c.assert_closed();
    }

    #[test]
    fn malformed_requests_are_rejected() {
        let addr = start(limits());
        let cases: &[&[u8]] = &[
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad : v\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
        ];
        for case in cases {
            let mut c = Client::connect(addr);
            c.send(case);
            let r = c.reply();
            assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(case));
            assert!(r.text().starts_with("Malformed"));
            c.assert_closed();
        }
        // Identical duplicate lengths are fine.
        let mut c = Client::connect(addr);
        c.send(b"POST /dup HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab");
        assert_eq!(c.reply().text(), "POST /dup  ab");
    }

    #[test]
    fn expect_100_continue() {
        let addr = start(limits());
        let mut c = Client::connect(addr);
        c.send(b"POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
        let mut interim = [0u8; REPLY_100.len()];
        c.reader.read_exact(&mut interim).expect("100 Continue");
        assert_eq!(&interim, REPLY_100);
        c.send(b"body");
        assert_eq!(c.reply().text(), "POST /e  body");

        // Over the limit: the error comes at once, without a 100.
        c.send(b"POST /e2 HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
        let r = c.reply();
        assert_eq!(r.status, 413);
        c.assert_closed();
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        let addr = start(limits());
        let mut c = Client::connect(addr);
        c.send(b"GET /old HTTP/1.0\r\n\r\n");
        let r = c.reply();
        assert_eq!(r.text(), "GET /old  ");
        assert_eq!(r.header("connection"), Some("close"));
        c.assert_closed();

        let mut c = Client::connect(addr);
        c.send(b"GET /ka HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert_eq!(c.reply().header("connection"), Some("keep-alive"));
        c.send(b"GET /ka2 HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert_eq!(c.reply().header("connection"), Some("close"));
        c.assert_closed();
    }

    #[test]
    fn handler_panic_is_answered_and_server_survives() {
        let addr = start(limits());
        let mut c = Client::connect(addr);
        c.send(b"GET /panic HTTP/1.1\r\n\r\n");
        let r = c.reply();
        assert_eq!((r.status, r.text()), (500, "panic /panic"));
        // The connection itself is still good.
        c.send(b"GET /again HTTP/1.1\r\n\r\n");
        assert_eq!(c.reply().status, 200);
        let mut c = Client::connect(addr);
        c.send(b"GET /next HTTP/1.1\r\n\r\n");
        assert_eq!(c.reply().text(), "GET /next  ");
    }

    #[test]
    fn response_headers_cannot_inject_lines_and_silent_peers_are_harmless() {
        let addr = start(limits());
        // A peer that connects and leaves at once.
        drop(TcpStream::connect(addr).expect("connect"));
        let mut c = Client::connect(addr);
        c.send(b"GET /inject HTTP/1.1\r\n\r\n");
        let r = c.reply();
        assert_eq!(r.header("x-inj"), Some("aEvil: 1"));
        assert_eq!(r.header("evil"), None);
    }

    #[test]
    fn burst_of_keep_alive_connections_is_fully_served() {
        const CLIENTS: usize = 200;
        let addr = start(limits());
        let answered = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(CLIENTS));
        let started = Instant::now();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let answered = Arc::clone(&answered);
                let barrier = Arc::clone(&barrier);
                thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn(move || {
                        barrier.wait();
                        let mut c = Client::connect(addr);
                        for j in 0..3 {
                            c.send(format!("GET /b{i}/{j} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                            let r = c.reply_to(false);
                            if r.is_ok_and(|r| r.text() == format!("GET /b{i}/{j}  ")) {
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                    .expect("spawn client")
            })
            .collect();
        for client in clients {
            client.join().expect("client thread");
        }
        assert_eq!(answered.load(Ordering::Relaxed), CLIENTS * 3);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn stalled_clients_do_not_block_others() {
        let addr = start(Limits {
            request_timeout: Duration::from_secs(3),
            ..limits()
        });
        let stalled: Vec<TcpStream> = (0..100)
            .map(|_| {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.write_all(b"GET /sta").expect("send");
                s
            })
            .collect();
        let started = Instant::now();
        let mut c = Client::connect(addr);
        c.send(b"GET /ok HTTP/1.1\r\n\r\n");
        assert_eq!(c.reply().status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        drop(stalled);
    }

    #[test]
    fn dribbled_request_times_out() {
        let addr = start(Limits {
            request_timeout: Duration::from_millis(300),
            ..limits()
        });
        let mut c = Client::connect(addr);
        // The client's own read timeout paces the dribble: one byte per 50 ms, each well
        // within any per-read timeout, but the whole request never completes.
        c.stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let started = Instant::now();
        c.send(b"GET /slow HTTP/1.1\r\n");
        let mut got = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            assert!(started.elapsed() < Duration::from_secs(3), "never closed");
            if c.stream.write_all(b"X").is_err() {
                break;
            }
            match c.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(_) => {}
            }
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
        // The 408 is the handler's answer to `ReadError::Timeout`, with what was read.
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.is_empty() || (got.starts_with("HTTP/1.1 408") && got.ends_with("Timeout /slow")),
            "{got}"
        );
    }

    #[test]
    fn a_slow_reader_cannot_hold_its_thread_past_the_write_deadline() {
        // One connection at a time: the second client is served only once the first one's
        // thread has let go of its place.
        let addr = start(Limits {
            write_timeout: Duration::from_secs(1),
            max_connections: 1,
            ..limits()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicUsize::new(0));
        let mut slow = Client::connect(addr);
        slow.send(b"GET /big HTTP/1.1\r\n\r\n");
        let reader = {
            let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
            thread::spawn(move || {
                // 64 KiB every 50 ms: every single write of the server makes progress well
                // within a second, but the whole response would take about 40 s.
                let mut chunk = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::SeqCst) {
                    match slow.reader.get_mut().read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => received.fetch_add(n, Ordering::SeqCst),
                    };
                    thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let started = Instant::now();
        loop {
            let mut c = Client::connect(addr);
            c.send(b"GET /next HTTP/1.1\r\n\r\n");
            if c.reply_to(false).is_ok_and(|r| r.status == 200) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(6),
                "the slow reader still holds its connection ({} bytes read)",
                received.load(Ordering::SeqCst)
            );
            thread::sleep(Duration::from_millis(100));
        }
        assert!(
            received.load(Ordering::SeqCst) < BIG_BODY,
            "the reader was not slow"
        );
        stop.store(true, Ordering::SeqCst);
        reader.join().expect("reader thread");
    }

    #[test]
    fn accept_failures_back_off_up_to_a_second() {
        assert_eq!(accept_backoff(1), Duration::from_millis(20));
        assert_eq!(accept_backoff(2), Duration::from_millis(40));
        assert_eq!(accept_backoff(6), Duration::from_millis(640));
        assert_eq!(accept_backoff(7), MAX_ACCEPT_BACKOFF);
        assert_eq!(accept_backoff(u32::MAX), MAX_ACCEPT_BACKOFF);
    }

    #[test]
    fn idle_connection_is_closed_silently() {
        let addr = start(Limits {
            idle_timeout: Duration::from_millis(200),
            ..limits()
        });
        let mut c = Client::connect(addr);
        c.send(b"GET /i HTTP/1.1\r\n\r\n");
        assert_eq!(c.reply().status, 200);
        let started = Instant::now();
        c.assert_closed();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }

    #[test]
    fn max_connections_answers_503() {
        let addr = start(Limits {
            max_connections: 2,
            ..limits()
        });
        let mut held: Vec<Client> = (0..2)
            .map(|_| {
                let mut c = Client::connect(addr);
                c.send(b"GET /held HTTP/1.1\r\n\r\n");
                assert_eq!(c.reply().status, 200);
                c
            })
            .collect();
        let mut c = Client::connect(addr);
        let r = c.reply();
        assert_eq!(r.status, 503);
        assert_eq!(r.text(), "overloaded", "the handler's overload reply");
        assert_eq!(r.header("connection"), Some("close"));
        c.assert_closed();

        // Once a held connection goes, its place is free again.
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let mut c = Client::connect(addr);
            c.send(b"GET /free HTTP/1.1\r\n\r\n");
            if c.reply_to(false).is_ok_and(|r| r.status == 200) {
                break;
            }
            assert!(Instant::now() < deadline, "place never freed");
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn parsers() {
        assert_eq!(split_target("/a?b?c"), ("/a", "b?c"));
        assert_eq!(split_target("HTTPS://h"), ("/", ""));
        assert_eq!(split_target("http://h?x=1"), ("/", "x=1"));
        assert_eq!(split_target("*"), ("*", ""));
        assert_eq!(parse_content_length("007"), Some(7));
        assert_eq!(
            parse_content_length("99999999999999999999999"),
            Some(u64::MAX)
        );
        assert_eq!(parse_content_length("+1"), None);
        assert_eq!(parse_chunk_size(b"1aF ; x=y"), Some(0x1af));
        assert_eq!(parse_chunk_size(b" 1"), None);
        assert_eq!(parse_chunk_size(b";x"), None);
        let mut out = Vec::new();
        encode_response(&mut out, &Response::text(204, "gone"), false, true);
        assert_eq!(
            out,
            b"HTTP/1.1 204 No Content\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Connection: keep-alive\r\n\r\n"
        );
    }
}
