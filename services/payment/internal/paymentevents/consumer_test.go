package paymentevents_test

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
	orderv1 "example.com/rampart/proto/order/v1"
	"example.com/rampart/services/payment/internal/paymentstore"
)

// testVerifier accepts the tokens paymentstoretest.UserContext makes, so
// that events can carry a user without a signing key.
type testVerifier struct{}

func (testVerifier) VerifyAt(_ context.Context, raw string, _ time.Time) (*txntoken.Token, error) {
	user, ok := strings.CutPrefix(raw, "test-token-")
	if !ok {
		return nil, errors.New("not a test token")
	}
	return &txntoken.Token{Raw: raw, Claims: txntoken.Claims{ID: uuid.NewString(), Subject: user}}, nil
}

// publishOrderCreated puts event on the order workload's stream as the
// outbox would, with its transaction token for user.
func publishOrderCreated(
	t *testing.T, js jetstream.JetStream, event *orderv1.OrderCreated, user string,
) {
	t.Helper()
	const subject = "orders.created"
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

// TestConsumer runs the charger behind the platform's consumer on an
// embedded NATS server: an order whose event is delivered twice is charged
// once, a processor outage is retried, and an event for another user than
// its token's is refused for good and logged.
func TestConsumer(t *testing.T) {
	t.Parallel()
	srv := eventstest.NewServer(t)
	_, js := srv.Connect(t)
	set, err := policy.Load(spiffeid.RequireTrustDomainFromString("rampart.local"), protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStream(t.Context(), js, set, "order"); err != nil {
		t.Fatal(err)
	}
	logs := &telemetrytest.Logs{}
	consumer, err := events.NewConsumer(events.ConsumerConfig{
		JetStream:   js,
		Policy:      set,
		Workload:    "payment",
		Tokens:      testVerifier{},
		Logger:      slog.New(slog.NewJSONHandler(logs, nil)),
		RetryDelays: []time.Duration{20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	if err := e.charger.Register(consumer); err != nil {
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

	twice, outage := orderCreated("tok_visa"), orderCreated("tok_unavailable")
	forged := orderCreated("tok_visa")
	publishOrderCreated(t, js, twice, twice.GetUserId())
	publishOrderCreated(t, js, twice, twice.GetUserId())
	publishOrderCreated(t, js, outage, outage.GetUserId())
	publishOrderCreated(t, js, forged, uuid.NewString())

	// Three deliveries succeed: the first event's two, and the outage's
	// second.
	eventually(t, "every event is handled", func() bool {
		return logs.Count(t, map[string]string{"subject": "orders.created", "outcome": "ok"}) == 3
	})
	for _, event := range []*orderv1.OrderCreated{twice, outage} {
		p, err := e.Store.ByOrder(t.Context(), event.GetOrderId(), event.GetUserId())
		if err != nil || p.Status != paymentstore.StatusSucceeded {
			t.Errorf("payment of order %s: %s, %v; want SUCCEEDED", event.GetOrderId(), p.Status, err)
		}
	}
	if n := e.processor.Charges(); n != 2 {
		t.Errorf("processor charged %d times, want 2", n)
	}
	if n := logs.Count(t, map[string]string{"outcome": "retry"}); n != 1 {
		t.Errorf("%d deliveries retried, want 1", n)
	}
	if n := logs.Count(t, map[string]string{"outcome": "failed", "reason": "permanent"}); n != 1 {
		t.Errorf("%d events refused for good, want 1", n)
	}
	// Well past the retry delay, the refused event was not delivered again.
	time.Sleep(200 * time.Millisecond)
	if n := logs.Count(t, map[string]string{"subject": "orders.created"}); n != 5 {
		t.Errorf("%d deliveries, want 5", n)
	}
	_, err = e.Store.ByOrder(t.Context(), forged.GetOrderId(), forged.GetUserId())
	if !errors.Is(err, paymentstore.ErrNotFound) {
		t.Errorf("the refused event stored a payment: %v", err)
	}
}
