package grpcserver_test

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	orderv1 "example.com/rampart/proto/order/v1"
)

// TestHandshakesAreCounted makes calls over one connection and one
// connection that never completes a handshake: the server's metrics must
// count one handshake of each outcome, however many calls were made.
func TestHandshakesAreCounted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	client := f.client(t, "gateway")
	for range 5 {
		ctx := f.token(t, f.minter, userToken("user-1", orderA, "orders:read"))
		if _, err := client.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: orderA}); err != nil {
			t.Fatal(err)
		}
	}

	// A client that speaks no TLS at all.
	conn, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(t.Context(), "tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: order\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = conn.Read(make([]byte, 64))
	conn.Close()

	want := map[string]float64{`outcome="ok"`: 1, `outcome="failed"`: 1}
	deadline := time.Now().Add(2 * time.Second)
	var got map[string]float64
	for time.Now().Before(deadline) {
		if got = handshakes(t, f.metrics); cmp.Equal(want, got) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("handshakes by outcome (-want +got):\n%s", diff)
	}

	// The refused handshake is an audit event on the JSON log.
	refused := 0
	for _, line := range f.logs.Lines(t) {
		if line["msg"] == "TLS handshake refused" {
			refused++
			if line["audit"] != "denied" || line["level"] != "WARN" || line["peer_addr"] == nil {
				t.Errorf("refused handshake logged as %v", line)
			}
		}
	}
	if refused != 1 {
		t.Errorf("%d refused handshakes logged, want 1", refused)
	}
}

// handshakes reads the handshake counter from the Prometheus text that
// metrics serves, by its labels.
func handshakes(t *testing.T, metrics http.Handler) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	metrics.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil))
	out := map[string]float64{}
	scanner := bufio.NewScanner(rec.Body)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, "rampart_grpc_server_handshakes_total{") {
			continue
		}
		labels, value, _ := strings.Cut(line[strings.Index(line, "{")+1:], "} ")
		n, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		for label := range strings.SplitSeq(labels, ",") {
			if strings.HasPrefix(label, "outcome=") {
				out[label] += n
			}
		}
	}
	return out
}
