//! What the server's tests share (test builds only): a `TestHandler` that echoes requests, a
//! server started on a free port with small `limits()`, and a `Client` that speaks raw bytes
//! and reads `Reply`s, so that the tests in `accept.rs` and `conn.rs` drive the real server
//! over real sockets.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::{serve, Handler, Limits, ReadError, Request, Response};

/// Echoes the request; `/panic` panics; read errors map to their usual status codes.
pub(super) struct TestHandler;

impl Handler for TestHandler {
    fn handle(&self, req: &Request) -> Response {
        match req.path.as_str() {
            "/panic" => panic!("test handler panic (expected)"),
            "/inject" => Response::text(200, "x").with_header("X-Inj", "a\r\nEvil: 1".into()),
            "/close" => Response::text(200, "bye").with_header("Connection", "close".into()),
            p if p.starts_with("/slow/") => {
                let ms = p["/slow/".len()..].parse().expect("/slow/MS");
                std::thread::sleep(Duration::from_millis(ms));
                Response::text(200, "slow done")
            }
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
        let status = err.status();
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
pub(super) const BIG_BODY: usize = 48 << 20;

pub(super) fn limits() -> Limits {
    Limits {
        max_body: 1024,
        max_header_bytes: 1024,
        max_headers: 16,
        request_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(2),
        max_connections: 512,
        max_conns_per_ip: 512,
    }
}

pub(super) fn start(limits: Limits) -> SocketAddr {
    start_handle(limits).local_addr()
}

/// A server whose handle the test keeps (to stop it).
pub(super) fn start_handle(limits: Limits) -> super::ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    serve(listener, limits, Arc::new(TestHandler)).expect("serve")
}

pub(super) struct Client {
    pub(super) stream: TcpStream,
    pub(super) reader: BufReader<TcpStream>,
}

impl Client {
    pub(super) fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Client { stream, reader }
    }

    pub(super) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    pub(super) fn reply(&mut self) -> Reply {
        self.reply_to(false).expect("reply")
    }

    /// Reads one response; `head` means there is no body whatever Content-Length says.
    pub(super) fn reply_to(&mut self, head: bool) -> io::Result<Reply> {
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
    pub(super) fn assert_closed(&mut self) {
        let mut rest = [0u8; 64];
        match self.reader.read(&mut rest) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("connection still open: {other:?}"),
        }
    }
}

#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Reply {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }
}
