//! The page of one order: every field, its refunds, its close records, a close in progress,
//! and its notifications with every attempt; the Close / Cancel, Refund and Resend forms.

use std::fmt::Write;

use super::{badge, e, layout, opt, yuan, Ctx};
use crate::domain::{Order, PayStatus, Refund};
use crate::form;
use crate::store::admin::{EventHistory, OrderDetail};
use crate::store::CloseRecord;

fn actor_label(actor: &str) -> &'static str {
    match actor {
        "api" => "商户接口",
        "admin" => "管理员",
        "expiry" => "自动过期",
        "sync" => "同步",
        _ => "未知",
    }
}

fn close_type_label(close_type: &str) -> &'static str {
    match close_type {
        "cancel" => "撤销",
        _ => "关闭",
    }
}

fn event_state_label(state: &str) -> &'static str {
    match state {
        "pending" => "待发送",
        "delivered" => "已送达",
        "given_up" => "已放弃",
        _ => "未知",
    }
}

/// A pay order's `refundStatus` (refund-sync.md §2.2), with its code.
fn refund_state(code: Option<&str>) -> String {
    let label = match code.unwrap_or("no_refund") {
        "no_refund" => "未退款",
        "refunding" => "退款中",
        "partial_refund" => "部分退款",
        "refunded" => "全部退款",
        _ => "未知",
    };
    let code = e(code.unwrap_or("no_refund"));
    format!(
        r#"<span id="refund-status" data-refund-status="{code}">{label} <small class="muted">{code}</small></span>"#
    )
}

pub(super) fn status_label(status: &str) -> String {
    match PayStatus::parse(status) {
        Some(s) => badge(s),
        None => e(status),
    }
}

/// `GET /admin/orders/{orderNo}`; `flash` is the message of the action that led here,
/// `refund_no` the `bizRefundNo` of the refund form.
pub fn order(ctx: &Ctx, d: &OrderDetail, flash: Option<(bool, &str)>, refund_no: &str) -> String {
    let o = &d.order;
    let mut body = String::new();
    if let Some((ok, msg)) = flash {
        let class = if ok { "ok" } else { "err" };
        let _ = write!(
            body,
            r#"<p class="flash {class}" id="flash">{}</p>"#,
            e(msg)
        );
    }
    let _ = write!(
        body,
        r#"<h1>订单 <span class="mono" id="order-no">{}</span> <span id="order-status">{}</span></h1>"#,
        e(&o.order_no),
        badge(o.status)
    );
    if let Some(why) = &o.attention {
        let _ = write!(
            body,
            r#"<p class="banner attention" id="attention"><b>需要人工处理</b> ({}): {}</p>"#,
            ctx.time_opt(o.attention_at),
            e(why)
        );
    }
    if let Some(c) = &d.closing {
        let _ = write!(
            body,
            r#"<p class="banner" id="closing">正在通道{}中 (由{}发起, {})</p>"#,
            close_type_label(&c.close_type),
            actor_label(&c.actor),
            ctx.time(c.since)
        );
    }
    if !o.status.is_terminal() {
        let base = format!("/admin/orders/{}", form::encode(&o.order_no));
        body.push_str(r#"<div class="actions">"#);
        body.push_str(&ctx.button(&format!("{base}/close"), "close", "danger", "关闭订单"));
        if o.status == PayStatus::Progress {
            body.push_str(&ctx.button(
                &format!("{base}/cancel"),
                "cancel",
                "",
                "撤销订单 (通道撤销)",
            ));
        }
        body.push_str("</div>");
    }

    // Every field of the order.
    let bool_text = |b: Option<bool>| match b {
        Some(true) => "是".to_string(),
        Some(false) => "否".to_string(),
        None => "—".to_string(),
    };
    let rows: Vec<(&str, &str, String)> = vec![
        ("订单号", "orderNo", e(&o.order_no)),
        ("商户订单号", "bizOrderNo", e(&o.biz_order_no)),
        ("通道订单号", "outOrderNo", opt(o.out_order_no.as_deref())),
        ("商户号", "mchNo", e(&o.mch_no)),
        ("应用", "appId", e(&o.app_id)),
        ("标题", "title", e(&o.title)),
        ("描述", "description", opt(o.description.as_deref())),
        ("分账", "allocation", bool_text(o.allocation)),
        ("自动分账", "autoAllocation", bool_text(o.auto_allocation)),
        ("支付通道", "channel", opt(o.channel.as_deref())),
        ("支付方式", "method", opt(o.method.as_deref())),
        (
            "其他支付方式",
            "otherMethod",
            opt(o.other_method.as_deref()),
        ),
        ("限制支付", "limitPay", opt(o.limit_pay.as_deref())),
        ("金额", "amount", yuan(o.amount.0)),
        (
            "可退余额",
            "refundableBalance",
            yuan(o.refundable_balance.0),
        ),
        ("状态", "status", badge(o.status)),
        (
            "退款状态",
            "refundStatus",
            refund_state(o.refund_status.as_deref()),
        ),
        ("分账状态", "allocStatus", opt(o.alloc_status.as_deref())),
        ("支付时间", "payTime", ctx.time_opt(o.pay_time)),
        ("关闭时间", "closeTime", ctx.time_opt(o.close_time)),
        ("过期时间", "expiredTime", ctx.time(o.expired_time)),
        ("附加数据", "attach", opt(o.attach.as_deref())),
        ("错误信息", "errorMsg", opt(o.error_msg.as_deref())),
        ("异步通知地址", "notifyUrl", opt(o.notify_url.as_deref())),
        ("同步跳转地址", "returnUrl", opt(o.return_url.as_deref())),
        ("扩展参数", "extraParam", opt(o.extra_param.as_deref())),
        ("客户端 IP", "clientIp", opt(o.client_ip.as_deref())),
        ("需要处理", "attention", opt(o.attention.as_deref())),
        ("标记时间", "attentionAt", ctx.time_opt(o.attention_at)),
        ("创建时间", "createdAt", ctx.time(o.created_at)),
        ("更新时间", "updatedAt", ctx.time(o.updated_at)),
    ];
    body.push_str(r#"<h2>订单信息</h2><table class="fields" id="fields">"#);
    for (label, name, value) in rows {
        let _ = write!(
            body,
            r#"<tr data-field="{name}"><th>{label} <small>{name}</small></th><td>{value}</td></tr>"#
        );
    }
    body.push_str("</table>");

    body.push_str("<h2>退款</h2>");
    refund_form(ctx, &mut body, o, refund_no);
    refunds(ctx, &mut body, &d.refunds);

    // Close records.
    body.push_str("<h2>关闭记录</h2>");
    close_records(ctx, &mut body, &d.close_records);

    // Notifications and their attempts.
    body.push_str("<h2>通知</h2>");
    if d.events.is_empty() {
        body.push_str(
            r#"<p class="empty">没有通知 (订单进入最终状态时, 才通知订单或应用设置的通知地址)</p>"#,
        );
    }
    for h in &d.events {
        event(ctx, &mut body, h);
    }
    layout(ctx, &format!("订单 {}", o.order_no), "orders", &body)
}

/// The refund form of a paid order with money left to give back: the amount in yuan and a
/// reason, under the refund number `refund_no` (a form sent twice is one refund).
fn refund_form(ctx: &Ctx, body: &mut String, o: &Order, refund_no: &str) {
    let balance = yuan(o.refundable_balance.0);
    let refunded = o.refund_status.as_deref() == Some("refunded");
    if o.status != PayStatus::Success || refunded || o.refundable_balance.0 <= 0 {
        let why = match o.status {
            PayStatus::Success => "没有可退余额",
            _ => "只有支付成功的订单可以退款",
        };
        let _ = write!(
            body,
            r#"<p class="muted" id="no-refund">{why} · 可退余额 <b id="refundable">{balance}</b></p>"#
        );
        return;
    }
    let _ = write!(
        body,
        r#"<form class="refund" id="refund-form" method="post" action="/admin/orders/{no}/refund">{csrf}<input type="hidden" name="bizRefundNo" value="{refund_no}">
<span>可退余额 <b id="refundable">{balance}</b></span>
<label for="refund-amount">退款金额 (元)</label>
<input id="refund-amount" name="amount" required inputmode="decimal" autocomplete="off" pattern="[0-9]+(\.[0-9]{{1,2}})?" title="以元为单位, 最多两位小数" placeholder="最多 {max}">
<label for="refund-reason">退款原因</label>
<input id="refund-reason" name="reason" maxlength="150" autocomplete="off">
<button type="submit" class="danger" id="refund">退款</button>
</form>"#,
        no = form::encode(&o.order_no),
        csrf = ctx.csrf_field(),
        refund_no = e(refund_no),
        max = o.refundable_balance.to_yuan_fixed(),
    );
}

/// The order's refunds, oldest first.
fn refunds(ctx: &Ctx, body: &mut String, refunds: &[Refund]) {
    if refunds.is_empty() {
        body.push_str(r#"<p class="empty" id="refunds">没有退款</p>"#);
        return;
    }
    body.push_str(
        r#"<table id="refunds"><thead><tr><th>退款号</th><th>商户退款号</th><th class="num">金额</th><th>状态</th><th>通道退款号</th><th>原因</th><th>错误信息</th><th>客户端 IP</th><th>创建时间</th><th>完成时间</th></tr></thead><tbody>"#,
    );
    for r in refunds {
        let status = r.status.as_str();
        let _ = write!(
            body,
            r#"<tr data-refund="{no}" data-status="{status}"><td class="mono">{no}</td><td class="mono">{biz}</td><td class="num">{amount}</td><td><span class="st st-{status}">{label}</span></td><td class="mono">{out}</td><td>{reason}</td><td>{err}</td><td class="mono">{ip}</td><td>{created}</td><td>{finished}</td></tr>"#,
            no = e(&r.refund_no),
            biz = e(&r.biz_refund_no),
            amount = yuan(r.amount.0),
            label = r.status.label(),
            out = opt(r.out_refund_no.as_deref()),
            reason = opt(r.reason.as_deref()),
            err = opt(r.error_msg.as_deref()),
            ip = opt(r.client_ip.as_deref()),
            created = ctx.time(r.created_at),
            finished = ctx.time_opt(r.finish_time),
        );
    }
    body.push_str("</tbody></table>");
}

fn close_records(ctx: &Ctx, body: &mut String, records: &[CloseRecord]) {
    if records.is_empty() {
        body.push_str(r#"<p class="empty" id="close-records">没有关闭记录</p>"#);
        return;
    }
    body.push_str(
        r#"<table id="close-records"><thead><tr><th>时间</th><th>操作方</th><th>类型</th><th>结果</th><th>错误信息</th><th>客户端 IP</th><th>通道</th></tr></thead><tbody>"#,
    );
    for r in records {
        let _ = write!(
            body,
            r#"<tr data-actor="{actor}"><td>{time}</td><td>{actor_label} <small class="muted">{actor}</small></td><td>{ty}</td><td>{result}</td><td>{err}</td><td class="mono">{ip}</td><td>{channel}</td></tr>"#,
            time = ctx.time(r.created_at),
            actor = e(&r.actor),
            actor_label = actor_label(&r.actor),
            ty = close_type_label(&r.close_type),
            result = if r.closed { "成功" } else { "失败" },
            err = opt(r.error_msg.as_deref()),
            ip = opt(r.client_ip.as_deref()),
            channel = opt(r.channel.as_deref()),
        );
    }
    body.push_str("</tbody></table>");
}

fn event(ctx: &Ctx, body: &mut String, h: &EventHistory) {
    let ev = &h.event;
    let target = match ev.target.as_str() {
        "callback" => "订单通知地址",
        _ => "应用订阅地址",
    };
    let next = match ev.state.as_str() {
        "pending" => format!(" · 下次发送 {}", ctx.time(ev.next_attempt_at)),
        _ => String::new(),
    };
    let _ = write!(
        body,
        r#"<div class="event" id="event-{id}" data-state="{state}"><div><b>#{id}</b> {target} <span class="mono">{url}</span> · 通知状态 {status} · <b class="event-state">{state_label}</b> · 本轮尝试 {attempts} 次{next} · 创建 {created}{finished}</div>"#,
        id = ev.id,
        url = e(&ev.url),
        status = status_label(&ev.status),
        state = e(&ev.state),
        state_label = event_state_label(&ev.state),
        attempts = ev.attempts,
        created = ctx.time(ev.created_at),
        finished = ev
            .finished_at
            .map(|t| format!(" · 结束 {}", ctx.time(t)))
            .unwrap_or_default(),
    );
    if let Some(err) = &ev.last_error {
        let _ = write!(body, r#"<div class="muted">最近错误: {}</div>"#, e(err));
    }
    if h.attempts.is_empty() {
        body.push_str(r#"<div class="muted">尚未发送</div>"#);
    } else {
        body.push_str(
            r#"<table><thead><tr><th class="num">#</th><th>时间</th><th>结果</th><th class="num">HTTP</th><th>详情</th></tr></thead><tbody>"#,
        );
        for a in &h.attempts {
            let _ = write!(
                body,
                r#"<tr><td class="num">{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="mono">{}</td></tr>"#,
                a.attempt,
                ctx.time(a.at),
                if a.outcome == "delivered" {
                    "成功"
                } else {
                    "失败"
                },
                a.http_status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "—".into()),
                opt(a.detail.as_deref()),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(r#"<div class="actions">"#);
    body.push_str(&ctx.button(
        &format!("/admin/events/{}/resend", ev.id),
        &format!("resend-{}", ev.id),
        "",
        "重新发送",
    ));
    body.push_str("</div></div>");
}
