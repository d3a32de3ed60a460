//! The admin console against the real binary: authentication (none, wrong, bearer, cookie,
//! CSRF), the generated token, escaping, filters (the needs-attention filter with real late
//! payments), paging, actions (close, cancel, resend, refund), 404s, the dashboard and the apps
//! page.

use rusqlite::params;
use serde_json::json;

use crate::helpers::{http_with, now_ms, wait_for, App, Reply, TestServer};
use crate::notify::Merchant;
use unipay::{form, sys};

const TOKEN: &str = "test-admin-token-1";

fn server() -> TestServer {
    TestServer::start_with(&["--admin-token", TOKEN])
}

/// `GET path` as a script: `Authorization: Bearer TOKEN`.
fn get(srv: &TestServer, path: &str) -> Reply {
    let auth = format!("Bearer {TOKEN}");
    http_with(&srv.addr, "GET", path, &[("Authorization", &auth)], b"")
}

/// `POST path` as a script (no CSRF token needed: a bearer token is never sent by a browser on
/// its own).
fn post(srv: &TestServer, path: &str) -> Reply {
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    http_with(&srv.addr, "POST", path, &headers, b"")
}

/// A browser that has logged in through the form.
struct Browser {
    cookie: String,
    csrf: String,
}

const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

impl Browser {
    #[track_caller]
    fn login(srv: &TestServer) -> Browser {
        let body = format!("token={}", TOKEN);
        let r = http_with(
            &srv.addr,
            "POST",
            "/admin/login",
            &[
                ("Accept", HTML),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(r.header("location"), Some("/admin"));
        let set = r
            .header("set-cookie")
            .expect("a session cookie")
            .to_string();
        for part in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
            assert!(set.contains(part), "cookie has {part}: {set}");
        }
        let cookie = set.split(';').next().unwrap().to_string();
        assert!(
            cookie.starts_with("unipay_admin=") && cookie.len() > 30,
            "{set}"
        );
        let mut b = Browser {
            cookie,
            csrf: String::new(),
        };
        let page = b.get(srv, "/admin");
        assert_eq!(page.status, 200, "{}", page.body);
        b.csrf = csrf_of(&page.body);
        b
    }

    fn get(&self, srv: &TestServer, path: &str) -> Reply {
        let headers = [("Accept", HTML), ("Cookie", self.cookie.as_str())];
        http_with(&srv.addr, "GET", path, &headers, b"")
    }

    /// A form POST with the cookie and `body` (add `csrf=` yourself, or not).
    fn post(&self, srv: &TestServer, path: &str, body: &str) -> Reply {
        let headers = [
            ("Accept", HTML),
            ("Cookie", self.cookie.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        http_with(&srv.addr, "POST", path, &headers, body.as_bytes())
    }

    fn post_with_csrf(&self, srv: &TestServer, path: &str) -> Reply {
        self.post(srv, path, &format!("csrf={}", self.csrf))
    }
}

/// The CSRF token of a page's forms.
#[track_caller]
fn csrf_of(body: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let at = body.find(marker).expect("the page has a CSRF field") + marker.len();
    body[at..at + body[at..].find('"').unwrap()].to_string()
}

/// The order numbers listed on an order-list page, in order.
fn listed(body: &str) -> Vec<String> {
    body.split(r#"<tr data-order=""#)
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_string())
        .collect()
}

/// The count shown for `status` (or "all") at the top of an order-list page.
#[track_caller]
fn shown_count(body: &str, status: &str) -> i64 {
    let marker = format!(r#"data-status="{status}">"#);
    let at = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no count for {status}"))
        + marker.len();
    let rest = &body[at..];
    let b = rest.find("<b>").unwrap() + 3;
    rest[b..b + rest[b..].find("</b>").unwrap()]
        .parse()
        .unwrap()
}

#[track_caller]
fn location(r: &Reply) -> String {
    assert_eq!(r.status, 303, "{}", r.body);
    r.header("location").expect("Location").to_string()
}

/// Whether a page leaks anything about `order_no`.
fn shows(r: &Reply, order_no: &str) -> bool {
    r.body.contains(order_no)
}

/// The query-string encoding of a time filter value.
fn q_time(ms: i64, srv: &TestServer) -> String {
    sys::format_time(ms, srv.offset)
        .replace(' ', "+")
        .replace(':', "%3A")
}

/// Read-write access to the server's database, for what the API cannot do (move an order in
/// time, flag it for an operator).
fn db_write(srv: &TestServer) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(&srv.db).expect("open db");
    c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    c
}

#[test]
fn without_credentials_nothing_is_shown() {
    let srv = server();
    let app = srv.app("ADM_AUTH");
    let order_no = srv.pre_pay(&app, "AUTH-1");
    let paths = [
        "/admin".to_string(),
        "/admin/".into(),
        "/admin/orders".into(),
        format!("/admin/orders?q={order_no}"),
        format!("/admin/orders/{order_no}"),
        "/admin/apps".into(),
        "/admin/no-such-page".into(),
    ];
    for path in &paths {
        // An API client (no Accept: text/html): 401.
        let r = http_with(&srv.addr, "GET", path, &[], b"");
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert!(r.header("www-authenticate").is_some(), "{path}");
        assert!(!shows(&r, &order_no) && !shows(&r, "ADM_AUTH"), "{path}");
        // A browser: sent to the login form.
        let r = http_with(&srv.addr, "GET", path, &[("Accept", HTML)], b"");
        assert_eq!(location(&r), "/admin/login", "{path}");
        assert!(!shows(&r, &order_no), "{path}");
        // A wrong bearer token: 401, never a redirect, even for a browser.
        for auth in ["Bearer wrong", "Bearer ", "Basic dGVzdDp0ZXN0", TOKEN] {
            let headers = [("Accept", HTML), ("Authorization", auth)];
            let r = http_with(&srv.addr, "GET", path, &headers, b"");
            assert_eq!(r.status, 401, "{path} with {auth}: {}", r.body);
            assert!(!shows(&r, &order_no), "{path}");
        }
        // A made-up session cookie is no session.
        let headers = [("Cookie", "unipay_admin=forged")];
        let r = http_with(&srv.addr, "GET", path, &headers, b"");
        assert_eq!(r.status, 401, "{path}");
    }
    // Actions too, and nothing changes.
    for action in ["close", "cancel"] {
        let path = format!("/admin/orders/{order_no}/{action}");
        let r = http_with(&srv.addr, "POST", &path, &[], b"");
        assert_eq!(r.status, 401, "{path}");
        let r = http_with(&srv.addr, "POST", &path, &[("Accept", HTML)], b"");
        assert_eq!(location(&r), "/admin/login");
    }
    assert_eq!(srv.status(&app, "AUTH-1"), "wait");
    assert_eq!(srv.close_records(&order_no), 0);

    // The right bearer token opens every page; the login page needs nothing.
    for path in &paths[..6] {
        let r = get(&srv, path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let r = get(&srv, &format!("/admin/orders?q={order_no}"));
    assert_eq!(listed(&r.body), [order_no.clone()]);
    let r = http_with(&srv.addr, "GET", "/admin/login", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.contains(r#"name="token""#));
    assert!(!shows(&r, &order_no));
    // Scheme names are case-insensitive.
    let auth = format!("bearer {TOKEN}");
    let r = http_with(&srv.addr, "GET", "/admin", &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 200);
    // Pages are not cached and cannot be framed.
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert!(r
        .header("content-security-policy")
        .is_some_and(|c| c.contains("default-src 'none'")));
}

#[test]
fn login_form_cookie_csrf_and_logout() {
    let mut srv = server();
    let app = srv.app("ADM_LOGIN");
    let order_no = srv.pre_pay(&app, "LOGIN-1");

    // A wrong token: 401, the form again, no cookie.
    let form = [
        ("Accept", HTML),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    for body in ["token=nope", "token=", "", "other=1"] {
        let r = http_with(&srv.addr, "POST", "/admin/login", &form, body.as_bytes());
        assert_eq!(r.status, 401, "{body}");
        assert!(r.header("set-cookie").is_none(), "{body}");
        assert!(r.body.contains("令牌不正确"), "{body}");
    }

    // The right token, percent-encoded as a browser sends it.
    let b = Browser::login(&srv);
    let r = b.get(&srv, "/admin/orders");
    assert_eq!(r.status, 200);
    assert_eq!(listed(&r.body), [order_no.clone()]);
    let r = b.get(&srv, &format!("/admin/orders/{order_no}"));
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(r#"id="close""#),
        "a wait order can be closed"
    );

    // A cookie-authenticated POST without the CSRF token (or with a wrong one) is refused and
    // changes nothing.
    let close = format!("/admin/orders/{order_no}/close");
    // The token is compared exactly: the right letters in another case are a wrong token.
    let swapped: String = b
        .csrf
        .chars()
        .map(|c| match c.is_ascii_lowercase() {
            true => c.to_ascii_uppercase(),
            false => c.to_ascii_lowercase(),
        })
        .collect();
    assert_ne!(swapped, b.csrf);
    let swapped = format!("csrf={swapped}");
    let one_short = format!("csrf={}", &b.csrf[..b.csrf.len() - 1]);
    for body in ["", "csrf=", "csrf=wrong", "token=x", &swapped, &one_short] {
        let r = b.post(&srv, &close, body);
        assert_eq!(r.status, 403, "{body}: {}", r.body);
    }
    let r = b.post(&srv, "/admin/logout", "");
    assert_eq!(r.status, 403);
    assert_eq!(srv.status(&app, "LOGIN-1"), "wait");
    assert_eq!(srv.close_records(&order_no), 0);

    // Sessions live in the database: they survive a restart.
    srv.restart();
    let r = b.get(&srv, "/admin");
    assert_eq!(r.status, 200, "{}", r.body);

    // With the token the close goes through.
    let r = b.post_with_csrf(&srv, &close);
    assert!(location(&r).starts_with(&format!("/admin/orders/{order_no}?")));
    assert_eq!(srv.status(&app, "LOGIN-1"), "close");

    // Logout ends the session; the old cookie is nothing any more.
    let r = b.post_with_csrf(&srv, "/admin/logout");
    assert_eq!(location(&r), "/admin/login");
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let r = b.get(&srv, "/admin");
    assert_eq!(location(&r), "/admin/login");
    let r = b.post_with_csrf(&srv, "/admin/logout");
    assert_eq!(location(&r), "/admin/login");
}

#[test]
fn a_generated_token_is_printed_once_and_works() {
    let mut srv = TestServer::start();
    let prefix = "new admin token for ";
    let line = wait_for("the admin token on stdout", || {
        srv.stdout_lines()
            .into_iter()
            .find(|l| l.starts_with(prefix))
    });
    let lines = srv.stdout_lines();
    assert!(lines[0].starts_with("listening on http://"), "{lines:?}");
    assert!(
        line.contains(&format!("{}/admin", srv.base_url())),
        "{line}"
    );
    let token = line.rsplit(": ").next().unwrap().to_string();
    assert_eq!(token.len(), 32, "{line}");
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()), "{line}");

    let bearer = |srv: &TestServer, token: &str| {
        let auth = format!("Bearer {token}");
        http_with(
            &srv.addr,
            "GET",
            "/admin/orders",
            &[("Authorization", &auth)],
            b"",
        )
        .status
    };
    assert_eq!(bearer(&srv, &token), 200);
    assert_eq!(bearer(&srv, &token.to_lowercase()), 401);

    // Only its hash is stored.
    let stored: String = srv
        .db_read()
        .query_row("SELECT token_hash FROM admin_token", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, unipay::admin::hash_token(&token));
    assert!(!stored.contains(&token));

    // Not printed again, and still the token after a restart.
    srv.restart();
    assert_eq!(bearer(&srv, &token), 200);
    srv.kill9();
    let printed = srv
        .stdout_lines()
        .iter()
        .filter(|l| l.contains(&token) || l.starts_with(prefix))
        .count();
    assert_eq!(printed, 1, "{:?}", srv.stdout_lines());
    // Never in the log either.
    assert!(!srv.stderr().contains(&token));

    // A server given --admin-token prints none, and the given token is the one checked.
    let given = server();
    assert!(!given.stdout_lines().iter().any(|l| l.starts_with(prefix)));
    assert_eq!(bearer(&given, TOKEN), 200);
    assert!(!given.stderr().contains(TOKEN));
}

#[test]
fn merchant_values_are_escaped() {
    let srv = server();
    let app = srv.create_app(
        "M_ESC",
        "ADM_ESC",
        &["--notify-url", "http://127.0.0.1:9/n?a=<u>x</u>"],
    );
    let script = "<script>alert(1)</script>";
    let order_no = srv.pre_pay_with(
        &app,
        "ESC<i>1</i>",
        json!({
            "title": script,
            "description": "<img src=x onerror=alert(2)>",
            "attach": "\"><b>attach</b>",
            "notifyUrl": "http://127.0.0.1:9/cb?x=<s>",
            "clientIp": "127.0.0.1",
        }),
    );
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;";
    let list = get(&srv, "/admin/orders");
    let detail = get(&srv, &format!("/admin/orders/{order_no}"));
    for page in [&list, &detail] {
        assert_eq!(page.status, 200);
        assert!(!page.body.contains("<script"), "{}", page.body);
        assert!(page.body.contains(escaped), "{}", page.body);
        assert!(page.body.contains("ESC&lt;i&gt;1&lt;/i&gt;"));
        assert!(!page.body.contains("<i>1</i>"));
    }
    assert!(!detail.body.contains("<img"));
    assert!(detail.body.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(detail.body.contains("&quot;&gt;&lt;b&gt;attach&lt;/b&gt;"));
    assert!(detail.body.contains("http://127.0.0.1:9/cb?x=&lt;s&gt;"));
    // The search by that bizOrderNo finds it (percent-decoded), and echoes it escaped.
    let r = get(&srv, "/admin/orders?q=ESC%3Ci%3E1%3C%2Fi%3E");
    assert_eq!(listed(&r.body), [order_no.clone()]);
    assert!(!r.body.contains("<i>1</i>"));
    // The flash message of an action comes from a fixed list by its key: text in the query
    // string never reaches the page, and an unknown key shows nothing.
    for query in [
        "ok=0&msg=%3Cscript%3Ealert(3)%3C%2Fscript%3E",
        "flash=%3Cscript%3Ealert(3)%3C%2Fscript%3E",
        "flash=closed%3Cb%3E",
    ] {
        let r = get(&srv, &format!("/admin/orders/{order_no}?{query}"));
        assert_eq!(r.status, 200);
        assert!(
            !r.body.contains("<script") && !r.body.contains("alert(3)"),
            "{query}"
        );
        assert!(!r.body.contains(r#"id="flash""#), "{query}: {}", r.body);
    }
    let r = get(&srv, &format!("/admin/orders/{order_no}?flash=closed"));
    assert!(r.body.contains("操作成功: 订单已关闭"));
    // The apps page: the notify URL escaped, the secret nowhere.
    let r = get(&srv, "/admin/apps");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("ADM_ESC"));
    assert!(r
        .body
        .contains("http://127.0.0.1:9/n?a=&lt;u&gt;x&lt;/u&gt;"));
    assert!(!r.body.contains(&app.secret), "the secret is masked");
    assert!(r.body.contains("md5"));
}

/// Orders of two apps in every status, some moved back in time.
struct Fixture {
    srv: TestServer,
    a1: App,
    /// bizOrderNo → orderNo.
    nos: std::collections::HashMap<&'static str, String>,
}

fn fixture() -> Fixture {
    let srv = server();
    let a1 = srv.app("ADM_F1");
    let a2 = srv.app("ADM_F2");
    let mut nos = std::collections::HashMap::new();
    nos.insert("W1", srv.pre_pay(&a1, "W1"));
    nos.insert("P1", srv.pay(&a1, "P1")["orderNo"].as_str().unwrap().into());
    let s1 = srv.pay(&a1, "S1")["orderNo"].as_str().unwrap().to_string();
    srv.sandbox_pay(&s1).expect(0, "success");
    nos.insert("S1", s1);
    nos.insert("C1", srv.pre_pay(&a1, "C1"));
    srv.close(&a1, json!({"bizOrderNo": "C1"}))
        .expect(0, "success");
    nos.insert("P2", srv.pay(&a2, "P2")["orderNo"].as_str().unwrap().into());
    nos.insert("X2", srv.pay(&a2, "X2")["orderNo"].as_str().unwrap().into());
    srv.close(&a2, json!({"bizOrderNo": "X2", "useCancel": true}))
        .expect(0, "success");
    // The same bizOrderNo in both apps.
    nos.insert("DUP1", srv.pre_pay(&a1, "DUP"));
    nos.insert("DUP2", srv.pre_pay(&a2, "DUP"));
    Fixture { srv, a1, nos }
}

impl Fixture {
    fn no(&self, biz: &str) -> String {
        self.nos[biz].clone()
    }

    /// The order numbers listed for a query string, as a sorted list of bizOrderNo keys.
    #[track_caller]
    fn list(&self, query: &str) -> Vec<&'static str> {
        let r = get(&self.srv, &format!("/admin/orders?{query}"));
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        let listed = listed(&r.body);
        let mut keys: Vec<&'static str> = self
            .nos
            .iter()
            .filter(|(_, no)| listed.contains(no))
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(keys.len(), listed.len(), "{query}");
        keys.sort();
        keys
    }
}

#[test]
fn filters_by_status_channel_app_number_and_time() {
    let f = fixture();
    let srv = &f.srv;
    let all = f.list("");
    assert_eq!(all, ["C1", "DUP1", "DUP2", "P1", "P2", "S1", "W1", "X2"]);
    assert_eq!(f.list("status=wait"), ["DUP1", "DUP2", "W1"]);
    assert_eq!(f.list("status=progress"), ["P1", "P2"]);
    assert_eq!(f.list("status=success"), ["S1"]);
    assert_eq!(f.list("status=close"), ["C1"]);
    assert_eq!(f.list("status=cancel"), ["X2"]);
    assert_eq!(f.list("status=fail"), Vec::<&str>::new());
    assert_eq!(f.list("channel=sandbox"), ["P1", "P2", "S1", "X2"]);
    assert_eq!(f.list("channel=nope"), Vec::<&str>::new());
    assert_eq!(f.list("appId=ADM_F2"), ["DUP2", "P2", "X2"]);
    assert_eq!(f.list("appId=ADM_F1&status=wait"), ["DUP1", "W1"]);
    assert_eq!(
        f.list("appId=ADM_F2&channel=sandbox&status=progress"),
        ["P2"]
    );
    // `q` is any order number: orderNo, bizOrderNo (across apps), outOrderNo.
    assert_eq!(f.list(&format!("q={}", f.no("P1"))), ["P1"]);
    assert_eq!(f.list("q=DUP"), ["DUP1", "DUP2"]);
    assert_eq!(f.list("q=DUP&appId=ADM_F1"), ["DUP1"]);
    assert_eq!(f.list("q=+S1+"), ["S1"]);
    let out_no = srv.order(&f.a1, "S1")["outOrderNo"]
        .as_str()
        .expect("a paid order has the channel's trade number")
        .to_string();
    assert_eq!(f.list(&format!("q={out_no}")), ["S1"]);
    assert_eq!(f.list("q=P0000"), Vec::<&str>::new());

    // Counts per status under the other filters, whatever the status filter.
    let r = get(srv, "/admin/orders?appId=ADM_F1&status=close");
    for (status, n) in [
        ("all", 5),
        ("wait", 2),
        ("progress", 1),
        ("success", 1),
        ("close", 1),
        ("cancel", 0),
        ("fail", 0),
    ] {
        assert_eq!(shown_count(&r.body, status), n, "{status}");
    }

    // Time: move W1 two days back and P2 to one hour ago (the counts follow, by trigger).
    let now = now_ms();
    let day = 86_400_000;
    let w1_at = now - 2 * day - 3_600_000;
    let p2_at = now - 3_600_000;
    let c = db_write(srv);
    c.execute(
        "UPDATE pay_order SET created_at = ?2 WHERE order_no = ?1",
        params![f.no("W1"), w1_at],
    )
    .unwrap();
    c.execute(
        "UPDATE pay_order SET created_at = ?2 WHERE order_no = ?1",
        params![f.no("P2"), p2_at],
    )
    .unwrap();
    drop(c);
    let t = |ms: i64| q_time(ms, srv);
    // Newest first: W1 is now the last of the list.
    let r = get(srv, "/admin/orders");
    assert_eq!(listed(&r.body).last(), Some(&f.no("W1")));
    assert_eq!(
        f.list(&format!("from={}&to={}", t(w1_at - 1000), t(w1_at + 1000))),
        ["W1"]
    );
    assert_eq!(f.list(&format!("from={}", t(w1_at + 1000))).len(), 7);
    assert_eq!(f.list(&format!("to={}", t(p2_at))), ["P2", "W1"]);
    assert_eq!(
        f.list(&format!("from={}&to={}", t(p2_at), t(p2_at))),
        ["P2"]
    );
    assert_eq!(
        f.list(&format!("from={}&status=progress", t(now - 60_000))),
        ["P1"]
    );
    assert_eq!(
        f.list(&format!("to={}&appId=ADM_F1", t(now - 60_000))),
        ["W1"]
    );
    // A date alone is the whole day; whole days are counted from the counters.
    let w1_day = sys::format_time(w1_at, srv.offset)[..10].to_string();
    assert_eq!(f.list(&format!("from={w1_day}&to={w1_day}")), ["W1"]);
    let r = get(
        srv,
        &format!(
            "/admin/orders?from={}&to={}",
            t(w1_at - 5 * day),
            t(now + day)
        ),
    );
    assert_eq!(shown_count(&r.body, "all"), 8);
    assert_eq!(shown_count(&r.body, "wait"), 3);
    let r = get(
        srv,
        &format!("/admin/orders?from={}&to={}", t(w1_at - 5 * day), t(p2_at)),
    );
    assert_eq!(shown_count(&r.body, "all"), 2);
    assert_eq!(shown_count(&r.body, "wait"), 1);
    assert_eq!(shown_count(&r.body, "progress"), 1);
    assert_eq!(
        f.list(&format!("from={}", t(now + 3_600_000))),
        Vec::<&str>::new()
    );

    // Bad filters are a 400 page that lists nothing.
    for query in [
        "status=paid",
        "from=yesterday",
        "to=2025-13-01+00%3A00%3A00",
        "page=0",
        "page=abc",
    ] {
        let r = get(srv, &format!("/admin/orders?{query}"));
        assert_eq!(r.status, 400, "{query}");
        assert!(listed(&r.body).is_empty(), "{query}");
    }
}

#[test]
fn the_list_is_paged_newest_first() {
    let srv = server();
    let app = srv.app("ADM_PAGE");
    for i in 0..105 {
        let body = json!({"bizOrderNo": format!("PG{i:03}"), "title": "分页", "amount": "1.00"});
        srv.post_signed(&app, "/unipay/gateway/prePay", body)
            .expect(0, "success");
    }
    let page = |n: i64, extra: &str| {
        let r = get(&srv, &format!("/admin/orders?page={n}{extra}"));
        assert_eq!(r.status, 200);
        r
    };
    let (p1, p2, p3) = (page(1, ""), page(2, ""), page(3, ""));
    let (l1, l2, l3) = (listed(&p1.body), listed(&p2.body), listed(&p3.body));
    assert_eq!((l1.len(), l2.len(), l3.len()), (50, 50, 5));
    let mut all: Vec<String> = [l1.clone(), l2, l3].concat();
    // Order numbers grow with creation: newest first is descending.
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(all, sorted, "newest first across pages");
    all.dedup();
    assert_eq!(all.len(), 105, "pages do not overlap");
    assert!(p1.body.contains("第 1 / 3 页 · 共 105 条"));
    assert!(p1.body.contains(r#"id="next" href="/admin/orders?page=2""#));
    assert!(!p1.body.contains(r#"id="prev""#));
    assert!(p3.body.contains(r#"id="prev""#));
    assert!(!p3.body.contains(r#"id="next""#));
    assert!(listed(&page(4, "").body).is_empty());
    // The pager keeps the filters.
    let p = page(1, "&status=wait&appId=ADM_PAGE");
    assert!(p
        .body
        .contains(r#"id="next" href="/admin/orders?status=wait&amp;appId=ADM_PAGE&amp;page=2""#));
    assert_eq!(listed(&page(2, "&status=wait").body).len(), 50);
    assert!(listed(&page(2, "&status=close").body).is_empty());
}

#[test]
fn admin_close_and_cancel_go_through_the_state_machine() {
    let srv = server();
    let app = srv.app("ADM_ACT");
    let admin_records = |order_no: &str, close_type: &str| {
        srv.db_read()
            .query_row(
                "SELECT count(*) FROM close_record
                 WHERE order_no = ?1 AND actor = 'admin' AND close_type = ?2 AND closed = 1",
                params![order_no, close_type],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
    };

    // Close of a wait order: closed locally, recorded with actor admin.
    let waiting = srv.pre_pay(&app, "ACT-W");
    let r = post(&srv, &format!("/admin/orders/{waiting}/close"));
    let back = location(&r);
    assert_eq!(back, format!("/admin/orders/{waiting}?flash=closed"));
    assert_eq!(srv.status(&app, "ACT-W"), "close");
    assert_eq!(admin_records(&waiting, "close"), 1);
    let page = get(&srv, &back);
    assert!(page.body.contains(r#"class="flash ok""#), "{}", page.body);
    assert!(page.body.contains("操作成功"));
    assert!(page.body.contains(r#"<tr data-actor="admin">"#));
    assert!(page.body.contains("管理员"));
    assert!(
        !page.body.contains(r#"id="close""#),
        "no Close button once closed"
    );

    // Close of a progress order: closed at the sandbox channel first.
    let progress = srv.pay(&app, "ACT-P")["orderNo"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post(&srv, &format!("/admin/orders/{progress}/close"));
    assert!(location(&r).ends_with("?flash=closed"));
    assert_eq!(srv.status(&app, "ACT-P"), "close");
    assert_eq!(admin_records(&progress, "close"), 1);
    srv.sandbox_pay(&progress).expect(20044, "");

    // Cancel of a progress order: cancelled at the channel, status cancel.
    let cancelled = srv.pay(&app, "ACT-C")["orderNo"]
        .as_str()
        .unwrap()
        .to_string();
    let page = get(&srv, &format!("/admin/orders/{cancelled}"));
    assert!(page.body.contains(r#"id="cancel""#));
    let r = post(&srv, &format!("/admin/orders/{cancelled}/cancel"));
    assert!(location(&r).ends_with("?flash=cancelled"));
    assert_eq!(srv.status(&app, "ACT-C"), "cancel");
    assert_eq!(admin_records(&cancelled, "cancel"), 1);

    // A second close is refused by the state machine, reported on the page, changes nothing.
    let r = post(&srv, &format!("/admin/orders/{cancelled}/close"));
    let back = location(&r);
    assert!(back.ends_with("?flash=not-open"), "{back}");
    let page = get(&srv, &back);
    assert!(page.body.contains(r#"class="flash err""#));
    assert!(page.body.contains("订单不是支付中"), "{}", page.body);
    assert_eq!(srv.status(&app, "ACT-C"), "cancel");
    assert_eq!(srv.close_records(&cancelled), 1);

    // A paid order cannot be closed either.
    let paid = srv.pay(&app, "ACT-S")["orderNo"]
        .as_str()
        .unwrap()
        .to_string();
    srv.sandbox_pay(&paid).expect(0, "success");
    let r = post(&srv, &format!("/admin/orders/{paid}/close"));
    assert!(location(&r).ends_with("?flash=not-open"));
    assert_eq!(srv.status(&app, "ACT-S"), "success");

    // The admin close notified like any close: the order page shows the close records and
    // the API sees the final status.
    assert_eq!(srv.order(&app, "ACT-W")["status"], "close");
}

#[test]
fn resend_makes_a_given_up_notification_pending_and_it_is_delivered() {
    let srv = TestServer::start_with(&["--admin-token", TOKEN, "--notify-retry-schedule", "100ms"]);
    // Two failures: the first attempt and its one retry; then the merchant says SUCCESS.
    let merchant = Merchant::start(&[(500, "no"), (500, "still no")]);
    let app = srv.create_app("M_RES", "ADM_RES", &["--notify-url", &merchant.url]);
    let order_no = srv.pre_pay(&app, "RES-1");
    let r = post(&srv, &format!("/admin/orders/{order_no}/close"));
    assert!(location(&r).ends_with("?flash=closed"));
    let state = |srv: &TestServer| -> (i64, String) {
        srv.db_read()
            .query_row(
                "SELECT e.id, e.state FROM notify_event e JOIN pay_order o ON o.id = e.order_id
                 WHERE o.order_no = ?1",
                [&order_no],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    let event_id = wait_for("the notification to be given up", || {
        let (id, s) = state(&srv);
        (s == "given_up").then_some(id)
    });
    assert_eq!(merchant.count(), 2);

    // The dashboard lists it among the given-up notifications, with a link to the order.
    let dash = get(&srv, "/admin");
    assert_eq!(dash.status, 200);
    let given_up = &dash.body[dash.body.find(r#"<table id="given-up">"#).expect("listed")..];
    assert!(given_up.contains(&format!("/admin/orders/{order_no}")));
    // The order page shows the event and both attempts, with the merchant's replies.
    let page = get(&srv, &format!("/admin/orders/{order_no}"));
    assert!(page
        .body
        .contains(&format!(r#"id="event-{event_id}" data-state="given_up""#)));
    assert!(page.body.contains("still no"));
    assert!(page.body.contains(&format!(r#"id="resend-{event_id}""#)));

    // Resend: pending again (due now), then delivered.
    let r = post(&srv, &format!("/admin/events/{event_id}/resend"));
    let back = location(&r);
    assert_eq!(back, format!("/admin/orders/{order_no}?flash=resent"));
    wait_for("the resent notification to be delivered", || {
        (state(&srv).1 == "delivered").then_some(())
    });
    assert_eq!(merchant.count(), 3);
    let ids: Vec<String> = merchant
        .received()
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    assert!(ids.iter().all(|id| *id == event_id.to_string()), "{ids:?}");
    let page = get(&srv, &format!("/admin/orders/{order_no}"));
    assert!(page.body.contains(r#"data-state="delivered""#));

    // Unknown events are 404.
    for id in ["999999", "abc", "0"] {
        let r = post(&srv, &format!("/admin/events/{id}/resend"));
        assert_eq!(r.status, 404, "{id}");
    }
}

#[test]
fn unknown_orders_and_pages_are_404_and_wrong_methods_405() {
    let srv = server();
    for path in [
        "/admin/orders/P00000000000000999999",
        "/admin/orders/%3Cscript%3E",
        "/admin/nothing",
        "/admin/orders/P1/nothing",
    ] {
        let r = get(&srv, path);
        assert_eq!(r.status, 404, "{path}");
        assert!(r.body.contains("未找到"), "{path}");
        assert!(!r.body.contains("<script>"), "{path}");
    }
    let r = get(&srv, "/admin/orders/P00000000000000999999");
    assert!(r.body.contains("支付订单不存在"));
    for action in ["close", "cancel"] {
        let r = post(
            &srv,
            &format!("/admin/orders/P00000000000000999999/{action}"),
        );
        assert_eq!(r.status, 404, "{action}");
    }
    let r = post(&srv, "/admin/orders");
    assert_eq!(r.status, 405);
    let r = get(&srv, "/admin/orders/P1/close");
    assert_eq!(r.status, 405);
    let r = http_with(&srv.addr, "DELETE", "/admin/login", &[], b"");
    assert_eq!(r.status, 405);
}

#[test]
fn the_dashboard_shows_today_closed_amounts_and_attention() {
    let srv = server();
    let app = srv.app("ADM_DASH");
    srv.pre_pay(&app, "D-W");
    let closed = srv.pre_pay_with(&app, "D-C", json!({"amount": "12.34"}));
    srv.close(&app, json!({"bizOrderNo": "D-C"}))
        .expect(0, "success");
    let paid = srv.pay(&app, "D-S")["orderNo"]
        .as_str()
        .unwrap()
        .to_string();
    srv.sandbox_pay(&paid).expect(0, "success");
    // Money that arrived after a close (possible with real channels) flags the order.
    db_write(&srv)
        .execute(
            "UPDATE pay_order SET attention = '通道交易已支付 <b>x</b>', attention_at = ?2
             WHERE order_no = ?1",
            params![closed, now_ms()],
        )
        .unwrap();

    let r = get(&srv, "/admin");
    assert_eq!(r.status, 200);
    let today = &r.body[r.body.find(r#"id="today""#).unwrap()..];
    let count = |status: &str| -> i64 {
        let at = today.find(&format!(r#"data-status="{status}""#)).unwrap();
        let rest = &today[at..];
        let b = rest.find("<b>").unwrap() + 3;
        rest[b..b + rest[b..].find("</b>").unwrap()]
            .parse()
            .unwrap()
    };
    assert_eq!(count("wait"), 1);
    assert_eq!(count("close"), 1);
    assert_eq!(count("success"), 1);
    assert_eq!(count("progress"), 0);
    let closed_card = &r.body[r.body.find(r#"id="closed-today""#).unwrap()..];
    assert!(closed_card.contains("¥12.34"), "{closed_card}");
    let attention = &r.body[r.body.find(r#"<table id="attention">"#).unwrap()..];
    assert!(attention.contains(&format!("/admin/orders/{closed}")));
    assert!(attention.contains("&lt;b&gt;x&lt;/b&gt;"));
    // Today's counts link to the list filtered to today.
    assert!(today.contains("/admin/orders?status=wait&amp;from="));
    // The order page shows the flag.
    let page = get(&srv, &format!("/admin/orders/{closed}"));
    assert!(page.body.contains(r#"id="attention""#));
    assert!(page.body.contains("需要人工处理"));
    // The list marks it too.
    let list = get(&srv, "/admin/orders");
    assert!(list.body.contains("⚠ 需处理"));
}

#[test]
fn failed_logins_are_throttled_per_address_and_short_tokens_refused() {
    let srv = server();
    let form = [
        ("Accept", HTML),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let login = |body: &str| http_with(&srv.addr, "POST", "/admin/login", &form, body.as_bytes());
    for i in 0..10 {
        let r = login(&format!("token=guess-{i}"));
        assert_eq!(r.status, 401, "guess {i}");
    }
    // The eleventh attempt in the minute waits, the right token too.
    for body in ["token=guess-10".to_string(), format!("token={TOKEN}")] {
        let r = login(&body);
        assert_eq!(r.status, 429, "{body}");
        assert!(r.header("set-cookie").is_none());
        let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(r.body.contains("登录失败次数过多"));
    }
    // Scripts with the token are not held up.
    assert_eq!(get(&srv, "/admin").status, 200);

    // A short token is refused at start; a token from a file works.
    let out = crate::helpers::run_cli(&[
        "serve",
        "--db",
        "/nonexistent/x.db",
        "--admin-token",
        "short-token",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("16"));
    let file = crate::helpers::temp_dir("token").join("admin.token");
    std::fs::write(&file, "token-from-a-file-0123\n").unwrap();
    let srv = TestServer::start_with(&["--admin-token-file", file.to_str().unwrap()]);
    let r = http_with(
        &srv.addr,
        "GET",
        "/admin",
        &[("Authorization", "Bearer token-from-a-file-0123")],
        b"",
    );
    assert_eq!(r.status, 200);
}

/// `POST path` with a form `body` as a script (bearer token, no CSRF token).
fn post_form(srv: &TestServer, path: &str, body: &str) -> Reply {
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    http_with(&srv.addr, "POST", path, &headers, body.as_bytes())
}

/// The value of the hidden `bizRefundNo` field of an order page's refund form.
#[track_caller]
fn form_refund_no(body: &str) -> String {
    let marker = r#"name="bizRefundNo" value=""#;
    let at = body.find(marker).expect("the page has a refund form") + marker.len();
    body[at..at + body[at..].find('"').unwrap()].to_string()
}

/// The text of the element with `id` (its first text, up to the next tag).
#[track_caller]
fn text_of<'a>(body: &'a str, id: &str) -> &'a str {
    let marker = format!(r#"id="{id}""#);
    let at = body.find(&marker).unwrap_or_else(|| panic!("no #{id}")) + marker.len();
    let rest = &body[at..];
    let start = rest.find('>').unwrap() + 1;
    &rest[start..start + rest[start..].find('<').unwrap()]
}

/// The refunds of an order in the database: (bizRefundNo, amount in cents, status, client IP,
/// reason), oldest first.
fn refund_rows(srv: &TestServer, order_no: &str) -> Vec<(String, i64, String, String, String)> {
    let db = srv.db_read();
    let mut st = db
        .prepare(
            "SELECT biz_refund_no, amount, status, coalesce(client_ip, ''), coalesce(reason, '')
             FROM refund_order WHERE order_no = ?1 ORDER BY id",
        )
        .unwrap();
    let rows = st
        .query_map([order_no], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// The order's refundable balance (in yuan, as the API says it) and refund status.
fn balance(srv: &TestServer, app: &App, biz: &str) -> (String, String) {
    let o = srv.order(app, biz);
    (
        o["refundableBalance"].to_string(),
        o["refundStatus"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn a_paid_order_is_refunded_through_the_console() {
    let srv = server();
    let app = srv.app("ADM_REF");
    let order_no = crate::refund::paid_order(&srv, &app, "REF-1", "10.00");
    let page_path = format!("/admin/orders/{order_no}");
    let refund_path = format!("{page_path}/refund");
    let b = Browser::login(&srv);

    // The order page offers the form, with the balance and a refund number of its own.
    let page = b.get(&srv, &page_path);
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"id="refund-form""#), "{}", page.body);
    assert!(page
        .body
        .contains(&format!(r#"action="/admin/orders/{order_no}/refund""#)));
    assert_eq!(text_of(&page.body, "refundable"), "¥10.00");
    assert!(page.body.contains(r#"data-refund-status="no_refund""#));
    assert!(page.body.contains(r#"<p class="empty" id="refunds">"#));
    let biz = form_refund_no(&page.body);
    assert!(biz.starts_with("ADMIN-") && biz.len() == 26, "{biz}");
    assert_ne!(form_refund_no(&b.get(&srv, &page_path).body), biz);
    let csrf = csrf_of(&page.body);
    assert_eq!(csrf, b.csrf);

    // Without the CSRF token (or with a wrong one): 403 and nothing is refunded.
    for body in [
        format!("bizRefundNo={biz}&amount=3.00"),
        format!("csrf=wrong&bizRefundNo={biz}&amount=3.00"),
        format!("csrf={}&bizRefundNo={biz}&amount=3.00", &csrf[1..]),
    ] {
        let r = b.post(&srv, &refund_path, &body);
        assert_eq!(r.status, 403, "{body}: {}", r.body);
    }
    assert!(refund_rows(&srv, &order_no).is_empty());
    assert_eq!(
        balance(&srv, &app, "REF-1"),
        ("10".into(), "no_refund".into())
    );

    // With it: the API's refund, from the console user's address; back with its message.
    let form = format!(
        "csrf={csrf}&bizRefundNo={biz}&amount=3.00&reason={}",
        form::encode("<b>退货</b> 客户要求")
    );
    let r = b.post(&srv, &refund_path, &form);
    let back = location(&r);
    assert_eq!(back, format!("{page_path}?flash=refunded"));
    assert_eq!(
        refund_rows(&srv, &order_no),
        [(
            biz.clone(),
            300,
            "success".into(),
            "127.0.0.1".into(),
            "<b>退货</b> 客户要求".into()
        )]
    );
    assert_eq!(
        balance(&srv, &app, "REF-1"),
        ("7".into(), "partial_refund".into())
    );
    let refund = srv
        .post_signed(
            &app,
            "/unipay/query/refundOrder",
            json!({"bizRefundNo": biz}),
        )
        .data()
        .clone();
    assert_eq!(refund["status"], "success");
    let refund_no = refund["refundNo"].as_str().unwrap().to_string();

    // The page lists it, every value escaped, with the new balance and refund status.
    let page = b.get(&srv, &back);
    assert!(page.body.contains(r#"class="flash ok""#), "{}", page.body);
    assert!(page.body.contains("操作成功: 退款成功"));
    let row = &page.body[page
        .body
        .find(&format!(
            r#"<tr data-refund="{refund_no}" data-status="success">"#
        ))
        .expect("the refund is listed")..];
    let row = &row[..row.find("</tr>").unwrap()];
    for part in [biz.as_str(), "¥3.00", "退款成功", "SBXR", "127.0.0.1"] {
        assert!(row.contains(part), "{part}: {row}");
    }
    assert!(row.contains("&lt;b&gt;退货&lt;/b&gt; 客户要求"), "{row}");
    assert!(!page.body.contains("<b>退货"));
    assert_eq!(text_of(&page.body, "refundable"), "¥7.00");
    assert!(page.body.contains(r#"data-refund-status="partial_refund""#));
    let field = &page.body[page.body.find(r#"data-field="refundableBalance""#).unwrap()..];
    assert!(field[..field.find("</tr>").unwrap()].contains("¥7.00"));
    assert!(page.body.contains(r#"id="refund-form""#), "money is left");

    // The same form sent again (a double click) is the same refund.
    let r = b.post(&srv, &refund_path, &form);
    assert_eq!(location(&r), format!("{page_path}?flash=refunded"));
    assert_eq!(refund_rows(&srv, &order_no).len(), 1);
    // …and with another amount it is refused.
    let other = format!("csrf={csrf}&bizRefundNo={biz}&amount=1.00");
    let r = b.post(&srv, &refund_path, &other);
    assert_eq!(location(&r), format!("{page_path}?flash=refund-repeat"));

    // A second refund past the balance is refused with its message; nothing changes.
    let fresh = form_refund_no(&b.get(&srv, &page_path).body);
    let over = format!("csrf={csrf}&bizRefundNo={fresh}&amount=7.01");
    let r = b.post(&srv, &refund_path, &over);
    let back = location(&r);
    assert_eq!(back, format!("{page_path}?flash=refund-over"));
    let page = b.get(&srv, &back);
    assert!(page.body.contains(r#"class="flash err""#));
    assert!(page.body.contains("退款金额超过可退余额"), "{}", page.body);
    assert_eq!(refund_rows(&srv, &order_no).len(), 1);
    assert_eq!(
        balance(&srv, &app, "REF-1"),
        ("7".into(), "partial_refund".into())
    );

    // Bad amounts and reasons never reach the refund; the request's text is never shown.
    let long = format!("amount=1&reason={}", "长".repeat(151));
    #[rustfmt::skip]
    let bad = [
        ("amount=",                                   "refund-bad-amount"),
        ("amount=abc",                                "refund-bad-amount"),
        ("amount=0",                                  "refund-bad-amount"),
        ("amount=-1",                                 "refund-bad-amount"),
        ("amount=1.001",                              "refund-bad-amount"),
        ("amount=%3Cscript%3E",                       "refund-bad-amount"),
        (long.as_str(),                               "refund-bad-reason"),
        ("amount=1&bizRefundNo=%3Cb%3E",              "failed"),
        ("amount=1&bizRefundNo=ADMIN-short",          "failed"),
    ];
    for (body, key) in bad {
        let r = b.post(&srv, &refund_path, &format!("csrf={csrf}&{body}"));
        let back = location(&r);
        assert_eq!(back, format!("{page_path}?flash={key}"), "{body}");
        let page = b.get(&srv, &back);
        assert!(page.body.contains(r#"class="flash err""#), "{body}");
        assert!(!page.body.contains("<script"), "{body}");
    }
    assert_eq!(refund_rows(&srv, &order_no).len(), 1);

    // A script with the bearer token needs no CSRF token; the console makes the number.
    let r = post_form(&srv, &refund_path, "amount=7&reason=rest");
    assert_eq!(location(&r), format!("{page_path}?flash=refunded"));
    let rows = refund_rows(&srv, &order_no);
    assert_eq!(rows.len(), 2);
    assert!(
        rows[1].0.starts_with("ADMIN-") && rows[1].0 != biz,
        "{rows:?}"
    );
    assert_eq!((rows[1].1, rows[1].2.as_str()), (700, "success"));
    assert_eq!(
        balance(&srv, &app, "REF-1"),
        ("0".into(), "refunded".into())
    );
    // Fully refunded: no form any more, and nothing is left to refund.
    let page = get(&srv, &page_path);
    assert!(!page.body.contains(r#"id="refund-form""#));
    assert!(page.body.contains(r#"id="no-refund""#));
    assert!(page.body.contains(r#"data-refund-status="refunded""#));
    assert_eq!(page.body.matches("<tr data-refund=").count(), 2);
    let r = post_form(&srv, &refund_path, "amount=0.01");
    assert_eq!(location(&r), format!("{page_path}?flash=refund-over"));
    assert_eq!(refund_rows(&srv, &order_no).len(), 2);
    // The order itself is still paid.
    assert_eq!(srv.status(&app, "REF-1"), "success");
}

#[test]
fn unpaid_orders_have_no_refund_form_and_a_forged_refund_is_refused() {
    let srv = server();
    let app = srv.app("ADM_NOREF");
    let waiting = srv.pre_pay(&app, "NR-W");
    let progress = srv.pay(&app, "NR-P")["orderNo"]
        .as_str()
        .unwrap()
        .to_string();
    let closed = srv.pay(&app, "NR-C")["orderNo"]
        .as_str()
        .unwrap()
        .to_string();
    srv.close(&app, json!({"bizOrderNo": "NR-C"}))
        .expect(0, "success");
    let b = Browser::login(&srv);
    for order_no in [&waiting, &progress, &closed] {
        let path = format!("/admin/orders/{order_no}");
        let page = b.get(&srv, &path);
        assert_eq!(page.status, 200);
        assert!(!page.body.contains(r#"id="refund-form""#), "{order_no}");
        assert!(!page.body.contains("bizRefundNo"), "{order_no}");
        assert!(
            page.body.contains("只有支付成功的订单可以退款"),
            "{order_no}"
        );
        // A forged POST, by a script or a browser with the CSRF token, is refused.
        let r = post_form(&srv, &format!("{path}/refund"), "amount=1.00");
        assert_eq!(location(&r), format!("{path}?flash=refund-not-paid"));
        let body = format!("csrf={}&amount=1.00", b.csrf);
        let r = b.post(&srv, &format!("{path}/refund"), &body);
        let back = location(&r);
        assert_eq!(back, format!("{path}?flash=refund-not-paid"));
        assert!(b
            .get(&srv, &back)
            .body
            .contains("订单不是支付成功, 无法退款"));
        // Without credentials: 401, or the login page.
        let r = http_with(
            &srv.addr,
            "POST",
            &format!("{path}/refund"),
            &[],
            b"amount=1",
        );
        assert_eq!(r.status, 401);
    }
    assert_eq!(
        srv.count(
            "SELECT count(*) FROM refund_order WHERE app_id = ?1",
            "ADM_NOREF"
        ),
        0
    );
    for biz in ["NR-W", "NR-P", "NR-C"] {
        assert_eq!(balance(&srv, &app, biz).1, "no_refund", "{biz}");
    }
    // Unknown orders are 404, other methods 405.
    let r = post_form(
        &srv,
        "/admin/orders/P00000000000000999999/refund",
        "amount=1",
    );
    assert_eq!(r.status, 404);
    let r = get(&srv, &format!("/admin/orders/{waiting}/refund"));
    assert_eq!(r.status, 405);
}

/// A sandbox order paid after it was closed, as a real channel allows (an old QR code scanned):
/// the order is paid with the sandbox and closed through the API (the sandbox closes its trade);
/// then the test marks the sandbox's own trade paid (the channel's side; the sandbox's payer
/// cannot pay a closed trade) and the merchant's pay sync finds the money: unipay's state
/// machine makes the order `success` and flags it. Returns the order number.
pub fn late_sandbox_payment(srv: &TestServer, app: &App, biz: &str, yuan: &str) -> String {
    let order_no = srv.pay_with(app, biz, json!({"amount": yuan}))["orderNo"]
        .as_str()
        .unwrap()
        .to_string();
    srv.close(app, json!({"bizOrderNo": biz}))
        .expect(0, "success");
    let changed = db_write(srv)
        .execute(
            "UPDATE sandbox_trade SET state = 'paid', updated_at = ?2
             WHERE order_no = ?1 AND state = 'closed'",
            params![order_no, now_ms()],
        )
        .unwrap();
    assert_eq!(changed, 1, "the sandbox closed the trade");
    let r = srv.post_signed(app, "/unipay/sync/order/pay", json!({"bizOrderNo": biz}));
    r.expect(0, "success");
    assert_eq!(r.data()["orderStatus"], "success", "{}", r.body);
    assert_eq!(r.data()["adjust"], true);
    order_no
}

#[test]
fn the_attention_filter_finds_late_payments_and_one_is_refunded() {
    use crate::alipay::{qr_order, set_alipay, ALIPAY_APP_ID};
    use crate::fake_alipay::FakeAlipay;

    let srv = server();
    let app = srv.app("ADM_ATT");
    // Orders that need nobody: paid, closed, waiting.
    let paid = crate::refund::paid_order(&srv, &app, "ATT-S", "1.00");
    srv.pre_pay(&app, "ATT-C");
    srv.close(&app, json!({"bizOrderNo": "ATT-C"}))
        .expect(0, "success");
    srv.pre_pay(&app, "ATT-W");
    // A real late payment at Alipay: closed locally, then the QR code is paid and Alipay's
    // notification comes in.
    let fake = FakeAlipay::start(ALIPAY_APP_ID);
    let ali = srv.app("ADM_ATT_ALI");
    set_alipay(&srv, &ali, &fake.url);
    let (ali_late, _) = qr_order(&srv, &ali, "ATT-ALI");
    srv.close(&ali, json!({"bizOrderNo": "ATT-ALI"}))
        .expect(0, "success");
    fake.pay(&ali_late);
    wait_for("Alipay's late payment", || {
        (srv.status(&ali, "ATT-ALI") == "success").then_some(())
    });
    // A late payment at the sandbox, found by a pay sync.
    let late = late_sandbox_payment(&srv, &app, "ATT-L", "8.80");
    assert_eq!(srv.status(&app, "ATT-L"), "success");

    // The list of flagged orders: those two, newest flag first, counted from themselves.
    let r = get(&srv, "/admin/orders?attention=1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(listed(&r.body), [late.clone(), ali_late.clone()]);
    assert_eq!(shown_count(&r.body, "all"), 2);
    assert_eq!(shown_count(&r.body, "success"), 2);
    assert_eq!(shown_count(&r.body, "close"), 0);
    assert!(r.body.contains(r#"id="attention-only" value="1" checked"#));
    assert!(r.body.contains(r#"id="attention-filter""#));
    // The counts keep the filter; other filters narrow it.
    assert!(r
        .body
        .contains(r#"href="/admin/orders?status=success&amp;attention=1""#));
    let r = get(&srv, "/admin/orders?attention=1&appId=ADM_ATT");
    assert_eq!(listed(&r.body), [late.clone()]);
    let r = get(&srv, &format!("/admin/orders?attention=1&q={ali_late}"));
    assert_eq!(listed(&r.body), [ali_late.clone()]);
    let r = get(&srv, "/admin/orders?attention=1&status=close");
    assert!(listed(&r.body).is_empty());
    let r = get(
        &srv,
        "/admin/orders?attention=1&channel=ali_pay&status=success",
    );
    assert_eq!(listed(&r.body), [ali_late.clone()]);
    // Without the filter every order is listed; a bad value is a 400 page.
    let r = get(&srv, "/admin/orders?attention=0");
    assert_eq!(listed(&r.body).len(), 5);
    assert!(listed(&r.body).contains(&paid));
    let r = get(&srv, "/admin/orders?attention=yes");
    assert_eq!(r.status, 400);

    // Two clicks from the dashboard: its list links to the filter, the filter to the order.
    let b = Browser::login(&srv);
    let dash = b.get(&srv, "/admin");
    assert!(dash
        .body
        .contains(r#"<a id="attention-list" href="/admin/orders?attention=1">"#));
    let list = b.get(&srv, "/admin/orders?attention=1");
    assert!(list
        .body
        .contains(&format!(r#"href="/admin/orders/{late}""#)));
    let path = format!("/admin/orders/{late}");
    let page = b.get(&srv, &path);
    assert!(page
        .body
        .contains(r#"<p class="banner attention" id="attention">"#));
    assert_eq!(text_of(&page.body, "refundable"), "¥8.80");
    // The money goes back through the console.
    let form = format!(
        "csrf={}&bizRefundNo={}&amount=8.80&reason={}",
        b.csrf,
        form_refund_no(&page.body),
        form::encode("关闭后到账, 退回")
    );
    let r = b.post(&srv, &format!("{path}/refund"), &form);
    let back = location(&r);
    assert_eq!(back, format!("{path}?flash=refunded"));
    let page = b.get(&srv, &back);
    assert!(page.body.contains(r#"data-status="success""#));
    assert!(page.body.contains(r#"data-refund-status="refunded""#));
    assert!(!page.body.contains(r#"id="refund-form""#));
    assert_eq!(
        balance(&srv, &app, "ATT-L"),
        ("0".into(), "refunded".into())
    );
    assert_eq!(srv.status(&app, "ATT-L"), "success");
}

#[test]
fn a_refund_the_channel_refuses_is_reported_and_its_money_is_back() {
    let srv = server();
    let app = srv.app("ADM_REFUSE");
    let order_no = crate::refund::paid_order(&srv, &app, "RF-1", "5.00");
    // The money was already given back at the channel itself (its own merchant portal): the
    // sandbox's book of refunds has it, unipay does not know.
    db_write(&srv)
        .execute(
            "INSERT INTO sandbox_refund (refund_no, order_no, amount, state, out_refund_no,
                created_at, updated_at)
             VALUES ('PORTAL-1', ?1, 500, 'success', 'SBXR-PORTAL', ?2, ?2)",
            params![order_no, now_ms()],
        )
        .unwrap();
    let path = format!("/admin/orders/{order_no}");
    let r = post_form(&srv, &format!("{path}/refund"), "amount=2.00&reason=x");
    let back = location(&r);
    assert_eq!(back, format!("{path}?flash=refund-refused"));
    let rows = refund_rows(&srv, &order_no);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].1, rows[0].2.as_str()), (200, "fail"));
    // The amount is back in the balance; the page shows the refusal and the channel's words.
    assert_eq!(
        balance(&srv, &app, "RF-1"),
        ("5".into(), "no_refund".into())
    );
    let page = get(&srv, &back);
    assert!(page.body.contains(r#"class="flash err""#));
    assert!(page.body.contains("通道拒绝了退款"), "{}", page.body);
    let row = &page.body[page.body.find(r#"data-status="fail">"#).expect("listed")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("退款失败") && row.contains("退款金额超过交易金额"),
        "{row}"
    );
    assert_eq!(text_of(&page.body, "refundable"), "¥5.00");
    assert!(page.body.contains(r#"id="refund-form""#));
}
