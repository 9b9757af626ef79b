package events_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/rampart/platform/events"
	"example.com/rampart/platform/events/eventstest"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/telemetry"
	"example.com/rampart/platform/telemetry/telemetrytest"
	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
)

// validToken is the one token fakeVerifier accepts.
const validToken = "valid.transaction.token"

// fakeVerifier stands in for the transaction token verifier.
type fakeVerifier struct{}

func (fakeVerifier) VerifyAt(_ context.Context, raw string, _ time.Time) (*txntoken.Token, error) {
	if raw != validToken {
		return nil, errors.New("signature does not verify")
	}
	return &txntoken.Token{Raw: raw, Claims: txntoken.Claims{ID: "txn-1", Subject: "user-1"}}, nil
}

func loadPolicy(t testing.TB) *policy.Set {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("rampart.local")
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("loading policy: %v", err)
	}
	return set
}

func orderCreated() *orderv1.OrderCreated {
	return &orderv1.OrderCreated{
		OrderId:       uuid.NewString(),
		UserId:        uuid.NewString(),
		Total:         &moneyv1.Money{CurrencyCode: "EUR", Amount: 4200},
		PaymentMethod: "tok_visa",
		CreateTime:    timestamppb.Now(),
	}
}

// eventLines returns the logged lines whose message is msg.
func eventLines(t testing.TB, logs *telemetrytest.Logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range logs.Lines(t) {
		if line["msg"] == msg {
			out = append(out, line)
		}
	}
	return out
}

// harness is a NATS server holding the order workload's stream, and what a
// test needs to watch a consumer: its logs and its spans.
type harness struct {
	srv      *eventstest.Server
	js       jetstream.JetStream
	set      *policy.Set
	logs     *telemetrytest.Logs
	recorder *tracetest.SpanRecorder
	tp       *sdktrace.TracerProvider
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := newBareHarness(t)
	if err := events.EnsureStream(t.Context(), h.js, h.set, "order"); err != nil {
		t.Fatal(err)
	}
	return h
}

// newBareHarness is a harness whose server holds no stream yet.
func newBareHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{
		srv:      eventstest.NewServer(t),
		set:      loadPolicy(t),
		logs:     &telemetrytest.Logs{},
		recorder: tracetest.NewSpanRecorder(),
	}
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.recorder))
	_, h.js = h.srv.Connect(t)
	return h
}

// config is a payment consumer's configuration with quick retries.
func (h *harness) config() events.ConsumerConfig {
	cfg := events.ConsumerConfig{
		JetStream:   h.js,
		Policy:      h.set,
		Workload:    "payment",
		Tokens:      fakeVerifier{},
		Logger:      slog.New(telemetry.TraceHandler(slog.NewJSONHandler(h.logs, nil))).With("service", "payment"),
		AckWait:     5 * time.Second,
		MaxDeliver:  3,
		RetryDelays: []time.Duration{50 * time.Millisecond},
	}
	if h.tp != nil {
		cfg.TracerProvider = h.tp
	}
	return cfg
}

// run runs c until the test ends and checks that it then stops cleanly.
func run(t testing.TB, c *events.Consumer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

// headers returns the headers of a well-formed OrderCreated message.
func headers() nats.Header {
	return nats.Header{
		events.EventHeader:       {"order.v1.OrderCreated"},
		events.ContentTypeHeader: {events.ContentType},
		txntoken.HeaderKey:       {validToken},
		events.EnqueuedHeader:    {time.Now().UTC().Format(time.RFC3339Nano)},
	}
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

//nolint:unparam // every test publishes OrderCreated today; the subject still says where it goes
func (h *harness) publish(t testing.TB, subject string, header nats.Header, payload []byte) {
	t.Helper()
	msg := &nats.Msg{Subject: subject, Header: header, Data: payload}
	if _, err := h.js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatalf("publishing: %v", err)
	}
}

// eventually polls cond until it holds, failing the test after a while.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// calls counts a handler's calls and keeps what it was given.
type calls[M proto.Message] struct {
	mu   sync.Mutex
	msgs []M
	ctxs []context.Context
}

func (c *calls[M]) record(ctx context.Context, msg M) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, msg)
	c.ctxs = append(c.ctxs, ctx)
}

func (c *calls[M]) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// runRecording runs, until the test ends, a consumer of cfg whose
// OrderCreated handler records each event and returns what fail says of
// its call, counted from 1; nil fail never fails.
func runRecording(t testing.TB, cfg events.ConsumerConfig, fail func(call int) error) *calls[*orderv1.OrderCreated] {
	t.Helper()
	c, err := events.NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := &calls[*orderv1.OrderCreated]{}
	err = events.Handle(c, func(ctx context.Context, e *orderv1.OrderCreated) error {
		got.record(ctx, e)
		if fail == nil {
			return nil
		}
		return fail(got.count())
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	return got
}
