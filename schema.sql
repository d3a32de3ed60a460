-- unipay's baseline schema: migration 1. Later changes are new steps in migrations/, listed in
-- src/store/open.rs (MIGRATIONS); never edit this file once released.
-- Times are milliseconds since the Unix epoch; amounts are cents.

CREATE TABLE merchant (
    mch_no      TEXT PRIMARY KEY,
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE app (
    app_id         TEXT PRIMARY KEY,
    mch_no         TEXT NOT NULL REFERENCES merchant(mch_no),
    sign_type      TEXT NOT NULL CHECK (sign_type IN ('md5', 'hmac_sha256', 'sm3')),
    secret         TEXT NOT NULL,
    req_sign       INTEGER NOT NULL DEFAULT 1,
    req_timeout    INTEGER NOT NULL DEFAULT 300,  -- request-time window, seconds; 0 = off
    notify_url     TEXT,                          -- subscribed to pay events when set
    order_timeout  INTEGER NOT NULL DEFAULT 30,   -- minutes
    limit_amount   INTEGER,                       -- cents; NULL = no limit
    enabled        INTEGER NOT NULL DEFAULT 1,
    created_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE pay_order (
    id                  INTEGER PRIMARY KEY,
    order_no            TEXT NOT NULL UNIQUE,
    mch_no              TEXT NOT NULL,
    app_id              TEXT NOT NULL REFERENCES app(app_id),
    biz_order_no        TEXT NOT NULL,
    out_order_no        TEXT,
    title               TEXT NOT NULL,
    description         TEXT,
    allocation          INTEGER,
    auto_allocation     INTEGER,
    channel             TEXT,
    method              TEXT,
    other_method        TEXT,
    limit_pay           TEXT,
    amount              INTEGER NOT NULL,
    refundable_balance  INTEGER NOT NULL,
    status              TEXT NOT NULL
        CHECK (status IN ('wait', 'progress', 'success', 'close', 'cancel', 'fail')),
    refund_status       TEXT,
    alloc_status        TEXT,
    pay_time            INTEGER,
    close_time          INTEGER,
    expired_time        INTEGER NOT NULL,
    attach              TEXT,
    error_msg           TEXT,
    notify_url          TEXT,
    return_url          TEXT,
    extra_param         TEXT,
    client_ip           TEXT,
    -- Why an operator must look at this order (money arrived for a closed order), or NULL.
    attention           TEXT,
    attention_at        INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX pay_order_biz ON pay_order (app_id, biz_order_no);
CREATE INDEX pay_order_out ON pay_order (app_id, out_order_no) WHERE out_order_no IS NOT NULL;
CREATE INDEX pay_order_open_expiry ON pay_order (expired_time)
    WHERE status IN ('wait', 'progress');
CREATE INDEX pay_order_attention ON pay_order (attention_at) WHERE attention IS NOT NULL;

-- A close that is talking to the channel: committed before the channel is asked, removed in
-- the transaction that applies the channel's answer. One that survives a crash is finished or
-- undone at start-up by asking the channel. Its presence also makes a second close get 20043.
CREATE TABLE close_intent (
    order_id    INTEGER PRIMARY KEY REFERENCES pay_order(id),
    close_type  TEXT NOT NULL CHECK (close_type IN ('close', 'cancel')),
    actor       TEXT NOT NULL CHECK (actor IN ('api', 'admin', 'expiry')),
    client_ip   TEXT,
    created_at  INTEGER NOT NULL
) STRICT;

-- Every close attempt that reached a channel or changed an order.
CREATE TABLE close_record (
    id            INTEGER PRIMARY KEY,
    order_id      INTEGER NOT NULL REFERENCES pay_order(id),
    order_no      TEXT NOT NULL,
    biz_order_no  TEXT NOT NULL,
    out_order_no  TEXT,
    channel       TEXT,
    close_type    TEXT NOT NULL CHECK (close_type IN ('close', 'cancel')),
    closed        INTEGER NOT NULL,
    error_msg     TEXT,
    client_ip     TEXT,
    actor         TEXT NOT NULL CHECK (actor IN ('api', 'admin', 'expiry')),
    created_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX close_record_order ON close_record (order_id);

-- The outbox: one row per notification to deliver, written in the same transaction as the
-- status change it reports. `data` is the order as it was right after that change.
CREATE TABLE notify_event (
    id               INTEGER PRIMARY KEY,
    order_id         INTEGER NOT NULL REFERENCES pay_order(id),
    app_id           TEXT NOT NULL,
    target           TEXT NOT NULL CHECK (target IN ('callback', 'subscribe')),
    url              TEXT NOT NULL,
    status           TEXT NOT NULL,               -- the order status this event reports
    data             TEXT NOT NULL,               -- JSON of the order, query field order
    state            TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'given_up')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER
) STRICT;

CREATE INDEX notify_event_order ON notify_event (order_id);
CREATE INDEX notify_event_due ON notify_event (next_attempt_at) WHERE state = 'pending';

CREATE TABLE notify_attempt (
    id           INTEGER PRIMARY KEY,
    event_id     INTEGER NOT NULL REFERENCES notify_event(id),
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    http_status  INTEGER,
    detail       TEXT
) STRICT;

CREATE INDEX notify_attempt_event ON notify_attempt (event_id);

-- The sandbox channel's own book of trades: what a real channel would keep on its side.
CREATE TABLE sandbox_trade (
    order_no      TEXT PRIMARY KEY,
    trade_no      TEXT NOT NULL UNIQUE,
    amount        INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('open', 'paid', 'closed', 'cancelled')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

-- ---- The admin console (issue 5) ----

-- The console's access token, as the sha256 hex of the token (one row). Set from
-- `serve --admin-token`, or generated and printed once on the first start.
CREATE TABLE admin_token (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    token_hash  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

-- Logged-in browsers. The cookie holds the session id; only its sha256 hex is stored. Every
-- cookie-authenticated POST must carry the session's CSRF token.
CREATE TABLE admin_session (
    id_hash     TEXT PRIMARY KEY,
    csrf        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX admin_session_expiry ON admin_session (expires_at);

-- Orders per app, channel ('' while there is none), status and UTC day (created_at / 86400000),
-- kept by the triggers below in the same transaction as every insert and status change, so that
-- the console's counts per status never scan the orders.
CREATE TABLE admin_order_count (
    app_id   TEXT NOT NULL,
    channel  TEXT NOT NULL,
    status   TEXT NOT NULL,
    day      INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (app_id, channel, status, day)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER pay_order_count_insert AFTER INSERT ON pay_order BEGIN
    INSERT INTO admin_order_count (app_id, channel, status, day, n)
    VALUES (new.app_id, coalesce(new.channel, ''), new.status, new.created_at / 86400000, 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER pay_order_count_update AFTER UPDATE OF app_id, channel, status, created_at ON pay_order
WHEN old.app_id IS NOT new.app_id OR old.channel IS NOT new.channel
    OR old.status IS NOT new.status OR old.created_at IS NOT new.created_at
BEGIN
    UPDATE admin_order_count SET n = n - 1
    WHERE app_id = old.app_id AND channel = coalesce(old.channel, '') AND status = old.status
        AND day = old.created_at / 86400000;
    INSERT INTO admin_order_count (app_id, channel, status, day, n)
    VALUES (new.app_id, coalesce(new.channel, ''), new.status, new.created_at / 86400000, 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER pay_order_count_delete AFTER DELETE ON pay_order BEGIN
    UPDATE admin_order_count SET n = n - 1
    WHERE app_id = old.app_id AND channel = coalesce(old.channel, '') AND status = old.status
        AND day = old.created_at / 86400000;
END;

-- The console's filters, newest first within each: every index ends in created_at (and the
-- implicit rowid), so a page is a walk down one index. Any order number finds its order
-- whatever the app.
CREATE INDEX pay_order_created ON pay_order (created_at);
CREATE INDEX pay_order_status_created ON pay_order (status, created_at);
CREATE INDEX pay_order_channel_created ON pay_order (channel, created_at);
CREATE INDEX pay_order_app_created ON pay_order (app_id, created_at);
CREATE INDEX pay_order_biz_no ON pay_order (biz_order_no);
CREATE INDEX pay_order_out_no ON pay_order (out_order_no) WHERE out_order_no IS NOT NULL;
-- The dashboard: amounts closed today, notifications given up.
CREATE INDEX pay_order_close_time ON pay_order (close_time) WHERE close_time IS NOT NULL;
CREATE INDEX notify_event_given_up ON notify_event (finished_at) WHERE state = 'given_up';

-- ---- Hardening (issue 6) ----

-- The replies to signed requests that carried a nonceStr, kept 24 hours: a retry with the same
-- nonce and the same signed parameters gets the stored reply again, byte for byte, and nothing is
-- done twice; the same nonce with other parameters is refused. Pruned by the expiry sweeper.
CREATE TABLE request_nonce (
    id           INTEGER PRIMARY KEY,
    app_id       TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    fingerprint  BLOB NOT NULL,                  -- sha256 of the path and the signed fields
    code         INTEGER NOT NULL,               -- the reply's DaxPay code
    trace_id     TEXT NOT NULL,                  -- the first request's trace id
    reply        BLOB NOT NULL,                  -- the reply body exactly as it was sent
    created_at   INTEGER NOT NULL,
    UNIQUE (app_id, nonce)
) STRICT;

CREATE INDEX request_nonce_created ON request_nonce (created_at);
