package stack

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"example.com/rampart/bench/internal/latency"
)

// EventPath places orders as u, concurrency at a time, n in all or as
// many as fit in d, and measures for each the time from CreateOrder
// returning to the order being paid: the order service's outbox relays
// OrderCreated to JetStream, the payment service charges and publishes
// PaymentSucceeded, and the order service marks the order paid. The time is
// as a client sees it, through a WatchOrder stream opened as soon as
// CreateOrder returns, so it includes the opening of that stream.
//
// Besides the summary of every order, it returns the summaries of four
// consecutive quarters of them, as four samples for benchstat.
func (s *Stack) EventPath(ctx context.Context, u *User, n, concurrency int, d time.Duration) (
	latency.Summary, []latency.Summary, error,
) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		samples  []time.Duration
		firstErr error
		placed   atomic.Int64
	)
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for placed.Add(1) <= int64(n) && ctx.Err() == nil {
				took, err := orderToPaid(ctx, u)
				mu.Lock()
				if err != nil {
					if firstErr == nil && ctx.Err() == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				samples = append(samples, took)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	summary := latency.Summarize(samples, time.Since(start))
	if firstErr != nil {
		return summary, nil, firstErr
	}
	if len(samples) == 0 {
		return summary, nil, fmt.Errorf("no order paid within %v", d)
	}
	return summary, latency.Parts(samples, 4), nil
}

func orderToPaid(ctx context.Context, u *User) (time.Duration, error) {
	orderID, err := u.Order(ctx)
	if err != nil {
		return 0, err
	}
	created := time.Now()
	if err := u.WaitPaid(ctx, orderID); err != nil {
		return 0, err
	}
	return time.Since(created), nil
}
