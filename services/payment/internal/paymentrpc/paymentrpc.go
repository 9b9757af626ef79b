// Package paymentrpc serves payment.v1's PaymentService.
//
// The platform's checks run before any handler here: GetPayment is called
// by the gateway for a signed-in user, RefundPayment only by the order
// workload, and the order id in either request is the one the transaction
// token binds. What is left is ownership: a payment is the token subject's
// or it is not found.
package paymentrpc

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/rampart/platform/txntoken"
	paymentv1 "example.com/rampart/proto/payment/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
	"example.com/rampart/services/payment/internal/paymentstore"
	"example.com/rampart/services/payment/internal/processor"
)

// Server implements paymentv1.PaymentServiceServer.
type Server struct {
	paymentv1.UnimplementedPaymentServiceServer
	store     *paymentstore.Store
	processor processor.Processor
	log       *slog.Logger
}

// New returns a server on store that refunds through proc. The logger
// receives the causes of internal errors, which callers never see; nil
// discards them.
func New(store *paymentstore.Store, proc processor.Processor, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{store: store, processor: proc, log: logger}
}

// GetPayment returns the payment of one of the caller's orders, or
// NotFound. A payment still being charged has no status yet:
// PAYMENT_STATUS_UNSPECIFIED.
func (s *Server) GetPayment(ctx context.Context, req *paymentv1.GetPaymentRequest) (
	*paymentv1.GetPaymentResponse, error) {
	user, err := caller(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	p, err := s.store.ByOrder(ctx, req.GetOrderId(), user)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &paymentv1.GetPaymentResponse{Payment: paymentProto(p)}, nil
}

// RefundPayment refunds the payment of one of the caller's orders in
// full. A refunded payment is returned unchanged; one that has not
// succeeded fails with FailedPrecondition, another user's with NotFound,
// and one the processor cannot refund now with Unavailable.
func (s *Server) RefundPayment(ctx context.Context, req *paymentv1.RefundPaymentRequest) (
	*paymentv1.RefundPaymentResponse, error) {
	user, err := caller(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	p, err := s.store.ByOrder(ctx, req.GetOrderId(), user)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	switch p.Status {
	case paymentstore.StatusRefunded:
		return &paymentv1.RefundPaymentResponse{Payment: paymentProto(p)}, nil
	case paymentstore.StatusSucceeded:
	default:
		return nil, s.toStatus(ctx, paymentstore.ErrNotRefundable)
	}

	// The processor refunds a key once, so a refund whose record failed
	// below is completed, not repeated, by the next call.
	if err := s.processor.Refund(ctx, p.ID); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if p, err = s.store.MarkRefunded(ctx, p.ID); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &paymentv1.RefundPaymentResponse{Payment: paymentProto(p)}, nil
}

var errNoUser = errors.New("paymentrpc: no signed-in user")

// caller returns the id of the signed-in user the call acts for.
func caller(ctx context.Context) (string, error) {
	tok, ok := txntoken.FromContext(ctx)
	if !ok || !tok.Claims.User() {
		return "", errNoUser
	}
	return tok.Claims.Subject, nil
}

// toStatus is the one place where this service's errors become gRPC
// statuses. Messages are written for the client and never carry the
// cause; the cause of an internal error is logged instead.
func (s *Server) toStatus(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, paymentstore.ErrNotFound):
		return status.Error(codes.NotFound, "payment not found")
	case errors.Is(err, paymentstore.ErrNotRefundable):
		return status.Error(codes.FailedPrecondition,
			"payment has not succeeded; nothing to refund")
	case errors.Is(err, processor.ErrUnavailable):
		return status.Error(codes.Unavailable, "payment processor unavailable; try again")
	case errors.Is(err, errNoUser):
		return status.Error(codes.Unauthenticated, "missing or invalid credentials")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "call cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	s.log.ErrorContext(ctx, "internal error", "error", err.Error())
	return status.Error(codes.Internal, "internal error")
}

var statusProto = map[paymentstore.Status]paymentv1.PaymentStatus{
	paymentstore.StatusPending:   paymentv1.PaymentStatus_PAYMENT_STATUS_UNSPECIFIED,
	paymentstore.StatusSucceeded: paymentv1.PaymentStatus_PAYMENT_STATUS_SUCCEEDED,
	paymentstore.StatusFailed:    paymentv1.PaymentStatus_PAYMENT_STATUS_FAILED,
	paymentstore.StatusRefunded:  paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED,
}

func paymentProto(p paymentstore.Payment) *paymentv1.Payment {
	return &paymentv1.Payment{
		PaymentId:     p.ID,
		OrderId:       p.OrderID,
		Status:        statusProto[p.Status],
		Amount:        &moneyv1.Money{CurrencyCode: p.Currency, Amount: p.Amount},
		FailureReason: p.FailureReason,
		CreateTime:    timestamppb.New(p.CreateTime),
		UpdateTime:    timestamppb.New(p.UpdateTime),
	}
}
