//! unipay's HTTP/1.1 server on arbitrary bytes from a client: the real `http::serve` on a
//! loopback port, fed one input per connection. A panic in any server thread aborts the process
//! (libFuzzer's panic hook), a request handed to the handler must be within the limits, and the
//! server must answer or close promptly once the client has finished sending.

#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use unipay::http::{self, Handler, Limits, ReadError, Request, Response};

const LIMITS: Limits = Limits {
    max_body: 4096,
    max_header_bytes: 2048,
    max_headers: 16,
    request_timeout: Duration::from_secs(2),
    idle_timeout: Duration::from_secs(2),
    write_timeout: Duration::from_secs(2),
    max_connections: 64,
    max_conns_per_ip: 64,
};

struct Echo;

impl Handler for Echo {
    fn handle(&self, req: &Request) -> Response {
        assert!(req.body.len() <= LIMITS.max_body, "body over the limit");
        assert!(req.headers.len() <= LIMITS.max_headers, "too many headers");
        assert!(
            req.method.bytes().all(|b| b.is_ascii_graphic()),
            "{:?}",
            req.method
        );
        Response::text(
            200,
            &format!("{} {} {}", req.method, req.path, req.body.len()),
        )
    }
    fn on_read_error(&self, err: ReadError, _req: Option<&Request>) -> Response {
        Response::text(400, &format!("{err:?}"))
    }
    fn on_panic(&self, _req: &Request) -> Response {
        panic!("the handler never panics, so on_panic is never called");
    }
}

fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let handle = http::serve(listener, LIMITS, Arc::new(Echo)).expect("serve");
        let addr = handle.local_addr();
        std::mem::forget(handle);
        addr
    })
}

fuzz_target!(|data: &[u8]| {
    let addr = server();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    // The server may stop reading early (a limit, a malformed line): a failed write is fine.
    let _ = s.write_all(data);
    let _ = s.shutdown(Shutdown::Write);
    let started = Instant::now();
    let mut reply = Vec::new();
    match s.read_to_end(&mut reply) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
        Err(e) => panic!("no answer and no close within 3 s after the input ended: {e}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    if !reply.is_empty() {
        assert!(
            reply.starts_with(b"HTTP/1.1 "),
            "{:?}",
            String::from_utf8_lossy(&reply)
        );
    }
});
