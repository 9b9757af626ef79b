package outbox_test

import (
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"example.com/rampart/platform/events"
	"example.com/rampart/platform/events/eventstest"
	"example.com/rampart/platform/outbox"
	"example.com/rampart/platform/sqlitedb"
	orderv1 "example.com/rampart/proto/order/v1"
)

// natsServer starts a server holding the order workload's stream.
func natsServer(t testing.TB) (*eventstest.Server, jetstream.JetStream) {
	t.Helper()
	srv := eventstest.NewServer(t)
	_, js := srv.Connect(t)
	if err := events.EnsureStream(t.Context(), js, loadPolicy(t), "order"); err != nil {
		t.Fatal(err)
	}
	return srv, js
}

func newRelay(t testing.TB, db *sql.DB, js jetstream.JetStream, tp trace.TracerProvider) *outbox.Relay {
	t.Helper()
	r, err := outbox.NewRelay(outbox.RelayConfig{
		DB:             db,
		JetStream:      js,
		TracerProvider: tp,
		PublishTimeout: 500 * time.Millisecond,
		MinBackoff:     20 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// published returns the messages in the order stream.
func published(t testing.TB, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	stream, err := js.Stream(t.Context(), events.StreamName("order"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := stream.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, msg)
	}
	return msgs
}

// orderIDs decodes the order ids of published OrderCreated events.
func orderIDs(t testing.TB, msgs []*jetstream.RawStreamMsg) []string {
	t.Helper()
	var ids []string
	for _, m := range msgs {
		var e orderv1.OrderCreated
		if err := proto.Unmarshal(m.Data, &e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.GetOrderId())
	}
	return ids
}

func TestRollbackPublishesNothing(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	_, js := natsServer(t)
	w := newWriter(t)
	r := newRelay(t, db, js, nil)
	runRelay(t, r)
	ctx := withToken(t.Context())

	errRollback := errors.New("payment method refused")
	err := sqlitedb.InTx(ctx, db, func(tx *sql.Tx) error {
		if err := w.Enqueue(ctx, tx, orderCreated()); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("InTx = %v", err)
	}
	r.Notify()

	// A committed event behind it shows when the relay has gone past.
	marker := orderCreated()
	enqueue(t, ctx, db, w, marker)
	r.Notify()
	eventually(t, "the outbox is empty", func() bool { return pendingRows(t, db) == 0 })

	if diff := cmp.Diff([]string{marker.GetOrderId()}, orderIDs(t, published(t, js))); diff != "" {
		t.Errorf("published orders (-want +got):\n%s", diff)
	}
}

func TestCommitPublishesOnceWithHeaders(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	_, js := natsServer(t)
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	w := newWriter(t)
	r := newRelay(t, db, js, tp)
	runRelay(t, r)

	ctx, span := tp.Tracer("test").Start(withToken(t.Context()), "CreateOrder")
	event := orderCreated()
	enqueue(t, ctx, db, w, event)
	span.End()
	var id string
	if err := db.QueryRowContext(t.Context(), "SELECT id FROM outbox").Scan(&id); err != nil {
		t.Fatal(err)
	}
	r.Notify()
	eventually(t, "the outbox is empty", func() bool { return pendingRows(t, db) == 0 })
	// Polls that find nothing must not publish again.
	time.Sleep(300 * time.Millisecond)

	msgs := published(t, js)
	if len(msgs) != 1 {
		t.Fatalf("published %d messages, want 1", len(msgs))
	}
	producer := spanNamed(t, recorder, "send orders.created")
	if producer.SpanKind() != trace.SpanKindProducer {
		t.Errorf("relay span kind = %v, want producer", producer.SpanKind())
	}
	if producer.Parent().SpanID() != span.SpanContext().SpanID() {
		t.Errorf("relay span's parent = %v, want the span that enqueued", producer.Parent().SpanID())
	}
	psc := producer.SpanContext()
	want := nats.Header{
		"Rampart-Event": {"order.v1.OrderCreated"},
		"Content-Type":  {"application/protobuf"},
		"Txn-Token":     {testToken},
		"Nats-Msg-Id":   {id},
		"traceparent":   {"00-" + psc.TraceID().String() + "-" + psc.SpanID().String() + "-01"},
	}
	checkEnqueuedAt(t, msgs[0].Header.Values(events.EnqueuedHeader))
	msgs[0].Header.Del(events.EnqueuedHeader)
	if diff := cmp.Diff(want, msgs[0].Header); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if msgs[0].Subject != "orders.created" {
		t.Errorf("subject = %q, want orders.created", msgs[0].Subject)
	}
	if diff := cmp.Diff([]string{event.GetOrderId()}, orderIDs(t, msgs)); diff != "" {
		t.Errorf("published orders (-want +got):\n%s", diff)
	}
}

func TestRowsSurviveOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a NATS server")
	}
	t.Parallel()
	db := openDB(t)
	srv, js := natsServer(t)
	w := newWriter(t)
	r := newRelay(t, db, js, nil)
	runRelay(t, r)
	ctx := withToken(t.Context())

	srv.Stop()
	want := []string{}
	for range 3 {
		event := orderCreated()
		want = append(want, event.GetOrderId())
		enqueue(t, ctx, db, w, event)
		r.Notify()
	}
	eventually(t, "the relay has failed twice", func() bool {
		var attempts int
		err := db.QueryRowContext(t.Context(),
			"SELECT attempts FROM outbox ORDER BY rowid LIMIT 1").Scan(&attempts)
		return err == nil && attempts >= 2
	})
	if n := pendingRows(t, db); n != 3 {
		t.Fatalf("%d rows pending during the outage, want 3", n)
	}

	srv.Start(t)
	eventually(t, "the outbox is empty", func() bool { return pendingRows(t, db) == 0 })
	if diff := cmp.Diff(want, orderIDs(t, published(t, js))); diff != "" {
		t.Errorf("published orders (-want +got):\n%s", diff)
	}
}

func TestCrashAfterPublishIsDeduplicated(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	_, js := natsServer(t)
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	w := newWriter(t)
	event := orderCreated()
	enqueue(t, withToken(t.Context()), db, w, event)

	// A relay published the row and stopped before deleting it.
	var id, subject, headers string
	var payload []byte
	err := db.QueryRowContext(t.Context(), "SELECT id, subject, payload, headers FROM outbox").
		Scan(&id, &subject, &payload, &headers)
	if err != nil {
		t.Fatal(err)
	}
	msg := &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{}}
	if err := json.Unmarshal([]byte(headers), &msg.Header); err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(t.Context(), msg, jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}

	// The next relay publishes it again.
	runRelay(t, newRelay(t, db, js, tp))
	eventually(t, "the outbox is empty", func() bool { return pendingRows(t, db) == 0 })

	if diff := cmp.Diff([]string{event.GetOrderId()}, orderIDs(t, published(t, js))); diff != "" {
		t.Errorf("published orders (-want +got):\n%s", diff)
	}
	producer := spanNamed(t, recorder, "send orders.created")
	if !hasAttribute(producer.Attributes(), attribute.Bool("rampart.outbox.duplicate", true)) {
		t.Errorf("relay span attributes %v do not mark a duplicate", producer.Attributes())
	}
}

func spanNamed(t testing.TB, recorder *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range recorder.Ended() {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no span named %q", name)
	return nil
}

func hasAttribute(attrs []attribute.KeyValue, want attribute.KeyValue) bool {
	return slices.Contains(attrs, want)
}
