// Package telemetry sets up what every workload reports about itself:
// structured JSON logs through log/slog, OpenTelemetry traces that follow a
// request across HTTP, gRPC and NATS, and metrics served in the Prometheus
// format on the admin port.
//
// Nothing here touches OpenTelemetry's global providers: each [Telemetry]
// is handed explicitly to the servers, clients and consumers that need it,
// so that several workloads can share one process in tests.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// Config says how a workload reports. The zero value logs JSON at info
// level to standard error and keeps traces in the process; set
// OTEL_EXPORTER_OTLP_ENDPOINT (the standard variable) to export them.
type Config struct {
	// Service is the workload's name, attached to every log line and span.
	Service string
	// LogLevel is the least severe level logged.
	LogLevel slog.Level
	// LogOutput receives the JSON log lines; nil means standard error.
	LogOutput io.Writer
	// SpanProcessors receive every finished span, in addition to the OTLP
	// exporter when one is configured. Tests pass a recorder here.
	SpanProcessors []sdktrace.SpanProcessor
	// DisableOTLP keeps traces in the process even when the OTLP
	// environment variables are set.
	DisableOTLP bool
}

// Telemetry is a workload's logger, tracer and meter providers, and the
// handler that serves its metrics.
type Telemetry struct {
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Propagator reads and writes W3C trace context and baggage in gRPC
	// metadata, HTTP headers and NATS headers.
	Propagator propagation.TextMapPropagator
	// MetricsHandler serves the metrics in the Prometheus text format.
	MetricsHandler http.Handler

	shutdown []func(context.Context) error
}

// New sets up telemetry for cfg.Service. Call Shutdown to flush spans.
func New(ctx context.Context, cfg Config) (*Telemetry, error) {
	res := resource.NewSchemaless(semconv.ServiceName(cfg.Service))

	traceOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, p := range cfg.SpanProcessors {
		traceOpts = append(traceOpts, sdktrace.WithSpanProcessor(p))
	}
	if !cfg.DisableOTLP && otlpConfigured() {
		exporter, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("creating the OTLP trace exporter: %w", err)
		}
		traceOpts = append(traceOpts, sdktrace.WithBatcher(exporter))
	}
	tp := sdktrace.NewTracerProvider(traceOpts...)

	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("creating the metrics exporter: %w", err), tp.Shutdown(ctx))
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(exporter))

	out := cfg.LogOutput
	if out == nil {
		out = os.Stderr
	}
	handler := slog.NewJSONHandler(out, &slog.HandlerOptions{Level: cfg.LogLevel})
	logger := slog.New(TraceHandler(handler)).With("service", cfg.Service)

	return &Telemetry{
		Logger:         logger,
		TracerProvider: tp,
		MeterProvider:  mp,
		Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		MetricsHandler: promhttp.HandlerFor(registry, promhttp.HandlerOpts{}),
		shutdown:       []func(context.Context) error{tp.Shutdown, mp.Shutdown},
	}, nil
}

// Shutdown flushes and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, fn := range t.shutdown {
		errs = append(errs, fn(ctx))
	}
	return errors.Join(errs...)
}

func otlpConfigured() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// TraceHandler returns a handler that adds the trace_id and span_id of the
// context's span to every record before h writes it, so that a log line
// can be found from a trace and back. Every logger of [New] has it.
func TraceHandler(h slog.Handler) slog.Handler { return traceHandler{h} }

type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()),
			slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
