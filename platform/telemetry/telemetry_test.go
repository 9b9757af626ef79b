package telemetry_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"example.com/rampart/platform/telemetry"
)

func TestLogLinesCarryServiceAndTrace(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	recorder := tracetest.NewSpanRecorder()
	tel, err := telemetry.New(t.Context(), telemetry.Config{
		Service:        "order",
		LogOutput:      &out,
		SpanProcessors: []sdktrace.SpanProcessor{recorder},
		DisableOTLP:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(t.Context()) })

	ctx, span := tel.TracerProvider.Tracer("test").Start(t.Context(), "work")
	tel.Logger.InfoContext(ctx, "inside a span")
	span.End()
	tel.Logger.InfoContext(t.Context(), "outside")

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d log lines, want 2:\n%s", len(lines), out.String())
	}
	var inside, outside map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &inside); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &outside); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"service":  "order",
		"trace_id": span.SpanContext().TraceID().String(),
		"span_id":  span.SpanContext().SpanID().String(),
	}
	got := map[string]any{
		"service": inside["service"], "trace_id": inside["trace_id"], "span_id": inside["span_id"],
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log line in a span (-want +got):\n%s", diff)
	}
	if _, ok := outside["trace_id"]; ok {
		t.Errorf("log line outside any span has a trace_id: %s", lines[1])
	}
	if n := len(recorder.Ended()); n != 1 {
		t.Errorf("recorder saw %d spans, want 1", n)
	}
}

func TestMetricsHandlerServesPrometheusText(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.New(t.Context(), telemetry.Config{Service: "user", LogOutput: io.Discard, DisableOTLP: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(t.Context()) })
	counter, err := tel.MeterProvider.Meter("test").Int64Counter("logins")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(t.Context(), 3)

	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil)
	tel.MetricsHandler.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), "logins_total") {
		t.Errorf("metrics do not include the counter:\n%s", rec.Body.String())
	}
}
