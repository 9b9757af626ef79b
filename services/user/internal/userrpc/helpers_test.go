package userrpc_test

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/jwks/jwkstest"
	"example.com/rampart/platform/outbox"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/sqlitedb"
	"example.com/rampart/platform/telemetry/telemetrytest"
	"example.com/rampart/platform/txntoken"
	userv1 "example.com/rampart/proto/user/v1"
	"example.com/rampart/services/user/internal/password"
	"example.com/rampart/services/user/internal/userrpc"
	"example.com/rampart/services/user/internal/userstore"
)

const (
	issuerURL = "http://127.0.0.1:9101"
	audience  = "rampart"
	goodPass  = "correct horse battery staple"
)

// cheap keeps password hashing fast where its cost does not matter.
var cheap = password.Params{
	Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32,
}

// harness is a Server on its own database, with what the tests look at.
type harness struct {
	srv      *userrpc.Server
	store    *userstore.Store
	db       *sql.DB
	dir      string
	outbox   *recordingOutbox
	verifier *accesstoken.Verifier
	logs     *telemetrytest.Logs
}

type harnessOptions struct {
	refreshTTL time.Duration
	params     password.Params
}

func newHarness(t *testing.T, opts harnessOptions) *harness {
	t.Helper()
	if opts.refreshTTL == 0 {
		opts.refreshTTL = 7 * 24 * time.Hour
	}
	if opts.params == (password.Params{}) {
		opts.params = cheap
	}
	dir := t.TempDir()
	db, err := sqlitedb.Open(t.Context(), filepath.Join(dir, "user.db"),
		outbox.Migrations, userstore.Migrations)
	if err != nil {
		t.Fatalf("opening database: %v", err)
	}
	t.Cleanup(func() { db.Close() })

	td := spiffeid.RequireTrustDomainFromString("rampart.local")
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("loading policies: %v", err)
	}
	writer, err := outbox.NewWriter(set, "user", nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := jwkstest.KeySet(t)
	tokens := newIssuer(t, keys)
	verifier, err := accesstoken.NewVerifier(accesstoken.VerifierConfig{
		Issuer: issuerURL, Audience: audience, Keys: keys,
	})
	if err != nil {
		t.Fatal(err)
	}

	h := &harness{
		store:    userstore.New(db),
		db:       db,
		dir:      dir,
		outbox:   &recordingOutbox{Writer: writer},
		verifier: verifier,
		logs:     &telemetrytest.Logs{},
	}
	h.srv, err = userrpc.New(userrpc.Config{
		Store:           h.store,
		Outbox:          h.outbox,
		Tokens:          tokens,
		RefreshTokenTTL: opts.refreshTTL,
		Password:        opts.params,
		Logger:          slog.New(slog.NewJSONHandler(h.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func newIssuer(t *testing.T, keys *jwks.KeySet) *accesstoken.Issuer {
	t.Helper()
	tokens, err := accesstoken.NewIssuer(accesstoken.IssuerConfig{
		Issuer: issuerURL, Audience: audience, Signer: keys,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

// issuerOf returns an issuer with a key of its own.
func issuerOf(t *testing.T) *accesstoken.Issuer {
	t.Helper()
	keys, _ := jwkstest.KeySet(t)
	return newIssuer(t, keys)
}

// recordingOutbox is the platform's outbox writer, with a relay that only
// counts how often it was woken.
type recordingOutbox struct {
	*outbox.Writer
	notified atomic.Int32
}

func (o *recordingOutbox) Notify() { o.notified.Add(1) }

// events returns the SessionRevoked events in the outbox table, oldest
// first.
func (h *harness) events(t *testing.T) []*userv1.SessionRevoked {
	t.Helper()
	rows, err := h.db.QueryContext(t.Context(), `SELECT subject, payload FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var events []*userv1.SessionRevoked
	for rows.Next() {
		var subject string
		var payload []byte
		if err := rows.Scan(&subject, &payload); err != nil {
			t.Fatal(err)
		}
		if subject != "users.session_revoked" {
			t.Errorf("outbox row on subject %q", subject)
		}
		event := new(userv1.SessionRevoked)
		if err := proto.Unmarshal(payload, event); err != nil {
			t.Fatal(err)
		}
		events = append(events, event)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return events
}

// anonymous returns a context as the platform hands it to a handler of a
// public method called by a visitor who has not signed in.
func anonymous(t *testing.T) context.Context {
	t.Helper()
	return txntoken.NewContext(t.Context(), &txntoken.Token{
		Raw:    "txn.anonymous.test",
		Claims: txntoken.Claims{ID: uuid.NewString(), Subject: txntoken.Anonymous},
	})
}

// asUser returns a context as the platform hands it to a handler of a
// method called for the signed-in user in the session.
func asUser(t *testing.T, userID, sessionID string) context.Context {
	t.Helper()
	return txntoken.NewContext(t.Context(), &txntoken.Token{
		Raw: "txn.user.test",
		Claims: txntoken.Claims{
			ID: uuid.NewString(), Subject: userID, SessionID: sessionID, Scopes: []string{"profile"},
		},
	})
}

func (h *harness) signUp(t *testing.T, email string) *userv1.User {
	t.Helper()
	resp, err := h.srv.SignUp(anonymous(t), &userv1.SignUpRequest{
		Email: email, Password: goodPass, DisplayName: "Ada Lovelace",
	})
	if err != nil {
		t.Fatalf("SignUp(%s): %v", email, err)
	}
	return resp.GetUser()
}

// session is a login as the client sees it, and the claims of its access
// token.
type session struct {
	access, refresh string
	claims          *accesstoken.Claims
}

func (h *harness) login(t *testing.T, email string) session {
	t.Helper()
	resp, err := h.srv.Login(anonymous(t), &userv1.LoginRequest{Email: email, Password: goodPass})
	if err != nil {
		t.Fatalf("Login(%s): %v", email, err)
	}
	return h.session(t, resp.GetAccessToken(), resp.GetRefreshToken())
}

func (h *harness) refresh(t *testing.T, token string) (session, error) {
	t.Helper()
	resp, err := h.srv.Refresh(anonymous(t), &userv1.RefreshRequest{RefreshToken: token})
	if err != nil {
		return session{}, err
	}
	return h.session(t, resp.GetAccessToken(), resp.GetRefreshToken()), nil
}

func (h *harness) session(t *testing.T, access, refresh string) session {
	t.Helper()
	return session{access: access, refresh: refresh, claims: h.verify(t, access)}
}

func (h *harness) verify(t *testing.T, access string) *accesstoken.Claims {
	t.Helper()
	claims, err := h.verifier.Verify(t.Context(), access)
	if err != nil {
		t.Fatalf("verifying the access token: %v", err)
	}
	return claims
}

// logout logs the user out of the session, which must succeed.
func logout(t *testing.T, h *harness, userID, sessionID string) {
	t.Helper()
	if _, err := h.srv.Logout(asUser(t, userID, sessionID), &userv1.LogoutRequest{}); err != nil {
		t.Fatalf("Logout: %v", err)
	}
}

// wantStatus fails the test unless err is a gRPC status with code and
// message.
func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code || st.Message() != msg {
		t.Errorf("error = %v, want %v %q", err, code, msg)
	}
}

// records returns the log lines as maps, without the time.
func records(t *testing.T, logs *telemetrytest.Logs) []map[string]any {
	t.Helper()
	lines := logs.Lines(t)
	for _, r := range lines {
		delete(r, slog.TimeKey)
	}
	return lines
}
