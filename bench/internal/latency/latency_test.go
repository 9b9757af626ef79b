package latency_test

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"example.com/rampart/bench/internal/latency"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// ascending returns the durations 1ms to n ms.
func ascending(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = ms(i + 1)
	}
	return out
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		sorted  []time.Duration
		percent int
		want    time.Duration
	}{
		{"no samples", nil, 50, 0},
		{"one sample", []time.Duration{ms(7)}, 99, ms(7)},
		{"median of 100", ascending(100), 50, ms(50)},
		{"p99 of 100", ascending(100), 99, ms(99)},
		{"p99 of 1000", ascending(1000), 99, ms(990)},
		{"p99 of 10 is the slowest", ascending(10), 99, ms(10)},
		{"median of 3", ascending(3), 50, ms(2)},
		{"p100", ascending(5), 100, ms(5)},
		{"p0 is the fastest", ascending(5), 0, ms(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := latency.Percentile(tt.sorted, tt.percent); got != tt.want {
				t.Errorf("Percentile(%d) = %v, want %v", tt.percent, got, tt.want)
			}
		})
	}
}

func TestSummarizeSortsACopy(t *testing.T) {
	t.Parallel()
	samples := ascending(200)
	//nolint:gosec // G404: shuffling test data needs no secret randomness
	rand.Shuffle(len(samples), func(i, j int) { samples[i], samples[j] = samples[j], samples[i] })
	before := append([]time.Duration(nil), samples...)

	got := latency.Summarize(samples, 2*time.Second)
	want := latency.Summary{Count: 200, P50: ms(100), P99: ms(198), PerSecond: 100}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, samples); diff != "" {
		t.Errorf("Summarize reordered its input (-before +after):\n%s", diff)
	}
}

func TestRecorderAddsRounds(t *testing.T) {
	t.Parallel()
	var r latency.Recorder
	if diff := cmp.Diff(latency.Summary{}, r.Summary()); diff != "" {
		t.Errorf("empty recorder (-want +got):\n%s", diff)
	}
	var wg sync.WaitGroup
	for round := range 4 {
		wg.Go(func() {
			samples := make([]time.Duration, 25)
			for i := range samples {
				samples[i] = ms(round*25 + i + 1)
			}
			r.Add(500*time.Millisecond, samples...)
		})
	}
	wg.Wait()
	want := latency.Summary{Count: 100, P50: ms(50), P99: ms(99), PerSecond: 50}
	if diff := cmp.Diff(want, r.Summary()); diff != "" {
		t.Errorf("four rounds of 25 calls in 500ms each (-want +got):\n%s", diff)
	}
}

func TestParts(t *testing.T) {
	t.Parallel()
	parts := latency.Parts(ascending(10), 4)
	var counts []int
	var medians []time.Duration
	for _, p := range parts {
		counts = append(counts, p.Count)
		medians = append(medians, p.P50)
	}
	if diff := cmp.Diff([]int{2, 3, 2, 3}, counts); diff != "" {
		t.Errorf("part sizes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]time.Duration{ms(1), ms(4), ms(6), ms(9)}, medians); diff != "" {
		t.Errorf("part medians (-want +got):\n%s", diff)
	}
	if got := latency.Parts(ascending(2), 4); len(got) != 2 {
		t.Errorf("%d parts of 2 samples, want 2", len(got))
	}
	if got := latency.Parts(nil, 4); len(got) != 0 {
		t.Errorf("%d parts of no samples, want none", len(got))
	}
}
