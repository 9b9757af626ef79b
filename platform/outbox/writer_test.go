package outbox_test

import (
	"database/sql"
	"encoding/json"
	"errors"
	"example.com/rampart/platform/events"
	"strings"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/rampart/platform/outbox"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/sqlitedb"
	orderv1 "example.com/rampart/proto/order/v1"
	paymentv1 "example.com/rampart/proto/payment/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
)

func TestEnqueueStoresRow(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	w := newWriter(t)
	tp := trace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(withToken(t.Context()), "CreateOrder")
	defer span.End()

	event := orderCreated()
	enqueue(t, ctx, db, w, event)

	var subject, headers string
	var payload []byte
	err := db.QueryRowContext(t.Context(), "SELECT subject, payload, headers FROM outbox").
		Scan(&subject, &payload, &headers)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string][]string
	if err := json.Unmarshal([]byte(headers), &got); err != nil {
		t.Fatal(err)
	}
	sc := span.SpanContext()
	want := map[string][]string{
		"Rampart-Event": {"order.v1.OrderCreated"},
		"Content-Type":  {"application/protobuf"},
		"Txn-Token":     {testToken},
		"traceparent":   {"00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"},
	}
	checkEnqueuedAt(t, got[events.EnqueuedHeader])
	delete(got, events.EnqueuedHeader)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if subject != "orders.created" {
		t.Errorf("subject = %q, want orders.created", subject)
	}
	var stored orderv1.OrderCreated
	if err := proto.Unmarshal(payload, &stored); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(event, &stored) {
		t.Errorf("stored %v, want %v", &stored, event)
	}
}

func TestEnqueueRefuses(t *testing.T) {
	t.Parallel()
	invalid := orderCreated()
	invalid.OrderId = "not-a-uuid"
	huge := orderCreated()
	unknown := protowire.AppendTag(nil, 1000, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, make([]byte, outbox.MaxPayloadSize))
	huge.ProtoReflect().SetUnknown(unknown)
	paymentSucceeded := &paymentv1.PaymentSucceeded{
		PaymentId:  "0b0f3c2e-8a4f-4f0e-9d3c-6f1a2b3c4d5e",
		OrderId:    "1b0f3c2e-8a4f-4f0e-9d3c-6f1a2b3c4d5e",
		UserId:     "2b0f3c2e-8a4f-4f0e-9d3c-6f1a2b3c4d5e",
		Amount:     &moneyv1.Money{CurrencyCode: "EUR", Amount: 1},
		SettleTime: timestamppb.Now(),
	}

	tests := []struct {
		name    string
		noToken bool
		event   proto.Message
		wantErr error
		wantAs  any
	}{
		{"another workload's event", false, paymentSucceeded, policy.ErrCallerNotAllowed, nil},
		{"not an event", false, &moneyv1.Money{CurrencyCode: "EUR"}, policy.ErrNoPolicy, nil},
		{"invalid event", false, invalid, nil, new(*protovalidate.ValidationError)},
		{"no transaction token", true, orderCreated(), outbox.ErrNoToken, nil},
		{"too large", false, huge, outbox.ErrTooLarge, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := openDB(t)
			w := newWriter(t)
			ctx := withToken(t.Context())
			if tt.noToken {
				ctx = t.Context()
			}

			var err error
			// Commit whatever Enqueue left in the transaction.
			txErr := sqlitedb.InTx(ctx, db, func(tx *sql.Tx) error {
				err = w.Enqueue(ctx, tx, tt.event)
				return nil
			})
			if txErr != nil {
				t.Fatal(txErr)
			}
			if err == nil {
				t.Fatal("Enqueue succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Enqueue = %v, want %v", err, tt.wantErr)
			}
			if tt.wantAs != nil && !errors.As(err, tt.wantAs) {
				t.Errorf("Enqueue = %v, want a %T", err, tt.wantAs)
			}
			if n := pendingRows(t, db); n != 0 {
				t.Errorf("%d rows stored, want none", n)
			}
		})
	}
}

func TestNewWriterRefuses(t *testing.T) {
	t.Parallel()
	set := loadPolicy(t)
	tests := []struct {
		name     string
		set      *policy.Set
		workload string
	}{
		{"no policy", nil, "order"},
		{"no workload", set, ""},
		{"not a workload name", set, "order/admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := outbox.NewWriter(tt.set, tt.workload, nil); err == nil {
				t.Error("NewWriter succeeded")
			}
		})
	}
}

func TestRunNeedsOutboxTable(t *testing.T) {
	t.Parallel()
	db, err := sqlitedb.Open(t.Context(), t.TempDir()+"/empty.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, js := natsServer(t)
	r, err := outbox.NewRelay(outbox.RelayConfig{DB: db, JetStream: js})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "outbox") {
		t.Errorf("Run = %v, want an error reading the outbox", err)
	}
}

// checkEnqueuedAt checks that the enqueue time is a time of this test.
func checkEnqueuedAt(t *testing.T, values []string) {
	t.Helper()
	if len(values) != 1 {
		t.Fatalf("%s: %q, want one value", events.EnqueuedHeader, values)
	}
	at, err := time.Parse(time.RFC3339Nano, values[0])
	if err != nil || time.Since(at) < 0 || time.Since(at) > time.Minute {
		t.Errorf("%s = %q, want a recent time (%v)", events.EnqueuedHeader, values[0], err)
	}
}
