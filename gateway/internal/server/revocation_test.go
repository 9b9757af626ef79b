package server

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/rampart/gateway/internal/revocation"
	"example.com/rampart/platform/accesstoken"
	"example.com/rampart/platform/events"
	"example.com/rampart/platform/events/eventstest"
	"example.com/rampart/platform/outbox"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/sqlitedb"
	"example.com/rampart/platform/txntoken"
	userv1 "example.com/rampart/proto/user/v1"
)

// revocationStack is NATS with JetStream, the user service's side of
// revocation (its outbox, relayed to the user stream, with the
// transaction token of the logout call), and an issuer of access tokens
// that gateways share.
type revocationStack struct {
	nats   *eventstest.Server
	set    *policy.Set
	issuer *issuerServer
	// verifier checks the transaction tokens of the events, with the keys
	// every gateway process signs them with.
	verifier *txntoken.Verifier
	minter   *txntoken.Minter
	db       *sql.DB
	writer   *outbox.Writer
	relay    *outbox.Relay
}

func newRevocationStack(t *testing.T) *revocationStack {
	t.Helper()
	s := &revocationStack{nats: eventstest.NewServer(t), issuer: newIssuerServer(t, keyPoll)}
	var err error
	if s.set, err = policy.Load(gatewayID.TrustDomain(), protoregistry.GlobalFiles); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gateway-txn.jwks")
	writeKeys(t, path, newKey(t, jose.ES256))
	keys := loadKeys(t, path, keyPoll)
	s.minter, err = txntoken.NewMinter(txntoken.MinterConfig{
		Signer: keys, TrustDomain: trustDomain, Workload: gatewayID.String(), Issuer: gatewayID.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.verifier, err = txntoken.NewVerifier(txntoken.VerifierConfig{
		Keys: keys, TrustDomain: trustDomain, Issuer: gatewayID.String(),
	})
	if err != nil {
		t.Fatal(err)
	}

	_, js := s.nats.Connect(t)
	if err := events.EnsureStream(t.Context(), js, s.set, "user"); err != nil {
		t.Fatal(err)
	}
	s.db, err = sqlitedb.Open(t.Context(), filepath.Join(t.TempDir(), "user.db"), outbox.Migrations)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.db.Close() })
	if s.writer, err = outbox.NewWriter(s.set, "user", nil); err != nil {
		t.Fatal(err)
	}
	if s.relay, err = outbox.NewRelay(outbox.RelayConfig{DB: s.db, JetStream: js}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return s
}

// logout does what the user service's Logout does once it has checked
// the caller: it commits the session's revocation event in the outbox,
// with the call's transaction token, and wakes the relay. It returns when
// Logout would return.
func (s *revocationStack) logout(t *testing.T, session accesstoken.Claims) {
	t.Helper()
	tok, err := s.minter.Mint(txntoken.Request{
		Subject: session.Subject, SessionID: session.SessionID, Scopes: []string{"profile"},
		ClientIP: "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := txntoken.NewContext(t.Context(), tok)
	err = sqlitedb.InTx(ctx, s.db, func(tx *sql.Tx) error {
		return s.writer.Enqueue(ctx, tx, &userv1.SessionRevoked{
			SessionId:  session.SessionID,
			UserId:     session.Subject,
			ExpireTime: timestamppb.New(session.Expiry),
			Reason:     userv1.RevocationReason_REVOCATION_REASON_LOGOUT,
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	s.relay.Notify()
}

// waitStored waits until the user stream holds n events.
func (s *revocationStack) waitStored(t *testing.T, n uint64) {
	t.Helper()
	_, js := s.nats.Connect(t)
	within(t, 5*time.Second, "the relay published the events", func() bool {
		stream, err := js.Stream(t.Context(), events.StreamName("user"))
		if err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(t.Context())
		return err == nil && info.State.Msgs == n
	})
}

// gateway is one gateway process: its own NATS connection, its list of
// revoked sessions fed by the replay, and its public server.
type gateway struct {
	*fixture
	list *revocation.List
	stop func()
}

// startGateway starts a gateway process and waits until it has loaded the
// revocations.
func (s *revocationStack) startGateway(t *testing.T) *gateway {
	t.Helper()
	_, js := s.nats.Connect(t)
	cfg := DefaultConfig()
	list, run, err := revocations(cfg, s.consumerConfig(js))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("revocation events: %v", err)
		}
	}
	t.Cleanup(stop)
	within(t, 5*time.Second, "the revocations are loaded", list.Loaded)
	return &gateway{
		fixture: newFixture(t, options{issuer: s.issuer, revocations: list}),
		list:    list,
		stop:    stop,
	}
}

func (s *revocationStack) consumerConfig(js jetstream.JetStream) events.ConsumerConfig {
	return events.ConsumerConfig{
		JetStream: js,
		Policy:    s.set,
		Workload:  "gateway",
		Tokens:    s.verifier,
		Logger:    slog.New(slog.DiscardHandler),
	}
}

func (g *gateway) status(t *testing.T, token string) int {
	t.Helper()
	return g.call(t, "user.v1.UserService/GetMe", token, "{}", nil).Status
}

// TestRevocationAcrossGatewaysAndRestarts logs sessions out over the real
// NATS path while two gateway processes run, and before one of them
// starts again: each gateway refuses the tokens of every revoked session,
// those revoked while it ran and those revoked before it started, and
// nothing else.
func TestRevocationAcrossGatewaysAndRestarts(t *testing.T) {
	t.Parallel()
	s := newRevocationStack(t)
	before, beforeClaims := s.issuer.login(t)
	s.logout(t, beforeClaims)
	s.waitStored(t, 1)

	first, second := s.startGateway(t), s.startGateway(t)
	live, liveClaims := s.issuer.login(t)
	kept, _ := s.issuer.login(t)
	for _, g := range []*gateway{first, second} {
		if got := g.status(t, before); got != http.StatusUnauthorized {
			t.Errorf("a session revoked before the gateway started: status %d, want 401", got)
		}
		if got := g.status(t, live); got != http.StatusOK {
			t.Fatalf("a live session: status %d, want 200", got)
		}
	}

	s.logout(t, liveClaims)
	for i, g := range []*gateway{first, second} {
		took := within(t, time.Second, "every gateway refuses the revoked session", func() bool {
			return g.status(t, live) == http.StatusUnauthorized
		})
		t.Logf("gateway %d refused the token %v after the logout committed", i+1, took)
		a := g.call(t, "user.v1.UserService/GetMe", live, "{}", nil)
		if reason := g.logLine(t, a)["reason"]; reason != "session revoked" {
			t.Errorf("reason %q, want session revoked", reason)
		}
		if got := g.status(t, kept); got != http.StatusOK {
			t.Errorf("a session never revoked: status %d, want 200", got)
		}
	}

	// The first gateway starts again, with nothing in memory.
	first.stop()
	restarted := s.startGateway(t)
	for name, token := range map[string]string{"before": before, "live": live} {
		if got := restarted.status(t, token); got != http.StatusUnauthorized {
			t.Errorf("after a restart, the session revoked %s: status %d, want 401", name, got)
		}
	}
	if got := restarted.status(t, kept); got != http.StatusOK {
		t.Errorf("after a restart, a session never revoked: status %d, want 200", got)
	}
	if restarted.list.Len() != 2 {
		t.Errorf("the restarted gateway holds %d revoked sessions, want 2", restarted.list.Len())
	}
}
