package stack

import (
	"strings"
	"testing"
)

func TestCounter(t *testing.T) {
	t.Parallel()
	const metrics = `# HELP rampart_grpc_server_handshakes_total TLS handshakes.
# TYPE rampart_grpc_server_handshakes_total counter
rampart_grpc_server_handshakes_total{outcome="failed",otel_scope_name="x"} 2
rampart_grpc_server_handshakes_total{outcome="ok",otel_scope_name="x"} 40
rampart_grpc_server_handshakes_total_other 1000
`
	got, err := counter(strings.NewReader(metrics), handshakesMetric)
	if err != nil {
		t.Fatal(err)
	}
	if got != 42 {
		t.Errorf("counter = %d, want 42", got)
	}
	// A counter that is not exported must not read as zero handshakes.
	if _, err := counter(strings.NewReader("other_total 3\n"), handshakesMetric); err == nil {
		t.Error("a missing counter was read")
	}
}

func TestVmRSS(t *testing.T) {
	t.Parallel()
	status := "Name:\tgateway\nVmPeak:\t  900 kB\nVmRSS:\t   35200 kB\nThreads:\t8\n"
	got, err := vmRSS(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if got != 35200*1024 {
		t.Errorf("vmRSS = %d, want %d", got, 35200*1024)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tlots kB\n"} {
		if _, err := vmRSS(strings.NewReader(bad)); err == nil {
			t.Errorf("vmRSS accepted %q", bad)
		}
	}
}
