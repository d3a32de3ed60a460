//! The operations endpoints: `GET /healthz` for load balancers, supervisors and container
//! health checks, and `GET /metrics` for Prometheus.
//!
//! `/healthz` is cheap and writes nothing: it reads one row through a pooled read connection
//! and asks the store how its writer is (`Store::health`). `/metrics` takes the admin token
//! (Bearer) unless the server runs with `--metrics-public`.

use crate::admin;
use crate::gateway::Gateway;
use crate::http::{Request, Response};
use crate::metrics::{self, Gauge};
use crate::wire;

/// `GET /healthz`: 200 when the database answers and the writer commits; 503 with the reason.
pub fn healthz(gw: &Gateway) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    let (status, body) = match gw.store.health() {
        Ok(()) => (200, wire::health_body("ok", version, "ok")),
        Err(why) => {
            log::warn!("health check: {why}");
            (503, wire::health_body("unavailable", version, &why))
        }
    };
    Response::json(body.into_bytes())
        .with_status(status)
        .with_header("Cache-Control", "no-store".into())
}

/// `GET /metrics`: the Prometheus text exposition.
pub fn metrics(gw: &Gateway, req: &Request) -> Response {
    if !gw.metrics_public {
        if let Err(refused) = admin::check_bearer(gw, req, gw.now()) {
            return refused;
        }
    }
    let mut gauges = Vec::new();
    match gw.store.pending_events() {
        Ok(n) => gauges.push(Gauge {
            name: "unipay_notify_pending",
            help: "Notifications waiting to be delivered (the outbox backlog).",
            value: n as f64,
        }),
        Err(e) => log::warn!("metrics: cannot count pending notifications: {e}"),
    }
    gauges.push(Gauge {
        name: "unipay_db_size_bytes",
        help: "Size of the database file and its write-ahead log.",
        value: gw.store.size_bytes() as f64,
    });
    gauges.push(Gauge {
        name: "unipay_up",
        help: "1 while /healthz would answer 200.",
        value: f64::from(u8::from(gw.store.health().is_ok())),
    });
    Response {
        status: 200,
        headers: vec![
            (
                "Content-Type",
                "text/plain; version=0.0.4; charset=utf-8".to_string(),
            ),
            ("Cache-Control", "no-store".to_string()),
        ],
        body: metrics::render(&gauges).into_bytes(),
    }
}
