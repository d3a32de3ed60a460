//! The stop of the background threads (notifier, sweeper) at a graceful shutdown.
//!
//! A thread asks `work` before each piece of work it starts (a notification attempt, a sweep)
//! and holds the `Busy` guard while doing it; after `set`, `work` says no, and `wait_idle`
//! waits for the pieces already started. `sleep` is a pause that a stop cuts short.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Whether the process is stopping, and how much background work is under way.
#[derive(Default)]
pub struct Stop {
    stopping: AtomicBool,
    busy: Mutex<usize>,
    changed: Condvar,
    /// Pieces of work finished after the stop began.
    finished_after: AtomicUsize,
}

/// One piece of background work under way; finished when dropped.
pub struct Busy {
    stop: Arc<Stop>,
}

impl Stop {
    pub fn new() -> Arc<Stop> {
        Arc::new(Stop::default())
    }

    pub fn is_set(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Begins the stop: no new work; sleepers wake.
    pub fn set(&self) {
        let _busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        self.stopping.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// Starts a piece of work; `None` once the stop began.
    pub fn work(self: &Arc<Self>) -> Option<Busy> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_set() {
            return None;
        }
        *busy += 1;
        Some(Busy {
            stop: Arc::clone(self),
        })
    }

    /// Sleeps `d`, or less when the stop begins; true when stopping.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            if self.is_set() || now >= deadline {
                return self.is_set();
            }
            busy = self
                .changed
                .wait_timeout(busy, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until no work is under way or `deadline` passes. Returns the pieces of work
    /// finished since the stop began and those still under way.
    pub fn wait_idle(&self, deadline: Instant) -> (usize, usize) {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            if *busy == 0 || now >= deadline {
                return (self.finished_after.load(Ordering::SeqCst), *busy);
            }
            busy = self
                .changed
                .wait_timeout(busy, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut busy = self
            .stop
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *busy -= 1;
        if self.stop.is_set() {
            self.stop.finished_after.fetch_add(1, Ordering::SeqCst);
        }
        self.stop.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn a_stop_refuses_new_work_wakes_sleepers_and_waits_for_work_under_way() {
        let stop = Stop::new();
        let busy = stop.work().expect("work before the stop");
        let sleeper = {
            let stop = stop.clone();
            thread::spawn(move || {
                let t0 = Instant::now();
                (stop.sleep(Duration::from_secs(30)), t0.elapsed())
            })
        };
        let finisher = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            drop(busy);
        });
        stop.set();
        assert!(stop.work().is_none());
        let (stopped, slept) = sleeper.join().unwrap();
        assert!(stopped && slept < Duration::from_secs(5), "{slept:?}");
        let (finished, left) = stop.wait_idle(Instant::now() + Duration::from_secs(5));
        assert_eq!((finished, left), (1, 0));
        finisher.join().unwrap();
        // Work that outlives the deadline is reported.
        let stop = Stop::new();
        let _held = stop.work().unwrap();
        stop.set();
        assert_eq!(
            stop.wait_idle(Instant::now() + Duration::from_millis(50)),
            (0, 1)
        );
        assert!(!Stop::new().sleep(Duration::from_millis(1)));
    }
}
