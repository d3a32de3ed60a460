//! A set of keys whose work is under way: a request with a `nonceStr` claims its key while it
//! acts (a retry waits for it), a sync or a refund claims its order or refund while it talks to
//! the channel (a second one is told to come back).

use std::collections::HashSet;
use std::sync::{Condvar, Mutex};

/// Keys (an app's nonce, an order, a refund) whose work is under way right now.
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
    /// Claims `key` if nobody holds it; `None` when it is taken.
    pub fn try_claim(&self, key: (String, String)) -> Option<Claim<'_>> {
        let mut keys = self.keys.lock().expect("in-flight lock");
        if !keys.insert(key.clone()) {
            return None;
        }
        Some(Claim { owner: self, key })
    }

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
    use std::sync::Arc;

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
    fn try_claim_does_not_wait() {
        let set = InFlight::default();
        let key = ("A".to_string(), "k".to_string());
        let held = set.try_claim(key.clone()).unwrap();
        assert!(set.try_claim(key.clone()).is_none());
        drop(held);
        assert!(set.try_claim(key).is_some());
    }
}
