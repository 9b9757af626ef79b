package events_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"example.com/rampart/platform/events"
	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/outbox"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/sqlitedb"
	"example.com/rampart/platform/telemetry/telemetrytest"
	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
	paymentv1 "example.com/rampart/proto/payment/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
	userv1 "example.com/rampart/proto/user/v1"
)

// TestEndToEnd sends an event from the order workload's outbox to the
// payment workload's handler and follows its token and trace.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	// The payment side.
	got := runRecording(t, h.config(), nil)

	// The order side.
	db, err := sqlitedb.Open(t.Context(), filepath.Join(t.TempDir(), "order.db"), outbox.Migrations)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	writer, err := outbox.NewWriter(h.set, "order", nil)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.NewRelay(outbox.RelayConfig{DB: db, JetStream: h.js, TracerProvider: h.tp})
	if err != nil {
		t.Fatal(err)
	}
	relayCtx, stopRelay := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()
	defer func() {
		stopRelay()
		if err := <-relayDone; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

	ctx := txntoken.NewContext(t.Context(), &txntoken.Token{Raw: validToken})
	ctx, rpcSpan := h.tp.Tracer("test").Start(ctx, "CreateOrder")
	sent := orderCreated()
	err = sqlitedb.InTx(ctx, db, func(tx *sql.Tx) error { return writer.Enqueue(ctx, tx, sent) })
	rpcSpan.End()
	if err != nil {
		t.Fatal(err)
	}
	relay.Notify()

	eventually(t, "the handler ran", func() bool { return got.count() == 1 })
	if diff := cmp.Diff(sent, got.msgs[0], protocmp.Transform()); diff != "" {
		t.Errorf("handled event (-sent +got):\n%s", diff)
	}
	handlerCtx := got.ctxs[0]
	tok, ok := txntoken.FromContext(handlerCtx)
	if !ok || tok.Raw != validToken || tok.Claims.ID != "txn-1" {
		t.Errorf("handler's transaction token = %+v, %t; want the verified token", tok, ok)
	}

	// One trace from the RPC through the relay to the handler.
	traceID := rpcSpan.SpanContext().TraceID()
	if got := trace.SpanContextFromContext(handlerCtx).TraceID(); got != traceID {
		t.Errorf("handler's trace id = %s, want %s", got, traceID)
	}
	eventually(t, "the consumer span ended", func() bool {
		return spanNamed(h, "process orders.created") != nil
	})
	producer := spanNamed(h, "send orders.created")
	consumer := spanNamed(h, "process orders.created")
	if consumer.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("consumer span kind = %v", consumer.SpanKind())
	}
	if consumer.SpanContext().TraceID() != traceID || producer.SpanContext().TraceID() != traceID {
		t.Errorf("trace ids: rpc %s, producer %s, consumer %s; want one trace",
			traceID, producer.SpanContext().TraceID(), consumer.SpanContext().TraceID())
	}
	if consumer.Parent().SpanID() != producer.SpanContext().SpanID() {
		t.Errorf("consumer span's parent = %s, want the producer span %s",
			consumer.Parent().SpanID(), producer.SpanContext().SpanID())
	}

	lines := eventLines(t, h.logs, "event")
	want := []map[string]any{{
		"level":    "INFO",
		"service":  "payment",
		"subject":  "orders.created",
		"event":    "order.v1.OrderCreated",
		"trace_id": traceID.String(),
		"span_id":  consumer.SpanContext().SpanID().String(),
		"outcome":  "ok",
		"delivery": float64(1),
	}}
	if diff := cmp.Diff(want, lines, ignoreVolatile); diff != "" {
		t.Errorf("log lines (-want +got):\n%s", diff)
	}
}

// ignoreVolatile drops the log keys whose values change from run to run.
var ignoreVolatile = cmp.FilterPath(func(p cmp.Path) bool {
	if mi, ok := p.Last().(cmp.MapIndex); ok {
		switch mi.Key().String() {
		case "time", "msg", "duration_ms", "error":
			return true
		}
	}
	return false
}, cmp.Ignore())

func spanNamed(h *harness, name string) sdktrace.ReadOnlySpan {
	for _, s := range h.recorder.Ended() {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

// TestRejected sends messages that must never reach the handler: each is
// terminated, not delivered again, and logged as an audit event.
func TestRejected(t *testing.T) {
	t.Parallel()
	invalid := orderCreated()
	invalid.Total = &moneyv1.Money{CurrencyCode: "euro", Amount: -1}

	with := func(key, value string) nats.Header {
		h := headers()
		h.Set(key, value)
		return h
	}
	without := func(key string) nats.Header {
		h := headers()
		h.Del(key)
		return h
	}
	tests := []struct {
		name    string
		header  nats.Header
		payload []byte
		reason  string
	}{
		{"invalid payload", headers(), marshal(t, invalid), "invalid"},
		{"undecodable payload", headers(), []byte{0xff, 0xff, 0xff}, "invalid"},
		{"wrong content type", with(events.ContentTypeHeader, "application/json"), nil, "invalid"},
		{"missing token", without(txntoken.HeaderKey), nil, "token"},
		{"invalid token", with(txntoken.HeaderKey, "forged.transaction.token"), nil, "token"},
		{"wrong event header", with(events.EventHeader, "order.v1.OrderCancelled"), nil, "policy"},
		{"another event's header", with(events.EventHeader, "user.v1.SessionRevoked"), nil, "policy"},
		{"missing event header", without(events.EventHeader), nil, "policy"},
		{"missing enqueue time", without(events.EnqueuedHeader), nil, "token"},
		{"enqueued after stored", with(events.EnqueuedHeader,
			time.Now().Add(time.Hour).Format(time.RFC3339Nano)), nil, "token"},
		{"enqueued before the stream's retention", with(events.EnqueuedHeader,
			time.Now().Add(-events.MaxAge-time.Hour).Format(time.RFC3339Nano)), nil, "token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			var got calls[*orderv1.OrderCreated]
			c, err := events.NewConsumer(h.config())
			if err != nil {
				t.Fatal(err)
			}
			err = events.Handle(c, func(ctx context.Context, e *orderv1.OrderCreated) error {
				got.record(ctx, e)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			run(t, c)

			payload := tt.payload
			if payload == nil {
				payload = marshal(t, orderCreated())
			}
			h.publish(t, "orders.created", tt.header, payload)
			eventually(t, "the message was logged", func() bool {
				return len(eventLines(t, h.logs, "event")) > 0
			})
			// Long enough for a retry (50ms) to show.
			time.Sleep(300 * time.Millisecond)

			if n := got.count(); n != 0 {
				t.Errorf("the handler ran %d times", n)
			}
			checkAudited(t, eventLines(t, h.logs, "event"), tt.reason)
			checkSettled(t, h)
		})
	}
}

// checkAudited checks that lines hold one audit event: a rejection for
// reason, with the error that says why.
func checkAudited(t *testing.T, lines []map[string]any, reason string) {
	t.Helper()
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1 (no redelivery): %v", len(lines), lines)
	}
	want := map[string]any{"level": "WARN", "outcome": "rejected", "audit": "rejected", "reason": reason}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("log %s = %v, want %v", k, lines[0][k], v)
		}
	}
	if _, ok := lines[0]["error"]; !ok {
		t.Error("the log line does not say why")
	}
}

// checkSettled checks that the payment consumer of the order stream holds
// no message waiting for an acknowledgement or delivered again.
func checkSettled(t *testing.T, h *harness) {
	t.Helper()
	cons, err := h.js.Consumer(t.Context(), events.StreamName("order"), "payment")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumRedelivered != 0 {
		t.Errorf("consumer has %d pending and %d redelivered, want the message settled",
			info.NumAckPending, info.NumRedelivered)
	}
}

// TestHandlerFailures checks what follows a handler that fails or panics.
func TestHandlerFailures(t *testing.T) {
	t.Parallel()
	errDown := errors.New("ledger unavailable")
	tests := []struct {
		name string
		// fail says whether the handler fails on the call-th call.
		fail         func(call int) error
		wantCalls    int
		wantOutcomes []string
		wantReasons  []string
	}{
		{
			name: "error then success",
			fail: func(call int) error {
				if call == 1 {
					return errDown
				}
				return nil
			},
			wantCalls:    2,
			wantOutcomes: []string{"retry", "ok"},
			wantReasons:  []string{"", ""},
		},
		{
			name: "panic then success",
			fail: func(call int) error {
				if call == 1 {
					panic("nil map")
				}
				return nil
			},
			wantCalls:    2,
			wantOutcomes: []string{"retry", "ok"},
			wantReasons:  []string{"panic", ""},
		},
		{
			name: "permanent error",
			fail: func(int) error {
				return fmt.Errorf("unknown order: %w", events.Permanent(errDown))
			},
			wantCalls:    1,
			wantOutcomes: []string{"failed"},
			wantReasons:  []string{"permanent"},
		},
		{
			name:         "always failing",
			fail:         func(int) error { return errDown },
			wantCalls:    3, // MaxDeliver
			wantOutcomes: []string{"retry", "retry", "failed"},
			wantReasons:  []string{"", "", "max_deliver"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			got := runRecording(t, h.config(), tt.fail)

			sent := orderCreated()
			h.publish(t, "orders.created", headers(), marshal(t, sent))
			eventually(t, "the last delivery was logged", func() bool {
				return len(eventLines(t, h.logs, "event")) >= len(tt.wantOutcomes)
			})
			time.Sleep(300 * time.Millisecond) // room for a delivery too many

			if n := got.count(); n != tt.wantCalls {
				t.Errorf("handler ran %d times, want %d", n, tt.wantCalls)
			}
			for _, m := range got.msgs {
				if !proto.Equal(sent, m) {
					t.Errorf("handled %v, want %v", m, sent)
				}
			}
			checkOutcomes(t, h, tt.wantOutcomes, tt.wantReasons)
		})
	}
}

// TestSameEventTwice shows why handlers must be idempotent: an event
// published again after the duplicate window reaches the handler again.
func TestSameEventTwice(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	got := runRecording(t, h.config(), nil)

	sent := orderCreated()
	for range 2 {
		h.publish(t, "orders.created", headers(), marshal(t, sent))
	}
	eventually(t, "the handler ran twice", func() bool { return got.count() == 2 })
	if !proto.Equal(got.msgs[0], got.msgs[1]) {
		t.Errorf("handled %v and %v, want the same event", got.msgs[0], got.msgs[1])
	}
}

func TestRunWaitsForStream(t *testing.T) {
	t.Parallel()
	h := newBareHarness(t) // the order workload has not started
	var got calls[*orderv1.OrderCreated]
	c, err := events.NewConsumer(h.config())
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Handle(c, func(ctx context.Context, e *orderv1.OrderCreated) error {
		got.record(ctx, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	run(t, c)

	eventually(t, "the consumer is waiting", func() bool {
		return len(eventLines(t, h.logs, "waiting for stream")) > 0
	})
	if err := events.EnsureStream(t.Context(), h.js, h.set, "order"); err != nil {
		t.Fatal(err)
	}
	h.publish(t, "orders.created", headers(), marshal(t, orderCreated()))
	eventually(t, "the handler ran", func() bool { return got.count() == 1 })
}

func TestHandleRefuses(t *testing.T) {
	t.Parallel()
	h := &harness{set: loadPolicy(t), logs: &telemetrytest.Logs{}}
	noop := func(context.Context, proto.Message) error { return nil }
	tests := []struct {
		name     string
		workload string
		event    proto.Message
		wantErr  error
	}{
		{"event for another workload", "gateway", &orderv1.OrderCreated{}, policy.ErrCallerNotAllowed},
		{"event without subscribers", "payment", &orderv1.OrderCancelled{}, policy.ErrCallerNotAllowed},
		{"not an event", "payment", &moneyv1.Money{}, policy.ErrNoPolicy},
		{"nil prototype", "payment", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := h.config()
			cfg.JetStream = fakeJetStream{}
			cfg.Workload = tt.workload
			c, err := events.NewConsumer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Handle(tt.event, noop)
			if err == nil {
				t.Fatal("Handle succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Handle = %v, want %v", err, tt.wantErr)
			}
		})
	}

	t.Run("twice", func(t *testing.T) {
		t.Parallel()
		cfg := h.config()
		cfg.JetStream = fakeJetStream{}
		cfg.Workload = "gateway"
		c, err := events.NewConsumer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Handle(&userv1.SessionRevoked{}, noop); err != nil {
			t.Fatal(err)
		}
		if err := c.Handle(&userv1.SessionRevoked{}, noop); err == nil {
			t.Error("a second handler for the same event was accepted")
		}
	})
}

func TestNewConsumerRefuses(t *testing.T) {
	t.Parallel()
	h := &harness{set: loadPolicy(t), logs: &telemetrytest.Logs{}}
	tests := []struct {
		name   string
		change func(*events.ConsumerConfig)
	}{
		{"no JetStream", func(c *events.ConsumerConfig) { c.JetStream = nil }},
		{"no policy", func(c *events.ConsumerConfig) { c.Policy = nil }},
		{"no workload", func(c *events.ConsumerConfig) { c.Workload = "" }},
		{"no token verifier", func(c *events.ConsumerConfig) { c.Tokens = nil }},
		{"bad workload", func(c *events.ConsumerConfig) { c.Workload = "pay/ment" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := h.config()
			cfg.JetStream = fakeJetStream{}
			tt.change(&cfg)
			if _, err := events.NewConsumer(cfg); err == nil {
				t.Error("NewConsumer succeeded")
			}
		})
	}
}

func TestRunRefuses(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c, err := events.NewConsumer(h.config())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(t.Context()); err == nil {
		t.Error("Run without handlers succeeded")
	}

	// The order workload consumes both payment events.
	cfg := h.config()
	cfg.Workload = "order"
	c, err = events.NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = events.Handle(c, func(context.Context, *paymentv1.PaymentSucceeded) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	eventually(t, "Run is waiting for the payment stream", func() bool {
		return len(eventLines(t, h.logs, "waiting for stream")) > 0
	})
	if err := c.Run(t.Context()); err == nil {
		t.Error("a second Run succeeded")
	}
	err = events.Handle(c, func(context.Context, *paymentv1.PaymentFailed) error { return nil })
	if err == nil {
		t.Error("Handle after Run succeeded")
	}
}

// fakeJetStream fails the test's expectations loudly: any call panics.
type fakeJetStream struct{ jetstream.JetStream }

// unavailableVerifier cannot fetch the gateway's keys for its first
// `failures` calls, then verifies as fakeVerifier does.
type unavailableVerifier struct {
	failures int
	calls    atomic.Int64
}

func (v *unavailableVerifier) VerifyAt(ctx context.Context, raw string, at time.Time) (*txntoken.Token, error) {
	if int(v.calls.Add(1)) <= v.failures {
		return nil, fmt.Errorf("%w: kid k1: %w: connection refused", jwks.ErrUnknownKey, jwks.ErrUnavailable)
	}
	return fakeVerifier{}.VerifyAt(ctx, raw, at)
}

// TestKeysNotYetFetched: an event whose token cannot be checked because
// the gateway's keys cannot be fetched is delivered again later, not
// rejected, and handled once the keys arrive; while they never arrive,
// it is given up only after the last delivery allowed.
func TestKeysNotYetFetched(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		failures     int
		wantCalls    int
		wantOutcomes []string
		wantReasons  []string
	}{
		{"keys arrive", 1, 1, []string{"retry", "ok"}, []string{"keys_unavailable", ""}},
		{"keys never arrive", 100, 0, []string{"retry", "retry", "failed"},
			[]string{"keys_unavailable", "keys_unavailable", "max_deliver"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			cfg := h.config()
			cfg.Tokens = &unavailableVerifier{failures: tt.failures}
			got := runRecording(t, cfg, nil)

			h.publish(t, "orders.created", headers(), marshal(t, orderCreated()))
			eventually(t, "the last delivery was logged", func() bool {
				return len(eventLines(t, h.logs, "event")) >= len(tt.wantOutcomes)
			})
			time.Sleep(300 * time.Millisecond) // room for a delivery too many

			if n := got.count(); n != tt.wantCalls {
				t.Errorf("handler ran %d times, want %d", n, tt.wantCalls)
			}
			checkOutcomes(t, h, tt.wantOutcomes, tt.wantReasons)
		})
	}
}

// checkOutcomes compares the outcome and reason of every event log line,
// in order, with those wanted.
func checkOutcomes(t *testing.T, h *harness, wantOutcomes, wantReasons []string) {
	t.Helper()
	var outcomes, reasons []string
	for _, l := range eventLines(t, h.logs, "event") {
		outcomes = append(outcomes, fmt.Sprint(l["outcome"]))
		reason, _ := l["reason"].(string)
		reasons = append(reasons, reason)
	}
	if diff := cmp.Diff(wantOutcomes, outcomes); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantReasons, reasons); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
}
