package events_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/events"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/telemetry/telemetrytest"
	orderv1 "example.com/rampart/proto/order/v1"
	userv1 "example.com/rampart/proto/user/v1"
)

// replayer is a consumer run with RunReplay, with what it handled.
type replayer struct {
	got      calls[*orderv1.OrderCreated]
	caughtUp chan struct{}
}

// startReplay runs a payment consumer with RunReplay over window until the
// test ends. Its handler records each event and returns handle's error, if
// handle is set.
func startReplay(t *testing.T, cfg events.ConsumerConfig, window time.Duration,
	handle func(*orderv1.OrderCreated) error,
) *replayer {
	t.Helper()
	r := &replayer{caughtUp: make(chan struct{})}
	c, err := events.NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = events.Handle(c, func(ctx context.Context, e *orderv1.OrderCreated) error {
		r.got.record(ctx, e)
		if handle != nil {
			return handle(e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.RunReplay(ctx, events.ReplayConfig{
			Since:    window,
			CaughtUp: func() { close(r.caughtUp) },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("RunReplay: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("RunReplay did not return after its context ended")
		}
	})
	return r
}

func (r *replayer) waitCaughtUp(t *testing.T) {
	t.Helper()
	select {
	case <-r.caughtUp:
	case <-time.After(10 * time.Second):
		t.Fatal("CaughtUp was not called")
	}
}

// ids lists the order ids handled, in order.
func (r *replayer) ids() []string {
	r.got.mu.Lock()
	defer r.got.mu.Unlock()
	var out []string
	for _, m := range r.got.msgs {
		out = append(out, m.GetOrderId())
	}
	return out
}

func (h *harness) publishOrder(t *testing.T) string {
	t.Helper()
	e := orderCreated()
	h.publish(t, "orders.created", headers(), marshal(t, e))
	return e.GetOrderId()
}

// publishOrderAfterOutage publishes an event while the client may still
// be reconnecting: it tries again until JetStream acknowledges, under one
// message id, so that an attempt stored but not acknowledged is not stored
// twice.
func (h *harness) publishOrderAfterOutage(t *testing.T) string {
	t.Helper()
	e := orderCreated()
	msg := &nats.Msg{Subject: "orders.created", Header: headers(), Data: marshal(t, e)}
	eventually(t, "JetStream acknowledged the event", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := h.js.PublishMsg(ctx, msg, jetstream.WithMsgID(e.GetOrderId()))
		return err == nil
	})
	return e.GetOrderId()
}

// TestReplayGivesEveryProcessTheWindow starts two processes of one
// workload after events were stored: each gets every event of the window,
// in order, and nothing older, then every new event.
func TestReplayGivesEveryProcessTheWindow(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// The window is a second: the first event is always older than that
	// when the replay starts, the next two are unless the test stalls.
	const window = time.Second
	h.publishOrder(t)
	time.Sleep(window + 100*time.Millisecond)
	inWindow := []string{h.publishOrder(t), h.publishOrder(t)}

	first := startReplay(t, h.config(), window, nil)
	second := startReplay(t, h.config(), window, nil)
	for _, r := range []*replayer{first, second} {
		r.waitCaughtUp(t)
		if diff := cmp.Diff(inWindow, r.ids()); diff != "" {
			t.Errorf("handled when caught up (-want +got):\n%s", diff)
		}
	}

	live := h.publishOrder(t)
	want := append(slices.Clone(inWindow), live)
	for _, r := range []*replayer{first, second} {
		eventually(t, "the new event was handled", func() bool { return r.got.count() == 3 })
		if diff := cmp.Diff(want, r.ids()); diff != "" {
			t.Errorf("handled (-want +got):\n%s", diff)
		}
	}
}

// TestReplayWithoutStream is a start before the publisher ever ran: there
// is nothing to catch up on, and the first events arrive once the stream
// exists.
func TestReplayWithoutStream(t *testing.T) {
	t.Parallel()
	h := newBareHarness(t)
	r := startReplay(t, h.config(), time.Hour, nil)
	r.waitCaughtUp(t)

	if err := events.EnsureStream(t.Context(), h.js, h.set, "order"); err != nil {
		t.Fatal(err)
	}
	id := h.publishOrder(t)
	eventually(t, "the event was handled", func() bool { return r.got.count() == 1 })
	if diff := cmp.Diff([]string{id}, r.ids()); diff != "" {
		t.Errorf("handled (-want +got):\n%s", diff)
	}
}

// TestReplayChecksAndDoesNotRedeliver sends a forged event and one whose
// handler fails: the first never reaches the handler, the second reaches
// it once; both are logged, and catching up is not held back by either.
func TestReplayChecksAndDoesNotRedeliver(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	forged := headers()
	forged.Set("Txn-Token", "forged")
	h.publish(t, "orders.created", forged, marshal(t, orderCreated()))
	failing := h.publishOrder(t)

	r := startReplay(t, h.config(), time.Hour, func(*orderv1.OrderCreated) error {
		return errors.New("database is locked")
	})
	r.waitCaughtUp(t)
	time.Sleep(200 * time.Millisecond) // room for a redelivery, were there one
	if diff := cmp.Diff([]string{failing}, r.ids()); diff != "" {
		t.Errorf("handled (-want +got):\n%s", diff)
	}

	var outcomes []map[string]any
	for _, line := range eventLines(t, h.logs, "event") {
		outcomes = append(outcomes, map[string]any{
			"outcome": line["outcome"], "reason": line["reason"], "audit": line["audit"],
		})
	}
	want := []map[string]any{
		{"outcome": "rejected", "reason": "token", "audit": "rejected"},
		{"outcome": "failed", "reason": "not_redelivered", "audit": nil},
	}
	if diff := cmp.Diff(want, outcomes); diff != "" {
		t.Errorf("logged outcomes (-want +got):\n%s", diff)
	}
}

// TestReplaySurvivesServerRestart restarts NATS, which loses the consumer
// held in memory: the events published afterwards still arrive, once each
// and in order.
func TestReplaySurvivesServerRestart(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("restarts a NATS server")
	}
	h := newHarness(t)
	before := h.publishOrder(t)
	r := startReplay(t, h.config(), time.Hour, nil)
	r.waitCaughtUp(t)

	h.srv.Stop()
	h.srv.Start(t)
	after := []string{h.publishOrderAfterOutage(t), h.publishOrderAfterOutage(t)}
	eventually(t, "the events after the restart were handled", func() bool {
		return r.got.count() >= 3
	})
	time.Sleep(200 * time.Millisecond)
	if diff := cmp.Diff(append([]string{before}, after...), r.ids()); diff != "" {
		t.Errorf("handled (-want +got):\n%s", diff)
	}
}

// TestReplayNeedsOnlyItsSubjects runs the replay as a NATS user allowed
// exactly the subjects the package documentation lists, and checks that
// it works and that the client never tried anything else, such as an
// acknowledgement.
func TestReplayNeedsOnlyItsSubjects(t *testing.T) {
	t.Parallel()
	const inbox = "_INBOX_payment"
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
		Users: []*server.User{
			{Username: "order", Password: "order-secret"},
			{Username: "payment", Password: "payment-secret", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{
					"$JS.API.CONSUMER.CREATE.EVENTS_ORDER.*.orders.created",
					"$JS.API.CONSUMER.MSG.NEXT.EVENTS_ORDER.*",
				}},
				Subscribe: &server.SubjectPermission{Allow: []string{inbox + ".>"}},
			}},
		},
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}

	connect := func(user, password string, extra ...nats.Option) jetstream.JetStream {
		t.Helper()
		nc, err := nats.Connect(srv.ClientURL(), append(extra, nats.UserInfo(user, password))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	h := &harness{set: loadPolicy(t), logs: &telemetrytest.Logs{}, js: connect("order", "order-secret")}
	if err := events.EnsureStream(t.Context(), h.js, h.set, "order"); err != nil {
		t.Fatal(err)
	}
	stored := h.publishOrder(t)

	violations := make(chan error, 16)
	cfg := h.config()
	cfg.JetStream = connect("payment", "payment-secret",
		nats.CustomInboxPrefix(inbox),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			violations <- err
		}))
	r := startReplay(t, cfg, time.Hour, nil)
	r.waitCaughtUp(t)
	live := h.publishOrder(t)
	eventually(t, "the new event was handled", func() bool { return r.got.count() == 2 })
	if diff := cmp.Diff([]string{stored, live}, r.ids()); diff != "" {
		t.Errorf("handled (-want +got):\n%s", diff)
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-violations:
		t.Errorf("the replay used a subject it is not allowed: %v", err)
	default:
	}
}

func TestRunReplayRefuses(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, window := range []time.Duration{0, -time.Second, events.MaxAge + time.Second} {
		c, err := events.NewConsumer(h.config())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Handle(&orderv1.OrderCreated{}, func(context.Context, proto.Message) error {
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := c.RunReplay(t.Context(), events.ReplayConfig{Since: window}); err == nil {
			t.Errorf("RunReplay(Since: %v) did not fail", window)
		}
	}

	empty, err := events.NewConsumer(h.config())
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.RunReplay(t.Context(), events.ReplayConfig{Since: time.Minute}); err == nil {
		t.Error("RunReplay with no handler did not fail")
	}

	twice, err := events.NewConsumer(h.config())
	if err != nil {
		t.Fatal(err)
	}
	if err := twice.Handle(&orderv1.OrderCreated{}, func(context.Context, proto.Message) error {
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stopped, cancel := context.WithCancel(t.Context())
	cancel()
	if err := twice.Run(stopped); err != nil {
		t.Fatalf("Run(canceled) error = %v", err)
	}
	if err := twice.RunReplay(t.Context(), events.ReplayConfig{Since: time.Minute}); err == nil {
		t.Error("RunReplay after Run did not fail")
	}
}

func ExampleConsumer_RunReplay() {
	set, err := policy.Load(spiffeid.RequireTrustDomainFromString("rampart.local"),
		protoregistry.GlobalFiles)
	if err != nil {
		log.Fatal(err)
	}
	consumer, err := events.NewConsumer(events.ConsumerConfig{
		JetStream: js, // from jetstream.New(nc)
		Policy:    set,
		Workload:  "gateway",
		Tokens:    verifier{},
	})
	if err != nil {
		log.Fatal(err)
	}

	// The gateway keeps the sessions revoked recently in memory. Each of
	// its processes replays the last hour of revocations at start, then
	// follows new ones; none shares its events with another.
	var mu sync.Mutex
	revoked := map[string]time.Time{}
	err = events.Handle(consumer, func(_ context.Context, e *userv1.SessionRevoked) error {
		mu.Lock()
		defer mu.Unlock()
		revoked[e.GetSessionId()] = e.GetExpireTime().AsTime()
		return nil // a replayed event is not delivered again: never fail
	})
	fmt.Println(err)

	// A window longer than streams keep events is refused.
	err = consumer.RunReplay(context.Background(), events.ReplayConfig{Since: 30 * 24 * time.Hour})
	fmt.Println(err)

	// The gateway calls consumer.RunReplay(ctx, events.ReplayConfig{
	// Since: time.Hour, CaughtUp: ...}) and serves once CaughtUp is called.

	// Output:
	// <nil>
	// events: replay window 720h0m0s outside (0, 168h0m0s]
}
