package orderevents_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/events"
	"example.com/rampart/platform/events/eventstest"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/telemetry/telemetrytest"
	"example.com/rampart/platform/txntoken"
	"example.com/rampart/services/order/internal/orderevents"
	"example.com/rampart/services/order/internal/orderstore"
	"example.com/rampart/services/order/internal/orderstore/orderstoretest"
)

// testVerifier accepts the tokens orderstoretest.UserContext makes, so
// that events can carry a user without a signing key.
type testVerifier struct{}

func (testVerifier) VerifyAt(_ context.Context, raw string, _ time.Time) (*txntoken.Token, error) {
	user, ok := strings.CutPrefix(raw, "test-token-")
	if !ok {
		return nil, errors.New("not a test token")
	}
	return &txntoken.Token{Raw: raw, Claims: txntoken.Claims{ID: uuid.NewString(), Subject: user}}, nil
}

// publish puts an event on the payment workload's stream as the outbox
// would, with its transaction token for user.
func publish(t *testing.T, js jetstream.JetStream, subject string, event proto.Message, user string) {
	t.Helper()
	payload, err := proto.Marshal(event)
	if err != nil {
		t.Fatal(err)
	}
	msg := &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{}}
	msg.Header.Set(events.EventHeader, string(event.ProtoReflect().Descriptor().FullName()))
	msg.Header.Set(events.ContentTypeHeader, events.ContentType)
	msg.Header.Set(txntoken.HeaderKey, "test-token-"+user)
	msg.Header.Set(events.EnqueuedHeader, time.Now().UTC().Format(time.RFC3339Nano))
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatalf("publishing %s: %v", subject, err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConsumer runs the handlers behind the platform's consumer on an
// embedded NATS server: events delivered twice settle an order once, and
// an event for another user's order is refused for good and logged.
func TestConsumer(t *testing.T) {
	t.Parallel()
	srv := eventstest.NewServer(t)
	_, js := srv.Connect(t)
	set, err := policy.Load(spiffeid.RequireTrustDomainFromString("rampart.local"), protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStream(t.Context(), js, set, "payment"); err != nil {
		t.Fatal(err)
	}
	logs := &telemetrytest.Logs{}
	consumer, err := events.NewConsumer(events.ConsumerConfig{
		JetStream:   js,
		Policy:      set,
		Workload:    "order",
		Tokens:      testVerifier{},
		Logger:      slog.New(slog.NewJSONHandler(logs, nil)),
		RetryDelays: []time.Duration{20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := orderstoretest.New(t)
	if err := orderevents.New(f.Store).Register(consumer); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- consumer.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer: %v", err)
		}
	})

	mine, theirs := placeOrder(t, f), placeOrder(t, f)
	paid := succeeded(mine)
	publish(t, js, "payments.succeeded", paid, mine.UserID)
	publish(t, js, "payments.succeeded", paid, mine.UserID) // delivered again
	// A payment that names the wrong user for their order.
	forged := succeeded(theirs)
	forged.UserId = mine.UserID
	publish(t, js, "payments.succeeded", forged, mine.UserID)

	eventually(t, "all three events are handled", func() bool {
		return logs.Count(t, map[string]string{"subject": "payments.succeeded"}) >= 3
	})
	got, err := f.Store.Get(t.Context(), mine.ID, mine.UserID)
	if err != nil || got.Status != orderstore.StatusPaid {
		t.Errorf("own order: %s, %v; want PAID", got.Status, err)
	}
	refused := map[string]string{"outcome": "failed", "reason": "permanent"}
	if n := logs.Count(t, refused); n != 1 {
		t.Errorf("%d events refused for good, want 1", n)
	}
	// Well past the retry delay, the refused event was not delivered again.
	time.Sleep(200 * time.Millisecond)
	if n := logs.Count(t, map[string]string{"subject": "payments.succeeded"}); n != 3 {
		t.Errorf("%d deliveries, want 3: the refused event was retried", n)
	}
	got, err = f.Store.Get(t.Context(), theirs.ID, theirs.UserID)
	if err != nil || got.Status != orderstore.StatusPendingPayment {
		t.Errorf("other user's order: %s, %v; want PENDING_PAYMENT", got.Status, err)
	}
}
