package e2e

import (
	"context"
	"encoding/hex"
	"net"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// spanCollector is an OTLP/gRPC trace receiver: the workloads export their
// spans to it, and tests look a trace up by id.
type spanCollector struct {
	collectortrace.UnimplementedTraceServiceServer

	mu    sync.Mutex
	spans []collectedSpan
	addr  string
}

// collectedSpan is one span with the service that reported it.
type collectedSpan struct {
	Service string
	Name    string
	TraceID string
	Kind    tracev1.Span_SpanKind
}

// startCollector serves OTLP on a free port of listenHost until the test
// ends.
func startCollector(tb testing.TB, listenHost string) *spanCollector {
	tb.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(listenHost, "0"))
	if err != nil {
		tb.Fatal(err)
	}
	c := &spanCollector{addr: ln.Addr().String()}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(srv.Stop)
	return c
}

// Export implements the OTLP trace service.
func (c *spanCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, attr := range rs.GetResource().GetAttributes() {
			if attr.GetKey() == "service.name" {
				service = attr.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, span := range ss.GetSpans() {
				c.spans = append(c.spans, collectedSpan{
					Service: service,
					Name:    span.GetName(),
					TraceID: hex.EncodeToString(span.GetTraceId()),
					Kind:    span.GetKind(),
				})
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// trace returns the spans collected so far for traceID.
func (c *spanCollector) trace(traceID string) []collectedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []collectedSpan
	for _, s := range c.spans {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	return out
}
