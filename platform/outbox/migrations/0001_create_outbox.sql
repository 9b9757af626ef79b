-- The outbox holds events written in the same transaction as the state
-- change that caused them, until the relay has published them to JetStream.
CREATE TABLE outbox (
    -- A UUID, published as Nats-Msg-Id so that JetStream drops a repeat.
    id         TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    -- The event, protobuf-encoded.
    payload    BLOB NOT NULL,
    -- A JSON object from header name to its values.
    headers    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    -- Failed attempts to publish the row.
    attempts   INTEGER NOT NULL DEFAULT 0
) STRICT;
