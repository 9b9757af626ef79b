// Package processor is the payment service's view of a payment processor:
// the one interface through which money moves, so that a real processor
// can replace the fake one without touching the rest of the service.
package processor

import (
	"context"
	"errors"
)

// ErrUnavailable reports a failure that may pass: the processor could not
// be reached or did not answer. The same request, with the same
// idempotency key, may be made again.
var ErrUnavailable = errors.New("processor: unavailable")

// DeclinedError reports a charge the processor refused. Charging again
// with the same key returns the same refusal.
type DeclinedError struct {
	// Reason is the processor's explanation, for people.
	Reason string
}

func (e *DeclinedError) Error() string { return "processor: declined: " + e.Reason }

// Charge asks for an amount to be taken with a payment method.
type Charge struct {
	// IdempotencyKey identifies the charge: a processor charges one key at
	// most once and answers a repeat with the first result.
	IdempotencyKey string
	// PaymentMethod is the processor's token for the card, "tok_visa".
	PaymentMethod string
	// Amount is in minor units of Currency.
	Amount   int64
	Currency string
}

// Processor takes and returns money.
type Processor interface {
	// Charge takes the charge's amount. It returns nil once the money is
	// taken, a *DeclinedError if the processor refused, and an error
	// wrapping ErrUnavailable if the outcome is unknown and the charge may
	// be made again with the same key.
	Charge(ctx context.Context, c Charge) error
	// Refund returns, in full, the money taken by the successful charge
	// made with key. Refunding twice returns the money once. It returns an
	// error wrapping ErrUnavailable if it may be tried again.
	Refund(ctx context.Context, key string) error
}
