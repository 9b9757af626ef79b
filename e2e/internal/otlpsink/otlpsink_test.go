package otlpsink_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	resourcev1 "go.opentelemetry.io/proto/otlp/resource/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"

	"example.com/rampart/e2e/internal/otlpsink"
)

func str(key, value string) *commonv1.KeyValue {
	return &commonv1.KeyValue{Key: key, Value: &commonv1.AnyValue{
		Value: &commonv1.AnyValue_StringValue{StringValue: value}}}
}

// export sends the sink two services' spans, two of them in one trace.
func export(t *testing.T, sink *otlpsink.Sink) {
	t.Helper()
	traceA, traceB := make([]byte, 16), make([]byte, 16)
	traceA[15], traceB[15] = 0xa, 0xb
	resource := func(service string, spans ...*tracev1.Span) *tracev1.ResourceSpans {
		return &tracev1.ResourceSpans{
			Resource:   &resourcev1.Resource{Attributes: []*commonv1.KeyValue{str("service.name", service)}},
			ScopeSpans: []*tracev1.ScopeSpans{{Spans: spans}},
		}
	}
	req := &collectortrace.ExportTraceServiceRequest{ResourceSpans: []*tracev1.ResourceSpans{
		resource("order",
			&tracev1.Span{TraceId: traceA, Name: "send orders.created", Kind: tracev1.Span_SPAN_KIND_PRODUCER,
				Attributes: []*commonv1.KeyValue{
					str("messaging.message.id", "m-1"),
					{Key: "attempts", Value: &commonv1.AnyValue{Value: &commonv1.AnyValue_IntValue{IntValue: 2}}},
					{Key: "duplicate", Value: &commonv1.AnyValue{
						Value: &commonv1.AnyValue_BoolValue{BoolValue: true}}},
				}},
			&tracev1.Span{TraceId: traceB, Name: "other", Kind: tracev1.Span_SPAN_KIND_INTERNAL}),
		resource("payment",
			&tracev1.Span{TraceId: traceA, Name: "process orders.created",
				Kind: tracev1.Span_SPAN_KIND_CONSUMER}),
	}}
	if _, err := sink.Export(t.Context(), req); err != nil {
		t.Fatal(err)
	}
}

var wantTraceA = []otlpsink.Span{
	{Service: "order", Name: "send orders.created", Kind: "producer",
		TraceID:    "0000000000000000000000000000000a",
		Attributes: map[string]string{"messaging.message.id": "m-1", "attempts": "2", "duplicate": "true"}},
	{Service: "payment", Name: "process orders.created", Kind: "consumer",
		TraceID: "0000000000000000000000000000000a"},
}

func TestTrace(t *testing.T) {
	t.Parallel()
	sink := otlpsink.New()
	export(t, sink)
	if diff := cmp.Diff(wantTraceA, sink.Trace("0000000000000000000000000000000a")); diff != "" {
		t.Errorf("Trace (-want +got):\n%s", diff)
	}
	if got := sink.Trace("0000000000000000000000000000000c"); got != nil {
		t.Errorf("Trace of an unknown id = %v, want none", got)
	}
}

func TestHandler(t *testing.T) {
	t.Parallel()
	sink := otlpsink.New()
	export(t, sink)
	srv := httptest.NewServer(sink.Handler())
	defer srv.Close()

	for _, tc := range []struct {
		id   string
		want []otlpsink.Span
	}{
		{"0000000000000000000000000000000a", wantTraceA},
		{"0000000000000000000000000000000c", []otlpsink.Span{}},
	} {
		url := srv.URL + "/traces/" + tc.id
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got []otlpsink.Span
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /traces/%s: %s, %v", tc.id, resp.Status, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("GET /traces/%s (-want +got):\n%s", tc.id, diff)
		}
	}
}
