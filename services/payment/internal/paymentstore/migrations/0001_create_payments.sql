-- A payment is the one charge of one order. The row is written PENDING
-- before the processor is called, so that a charge is never made without
-- a record of it, and order_id is unique, so that an order is charged at
-- most once however often its event arrives.
CREATE TABLE payments (
    -- Also the idempotency key of the charge at the processor.
    payment_id     TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL UNIQUE,
    user_id        TEXT NOT NULL,
    status         TEXT NOT NULL
        CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED', 'REFUNDED')),
    currency       TEXT NOT NULL,
    amount         INTEGER NOT NULL CHECK (amount >= 0),
    failure_reason TEXT NOT NULL DEFAULT '',
    -- Unix nanoseconds.
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;
