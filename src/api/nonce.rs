//! Idempotent retries with `nonceStr`.
//!
//! A signed request that passed the checks up to its signature and carries a non-empty
//! `nonceStr` is acted on at most once per app and nonce within `NONCE_TTL_MS` (24 h). The
//! reply of the first request is stored (in `request_nonce`, before it is sent) with a
//! fingerprint of its path and signed fields. A later request with the same nonce and the same
//! fingerprint gets that reply again, byte for byte (same `traceId`, `resTime` and `sign`) and
//! nothing is done, even when its `reqTime` has meanwhile left the app's request-time window (a
//! retry is the same request, so it is as old as the first one); one with another fingerprint
//! gets 10506 naming `nonceStr` and nothing is done. Only a nonce not seen before goes through
//! the window check. Requests with the same key that arrive while the first is still being
//! handled wait for it (`gateway::InFlight`), so two of them never both act.
//!
//! A system-error reply (`CODE_SYSTEM_ERROR`) is not remembered: the request did not complete,
//! and a retry with the same nonce is handled anew (the state machine keeps a half-done change
//! from happening twice). Nor is a refusal by the window: the request was never handled.

use sha2::{Digest, Sha256};

use std::sync::Arc;

use crate::api::{render, respond, Answer, Call};
use crate::domain::NONCE_TTL_MS;
use crate::error::{Error, CODE_SYSTEM_ERROR, MSG_NONCE_REUSED};
use crate::gateway::Gateway;
use crate::http::Response;
use crate::sign::SIGN_FIELD;
use crate::store::{NewNonce, ReplyMemo};

/// The sha256 of `path` and the signed fields of a request (`sign` left out), each part
/// length-prefixed so that no two different requests share an input. The secret is not in it.
pub fn fingerprint(path: &str, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut sorted: Vec<&(&str, &str)> = pairs.iter().filter(|(k, _)| *k != SIGN_FIELD).collect();
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
    mut call: Call,
    nonce: &str,
    trace_id: &str,
    window: Result<(), Error>,
    run: impl FnOnce(&Call) -> Answer,
) -> Answer {
    let app_id = call.app.app_id.clone();
    let app_id = &app_id;
    let fingerprint = fingerprint(path, &call.params.sign_pairs());
    let _claim = gw.nonces.claim((app_id.clone(), nonce.to_string()));
    let fail = |e: Error| respond(gw, Err(e), Some(&call.app), call.now, trace_id);
    match gw.store.seen_nonce(app_id, nonce, call.now - NONCE_TTL_MS) {
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
        Ok(Some(_)) => return fail(Error::Validation(MSG_NONCE_REUSED.into())),
        Ok(None) => {}
    }
    // A new nonce: the request must be fresh. A stale one is refused and not remembered.
    if let Err(e) = window {
        return fail(e);
    }
    // The reply as the store operation that changes an order remembers it, in its transaction.
    let (offset, app, now, trace) = (gw.offset, call.app.clone(), call.now, trace_id.to_string());
    let memo = ReplyMemo::new(
        app_id.clone(),
        nonce.to_string(),
        fingerprint.clone(),
        trace_id.to_string(),
        call.now,
        Arc::new(move |result| {
            let answer = render(offset, result, Some(&app), now, &trace);
            (answer.code, answer.response.body)
        }),
    );
    call.memo = Some(memo.clone());
    let answer = run(&call);
    // Already remembered with the change it made; or a system error: the request did not
    // complete, so it is not remembered (see the module doc).
    if !memo.stored() && answer.code != CODE_SYSTEM_ERROR {
        let remembered = gw.store.remember_nonce(NewNonce {
            app_id: app_id.clone(),
            nonce: nonce.to_string(),
            fingerprint,
            code: answer.code,
            trace_id: trace_id.to_string(),
            reply: answer.response.body.clone(),
            now: call.now,
        });
        match remembered {
            Ok(()) => {}
            // A full disk is logged by the store, once.
            Err(e) if e.is_store_full() => log::debug!(
                "trace={trace_id} app={app_id}: the nonceStr reply is not remembered: {e}"
            ),
            Err(e) => log::error!(
                "trace={trace_id} app={app_id}: cannot remember the nonceStr reply: {e}"
            ),
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
}
