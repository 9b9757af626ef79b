package paymentevents_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "example.com/rampart/proto/order/v1"
	paymentv1 "example.com/rampart/proto/payment/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
	"example.com/rampart/services/payment/internal/paymentevents"
	"example.com/rampart/services/payment/internal/paymentstore"
	"example.com/rampart/services/payment/internal/paymentstore/paymentstoretest"
	"example.com/rampart/services/payment/internal/processor"
	"example.com/rampart/services/payment/internal/processor/fakeprocessor"
)

type env struct {
	*paymentstoretest.Fixture
	processor *fakeprocessor.Processor
	charger   *paymentevents.Charger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{Fixture: paymentstoretest.New(t), processor: fakeprocessor.New()}
	var err error
	e.charger, err = paymentevents.New(paymentevents.Config{Store: e.Store, Processor: e.processor})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func orderCreated(method string) *orderv1.OrderCreated {
	return &orderv1.OrderCreated{
		OrderId:       uuid.NewString(),
		UserId:        uuid.NewString(),
		Total:         &moneyv1.Money{CurrencyCode: "EUR", Amount: 2700},
		PaymentMethod: method,
		CreateTime:    timestamppb.Now(),
	}
}

// deliver hands the event to the charger as the consumer does, with the
// transaction token of the user it names.
func (e *env) deliver(t *testing.T, event *orderv1.OrderCreated) error {
	t.Helper()
	return e.charger.OrderCreated(paymentstoretest.UserContext(t.Context(), event.GetUserId()), event)
}

func TestOrderCreated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		method      string
		deliveries  int
		wantErrs    []bool // per delivery: whether it fails, to be delivered again
		wantStatus  paymentstore.Status
		wantCharges int
		wantEvent   proto.Message
	}{
		{
			name: "paid", method: "tok_visa", deliveries: 1, wantErrs: []bool{false},
			wantStatus: paymentstore.StatusSucceeded, wantCharges: 1,
			wantEvent: &paymentv1.PaymentSucceeded{Amount: &moneyv1.Money{CurrencyCode: "EUR", Amount: 2700}},
		},
		{
			name: "declined", method: "tok_declined", deliveries: 1, wantErrs: []bool{false},
			wantStatus: paymentstore.StatusFailed,
			wantEvent:  &paymentv1.PaymentFailed{Reason: "card declined"},
		},
		{
			name: "delivered three times", method: "tok_visa", deliveries: 3, wantErrs: []bool{false, false, false},
			wantStatus: paymentstore.StatusSucceeded, wantCharges: 1,
			wantEvent: &paymentv1.PaymentSucceeded{Amount: &moneyv1.Money{CurrencyCode: "EUR", Amount: 2700}},
		},
		{
			name: "declined, delivered twice", method: "tok_declined", deliveries: 2, wantErrs: []bool{false, false},
			wantStatus: paymentstore.StatusFailed,
			wantEvent:  &paymentv1.PaymentFailed{Reason: "card declined"},
		},
		{
			name: "processor unavailable, then retried", method: "tok_unavailable", deliveries: 2,
			wantErrs:   []bool{true, false},
			wantStatus: paymentstore.StatusSucceeded, wantCharges: 1,
			wantEvent: &paymentv1.PaymentSucceeded{Amount: &moneyv1.Money{CurrencyCode: "EUR", Amount: 2700}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			event := orderCreated(tt.method)
			for i := range tt.deliveries {
				err := e.deliver(t, event)
				if (err != nil) != tt.wantErrs[i] {
					t.Fatalf("delivery %d: %v, want failure %t", i+1, err, tt.wantErrs[i])
				}
				if err != nil && !errors.Is(err, processor.ErrUnavailable) {
					t.Errorf("delivery %d: %v, want %v", i+1, err, processor.ErrUnavailable)
				}
			}

			p, err := e.Store.ByOrder(t.Context(), event.GetOrderId(), event.GetUserId())
			if err != nil {
				t.Fatal(err)
			}
			if p.Status != tt.wantStatus {
				t.Errorf("payment %s, want %s", p.Status, tt.wantStatus)
			}
			if n := e.processor.Charges(); n != tt.wantCharges {
				t.Errorf("processor charged %d times, want %d", n, tt.wantCharges)
			}
			want := proto.CloneOf(tt.wantEvent)
			fill(want, p)
			if diff := cmp.Diff([]proto.Message{want}, e.Events(t), protocmp.Transform()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// fill sets the fields of a payment event that come from the payment.
func fill(event proto.Message, p paymentstore.Payment) {
	settled := timestamppb.New(p.UpdateTime)
	switch e := event.(type) {
	case *paymentv1.PaymentSucceeded:
		e.PaymentId, e.OrderId, e.UserId, e.SettleTime = p.ID, p.OrderID, p.UserID, settled
	case *paymentv1.PaymentFailed:
		e.PaymentId, e.OrderId, e.UserId, e.SettleTime = p.ID, p.OrderID, p.UserID, settled
	}
}

// TestOrderCreatedAfterACrash delivers an event again after the process
// died at each step of a charge, and checks that the order is charged
// once and settled once.
func TestOrderCreatedAfterACrash(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		crash func(t *testing.T, e *env, event *orderv1.OrderCreated)
	}{
		{
			name: "after storing the payment",
			crash: func(t *testing.T, e *env, event *orderv1.OrderCreated) {
				t.Helper()
				if _, _, err := e.Store.Start(t.Context(), newPayment(event)); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "after charging",
			crash: func(t *testing.T, e *env, event *orderv1.OrderCreated) {
				t.Helper()
				p, _, err := e.Store.Start(t.Context(), newPayment(event))
				if err != nil {
					t.Fatal(err)
				}
				err = e.processor.Charge(t.Context(), processor.Charge{IdempotencyKey: p.ID,
					PaymentMethod: event.GetPaymentMethod(), Amount: p.Amount, Currency: p.Currency})
				if err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			event := orderCreated("tok_visa")
			tt.crash(t, e, event)

			if err := e.deliver(t, event); err != nil {
				t.Fatal(err)
			}
			p, err := e.Store.ByOrder(t.Context(), event.GetOrderId(), event.GetUserId())
			if err != nil {
				t.Fatal(err)
			}
			if p.Status != paymentstore.StatusSucceeded {
				t.Errorf("payment %s, want SUCCEEDED", p.Status)
			}
			if n := e.processor.Charges(); n != 1 {
				t.Errorf("processor charged %d times, want 1", n)
			}
			if n := len(e.Events(t)); n != 1 {
				t.Errorf("%d events, want 1", n)
			}
		})
	}
}

func newPayment(event *orderv1.OrderCreated) paymentstore.NewPayment {
	return paymentstore.NewPayment{OrderID: event.GetOrderId(), UserID: event.GetUserId(),
		Currency: event.GetTotal().GetCurrencyCode(), Amount: event.GetTotal().GetAmount()}
}

func TestOrderCreatedRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		deliver func(ctx context.Context, e *env, event *orderv1.OrderCreated) error
		wantErr error
	}{
		{
			name: "token of another user",
			deliver: func(ctx context.Context, e *env, event *orderv1.OrderCreated) error {
				ctx = paymentstoretest.UserContext(ctx, uuid.NewString())
				return e.charger.OrderCreated(ctx, event)
			},
			wantErr: paymentevents.ErrWrongSubject,
		},
		{
			name: "no token",
			deliver: func(ctx context.Context, e *env, event *orderv1.OrderCreated) error {
				return e.charger.OrderCreated(ctx, event)
			},
			wantErr: paymentevents.ErrWrongSubject,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			event := orderCreated("tok_visa")
			if err := tt.deliver(t.Context(), e, event); !errors.Is(err, tt.wantErr) {
				t.Fatalf("OrderCreated = %v, want %v", err, tt.wantErr)
			}
			_, err := e.Store.ByOrder(t.Context(), event.GetOrderId(), event.GetUserId())
			if !errors.Is(err, paymentstore.ErrNotFound) {
				t.Errorf("a refused event stored a payment: %v", err)
			}
			if n := e.processor.Charges(); n != 0 {
				t.Errorf("processor charged %d times, want 0", n)
			}
		})
	}
}

func TestOrderCreatedConflictingWithAnEarlierOne(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*orderv1.OrderCreated)
	}{
		{"another user", func(e *orderv1.OrderCreated) { e.UserId = uuid.NewString() }},
		{"another amount", func(e *orderv1.OrderCreated) { e.Total.Amount++ }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			first := orderCreated("tok_visa")
			if err := e.deliver(t, first); err != nil {
				t.Fatal(err)
			}
			second := proto.CloneOf(first)
			tt.change(second)
			if err := e.deliver(t, second); !errors.Is(err, paymentstore.ErrConflict) {
				t.Errorf("conflicting event: %v, want %v", err, paymentstore.ErrConflict)
			}
			if n := e.processor.Charges(); n != 1 {
				t.Errorf("processor charged %d times, want 1", n)
			}
			if n := len(e.Events(t)); n != 1 {
				t.Errorf("%d events, want 1", n)
			}
		})
	}
}
