//! The `Gateway`: what the request handlers, the admin console and the expiry sweeper share
//! (the store, the channels, time and randomness, where the server is reached), and the set of
//! `nonceStr` keys whose first request is being handled.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};

use crate::channel::Channels;
use crate::store::Store;
use crate::sys::{Clock, Random, UtcOffset};

/// Everything a request handler needs: the store, the channels, time and randomness.
pub struct Gateway {
    pub store: Arc<Store>,
    pub channels: Channels,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub offset: UtcOffset,
    /// Where this server is reached, for links it hands out (`http://127.0.0.1:9999`).
    pub base_url: String,
    /// The `nonceStr` keys whose first request is being handled.
    pub nonces: InFlight,
    /// Whether the sandbox channel's payer pages are served (`serve --no-sandbox` turns them
    /// off).
    pub sandbox: bool,
    /// Failed console logins per client address.
    pub logins: Throttle,
}

impl Gateway {
    pub fn new(
        store: Arc<Store>,
        channels: Channels,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        base_url: String,
    ) -> Gateway {
        let offset = store.offset();
        Gateway {
            store,
            channels,
            clock,
            random,
            offset,
            base_url,
            nonces: InFlight::default(),
            sandbox: true,
            logins: Throttle::new(LOGIN_FAILURES, LOGIN_WINDOW_MS),
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// Failed console logins one client address may make in `LOGIN_WINDOW_MS`.
pub const LOGIN_FAILURES: u32 = 10;
/// The window of `LOGIN_FAILURES`: a minute.
pub const LOGIN_WINDOW_MS: i64 = 60_000;

/// Failures per client address in fixed windows: after `max` in one window, the address waits
/// for the rest of it (whatever it sends, the right answer too).
pub struct Throttle {
    max: u32,
    window_ms: i64,
    /// Address → (start of its window, failures in it).
    seen: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl Throttle {
    pub fn new(max: u32, window_ms: i64) -> Throttle {
        Throttle {
            max,
            window_ms,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The seconds `ip` must still wait at `now`, or `None` when it may try.
    pub fn blocked(&self, ip: IpAddr, now: i64) -> Option<u64> {
        let seen = self.seen.lock().expect("throttle lock");
        let &(start, failures) = seen.get(&ip)?;
        let left = start + self.window_ms - now;
        (failures >= self.max && left > 0).then(|| (left as u64).div_ceil(1000))
    }

    /// Counts a failure of `ip` at `now`.
    pub fn failed(&self, ip: IpAddr, now: i64) {
        let mut seen = self.seen.lock().expect("throttle lock");
        if seen.len() > 10_000 {
            // Forget the windows that are over, so that many addresses cannot grow the map.
            seen.retain(|_, (start, _)| now - *start < self.window_ms);
        }
        let entry = seen.entry(ip).or_insert((now, 0));
        if now - entry.0 >= self.window_ms || now < entry.0 {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

/// The `(app_id, nonce)` keys whose first request is being handled right now.
#[derive(Default)]
pub struct InFlight {
    keys: Mutex<HashSet<(String, String)>>,
    freed: Condvar,
}

/// A claimed key; dropping it (also when the handler panics) lets the next request in.
pub struct Claim<'a> {
    owner: &'a InFlight,
    key: (String, String),
}

impl InFlight {
    /// Claims `key`, waiting while another request holds it.
    pub fn claim(&self, key: (String, String)) -> Claim<'_> {
        let mut keys = self.keys.lock().expect("nonce lock");
        while keys.contains(&key) {
            keys = self.freed.wait(keys).expect("nonce lock");
        }
        keys.insert(key.clone());
        Claim { owner: self, key }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        // A poisoned lock only means another thread panicked while holding it; the set is
        // still consistent, so the key is removed regardless.
        let mut keys = match self.owner.keys.lock() {
            Ok(k) => k,
            Err(poisoned) => poisoned.into_inner(),
        };
        keys.remove(&self.key);
        self.owner.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_waits_for_the_holder() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let inflight = Arc::new(InFlight::default());
        let released = Arc::new(AtomicBool::new(false));
        let key = ("A".to_string(), "n".to_string());
        let held = inflight.claim(key.clone());
        let waiter = {
            let (inflight, released, key) = (inflight.clone(), released.clone(), key.clone());
            std::thread::spawn(move || {
                let _c = inflight.claim(key);
                assert!(released.load(Ordering::SeqCst), "claimed while held");
            })
        };
        // Another key is free meanwhile.
        drop(inflight.claim(("A".to_string(), "other".to_string())));
        std::thread::sleep(std::time::Duration::from_millis(50));
        released.store(true, Ordering::SeqCst);
        drop(held);
        waiter.join().unwrap();
    }

    #[test]
    fn a_throttle_blocks_for_the_rest_of_its_window() {
        let t = Throttle::new(3, 60_000);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for i in 0..3 {
            assert_eq!(t.blocked(a, 1_000 + i), None);
            t.failed(a, 1_000 + i);
        }
        assert_eq!(t.blocked(a, 1_003), Some(60));
        assert_eq!(t.blocked(a, 60_500), Some(1));
        assert_eq!(t.blocked(b, 1_003), None, "another address is not held up");
        assert_eq!(t.blocked(a, 61_000), None, "a new window");
        t.failed(a, 61_000);
        assert_eq!(t.blocked(a, 61_001), None);
    }
}
