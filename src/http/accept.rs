//! The accept side of the server: `serve` and its `ServerHandle`, the accept thread, and the
//! connection slots. The accept thread only accepts, counts and hands each connection to a
//! fresh thread of its own (`conn::serve_connection`), so a kept-alive or stalled client can
//! never keep another one waiting; a failing `accept` (out of file descriptors, …) is retried
//! after a growing pause. Past `Limits::max_connections` in all, or `Limits::max_conns_per_ip`
//! from the peer's IP address, the accept thread answers `Handler::on_overload` (a 503) itself,
//! never blocking for long, and closes the socket.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::conn::serve_connection;
use super::drain::{Drain, Drained};
use super::encode::{encode_response, reason_phrase};
use super::{Handler, Limits, Response};

/// Stack size of a connection thread; handlers run on it, so it must not be too small.
const CONN_STACK_SIZE: usize = 512 * 1024;
/// Write timeout for the 503 reply sent from the accept thread, which must never block long.
const REJECT_WRITE_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest pause of the accept loop after a failed `accept` (out of file descriptors, …).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait for the connection that wakes the accept thread at a stop.
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// A running server: its address, its accept thread, and its connections for a stop.
pub struct ServerHandle {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    pub(super) drain: Arc<Drain>,
}

impl ServerHandle {
    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks the calling thread until the accept loop ends (after a `stop`, or never).
    pub fn join(self) {
        if self.accept.join().is_err() {
            log::error!("the HTTP accept thread panicked");
        }
    }

    /// Stops gracefully: the listener is closed at once (new connections are refused), idle
    /// keep-alive connections are closed, and the requests being answered finish (their
    /// responses say `Connection: close`) until `deadline`. Returns what it drained.
    pub fn stop(self, deadline: Instant) -> Drained {
        let drained = self.drain.begin_stop();
        // The accept thread is blocked in `accept`: a connection of our own wakes it, and it
        // sees the stop, drops it and the listener, and ends.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        match TcpStream::connect_timeout(&wake, WAKE_TIMEOUT) {
            Ok(_) => {
                if self.accept.join().is_err() {
                    log::error!("the HTTP accept thread panicked");
                }
            }
            Err(e) => log::warn!("could not wake the accept thread to close the listener: {e}"),
        }
        self.drain.wait(drained, deadline)
    }
}

/// Starts serving on an already bound listener; returns at once (accept loop on its own thread).
///
/// Every accepted connection gets its own thread, at most `limits.max_connections` at once and
/// `limits.max_conns_per_ip` from one IP address; the connections past either are answered
/// `503` and closed by the accept thread.
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    handler: Arc<dyn Handler>,
) -> io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(false)?;
    let limits = Arc::new(limits);
    let drain = Arc::new(Drain::default());
    let accept_drain = Arc::clone(&drain);
    let accept = thread::Builder::new()
        .name("http-accept".to_string())
        .spawn(move || accept_loop(listener, limits, handler, accept_drain))?;
    Ok(ServerHandle {
        addr,
        accept,
        drain,
    })
}

/// The connections open now: in all, and per peer IP address (an address is in the map only
/// while it has a connection, so the map holds at most `max_connections` entries).
struct Places {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Places {
    fn new(limits: &Limits) -> Places {
        Places {
            max_total: limits.max_connections,
            max_per_ip: limits.max_conns_per_ip,
            open: Mutex::new(Open::default()),
        }
    }

    /// Takes a place for a connection from `ip`; `None` when it is over either bound.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        // An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 address.
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.max_total {
            return None;
        }
        let from_ip = open.per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return None;
        }
        *from_ip += 1;
        open.total += 1;
        Some(Slot {
            places: Arc::clone(self),
            ip,
        })
    }
}

/// Holds one place (in all and for its address); gives it back when the connection thread
/// ends.
struct Slot {
    places: Arc<Places>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .places
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total -= 1;
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// How long the accept loop pauses after `failures` failed accepts in a row: 20 ms, doubling,
/// at most `MAX_ACCEPT_BACKOFF`.
fn accept_backoff(failures: u32) -> Duration {
    Duration::from_millis(10u64 << failures.min(7)).min(MAX_ACCEPT_BACKOFF)
}

fn accept_loop(
    listener: TcpListener,
    limits: Arc<Limits>,
    handler: Arc<dyn Handler>,
    drain: Arc<Drain>,
) {
    let places = Arc::new(Places::new(&limits));
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
        // After a stop: the listener is closed when this loop ends.
        let Some(tracked) = drain.register(&stream) else {
            return;
        };
        let Some(slot) = places.take(peer.ip()) else {
            log::debug!("too many connections (in all or from {peer}'s address); answering 503");
            reject(stream, &*handler, &mut reject_buf);
            continue;
        };
        let conn_limits = Arc::clone(&limits);
        let conn_handler = Arc::clone(&handler);
        let spawned = thread::Builder::new()
            .name("http-conn".to_string())
            .stack_size(CONN_STACK_SIZE)
            .spawn(move || {
                let _slot = slot;
                serve_connection(stream, peer, &conn_limits, &*conn_handler, tracked);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_support::{limits, start, Client};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::time::Instant;

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
    fn accept_failures_back_off_up_to_a_second() {
        assert_eq!(accept_backoff(1), Duration::from_millis(20));
        assert_eq!(accept_backoff(2), Duration::from_millis(40));
        assert_eq!(accept_backoff(6), Duration::from_millis(640));
        assert_eq!(accept_backoff(7), MAX_ACCEPT_BACKOFF);
        assert_eq!(accept_backoff(u32::MAX), MAX_ACCEPT_BACKOFF);
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
    fn places_are_bounded_in_all_and_per_address() {
        let places = Arc::new(Places::new(&Limits {
            max_connections: 3,
            max_conns_per_ip: 2,
            ..limits()
        }));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let a_v6: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = places.take(a).expect("first from a");
        let a2 = places.take(a_v6).expect("second from a, seen as IPv6");
        assert!(places.take(a).is_none(), "a third from a");
        let b1 = places.take(b).expect("first from b");
        assert!(places.take(b).is_none(), "over the total");
        drop(a1);
        let b2 = places.take(b).expect("b, once a place is free");
        drop((a2, b1, b2));
        let open = places.open.lock().unwrap();
        assert_eq!(open.total, 0);
        assert!(
            open.per_ip.is_empty(),
            "addresses without connections are forgotten"
        );
    }

    #[test]
    fn max_conns_per_ip_answers_503() {
        let addr = start(Limits {
            max_conns_per_ip: 2,
            ..limits()
        });
        let mut held: Vec<Client> = (0..2).map(|_| Client::connect(addr)).collect();
        // Idle connections hold their places: the third from this address is refused at once.
        let mut c = Client::connect(addr);
        let r = c.reply();
        assert_eq!(r.status, 503);
        assert_eq!(r.text(), "overloaded", "the handler's overload reply");
        c.assert_closed();
        for c in &mut held {
            c.send(b"GET /held HTTP/1.1\r\n\r\n");
            assert_eq!(c.reply().status, 200);
        }
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
}
