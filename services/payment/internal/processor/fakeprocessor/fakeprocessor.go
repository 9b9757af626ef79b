// Package fakeprocessor is an in-memory payment processor for development
// and tests. It decides by the payment method token, as test cards do:
//
//   - tok_declined is declined: "card declined";
//   - tok_unavailable fails as unavailable on the first attempt of each
//     idempotency key, and succeeds on the next, to exercise retries;
//   - any other tok_* succeeds.
//
// Like a real processor it honours idempotency keys: the same key returns
// the first result and never charges twice. It counts the charges and
// refunds that moved money, so that tests can tell a charge from a replay.
// It keeps everything in memory, so a restart forgets every key.
package fakeprocessor

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"example.com/rampart/services/payment/internal/processor"
)

// Payment method tokens with a special outcome.
const (
	Declined    = "tok_declined"
	Unavailable = "tok_unavailable"
)

// DeclineReason is the reason given for a declined charge.
const DeclineReason = "card declined"

// Processor is the fake processor. Its zero value is not usable; call
// [New]. It is safe for concurrent use.
type Processor struct {
	mu       sync.Mutex
	charges  map[string]*charge // by idempotency key
	failed   map[string]bool    // keys that already failed once as unavailable
	charged  int
	refunded int
}

type charge struct {
	request  processor.Charge
	result   error
	refunded bool
}

var _ processor.Processor = (*Processor)(nil)

// New returns a processor that has charged nothing.
func New() *Processor {
	return &Processor{charges: map[string]*charge{}, failed: map[string]bool{}}
}

// Charge charges c, or returns the result of the first charge with its key.
// A repeat with the same key but another amount or payment method is
// refused, as a real processor refuses a reused key.
func (p *Processor) Charge(ctx context.Context, c processor.Charge) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", processor.ErrUnavailable, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, ok := p.charges[c.IdempotencyKey]; ok {
		if prev.request != c {
			return fmt.Errorf("fakeprocessor: idempotency key %s reused for another charge",
				c.IdempotencyKey)
		}
		return prev.result
	}

	var result error
	switch {
	case !strings.HasPrefix(c.PaymentMethod, "tok_"):
		result = &processor.DeclinedError{Reason: "unknown payment method"}
	case c.PaymentMethod == Declined:
		result = &processor.DeclinedError{Reason: DeclineReason}
	case c.PaymentMethod == Unavailable && !p.failed[c.IdempotencyKey]:
		// Not recorded under the key: the outcome of an unavailable
		// processor is unknown, and the retry decides it.
		p.failed[c.IdempotencyKey] = true
		return fmt.Errorf("%w: try again", processor.ErrUnavailable)
	default:
		p.charged++
	}
	p.charges[c.IdempotencyKey] = &charge{request: c, result: result}
	return result
}

// Refund refunds the successful charge made with key, once.
func (p *Processor) Refund(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", processor.ErrUnavailable, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.charges[key]
	if !ok || c.result != nil {
		return fmt.Errorf("fakeprocessor: no successful charge with key %s", key)
	}
	if !c.refunded {
		c.refunded = true
		p.refunded++
	}
	return nil
}

// Charges returns how many charges took money; replays do not count.
func (p *Processor) Charges() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.charged
}

// Refunds returns how many refunds returned money; replays do not count.
func (p *Processor) Refunds() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refunded
}
