-- Migration 2: real payment channels. Never edit once released; add a new step instead.

-- The settings of a real channel for one app (`unipay channel set`): the channel's own text
-- (its keys included), read and checked by its module under src/channel/. A disabled channel
-- keeps its settings and answers 20021 until it is set again.
CREATE TABLE channel_config (
    app_id      TEXT NOT NULL REFERENCES app(app_id),
    channel     TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    settings    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (app_id, channel)
) STRICT;

-- What the payer was given to pay with (a QR code's text, a prepay id), when the channel cannot
-- make it again without a network call: a repeated pay of an open order hands out the same.
ALTER TABLE pay_order ADD COLUMN pay_body TEXT;
