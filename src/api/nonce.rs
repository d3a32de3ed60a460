//! Idempotent retries with `nonceStr`.
//!
//! A signed request that passed the checks up to its signature and carries a non-empty
//! `nonceStr` is acted on at most once per app and nonce within `TTL_MS`. The reply of the first
//! request is stored (in `request_nonce`, before it is sent) with a fingerprint of its path and
//! signed fields. A later request with the same nonce and the same fingerprint gets that reply
//! again, byte for byte (same `traceId`, `resTime` and `sign`) and nothing is done, even when its
//! `reqTime` has meanwhile left the app's request-time window (a retry is the same request, so
//! it is as old as the first one); one with another fingerprint gets 10506 naming `nonceStr` and
//! nothing is done. Only a nonce not seen before goes through the window check. Requests with
//! the same key that arrive while the first is still being handled wait for it (`InFlight`), so
//! two of them never both act.
//!
//! A 10500 reply is not remembered: the request did not complete, and a retry with the same
//! nonce is handled anew (the state machine keeps a half-done change from happening twice).
//! Nor is a refusal by the window: the request was never handled.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex};

use sha2::{Digest, Sha256};

use crate::api::{respond, Answer, Call, Gateway};
use crate::error::Error;
use crate::http::Response;
use crate::store::NewNonce;

/// How long a nonce is remembered: 24 hours.
pub const TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// The `(app_id, nonce)` keys whose first request is being handled right now.
#[derive(Default)]
pub struct InFlight {
    keys: Mutex<HashSet<(String, String)>>,
    freed: Condvar,
}

/// A claimed key; dropping it (also when the handler panics) lets the next request in.
struct Claim<'a> {
    owner: &'a InFlight,
    key: (String, String),
}

impl InFlight {
    /// Claims `key`, waiting while another request holds it.
    fn claim(&self, key: (String, String)) -> Claim<'_> {
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

/// The sha256 of `path` and the signed fields of a request (`sign` left out), each part
/// length-prefixed so that no two different requests share an input. The secret is not in it.
pub fn fingerprint(path: &str, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut sorted: Vec<&(&str, &str)> = pairs.iter().filter(|(k, _)| *k != "sign").collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut h = Sha256::new();
    let mut part = |s: &str| {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    };
    part(path);
    for (k, v) in sorted {
        part(k);
        part(v);
    }
    h.finalize().to_vec()
}

/// Answers a request with a verified signature that carries `nonce`: the remembered reply, a
/// 10506 for a reused nonce, the refusal in `window` (the request-time check) for a new nonce
/// outside it, or else `run`'s answer, remembered before it is returned.
pub fn once(
    gw: &Gateway,
    path: &str,
    call: &Call,
    nonce: &str,
    trace_id: &str,
    window: Result<(), Error>,
    run: impl FnOnce() -> Answer,
) -> Answer {
    let app_id = &call.app.app_id;
    let fingerprint = fingerprint(path, &call.params.sign_pairs());
    let _claim = gw.nonces.claim((app_id.clone(), nonce.to_string()));
    let fail = |e: Error| respond(gw, Err(e), Some(&call.app), call.now, trace_id);
    match gw.store.seen_nonce(app_id, nonce, call.now - TTL_MS) {
        Err(e) => return fail(e),
        Ok(Some(seen)) if seen.fingerprint == fingerprint => {
            log::info!(
                "trace={trace_id} app={app_id}: nonceStr seen before, replaying the reply of trace={}",
                seen.trace_id
            );
            return Answer {
                response: Response::json(seen.reply),
                code: seen.code,
            };
        }
        Ok(Some(_)) => return fail(Error::Validation("nonceStr已被使用, 且请求参数不同".into())),
        Ok(None) => {}
    }
    // A new nonce: the request must be fresh. A stale one is refused and not remembered.
    if let Err(e) = window {
        return fail(e);
    }
    let answer = run();
    // 10500: the request did not complete, so it is not remembered (see the module doc).
    if answer.code != 10500 {
        let remembered = gw.store.remember_nonce(NewNonce {
            app_id: app_id.clone(),
            nonce: nonce.to_string(),
            fingerprint,
            code: answer.code,
            trace_id: trace_id.to_string(),
            reply: answer.response.body.clone(),
            now: call.now,
        });
        if let Err(e) = remembered {
            log::error!("trace={trace_id} app={app_id}: cannot remember the nonceStr reply: {e}");
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_order_and_sign_but_not_values_or_path() {
        let a = fingerprint("/p", &[("a", "1"), ("b", "2"), ("sign", "x")]);
        assert_eq!(a, fingerprint("/p", &[("b", "2"), ("a", "1")]));
        assert_ne!(a, fingerprint("/q", &[("a", "1"), ("b", "2")]));
        assert_ne!(a, fingerprint("/p", &[("a", "1"), ("b", "3")]));
        assert_ne!(a, fingerprint("/p", &[("a", "1"), ("b", "2"), ("c", "")]));
        // Case matters here although the signature cannot tell: they are different requests.
        assert_ne!(a, fingerprint("/p", &[("A", "1"), ("b", "2")]));
        // Length prefixes keep `a=12` apart from `a=1, 2…`.
        assert_ne!(
            fingerprint("/p", &[("a", "12")]),
            fingerprint("/p", &[("a", "1"), ("2", "")])
        );
    }

    #[test]
    fn a_claim_waits_for_the_holder() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
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
