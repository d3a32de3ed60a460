//! The sandbox channel's payer side: a cashier page and the "pay" button behind it.
//!
//! `GET /sandbox/cashier/{orderNo}` shows the order with a Pay button; `POST
//! /sandbox/pay/{orderNo}` is the payer paying, answered with the reply envelope (signed with
//! the order's app): code 0 when the payment went through, 20044 with the reason when the trade
//! is closed, cancelled, already paid or expired, 20041 for an unknown order.
//! `POST /sandbox/refund/{refundNo}?result=success|close|abnormal` settles a sandbox refund that
//! is processing, and delivers it to unipay as a channel's refund notification would.

use crate::api::{respond, Answer};
use crate::channel::{sandbox_refund_answer, Sandbox};
use crate::error::{
    Error, MSG_REFUND_NOT_FOUND, MSG_SANDBOX_REFUND_FINAL, MSG_SANDBOX_REFUND_RESULT,
};
use crate::form;
use crate::gateway::Gateway;
use crate::html::escape;
use crate::http::Response;
use crate::sys;

/// `POST /sandbox/pay/{orderNo}`.
pub fn pay(gw: &Gateway, order_no: &str, trace_id: &str) -> Answer {
    let now = gw.now();
    let app = gw
        .store
        .order_by_no(order_no)
        .ok()
        .flatten()
        .and_then(|o| gw.store.app(&o.app_id).ok().flatten());
    let trade_no = Sandbox::new_trade_no(gw.random.as_ref());
    let result = gw
        .store
        .sandbox_pay(order_no.to_string(), trade_no, now)
        .map(|_| None);
    respond(gw, result, app.as_ref(), now, trace_id)
}

/// `POST /sandbox/refund/{refundNo}`: the sandbox channel finishes a processing refund.
pub fn settle_refund(gw: &Gateway, refund_no: &str, query: &str, trace_id: &str) -> Answer {
    let now = gw.now();
    let refund = gw.store.refund_by_no(refund_no).ok().flatten();
    let app = refund
        .as_ref()
        .and_then(|r| gw.store.app(&r.app_id).ok().flatten());
    let fields = form::parse(query);
    let result = (|| {
        let state = match form::get(&fields, "result").unwrap_or("success") {
            "success" => "success",
            "close" => "closed",
            "abnormal" => "abnormal",
            _ => return Err(Error::Validation(MSG_SANDBOX_REFUND_RESULT.into())),
        };
        let refund = refund
            .clone()
            .ok_or(Error::RefundNotFound(MSG_REFUND_NOT_FOUND))?;
        let booked = match gw
            .store
            .sandbox_settle_refund(refund_no.to_string(), state, now)?
        {
            None => return Err(Error::RefundNotFound(MSG_REFUND_NOT_FOUND)),
            Some(Err(_)) => return Err(Error::TradeStatus(MSG_SANDBOX_REFUND_FINAL.into())),
            Some(Ok(booked)) => booked,
        };
        let answer = sandbox_refund_answer(&booked, &refund);
        let next = refund.next_check(now);
        gw.store
            .apply_refund(refund.id, answer, false, next, now, None)?;
        Ok(None)
    })();
    respond(gw, result, app.as_ref(), now, trace_id)
}

/// `GET /sandbox/cashier/{orderNo}`.
pub fn cashier(gw: &Gateway, order_no: &str) -> Response {
    let order = match gw.store.order_by_no(order_no) {
        Ok(Some(o)) => o,
        Ok(None) => {
            return Response::html(page("订单不存在", "<p>支付订单不存在</p>")).with_status(404)
        }
        Err(e) => {
            log::error!("cashier {order_no}: {e}");
            return Response::html(page("系统错误", "<p>系统错误</p>")).with_status(500);
        }
    };
    let open = !order.status.is_terminal();
    // The payer's view of the refunds of a paid order.
    let refunds = gw.store.refunds_of_order(order.id).unwrap_or_default();
    let refunds = match refunds.is_empty() {
        true => String::new(),
        false => {
            let rows: String = refunds
                .iter()
                .map(|r| {
                    format!(
                        "<tr><td>{}</td><td>¥{}</td><td class=\"refund-status\">{}</td></tr>",
                        escape(&r.refund_no),
                        r.amount.to_yuan_fixed(),
                        r.status.label()
                    )
                })
                .collect();
            format!("<h2>退款</h2><table id=\"refunds\"><tr><th>退款号</th><th>金额</th><th>状态</th></tr>{rows}</table>")
        }
    };
    let body = format!(
        r#"<h1>{title}</h1>
<dl>
<dt>订单号</dt><dd id="order-no">{order_no}</dd>
<dt>商户订单号</dt><dd>{biz}</dd>
<dt>金额</dt><dd id="amount">¥{amount}</dd>
<dt>状态</dt><dd id="status">{label}</dd>
<dt>过期时间</dt><dd>{expires}</dd>
</dl>
<button id="pay" {disabled}>支付 Pay</button>
<p id="result"></p>
{refunds}
<script>
document.getElementById('pay').addEventListener('click', async () => {{
  const r = await fetch('/sandbox/pay/' + encodeURIComponent(document.getElementById('order-no').textContent), {{method: 'POST'}});
  const j = await r.json();
  document.getElementById('result').textContent = j.code === 0 ? '支付成功' : j.msg;
  if (j.code === 0) {{ document.getElementById('status').textContent = '支付成功'; document.getElementById('pay').disabled = true; }}
}});
</script>"#,
        title = escape(&order.title),
        order_no = escape(&order.order_no),
        biz = escape(&order.biz_order_no),
        amount = order.amount.to_yuan_fixed(),
        label = order.status.label(),
        expires = sys::format_time(order.expired_time, gw.offset),
        disabled = if open { "" } else { "disabled" },
        refunds = refunds,
    );
    Response::html(page("沙箱收银台", &body))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{title} · unipay</title>\
         <style>body{{font-family:sans-serif;max-width:32rem;margin:2rem auto}}dt{{color:#666}}\
         button{{font-size:1.2rem;padding:.5rem 2rem}}</style></head><body>{body}</body></html>"
    )
}
