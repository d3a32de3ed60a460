//! One connection, on its own thread: reading requests from the socket and writing responses
//! to it. `serve_connection` loops over the requests of a kept-alive connection, answers each
//! one through the `Handler` with panics caught, and closes (with a bounded linger) after a
//! final response. `Conn` owns the socket, a reused read buffer that grows up to the header
//! limit, and a reused response buffer; it reads a request's head and then its body under hard
//! limits (header bytes and lines, body bytes) and a deadline per request, waits for the next
//! request no longer than the idle timeout, and writes every response before the write
//! deadline. What the bytes mean is decided in `parse.rs`, how a response looks in `encode.rs`;
//! the socket calls under a deadline are in `deadline.rs`.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use super::deadline::{read_deadline, write_deadline};
use super::drain::Tracked;
use super::encode::{encode_response, reason_phrase};
use super::parse::{
    parse_header, parse_request_line, plausible_method, strip_line_end, Chunked, Framing, HeadFacts,
};
use super::{Handler, Limits, ReadError, Request, Response};

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
/// Largest response buffer kept for reuse between responses on one connection.
const MAX_KEPT_OUT: usize = 64 * 1024;
const REPLY_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Why reading stopped short of a complete request.
pub(super) enum Fail {
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

/// A request's head as read: the request without its body, its HTTP version, what its headers
/// say about the body and the connection, and the header bytes it took (its lines are
/// `req.headers`), which a chunked body's trailer counts on from.
struct Head {
    req: Request,
    http10: bool,
    facts: HeadFacts,
    used: usize,
}

/// One connection: its socket, its read buffer and its response buffer.
struct Conn<'a> {
    /// Its place among the server's connections, for a graceful stop. The first field: it is
    /// dropped (the place given up) before the socket is closed.
    tracked: Tracked,
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

/// Serves the requests of one connection, on the calling thread, until it closes.
pub(super) fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    limits: &Limits,
    handler: &dyn Handler,
    tracked: Tracked,
) {
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
        tracked,
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
        // Waiting for a request from here on; after a stop, the connection closes instead.
        if !conn.tracked.idle() {
            return;
        }
        match conn.read_request(wait) {
            Next::Request(req, keep_alive) => {
                let resp = call_handler(handler, &req);
                let keep_alive = keep_alive && !wants_close(&resp) && !conn.tracked.stopping();
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
            let status = err.status();
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

/// Unwraps a read, or returns its failure together with what was read of the request.
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
        // A request is arriving: a stop lets it finish.
        self.tracked.busy();
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

    /// Reads a request line, headers and body, all before `deadline`: the head, then the body
    /// its headers call for.
    fn read_message(&mut self, deadline: Instant) -> Result<(Request, bool), Box<Unread>> {
        let Head {
            mut req,
            http10,
            facts,
            used,
        } = self.read_head(deadline)?;
        let Some(framing) = facts.framing(http10) else {
            fail_with!(ReadError::Malformed, Some(req));
        };
        let keep_alive = facts.keep_alive(http10);
        // A 100 Continue is only useful to an HTTP/1.1 client that has not sent its body yet.
        let send_continue = facts.expects_continue() && !http10 && self.start == self.end;
        let limits = self.limits;
        let chunked = Chunked::new(
            limits.max_body,
            limits.max_header_bytes.saturating_sub(used),
            limits.max_headers.saturating_sub(req.headers.len()),
        );
        let body = self.read_body(framing, chunked, send_continue, deadline);
        req.body = attempt!(body, Some(req));
        Ok((req, keep_alive))
    }

    /// Reads the request line and the headers before `deadline`, together at most
    /// `Limits::max_header_bytes` and `Limits::max_headers` lines; a failure comes with what
    /// was read of the request.
    fn read_head(&mut self, deadline: Instant) -> Result<Head, Box<Unread>> {
        let limits = self.limits;
        let max_head = limits.max_header_bytes;
        let mut used = 0usize;

        // The request line; empty lines before it (sent by some clients after a body) are
        // skipped, within the header budget.
        let line = loop {
            let budget = max_head.saturating_sub(used);
            let (s, e) = attempt!(
                self.read_line(budget, deadline, ReadError::HeadersTooLarge, true),
                None
            );
            used += e - s;
            let line = strip_line_end(&self.buf[s..e]);
            if !line.is_empty() {
                break parse_request_line(line);
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

        let mut facts = HeadFacts::default();
        loop {
            let budget = max_head.saturating_sub(used);
            let (s, e) = attempt!(
                self.read_line(budget, deadline, ReadError::HeadersTooLarge, false),
                Some(req)
            );
            used += e - s;
            let line = strip_line_end(&self.buf[s..e]);
            if line.is_empty() {
                break;
            }
            if req.headers.len() >= limits.max_headers {
                fail_with!(ReadError::HeadersTooLarge, Some(req));
            }
            let Some((name, value)) = parse_header(line) else {
                fail_with!(ReadError::Malformed, Some(req));
            };
            if !facts.note(&name, &value) {
                fail_with!(ReadError::Malformed, Some(req));
            }
            req.headers.push((name, value));
        }
        Ok(Head {
            req,
            http10: line.http10,
            facts,
            used,
        })
    }

    /// Reads the body `framing` calls for, within `Limits::max_body`, before `deadline` (a
    /// chunked one with `chunked`'s counts); first sends a 100 Continue when `send_continue`
    /// and a body is coming.
    fn read_body(
        &mut self,
        framing: Framing,
        chunked: Chunked,
        send_continue: bool,
        deadline: Instant,
    ) -> Result<Vec<u8>, Fail> {
        match framing {
            Framing::None => Ok(Vec::new()),
            Framing::Length(len) => {
                if len > self.limits.max_body as u64 {
                    return Err(Fail::Read(ReadError::BodyTooLarge));
                }
                let len = len as usize;
                if len == 0 {
                    return Ok(Vec::new());
                }
                if send_continue {
                    self.send_continue()?;
                }
                let mut body = vec![0; len];
                self.copy_exact(&mut body, deadline)?;
                Ok(body)
            }
            Framing::Chunked => {
                if send_continue {
                    self.send_continue()?;
                }
                self.read_chunked(chunked, deadline)
            }
        }
    }

    /// Decodes a chunked body: `chunked` judges each line (CRLF endings, sizes and their
    /// extensions, the trailer, within the limits), this reads them and the data.
    fn read_chunked(&mut self, mut chunked: Chunked, deadline: Instant) -> Result<Vec<u8>, Fail> {
        let mut body = Vec::new();
        loop {
            let (s, e) = self.read_line(CHUNK_LINE_MAX, deadline, ReadError::Malformed, false)?;
            let size = chunked.size_line(&self.buf[s..e]).map_err(Fail::Read)?;
            if size == 0 {
                break;
            }
            let old = body.len();
            body.resize(old + size, 0);
            self.copy_exact(&mut body[old..], deadline)?;
            let (s, e) = self.read_line(2, deadline, ReadError::Malformed, false)?;
            Chunked::data_end(&self.buf[s..e]).map_err(Fail::Read)?;
        }
        loop {
            let budget = chunked.trailer_budget();
            let (s, e) = self.read_line(budget, deadline, ReadError::HeadersTooLarge, false)?;
            if chunked.trailer_line(&self.buf[s..e]).map_err(Fail::Read)? {
                return Ok(body);
            }
        }
    }

    /// Takes the next line out of the buffer, reading more as needed; returns the line's range
    /// in `buf`, its LF included (what else ends it is for the caller to judge). A line (with
    /// its ending) longer than `max_len` fails with `too_long`. With `check_method`, input that
    /// cannot start a request line fails at once instead of waiting for a line ending.
    fn read_line(
        &mut self,
        max_len: usize,
        deadline: Instant,
        too_long: ReadError,
        check_method: bool,
    ) -> Result<(usize, usize), Fail> {
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
                self.start = nl + 1;
                return Ok((s, nl + 1));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_support::{limits, start, Client, BIG_BODY};
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;

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
            // Chunked lines end in CRLF; extensions follow the grammar; trailers are fields.
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;a b\r\nab\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;a=\"b\r\nab\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nab\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno field\r\n\r\n",
            // HTTP/1.0 has no transfer codings: refused, and nothing after it is served.
            b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n\
              1\r\nx\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
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
    fn a_chunked_trailer_counts_against_the_header_limits() {
        let addr = start(limits());
        let request = |headers: usize, trailers: usize, pad: usize| {
            let mut r = b"POST /t HTTP/1.1\r\n".to_vec();
            for i in 0..headers {
                r.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
            }
            r.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n2;n=\"v\"\r\nab\r\n0\r\n");
            for i in 0..trailers {
                r.extend_from_slice(format!("X-T{i}: {}\r\n", "p".repeat(pad)).as_bytes());
            }
            r.extend_from_slice(b"\r\n");
            r
        };
        // 14 headers + Transfer-Encoding + 1 trailer line: 16 lines, the limit.
        let mut c = Client::connect(addr);
        c.send(&request(14, 1, 1));
        assert_eq!(c.reply().text(), "POST /t  ab");
        c.send(&request(14, 2, 1));
        let r = c.reply();
        assert_eq!((r.status, r.text()), (431, "HeadersTooLarge /t"));
        c.assert_closed();
        // The trailer's bytes count on from the head's (1024 in all).
        let mut c = Client::connect(addr);
        c.send(&request(0, 1, 900));
        assert_eq!(c.reply().text(), "POST /t  ab");
        c.send(&request(0, 1, 1000));
        assert_eq!(c.reply().status, 431);
        c.assert_closed();
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
}
