//! The router: one `match` from method and path to a handler, and the access log.
//!
//! Every request gets a trace id here; its access line (method, path, HTTP status, DaxPay code,
//! time taken, trace id) is written when the answer is ready.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use crate::admin;
use crate::api::{self, Answer};
use crate::error::{
    Error, MSG_BODY_TOO_LARGE, MSG_HEADERS_TOO_LARGE, MSG_OVERLOADED, MSG_REQUEST_TIMEOUT,
};
use crate::form;
use crate::gateway::Gateway;
use crate::http::{Handler, ReadError, Request, Response};
use crate::metrics;
use crate::ops;
use crate::sys;
use crate::wire;

thread_local! {
    /// The trace id of the request this thread is answering, for `on_panic`.
    static TRACE_ID: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The application as the HTTP server sees it.
pub struct Router {
    pub gw: Arc<Gateway>,
}

impl Router {
    fn route(&self, req: &Request, trace_id: &str) -> Answer {
        let gw = &self.gw;
        let post = req.method == "POST";
        // HEAD takes GET's path everywhere (here and in the console); the server sends the
        // headers and the Content-Length of the GET's body, without the body.
        let get = matches!(req.method.as_str(), "GET" | "HEAD");
        let page = |response: Response| Answer { code: 0, response };
        match req.path.as_str() {
            "/unipay/close" if post => {
                api::signed(gw, req, wire::CLOSE, trace_id, api::close::handle)
            }
            "/unipay/pay" if post => {
                api::signed(gw, req, wire::PAY, trace_id, api::pay::handle_pay)
            }
            "/unipay/gateway/prePay" if post => {
                api::signed(gw, req, wire::PRE_PAY, trace_id, api::pay::handle_pre_pay)
            }
            "/unipay/query/payOrder" if post => {
                api::signed(gw, req, wire::QUERY, trace_id, api::query::handle)
            }
            "/unipay/refund" if post => {
                api::signed(gw, req, wire::REFUND, trace_id, api::refund::handle_refund)
            }
            "/unipay/query/refundOrder" if post => api::signed(
                gw,
                req,
                wire::QUERY_REFUND,
                trace_id,
                api::refund::handle_query,
            ),
            "/unipay/sync/order/pay" if post => {
                api::signed(gw, req, wire::SYNC_PAY, trace_id, api::sync::handle_pay)
            }
            "/unipay/sync/order/refund" if post => api::signed(
                gw,
                req,
                wire::QUERY_REFUND,
                trace_id,
                api::sync::handle_refund,
            ),
            "/unipay/close"
            | "/unipay/pay"
            | "/unipay/gateway/prePay"
            | "/unipay/query/payOrder"
            | "/unipay/refund"
            | "/unipay/query/refundOrder"
            | "/unipay/sync/order/pay"
            | "/unipay/sync/order/refund" => method_not_allowed(gw, trace_id),
            "/" if get => page(Response::text(
                200,
                "unipay: a DaxPay-compatible payment gateway\n",
            )),
            "/healthz" if get => page(ops::healthz(gw)),
            "/metrics" if get => page(ops::metrics(gw, req)),
            "/healthz" | "/metrics" => method_not_allowed(gw, trace_id),
            path if path == "/admin" || path.starts_with("/admin/") => page(admin::handle(gw, req)),
            path => {
                let sandbox = gw.sandbox;
                if let Some(refund_no) = path.strip_prefix("/sandbox/refund/").filter(|_| sandbox) {
                    return match post {
                        true => api::sandbox::settle_refund(gw, refund_no, &req.query, trace_id),
                        false => method_not_allowed(gw, trace_id),
                    };
                }
                if let Some(order_no) = path.strip_prefix("/sandbox/pay/").filter(|_| sandbox) {
                    return match post {
                        true => api::sandbox::pay(gw, order_no, trace_id),
                        false => method_not_allowed(gw, trace_id),
                    };
                }
                if let Some(rest) = path.strip_prefix("/callback/") {
                    return callback(gw, req, rest, trace_id);
                }
                if let Some(order_no) = path.strip_prefix("/sandbox/cashier/").filter(|_| sandbox) {
                    return match get {
                        true => page(api::sandbox::cashier(gw, order_no)),
                        false => method_not_allowed(gw, trace_id),
                    };
                }
                not_found(gw, trace_id)
            }
        }
    }
}

/// A number's decimal digits in a buffer of its own: a label value without an allocation.
#[derive(Default)]
struct Digits {
    buf: [u8; 24],
}

impl Digits {
    fn of(&mut self, n: i64) -> &str {
        use std::io::Write as _;
        let mut cursor = std::io::Cursor::new(&mut self.buf[..]);
        let _ = write!(cursor, "{n}");
        let len = cursor.position() as usize;
        std::str::from_utf8(&self.buf[..len]).unwrap_or("")
    }
}

/// The endpoints as the metrics name them: each path of a route, its parameters as `{…}`.
const ENDPOINTS: &[&str] = &[
    "/unipay/close",
    "/unipay/pay",
    "/unipay/gateway/prePay",
    "/unipay/query/payOrder",
    "/unipay/refund",
    "/unipay/query/refundOrder",
    "/unipay/sync/order/pay",
    "/unipay/sync/order/refund",
    "/healthz",
    "/metrics",
    "/",
];

/// The endpoint of a path, for the metrics' `endpoint` label (a bounded set of values).
fn endpoint(path: &str) -> &'static str {
    if let Some(e) = ENDPOINTS.iter().find(|e| **e == path) {
        return e;
    }
    const PREFIXES: &[(&str, &str)] = &[
        ("/sandbox/pay/", "/sandbox/pay/{orderNo}"),
        ("/sandbox/cashier/", "/sandbox/cashier/{orderNo}"),
        ("/sandbox/refund/", "/sandbox/refund/{refundNo}"),
        ("/callback/ali_pay/", "/callback/ali_pay/{appId}"),
        ("/callback/wechat_pay/", "/callback/wechat_pay/{appId}"),
        ("/admin", "/admin"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map_or("other", |(_, label)| label)
}

/// `POST /callback/{channel}/{appId}`: a notification from a channel, answered as the channel
/// wants (its own body, not the DaxPay envelope).
fn callback(gw: &Gateway, req: &Request, rest: &str, trace_id: &str) -> Answer {
    let Some((name, app_id)) = rest.split_once('/') else {
        return not_found(gw, trace_id);
    };
    let app_id = form::decode(app_id, false);
    match gw.channels.get(name) {
        Some(_) if req.method != "POST" => method_not_allowed(gw, trace_id),
        Some(channel) if !app_id.is_empty() && !app_id.contains('/') => Answer {
            code: 0,
            response: channel.callback(&app_id, req),
        },
        _ => not_found(gw, trace_id),
    }
}

fn not_found(gw: &Gateway, trace_id: &str) -> Answer {
    let mut answer = api::error_reply(gw, Error::NoSuchPath, trace_id);
    answer.response.status = 404;
    answer
}

fn method_not_allowed(gw: &Gateway, trace_id: &str) -> Answer {
    let mut answer = api::error_reply(gw, Error::MethodNotAllowed, trace_id);
    answer.response.status = 405;
    answer
}

impl Handler for Router {
    fn handle(&self, req: &Request) -> Response {
        let started = Instant::now();
        let trace_id = sys::random_alnum(self.gw.random.as_ref(), 12);
        // If the handler panics, `on_panic` answers on this thread under this trace id.
        TRACE_ID.with(|t| t.borrow_mut().clone_from(&trace_id));
        let answer = self.route(req, &trace_id);
        let took = started.elapsed();
        let label = endpoint(&req.path);
        let m = metrics::get();
        let (mut status, mut code) = (Digits::default(), Digits::default());
        m.requests.inc(&[
            label,
            status.of(answer.response.status.into()),
            code.of(answer.code.into()),
        ]);
        m.request_seconds.observe(&[label], took);
        log::info!(
            "{} {} {} code={} {:.1}ms trace={}",
            req.method,
            req.path,
            answer.response.status,
            answer.code,
            took.as_secs_f64() * 1000.0,
            trace_id
        );
        answer.response
    }

    fn on_read_error(&self, err: ReadError, req: Option<&Request>) -> Response {
        let trace_id = sys::random_alnum(self.gw.random.as_ref(), 12);
        let error = match err {
            ReadError::BodyTooLarge => Error::Validation(MSG_BODY_TOO_LARGE.into()),
            ReadError::HeadersTooLarge => Error::Validation(MSG_HEADERS_TOO_LARGE.into()),
            ReadError::Malformed => Error::JsonParse("malformed HTTP request".into()),
            ReadError::Timeout => Error::Unavailable(MSG_REQUEST_TIMEOUT),
        };
        // An HTTP-level failure gets its HTTP status (400, 413, 431, 408), unlike a business
        // error (200): the request never reached an endpoint.
        let mut answer = api::error_reply(&self.gw, error, &trace_id);
        answer.response.status = err.status();
        metrics::get().requests.inc(&[
            "unreadable",
            &answer.response.status.to_string(),
            &answer.code.to_string(),
        ]);
        log::info!(
            "{} {} {} code={} rejected={:?} trace={}",
            req.map_or("-", |r| r.method.as_str()),
            req.map_or("-", |r| r.path.as_str()),
            answer.response.status,
            answer.code,
            err,
            trace_id
        );
        answer.response
    }

    /// The unsigned system-error envelope (`Unavailable`) for a connection over the limit (HTTP 503), built on the
    /// accept thread: no store access, only a trace id and the time.
    fn on_overload(&self) -> Response {
        let trace_id = sys::random_alnum(self.gw.random.as_ref(), 12);
        let mut answer = api::error_reply(&self.gw, Error::Unavailable(MSG_OVERLOADED), &trace_id);
        answer.response.status = 503;
        metrics::get()
            .requests
            .inc(&["overloaded", "503", &answer.code.to_string()]);
        log::debug!("- - 503 code={} overloaded trace={}", answer.code, trace_id);
        answer.response
    }

    /// Answers a system error (`Internal`) under the trace id of the request whose handler panicked (the server calls
    /// this on the thread that ran `handle`), signed when the request names a known app.
    fn on_panic(&self, req: &Request) -> Response {
        let mut trace_id = TRACE_ID.with(|t| std::mem::take(&mut *t.borrow_mut()));
        if trace_id.is_empty() {
            trace_id = sys::random_alnum(self.gw.random.as_ref(), 12);
        }
        log::error!("{} {} panicked trace={}", req.method, req.path, trace_id);
        let answer = api::panic_reply(&self.gw, req, &trace_id);
        log::info!(
            "{} {} {} code={} panicked trace={}",
            req.method,
            req.path,
            answer.response.status,
            answer.code,
            trace_id
        );
        answer.response
    }
}
