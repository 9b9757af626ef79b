package paymentstore_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	paymentv1 "example.com/rampart/proto/payment/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
	"example.com/rampart/services/payment/internal/paymentstore"
	"example.com/rampart/services/payment/internal/paymentstore/paymentstoretest"
)

func newPayment() paymentstore.NewPayment {
	return paymentstore.NewPayment{OrderID: uuid.NewString(), UserID: uuid.NewString(), Currency: "EUR", Amount: 2700}
}

func start(t *testing.T, f *paymentstoretest.Fixture) paymentstore.Payment {
	t.Helper()
	p, created, err := f.Store.Start(t.Context(), newPayment())
	if err != nil || !created {
		t.Fatalf("Start = %v, created %t", err, created)
	}
	return p
}

// inStatus starts a payment and takes it to status.
func inStatus(t *testing.T, f *paymentstoretest.Fixture, status paymentstore.Status) paymentstore.Payment {
	t.Helper()
	p := start(t, f)
	ctx := paymentstoretest.UserContext(t.Context(), p.UserID)
	var err error
	switch status {
	case paymentstore.StatusPending:
	case paymentstore.StatusSucceeded:
		p, _, err = f.Store.Settle(ctx, p.ID, paymentstore.Outcome{Succeeded: true})
	case paymentstore.StatusFailed:
		p, _, err = f.Store.Settle(ctx, p.ID, paymentstore.Outcome{FailureReason: "card declined"})
	case paymentstore.StatusRefunded:
		if p, _, err = f.Store.Settle(ctx, p.ID, paymentstore.Outcome{Succeeded: true}); err == nil {
			p, err = f.Store.MarkRefunded(ctx, p.ID)
		}
	}
	if err != nil {
		t.Fatalf("taking payment to %s: %v", status, err)
	}
	return p
}

func TestStart(t *testing.T) {
	t.Parallel()
	f := paymentstoretest.New(t)
	req := newPayment()

	p, created, err := f.Store.Start(t.Context(), req)
	if err != nil || !created {
		t.Fatalf("Start = %v, created %t", err, created)
	}
	want := paymentstore.Payment{
		ID: p.ID, OrderID: req.OrderID, UserID: req.UserID, Status: paymentstore.StatusPending,
		Currency: "EUR", Amount: 2700, CreateTime: p.CreateTime, UpdateTime: p.CreateTime,
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("Start (-want +got):\n%s", diff)
	}
	again, created, err := f.Store.Start(t.Context(), req)
	if err != nil || created {
		t.Fatalf("Start again = %v, created %t", err, created)
	}
	if diff := cmp.Diff(p, again); diff != "" {
		t.Errorf("Start again returned another payment (-first +again):\n%s", diff)
	}
	if n := len(f.Events(t)); n != 0 {
		t.Errorf("starting a payment enqueued %d events", n)
	}
}

func TestStartRefusesConflicts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*paymentstore.NewPayment)
	}{
		{"another user", func(p *paymentstore.NewPayment) { p.UserID = uuid.NewString() }},
		{"another amount", func(p *paymentstore.NewPayment) { p.Amount++ }},
		{"another currency", func(p *paymentstore.NewPayment) { p.Currency = "USD" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := paymentstoretest.New(t)
			req := newPayment()
			first, _, err := f.Store.Start(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			tt.change(&req)
			if _, _, err := f.Store.Start(t.Context(), req); !errors.Is(err, paymentstore.ErrConflict) {
				t.Errorf("Start = %v, want %v", err, paymentstore.ErrConflict)
			}
			stored, err := f.Store.ByOrder(t.Context(), first.OrderID, first.UserID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(first, stored); diff != "" {
				t.Errorf("refused start changed the payment (-first +stored):\n%s", diff)
			}
		})
	}
}

func TestStartConcurrentlyMakesOnePayment(t *testing.T) {
	t.Parallel()
	f := paymentstoretest.New(t)
	req := newPayment()
	const callers = 8
	ids := make([]string, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			p, _, err := f.Store.Start(t.Context(), req)
			if err != nil {
				t.Errorf("Start: %v", err)
			}
			ids[i] = p.ID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent starts returned payments %v", ids)
		}
	}
	var n int
	if err := f.DB.QueryRow("SELECT count(*) FROM payments").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d payments stored, want 1", n)
	}
}

func TestSchemaRefusesSecondPaymentOfAnOrder(t *testing.T) {
	t.Parallel()
	f := paymentstoretest.New(t)
	p := start(t, f)
	_, err := f.DB.Exec(`INSERT INTO payments (payment_id, order_id, user_id, status, currency,
		amount, created_at, updated_at) VALUES (?, ?, ?, 'PENDING', 'EUR', 1, 0, 0)`,
		uuid.NewString(), p.OrderID, p.UserID)
	if err == nil {
		t.Error("a second payment of the same order was stored")
	}
}

func TestSettle(t *testing.T) {
	t.Parallel()
	succeed := paymentstore.Outcome{Succeeded: true}
	decline := paymentstore.Outcome{FailureReason: "card declined"}
	tests := []struct {
		name        string
		from        paymentstore.Status
		outcome     paymentstore.Outcome
		wantStatus  paymentstore.Status
		wantReason  string
		wantChanged bool
	}{
		{"succeeded", paymentstore.StatusPending, succeed, paymentstore.StatusSucceeded, "", true},
		{"failed", paymentstore.StatusPending, decline, paymentstore.StatusFailed, "card declined", true},
		{"succeeded twice", paymentstore.StatusSucceeded, succeed, paymentstore.StatusSucceeded, "", false},
		{"failure after success", paymentstore.StatusSucceeded, decline, paymentstore.StatusSucceeded, "", false},
		{"success after failure", paymentstore.StatusFailed, succeed, paymentstore.StatusFailed, "card declined", false},
		{"success after refund", paymentstore.StatusRefunded, succeed, paymentstore.StatusRefunded, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := paymentstoretest.New(t)
			before := inStatus(t, f, tt.from)
			eventsBefore := len(f.Events(t))

			ctx := paymentstoretest.UserContext(t.Context(), before.UserID)
			got, changed, err := f.Store.Settle(ctx, before.ID, tt.outcome)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %t, want %t", changed, tt.wantChanged)
			}
			stored, err := f.Store.ByOrder(t.Context(), before.OrderID, before.UserID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(stored, got); diff != "" {
				t.Errorf("returned payment (-stored +returned):\n%s", diff)
			}
			if stored.Status != tt.wantStatus || stored.FailureReason != tt.wantReason {
				t.Errorf("stored %s %q, want %s %q", stored.Status, stored.FailureReason, tt.wantStatus, tt.wantReason)
			}

			var want []proto.Message
			settled := timestamppb.New(stored.UpdateTime)
			switch {
			case !tt.wantChanged:
			case tt.outcome.Succeeded:
				want = append(want, &paymentv1.PaymentSucceeded{
					PaymentId: stored.ID, OrderId: stored.OrderID, UserId: stored.UserID,
					Amount: &moneyv1.Money{CurrencyCode: "EUR", Amount: 2700}, SettleTime: settled,
				})
			default:
				want = append(want, &paymentv1.PaymentFailed{
					PaymentId: stored.ID, OrderId: stored.OrderID, UserId: stored.UserID,
					Reason: "card declined", SettleTime: settled,
				})
			}
			gotEvents := f.Events(t)[eventsBefore:]
			if diff := cmp.Diff(want, gotEvents, protocmp.Transform(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("new events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSettleCutsLongReasons(t *testing.T) {
	t.Parallel()
	f := paymentstoretest.New(t)
	p := start(t, f)
	ctx := paymentstoretest.UserContext(t.Context(), p.UserID)
	got, _, err := f.Store.Settle(ctx, p.ID, paymentstore.Outcome{FailureReason: strings.Repeat("é", 300)})
	if err != nil {
		t.Fatal(err)
	}
	n, valid := utf8.RuneCountInString(got.FailureReason), utf8.ValidString(got.FailureReason)
	if n != paymentstore.MaxReasonLength || !valid {
		t.Errorf("reason of %d characters (valid UTF-8: %t), want %d", n, valid, paymentstore.MaxReasonLength)
	}
}

func TestSettleRefused(t *testing.T) {
	t.Parallel()
	f := paymentstoretest.New(t)
	p := start(t, f)

	_, _, err := f.Store.Settle(paymentstoretest.UserContext(t.Context(), p.UserID), uuid.NewString(),
		paymentstore.Outcome{Succeeded: true})
	if !errors.Is(err, paymentstore.ErrNotFound) {
		t.Errorf("Settle of a missing payment = %v, want %v", err, paymentstore.ErrNotFound)
	}
	// Without a transaction token the event cannot be stored, so neither
	// is the outcome.
	if _, _, err := f.Store.Settle(t.Context(), p.ID, paymentstore.Outcome{Succeeded: true}); err == nil {
		t.Error("Settle succeeded without a transaction token for its event")
	}
	stored, err := f.Store.ByOrder(t.Context(), p.OrderID, p.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != paymentstore.StatusPending {
		t.Errorf("status %s after refused settles, want PENDING", stored.Status)
	}
	if n := len(f.Events(t)); n != 0 {
		t.Errorf("%d events after refused settles, want 0", n)
	}
}

func TestMarkRefunded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		from       paymentstore.Status
		wantErr    error
		wantStatus paymentstore.Status
	}{
		{paymentstore.StatusSucceeded, nil, paymentstore.StatusRefunded},
		{paymentstore.StatusRefunded, nil, paymentstore.StatusRefunded},
		{paymentstore.StatusPending, paymentstore.ErrNotRefundable, paymentstore.StatusPending},
		{paymentstore.StatusFailed, paymentstore.ErrNotRefundable, paymentstore.StatusFailed},
	}
	for _, tt := range tests {
		t.Run(string(tt.from), func(t *testing.T) {
			t.Parallel()
			f := paymentstoretest.New(t)
			before := inStatus(t, f, tt.from)

			_, err := f.Store.MarkRefunded(t.Context(), before.ID)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("MarkRefunded = %v, want %v", err, tt.wantErr)
			}
			stored, err := f.Store.ByOrder(t.Context(), before.OrderID, before.UserID)
			if err != nil {
				t.Fatal(err)
			}
			if stored.Status != tt.wantStatus {
				t.Errorf("stored status %s, want %s", stored.Status, tt.wantStatus)
			}
			if tt.from == tt.wantStatus && !stored.UpdateTime.Equal(before.UpdateTime) {
				t.Error("update time moved without a change")
			}
		})
	}
	f := paymentstoretest.New(t)
	if _, err := f.Store.MarkRefunded(t.Context(), uuid.NewString()); !errors.Is(err, paymentstore.ErrNotFound) {
		t.Errorf("MarkRefunded of a missing payment = %v, want %v", err, paymentstore.ErrNotFound)
	}
}

func TestByOrder(t *testing.T) {
	t.Parallel()
	f := paymentstoretest.New(t)
	p := start(t, f)
	tests := []struct {
		name    string
		orderID string
		userID  string
		wantErr error
	}{
		{"owner", p.OrderID, p.UserID, nil},
		{"another user", p.OrderID, uuid.NewString(), paymentstore.ErrNotFound},
		{"missing", uuid.NewString(), p.UserID, paymentstore.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := f.Store.ByOrder(t.Context(), tt.orderID, tt.userID)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ByOrder = %v, want %v", err, tt.wantErr)
			}
			if err == nil && got.ID != p.ID {
				t.Errorf("ByOrder returned payment %s, want %s", got.ID, p.ID)
			}
		})
	}
}
