// Package orderevents applies the payment service's events to orders:
// PaymentSucceeded makes an order PAID, PaymentFailed makes it
// PAYMENT_FAILED.
//
// The events have passed the platform's checks when they arrive (event
// policy, transaction token, protovalidate), but their content is still
// checked against the order: an event for another user than the order's
// owner, or, for a success, for another amount than the order's total, is
// refused for good. Applying an event twice, or after the order moved on,
// changes nothing.
package orderevents

import (
	"context"
	"errors"
	"fmt"

	"example.com/rampart/platform/events"
	"example.com/rampart/platform/txntoken"
	paymentv1 "example.com/rampart/proto/payment/v1"
	"example.com/rampart/services/order/internal/orderstore"
)

// ErrWrongSubject is returned, as a permanent error, for an event whose
// transaction token acts for another user than the one the event names.
var ErrWrongSubject = errors.New("orderevents: event is for another user than its token")

// Handler applies payment events to the store's orders.
type Handler struct {
	store *orderstore.Store
}

// New returns a handler that updates store.
func New(store *orderstore.Store) *Handler { return &Handler{store: store} }

// Register adds the handler's functions to consumer, which must run as
// the order workload.
func (h *Handler) Register(consumer *events.Consumer) error {
	return errors.Join(
		events.Handle(consumer, h.PaymentSucceeded),
		events.Handle(consumer, h.PaymentFailed),
	)
}

// PaymentSucceeded marks the order PAID if it is waiting for its payment.
// It returns a permanent error for an order that does not exist, or a
// payment by another user or of another amount than the order's.
func (h *Handler) PaymentSucceeded(ctx context.Context, e *paymentv1.PaymentSucceeded) error {
	return h.settle(ctx, orderstore.Payment{
		OrderID:  e.GetOrderId(),
		UserID:   e.GetUserId(),
		Paid:     true,
		Currency: e.GetAmount().GetCurrencyCode(),
		Amount:   e.GetAmount().GetAmount(),
	})
}

// PaymentFailed marks the order PAYMENT_FAILED, with the reason, if it is
// waiting for its payment. It returns a permanent error for an order that
// does not exist or a payment by another user than the order's.
func (h *Handler) PaymentFailed(ctx context.Context, e *paymentv1.PaymentFailed) error {
	return h.settle(ctx, orderstore.Payment{
		OrderID:       e.GetOrderId(),
		UserID:        e.GetUserId(),
		FailureReason: e.GetReason(),
	})
}

func (h *Handler) settle(ctx context.Context, p orderstore.Payment) error {
	// The event travels with the transaction token of the order's
	// creation, so its subject must be the user the event names.
	if tok, ok := txntoken.FromContext(ctx); !ok || tok.Claims.Subject != p.UserID {
		err := fmt.Errorf("settling payment of order %s: %w", p.OrderID, ErrWrongSubject)
		return events.Permanent(err)
	}
	_, _, err := h.store.SettlePayment(ctx, p)
	if errors.Is(err, orderstore.ErrNotFound) || errors.Is(err, orderstore.ErrOwnerMismatch) ||
		errors.Is(err, orderstore.ErrAmountMismatch) {
		return events.Permanent(err)
	}
	return err
}
