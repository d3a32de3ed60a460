//! The DaxPay endpoints. Each endpoint is one file with the same five steps: parse the body,
//! verify the signature, turn the fields into typed input, do one store operation, and return
//! typed output, which `respond` wraps in the envelope and signs. This module holds what the
//! endpoints share: the `Gateway` (everything a handler needs), the common checks of spec §2,
//! and the one envelope function.

pub mod close;
pub mod nonce;
pub mod pay;
pub mod query;
pub mod sandbox;

use std::sync::Arc;

use crate::channel::Channels;
use crate::domain::App;
use crate::error::Error;
use crate::http::{Request, Response};
use crate::store::Store;
use crate::sys::{self, Clock, Random, UtcOffset};
use crate::wire::{self, Field, Params, Signer};

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
    pub nonces: nonce::InFlight,
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
            nonces: nonce::InFlight::default(),
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// A request that passed the common checks: its fields, its app, and when it came.
pub struct Call {
    pub params: Params,
    pub app: App,
    pub now: i64,
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
    let run = || respond(gw, handler(gw, &call), Some(&call.app), now, trace_id);
    // A request with a nonceStr is acted on at most once; its reply is remembered (`nonce`).
    match call.params.non_empty("nonceStr") {
        Some(n) => nonce::once(gw, &req.path, &call, n, trace_id, window, run),
        None => match window {
            Ok(()) => run(),
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
    let mch_no = params.str("mchNo").unwrap_or_default();
    let app_id = params.str("appId").unwrap_or_default();
    let (mch_enabled, app) = gw.store.merchant_and_app(mch_no, app_id)?;
    *app_out = app.clone();
    let Some(mch_enabled) = mch_enabled else {
        return Err(Error::Config("未找到指定的商户配置"));
    };
    let Some(app) = app else {
        return Err(Error::Config("未找到指定的应用配置"));
    };
    if app.mch_no != mch_no {
        return Err(Error::Validation("商户号与应用不匹配".into()));
    }
    if !mch_enabled {
        return Err(Error::Config("商户未启用"));
    }
    if !app.enabled {
        return Err(Error::Config("商户应用未启用"));
    }
    if app.req_sign {
        let given = params
            .str("sign")
            .filter(|s| !s.is_empty())
            .ok_or(Error::BadSign)?;
        if !crate::sign::verify(app.sign_type, &params.sign_pairs(), &app.secret, given) {
            return Err(Error::BadSign);
        }
    }
    Ok(Call { params, app, now })
}

/// The request-time window of the call's app (spec §2), at `now`.
fn check_window(call: &Call, now: i64) -> Result<(), Error> {
    let (app, params) = (&call.app, &call.params);
    if app.req_timeout_secs > 0 {
        let req_time = params
            .time_ms("reqTime")
            .ok_or_else(|| Error::Validation("请求时间必填".into()))?;
        let window = app.req_timeout_secs * 1000;
        if now - req_time > window {
            return Err(Error::Validation("请求已过期，请重新发送！".into()));
        }
        if req_time - now > window {
            return Err(Error::Validation(
                "请求时间晚于服务器接收到的时间，请检查".into(),
            ));
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
    let res_time = sys::format_time(now, gw.offset);
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

/// The 10500 reply to a request whose handler panicked, signed when its app can be known.
pub fn panic_reply(gw: &Gateway, req: &Request, trace_id: &str) -> Answer {
    let app = wire::peek_app_id(&req.body).and_then(|id| gw.store.app(&id).ok().flatten());
    let err = Error::internal("the handler panicked");
    respond(gw, Err(err), app.as_ref(), gw.now(), trace_id)
}

/// An unsigned envelope for a request no app can be found for (unknown path, bad method, …).
pub fn error_reply(gw: &Gateway, err: Error, trace_id: &str) -> Answer {
    respond(gw, Err(err), None, gw.now(), trace_id)
}
