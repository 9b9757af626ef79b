// Package latency turns the durations of many calls into what a reader of
// a benchmark wants to know: how many calls, how fast the middle one and
// the slow ones were, and how many calls a second went through.
package latency

import (
	"slices"
	"sync"
	"time"
)

// Summary describes a run of calls.
type Summary struct {
	// Count is the number of calls measured.
	Count int
	// P50 and P99 are the 50th and 99th percentiles of their durations.
	P50, P99 time.Duration
	// PerSecond is Count divided by the wall time the calls took, zero
	// when that time is unknown.
	PerSecond float64
}

// Recorder collects call durations from many goroutines. Its zero value is
// ready to use.
type Recorder struct {
	mu      sync.Mutex
	samples []time.Duration
	elapsed time.Duration
}

// Add records the durations of calls made in one stretch of wall time,
// elapsed. Stretches add up: a run made of rounds reports the calls of
// every round over the time of every round.
func (r *Recorder) Add(elapsed time.Duration, samples ...time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, samples...)
	r.elapsed += elapsed
}

// Summary returns the summary of everything recorded so far.
func (r *Recorder) Summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Summarize(r.samples, r.elapsed)
}

// Summarize returns the summary of samples, calls made in elapsed wall
// time. It does not change samples.
func Summarize(samples []time.Duration, elapsed time.Duration) Summary {
	s := Summary{Count: len(samples)}
	if len(samples) == 0 {
		return s
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	s.P50 = Percentile(sorted, 50)
	s.P99 = Percentile(sorted, 99)
	if elapsed > 0 {
		s.PerSecond = float64(len(samples)) / elapsed.Seconds()
	}
	return s
}

// Percentile returns the given percentile of sorted, which must be in
// ascending order, by the nearest-rank method: the smallest sample that at
// least percent of the samples do not exceed. It returns zero for no
// samples.
func Percentile(sorted []time.Duration, percent int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (percent*len(sorted) + 99) / 100 // the ceiling, in integers
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Parts splits samples, in the order taken, into n consecutive parts of
// near equal size and summarizes each without a rate: n samples of one
// measure, for a comparison that needs several. It returns fewer parts
// when there are fewer samples than n.
func Parts(samples []time.Duration, n int) []Summary {
	n = min(n, len(samples))
	parts := make([]Summary, 0, n)
	for i := range n {
		lo, hi := i*len(samples)/n, (i+1)*len(samples)/n
		parts = append(parts, Summarize(samples[lo:hi], 0))
	}
	return parts
}
