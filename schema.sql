-- unipay's baseline schema: migration 1. Later changes are appended as new steps in
-- src/store/mod.rs (MIGRATIONS) and never edit this file once released.
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
