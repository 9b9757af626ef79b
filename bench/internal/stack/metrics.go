package stack

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// handshakesMetric is grpcserver.HandshakesMetric as the Prometheus
// exporter names it.
const handshakesMetric = "rampart_grpc_server_handshakes_total"

// Handshakes returns how many TLS handshakes the order service has run
// since it started, whatever their outcome, from its metrics.
func (s *Stack) Handshakes(ctx context.Context) (int, error) {
	url := "http://" + s.Addr(s.Config().Ports.OrderAdmin) + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading the order service's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("reading the order service's metrics: %s", resp.Status)
	}
	return counter(resp.Body, handshakesMetric)
}

// counter sums the samples of the counter name, over every label set, in
// the Prometheus text format read from r. It fails if there is none: a
// counter that is not exported would read as zero handshakes.
func counter(r io.Reader, name string) (int, error) {
	total, found := 0.0, false
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		line := scanner.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(fields) == 0 {
			return 0, fmt.Errorf("metric line %q has no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		total += v
		found = true
	}
	if err := scanner.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("no %s in the metrics", name)
	}
	return int(total), nil
}
