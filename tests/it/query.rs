//! `POST /unipay/query/payOrder`: the order as `PayOrderResult`, signed over its raw text.

use serde_json::json;

use crate::helpers::*;

/// The fields of `PayOrderResult`, in declaration order (spec §8).
const ORDER_FIELDS: &[&str] = &[
    "bizOrderNo",
    "orderNo",
    "outOrderNo",
    "title",
    "description",
    "allocation",
    "autoAllocation",
    "channel",
    "method",
    "otherMethod",
    "limitPay",
    "amount",
    "refundableBalance",
    "status",
    "refundStatus",
    "allocStatus",
    "payTime",
    "closeTime",
    "expiredTime",
    "attach",
    "errorMsg",
];

/// The top-level keys of a raw JSON object, in the order they appear.
fn keys_in_order(raw: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(raw).unwrap();
    let mut keys: Vec<(usize, String)> = v
        .as_object()
        .unwrap()
        .keys()
        .map(|k| {
            let at = raw
                .find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} in {raw}"));
            (at, k.clone())
        })
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

#[track_caller]
fn assert_pay_order_result(raw: &str) {
    let keys = keys_in_order(raw);
    let mut last = None;
    for k in &keys {
        let pos = ORDER_FIELDS
            .iter()
            .position(|f| f == k)
            .unwrap_or_else(|| panic!("field {k} is not in PayOrderResult: {raw}"));
        if let Some(prev) = last {
            assert!(pos > prev, "field {k} out of order: {raw}");
        }
        last = Some(pos);
    }
    assert!(!raw.contains(":null"), "nulls are omitted: {raw}");
}

#[test]
fn query_returns_pay_order_result_in_declaration_order() {
    let srv = TestServer::start();
    let app = srv.app("A_QUERY");
    let data = srv.pay_with(
        &app,
        "B_Q",
        json!({"description": "描述 \"quoted\" \\ back", "attach": "{\"k\":1}", "amount": "2.50"}),
    );
    let reply = srv.post_signed(
        &app,
        "/unipay/query/payOrder",
        json!({"orderNo": data["orderNo"]}),
    );
    reply.expect(0, "success");
    let raw = raw_data(&reply.body).unwrap();
    assert_pay_order_result(&raw);
    let o = reply.data();
    assert_eq!(o["bizOrderNo"], "B_Q");
    assert_eq!(o["orderNo"], data["orderNo"]);
    assert_eq!(o["title"], "测试订单");
    assert_eq!(o["description"], "描述 \"quoted\" \\ back");
    assert_eq!(o["attach"], "{\"k\":1}");
    assert_eq!(o["amount"].to_string(), "2.5");
    assert_eq!(o["status"], "progress");
    assert!(o["expiredTime"].is_string());

    // After payment and as a wait order closed: still only PayOrderResult fields.
    srv.sandbox_pay(data["orderNo"].as_str().unwrap())
        .expect(0, "success");
    let paid = srv.post_signed(&app, "/unipay/query/payOrder", json!({"bizOrderNo": "B_Q"}));
    assert_pay_order_result(&raw_data(&paid.body).unwrap());
    srv.pre_pay(&app, "B_Q2");
    srv.close(&app, json!({"bizOrderNo": "B_Q2"}))
        .expect(0, "success");
    let closed = srv.post_signed(
        &app,
        "/unipay/query/payOrder",
        json!({"bizOrderNo": "B_Q2"}),
    );
    closed.expect(0, "success");
    assert_pay_order_result(&raw_data(&closed.body).unwrap());
}

#[test]
fn query_by_out_order_no_after_payment() {
    let srv = TestServer::start();
    let app = srv.app("A_QOUT");
    let data = srv.pay(&app, "B_QOUT");
    srv.sandbox_pay(data["orderNo"].as_str().unwrap())
        .expect(0, "success");
    let out = srv.order(&app, "B_QOUT")["outOrderNo"]
        .as_str()
        .unwrap()
        .to_string();
    let r = srv.post_signed(
        &app,
        "/unipay/query/payOrder",
        json!({"orderNo": "", "bizOrderNo": "", "outOrderNo": out}),
    );
    r.expect(0, "success");
    assert_eq!(r.data()["orderNo"], data["orderNo"]);
}

#[test]
fn query_needs_an_order_number_and_an_existing_order() {
    let srv = TestServer::start();
    let app = srv.app("A_QERR");
    srv.post_signed(&app, "/unipay/query/payOrder", json!({}))
        .expect(10506, "支付订单号不能都为空");
    srv.post_signed(
        &app,
        "/unipay/query/payOrder",
        json!({"orderNo": "", "bizOrderNo": "", "outOrderNo": ""}),
    )
    .expect(10506, "支付订单号不能都为空");
    srv.post_signed(
        &app,
        "/unipay/query/payOrder",
        json!({"bizOrderNo": "NOPE"}),
    )
    .expect(20041, "支付订单不存在");
}
