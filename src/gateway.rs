//! The `Gateway`: what the request handlers, the admin console and the expiry sweeper share
//! (the store, the channels, time and randomness, where the server is reached), and the set of
//! `nonceStr` keys whose first request is being handled.

use std::collections::HashSet;
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
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
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
}
