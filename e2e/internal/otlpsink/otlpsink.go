// Package otlpsink is an OTLP/gRPC trace receiver that keeps every span it
// is sent, so that the end-to-end tests can look a trace up by its id. It
// runs inside the test process for the process stack, and in a container
// of the suite's network for the container stack, where [Sink.Handler]
// serves the spans to the test over HTTP.
package otlpsink

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
)

// MaxSpans bounds what a sink keeps; later spans are dropped, since a test
// run that sends more has gone wrong anyway.
const MaxSpans = 200_000

// Span is one received span, with the service that reported it.
type Span struct {
	Service string `json:"service"`
	Name    string `json:"name"`
	// Kind is "server", "client", "producer", "consumer" or "internal".
	Kind    string `json:"kind"`
	TraceID string `json:"trace_id"`
	// Attributes holds the span's attributes of string, integer and
	// boolean values, as text.
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Sink receives spans. It is safe for concurrent use.
type Sink struct {
	collectortrace.UnimplementedTraceServiceServer

	mu    sync.Mutex
	spans []Span
}

// New returns an empty sink.
func New() *Sink { return &Sink{} }

// Register serves the OTLP trace service on srv.
func (s *Sink) Register(srv *grpc.Server) {
	collectortrace.RegisterTraceServiceServer(srv, s)
}

// Export implements the OTLP trace service.
func (s *Sink) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (
	*collectortrace.ExportTraceServiceResponse, error) {
	var received []Span
	for _, rs := range req.GetResourceSpans() {
		service := attributes(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, span := range ss.GetSpans() {
				kind := strings.ToLower(strings.TrimPrefix(span.GetKind().String(), "SPAN_KIND_"))
				received = append(received, Span{
					Service:    service,
					Name:       span.GetName(),
					Kind:       kind,
					TraceID:    hex.EncodeToString(span.GetTraceId()),
					Attributes: attributes(span.GetAttributes()),
				})
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	room := max(0, MaxSpans-len(s.spans))
	s.spans = append(s.spans, received[:min(room, len(received))]...)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// Trace returns the spans received so far for traceID, in the order they
// arrived.
func (s *Sink) Trace(traceID string) []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Span
	for _, span := range s.spans {
		if span.TraceID == traceID {
			out = append(out, span)
		}
	}
	return out
}

// Handler serves GET /traces/{id}, the spans of one trace as a JSON array,
// and GET /healthz.
func (s *Sink) Handler() http.Handler {
	mux := http.NewServeMux()
	// A failed write means the reader went away: there is no one left to
	// tell, so both handlers drop the error.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /traces/{id}", func(w http.ResponseWriter, r *http.Request) {
		spans := s.Trace(r.PathValue("id"))
		if spans == nil {
			spans = []Span{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(spans)
	})
	return mux
}

// attributes returns the attributes of string, integer and boolean
// values as text, or nil when there are none.
func attributes(kvs []*commonv1.KeyValue) map[string]string {
	var out map[string]string
	for _, kv := range kvs {
		var text string
		switch v := kv.GetValue().GetValue().(type) {
		case *commonv1.AnyValue_StringValue:
			text = v.StringValue
		case *commonv1.AnyValue_IntValue:
			text = strconv.FormatInt(v.IntValue, 10)
		case *commonv1.AnyValue_BoolValue:
			text = strconv.FormatBool(v.BoolValue)
		default:
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[kv.GetKey()] = text
	}
	return out
}
