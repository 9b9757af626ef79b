-- An order belongs to one user and is priced once, when it is placed.
CREATE TABLE orders (
    order_id        TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    -- The client's key for this order; a repeat returns the stored order.
    idempotency_key TEXT NOT NULL,
    -- SHA-256 of the request's items and payment method, to tell a retry
    -- from a different request that reuses the key.
    request_digest  BLOB NOT NULL,
    status          TEXT NOT NULL
        CHECK (status IN ('PENDING_PAYMENT', 'PAID', 'PAYMENT_FAILED', 'CANCELLED')),
    currency        TEXT NOT NULL,
    total           INTEGER NOT NULL CHECK (total >= 0),
    failure_reason  TEXT NOT NULL DEFAULT '',
    -- Unix nanoseconds.
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (user_id, idempotency_key)
) STRICT;

-- A user's orders, newest first, for listing page by page.
CREATE INDEX orders_by_user ON orders (user_id, created_at DESC, order_id DESC);

CREATE TABLE order_items (
    order_id   TEXT NOT NULL REFERENCES orders (order_id),
    -- Position in the request, from 0.
    line       INTEGER NOT NULL CHECK (line >= 0),
    sku        TEXT NOT NULL,
    name       TEXT NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    unit_price INTEGER NOT NULL CHECK (unit_price >= 0),
    line_total INTEGER NOT NULL CHECK (line_total >= 0),
    PRIMARY KEY (order_id, line),
    UNIQUE (order_id, sku)
) STRICT;
