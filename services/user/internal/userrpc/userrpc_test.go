package userrpc_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	userv1 "example.com/rampart/proto/user/v1"
	"example.com/rampart/services/user/internal/password"
	"example.com/rampart/services/user/internal/userissuer"
	"example.com/rampart/services/user/internal/userrpc"
)

var refreshTokenForm = regexp.MustCompile(`^rt_[A-Za-z0-9_-]{43}$`)

func TestSignUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	before := time.Now()
	user := h.signUp(t, "  Ada.Lovelace@Example.COM ")

	if _, err := uuid.Parse(user.GetUserId()); err != nil {
		t.Errorf("user_id %q: %v", user.GetUserId(), err)
	}
	ct := user.GetCreateTime().AsTime()
	if ct.Before(before.Truncate(time.Millisecond)) || ct.After(time.Now()) {
		t.Errorf("create_time %v, want the time of the call", ct)
	}
	want := &userv1.User{
		UserId:      user.GetUserId(),
		Email:       "ada.lovelace@example.com",
		DisplayName: "Ada Lovelace",
		CreateTime:  user.GetCreateTime(),
	}
	if diff := cmp.Diff(want, user, protocmp.Transform()); diff != "" {
		t.Errorf("SignUp (-want +got):\n%s", diff)
	}

	// The account is stored as returned, with an argon2id hash of the
	// password and not the password itself.
	stored, err := h.store.UserByID(t.Context(), user.GetUserId())
	if err != nil {
		t.Fatal(err)
	}
	if err := password.Verify(goodPass, stored.PasswordHash); err != nil {
		t.Errorf("stored hash does not verify: %v", err)
	}
	if strings.Contains(stored.PasswordHash, goodPass) {
		t.Error("the stored hash contains the password")
	}
	me, err := h.srv.GetMe(asUser(t, user.GetUserId(), uuid.NewString()), &userv1.GetMeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, me.GetUser(), protocmp.Transform()); diff != "" {
		t.Errorf("GetMe after SignUp (-want +got):\n%s", diff)
	}
}

func TestSignUpUsesDefaultParams(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes with the full cost")
	}
	t.Parallel()
	h := newHarness(t, harnessOptions{params: password.DefaultParams})
	user := h.signUp(t, "ada@example.com")
	stored, err := h.store.UserByID(t.Context(), user.GetUserId())
	if err != nil {
		t.Fatal(err)
	}
	got, err := password.ParseParams(stored.PasswordHash)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(password.DefaultParams, got); diff != "" {
		t.Errorf("stored parameters (-want +got):\n%s", diff)
	}
}

func TestSignUpRefuses(t *testing.T) {
	t.Parallel()
	const (
		taken       = "email address already registered"
		badEmail    = "invalid email address"
		badPassword = "password must be 12 characters to 128 bytes long"
		badName     = "invalid display name"
	)
	tests := []struct {
		name, email, password, displayName string
		code                               codes.Code
		msg                                string
	}{
		{"taken address", "ada@example.com", goodPass, "Eve", codes.AlreadyExists, taken},
		{"taken in other case", " ADA@example.COM", goodPass, "Eve", codes.AlreadyExists, taken},
		{"no address", "   ", goodPass, "Eve", codes.InvalidArgument, badEmail},
		{"no domain", "eve@", goodPass, "Eve", codes.InvalidArgument, badEmail},
		{"address too long", strings.Repeat("e", 250) + "@x.io", goodPass, "Eve",
			codes.InvalidArgument, badEmail},
		{"short password", "eve@example.com", "elevenchars", "Eve", codes.InvalidArgument, badPassword},
		{"long password", "eve@example.com", strings.Repeat("p", 129), "Eve",
			codes.InvalidArgument, badPassword},
		{"no display name", "eve@example.com", goodPass, "", codes.InvalidArgument, badName},
		{"control character", "eve@example.com", goodPass, "Eve\x1b[31m", codes.InvalidArgument, badName},
		{"format character", "eve@example.com", goodPass, "Eve\u202e", codes.InvalidArgument, badName},
		{"display name too long", "eve@example.com", goodPass, strings.Repeat("é", 65),
			codes.InvalidArgument, badName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			h.signUp(t, "ada@example.com")

			_, err := h.srv.SignUp(anonymous(t), &userv1.SignUpRequest{
				Email: tt.email, Password: tt.password, DisplayName: tt.displayName,
			})
			wantStatus(t, err, tt.code, tt.msg)
			var users int
			row := h.db.QueryRowContext(t.Context(), `SELECT count(*) FROM users`)
			if err := row.Scan(&users); err != nil {
				t.Fatal(err)
			}
			if users != 1 {
				t.Errorf("%d users stored, want 1", users)
			}
		})
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	user := h.signUp(t, "ada@example.com")

	resp, err := h.srv.Login(anonymous(t),
		&userv1.LoginRequest{Email: " ADA@Example.com", Password: goodPass})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if resp.GetTokenType() != "Bearer" || resp.GetExpiresIn() != 300 {
		t.Errorf("token_type %q, expires_in %d; want Bearer, 300",
			resp.GetTokenType(), resp.GetExpiresIn())
	}
	claims := h.verify(t, resp.GetAccessToken())
	if _, err := uuid.Parse(claims.SessionID); err != nil {
		t.Errorf("sid %q: %v", claims.SessionID, err)
	}
	want := []string{issuerURL, user.GetUserId(), strings.Join(userissuer.Scopes, " "), "5m0s"}
	got := []string{claims.Issuer, claims.Subject, strings.Join(claims.Scopes, " "),
		claims.Expiry.Sub(claims.IssuedAt).String()}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("access token claims (-want +got):\n%s", diff)
	}
	if !refreshTokenForm.MatchString(resp.GetRefreshToken()) {
		t.Errorf("refresh token %q does not match %s", resp.GetRefreshToken(), refreshTokenForm)
	}

	// Only the hash of the refresh token is stored: its bytes are nowhere
	// in the database files.
	var stored []byte
	row := h.db.QueryRowContext(t.Context(), `SELECT hash FROM refresh_tokens`)
	if err := row.Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256([]byte(resp.GetRefreshToken())); !bytes.Equal(stored, sum[:]) {
		t.Errorf("stored %x, want the SHA-256 of the token", stored)
	}
	files, err := filepath.Glob(filepath.Join(h.dir, "user.db*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("database files: %v, %v", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		secret := strings.TrimPrefix(resp.GetRefreshToken(), "rt_")
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("%s holds the refresh token", filepath.Base(f))
		}
	}
}

func TestLoginRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, email, password string
	}{
		{"unknown address", "eve@example.com", goodPass},
		{"wrong password", "ada@example.com", goodPass + "!"},
		{"password of another account", "bob@example.com", goodPass},
		{"password too long to hash", "ada@example.com", strings.Repeat("p", 129)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			h.signUp(t, "ada@example.com")
			_, err := h.srv.SignUp(anonymous(t), &userv1.SignUpRequest{
				Email: "bob@example.com", Password: "another password entirely", DisplayName: "Bob",
			})
			if err != nil {
				t.Fatal(err)
			}

			_, err = h.srv.Login(anonymous(t), &userv1.LoginRequest{Email: tt.email, Password: tt.password})
			wantStatus(t, err, codes.Unauthenticated, "invalid email or password")
			var sessions int
			row := h.db.QueryRowContext(t.Context(), `SELECT count(*) FROM sessions`)
			if err := row.Scan(&sessions); err != nil {
				t.Fatal(err)
			}
			if sessions != 0 {
				t.Errorf("%d sessions started, want none", sessions)
			}
		})
	}
}

// TestLoginSpendsHashForUnknownAddress checks that a login naming no
// account still checks a password against a hash of the configured cost,
// as a login with a wrong password does, so that its timing does not say
// whether the account exists.
func TestLoginSpendsHashForUnknownAddress(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, email string }{
		{"unknown address", "eve@example.com"},
		{"known address", "ada@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			h.signUp(t, "ada@example.com")
			var checked []string
			userrpc.ObserveVerify(h.srv, func(encoded string) { checked = append(checked, encoded) })

			_, err := h.srv.Login(anonymous(t),
				&userv1.LoginRequest{Email: tt.email, Password: "wrong password!"})
			wantStatus(t, err, codes.Unauthenticated, "invalid email or password")
			if len(checked) != 1 {
				t.Fatalf("%d hashes checked, want 1", len(checked))
			}
			params, err := password.ParseParams(checked[0])
			if err != nil {
				t.Fatalf("checked %q: %v", checked[0], err)
			}
			if diff := cmp.Diff(cheap, params); diff != "" {
				t.Errorf("cost of the checked hash (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoginUpgradesHash raises the configured parameters: the next login
// replaces the stored hash with one of the new cost.
func TestLoginUpgradesHash(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	user := h.signUp(t, "ada@example.com")

	raised := cheap
	raised.Iterations = 2
	srv, err := userrpc.New(userrpc.Config{
		Store:           h.store,
		Outbox:          h.outbox,
		Tokens:          issuerOf(t),
		RefreshTokenTTL: time.Hour,
		Password:        raised,
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, err := srv.Login(anonymous(t), &userv1.LoginRequest{Email: "ada@example.com", Password: goodPass})
		if err != nil {
			t.Fatalf("Login: %v", err)
		}
		stored, err := h.store.UserByID(t.Context(), user.GetUserId())
		if err != nil {
			t.Fatal(err)
		}
		if got, err := password.ParseParams(stored.PasswordHash); err != nil || got != raised {
			t.Errorf("stored parameters %+v, %v; want %+v", got, err, raised)
		}
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	user := h.signUp(t, "ada@example.com")
	first := h.login(t, "ada@example.com")

	second, err := h.refresh(t, first.refresh)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	third, err := h.refresh(t, second.refresh)
	if err != nil {
		t.Fatalf("second Refresh: %v", err)
	}
	for i, s := range []session{second, third} {
		if s.claims.Subject != user.GetUserId() || s.claims.SessionID != first.claims.SessionID {
			t.Errorf("refresh %d: sub %q sid %q, want %q %q", i, s.claims.Subject, s.claims.SessionID,
				user.GetUserId(), first.claims.SessionID)
		}
		if !refreshTokenForm.MatchString(s.refresh) {
			t.Errorf("refresh %d: refresh token %q does not match %s", i, s.refresh, refreshTokenForm)
		}
	}
	if first.refresh == second.refresh || second.refresh == third.refresh ||
		first.access == second.access {
		t.Error("Refresh returned a token it was given")
	}
	if n := len(h.events(t)); n != 0 {
		t.Errorf("%d events after plain refreshes, want none", n)
	}
}

// TestRefreshTokenReuse presents a rotated refresh token again: the
// session is revoked, the revocation is announced once through the outbox
// and audited, and every token of the session stops working.
func TestRefreshTokenReuse(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	user := h.signUp(t, "ada@example.com")
	first := h.login(t, "ada@example.com")
	second, err := h.refresh(t, first.refresh)
	if err != nil {
		t.Fatal(err)
	}
	other := h.login(t, "ada@example.com")

	_, err = h.refresh(t, first.refresh)
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")

	want := []*userv1.SessionRevoked{{
		SessionId:  first.claims.SessionID,
		UserId:     user.GetUserId(),
		ExpireTime: timestamppb.New(second.claims.Expiry),
		Reason:     userv1.RevocationReason_REVOCATION_REASON_REFRESH_TOKEN_REUSE,
	}}
	if diff := cmp.Diff(want, h.events(t), protocmp.Transform()); diff != "" {
		t.Errorf("outbox (-want +got):\n%s", diff)
	}
	if n := h.outbox.notified.Load(); n != 1 {
		t.Errorf("relay woken %d times, want 1", n)
	}

	// The token issued by the last rotation is revoked with its session,
	// and neither token revokes anything more.
	for _, token := range []string{second.refresh, first.refresh} {
		_, err := h.refresh(t, token)
		wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	}
	if n := len(h.events(t)); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
	// Another session of the same user goes on.
	if _, err := h.refresh(t, other.refresh); err != nil {
		t.Errorf("refreshing another session: %v", err)
	}

	wantLog := []map[string]any{{
		"level":      "WARN",
		"msg":        "refresh token reused; session revoked",
		"audit":      "session_revoked",
		"reason":     "refresh_token_reuse",
		"session_id": first.claims.SessionID,
		"user_id":    user.GetUserId(),
	}}
	if diff := cmp.Diff(wantLog, records(t, h.logs)); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	for _, token := range []string{first.refresh, second.refresh, first.access} {
		if strings.Contains(h.logs.String(), strings.TrimPrefix(token, "rt_")) {
			t.Error("the log holds a token")
		}
	}
}

func TestRefreshRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		opts  harnessOptions
		token func(*testing.T, *harness) string
	}{
		{"empty", harnessOptions{}, func(*testing.T, *harness) string { return "" }},
		{"no prefix", harnessOptions{}, func(_ *testing.T, h *harness) string {
			return strings.TrimPrefix(h.login(t, "ada@example.com").refresh, "rt_")
		}},
		{"other prefix", harnessOptions{}, func(_ *testing.T, h *harness) string {
			return "xx_" + strings.TrimPrefix(h.login(t, "ada@example.com").refresh, "rt_")
		}},
		{"truncated", harnessOptions{}, func(_ *testing.T, h *harness) string {
			return h.login(t, "ada@example.com").refresh[:45]
		}},
		{"padded", harnessOptions{}, func(_ *testing.T, h *harness) string {
			return h.login(t, "ada@example.com").refresh + "="
		}},
		{"unknown", harnessOptions{}, func(*testing.T, *harness) string {
			return "rt_" + strings.Repeat("A", 42) + "E"
		}},
		{"expired", harnessOptions{refreshTTL: time.Nanosecond}, func(_ *testing.T, h *harness) string {
			return h.login(t, "ada@example.com").refresh
		}},
		{"logged out", harnessOptions{}, func(_ *testing.T, h *harness) string {
			s := h.login(t, "ada@example.com")
			logout(t, h, s.claims.Subject, s.claims.SessionID)
			return s.refresh
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tt.opts)
			h.signUp(t, "ada@example.com")
			token := tt.token(t, h)
			eventsBefore := len(h.events(t))

			_, err := h.refresh(t, token)
			wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
			if n := len(h.events(t)); n != eventsBefore {
				t.Errorf("%d events after a refused refresh, want %d", n, eventsBefore)
			}
		})
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	user := h.signUp(t, "ada@example.com")
	s := h.login(t, "ada@example.com")
	other := h.login(t, "ada@example.com")
	ctx := asUser(t, user.GetUserId(), s.claims.SessionID)

	// Twice: the second changes nothing and succeeds.
	for range 2 {
		if _, err := h.srv.Logout(ctx, &userv1.LogoutRequest{}); err != nil {
			t.Fatalf("Logout: %v", err)
		}
	}
	want := []*userv1.SessionRevoked{{
		SessionId:  s.claims.SessionID,
		UserId:     user.GetUserId(),
		ExpireTime: timestamppb.New(s.claims.Expiry),
		Reason:     userv1.RevocationReason_REVOCATION_REASON_LOGOUT,
	}}
	if diff := cmp.Diff(want, h.events(t), protocmp.Transform()); diff != "" {
		t.Errorf("outbox (-want +got):\n%s", diff)
	}
	if n := h.outbox.notified.Load(); n != 1 {
		t.Errorf("relay woken %d times, want 1", n)
	}
	_, err := h.refresh(t, s.refresh)
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	if _, err := h.refresh(t, other.refresh); err != nil {
		t.Errorf("refreshing another session after logout: %v", err)
	}
}

// TestLogoutExpireTime checks that the announced expiry is that of the
// session's last access token, which a refresh moves later.
func TestLogoutExpireTime(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the clock to pass a whole second")
	}
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	user := h.signUp(t, "ada@example.com")
	first := h.login(t, "ada@example.com")
	// Into the next second, so that the next token expires later.
	time.Sleep(time.Until(first.claims.IssuedAt.Add(time.Second)))
	last, err := h.refresh(t, first.refresh)
	if err != nil {
		t.Fatal(err)
	}
	if !last.claims.Expiry.After(first.claims.Expiry) {
		t.Fatalf("refreshed token expires %v, not after %v", last.claims.Expiry, first.claims.Expiry)
	}

	// The caller's token is the first one: the session, not the token,
	// decides the expiry.
	logout(t, h, user.GetUserId(), first.claims.SessionID)
	events := h.events(t)
	if len(events) != 1 {
		t.Fatalf("%d events, want 1", len(events))
	}
	if got := events[0].GetExpireTime().AsTime(); !got.Equal(last.claims.Expiry) {
		t.Errorf("expire_time %v, want %v", got, last.claims.Expiry)
	}
}

func TestLogoutRefuses(t *testing.T) { //nolint:tparallel // checks after the cases need them done
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	ada := h.signUp(t, "ada@example.com")
	bob := h.signUp(t, "bob@example.com")
	s := h.login(t, "ada@example.com")

	tests := []struct {
		name              string
		userID, sessionID string
		code              codes.Code
		msg               string
	}{
		{"another user's session", bob.GetUserId(), s.claims.SessionID, codes.NotFound, "not found"},
		{"unknown session", ada.GetUserId(), uuid.NewString(), codes.NotFound, "not found"},
		{"no session", ada.GetUserId(), "", codes.FailedPrecondition, "the access token names no session"},
	}
	// The checks after the cases look at what they left in the shared
	// harness, so the cases run in turn, before them.
	for _, tt := range tests { //nolint:paralleltest // checks after the cases need them done
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.srv.Logout(asUser(t, tt.userID, tt.sessionID), &userv1.LogoutRequest{})
			wantStatus(t, err, tt.code, tt.msg)
		})
	}
	t.Run("anonymous", func(t *testing.T) {
		_, err := h.srv.Logout(anonymous(t), &userv1.LogoutRequest{})
		wantStatus(t, err, codes.Unauthenticated, "sign-in required")
	})
	if n := len(h.events(t)); n != 0 {
		t.Errorf("%d events, want none", n)
	}
	latest, err := h.refresh(t, s.refresh)
	if err != nil {
		t.Fatalf("Ada's session after refused logouts: %v", err)
	}
	if latest.claims.SessionID != s.claims.SessionID {
		t.Errorf("session %q, want %q", latest.claims.SessionID, s.claims.SessionID)
	}
}

func TestLogoutEverywhere(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	ada := h.signUp(t, "ada@example.com")
	h.signUp(t, "bob@example.com")
	sessions := []session{h.login(t, "ada@example.com"), h.login(t, "ada@example.com")}
	loggedOut := h.login(t, "ada@example.com")
	logout(t, h, ada.GetUserId(), loggedOut.claims.SessionID)
	bob := h.login(t, "bob@example.com")
	ctx := asUser(t, ada.GetUserId(), sessions[0].claims.SessionID)

	resp, err := h.srv.LogoutEverywhere(ctx, &userv1.LogoutEverywhereRequest{})
	if err != nil {
		t.Fatalf("LogoutEverywhere: %v", err)
	}
	if resp.GetRevokedSessions() != 2 {
		t.Errorf("revoked_sessions %d, want 2", resp.GetRevokedSessions())
	}
	var want []*userv1.SessionRevoked
	for _, s := range sessions {
		want = append(want, &userv1.SessionRevoked{
			SessionId:  s.claims.SessionID,
			UserId:     ada.GetUserId(),
			ExpireTime: timestamppb.New(s.claims.Expiry),
			Reason:     userv1.RevocationReason_REVOCATION_REASON_LOGOUT_EVERYWHERE,
		})
	}
	slices.SortFunc(want, func(a, b *userv1.SessionRevoked) int {
		return strings.Compare(a.GetSessionId(), b.GetSessionId())
	})
	got := h.events(t)[1:] // after the logout's
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("outbox (-want +got):\n%s", diff)
	}

	for _, s := range sessions {
		_, err := h.refresh(t, s.refresh)
		wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	}
	if _, err := h.refresh(t, bob.refresh); err != nil {
		t.Errorf("another user's session after LogoutEverywhere: %v", err)
	}

	// Nothing left to revoke.
	resp, err = h.srv.LogoutEverywhere(ctx, &userv1.LogoutEverywhereRequest{})
	if err != nil || resp.GetRevokedSessions() != 0 {
		t.Errorf("second LogoutEverywhere = %v, %v; want 0 sessions", resp, err)
	}
	if n := len(h.events(t)); n != 3 {
		t.Errorf("%d events, want 3", n)
	}
}

func TestGetMe(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	ada := h.signUp(t, "ada@example.com")
	h.signUp(t, "bob@example.com")

	resp, err := h.srv.GetMe(asUser(t, ada.GetUserId(), uuid.NewString()), &userv1.GetMeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ada, resp.GetUser(), protocmp.Transform()); diff != "" {
		t.Errorf("GetMe (-want +got):\n%s", diff)
	}

	_, err = h.srv.GetMe(asUser(t, uuid.NewString(), uuid.NewString()), &userv1.GetMeRequest{})
	wantStatus(t, err, codes.NotFound, "not found")
	_, err = h.srv.GetMe(anonymous(t), &userv1.GetMeRequest{})
	wantStatus(t, err, codes.Unauthenticated, "sign-in required")
	_, err = h.srv.GetMe(t.Context(), &userv1.GetMeRequest{})
	wantStatus(t, err, codes.Unauthenticated, "sign-in required")
}

func TestGetUser(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	ada := h.signUp(t, "ada@example.com")
	bob := h.signUp(t, "bob@example.com")
	ghost := uuid.NewString()
	const denied = "permission denied"

	tests := []struct {
		name    string
		subject string
		userID  string
		want    *userv1.User
		code    codes.Code
		msg     string
	}{
		{"the transaction's user", ada.GetUserId(), ada.GetUserId(), ada, codes.OK, ""},
		{"another user", ada.GetUserId(), bob.GetUserId(), nil, codes.PermissionDenied, denied},
		{"an unknown user", ada.GetUserId(), ghost, nil, codes.PermissionDenied, denied},
		{"a deleted caller", ghost, ghost, nil, codes.NotFound, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := h.srv.GetUser(asUser(t, tt.subject, ""), &userv1.GetUserRequest{UserId: tt.userID})
			if tt.code == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, resp.GetUser(), protocmp.Transform()); diff != "" {
					t.Errorf("GetUser (-want +got):\n%s", diff)
				}
				return
			}
			wantStatus(t, err, tt.code, tt.msg)
		})
	}
	t.Run("anonymous", func(t *testing.T) {
		t.Parallel()
		_, err := h.srv.GetUser(anonymous(t), &userv1.GetUserRequest{UserId: ada.GetUserId()})
		wantStatus(t, err, codes.Unauthenticated, "sign-in required")
	})
}

// TestInternalErrorsMasked breaks the database under a handler: the client
// learns only that something failed, while the log keeps the cause.
func TestInternalErrorsMasked(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.signUp(t, "ada@example.com")
	if _, err := h.db.ExecContext(t.Context(), `DROP TABLE refresh_tokens`); err != nil {
		t.Fatal(err)
	}

	_, err := h.srv.Login(anonymous(t),
		&userv1.LoginRequest{Email: "ada@example.com", Password: goodPass})
	wantStatus(t, err, codes.Internal, "internal error")
	if !strings.Contains(h.logs.String(), "refresh_tokens") {
		t.Errorf("the log does not say what failed:\n%s", h.logs.String())
	}
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	complete := userrpc.Config{
		Store: h.store, Outbox: h.outbox, Tokens: issuerOf(t), RefreshTokenTTL: time.Hour,
	}
	tests := []struct {
		name   string
		change func(*userrpc.Config)
	}{
		{"no store", func(c *userrpc.Config) { c.Store = nil }},
		{"no outbox", func(c *userrpc.Config) { c.Outbox = nil }},
		{"no issuer", func(c *userrpc.Config) { c.Tokens = nil }},
		{"no refresh lifetime", func(c *userrpc.Config) { c.RefreshTokenTTL = 0 }},
		{"password parameters out of bounds", func(c *userrpc.Config) {
			c.Password = password.Params{Memory: 1}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := complete
			tt.change(&cfg)
			if _, err := userrpc.New(cfg); err == nil {
				t.Error("New succeeded")
			}
		})
	}
	if _, err := userrpc.New(complete); err != nil {
		t.Errorf("New(complete) = %v", err)
	}
}
