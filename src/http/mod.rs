//! The HTTP/1.1 layer: it owns the sockets and nothing else.
//!
//! It accepts connections, reads requests with hard limits (header bytes and count, body bytes,
//! time to read a request), answers each through a `Handler`, and keeps connections alive. Every
//! connection has its own thread, so a busy or stalled client can never starve the others (the
//! starvation trap of tiny_http's pool, see ARCHITECTURE.md). Handlers never see a socket: they
//! get a plain `Request` and return a plain `Response`.
//!
//! This file has what the application sees (`Request`, `Response`, `Handler`, `ReadError`,
//! `Limits`, and `serve` re-exported). The rest, by seam: `accept.rs` (`serve`, the accept
//! thread, connection slots in all and per client address, the overload 503, a stop), `drain.rs`
//! (which connections are busy or idle, for a graceful stop), `conn.rs` (one connection: reading a request's
//! head and body, writing responses, keep-alive, linger), `deadline.rs` (socket reads and writes
//! under a deadline), `parse.rs` (request line, headers, framing, the lines of a chunked body:
//! bytes in, values out, no I/O) and `encode.rs` (a `Response` to bytes). Nothing here uses the rest of the crate.

mod accept;
mod conn;
mod deadline;
mod drain;
mod encode;
mod parse;
#[cfg(test)]
mod test_support;

use std::net::SocketAddr;
use std::time::Duration;

pub use accept::{serve, ServerHandle};
pub use drain::Drained;

/// A request as the handlers see it: fully read, within the limits.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path without the query string, not percent-decoded.
    pub path: String,
    /// The raw query string after `?`, empty when there is none.
    pub query: String,
    /// Header names are lower-cased; values are trimmed.
    pub headers: Vec<(String, String)>,
    pub remote_addr: SocketAddr,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response as the handlers build it; the server adds `Content-Length` and `Connection`.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(body: Vec<u8>) -> Response {
        Response {
            status: 200,
            headers: vec![("Content-Type", "application/json;charset=UTF-8".to_string())],
            body,
        }
    }

    pub fn html(body: String) -> Response {
        Response {
            status: 200,
            headers: vec![("Content-Type", "text/html; charset=utf-8".to_string())],
            body: body.into_bytes(),
        }
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".to_string())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn with_status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}

/// Why a request could not be read; the handler turns it into a reply (with the `status` given
/// here, as a rule), then the connection is closed (its remaining bytes cannot be trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The body is longer than `Limits::max_body`.
    BodyTooLarge,
    /// Request line, headers and a chunked body's trailer over `Limits::max_header_bytes` /
    /// `max_headers`.
    HeadersTooLarge,
    /// Not HTTP/1.x, a bad request line, a bad header, a bad Content-Length, a bad chunk (a
    /// line not ending in CRLF, a bad size or extension, a trailer line that is no field), a
    /// transfer coding in an HTTP/1.0 request.
    Malformed,
    /// The request started but was not received within `Limits::request_timeout`.
    Timeout,
}

impl ReadError {
    /// The HTTP status that answers it: 413, 431, 400 or 408.
    pub fn status(self) -> u16 {
        match self {
            ReadError::BodyTooLarge => 413,
            ReadError::HeadersTooLarge => 431,
            ReadError::Malformed => 400,
            ReadError::Timeout => 408,
        }
    }
}

/// What a server needs from the application.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Panics are caught by the server and answered with `on_panic`.
    fn handle(&self, req: &Request) -> Response;
    /// Answers a request that could not be read. `req` has what was read (no body).
    fn on_read_error(&self, err: ReadError, req: Option<&Request>) -> Response;
    /// Answers a request whose handler panicked.
    fn on_panic(&self, req: &Request) -> Response;
    /// The reply to a connection over `Limits::max_connections` or `Limits::max_conns_per_ip`,
    /// sent by the accept thread before the connection is closed (nothing of the request is
    /// read). It must be quick.
    fn on_overload(&self) -> Response {
        Response::text(503, "Server is overloaded")
    }
}

/// The bounds every connection lives within.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body in bytes.
    pub max_body: usize,
    /// Largest request line plus headers in bytes.
    pub max_header_bytes: usize,
    /// Most header lines in one request.
    pub max_headers: usize,
    /// Longest time to receive one request's line, headers and body once its first byte came.
    pub request_timeout: Duration,
    /// Longest a kept-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Longest time to write one response, all of it, however slowly the client reads (zero:
    /// no limit).
    pub write_timeout: Duration,
    /// Most connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Most connections served at once from one client IP address; more from it are answered
    /// 503 and closed, so that one client cannot take all of `max_connections`.
    pub max_conns_per_ip: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_body: 64 * 1024,
        max_header_bytes: 16 * 1024,
        max_headers: 64,
        request_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        write_timeout: Duration::from_secs(10),
        max_connections: 1024,
        max_conns_per_ip: 256,
    };

    /// These limits with `max_connections` lowered, when needed, to fit the process's soft
    /// open-file limit (`RLIMIT_NOFILE`, read from `/proc/self/limits`) minus `FD_RESERVE`:
    /// every connection holds a file descriptor, and running out of them would make `accept`
    /// fail (EMFILE) before an over-limit connection could be answered 503. Also returns the
    /// soft limit that was read (`None`: unlimited or unknown).
    pub fn within_open_files(self) -> (Limits, Option<u64>) {
        let soft = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| soft_open_files(&text));
        (self.within(soft), soft)
    }

    /// These limits with `max_connections` fitted to a soft open-file limit of `soft`.
    pub fn within(mut self, soft: Option<u64>) -> Limits {
        if let Some(soft) = soft {
            let bound = soft.saturating_sub(FD_RESERVE).max(MIN_CONNECTIONS as u64);
            self.max_connections = self
                .max_connections
                .min(usize::try_from(bound).unwrap_or(usize::MAX));
        }
        self
    }
}

/// File descriptors kept free of connections: SQLite's files (the writer's and the read
/// connections'), notification and channel sockets, the listener, standard streams.
pub const FD_RESERVE: u64 = 64;

/// The fewest connections the open-file bound ever leaves, however low the limit.
pub const MIN_CONNECTIONS: usize = 8;

/// The soft limit of the `Max open files` line of a `/proc/PID/limits` text; `None` when the
/// line is missing or the limit is `unlimited`.
pub fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max open files            1024                 524288               files     
Max locked memory         8388608              8388608              bytes     
";

    #[test]
    fn the_soft_open_file_limit_bounds_max_connections() {
        assert_eq!(soft_open_files(PROC_LIMITS), Some(1024));
        assert_eq!(
            soft_open_files(
                "Max open files            unlimited            unlimited            files"
            ),
            None
        );
        assert_eq!(soft_open_files("Max processes 10 10 processes"), None);
        let d = Limits::DEFAULT;
        assert_eq!(d.clone().within(Some(1024)).max_connections, 1024 - 64);
        assert_eq!(d.clone().within(Some(128)).max_connections, 64);
        assert_eq!(d.clone().within(Some(1_048_576)).max_connections, 1024);
        assert_eq!(d.clone().within(Some(10)).max_connections, MIN_CONNECTIONS);
        assert_eq!(d.clone().within(None).max_connections, 1024);
        // This process's own limit is read (Linux).
        let (_, soft) = d.within_open_files();
        if std::path::Path::new("/proc/self/limits").exists() {
            let text = std::fs::read_to_string("/proc/self/limits").unwrap();
            assert_eq!(soft, soft_open_files(&text));
        }
    }
}
