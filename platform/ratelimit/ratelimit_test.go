package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeClock returns a limiter whose time only moves when the test says so.
func fakeClock(cfg Config) (*Limiter, func(time.Duration)) {
	l := New(cfg)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	return l, func(d time.Duration) { now = now.Add(d) }
}

func TestAllowSpendsTheBurstThenRefuses(t *testing.T) {
	t.Parallel()
	l, advance := fakeClock(Config{Rate: 2, Burst: 4})
	for i := range 4 {
		if ok, _ := l.Allow("alice", 1); !ok {
			t.Fatalf("call %d within the burst refused", i+1)
		}
	}
	ok, retry := l.Allow("alice", 1)
	if ok {
		t.Fatal("call beyond the burst allowed")
	}
	if retry != 500*time.Millisecond {
		t.Errorf("retry after %v, want 500ms (one token at 2/s)", retry)
	}
	advance(retry)
	if ok, _ := l.Allow("alice", 1); !ok {
		t.Error("call after waiting the advised time refused")
	}
}

func TestKeysAreIndependent(t *testing.T) {
	t.Parallel()
	l, _ := fakeClock(Config{Rate: 1, Burst: 2})
	for range 10 {
		l.Allow("mallory", 1)
	}
	if ok, _ := l.Allow("alice", 1); !ok {
		t.Error("alice refused because mallory flooded")
	}
}

func TestCost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		costs  []int
		wantOK []bool
	}{
		{"zero counts as one", []int{0, 0, 0, 0, 0}, []bool{true, true, true, true, false}},
		{"costly calls", []int{2, 2, 1}, []bool{true, true, false}},
		{"refused call takes nothing", []int{3, 5, 1}, []bool{true, false, true}},
		{"above burst never passes", []int{5}, []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, _ := fakeClock(Config{Rate: 1, Burst: 4})
			for i, cost := range tt.costs {
				if ok, _ := l.Allow("k", cost); ok != tt.wantOK[i] {
					t.Errorf("call %d (cost %d): ok = %v, want %v", i+1, cost, ok, tt.wantOK[i])
				}
			}
		})
	}
}

func TestMaxKeysBoundsMemory(t *testing.T) {
	t.Parallel()
	l, advance := fakeClock(Config{Rate: 1, Burst: 1, MaxKeys: 100})
	for i := range 1000 {
		l.Allow(fmt.Sprint("ip-", i), 1)
	}
	if n := l.Len(); n > 100 {
		t.Fatalf("limiter holds %d buckets, cap is 100", n)
	}
	advance(time.Second)
	l.Allow("late", 1)
	if n := l.Len(); n != 1 {
		t.Errorf("after every bucket refilled, a new key left %d buckets, want 1", n)
	}
}

func TestConcurrentCallersNeverOverspend(t *testing.T) {
	t.Parallel()
	l, _ := fakeClock(Config{Rate: 1, Burst: 50})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if ok, _ := l.Allow("shared", 1); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if allowed != 50 {
		t.Errorf("%d calls allowed from a burst of 50 with the clock stopped", allowed)
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(Config{Rate: 1e9, Burst: 1e9})
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprint("user-", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Allow(keys[i%len(keys)], 1)
		i++
	}
}
