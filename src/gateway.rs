//! The `Gateway`: what the request handlers, the admin console and the expiry sweeper share
//! (the store, the channels, time and randomness, where the server is reached), and the set of
//! `nonceStr` keys whose first request is being handled, the work in flight at channels, and the
//! console's login throttle.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::channel::Channels;
use crate::inflight::InFlight;
use crate::stop::Stop;
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
    /// The orders and refunds a sync or a refund is talking to its channel about.
    pub busy: InFlight,
    /// The graceful stop of the background threads.
    pub stop: Arc<Stop>,
    /// Whether `/metrics` is served without the admin token.
    pub metrics_public: bool,
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
            busy: InFlight::default(),
            stop: Stop::new(),
            metrics_public: false,
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

#[cfg(test)]
mod tests {
    use super::*;

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
