// Package telemetrytest captures the JSON log lines that a test's logger
// writes, so that the test can read them back.
package telemetrytest

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
)

// Logs is the output of a JSON log handler that many goroutines may write
// to at once. Its zero value is ready to use.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Lines returns every line written so far, decoded. A line that is not a
// JSON object fails the test, and so does one that names a key twice,
// which decoding into a map would hide.
func (l *Logs) Lines(tb testing.TB) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for line := range bytes.Lines([]byte(l.String())) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			tb.Fatalf("log line %q: %v", line, err)
		}
		checkUniqueKeys(tb, line)
		out = append(out, m)
	}
	return out
}

// Count returns how many lines hold every attribute of want.
func (l *Logs) Count(tb testing.TB, want map[string]string) int {
	tb.Helper()
	n := 0
	for _, line := range l.Lines(tb) {
		match := true
		for k, v := range want {
			if line[k] != v {
				match = false
			}
		}
		if match {
			n++
		}
	}
	return n
}

// checkUniqueKeys fails the test if the JSON object line names a key
// twice at its top level.
func checkUniqueKeys(tb testing.TB, line []byte) {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil { // the opening brace
		tb.Fatalf("log line %q: %v", line, err)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			tb.Fatalf("log line %q: %v", line, err)
		}
		key, _ := tok.(string)
		if seen[key] {
			tb.Errorf("log line names %q twice: %s", key, line)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			tb.Fatalf("log line %q: %v", line, err)
		}
	}
}
