// Package userstore keeps the user service's accounts, sessions and
// refresh tokens in its SQLite database.
//
// A session is what one login starts. It ends when it is revoked (logout,
// logout everywhere, or reuse of a refresh token) or when neither its
// access tokens nor its refresh token are valid any more. Refresh tokens
// are stored only as their SHA-256 hash and are valid once: each use is
// recorded, and presenting a used token again revokes its session, since
// two parties then hold the same token.
//
// Changes that other services must hear about run in a [Tx], so that the
// caller can write the events that announce them into the outbox in the
// same transaction.
//
// TODO: Used and expired refresh tokens and ended sessions are never
// deleted, so the tables grow with every login and refresh; a periodic
// sweep of the rows past their expiry would bound them.
package userstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"example.com/rampart/platform/sqlitedb"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the store's tables; pass it to the workload's OpenDB.
var Migrations = sqlitedb.Migrations{Name: "user", FS: mustSub(migrationFiles, "migrations")}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// Errors of the store. Callers map them to what their clients see.
var (
	ErrNotFound   = errors.New("userstore: not found")
	ErrEmailTaken = errors.New("userstore: email address already registered")
	// ErrInvalidRefreshToken covers every refresh token that cannot be
	// exchanged and was not reused: unknown, expired, or of a session that
	// has ended.
	ErrInvalidRefreshToken = errors.New("userstore: unknown, expired or revoked refresh token")
)

// ReuseError reports a refresh token presented after it had been used. The
// store has revoked the token's session in the same [Tx]: the caller should
// announce the revocation and commit.
type ReuseError struct {
	Revocation Revocation
}

func (e *ReuseError) Error() string {
	return "userstore: refresh token used twice; session " + e.Revocation.SessionID + " revoked"
}

// User is an account.
type User struct {
	ID          string
	Email       string
	DisplayName string
	// PasswordHash is the argon2id PHC string of the password.
	PasswordHash string
	CreateTime   time.Time
}

// Session is one login of a user.
type Session struct {
	ID         string
	UserID     string
	CreateTime time.Time
	// AccessExpiry is when the last access token issued for the session
	// expires.
	AccessExpiry time.Time
}

// RefreshToken is a refresh token as the store knows it: by its hash.
type RefreshToken struct {
	Hash   [sha256.Size]byte
	Expiry time.Time
}

// Reason says why a session was revoked.
type Reason string

// The reasons a session is revoked.
const (
	ReasonLogout            Reason = "logout"
	ReasonLogoutEverywhere  Reason = "logout_everywhere"
	ReasonRefreshTokenReuse Reason = "refresh_token_reuse"
)

// Revocation is a session that was just revoked, with what the event that
// announces it needs.
type Revocation struct {
	SessionID string
	UserID    string
	Reason    Reason
	// AccessExpiry is when the last access token of the session expires:
	// until then, those tokens must be refused.
	AccessExpiry time.Time
}

// Store is the user service's storage. It is safe for concurrent use.
type Store struct {
	db *sql.DB
}

// New returns a store on db, which must have [Migrations] applied.
func New(db *sql.DB) *Store { return &Store{db: db} }

// Tx is a transaction of the store.
type Tx struct {
	tx *sql.Tx
}

// SQL returns the underlying transaction, for writing into the outbox the
// events that announce the transaction's changes.
func (t *Tx) SQL() *sql.Tx { return t.tx }

// InTx runs fn in a transaction that commits if fn returns nil and rolls
// back otherwise.
func (s *Store) InTx(ctx context.Context, fn func(*Tx) error) error {
	return sqlitedb.InTx(ctx, s.db, func(tx *sql.Tx) error { return fn(&Tx{tx: tx}) })
}

// NormalizeEmail returns the form in which an email address is stored and
// looked up: without surrounding space, in lower case.
func NormalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// CreateUser stores u with its email address normalized, and its creation
// time set to now if zero, and returns it as stored. It returns
// [ErrEmailTaken] if the address is registered already, and refuses a user
// without an id, address, display name or password hash.
func (s *Store) CreateUser(ctx context.Context, u User) (User, error) {
	u.Email = NormalizeEmail(u.Email)
	if u.CreateTime.IsZero() {
		u.CreateTime = time.Now()
	}
	u.CreateTime = u.CreateTime.UTC().Truncate(time.Millisecond)
	if u.ID == "" || u.Email == "" || u.DisplayName == "" || u.PasswordHash == "" {
		return User{}, errors.New("creating user: id, email, display name and password hash are required")
	}
	res, err := s.db.ExecContext(ctx, `
		INSERT INTO users (id, email, display_name, password_hash, created_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (email) DO NOTHING`,
		u.ID, u.Email, u.DisplayName, u.PasswordHash, u.CreateTime.UnixMilli())
	if err != nil {
		return User{}, fmt.Errorf("creating user: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return User{}, fmt.Errorf("creating user: %w", err)
	} else if n == 0 {
		return User{}, ErrEmailTaken
	}
	return u, nil
}

const selectUser = `SELECT id, email, display_name, password_hash, created_at FROM users`

// UserByID returns the user with id, or [ErrNotFound].
func (s *Store) UserByID(ctx context.Context, id string) (User, error) {
	return s.user(ctx, selectUser+` WHERE id = ?`, id)
}

// UserByEmail returns the user with the email address, compared in its
// normalized form, or [ErrNotFound].
func (s *Store) UserByEmail(ctx context.Context, email string) (User, error) {
	return s.user(ctx, selectUser+` WHERE email = ?`, NormalizeEmail(email))
}

func (s *Store) user(ctx context.Context, query string, arg string) (User, error) {
	var u User
	var created int64
	err := s.db.QueryRowContext(ctx, query, arg).
		Scan(&u.ID, &u.Email, &u.DisplayName, &u.PasswordHash, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("reading user: %w", err)
	}
	u.CreateTime = time.UnixMilli(created).UTC()
	return u, nil
}

// SetPasswordHash replaces the password hash of the user with id, or
// returns [ErrNotFound].
func (s *Store) SetPasswordHash(ctx context.Context, id, hash string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE id = ?`, hash, id)
	if err != nil {
		return fmt.Errorf("updating password hash: %w", err)
	}
	return oneRow(res, "updating password hash")
}

// StartSession stores a new session with its first refresh token.
func (s *Store) StartSession(ctx context.Context, sess Session, first RefreshToken) error {
	return s.InTx(ctx, func(tx *Tx) error {
		_, err := tx.tx.ExecContext(ctx, `
			INSERT INTO sessions (id, user_id, created_at, access_expires_at, refresh_expires_at)
			VALUES (?, ?, ?, ?, ?)`,
			sess.ID, sess.UserID, sess.CreateTime.UnixMilli(), sess.AccessExpiry.UnixMilli(),
			first.Expiry.UnixMilli())
		if err != nil {
			return fmt.Errorf("starting session: %w", err)
		}
		return tx.insertRefreshToken(ctx, sess.ID, first)
	})
}

// UseRefreshToken exchanges the refresh token whose hash is given: it
// marks the token used and returns its session, for the caller to issue
// new tokens in with [Tx.ContinueSession].
//
// A token that was used before revokes its session and returns a
// [*ReuseError]; commit the transaction to keep the revocation. Unknown and
// expired tokens, and tokens of a revoked session, return
// [ErrInvalidRefreshToken] and change nothing.
func (t *Tx) UseRefreshToken(ctx context.Context, hash [sha256.Size]byte, now time.Time) (
	Session, error) {
	var sess Session
	var created, accessExpiry, expiry int64
	var used, revoked sql.NullInt64
	err := t.tx.QueryRowContext(ctx, `
		SELECT s.id, s.user_id, s.created_at, s.access_expires_at, s.revoked_at,
			t.expires_at, t.used_at
		FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
		WHERE t.hash = ?`, hash[:]).
		Scan(&sess.ID, &sess.UserID, &created, &accessExpiry, &revoked, &expiry, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, ErrInvalidRefreshToken
	}
	if err != nil {
		return Session{}, fmt.Errorf("reading refresh token: %w", err)
	}
	sess.CreateTime = time.UnixMilli(created).UTC()
	sess.AccessExpiry = time.UnixMilli(accessExpiry).UTC()

	switch {
	case revoked.Valid:
		return Session{}, ErrInvalidRefreshToken
	case used.Valid:
		// Checked before expiry: a copy of an old token is as much a sign of
		// theft as a copy of a fresh one.
		rev, _, err := t.RevokeSession(ctx, sess.UserID, sess.ID, ReasonRefreshTokenReuse, now)
		if err != nil {
			return Session{}, err
		}
		return Session{}, &ReuseError{Revocation: rev}
	case now.UnixMilli() >= expiry:
		return Session{}, ErrInvalidRefreshToken
	}

	res, err := t.tx.ExecContext(ctx,
		`UPDATE refresh_tokens SET used_at = ? WHERE hash = ? AND used_at IS NULL`,
		now.UnixMilli(), hash[:])
	if err != nil {
		return Session{}, fmt.Errorf("using refresh token: %w", err)
	}
	if err := oneRow(res, "using refresh token"); err != nil {
		return Session{}, err
	}
	return sess, nil
}

// ContinueSession stores the session's next refresh token and records when
// the access token just issued in it expires. It returns [ErrNotFound] if
// the session is unknown or revoked.
func (t *Tx) ContinueSession(ctx context.Context, sessionID string, next RefreshToken,
	accessExpiry time.Time) error {
	res, err := t.tx.ExecContext(ctx, `
		UPDATE sessions
		SET access_expires_at = max(access_expires_at, ?), refresh_expires_at = ?
		WHERE id = ? AND revoked_at IS NULL`,
		accessExpiry.UnixMilli(), next.Expiry.UnixMilli(), sessionID)
	if err != nil {
		return fmt.Errorf("continuing session: %w", err)
	}
	if err := oneRow(res, "continuing session"); err != nil {
		return err
	}
	return t.insertRefreshToken(ctx, sessionID, next)
}

func (t *Tx) insertRefreshToken(ctx context.Context, sessionID string, token RefreshToken) error {
	_, err := t.tx.ExecContext(ctx,
		`INSERT INTO refresh_tokens (hash, session_id, expires_at) VALUES (?, ?, ?)`,
		token.Hash[:], sessionID, token.Expiry.UnixMilli())
	if err != nil {
		return fmt.Errorf("storing refresh token: %w", err)
	}
	return nil
}

// RevokeSession revokes the session sessionID of the user userID and
// returns the revocation to announce. It reports false, and changes
// nothing, if the session was revoked already; it returns [ErrNotFound] if
// the user has no such session.
func (t *Tx) RevokeSession(ctx context.Context, userID, sessionID string, reason Reason,
	now time.Time) (Revocation, bool, error) {
	var accessExpiry int64
	err := t.tx.QueryRowContext(ctx, `
		UPDATE sessions SET revoked_at = ?, revoke_reason = ?
		WHERE id = ? AND user_id = ? AND revoked_at IS NULL
		RETURNING access_expires_at`,
		now.UnixMilli(), string(reason), sessionID, userID).Scan(&accessExpiry)
	if errors.Is(err, sql.ErrNoRows) {
		var exists bool
		err := t.tx.QueryRowContext(ctx,
			`SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ? AND user_id = ?)`,
			sessionID, userID).Scan(&exists)
		if err != nil {
			return Revocation{}, false, fmt.Errorf("revoking session: %w", err)
		}
		if !exists {
			return Revocation{}, false, ErrNotFound
		}
		return Revocation{}, false, nil
	}
	if err != nil {
		return Revocation{}, false, fmt.Errorf("revoking session: %w", err)
	}
	return Revocation{
		SessionID:    sessionID,
		UserID:       userID,
		Reason:       reason,
		AccessExpiry: time.UnixMilli(accessExpiry).UTC(),
	}, true, nil
}

// RevokeSessions revokes every live session of the user userID, those whose
// access or refresh tokens are still valid at now, and returns the
// revocations to announce, ordered by session id.
func (t *Tx) RevokeSessions(ctx context.Context, userID string, reason Reason,
	now time.Time) ([]Revocation, error) {
	rows, err := t.tx.QueryContext(ctx, `
		UPDATE sessions SET revoked_at = ?, revoke_reason = ?
		WHERE user_id = ? AND revoked_at IS NULL
			AND max(access_expires_at, refresh_expires_at) > ?
		RETURNING id, access_expires_at`,
		now.UnixMilli(), string(reason), userID, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("revoking sessions: %w", err)
	}
	defer rows.Close()
	var revoked []Revocation
	for rows.Next() {
		rev := Revocation{UserID: userID, Reason: reason}
		var accessExpiry int64
		if err := rows.Scan(&rev.SessionID, &accessExpiry); err != nil {
			return nil, fmt.Errorf("revoking sessions: %w", err)
		}
		rev.AccessExpiry = time.UnixMilli(accessExpiry).UTC()
		revoked = append(revoked, rev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("revoking sessions: %w", err)
	}
	slices.SortFunc(revoked, func(a, b Revocation) int {
		return strings.Compare(a.SessionID, b.SessionID)
	})
	return revoked, nil
}

// oneRow checks that a statement changed exactly one row, and returns
// [ErrNotFound] if it changed none.
func oneRow(res sql.Result, doing string) error {
	n, err := res.RowsAffected()
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", doing, err)
	case n == 0:
		return ErrNotFound
	case n > 1:
		return fmt.Errorf("%s: %d rows changed, want 1", doing, n)
	}
	return nil
}
