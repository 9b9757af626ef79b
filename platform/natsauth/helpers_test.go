package natsauth_test

import (
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/events"
	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/natsauth"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/txntoken"

	// The event policies that permissions come from.
	_ "example.com/rampart/proto/order/v1"
	_ "example.com/rampart/proto/payment/v1"
	_ "example.com/rampart/proto/user/v1"
)

var (
	td     = spiffeid.RequireTrustDomainFromString("rampart.local")
	natsID = spiffeid.RequireFromPath(td, "/nats")
)

// stackWorkloads are the workloads of the local stack, which its NATS
// server admits.
var stackWorkloads = []string{"user", "payment", "order", "gateway"}

func loadPolicy(t testing.TB) *policy.Set {
	t.Helper()
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("loading policy: %v", err)
	}
	return set
}

// fixture is an embedded NATS server started from natsauth.ServerOptions,
// as the local stack starts it, and the CA of its trust domain.
type fixture struct {
	srv *server.Server
	ca  *devpki.CA
	set *policy.Set
}

func newFixture(t *testing.T, workloads ...string) *fixture {
	t.Helper()
	ca, err := devpki.NewCA(td)
	if err != nil {
		t.Fatal(err)
	}
	set := loadPolicy(t)
	opts, err := natsauth.ServerOptions(natsauth.ServerConfig{
		Policy:    set,
		Workloads: workloads,
		Identity:  source(t, ca, "nats"),
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		StoreDir:  t.TempDir(),
	})
	if err != nil {
		t.Fatalf("ServerOptions: %v", err)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("creating NATS server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	return &fixture{srv: srv, ca: ca, set: set}
}

// source returns a static source holding a fresh SVID for name from ca,
// trusting ca and any other CAs given.
func source(t testing.TB, ca *devpki.CA, name string, trusted ...*devpki.CA) identity.Source {
	t.Helper()
	svid, err := ca.IssueSVID(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bundle := ca.Bundle()
	for _, other := range trusted {
		bundle.AddX509Authority(other.Certificate())
	}
	return identity.NewStaticSource(svid, bundle)
}

// client is one workload's connection and what the server refused it.
type client struct {
	name string
	nc   *nats.Conn
	js   jetstream.JetStream

	mu         sync.Mutex
	violations []string
}

// dial connects with tlsConfig, as workload.connectNATS does apart from
// reconnecting.
func (f *fixture) dial(name string, tlsConfig *tls.Config, c *client) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.CustomInboxPrefix(natsauth.InboxPrefix(name)),
		nats.NoReconnect(),
		nats.Timeout(5 * time.Second),
	}
	if tlsConfig != nil {
		opts = append(opts, nats.Secure(tlsConfig))
	}
	if c != nil {
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.violations = append(c.violations, err.Error())
		}))
	}
	return nats.Connect(f.srv.ClientURL(), opts...)
}

// connect connects as the workload name with an SVID from the fixture's CA.
func (f *fixture) connect(t *testing.T, name string) *client {
	t.Helper()
	c := &client{name: name}
	nc, err := f.dial(name, identity.ClientTLSConfig(source(t, f.ca, name), natsID), c)
	if err != nil {
		t.Fatalf("connecting as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c.nc, c.js = nc, js
	return c
}

func (c *client) refusals() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.violations...)
}

// refused reports whether the server refused c a publish or subscription
// on a subject starting with prefix.
func (c *client) refused(prefix string) bool {
	for _, v := range c.refusals() {
		if strings.Contains(v, "Permissions Violation") && strings.Contains(v, `to "`+prefix) {
			return true
		}
	}
	return false
}

// noRefusals fails the test if the server refused c anything.
func (c *client) noRefusals(t *testing.T) {
	t.Helper()
	if got := c.refusals(); len(got) > 0 {
		t.Errorf("%s was refused: %q", c.name, got)
	}
}

// acceptAll accepts any transaction token: these tests are about NATS
// permissions, and the consumer's own checks have their tests.
type acceptAll struct{}

func (acceptAll) VerifyAt(_ context.Context, raw string, _ time.Time) (*txntoken.Token, error) {
	return &txntoken.Token{Raw: raw}, nil
}

// publish publishes event on its subject as the outbox relay does: with
// the headers consumers check and a message id.
func publish(t *testing.T, c *client, set *policy.Set, event proto.Message) {
	t.Helper()
	name := event.ProtoReflect().Descriptor().FullName()
	e, err := set.Event(name)
	if err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(event)
	if err != nil {
		t.Fatal(err)
	}
	msg := &nats.Msg{Subject: e.Subject, Data: data, Header: nats.Header{
		events.EventHeader:       {string(name)},
		events.ContentTypeHeader: {events.ContentType},
		txntoken.HeaderKey:       {"token"},
		events.EnqueuedHeader:    {time.Now().UTC().Format(time.RFC3339Nano)},
	}}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.js.PublishMsg(ctx, msg, jetstream.WithMsgID(uuid.NewString())); err != nil {
		t.Fatalf("%s publishing %s: %v", c.name, name, err)
	}
}

// ensureStream creates the stream of c's workload, as the outbox does at
// start, twice: creation and then an update must both be allowed.
func ensureStream(t *testing.T, c *client, set *policy.Set) {
	t.Helper()
	for range 2 {
		if err := events.EnsureStream(t.Context(), c.js, set, c.name); err != nil {
			t.Fatalf("%s creating its stream: %v", c.name, err)
		}
	}
}

// eventually fails the test unless cond holds within five seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// received counts the events a handler was given.
type received struct {
	mu  sync.Mutex
	ids []string
}

func (r *received) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, id)
}

func (r *received) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}
