package orderevents_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	paymentv1 "example.com/rampart/proto/payment/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
	"example.com/rampart/services/order/internal/orderevents"
	"example.com/rampart/services/order/internal/orderstore"
	"example.com/rampart/services/order/internal/orderstore/orderstoretest"
)

// placeOrder stores a new order of 27.00 EUR for a new user.
func placeOrder(t *testing.T, f *orderstoretest.Fixture) orderstore.Order {
	t.Helper()
	user := uuid.NewString()
	o, _, err := f.Store.Create(orderstoretest.UserContext(t.Context(), user), orderstore.NewOrder{
		UserID:         user,
		IdempotencyKey: "events-" + user,
		PaymentMethod:  "tok_visa",
		Currency:       "EUR",
		Items:          []orderstore.Item{{SKU: "MUG", Name: "Mug", Quantity: 2, UnitPrice: 1350, LineTotal: 2700}},
		Total:          2700,
	})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func succeeded(o orderstore.Order) *paymentv1.PaymentSucceeded {
	return &paymentv1.PaymentSucceeded{
		PaymentId:  uuid.NewString(),
		OrderId:    o.ID,
		UserId:     o.UserID,
		Amount:     &moneyv1.Money{CurrencyCode: o.Currency, Amount: o.Total},
		SettleTime: timestamppb.Now(),
	}
}

func failed(o orderstore.Order) *paymentv1.PaymentFailed {
	return &paymentv1.PaymentFailed{
		PaymentId:  uuid.NewString(),
		OrderId:    o.ID,
		UserId:     o.UserID,
		Reason:     "card declined",
		SettleTime: timestamppb.Now(),
	}
}

func TestPaymentEvents(t *testing.T) {
	t.Parallel()
	type delivery func(h *orderevents.Handler, ctx context.Context, o orderstore.Order) error
	success := func(h *orderevents.Handler, ctx context.Context, o orderstore.Order) error {
		return h.PaymentSucceeded(ctx, succeeded(o))
	}
	failure := func(h *orderevents.Handler, ctx context.Context, o orderstore.Order) error {
		return h.PaymentFailed(ctx, failed(o))
	}

	tests := []struct {
		name       string
		deliveries []delivery
		wantStatus orderstore.Status
		wantReason string
	}{
		{"succeeded", []delivery{success}, orderstore.StatusPaid, ""},
		{"failed", []delivery{failure}, orderstore.StatusPaymentFailed, "card declined"},
		{"succeeded twice", []delivery{success, success}, orderstore.StatusPaid, ""},
		{"failed twice", []delivery{failure, failure}, orderstore.StatusPaymentFailed, "card declined"},
		{"failure after success", []delivery{success, failure}, orderstore.StatusPaid, ""},
		{"success after failure", []delivery{failure, success}, orderstore.StatusPaymentFailed, "card declined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := orderstoretest.New(t)
			h := orderevents.New(f.Store)
			o := placeOrder(t, f)
			ctx := orderstoretest.UserContext(t.Context(), o.UserID)

			var settled orderstore.Order
			for i, deliver := range tt.deliveries {
				if err := deliver(h, ctx, o); err != nil {
					t.Fatalf("delivery %d: %v", i+1, err)
				}
				got, err := f.Store.Get(t.Context(), o.ID, o.UserID)
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					settled = got
				} else if !got.UpdateTime.Equal(settled.UpdateTime) || got.Status != settled.Status {
					t.Errorf("delivery %d changed the order: %s at %v, was %s at %v",
						i+1, got.Status, got.UpdateTime, settled.Status, settled.UpdateTime)
				}
			}
			if settled.Status != tt.wantStatus || settled.FailureReason != tt.wantReason {
				t.Errorf("order %s %q, want %s %q", settled.Status, settled.FailureReason, tt.wantStatus, tt.wantReason)
			}
		})
	}
}

func TestPaymentEventsRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		deliver func(ctx context.Context, h *orderevents.Handler, o orderstore.Order) error
		wantErr error
	}{
		{
			name: "success for another user",
			deliver: func(ctx context.Context, h *orderevents.Handler, o orderstore.Order) error {
				e := succeeded(o)
				e.UserId = uuid.NewString()
				return h.PaymentSucceeded(orderstoretest.UserContext(ctx, e.GetUserId()), e)
			},
			wantErr: orderstore.ErrOwnerMismatch,
		},
		{
			name: "failure for another user",
			deliver: func(ctx context.Context, h *orderevents.Handler, o orderstore.Order) error {
				e := failed(o)
				e.UserId = uuid.NewString()
				return h.PaymentFailed(orderstoretest.UserContext(ctx, e.GetUserId()), e)
			},
			wantErr: orderstore.ErrOwnerMismatch,
		},
		{
			name: "token of another user",
			deliver: func(ctx context.Context, h *orderevents.Handler, o orderstore.Order) error {
				ctx = orderstoretest.UserContext(ctx, uuid.NewString())
				return h.PaymentSucceeded(ctx, succeeded(o))
			},
			wantErr: orderevents.ErrWrongSubject,
		},
		{
			name: "no token",
			deliver: func(ctx context.Context, h *orderevents.Handler, o orderstore.Order) error {
				return h.PaymentSucceeded(ctx, succeeded(o))
			},
			wantErr: orderevents.ErrWrongSubject,
		},
		{
			name: "amount below the total",
			deliver: func(ctx context.Context, h *orderevents.Handler, o orderstore.Order) error {
				e := succeeded(o)
				e.Amount.Amount = 1
				return h.PaymentSucceeded(orderstoretest.UserContext(ctx, o.UserID), e)
			},
			wantErr: orderstore.ErrAmountMismatch,
		},
		{
			name: "order does not exist",
			deliver: func(ctx context.Context, h *orderevents.Handler, o orderstore.Order) error {
				e := succeeded(o)
				e.OrderId = uuid.NewString()
				return h.PaymentSucceeded(orderstoretest.UserContext(ctx, o.UserID), e)
			},
			wantErr: orderstore.ErrNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := orderstoretest.New(t)
			o := placeOrder(t, f)

			err := tt.deliver(t.Context(), orderevents.New(f.Store), o)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("handler = %v, want %v", err, tt.wantErr)
			}
			got, err := f.Store.Get(t.Context(), o.ID, o.UserID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != orderstore.StatusPendingPayment {
				t.Errorf("refused event moved the order to %s", got.Status)
			}
		})
	}
}
