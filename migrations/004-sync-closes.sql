-- Migration 4: closes by a pay sync (refund-sync.md §5: a trade the channel reports closed or
-- revoked, or an open trade past its expiry, is closed with actor `sync`). Steps 1–3 only let
-- `api`, `admin` and `expiry` close, so such a close failed its CHECK. SQLite cannot change a
-- CHECK in place: both tables are rebuilt with their rows and index. Never edit once released.

CREATE TABLE close_intent_new (
    order_id    INTEGER PRIMARY KEY REFERENCES pay_order(id),
    close_type  TEXT NOT NULL CHECK (close_type IN ('close', 'cancel')),
    actor       TEXT NOT NULL CHECK (actor IN ('api', 'admin', 'expiry', 'sync')),
    client_ip   TEXT,
    created_at  INTEGER NOT NULL
) STRICT;
INSERT INTO close_intent_new (order_id, close_type, actor, client_ip, created_at)
    SELECT order_id, close_type, actor, client_ip, created_at FROM close_intent;
DROP TABLE close_intent;
ALTER TABLE close_intent_new RENAME TO close_intent;

CREATE TABLE close_record_new (
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
    actor         TEXT NOT NULL CHECK (actor IN ('api', 'admin', 'expiry', 'sync')),
    created_at    INTEGER NOT NULL
) STRICT;
INSERT INTO close_record_new (id, order_id, order_no, biz_order_no, out_order_no, channel,
        close_type, closed, error_msg, client_ip, actor, created_at)
    SELECT id, order_id, order_no, biz_order_no, out_order_no, channel, close_type, closed,
        error_msg, client_ip, actor, created_at FROM close_record;
DROP TABLE close_record;
ALTER TABLE close_record_new RENAME TO close_record;
CREATE INDEX close_record_order ON close_record (order_id);
