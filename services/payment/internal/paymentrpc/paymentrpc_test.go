package paymentrpc_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/rampart/platform/txntoken"
	paymentv1 "example.com/rampart/proto/payment/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
	"example.com/rampart/services/payment/internal/paymentrpc"
	"example.com/rampart/services/payment/internal/paymentstore"
	"example.com/rampart/services/payment/internal/paymentstore/paymentstoretest"
	"example.com/rampart/services/payment/internal/processor"
	"example.com/rampart/services/payment/internal/processor/fakeprocessor"
)

type env struct {
	*paymentstoretest.Fixture
	processor *fakeprocessor.Processor
	server    *paymentrpc.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{Fixture: paymentstoretest.New(t), processor: fakeprocessor.New()}
	e.server = paymentrpc.New(e.Store, e.processor, nil)
	return e
}

// payment makes a payment in status for a new user, charged at the fake
// processor when it succeeded, and returns it with the user's context.
func (e *env) payment(t *testing.T, status paymentstore.Status) (paymentstore.Payment, context.Context) {
	t.Helper()
	p, _, err := e.Store.Start(t.Context(), paymentstore.NewPayment{
		OrderID: uuid.NewString(), UserID: uuid.NewString(), Currency: "EUR", Amount: 2700,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := paymentstoretest.UserContext(t.Context(), p.UserID)
	if status == paymentstore.StatusPending {
		return p, ctx
	}
	method := "tok_visa"
	if status == paymentstore.StatusFailed {
		method = fakeprocessor.Declined
	}
	outcome := paymentstore.Outcome{Succeeded: true}
	err = e.processor.Charge(ctx, processor.Charge{IdempotencyKey: p.ID, PaymentMethod: method,
		Amount: p.Amount, Currency: p.Currency})
	if err != nil {
		outcome = paymentstore.Outcome{FailureReason: fakeprocessor.DeclineReason}
	}
	if p, _, err = e.Store.Settle(ctx, p.ID, outcome); err != nil {
		t.Fatal(err)
	}
	if status == paymentstore.StatusRefunded {
		if err := e.processor.Refund(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		if p, err = e.Store.MarkRefunded(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	if p.Status != status {
		t.Fatalf("made a %s payment, want %s", p.Status, status)
	}
	return p, ctx
}

func wantStatus(t *testing.T, err error, code codes.Code, message string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || (message != "" && st.Message() != message) {
		t.Errorf("error = %v, want %s %q", err, code, message)
	}
}

func strangerContext(t *testing.T) context.Context {
	t.Helper()
	return paymentstoretest.UserContext(t.Context(), uuid.NewString())
}

func TestGetPayment(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p, ctx := e.payment(t, paymentstore.StatusFailed)

	resp, err := e.server.GetPayment(ctx, &paymentv1.GetPaymentRequest{OrderId: p.OrderID})
	if err != nil {
		t.Fatal(err)
	}
	want := &paymentv1.Payment{
		PaymentId:     p.ID,
		OrderId:       p.OrderID,
		Status:        paymentv1.PaymentStatus_PAYMENT_STATUS_FAILED,
		Amount:        &moneyv1.Money{CurrencyCode: "EUR", Amount: 2700},
		FailureReason: "card declined",
		CreateTime:    timestamppb.New(p.CreateTime),
		UpdateTime:    timestamppb.New(p.UpdateTime),
	}
	if diff := cmp.Diff(want, resp.GetPayment(), protocmp.Transform()); diff != "" {
		t.Errorf("GetPayment (-want +got):\n%s", diff)
	}

	// Another user's payment and a missing one fail alike.
	_, errStranger := e.server.GetPayment(strangerContext(t), &paymentv1.GetPaymentRequest{OrderId: p.OrderID})
	_, errMissing := e.server.GetPayment(ctx, &paymentv1.GetPaymentRequest{OrderId: uuid.NewString()})
	wantStatus(t, errStranger, codes.NotFound, "payment not found")
	if diff := cmp.Diff(status.Convert(errMissing).Proto(), status.Convert(errStranger).Proto(),
		protocmp.Transform()); diff != "" {
		t.Errorf("another user's payment differs from a missing one (-missing +another's):\n%s", diff)
	}

	anonymous := txntoken.NewContext(t.Context(), &txntoken.Token{Claims: txntoken.Claims{Subject: txntoken.Anonymous}})
	_, err = e.server.GetPayment(anonymous, &paymentv1.GetPaymentRequest{OrderId: p.OrderID})
	wantStatus(t, err, codes.Unauthenticated, "")
}

func TestGetPaymentStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status paymentstore.Status
		want   paymentv1.PaymentStatus
	}{
		{paymentstore.StatusPending, paymentv1.PaymentStatus_PAYMENT_STATUS_UNSPECIFIED},
		{paymentstore.StatusSucceeded, paymentv1.PaymentStatus_PAYMENT_STATUS_SUCCEEDED},
		{paymentstore.StatusFailed, paymentv1.PaymentStatus_PAYMENT_STATUS_FAILED},
		{paymentstore.StatusRefunded, paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED},
	}
	for _, tt := range tests {
		t.Run(string(tt.status), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p, ctx := e.payment(t, tt.status)
			resp, err := e.server.GetPayment(ctx, &paymentv1.GetPaymentRequest{OrderId: p.OrderID})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetPayment().GetStatus(); got != tt.want {
				t.Errorf("status %s, want %s", got, tt.want)
			}
		})
	}
}

// unavailable is a processor that cannot refund at the moment.
type unavailable struct{ processor.Processor }

func (unavailable) Refund(context.Context, string) error {
	return fmt.Errorf("%w: connection reset", processor.ErrUnavailable)
}

func TestRefundPayment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		from        paymentstore.Status
		stranger    bool
		down        bool
		wantCode    codes.Code
		wantMessage string
		wantStatus  paymentstore.Status // stored afterwards
		wantRefunds int
	}{
		{name: "succeeded", from: paymentstore.StatusSucceeded,
			wantStatus: paymentstore.StatusRefunded, wantRefunds: 1},
		{name: "refunded already", from: paymentstore.StatusRefunded,
			wantStatus: paymentstore.StatusRefunded, wantRefunds: 1},
		{name: "failed", from: paymentstore.StatusFailed,
			wantCode: codes.FailedPrecondition, wantMessage: "payment has not succeeded; nothing to refund",
			wantStatus: paymentstore.StatusFailed},
		{name: "still pending", from: paymentstore.StatusPending,
			wantCode: codes.FailedPrecondition, wantStatus: paymentstore.StatusPending},
		{name: "another user's", from: paymentstore.StatusSucceeded, stranger: true,
			wantCode: codes.NotFound, wantMessage: "payment not found", wantStatus: paymentstore.StatusSucceeded},
		{name: "processor unavailable", from: paymentstore.StatusSucceeded, down: true,
			wantCode: codes.Unavailable, wantStatus: paymentstore.StatusSucceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p, ctx := e.payment(t, tt.from)
			server := e.server
			if tt.down {
				server = paymentrpc.New(e.Store, unavailable{e.processor}, nil)
			}
			callCtx := ctx
			if tt.stranger {
				callCtx = strangerContext(t)
			}

			resp, err := server.RefundPayment(callCtx, &paymentv1.RefundPaymentRequest{OrderId: p.OrderID})
			wantStatus(t, err, tt.wantCode, tt.wantMessage)
			if err == nil && resp.GetPayment().GetStatus() != paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
				t.Errorf("returned status %s, want REFUNDED", resp.GetPayment().GetStatus())
			}
			stored, err := e.Store.ByOrder(t.Context(), p.OrderID, p.UserID)
			if err != nil {
				t.Fatal(err)
			}
			if stored.Status != tt.wantStatus {
				t.Errorf("stored status %s, want %s", stored.Status, tt.wantStatus)
			}
			if n := e.processor.Refunds(); n != tt.wantRefunds {
				t.Errorf("processor refunded %d times, want %d", n, tt.wantRefunds)
			}
		})
	}
}

// TestRefundPaymentCompletesAnInterruptedRefund calls again after the
// processor refunded but the refund was not recorded: the processor
// returns the money once, and the payment ends REFUNDED.
func TestRefundPaymentCompletesAnInterruptedRefund(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p, ctx := e.payment(t, paymentstore.StatusSucceeded)
	if err := e.processor.Refund(ctx, p.ID); err != nil {
		t.Fatal(err)
	}

	resp, err := e.server.RefundPayment(ctx, &paymentv1.RefundPaymentRequest{OrderId: p.OrderID})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetPayment().GetStatus(); got != paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
		t.Errorf("status %s, want REFUNDED", got)
	}
	if n := e.processor.Refunds(); n != 1 {
		t.Errorf("processor refunded %d times, want 1", n)
	}
}
