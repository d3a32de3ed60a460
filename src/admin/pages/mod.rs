//! The console's pages: plain server-rendered HTML with the one stylesheet inlined.
//!
//! Every value read from the database goes through `html::escape` (`e` here) before it reaches
//! a page, whoever wrote it; links are built with `form::encode`. The pages hold no script.

use std::fmt::Write;

mod order;

use crate::domain::{App, Order, PayStatus};
use crate::form;
use crate::html::escape as e;
use crate::store::admin::{Dashboard, OrderFilter, StatusCounts};
use crate::store::EventInfo;
use crate::sys::{self, UtcOffset};

pub use order::order;
use order::status_label;

const CSS: &str = include_str!("admin.css");

/// What every page needs besides its data.
pub struct Ctx<'a> {
    pub offset: UtcOffset,
    /// The session's CSRF token, for the forms of a cookie-authenticated page.
    pub csrf: Option<&'a str>,
}

impl Ctx<'_> {
    fn time(&self, ms: i64) -> String {
        sys::format_time(ms, self.offset)
    }

    fn time_opt(&self, ms: Option<i64>) -> String {
        ms.map_or_else(|| "—".to_string(), |t| self.time(t))
    }

    /// The hidden CSRF field of a POST form.
    fn csrf_field(&self) -> String {
        match self.csrf {
            Some(token) => format!(r#"<input type="hidden" name="csrf" value="{}">"#, e(token)),
            None => String::new(),
        }
    }

    /// A POST form with one button.
    fn button(&self, action: &str, id: &str, class: &str, label: &str) -> String {
        format!(
            r#"<form method="post" action="{action}">{}<button type="submit" id="{id}" class="{class}">{label}</button></form>"#,
            self.csrf_field()
        )
    }
}

fn opt(v: Option<&str>) -> String {
    match v {
        Some(s) if !s.is_empty() => e(s),
        _ => "—".to_string(),
    }
}

fn badge(status: PayStatus) -> String {
    format!(
        r#"<span class="st st-{}" data-status="{}">{}</span>"#,
        status.as_str(),
        status.as_str(),
        status.label()
    )
}

fn yuan(cents: i64) -> String {
    format!("¥{}", crate::domain::Amount(cents).to_yuan_fixed())
}

fn order_link(order_no: &str) -> String {
    format!(
        r#"<a class="mono" href="/admin/orders/{}">{}</a>"#,
        form::encode(order_no),
        e(order_no)
    )
}

/// A whole page around `body`.
pub fn layout(ctx: &Ctx, title: &str, active: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, name, label) in [
        ("/admin", "dashboard", "概览"),
        ("/admin/orders", "orders", "订单"),
        ("/admin/apps", "apps", "应用"),
    ] {
        let class = if name == active {
            r#" class="active""#
        } else {
            ""
        };
        let _ = write!(nav, r#"<a href="{href}"{class}>{label}</a>"#);
    }
    let logout = match ctx.csrf {
        Some(_) => ctx.button("/admin/logout", "logout", "", "退出登录"),
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · unipay 管理后台</title><style>{CSS}</style></head>
<body><header><span class="brand">unipay 管理后台</span><nav>{nav}</nav>{logout}</header>
<main>{body}</main></body></html>"#,
        title = e(title),
    )
}

/// The login form (public).
pub fn login(error: Option<&str>) -> String {
    let error = match error {
        Some(msg) => format!(r#"<p class="flash err" id="error">{}</p>"#, e(msg)),
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>登录 · unipay 管理后台</title><style>{CSS}</style></head>
<body><main><form class="login" id="login" method="post" action="/admin/login">
<h1>unipay 管理后台</h1>{error}
<label for="token">管理令牌 (admin token)</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit" class="primary" id="submit">登录</button>
<p class="muted">令牌在首次启动时打印一次, 或由 <span class="mono">unipay serve --admin-token</span> 指定。</p>
</form></main></body></html>"#
    )
}

/// A page with a title and one message (404, 403, 400, 500).
pub fn message(ctx: &Ctx, title: &str, text: &str) -> String {
    layout(
        ctx,
        title,
        "",
        &format!(
            r#"<h1>{}</h1><p id="message">{}</p><p><a href="/admin/orders">返回订单列表</a></p>"#,
            e(title),
            e(text)
        ),
    )
}

/// The link to the order list with `filter` on page `page`.
pub fn orders_href(filter: &OrderFilter, offset: UtcOffset, page: i64) -> String {
    let time = |t: Option<i64>| t.map(|ms| sys::format_time(ms, offset)).unwrap_or_default();
    let page = if page > 1 {
        page.to_string()
    } else {
        String::new()
    };
    let q = form::query(&[
        ("q", filter.q.as_deref().unwrap_or("")),
        ("status", filter.status.map_or("", PayStatus::as_str)),
        ("channel", filter.channel.as_deref().unwrap_or("")),
        ("appId", filter.app_id.as_deref().unwrap_or("")),
        ("from", &time(filter.from)),
        // `to` is inclusive to the millisecond; people write it to the second.
        ("to", &time(filter.to.map(|t| t - t.rem_euclid(1000)))),
        ("attention", if filter.attention { "1" } else { "" }),
        ("page", &page),
    ]);
    match q.is_empty() {
        true => "/admin/orders".to_string(),
        false => format!("/admin/orders?{q}"),
    }
}

/// The order list of the orders flagged for an operator.
const ATTENTION_HREF: &str = "/admin/orders?attention=1";

/// What the order list shows.
pub struct OrderList<'a> {
    pub filter: &'a OrderFilter,
    /// The filter's fields as typed, for the form (also when they did not parse).
    pub raw: &'a [(String, String)],
    pub error: Option<&'a str>,
    pub counts: StatusCounts,
    pub orders: &'a [Order],
    pub page: i64,
    pub per_page: i64,
    pub channels: &'a [String],
    pub apps: &'a [App],
}

/// `GET /admin/orders`.
pub fn orders(ctx: &Ctx, list: &OrderList) -> String {
    let raw = |name: &str| e(form::get(list.raw, name).unwrap_or(""));
    let f = list.filter;
    let mut body = String::from("<h1>订单</h1>");

    // The filter form.
    let mut status_opts = String::from(r#"<option value="">全部状态</option>"#);
    for s in PayStatus::ALL {
        let sel = if f.status == Some(s) { " selected" } else { "" };
        let _ = write!(
            status_opts,
            r#"<option value="{}"{sel}>{}</option>"#,
            s.as_str(),
            s.label()
        );
    }
    let select = |name: &str, all: &str, values: &mut dyn Iterator<Item = &str>| {
        let current = form::get(list.raw, name).unwrap_or("");
        let mut out =
            format!(r#"<select name="{name}" id="{name}"><option value="">{all}</option>"#);
        let mut seen = current.is_empty();
        for v in values {
            let sel = if v == current { " selected" } else { "" };
            seen |= v == current;
            let _ = write!(out, r#"<option value="{0}"{sel}>{0}</option>"#, e(v));
        }
        if !seen {
            let _ = write!(
                out,
                r#"<option value="{0}" selected>{0}</option>"#,
                e(current)
            );
        }
        out.push_str("</select>");
        out
    };
    let channel_select = select(
        "channel",
        "全部通道",
        &mut list.channels.iter().map(String::as_str),
    );
    let app_select = select(
        "appId",
        "全部应用",
        &mut list.apps.iter().map(|a| a.app_id.as_str()),
    );
    let _ = write!(
        body,
        r#"<form class="filters" id="filters" method="get" action="/admin/orders">
<input name="q" id="q" value="{q}" placeholder="订单号 / 商户订单号 / 通道订单号">
<select name="status" id="status">{status_opts}</select>
{channel_select}{app_select}
<input name="from" id="from" value="{from}" placeholder="开始 yyyy-MM-dd HH:mm:ss">
<input name="to" id="to" value="{to}" placeholder="结束 yyyy-MM-dd HH:mm:ss">
<label class="check"><input type="checkbox" name="attention" id="attention-only" value="1"{attention}> 只看需要人工处理</label>
<button type="submit" class="primary" id="search">查询</button>
<a class="button" href="/admin/orders">重置</a>
</form>"#,
        q = raw("q"),
        from = raw("from"),
        to = raw("to"),
        attention = if f.attention { " checked" } else { "" },
    );
    if f.attention {
        body.push_str(
            r#"<p class="banner attention" id="attention-filter">只显示需要人工处理的订单 (如关闭后才到账的支付), 按标记时间从新到旧</p>"#,
        );
    }
    if let Some(err) = list.error {
        let _ = write!(body, r#"<p class="flash err" id="error">{}</p>"#, e(err));
        return layout(ctx, "订单", "orders", &body);
    }

    // Counts per status under the other filters; each switches the status filter.
    body.push_str(r#"<nav class="counts" id="counts">"#);
    let all = OrderFilter {
        status: None,
        ..f.clone()
    };
    let class = |active: bool| if active { r#" class="active""# } else { "" };
    let _ = write!(
        body,
        r#"<a href="{}"{} data-status="all">全部<b>{}</b></a>"#,
        e(&orders_href(&all, ctx.offset, 1)),
        class(f.status.is_none()),
        list.counts.total()
    );
    for s in PayStatus::ALL {
        let one = OrderFilter {
            status: Some(s),
            ..f.clone()
        };
        let _ = write!(
            body,
            r#"<a href="{}"{} data-status="{}">{}<b>{}</b></a>"#,
            e(&orders_href(&one, ctx.offset, 1)),
            class(f.status == Some(s)),
            s.as_str(),
            s.label(),
            list.counts.get(s)
        );
    }
    body.push_str("</nav>");

    // The page of orders.
    let total = match f.status {
        Some(s) => list.counts.get(s),
        None => list.counts.total(),
    };
    if list.orders.is_empty() {
        body.push_str(r#"<p class="empty" id="empty">没有符合条件的订单</p>"#);
    } else {
        body.push_str(
            r#"<table id="orders"><thead><tr><th>订单号</th><th>商户订单号</th><th>应用</th><th>标题</th><th class="num">金额</th><th>通道</th><th>状态</th><th>创建时间</th></tr></thead><tbody>"#,
        );
        for o in list.orders {
            let flag = match &o.attention {
                Some(why) => format!(r#" <span class="flag" title="{}">⚠ 需处理</span>"#, e(why)),
                None => String::new(),
            };
            let _ = write!(
                body,
                r#"<tr data-order="{no}"><td>{link}{flag}</td><td class="mono">{biz}</td><td>{app}</td><td>{title}</td><td class="num">{amount}</td><td>{channel}</td><td>{status}</td><td>{created}</td></tr>"#,
                no = e(&o.order_no),
                link = order_link(&o.order_no),
                biz = e(&o.biz_order_no),
                app = e(&o.app_id),
                title = e(&o.title),
                amount = yuan(o.amount.0),
                channel = opt(o.channel.as_deref()),
                status = badge(o.status),
                created = ctx.time(o.created_at),
            );
        }
        body.push_str("</tbody></table>");
    }

    // The pager.
    let pages = ((total + list.per_page - 1) / list.per_page).max(1);
    body.push_str(r#"<nav class="pager" id="pager">"#);
    if list.page > 1 {
        let _ = write!(
            body,
            r#"<a id="prev" href="{}">← 上一页</a>"#,
            e(&orders_href(f, ctx.offset, list.page - 1))
        );
    }
    let _ = write!(
        body,
        r#"<span>第 {} / {} 页 · 共 {} 条</span>"#,
        list.page, pages, total
    );
    if list.page < pages {
        let _ = write!(
            body,
            r#"<a id="next" href="{}">下一页 →</a>"#,
            e(&orders_href(f, ctx.offset, list.page + 1))
        );
    }
    body.push_str("</nav>");
    layout(ctx, "订单", "orders", &body)
}

fn event_rows(ctx: &Ctx, body: &mut String, id: &str, events: &[EventInfo], when: &str) {
    if events.is_empty() {
        let _ = write!(body, r#"<p class="empty" id="{id}">无</p>"#);
        return;
    }
    let _ = write!(
        body,
        r#"<table id="{id}"><thead><tr><th class="num">#</th><th>订单号</th><th>地址</th><th>状态</th><th class="num">尝试</th><th>{when}</th><th>最近错误</th></tr></thead><tbody>"#
    );
    for ev in events {
        let time = match ev.state.as_str() {
            "pending" => ctx.time(ev.next_attempt_at),
            _ => ctx.time_opt(ev.finished_at),
        };
        let _ = write!(
            body,
            r#"<tr><td class="num">{}</td><td>{}</td><td class="mono">{}</td><td>{}</td><td class="num">{}</td><td>{}</td><td>{}</td></tr>"#,
            ev.id,
            order_link(&ev.order_no),
            e(&ev.url),
            status_label(&ev.status),
            ev.attempts,
            time,
            opt(ev.last_error.as_deref()),
        );
    }
    body.push_str("</tbody></table>");
}

/// `GET /admin`: the day `[day_start, day_end]` at a glance.
pub fn dashboard(ctx: &Ctx, d: &Dashboard, day_start: i64, day_end: i64) -> String {
    let today = OrderFilter {
        from: Some(day_start),
        to: Some(day_end),
        ..OrderFilter::default()
    };
    let date = ctx.time(day_start);
    let date = date.get(..10).unwrap_or(&date);
    let mut body =
        format!("<h1>概览 <small class=\"muted\">{date}</small></h1><section class=\"cards\">");
    let _ = write!(
        body,
        r#"<div class="card" id="today"><h3>今日订单</h3><div class="big"><a href="{}">{}</a></div><ul>"#,
        e(&orders_href(&today, ctx.offset, 1)),
        d.today.total()
    );
    for s in PayStatus::ALL {
        let one = OrderFilter {
            status: Some(s),
            ..today.clone()
        };
        let _ = write!(
            body,
            r#"<li data-status="{}"><a href="{}">{}</a><b>{}</b></li>"#,
            s.as_str(),
            e(&orders_href(&one, ctx.offset, 1)),
            s.label(),
            d.today.get(s)
        );
    }
    body.push_str("</ul></div>");
    let _ = write!(
        body,
        r#"<div class="card" id="closed-today"><h3>今日关闭金额</h3><div class="big">{}</div><div class="muted">{} 笔订单关闭或撤销</div></div>"#,
        yuan(d.closed_amount_today.0),
        d.closed_today
    );
    let _ = write!(
        body,
        r##"<div class="card" id="notifications"><h3>商户通知</h3><ul><li><a href="#pending">待发送</a><b>{}</b></li><li><a href="#given-up">已放弃</a><b>{}</b></li></ul></div>"##,
        d.pending_events, d.given_up_events
    );
    let _ = write!(
        body,
        r##"<div class="card" id="attention-count"><h3>需要人工处理</h3><div class="big"><a href="{ATTENTION_HREF}">{}</a></div></div>"##,
        d.attention.len()
    );
    body.push_str("</section>");

    let _ = write!(
        body,
        r#"<h2>需要人工处理的订单 <small><a id="attention-list" href="{ATTENTION_HREF}">在订单列表中查看全部</a></small></h2>"#
    );
    if d.attention.is_empty() {
        body.push_str(r#"<p class="empty" id="attention">无</p>"#);
    } else {
        body.push_str(
            r#"<table id="attention"><thead><tr><th>订单号</th><th>应用</th><th>状态</th><th class="num">金额</th><th>原因</th><th>标记时间</th></tr></thead><tbody>"#,
        );
        for o in &d.attention {
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td>{}</td><td>{}</td></tr>"#,
                order_link(&o.order_no),
                e(&o.app_id),
                badge(o.status),
                yuan(o.amount.0),
                opt(o.attention.as_deref()),
                ctx.time_opt(o.attention_at),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>已放弃的通知 <small class=\"muted\">(最近 20 条)</small></h2>");
    event_rows(ctx, &mut body, "given-up", &d.given_up, "放弃时间");
    body.push_str("<h2>待发送的通知 <small class=\"muted\">(最早 20 条)</small></h2>");
    event_rows(ctx, &mut body, "pending", &d.pending, "下次发送");
    layout(ctx, "概览", "dashboard", &body)
}

/// `GET /admin/apps`: secrets are never shown.
pub fn apps(ctx: &Ctx, apps: &[App]) -> String {
    let mut body = String::from(
        r#"<h1>应用</h1><table id="apps"><thead><tr><th>应用 appId</th><th>商户号 mchNo</th><th>签名方式</th><th>密钥</th><th>验签</th><th class="num">请求时间窗口</th><th>通知地址</th><th class="num">订单超时</th><th class="num">单笔限额</th><th>状态</th></tr></thead><tbody>"#,
    );
    for a in apps {
        let window = match a.req_timeout_secs {
            0 => "关闭".to_string(),
            s => format!("{s} 秒"),
        };
        let enabled = match (a.enabled, a.mch_enabled) {
            (true, true) => "启用",
            (false, _) => "应用已停用",
            (true, false) => "商户已停用",
        };
        let _ = write!(
            body,
            r#"<tr><td class="mono">{app}</td><td class="mono">{mch}</td><td>{sign}</td><td class="mono">•••••••• <small class="muted">({len} 位, 已隐藏)</small></td><td>{req_sign}</td><td class="num">{window}</td><td class="mono">{notify}</td><td class="num">{timeout} 分钟</td><td class="num">{limit}</td><td>{enabled}</td></tr>"#,
            app = e(&a.app_id),
            mch = e(&a.mch_no),
            sign = a.sign_type.as_str(),
            len = a.secret.chars().count(),
            req_sign = if a.req_sign { "是" } else { "否" },
            notify = opt(a.notify_url.as_deref()),
            timeout = a.order_timeout_min,
            limit = a
                .limit_amount
                .map_or_else(|| "—".to_string(), |l| yuan(l.0)),
        );
    }
    body.push_str("</tbody></table>");
    layout(ctx, "应用", "apps", &body)
}
