//! The HTTP/1.1 layer: it owns the sockets and nothing else.
//!
//! It accepts connections, reads requests with hard limits (header bytes and count, body bytes,
//! time to read a request), answers each through a `Handler`, and keeps connections alive. Every
//! connection has its own thread, so a busy or stalled client can never starve the others (the
//! starvation trap of tiny_http's pool, see ARCHITECTURE.md). Handlers never see a socket: they
//! get a plain `Request` and return a plain `Response`.

mod server;

use std::net::SocketAddr;
use std::time::Duration;

pub use server::{serve, ServerHandle};

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

/// Why a request could not be read; the handler turns it into a reply, then the connection
/// is closed (its remaining bytes cannot be trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The body is longer than `Limits::max_body`.
    BodyTooLarge,
    /// Request line or headers over `Limits::max_header_bytes` / `max_headers`.
    HeadersTooLarge,
    /// Not HTTP/1.x, a bad request line, a bad header, a bad Content-Length, a bad chunk.
    Malformed,
}

/// What a server needs from the application.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Panics are caught by the server and answered with `on_panic`.
    fn handle(&self, req: &Request) -> Response;
    /// Answers a request that could not be read. `req` has what was read (no body).
    fn on_read_error(&self, err: ReadError, req: Option<&Request>) -> Response;
    /// Answers a request whose handler panicked.
    fn on_panic(&self, req: &Request) -> Response;
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
    /// Longest a response write may block.
    pub write_timeout: Duration,
    /// Most connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
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
    };
}
