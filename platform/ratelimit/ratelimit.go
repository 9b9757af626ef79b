// Package ratelimit keeps a token bucket per principal (an end user, a
// client address, a workload) so that one caller's flood cannot starve the
// others.
//
// A [Limiter] holds at most [Config.MaxKeys] buckets. Buckets that have sat
// idle long enough to refill are dropped first; when every bucket is busy,
// an arbitrary one is dropped, which hands its owner a fresh burst rather
// than letting a crowd of new keys lock everybody out.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Config sets the rate every key is allowed. The zero value allows 10
// requests a second with bursts of 20, for up to 100 000 keys.
type Config struct {
	// Rate is the sustained number of tokens a key earns per second.
	Rate float64
	// Burst is the most tokens a key can hold, and so the largest cost one
	// call may have.
	Burst int
	// MaxKeys caps how many buckets the limiter keeps in memory.
	MaxKeys int
}

func (c Config) withDefaults() Config {
	if c.Rate <= 0 {
		c.Rate = 10
	}
	if c.Burst <= 0 {
		c.Burst = 20
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = 100_000
	}
	return c
}

// Limiter decides whether a key may spend tokens now. It is safe for
// concurrent use.
type Limiter struct {
	cfg  Config
	now  func() time.Time
	idle time.Duration // how long an unused bucket takes to refill

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	limiter  *rate.Limiter
	lastUsed time.Time
}

// New returns a Limiter that allows cfg's rate to every key.
func New(cfg Config) *Limiter {
	cfg = cfg.withDefaults()
	return &Limiter{
		cfg:     cfg,
		now:     time.Now,
		idle:    time.Duration(float64(cfg.Burst) / cfg.Rate * float64(time.Second)),
		buckets: make(map[string]*bucket),
	}
}

// Allow takes cost tokens from key's bucket. When the bucket holds too few,
// it takes nothing and returns false with how long the caller should wait
// before the same call could succeed. A cost above the burst can never be
// paid and is refused with a wait of one refill of the whole bucket.
func (l *Limiter) Allow(key string, cost int) (ok bool, retryAfter time.Duration) {
	cost = max(cost, 1)
	now := l.now()

	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketLocked(key, now)
	b.lastUsed = now
	if cost > l.cfg.Burst {
		return false, l.idle
	}
	r := b.limiter.ReserveN(now, cost)
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now)
		return false, delay
	}
	return true, 0
}

func (l *Limiter) bucketLocked(key string, now time.Time) *bucket {
	if b, ok := l.buckets[key]; ok {
		return b
	}
	if len(l.buckets) >= l.cfg.MaxKeys {
		l.evictLocked(now)
	}
	b := &bucket{limiter: rate.NewLimiter(rate.Limit(l.cfg.Rate), l.cfg.Burst)}
	l.buckets[key] = b
	return b
}

// evictLocked drops every bucket idle long enough to be full again, since
// forgetting it changes nothing; if none is, it drops one at random.
func (l *Limiter) evictLocked(now time.Time) {
	for key, b := range l.buckets {
		if now.Sub(b.lastUsed) >= l.idle {
			delete(l.buckets, key)
		}
	}
	if len(l.buckets) < l.cfg.MaxKeys {
		return
	}
	for key := range l.buckets {
		delete(l.buckets, key)
		return
	}
}

// Len returns how many buckets the limiter holds.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
