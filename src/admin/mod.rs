//! The admin console under `/admin`: who may see it, and which page or action a request is.
//!
//! Access takes the admin token: scripts send `Authorization: Bearer TOKEN`; people log in
//! through the form at `/admin/login`, which sets an `HttpOnly; SameSite=Strict` session cookie
//! (sessions live in the database for 12 hours) and gives the session a CSRF token that every
//! cookie-authenticated POST must carry. Only the token's sha256 is stored. Without valid
//! credentials a request gets 401 (an `Authorization` header, or a client that does not ask for
//! HTML) or a redirect to the login page, and never any data.
//!
//! The console reads through `store::admin` and changes orders only through the same paths as
//! the API (`actions`): a close is `close::close_order` with actor `admin`, a refund is
//! `refund::Refunds::refund`, a resend is `Store::resend_event`. Rendering is in `pages`; query
//! strings, forms and cookies are read with `crate::form`.

mod actions;
mod pages;

use sha2::{Digest, Sha256};

use crate::domain::PayStatus;
use crate::error::Error;
use crate::form;
use crate::gateway::Gateway;
use crate::http::{Request, Response};
use crate::sign::constant_time_eq;
use crate::store::admin::OrderFilter;
use crate::store::Offline;
use crate::sys::{self, Random, UtcOffset};
use pages::Ctx;

/// What a client address held back after too many failed logins is told.
const MSG_LOGIN_THROTTLED: &str = "登录失败次数过多, 请一分钟后再试";

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "unipay_admin";
/// How long a browser session lives.
const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// Orders on one page of the list.
pub const PER_PAGE: i64 = 50;
/// The deepest page the list serves (50 million orders).
const MAX_PAGE: i64 = 1_000_000;

/// The lower-case sha256 hex of a token or session id: what the database keeps.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// Makes sure the database has an admin token, at start-up: `given` (from `--admin-token`)
/// replaces the stored one; without it a token is generated when there is none. Returns a
/// generated token, which the caller prints once; it is not kept anywhere in clear.
pub fn prepare_token(
    db: &mut Offline,
    given: Option<&str>,
    random: &dyn Random,
    now: i64,
) -> Result<Option<String>, Box<dyn std::error::Error + Send + Sync>> {
    if let Some(token) = given {
        db.set_admin_token_hash(&hash_token(token), now)?;
        return Ok(None);
    }
    if db.admin_token_hash()?.is_some() {
        return Ok(None);
    }
    let token = sys::random_alnum(random, 32);
    db.set_admin_token_hash(&hash_token(&token), now)?;
    Ok(Some(token))
}

/// Who is asking, once authenticated.
enum Who {
    /// A script with the token.
    Bearer,
    /// A logged-in browser.
    Session { id_hash: String, csrf: String },
}

/// Answers every request under `/admin`.
pub fn handle(gw: &Gateway, req: &Request) -> Response {
    let now = gw.now();
    let get = matches!(req.method.as_str(), "GET" | "HEAD");
    let post = req.method == "POST";
    let response = match req.path.as_str() {
        "/admin/login" if get => Ok(Response::html(pages::login(None))),
        "/admin/login" if post => login(gw, req, now),
        "/admin/login" => Ok(method_not_allowed()),
        _ => match authenticate(gw, req, now) {
            Err(refused) => Ok(refused),
            Ok(who) => authorized(gw, req, &who, now),
        },
    };
    let response = response.unwrap_or_else(|err| {
        log::error!("admin {} {}: {err}", req.method, req.path);
        let ctx = Ctx {
            offset: gw.offset,
            csrf: None,
        };
        Response::html(pages::message(&ctx, "系统错误", "请查看服务器日志")).with_status(500)
    });
    with_security_headers(response)
}

/// Headers of every console response: never cached, never framed, no script at all.
fn with_security_headers(r: Response) -> Response {
    r.with_header("Cache-Control", "no-store".into())
        .with_header("X-Frame-Options", "DENY".into())
        .with_header("X-Content-Type-Options", "nosniff".into())
        .with_header("Referrer-Policy", "no-referrer".into())
        .with_header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'"
                .into(),
        )
}

fn redirect(location: &str) -> Response {
    Response::text(303, "").with_header("Location", location.to_string())
}

fn unauthorized() -> Response {
    Response::text(401, "401 unauthorized: admin token required\n").with_header(
        "WWW-Authenticate",
        r#"Bearer realm="unipay admin""#.to_string(),
    )
}

fn method_not_allowed() -> Response {
    Response::text(405, "405 method not allowed\n")
}

/// Checks the bearer token (for `/metrics`): 401 without it or with a wrong one, 429 while the
/// client's address is throttled for failed attempts (a wrong token counts as one).
pub fn check_bearer(gw: &Gateway, req: &Request, now: i64) -> Result<(), Response> {
    let ip = req.remote_addr.ip();
    if let Some(wait) = gw.logins.blocked(ip, now) {
        return Err(Response::text(429, "429 too many failed attempts\n")
            .with_header("Retry-After", wait.to_string()));
    }
    let token = req
        .header("authorization")
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let stored = gw.store.admin_token_hash().map_err(|e| {
        log::error!("metrics authentication: {e}");
        Response::text(500, "500 internal error\n")
    })?;
    match (token, stored) {
        (Some(token), Some(hash)) if token_matches(&hash, token) => Ok(()),
        (token, _) => {
            if token.is_some() {
                gw.logins.failed(ip, now);
            }
            Err(unauthorized())
        }
    }
}

/// Checks the bearer token or the session cookie; the refusal is the response to send.
fn authenticate(gw: &Gateway, req: &Request, now: i64) -> Result<Who, Response> {
    let store_err = |e: Error| {
        log::error!("admin authentication: {e}");
        Response::text(500, "500 internal error\n")
    };
    if let Some(auth) = req.header("authorization") {
        // A wrong or malformed Authorization header is 401, whatever else the request has.
        let token = match auth.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(unauthorized()),
        };
        let stored = gw.store.admin_token_hash().map_err(store_err)?;
        return match stored {
            Some(hash) if token_matches(&hash, token) => Ok(Who::Bearer),
            _ => Err(unauthorized()),
        };
    }
    if let Some(id) = req
        .header("cookie")
        .and_then(|h| form::cookie(h, SESSION_COOKIE))
    {
        let id_hash = hash_token(id);
        if let Some(csrf) = gw.store.admin_session(&id_hash, now).map_err(store_err)? {
            return Ok(Who::Session { id_hash, csrf });
        }
    }
    let wants_html = req
        .header("accept")
        .is_some_and(|a| a.contains("text/html"));
    match wants_html {
        true => Err(redirect("/admin/login")),
        false => Err(unauthorized()),
    }
}

/// Whether `token` hashes to `stored_hash`, compared in constant time.
fn token_matches(stored_hash: &str, token: &str) -> bool {
    constant_time_eq(stored_hash.as_bytes(), hash_token(token).as_bytes())
}

/// `POST /admin/login`: the token from the form starts a session.
fn login(gw: &Gateway, req: &Request, now: i64) -> Result<Response, Error> {
    let ip = req.remote_addr.ip();
    if let Some(wait) = gw.logins.blocked(ip, now) {
        log::warn!("admin login from {ip} held back for {wait}s (too many failures)");
        return Ok(Response::html(pages::login(Some(MSG_LOGIN_THROTTLED)))
            .with_status(429)
            .with_header("Retry-After", wait.to_string()));
    }
    let fields = form::parse(&String::from_utf8_lossy(&req.body));
    let token = form::get(&fields, "token").unwrap_or("").trim();
    let stored = gw.store.admin_token_hash()?;
    let ok = match &stored {
        Some(hash) => !token.is_empty() && token_matches(hash, token),
        None => false,
    };
    if !ok {
        gw.logins.failed(ip, now);
        log::warn!("admin login refused from {ip}");
        return Ok(Response::html(pages::login(Some("令牌不正确"))).with_status(401));
    }
    let random = gw.random.as_ref();
    let id = sys::random_alnum(random, 32);
    let csrf = sys::random_alnum(random, 32);
    gw.store
        .create_admin_session(hash_token(&id), csrf, now, now + SESSION_TTL_MS)?;
    log::info!("admin login from {}", req.remote_addr.ip());
    Ok(redirect("/admin").with_header(
        "Set-Cookie",
        format!(
            "{SESSION_COOKIE}={id}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_TTL_MS / 1000
        ),
    ))
}

/// The pages and actions, for an authenticated caller.
fn authorized(gw: &Gateway, req: &Request, who: &Who, now: i64) -> Result<Response, Error> {
    let post = req.method == "POST";
    let get = matches!(req.method.as_str(), "GET" | "HEAD");
    let ctx = Ctx {
        offset: gw.offset,
        csrf: match who {
            Who::Session { csrf, .. } => Some(csrf.as_str()),
            Who::Bearer => None,
        },
    };
    let fields = match post {
        true => form::parse(&String::from_utf8_lossy(&req.body)),
        false => Vec::new(),
    };
    if let (true, Who::Session { csrf, .. }) = (post, who) {
        let given = form::get(&fields, "csrf").unwrap_or("");
        if !constant_time_eq(given.as_bytes(), csrf.as_bytes()) {
            log::warn!(
                "admin {} without a valid CSRF token from {}",
                req.path,
                req.remote_addr.ip()
            );
            let page = pages::message(
                &ctx,
                "请求被拒绝",
                "缺少或错误的 CSRF 令牌, 请刷新页面后重试",
            );
            return Ok(Response::html(page).with_status(403));
        }
    }
    let rest = req.path.strip_prefix("/admin").unwrap_or("");
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (segments.as_slice(), get, post) {
        ([], true, _) => dashboard(gw, &ctx, now),
        (["orders"], true, _) => orders(gw, &ctx, req),
        (["orders", no], true, _) => order(gw, &ctx, req, &form::decode(no, false)),
        (["orders", no, action @ ("close" | "cancel")], _, true) => {
            let use_cancel = *action == "cancel";
            actions::close(gw, &ctx, req, &form::decode(no, false), use_cancel, now)
        }
        (["orders", no, "refund"], _, true) => {
            let order_no = form::decode(no, false);
            actions::refund(gw, &ctx, req, &fields, &order_no, now)
        }
        (["events", id, "resend"], _, true) => actions::resend(gw, &ctx, id, now),
        (["apps"], true, _) => {
            let apps = gw.store.list_apps()?;
            Ok(Response::html(pages::apps(&ctx, &apps)))
        }
        (["logout"], _, true) => {
            if let Who::Session { id_hash, .. } = who {
                gw.store.delete_admin_session(id_hash.clone())?;
            }
            Ok(redirect("/admin/login").with_header(
                "Set-Cookie",
                format!("{SESSION_COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0"),
            ))
        }
        ([] | ["orders"] | ["orders", _] | ["apps"], false, _)
        | (
            ["orders", _, "close" | "cancel" | "refund"] | ["events", _, "resend"] | ["logout"],
            _,
            false,
        ) => Ok(method_not_allowed()),
        _ => Ok(not_found(&ctx, "页面不存在")),
    }
}

fn not_found(ctx: &Ctx, text: &str) -> Response {
    Response::html(pages::message(ctx, "未找到", text)).with_status(404)
}

/// Midnight of `now`'s day in `offset`, and the last millisecond of that day.
fn today(now: i64, offset: UtcOffset) -> (i64, i64) {
    const DAY: i64 = 86_400_000;
    let off = i64::from(offset.0) * 1000;
    let start = (now + off).div_euclid(DAY) * DAY - off;
    (start, start + DAY - 1)
}

fn dashboard(gw: &Gateway, ctx: &Ctx, now: i64) -> Result<Response, Error> {
    let (start, end) = today(now, gw.offset);
    let d = gw.store.admin_dashboard(start, end)?;
    Ok(Response::html(pages::dashboard(ctx, &d, start, end)))
}

/// The list's filter from a query string; the error text says what is wrong with it.
fn parse_filter(
    fields: &[(String, String)],
    offset: UtcOffset,
) -> Result<(OrderFilter, i64), &'static str> {
    let text = |name: &str| {
        form::get(fields, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let status = match text("status") {
        None => None,
        Some(s) => Some(
            PayStatus::parse(&s)
                .ok_or("状态应为 wait, progress, success, close, cancel 或 fail")?,
        ),
    };
    let time = |name: &str, end_of_day: bool| -> Result<Option<i64>, &'static str> {
        let Some(v) = text(name) else {
            return Ok(None);
        };
        // A date alone means the whole day.
        let full = match (v.len(), end_of_day) {
            (10, false) => format!("{v} 00:00:00"),
            (10, true) => format!("{v} 23:59:59"),
            _ => v,
        };
        sys::parse_time(&full, offset)
            .map(Some)
            .ok_or("时间格式应为 yyyy-MM-dd HH:mm:ss")
    };
    let page = match text("page") {
        None => 1,
        Some(p) => match p.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => return Err("页码应为 1 到 1000000 的整数"),
        },
    };
    let attention = match text("attention").as_deref() {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => return Err("attention 应为 1 (只看需要人工处理的订单) 或 0"),
    };
    let long = |v: Option<String>| match v {
        Some(s) if s.chars().count() > 150 => Err("筛选条件过长"),
        other => Ok(other),
    };
    let filter = OrderFilter {
        status,
        channel: long(text("channel"))?,
        app_id: long(text("appId"))?,
        q: long(text("q"))?,
        from: time("from", false)?,
        // `to` names a second: every millisecond of it is included.
        to: time("to", true)?.map(|t| t + 999),
        attention,
    };
    Ok((filter, page))
}

fn orders(gw: &Gateway, ctx: &Ctx, req: &Request) -> Result<Response, Error> {
    let fields = form::parse(&req.query);
    let apps = gw.store.list_apps()?;
    let channels = gw.store.admin_channels()?;
    let (filter, page, error) = match parse_filter(&fields, gw.offset) {
        Ok((f, p)) => (f, p, None),
        Err(why) => (OrderFilter::default(), 1, Some(why)),
    };
    let (counts, rows) = match error {
        Some(_) => Default::default(),
        None => gw
            .store
            .admin_order_list(&filter, (page - 1) * PER_PAGE, PER_PAGE)?,
    };
    let list = pages::OrderList {
        filter: &filter,
        raw: &fields,
        error,
        counts,
        orders: &rows,
        page,
        per_page: PER_PAGE,
        channels: &channels,
        apps: &apps,
    };
    let status = if error.is_some() { 400 } else { 200 };
    Ok(Response::html(pages::orders(ctx, &list)).with_status(status))
}

fn order(gw: &Gateway, ctx: &Ctx, req: &Request, order_no: &str) -> Result<Response, Error> {
    let Some(detail) = gw.store.admin_order(order_no)? else {
        return Ok(not_found(ctx, "支付订单不存在"));
    };
    let fields = form::parse(&req.query);
    // Only a message of the fixed list, by its key: no text of the query reaches the page.
    let flash = form::get(&fields, "flash").and_then(actions::flash_message);
    // A new refund number per page: its form sent twice is one refund.
    let refund_no = actions::new_refund_no(gw.random.as_ref());
    Ok(Response::html(pages::order(
        ctx, &detail, flash, &refund_no,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_refuse() {
        let offset = UtcOffset::CST;
        let parse = |q: &str| parse_filter(&form::parse(q), offset);
        let (f, page) = parse("").unwrap();
        assert_eq!((f, page), (OrderFilter::default(), 1));
        let (f, page) = parse(
            "status=close&channel=sandbox&appId=A1&q=+P1+&from=2025-01-02+03%3A04%3A05&to=2025-01-03&page=3",
        )
        .unwrap();
        assert_eq!(page, 3);
        assert_eq!(f.status, Some(PayStatus::Close));
        assert_eq!(f.channel.as_deref(), Some("sandbox"));
        assert_eq!(f.app_id.as_deref(), Some("A1"));
        assert_eq!(f.q.as_deref(), Some("P1"));
        assert_eq!(f.from, sys::parse_time("2025-01-02 03:04:05", offset));
        assert_eq!(
            f.to,
            sys::parse_time("2025-01-03 23:59:59", offset).map(|t| t + 999)
        );
        assert!(parse("status=paid").is_err());
        assert!(parse("from=yesterday").is_err());
        assert!(parse("page=0").is_err());
        assert!(parse("page=x").is_err());
        assert!(parse("attention=1").unwrap().0.attention);
        assert!(!parse("attention=0").unwrap().0.attention);
        assert!(parse("attention=yes").is_err());
        // Empty fields are no filter (what an untouched form sends).
        assert_eq!(
            parse("q=&status=&channel=&appId=&from=&to=&attention=")
                .unwrap()
                .0,
            OrderFilter::default()
        );
    }

    #[test]
    fn today_is_the_local_day() {
        let offset = UtcOffset::CST;
        let now = sys::parse_time("2025-04-10 00:30:00", offset).unwrap();
        let (start, end) = today(now, offset);
        assert_eq!(sys::format_time(start, offset), "2025-04-10 00:00:00");
        assert_eq!(sys::format_time(end, offset), "2025-04-10 23:59:59");
    }

    #[test]
    fn tokens_hash_to_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(token_matches(&hash_token("T"), "T"));
        assert!(!token_matches(&hash_token("T"), "t"));
    }
}
