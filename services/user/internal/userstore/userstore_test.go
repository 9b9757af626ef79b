package userstore_test

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"example.com/rampart/platform/sqlitedb"
	"example.com/rampart/services/user/internal/userstore"
)

// now is a fixed instant, so that expiries are exact.
var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T) *userstore.Store {
	t.Helper()
	db, err := sqlitedb.Open(t.Context(), filepath.Join(t.TempDir(), "user.db"), userstore.Migrations)
	if err != nil {
		t.Fatalf("opening database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return userstore.New(db)
}

// testHash stands for a password hash, which the store does not read.
const testHash = "$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$" +
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

func createUser(t *testing.T, s *userstore.Store, email string) userstore.User {
	t.Helper()
	u, err := s.CreateUser(t.Context(), userstore.User{
		ID:           uuid.NewString(),
		Email:        email,
		DisplayName:  "Ada",
		PasswordHash: testHash,
		CreateTime:   now,
	})
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", email, err)
	}
	return u
}

func newToken(expiry time.Time) userstore.RefreshToken {
	return userstore.RefreshToken{Hash: sha256.Sum256([]byte(rand.Text())), Expiry: expiry}
}

// startSession starts a session of user whose access token expires in
// five minutes and whose first refresh token expires in a day.
func startSession(t *testing.T, s *userstore.Store, user userstore.User) (
	userstore.Session, userstore.RefreshToken) {
	t.Helper()
	sess := userstore.Session{
		ID:           uuid.NewString(),
		UserID:       user.ID,
		CreateTime:   now,
		AccessExpiry: now.Add(5 * time.Minute),
	}
	first := newToken(now.Add(24 * time.Hour))
	if err := s.StartSession(t.Context(), sess, first); err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	return sess, first
}

// use exchanges token at the given time in its own transaction, which
// commits unless the store returned an error other than a reuse, and
// returns the store's error.
func use(t *testing.T, s *userstore.Store, token userstore.RefreshToken, at time.Time) error {
	t.Helper()
	var useErr error
	err := s.InTx(t.Context(), func(tx *userstore.Tx) error {
		_, useErr = tx.UseRefreshToken(t.Context(), token.Hash, at)
		if reuse := new(userstore.ReuseError); errors.As(useErr, &reuse) {
			return nil
		}
		return useErr
	})
	if err != nil && !errors.Is(err, useErr) {
		t.Fatalf("transaction: %v", err)
	}
	return useErr
}

func TestCreateUser(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	created := createUser(t, s, "  Ada.Lovelace@Example.COM ")

	want := userstore.User{
		ID:           created.ID,
		Email:        "ada.lovelace@example.com",
		DisplayName:  "Ada",
		PasswordHash: created.PasswordHash,
		CreateTime:   now,
	}
	if diff := cmp.Diff(want, created); diff != "" {
		t.Errorf("CreateUser (-want +got):\n%s", diff)
	}
	byID, err := s.UserByID(t.Context(), created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, byID); diff != "" {
		t.Errorf("UserByID (-want +got):\n%s", diff)
	}
	byEmail, err := s.UserByEmail(t.Context(), "ADA.LOVELACE@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, byEmail); diff != "" {
		t.Errorf("UserByEmail (-want +got):\n%s", diff)
	}
}

func TestCreateUserEmailTaken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, email string
	}{
		{"same address", "ada@example.com"},
		{"other case", "ADA@Example.com"},
		{"surrounding space", " ada@example.com\t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t)
			first := createUser(t, s, "ada@example.com")

			_, err := s.CreateUser(t.Context(), userstore.User{
				ID: uuid.NewString(), Email: tt.email, DisplayName: "Eve", PasswordHash: "x",
			})
			if !errors.Is(err, userstore.ErrEmailTaken) {
				t.Fatalf("CreateUser = %v, want ErrEmailTaken", err)
			}
			got, err := s.UserByEmail(t.Context(), "ada@example.com")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(first, got); diff != "" {
				t.Errorf("first user changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCreateUserRefusesIncomplete(t *testing.T) {
	t.Parallel()
	complete := userstore.User{
		ID: uuid.NewString(), Email: "a@example.com", DisplayName: "A", PasswordHash: "x",
	}
	tests := []struct {
		name   string
		change func(*userstore.User)
	}{
		{"no id", func(u *userstore.User) { u.ID = "" }},
		{"blank email", func(u *userstore.User) { u.Email = "  " }},
		{"no display name", func(u *userstore.User) { u.DisplayName = "" }},
		{"no password hash", func(u *userstore.User) { u.PasswordHash = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t)
			u := complete
			tt.change(&u)
			if _, err := s.CreateUser(t.Context(), u); err == nil {
				t.Fatal("CreateUser succeeded")
			}
			if _, err := s.UserByID(t.Context(), complete.ID); !errors.Is(err, userstore.ErrNotFound) {
				t.Errorf("UserByID = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestUserNotFound(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	createUser(t, s, "ada@example.com")
	if _, err := s.UserByID(t.Context(), uuid.NewString()); !errors.Is(err, userstore.ErrNotFound) {
		t.Errorf("UserByID = %v, want ErrNotFound", err)
	}
	_, err := s.UserByEmail(t.Context(), "eve@example.com")
	if !errors.Is(err, userstore.ErrNotFound) {
		t.Errorf("UserByEmail = %v, want ErrNotFound", err)
	}
	if err := s.SetPasswordHash(t.Context(), uuid.NewString(), "x"); !errors.Is(err,
		userstore.ErrNotFound) {
		t.Errorf("SetPasswordHash = %v, want ErrNotFound", err)
	}
}

func TestSetPasswordHash(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	u := createUser(t, s, "ada@example.com")
	if err := s.SetPasswordHash(t.Context(), u.ID, "new hash"); err != nil {
		t.Fatal(err)
	}
	got, err := s.UserByID(t.Context(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.PasswordHash != "new hash" {
		t.Errorf("PasswordHash = %q, want %q", got.PasswordHash, "new hash")
	}
}

// TestRefreshRotation follows a session through two rotations, then the
// reuse of its first token, which revokes it.
func TestRefreshRotation(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	user := createUser(t, s, "ada@example.com")
	sess, first := startSession(t, s, user)

	// Each token is exchanged once for the next.
	tokens := []userstore.RefreshToken{first}
	var accessExpiry time.Time
	for i := range 2 {
		at := now.Add(time.Duration(i+1) * time.Minute)
		accessExpiry = at.Add(5 * time.Minute)
		next := newToken(at.Add(24 * time.Hour))
		err := s.InTx(t.Context(), func(tx *userstore.Tx) error {
			got, err := tx.UseRefreshToken(t.Context(), tokens[i].Hash, at)
			if err != nil {
				return err
			}
			if got.ID != sess.ID || got.UserID != user.ID {
				t.Errorf("rotation %d: session %s of %s, want %s of %s",
					i, got.ID, got.UserID, sess.ID, user.ID)
			}
			return tx.ContinueSession(t.Context(), got.ID, next, accessExpiry)
		})
		if err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
		tokens = append(tokens, next)
	}

	// The first token again: the session is revoked, until its last access
	// token expires.
	err := use(t, s, first, now.Add(3*time.Minute))
	var reuse *userstore.ReuseError
	if !errors.As(err, &reuse) {
		t.Fatalf("reusing the first token = %v, want a ReuseError", err)
	}
	want := userstore.Revocation{
		SessionID:    sess.ID,
		UserID:       user.ID,
		Reason:       userstore.ReasonRefreshTokenReuse,
		AccessExpiry: accessExpiry,
	}
	if diff := cmp.Diff(want, reuse.Revocation); diff != "" {
		t.Errorf("revocation (-want +got):\n%s", diff)
	}

	// Every token of the session is now worthless, the unused one included,
	// and a second reuse revokes nothing more.
	for i, token := range tokens {
		err := use(t, s, token, now.Add(4*time.Minute))
		if !errors.Is(err, userstore.ErrInvalidRefreshToken) {
			t.Errorf("token %d after revocation = %v, want ErrInvalidRefreshToken", i, err)
		}
	}
}

func TestReuseRolledBack(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	user := createUser(t, s, "ada@example.com")
	_, first := startSession(t, s, user)
	next := newToken(now.Add(time.Hour))
	err := s.InTx(t.Context(), func(tx *userstore.Tx) error {
		sess, err := tx.UseRefreshToken(t.Context(), first.Hash, now)
		if err != nil {
			return err
		}
		return tx.ContinueSession(t.Context(), sess.ID, next, now.Add(time.Minute))
	})
	if err != nil {
		t.Fatal(err)
	}

	// A reuse whose transaction rolls back leaves the session live.
	boom := errors.New("boom")
	err = s.InTx(t.Context(), func(tx *userstore.Tx) error {
		if _, err := tx.UseRefreshToken(t.Context(), first.Hash, now); err == nil {
			t.Error("reuse succeeded")
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx = %v", err)
	}
	if err := use(t, s, next, now); err != nil {
		t.Errorf("next token after a rolled-back reuse = %v", err)
	}
}

func TestUseRefreshTokenRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		token func(*testing.T, *userstore.Store) userstore.RefreshToken
		at    time.Time
	}{
		{
			name: "unknown",
			token: func(*testing.T, *userstore.Store) userstore.RefreshToken {
				return newToken(now.Add(time.Hour))
			},
			at: now,
		},
		{
			name: "expired",
			token: func(t *testing.T, s *userstore.Store) userstore.RefreshToken {
				t.Helper()
				_, first := startSession(t, s, createUser(t, s, "ada@example.com"))
				return first
			},
			at: now.Add(24 * time.Hour),
		},
		{
			name: "session logged out",
			token: func(t *testing.T, s *userstore.Store) userstore.RefreshToken {
				t.Helper()
				user := createUser(t, s, "ada@example.com")
				sess, first := startSession(t, s, user)
				err := s.InTx(t.Context(), func(tx *userstore.Tx) error {
					_, _, err := tx.RevokeSession(t.Context(), user.ID, sess.ID, userstore.ReasonLogout, now)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				return first
			},
			at: now,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t)
			token := tt.token(t, s)
			for attempt := range 2 {
				err := use(t, s, token, tt.at)
				if !errors.Is(err, userstore.ErrInvalidRefreshToken) {
					t.Errorf("attempt %d = %v, want ErrInvalidRefreshToken", attempt, err)
				}
			}
		})
	}
}

func TestContinueRevokedSession(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	user := createUser(t, s, "ada@example.com")
	sess, _ := startSession(t, s, user)
	err := s.InTx(t.Context(), func(tx *userstore.Tx) error {
		_, _, err := tx.RevokeSession(t.Context(), user.ID, sess.ID, userstore.ReasonLogout, now)
		if err != nil {
			return err
		}
		next := newToken(now.Add(time.Hour))
		return tx.ContinueSession(t.Context(), sess.ID, next, now.Add(time.Minute))
	})
	if !errors.Is(err, userstore.ErrNotFound) {
		t.Errorf("ContinueSession = %v, want ErrNotFound", err)
	}
}

func revoke(t *testing.T, s *userstore.Store, userID, sessionID string) (
	userstore.Revocation, bool, error) {
	t.Helper()
	var rev userstore.Revocation
	var ok bool
	err := s.InTx(t.Context(), func(tx *userstore.Tx) error {
		var err error
		rev, ok, err = tx.RevokeSession(t.Context(), userID, sessionID, userstore.ReasonLogout, now)
		return err
	})
	return rev, ok, err
}

func TestRevokeSession(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ada := createUser(t, s, "ada@example.com")
	eve := createUser(t, s, "eve@example.com")
	sess, first := startSession(t, s, ada)

	// Another user cannot name the session.
	if _, _, err := revoke(t, s, eve.ID, sess.ID); !errors.Is(err, userstore.ErrNotFound) {
		t.Errorf("revoking another user's session = %v, want ErrNotFound", err)
	}
	if _, _, err := revoke(t, s, ada.ID, uuid.NewString()); !errors.Is(err, userstore.ErrNotFound) {
		t.Errorf("revoking an unknown session = %v, want ErrNotFound", err)
	}

	rev, ok, err := revoke(t, s, ada.ID, sess.ID)
	if err != nil || !ok {
		t.Fatalf("RevokeSession = %v, %v", ok, err)
	}
	want := userstore.Revocation{
		SessionID:    sess.ID,
		UserID:       ada.ID,
		Reason:       userstore.ReasonLogout,
		AccessExpiry: sess.AccessExpiry,
	}
	if diff := cmp.Diff(want, rev); diff != "" {
		t.Errorf("revocation (-want +got):\n%s", diff)
	}
	if err := use(t, s, first, now); !errors.Is(err, userstore.ErrInvalidRefreshToken) {
		t.Errorf("refresh after revocation = %v, want ErrInvalidRefreshToken", err)
	}

	// Revoking again changes nothing and reports it.
	rev, ok, err = revoke(t, s, ada.ID, sess.ID)
	if err != nil || ok || rev != (userstore.Revocation{}) {
		t.Errorf("second RevokeSession = %+v, %v, %v; want nothing", rev, ok, err)
	}
}

func TestRevokeSessions(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ada := createUser(t, s, "ada@example.com")
	eve := createUser(t, s, "eve@example.com")
	live1, _ := startSession(t, s, ada)
	live2, _ := startSession(t, s, ada)
	loggedOut, _ := startSession(t, s, ada)
	if _, _, err := revoke(t, s, ada.ID, loggedOut.ID); err != nil {
		t.Fatal(err)
	}
	ended := userstore.Session{
		ID:           uuid.NewString(),
		UserID:       ada.ID,
		CreateTime:   now.Add(-48 * time.Hour),
		AccessExpiry: now.Add(-47 * time.Hour),
	}
	if err := s.StartSession(t.Context(), ended, newToken(now.Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	_, eveToken := startSession(t, s, eve)

	revokeAll := func() []userstore.Revocation {
		t.Helper()
		var revoked []userstore.Revocation
		err := s.InTx(t.Context(), func(tx *userstore.Tx) error {
			var err error
			revoked, err = tx.RevokeSessions(t.Context(), ada.ID, userstore.ReasonLogoutEverywhere, now)
			return err
		})
		if err != nil {
			t.Fatalf("RevokeSessions: %v", err)
		}
		return revoked
	}

	var want []userstore.Revocation
	for _, sess := range []userstore.Session{live1, live2} {
		want = append(want, userstore.Revocation{SessionID: sess.ID, UserID: ada.ID,
			Reason: userstore.ReasonLogoutEverywhere, AccessExpiry: sess.AccessExpiry})
	}
	if want[0].SessionID > want[1].SessionID {
		want[0], want[1] = want[1], want[0]
	}
	if diff := cmp.Diff(want, revokeAll()); diff != "" {
		t.Errorf("RevokeSessions (-want +got):\n%s", diff)
	}
	if got := revokeAll(); len(got) != 0 {
		t.Errorf("second RevokeSessions = %+v, want none", got)
	}
	if err := use(t, s, eveToken, now); err != nil {
		t.Errorf("another user's session after RevokeSessions: %v", err)
	}
}
