-- Migration 3: refunds and syncs. Never edit once released; add a new step instead.

-- A refund of a paid order (`POST /unipay/refund`). Its amount is reserved from the order's
-- refundable balance while it is `progress`, spent on `success`, and given back once, on the
-- transition to `fail` or `close` (refund-sync.md §2).
CREATE TABLE refund_order (
    id             INTEGER PRIMARY KEY,
    refund_no      TEXT NOT NULL UNIQUE,
    app_id         TEXT NOT NULL REFERENCES app(app_id),
    mch_no         TEXT NOT NULL,
    order_id       INTEGER NOT NULL REFERENCES pay_order(id),
    order_no       TEXT NOT NULL,
    biz_order_no   TEXT NOT NULL,
    out_order_no   TEXT,
    channel        TEXT NOT NULL,
    order_amount   INTEGER NOT NULL,               -- cents
    title          TEXT NOT NULL,
    biz_refund_no  TEXT NOT NULL,
    amount         INTEGER NOT NULL,               -- cents
    reason         TEXT,
    attach         TEXT,
    notify_url     TEXT,
    extra_param    TEXT,
    client_ip      TEXT,
    req_time       INTEGER,
    status         TEXT NOT NULL CHECK (status IN ('progress', 'success', 'close', 'fail')),
    out_refund_no  TEXT,
    finish_time    INTEGER,
    error_msg      TEXT,
    -- The channel side: how often it was sent, when last, whether a send's outcome was unknown
    -- (then a later refusal needs a query first), and when it is next checked (§7).
    sends          INTEGER NOT NULL DEFAULT 0,
    last_send_at   INTEGER,
    unknown_sends  INTEGER NOT NULL DEFAULT 0,
    checks         INTEGER NOT NULL DEFAULT 0,
    next_check_at  INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (app_id, biz_refund_no)
) STRICT;

CREATE INDEX refund_order_order ON refund_order (order_id);
CREATE INDEX refund_order_due ON refund_order (next_check_at) WHERE status = 'progress';
CREATE INDEX refund_order_created ON refund_order (created_at);

-- Every pay or refund sync (`/unipay/sync/order/pay|refund`): what the channel said and what
-- changed.
CREATE TABLE sync_record (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('pay', 'refund')),
    order_no        TEXT NOT NULL,
    refund_no       TEXT,
    channel         TEXT,
    channel_status  TEXT,
    adjusted        INTEGER NOT NULL,
    error_msg       TEXT,
    client_ip       TEXT,
    created_at      INTEGER NOT NULL
) STRICT;

CREATE INDEX sync_record_order ON sync_record (order_no);

-- Notification events of refunds: the refund they are about (the order stays the pay order).
ALTER TABLE notify_event ADD COLUMN refund_id INTEGER REFERENCES refund_order(id);

-- Orders start with nothing refunded: their whole amount is refundable once paid.
UPDATE pay_order SET refund_status = 'no_refund' WHERE refund_status IS NULL;
UPDATE pay_order SET refundable_balance = amount WHERE status = 'success';

-- The sandbox channel's book of refunds: what a real channel keeps on its side.
CREATE TABLE sandbox_refund (
    refund_no      TEXT PRIMARY KEY,
    order_no       TEXT NOT NULL,
    amount         INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('success', 'processing', 'closed', 'abnormal')),
    out_refund_no  TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX sandbox_refund_order ON sandbox_refund (order_no);
