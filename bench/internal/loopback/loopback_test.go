package loopback_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"example.com/rampart/bench/internal/loopback"
)

// TestRunMeasuresBothPaths runs a short measurement and checks that each
// path and concurrency got calls, and that the platform path really went
// through the platform's server: every call it made left a log line that
// names the gateway as the peer and the token's user as the subject.
func TestRunMeasuresBothPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	results, err := loopback.Run(t.Context(), loopback.Config{
		Dir:           dir,
		Concurrencies: []int{1, 4},
		Rounds:        2,
		RoundTime:     100 * time.Millisecond,
		Warmup:        20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}

	type key struct {
		Path        string
		Concurrency int
	}
	var got []key
	for _, r := range results {
		got = append(got, key{r.Path, r.Concurrency})
		if r.Count == 0 || r.P50 <= 0 || r.P99 < r.P50 || r.PerSecond <= 0 {
			t.Errorf("%s at %d: implausible summary %+v", r.Path, r.Concurrency, r.Summary)
		}
		roundCalls := 0
		for _, round := range r.Rounds {
			roundCalls += round.Count
		}
		if len(r.Rounds) != 2 || roundCalls != r.Count {
			t.Errorf("%s at %d: %d rounds of %d calls in all, want 2 rounds of the %d calls",
				r.Path, r.Concurrency, len(r.Rounds), roundCalls, r.Count)
		}
	}
	want := []key{
		{loopback.Bare, 1}, {loopback.Platform, 1}, {loopback.Bare, 4}, {loopback.Platform, 4},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}

	lines := logLines(t, filepath.Join(dir, "loopback-order.log"))
	platformCalls := 0
	for _, r := range results {
		if r.Path == loopback.Platform {
			platformCalls += r.Count
		}
	}
	served := 0
	for _, line := range lines {
		if line["method"] != "/order.v1.OrderService/GetOrder" {
			continue
		}
		if line["code"] != "OK" || line["peer_id"] != "spiffe://rampart.local/gateway" ||
			line["subject"] != "user-1" {
			t.Fatalf("a platform call was not served as the gateway's, for user-1: %v", line)
		}
		served++
	}
	// Warm-up calls are logged too, so there are more lines than measured
	// calls.
	if served < platformCalls {
		t.Errorf("%d calls logged by the platform server, want at least the %d measured",
			served, platformCalls)
	}
}

func logLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		var line map[string]any
		if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
			t.Fatalf("log line %q: %v", scanner.Text(), err)
		}
		out = append(out, line)
	}
	return out
}
