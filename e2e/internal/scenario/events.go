package scenario

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"example.com/rampart/e2e/internal/otlpsink"
	"example.com/rampart/e2e/internal/probe"
	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/events"
	"example.com/rampart/platform/natsauth"
	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
)

// SpanKey names a span by the service that reported it, its kind and its
// name.
type SpanKey struct{ Service, Kind, Name string }

func keyOf(s otlpsink.Span) SpanKey { return SpanKey{s.Service, s.Kind, s.Name} }

// OrderTrace are the spans one paid order must leave in its trace: the
// call at the gateway and at the order service, the OrderCreated event
// sent and processed, and the PaymentSucceeded event sent and processed.
var OrderTrace = []SpanKey{
	{gatewayWorkload, serverSpan, "order.v1.OrderService/CreateOrder"},
	{orderWorkload, serverSpan, "order.v1.OrderService/CreateOrder"},
	{orderWorkload, producerSpan, "send orders.created"},
	{paymentWorkload, consumerSpan, "process orders.created"},
	{paymentWorkload, producerSpan, "send payments.succeeded"},
	{orderWorkload, consumerSpan, "process payments.succeeded"},
}

// The kinds of span, as the collector reports them.
const (
	serverSpan   = "server"
	producerSpan = "producer"
	consumerSpan = "consumer"
)

// oneTrace places an order and finds, under the trace id the gateway
// returned, every span from the gateway through NATS to the payment.
//
//nolint:thelper // a scenario, not a helper: see Run
func (s *suite) oneTrace(t *testing.T) {
	u := SignUp(t, s.p, ConnectJSON)
	traceID, order := OrderTraced(t, u, "tok_visa", NewKey())
	if got := u.Settled(t, order.GetOrderId(), 30*time.Second); !paid(got) {
		t.Fatalf("order ended %v, want PAID", got.GetStatus())
	}
	WaitForSpans(t, s.p, traceID, OrderTrace)
}

func paid(order *orderv1.Order) bool {
	return order.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_PAID
}

// OrderTraced orders with method under key and returns the order and the
// trace id of the call, from the gateway's Trace-Id header.
func OrderTraced(t *testing.T, u *User, method, key string) (string, *orderv1.Order) {
	t.Helper()
	var order *orderv1.Order
	info, err := CallWithHeaders(t.Context(), func(ctx context.Context) error {
		var err error
		order, err = u.Order(ctx, method, key)
		return err
	})
	if err != nil {
		t.Fatalf("ordering: %v", err)
	}
	traceID := info.ResponseHeader().Get("Trace-Id")
	if len(traceID) != 32 || strings.Trim(traceID, "0123456789abcdef") != "" {
		t.Fatalf("Trace-Id header %q is not a trace id", traceID)
	}
	return traceID, order
}

// WaitForSpans waits until the trace holds every span of want, and
// returns the trace.
func WaitForSpans(t *testing.T, p Platform, traceID string, want []SpanKey) []otlpsink.Span {
	t.Helper()
	var spans []otlpsink.Span
	var err error
	Eventually(t, 30*time.Second, func() bool {
		spans, err = p.Trace(t.Context(), traceID)
		for _, k := range want {
			if !slices.ContainsFunc(spans, func(s otlpsink.Span) bool { return keyOf(s) == k }) {
				return false
			}
		}
		return err == nil
	}, func() string {
		got := make([]SpanKey, len(spans))
		for i, s := range spans {
			got[i] = keyOf(s)
		}
		return fmt.Sprintf("trace %s holds %v (error %v), want at least %v", traceID, got, err, want)
	})
	return spans
}

// duplicateEvent publishes, as the order workload would, a second copy of
// a paid order's OrderCreated under a new message id, so that JetStream
// delivers it, and checks that the payment service handled it without a
// second payment or a second PaymentSucceeded.
//
// The copy carries a trace of its own, so what its delivery caused can be
// told apart: the payment service's consumer span for it must say the
// message was handled, and no PaymentSucceeded may be sent in the
// original order's trace or the copy's but the first. The payment
// service's database, read directly, must hold one payment for the order.
//
//nolint:thelper // a scenario, not a helper: see Run
func (s *suite) duplicateEvent(t *testing.T) {
	u := SignUp(t, s.p, ConnectJSON)
	key := NewKey()
	firstTrace, created := OrderTraced(t, u, "tok_visa", key)
	order := u.Settled(t, created.GetOrderId(), 30*time.Second)
	if !paid(order) {
		t.Fatalf("order ended %v, want PAID", order.GetStatus())
	}
	WaitForSpans(t, s.p, firstTrace, OrderTrace)

	event := &orderv1.OrderCreated{
		OrderId:       order.GetOrderId(),
		UserId:        u.ID,
		Total:         order.GetTotal(),
		PaymentMethod: "tok_visa",
		CreateTime:    order.GetCreateTime(),
	}
	txn := TxnToken(t, s.p, u.ID, "/order.v1.OrderService/CreateOrder",
		&orderv1.CreateOrderRequest{IdempotencyKey: key})
	copyTrace, msgID := randomHex(16), uuid.NewString()
	PublishAsOrder(t, s.p, event, txn, copyTrace, msgID)

	handled := SpanKey{paymentWorkload, consumerSpan, "process orders.created"}
	spans := WaitForSpans(t, s.p, copyTrace, []SpanKey{handled})
	i := slices.IndexFunc(spans, func(s otlpsink.Span) bool { return keyOf(s) == handled })
	gotDelivery := map[string]string{
		"message id": spans[i].Attributes["messaging.message.id"],
		"outcome":    spans[i].Attributes["rampart.outcome"],
	}
	wantDelivery := map[string]string{"message id": msgID, "outcome": "ok"}
	if diff := cmp.Diff(wantDelivery, gotDelivery); diff != "" {
		t.Fatalf("the copy's delivery (-want +got):\n%s", diff)
	}

	// A PaymentSucceeded the copy caused would be sent right after the
	// consumer span ended; give it many export intervals to arrive.
	time.Sleep(2 * time.Second)
	// A publish the relay retried sends the same outbox row, under the
	// same message id, again: count messages, not attempts.
	succeeded := SpanKey{paymentWorkload, producerSpan, "send payments.succeeded"}
	messages := map[string]bool{}
	for _, trace := range []string{firstTrace, copyTrace} {
		spans, err := s.p.Trace(t.Context(), trace)
		if err != nil {
			t.Fatal(err)
		}
		for _, span := range spans {
			if keyOf(span) == succeeded {
				messages[span.Attributes["messaging.message.id"]] = true
			}
		}
	}
	if len(messages) != 1 {
		t.Errorf("%d PaymentSucceeded messages sent for the order, want one", len(messages))
	}
	want := []PaymentRow{{Status: "SUCCEEDED", Currency: order.GetTotal().GetCurrencyCode(),
		Amount: order.GetTotal().GetAmount()}}
	if diff := cmp.Diff(want, Payments(t, s.p, order.GetOrderId())); diff != "" {
		t.Errorf("stored payments of the order (-want +got):\n%s", diff)
	}
}

// PublishAsOrder publishes event on its subject as the order workload's
// outbox relay would: over NATS with the order workload's SVID, with the
// headers the outbox writes, the transaction token txn, a W3C trace
// context starting trace traceID, and msgID as the JetStream message id.
func PublishAsOrder(t *testing.T, p Platform, event *orderv1.OrderCreated,
	txn, traceID, msgID string) {
	t.Helper()
	files := devpki.WorkloadFiles(p.PKIDir(), orderWorkload)
	cfg, closeSource, err := probe.WorkloadTLS(t.Context(), files, workloadID(t, p, natsWorkload))
	if err != nil {
		t.Fatal(err)
	}
	defer closeChecked(t, "the SVID source", closeSource)
	nc, err := nats.Connect(p.NATSURL(), nats.Secure(cfg), nats.NoReconnect(),
		nats.CustomInboxPrefix(natsauth.InboxPrefix(orderWorkload)))
	if err != nil {
		t.Fatalf("connecting to NATS as the order workload: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	payload, err := proto.Marshal(event)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(subjectOf(t, p, event))
	msg.Data = payload
	msg.Header.Set(events.EventHeader, string(event.ProtoReflect().Descriptor().FullName()))
	msg.Header.Set(events.ContentTypeHeader, events.ContentType)
	msg.Header.Set(txntoken.HeaderKey, txn)
	msg.Header.Set(events.EnqueuedHeader, time.Now().UTC().Format(time.RFC3339Nano))
	msg.Header.Set("traceparent", "00-"+traceID+"-"+randomHex(8)+"-01")
	ack, err := js.PublishMsg(t.Context(), msg, jetstream.WithMsgID(msgID))
	if err != nil {
		t.Fatalf("publishing the copy: %v", err)
	}
	if ack.Duplicate {
		t.Fatal("JetStream took the copy for a duplicate and dropped it")
	}
}

// subjectOf returns the subject that event's policy names.
func subjectOf(t *testing.T, p Platform, event proto.Message) string {
	t.Helper()
	e, err := Policies(t, p).Event(event.ProtoReflect().Descriptor().FullName())
	if err != nil {
		t.Fatal(err)
	}
	return e.Subject
}

// PaymentRow is a payment as the payment service stores it.
type PaymentRow struct {
	Status, Currency string
	Amount           int64
}

// Payments reads the payments of an order from the payment service's
// database, opened read-only while the service runs.
func Payments(t *testing.T, p Platform, orderID string) []PaymentRow {
	t.Helper()
	dsn := "file:" + p.PaymentDB() + "?" + url.Values{
		"mode": {"ro"}, "_pragma": {"busy_timeout(10000)"},
	}.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Errorf("closing the payment service's database: %v", err)
		}
	}()
	rows, err := db.QueryContext(t.Context(),
		"SELECT status, currency, amount FROM payments WHERE order_id = ? ORDER BY created_at", orderID)
	if err != nil {
		t.Fatalf("reading the payment service's database: %v", err)
	}
	defer rows.Close()
	var out []PaymentRow
	for rows.Next() {
		var r PaymentRow
		if err := rows.Scan(&r.Status, &r.Currency, &r.Amount); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
