// Package paymentevents charges orders: it answers each OrderCreated event
// with one charge at the processor and one PaymentSucceeded or
// PaymentFailed event.
//
// An order is charged at most once, even when its event arrives twice or
// the process dies half-way. The payment is first stored PENDING, keyed
// uniquely by the order; the processor is then called with the payment's
// id as its idempotency key; the outcome and its event are stored last, in
// one transaction. A repeated event finds the stored payment: settled, it
// does nothing; still PENDING, it calls the processor again with the same
// key, which answers with the first charge's result instead of charging
// again.
package paymentevents

import (
	"context"
	"errors"
	"fmt"
	"time"

	"example.com/rampart/platform/events"
	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
	"example.com/rampart/services/payment/internal/paymentstore"
	"example.com/rampart/services/payment/internal/processor"
)

// DefaultChargeTimeout bounds a call to the processor when [Config] does
// not say. It must stay well below the consumer's AckWait, or a slow
// charge would be delivered again while it runs.
const DefaultChargeTimeout = 10 * time.Second

// ErrWrongSubject is returned, as a permanent error, for an event whose
// transaction token acts for another user than the one the event names.
var ErrWrongSubject = errors.New("paymentevents: event is for another user than its token")

// Config is what a [Charger] needs. Store and Processor are required.
type Config struct {
	Store     *paymentstore.Store
	Processor processor.Processor
	// ChargeTimeout bounds each call to the processor; zero means
	// [DefaultChargeTimeout].
	ChargeTimeout time.Duration
}

// Charger charges the orders that order events ask for.
type Charger struct {
	store     *paymentstore.Store
	processor processor.Processor
	timeout   time.Duration
}

// New returns a charger, or an error if cfg lacks a required field.
func New(cfg Config) (*Charger, error) {
	if cfg.Store == nil || cfg.Processor == nil {
		return nil, errors.New("paymentevents: charger needs Store and Processor")
	}
	if cfg.ChargeTimeout <= 0 {
		cfg.ChargeTimeout = DefaultChargeTimeout
	}
	return &Charger{store: cfg.Store, processor: cfg.Processor, timeout: cfg.ChargeTimeout}, nil
}

// Register adds the charger's functions to consumer, which must run as
// the payment workload.
func (c *Charger) Register(consumer *events.Consumer) error {
	return events.Handle(consumer, c.OrderCreated)
}

// OrderCreated charges the order's total, once, and records the outcome
// with its event. It returns a permanent error for an event whose user is
// not its token's subject, or that names an order already paid for by
// another user or another amount; an error that another delivery may
// cure, such as an unavailable processor, is returned as it is.
//
// TODO: a payment whose event is given up after the consumer's last
// delivery stays PENDING, and its order PENDING_PAYMENT, until the event
// comes again. A sweep that retries old PENDING payments with their
// idempotency keys, and fails those the processor never charged, would
// settle them.
func (c *Charger) OrderCreated(ctx context.Context, e *orderv1.OrderCreated) error {
	// The event travels with the transaction token of the order's
	// creation, so its subject must be the user the event names: the
	// payment is recorded as theirs, and only they may read or refund it.
	if tok, ok := txntoken.FromContext(ctx); !ok || tok.Claims.Subject != e.GetUserId() {
		err := fmt.Errorf("charging order %s: %w", e.GetOrderId(), ErrWrongSubject)
		return events.Permanent(err)
	}
	p, _, err := c.store.Start(ctx, paymentstore.NewPayment{
		OrderID:  e.GetOrderId(),
		UserID:   e.GetUserId(),
		Currency: e.GetTotal().GetCurrencyCode(),
		Amount:   e.GetTotal().GetAmount(),
	})
	if errors.Is(err, paymentstore.ErrConflict) {
		return events.Permanent(err)
	}
	if err != nil {
		return err
	}
	if p.Status != paymentstore.StatusPending {
		return nil // settled by an earlier delivery
	}

	outcome, err := c.charge(ctx, p, e.GetPaymentMethod())
	if err != nil {
		return fmt.Errorf("charging order %s: %w", p.OrderID, err)
	}
	_, _, err = c.store.Settle(ctx, p.ID, outcome)
	return err
}

// charge calls the processor for p and tells a decline, which is an
// outcome, from a failure, which is an error.
func (c *Charger) charge(ctx context.Context, p paymentstore.Payment, method string) (
	paymentstore.Outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	err := c.processor.Charge(ctx, processor.Charge{
		IdempotencyKey: p.ID,
		PaymentMethod:  method,
		Amount:         p.Amount,
		Currency:       p.Currency,
	})
	var declined *processor.DeclinedError
	switch {
	case err == nil:
		return paymentstore.Outcome{Succeeded: true}, nil
	case errors.As(err, &declined):
		return paymentstore.Outcome{FailureReason: declined.Reason}, nil
	default:
		return paymentstore.Outcome{}, err
	}
}
