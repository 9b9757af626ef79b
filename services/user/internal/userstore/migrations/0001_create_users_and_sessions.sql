-- Times are Unix milliseconds.

CREATE TABLE users (
	id            TEXT PRIMARY KEY,
	-- Trimmed and lowercased before it is stored, so that UNIQUE holds for
	-- addresses that differ only in case.
	email         TEXT NOT NULL UNIQUE,
	display_name  TEXT NOT NULL,
	-- An argon2id PHC string; never leaves the service.
	password_hash TEXT NOT NULL,
	created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
	id                 TEXT PRIMARY KEY,
	user_id            TEXT NOT NULL REFERENCES users (id),
	created_at         INTEGER NOT NULL,
	-- When the last access token issued for the session expires: how long a
	-- revocation must be remembered.
	access_expires_at  INTEGER NOT NULL,
	-- When the session's current refresh token expires.
	refresh_expires_at INTEGER NOT NULL,
	revoked_at         INTEGER,
	revoke_reason      TEXT
		CHECK (revoke_reason IN ('logout', 'logout_everywhere', 'refresh_token_reuse')),
	CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
) STRICT;

CREATE INDEX sessions_live_by_user ON sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
	-- SHA-256 of the token. The token itself is never stored, so a copy of
	-- the database holds nothing that can be presented.
	hash       BLOB PRIMARY KEY CHECK (length(hash) = 32),
	session_id TEXT NOT NULL REFERENCES sessions (id),
	expires_at INTEGER NOT NULL,
	-- Set when the token is exchanged; presenting it again revokes the
	-- session.
	used_at    INTEGER
) STRICT;

CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);
