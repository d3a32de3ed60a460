//! The DaxPay endpoints. Each endpoint is one file with the same five steps: parse the body,
//! verify the signature, turn the fields into typed input (`wire`), do one store operation, and
//! return typed output, which `respond` wraps in the envelope and signs. This module holds what
//! the endpoints share: the common checks of spec §2 (`signed`) and the one envelope function.

pub mod close;
pub mod nonce;
pub mod pay;
pub mod query;
pub mod refund;
pub mod sandbox;
pub mod sync;

use crate::domain::App;
use crate::error::{
    Error, MSG_APP_DISABLED, MSG_MCH_APP_MISMATCH, MSG_MERCHANT_DISABLED, MSG_NO_APP,
    MSG_NO_MERCHANT, MSG_REQ_IN_FUTURE, MSG_REQ_STALE, MSG_REQ_TIME_MISSING,
};
use crate::gateway::Gateway;
use crate::http::{Request, Response};
use crate::store::ReplyMemo;
use crate::sys::{self, UtcOffset};
use crate::wire::{self, Field, Params, Signer};

/// A request that passed the common checks: its fields, its app, and when it came.
pub struct Call {
    pub params: Params,
    pub app: App,
    pub now: i64,
    /// For a request with a new `nonceStr`: its reply, to be remembered by the store operation
    /// that changes an order, in the same transaction (`nonce`).
    pub memo: Option<ReplyMemo>,
}

/// The outcome of one API request, for the access log.
pub struct Answer {
    pub response: Response,
    pub code: i32,
}

/// Runs a signed endpoint: the common checks of spec §2, then `handler`, then the envelope.
/// `handler` returns the reply's `data` as JSON, or `None` for `null`.
pub fn signed(
    gw: &Gateway,
    req: &Request,
    fields: &'static [Field],
    trace_id: &str,
    handler: impl FnOnce(&Gateway, &Call) -> Result<Option<String>, Error>,
) -> Answer {
    let now = gw.now();
    let mut app = None;
    let call = match check(gw, req, fields, now, &mut app) {
        Ok(call) => call,
        Err(e) => {
            if app.is_none() {
                // The reply is signed whenever the app is known, even if the request failed
                // early.
                app = wire::peek_app_id(&req.body).and_then(|id| gw.store.app(&id).ok().flatten());
            }
            return respond(gw, Err(e), app.as_ref(), now, trace_id);
        }
    };
    // The request-time window comes last. A retry of a request whose nonceStr is remembered
    // gets its first reply even outside the window (`nonce::once` checks the window only for a
    // nonce it has not seen); any other request outside it is refused.
    let window = check_window(&call, now);
    let run = |call: &Call| respond(gw, handler(gw, call), Some(&call.app), now, trace_id);
    // A request with a nonceStr is acted on at most once; its reply is remembered (`nonce`).
    match call.params.common().nonce.map(str::to_string) {
        Some(n) => nonce::once(gw, &req.path, call, &n, trace_id, window, run),
        None => match window {
            Ok(()) => run(&call),
            Err(e) => respond(gw, Err(e), Some(&call.app), now, trace_id),
        },
    }
}

/// Fields → merchant and app → signature (spec §2, in that order); the request-time window,
/// the last check, is `check_window`.
fn check(
    gw: &Gateway,
    req: &Request,
    fields: &'static [Field],
    now: i64,
    app_out: &mut Option<App>,
) -> Result<Call, Error> {
    let params = Params::parse(&req.body, &[wire::COMMON, fields], gw.offset)?;
    let common = params.common();
    let (mch_enabled, app) = gw.store.merchant_and_app(common.mch_no, common.app_id)?;
    *app_out = app.clone();
    let Some(mch_enabled) = mch_enabled else {
        return Err(Error::Config(MSG_NO_MERCHANT));
    };
    let Some(app) = app else {
        return Err(Error::Config(MSG_NO_APP));
    };
    if app.mch_no != common.mch_no {
        return Err(Error::Validation(MSG_MCH_APP_MISMATCH.into()));
    }
    if !mch_enabled {
        return Err(Error::Config(MSG_MERCHANT_DISABLED));
    }
    if !app.enabled {
        return Err(Error::Config(MSG_APP_DISABLED));
    }
    if app.req_sign {
        let given = common.sign.ok_or(Error::BadSign)?;
        if !crate::sign::verify(app.sign_type, &params.sign_pairs(), &app.secret, given) {
            return Err(Error::BadSign);
        }
    }
    Ok(Call {
        params,
        app,
        now,
        memo: None,
    })
}

/// The request-time window of the call's app (spec §2), at `now`.
fn check_window(call: &Call, now: i64) -> Result<(), Error> {
    let (app, params) = (&call.app, &call.params);
    if app.req_timeout_secs > 0 {
        let req_time = params
            .common()
            .req_time
            .ok_or_else(|| Error::Validation(MSG_REQ_TIME_MISSING.into()))?;
        let window = app.req_timeout_secs * 1000;
        if now - req_time > window {
            return Err(Error::Validation(MSG_REQ_STALE.into()));
        }
        if req_time - now > window {
            return Err(Error::Validation(MSG_REQ_IN_FUTURE.into()));
        }
    }
    Ok(())
}

/// Wraps a result in the envelope, signed with `app`'s secret when it is known.
pub fn respond(
    gw: &Gateway,
    result: Result<Option<String>, Error>,
    app: Option<&App>,
    now: i64,
    trace_id: &str,
) -> Answer {
    render(gw.offset, result, app, now, trace_id)
}

/// `respond` without the gateway: the reply is a pure function of its inputs, so that a
/// nonce'd request's reply can be built inside the store transaction of its change and be the
/// very bytes sent.
pub fn render(
    offset: UtcOffset,
    result: Result<Option<String>, Error>,
    app: Option<&App>,
    now: i64,
    trace_id: &str,
) -> Answer {
    let res_time = sys::format_time(now, offset);
    let signer = app.map(|a| Signer {
        sign_type: a.sign_type,
        secret: &a.secret,
    });
    let (code, body) = match &result {
        Ok(data) => (
            0,
            wire::envelope(
                0,
                "success",
                data.as_deref(),
                &res_time,
                trace_id,
                signer.as_ref(),
            ),
        ),
        Err(e) => {
            if let Error::Internal(cause) = e {
                log::error!("trace={trace_id} internal error: {cause}");
            }
            let body = wire::envelope(
                e.code(),
                &e.message(),
                None,
                &res_time,
                trace_id,
                signer.as_ref(),
            );
            (e.code(), body)
        }
    };
    Answer {
        response: Response::json(body),
        code,
    }
}

/// The system-error reply to a request whose handler panicked, signed when its app can be known.
pub fn panic_reply(gw: &Gateway, req: &Request, trace_id: &str) -> Answer {
    let app = wire::peek_app_id(&req.body).and_then(|id| gw.store.app(&id).ok().flatten());
    let err = Error::internal("the handler panicked");
    respond(gw, Err(err), app.as_ref(), gw.now(), trace_id)
}

/// An unsigned envelope for a request no app can be found for (unknown path, bad method, …).
pub fn error_reply(gw: &Gateway, err: Error, trace_id: &str) -> Answer {
    respond(gw, Err(err), None, gw.now(), trace_id)
}
