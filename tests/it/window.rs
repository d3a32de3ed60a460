//! The request-time window (spec §2): stale and future `reqTime` are refused with DaxPay's
//! messages, read in the `--tz-offset` zone.

use serde_json::{json, Value};

use crate::helpers::*;
use unipay::sys::{self, UtcOffset};

const EXPIRED: &str = "请求已过期，请重新发送！";
const FUTURE: &str = "请求时间晚于服务器接收到的时间，请检查";

#[test]
fn window_of_30_seconds_refuses_stale_and_future_requests() {
    let srv = TestServer::start();
    let app = srv.create_app("M_WIN", "A_WIN", &["--req-timeout", "30"]);
    srv.pay(&app, "B_WIN");
    let close_at = |delta: i64| {
        srv.close(
            &app,
            json!({"bizOrderNo": "B_WIN", "reqTime": time_text(delta, UtcOffset::CST)}),
        )
    };
    close_at(-600).expect(10506, EXPIRED);
    close_at(-60).expect(10506, EXPIRED);
    close_at(600).expect(10506, FUTURE);
    close_at(60).expect(10506, FUTURE);
    assert_eq!(
        srv.status(&app, "B_WIN"),
        "progress",
        "a refused request changes nothing"
    );
    // Within the window (a few seconds of skew either way) is fine.
    srv.post_signed(
        &app,
        "/unipay/query/payOrder",
        json!({"bizOrderNo": "B_WIN", "reqTime": time_text(-10, UtcOffset::CST)}),
    )
    .expect(0, "success");
    srv.post_signed(
        &app,
        "/unipay/query/payOrder",
        json!({"bizOrderNo": "B_WIN", "reqTime": time_text(10, UtcOffset::CST)}),
    )
    .expect(0, "success");
    close_at(0).expect(0, "success");
    assert_eq!(srv.status(&app, "B_WIN"), "close");
}

#[test]
fn default_window_is_300_seconds_and_0_turns_it_off() {
    let srv = TestServer::start();
    let default = srv.app("A_DEFWIN");
    let off = srv.create_app("M_OFF", "A_OFF", &["--req-timeout", "0"]);
    for app in [&default, &off] {
        srv.pay(app, "B_W");
    }
    let query = |app: &App, delta: i64| {
        srv.post_signed(
            app,
            "/unipay/query/payOrder",
            json!({"bizOrderNo": "B_W", "reqTime": time_text(delta, UtcOffset::CST)}),
        )
    };
    query(&default, -240).expect(0, "success");
    query(&default, 240).expect(0, "success");
    query(&default, -600).expect(10506, EXPIRED);
    query(&default, 600).expect(10506, FUTURE);
    query(&off, -86_400 * 365).expect(0, "success");
    query(&off, 86_400).expect(0, "success");
}

#[test]
fn tz_offset_is_the_zone_request_times_are_read_in() {
    let srv = TestServer::start_with(&["--tz-offset", "+00:00"]);
    let app = srv.create_app("M_UTC", "A_UTC", &["--req-timeout", "30"]);
    // Order times are read and written in the same zone.
    let expires = time_text(3600, UtcOffset(0));
    srv.pay_with(&app, "B_UTC", json!({ "expiredTime": expires }));
    assert_eq!(srv.order(&app, "B_UTC")["expiredTime"], expires.as_str());
    // Written in +08:00, the time reads as 8 hours in the future in UTC.
    srv.close(
        &app,
        json!({"bizOrderNo": "B_UTC", "reqTime": time_text(0, UtcOffset::CST)}),
    )
    .expect(10506, FUTURE);
    // Written in +07:00, 1 hour in the future; in -01:00, 1 hour in the past.
    srv.close(
        &app,
        json!({"bizOrderNo": "B_UTC", "reqTime": time_text(0, UtcOffset(7 * 3600))}),
    )
    .expect(10506, FUTURE);
    srv.close(
        &app,
        json!({"bizOrderNo": "B_UTC", "reqTime": time_text(0, UtcOffset(-3600))}),
    )
    .expect(10506, EXPIRED);
    assert_eq!(srv.status(&app, "B_UTC"), "progress");
    // Written in UTC, it is now.
    let reply = srv.close(
        &app,
        json!({"bizOrderNo": "B_UTC", "reqTime": time_text(0, UtcOffset(0))}),
    );
    reply.expect(0, "success");
    // Replies speak the same zone: resTime is UTC.
    let res_time = reply.json()["resTime"].as_str().unwrap();
    let res_ms = sys::parse_time(res_time, UtcOffset(0)).unwrap();
    assert!(
        (res_ms - now_ms()).abs() < 60_000,
        "resTime {res_time} is not UTC now"
    );
    assert_eq!(srv.status(&app, "B_UTC"), "close");
}

/// Both edges of the window, for a short and a long one: 2 s inside is accepted and 2 s
/// outside is refused, into the past and into the future. `reqTime` has whole seconds, so a
/// probe `d` seconds from now is up to 1 s earlier than that (minus the trip to the server):
/// a margin of 2 s keeps every probe on its side of the edge.
#[test]
fn both_edges_of_the_window_hold_to_the_second_for_5_and_300_seconds() {
    let srv = TestServer::start_with(&["--sweep-interval", "1h"]);
    for window in [5i64, 300] {
        let app_id = format!("A_EDGE{window}");
        let app = srv.create_app(
            &format!("M_EDGE{window}"),
            &app_id,
            &["--req-timeout", &window.to_string()],
        );
        srv.pay(&app, "B_EDGE");
        let before = srv.order(&app, "B_EDGE");
        let query = |delta: i64| {
            srv.post_signed(
                &app,
                "/unipay/query/payOrder",
                json!({"bizOrderNo": "B_EDGE", "reqTime": time_text(delta, UtcOffset::CST)}),
            )
        };
        let close = |delta: i64| {
            srv.close(
                &app,
                json!({"bizOrderNo": "B_EDGE", "reqTime": time_text(delta, UtcOffset::CST)}),
            )
        };
        let ctx = format!("window {window} s");
        // Inside, both sides.
        for delta in [-(window - 2), window - 2] {
            let r = query(delta);
            assert_eq!(r.code(), 0, "{ctx}, reqTime now{delta:+} s: {}", r.body);
            assert_eq!(r.data(), &before, "{ctx}");
        }
        // Outside, both sides; a close outside the window changes nothing either.
        for (delta, msg) in [(-(window + 2), EXPIRED), (window + 2, FUTURE)] {
            for r in [query(delta), close(delta)] {
                r.expect(10506, msg);
                assert_eq!(
                    r.msg(),
                    format!("验证参数错误\n{msg}"),
                    "{ctx}, reqTime now{delta:+} s"
                );
                assert_eq!(r.data(), &Value::Null, "{ctx}");
            }
        }
        assert_eq!(srv.order(&app, "B_EDGE"), before, "{ctx}: nothing changed");
        // Just inside the past edge, the close itself goes through.
        close(-(window - 2)).expect(0, "success");
        assert_eq!(srv.status(&app, "B_EDGE"), "close", "{ctx}");
    }
}
