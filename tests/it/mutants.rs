//! Tests written to kill mutants that survived `cargo mutants` on the money paths: each one
//! fails when the mutation it names is put back (see TESTING.md). Only what is visible through
//! the running binary is here; the rest are unit tests next to the code.

use std::time::Duration;

use crate::helpers::*;

/// Writes to the server's database from outside, as another process would.
fn db_write(srv: &TestServer, sql: &str, params: impl rusqlite::Params) -> usize {
    let c = rusqlite::Connection::open(&srv.db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute(sql, params).unwrap()
}

fn intents_of(srv: &TestServer, order_no: &str) -> i64 {
    srv.count(
        "SELECT count(*) FROM close_intent i JOIN pay_order o ON o.id = i.order_id
         WHERE o.order_no = ?1",
        order_no,
    )
}

/// The sweeper settles a close intent older than five minutes (its close is dead) and leaves a
/// younger one alone (its close may still be talking to the channel).
/// Kills: `expiry.rs` STALE_INTENT_MS `5 * 60 * 1000` with `+` or `/`, and
/// `recover(&gw, gw.now() - STALE_INTENT_MS)` with `+` or `/`.
#[test]
fn the_sweeper_settles_only_close_intents_older_than_five_minutes() {
    let srv = TestServer::start_with(&["--sweep-interval", "1s"]);
    let app = srv.app("A_MSTALE");
    let order_no = |biz: &str| srv.pay(&app, biz)["orderNo"].as_str().unwrap().to_string();
    let (old, young) = (order_no("B_MSTALE_OLD"), order_no("B_MSTALE_YOUNG"));
    let now = now_ms();
    for (order, age_ms) in [(&old, 6 * 60_000), (&young, 4 * 60_000)] {
        let inserted = db_write(
            &srv,
            "INSERT INTO close_intent (order_id, close_type, actor, client_ip, created_at)
             SELECT id, 'close', 'api', NULL, ?2 FROM pay_order WHERE order_no = ?1",
            rusqlite::params![order, now - age_ms],
        );
        assert_eq!(inserted, 1);
    }
    wait_for("the stale intent to be settled", || {
        (intents_of(&srv, &old) == 0).then_some(())
    });
    // The sandbox trade is still open: the close never happened, and its record says so.
    assert_eq!(srv.close_records(&old), 1);
    assert_eq!(srv.status(&app, "B_MSTALE_OLD"), "progress");

    // One sweep after that settlement: its recovery pass is over, whatever it looked at.
    let marker = srv.pre_pay(&app, "B_MSTALE_MARK");
    let expired = db_write(
        &srv,
        "UPDATE pay_order SET expired_time = ?2 WHERE order_no = ?1",
        rusqlite::params![marker, now_ms() - 1_000],
    );
    assert_eq!(expired, 1);
    wait_for("the sweeper to close the expired order", || {
        (srv.status(&app, "B_MSTALE_MARK") == "close").then_some(())
    });
    assert_eq!(
        intents_of(&srv, &young),
        1,
        "the young intent is left alone"
    );
    assert_eq!(srv.close_records(&young), 0);
    assert_eq!(srv.status(&app, "B_MSTALE_YOUNG"), "progress");
}

/// The sweeper forgets a remembered `nonceStr` reply older than a day and keeps a younger one.
/// Kills: `expiry.rs` `prune_nonces(gw.now() - NONCE_TTL_MS)` with `+` (the young row goes too)
/// or `/` (nothing is ever pruned).
#[test]
fn the_sweeper_forgets_nonce_replies_older_than_a_day_and_only_those() {
    let srv = TestServer::start_with(&["--sweep-interval", "1s"]);
    let app = srv.app("A_MPRUNE");
    let day = 24 * 3600 * 1000;
    let now = now_ms();
    for (nonce, age_ms) in [("N_OLD", day + 60_000), ("N_YOUNG", day - 60_000)] {
        let inserted = db_write(
            &srv,
            "INSERT INTO request_nonce (app_id, nonce, fingerprint, code, trace_id, reply, created_at)
             VALUES (?1, ?2, x'00', 0, 'T', x'7b7d', ?3)",
            rusqlite::params![app.app_id, nonce, now - age_ms],
        );
        assert_eq!(inserted, 1);
    }
    let left =
        |nonce: &str| srv.count("SELECT count(*) FROM request_nonce WHERE nonce = ?1", nonce);
    wait_for("the day-old nonce reply to be pruned", || {
        (left("N_OLD") == 0).then_some(())
    });
    assert_eq!(left("N_YOUNG"), 1, "a reply younger than a day is kept");
}
