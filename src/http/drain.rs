//! A graceful stop: which connections are open, whether each is answering a request or waiting
//! for the next one, and the stop itself.
//!
//! A connection is *idle* from the moment it may wait for a request until the first byte of one
//! arrives; then it is *busy* until its response is written. `Drain::stop` marks the server
//! stopping and shuts the reading side of every idle connection (its thread sees the end of the
//! stream and closes it); a busy one finishes its request, answers it with `Connection: close`
//! and closes. Both changes happen under one lock, so a connection never starts waiting for a
//! request after the stop without seeing it.

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// What a stop found and left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Requests being answered when the stop began.
    pub in_flight: usize,
    /// Of those, requests still not answered at the deadline.
    pub unfinished: usize,
    /// Idle keep-alive connections closed.
    pub idle_closed: usize,
}

/// The open connections of one server.
#[derive(Default)]
pub(super) struct Drain {
    stopping: AtomicBool,
    open: Mutex<Open>,
    changed: Condvar,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    conns: HashMap<u64, Entry>,
}

struct Entry {
    /// The connection's socket, to shut its reading side (`None` once shut). A second handle
    /// (`try_clone`) would cost a file descriptor per connection, which the connection limit
    /// does not count; the `Tracked` is dropped before the socket is closed (it is the first
    /// field of the connection), so the descriptor is open while it is here.
    fd: Option<RawFd>,
    busy: bool,
}

impl Drain {
    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the server is stopping.
    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Adds a new connection (idle); `None` when the server is stopping (close it at once).
    pub(super) fn register(self: &Arc<Self>, stream: &TcpStream) -> Option<Tracked> {
        let mut open = self.lock();
        if self.stopping() {
            return None;
        }
        let id = open.next_id;
        open.next_id += 1;
        open.conns.insert(
            id,
            Entry {
                fd: Some(stream.as_raw_fd()),
                busy: false,
            },
        );
        Some(Tracked {
            drain: Arc::clone(self),
            id,
        })
    }

    /// Begins the stop: no connection waits for another request from now on; idle ones are
    /// closed. `wait` then waits for the busy ones.
    pub(super) fn begin_stop(&self) -> Drained {
        let mut open = self.lock();
        self.stopping.store(true, Ordering::SeqCst);
        let mut drained = Drained::default();
        for entry in open.conns.values_mut() {
            if entry.busy {
                drained.in_flight += 1;
            } else if let Some(fd) = entry.fd.take() {
                // Its thread is waiting for a request: it reads the end of the stream now.
                // SAFETY: the descriptor is open while its entry exists (see `Entry`), and the
                // borrowed stream is never dropped, so it is not closed here.
                let stream = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
                let _ = stream.shutdown(Shutdown::Read);
                drained.idle_closed += 1;
            }
        }
        drained
    }

    /// Waits until no request is being answered or `deadline` passes; completes `drained`.
    pub(super) fn wait(&self, mut drained: Drained, deadline: Instant) -> Drained {
        let mut open = self.lock();
        loop {
            let busy = open.conns.values().filter(|e| e.busy).count();
            let now = Instant::now();
            if busy == 0 || now >= deadline {
                drained.unfinished = busy.min(drained.in_flight);
                return drained;
            }
            open = self
                .changed
                .wait_timeout(open, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// One connection's place in the `Drain`; removed when dropped.
pub(super) struct Tracked {
    drain: Arc<Drain>,
    id: u64,
}

impl Tracked {
    /// The connection may now wait for its next request; false when the server is stopping
    /// (close instead).
    pub(super) fn idle(&self) -> bool {
        let mut open = self.drain.lock();
        if self.drain.stopping() {
            return false;
        }
        if let Some(entry) = open.conns.get_mut(&self.id) {
            entry.busy = false;
        }
        true
    }

    /// A request has started arriving.
    pub(super) fn busy(&self) {
        let mut open = self.drain.lock();
        if let Some(entry) = open.conns.get_mut(&self.id) {
            entry.busy = true;
        }
    }

    /// Whether the server is stopping (the response says `Connection: close`).
    pub(super) fn stopping(&self) -> bool {
        self.drain.stopping()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drain.lock().conns.remove(&self.id);
        self.drain.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;
    use std::thread;
    use std::time::{Duration, Instant};

    use crate::http::test_support::{limits, start_handle, Client};

    /// Waits until `f` holds (a connection's thread has reached the state the test needs).
    fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_stop_finishes_requests_in_flight_closes_idle_connections_and_the_listener() {
        let server = start_handle(limits());
        let addr = server.local_addr();
        // One idle keep-alive connection, after a request.
        let mut idle = Client::connect(addr);
        idle.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(idle.reply().status, 200);
        until("the first connection to wait for its next request", || {
            server.drain.lock().conns.values().all(|e| !e.busy)
        });
        // One request in flight when the stop begins.
        let slow = thread::spawn(move || {
            let mut c = Client::connect(addr);
            c.send(b"GET /slow/400 HTTP/1.1\r\nHost: t\r\n\r\n");
            let reply = c.reply();
            c.assert_closed();
            reply
        });
        until("the slow request to be in flight", || {
            let open = server.drain.lock();
            open.conns.len() == 2 && open.conns.values().any(|e| e.busy)
        });
        let started = Instant::now();
        let drained = server.stop(Instant::now() + Duration::from_secs(5));
        assert_eq!(
            drained,
            super::Drained {
                in_flight: 1,
                unfinished: 0,
                idle_closed: 1
            }
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        let reply = slow.join().unwrap();
        assert_eq!(reply.text(), "slow done");
        assert_eq!(reply.header("connection"), Some("close"));
        idle.assert_closed();
        assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
    }

    #[test]
    fn a_stop_gives_up_on_a_request_at_the_deadline() {
        let server = start_handle(limits());
        let addr = server.local_addr();
        let _slow = thread::spawn(move || {
            let mut c = Client::connect(addr);
            c.send(b"GET /slow/3000 HTTP/1.1\r\nHost: t\r\n\r\n");
            let _ = c.reply_to(false);
        });
        until("the slow request to be in flight", || {
            server.drain.lock().conns.values().any(|e| e.busy)
        });
        let started = Instant::now();
        let drained = server.stop(Instant::now() + Duration::from_millis(300));
        let took = started.elapsed();
        assert_eq!((drained.in_flight, drained.unfinished), (1, 1));
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
