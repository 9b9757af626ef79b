package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"example.com/rampart/platform/events"
)

// tracerName is the instrumentation scope of the spans the relay starts.
const tracerName = "example.com/rampart/platform/outbox"

// RelayConfig configures a [Relay]. DB and JetStream are required; the
// other fields have working defaults.
type RelayConfig struct {
	// DB is the service's database, migrated with [Migrations].
	DB *sql.DB
	// JetStream is the connection to publish through.
	JetStream jetstream.JetStream
	// Logger receives a line per failed publish; nil discards them.
	Logger *slog.Logger
	// TracerProvider starts a producer span per publish; nil starts none.
	TracerProvider trace.TracerProvider

	// PollInterval is how often the outbox is read when no commit called
	// [Relay.Notify]: it picks up rows left by a crash. Default 250ms.
	PollInterval time.Duration
	// BatchSize is how many rows are read at a time. Default 100.
	BatchSize int
	// PublishTimeout bounds the wait for JetStream's acknowledgement.
	// Default 5s.
	PublishTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed publish,
	// which doubles with each failure in a row. Default 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
}

// Relay publishes the rows of the outbox table to JetStream.
type Relay struct {
	cfg        RelayConfig
	log        *slog.Logger
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	wake       chan struct{}
	running    atomic.Bool
}

// row is one stored event.
type row struct {
	id       string
	subject  string
	payload  []byte
	headers  string
	attempts int
}

// NewRelay returns a relay, or an error if cfg lacks DB or JetStream.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.DB == nil || cfg.JetStream == nil {
		return nil, errors.New("outbox: relay needs DB and JetStream")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = noop.NewTracerProvider()
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 250 * time.Millisecond
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(10*time.Second, cfg.MinBackoff)
	}
	return &Relay{
		cfg:        cfg,
		log:        cfg.Logger,
		tracer:     cfg.TracerProvider.Tracer(tracerName),
		propagator: propagation.TraceContext{},
		wake:       make(chan struct{}, 1),
	}, nil
}

// Notify wakes the relay to publish what a transaction just committed,
// rather than at its next poll. It never blocks; call it after every
// commit that enqueued an event.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// Run publishes the outbox until ctx is done, then returns nil. Rows go
// out oldest first, each with its id as Nats-Msg-Id, and a row is deleted
// only once JetStream acknowledged it. A row that fails is kept, its
// attempts counted, and retried, ahead of the rows behind it, after a
// backoff; no row is ever dropped. Run returns an error at once if the
// outbox table cannot be read, or if the relay is running already.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("outbox: relay is running already")
	}
	defer r.running.Store(false)
	if _, err := r.cfg.DB.ExecContext(ctx, "SELECT 1 FROM outbox LIMIT 0"); err != nil {
		return fmt.Errorf("reading outbox: %w", err)
	}

	failures := 0
	for {
		wait, wake := r.cfg.PollInterval, r.wake
		if err := r.drain(ctx); err != nil && ctx.Err() == nil {
			failures++
			wait = r.backoff(failures)
			wake = nil // commits must not cut a backoff short
			r.log.WarnContext(ctx, "relaying outbox", "error", err.Error(),
				"failures", failures, "retry_in_ms", wait.Milliseconds())
		} else {
			failures = 0
		}

		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// drain publishes rows until the outbox is empty or a row fails.
func (r *Relay) drain(ctx context.Context) error {
	for {
		rows, err := r.pending(ctx)
		if err != nil {
			return err
		}
		for _, row := range rows {
			if err := r.publish(ctx, row); err != nil {
				r.countAttempt(ctx, row)
				return fmt.Errorf("publishing outbox row %s to %s: %w", row.id, row.subject, err)
			}
			// Were the process to stop here, the row would be published
			// again on restart, and JetStream would drop it as a duplicate.
			_, err := r.cfg.DB.ExecContext(ctx, "DELETE FROM outbox WHERE id = ?", row.id)
			if err != nil {
				return fmt.Errorf("deleting published outbox row %s: %w", row.id, err)
			}
		}
		if len(rows) < r.cfg.BatchSize {
			return nil
		}
	}
}

// pending reads the oldest rows. Writers are serialized by the write
// lock, so rowid order is commit order.
func (r *Relay) pending(ctx context.Context) ([]row, error) {
	rs, err := r.cfg.DB.QueryContext(ctx,
		"SELECT id, subject, payload, headers, attempts FROM outbox ORDER BY rowid LIMIT ?",
		r.cfg.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("reading outbox: %w", err)
	}
	defer rs.Close()
	var rows []row
	for rs.Next() {
		var x row
		if err := rs.Scan(&x.id, &x.subject, &x.payload, &x.headers, &x.attempts); err != nil {
			return nil, fmt.Errorf("reading outbox: %w", err)
		}
		rows = append(rows, x)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("reading outbox: %w", err)
	}
	return rows, nil
}

// publish sends one row in a producer span that continues the trace the
// row was written in, and waits for JetStream's acknowledgement.
func (r *Relay) publish(ctx context.Context, x row) error {
	headers := nats.Header{}
	if err := json.Unmarshal([]byte(x.headers), &headers); err != nil {
		return fmt.Errorf("decoding headers: %w", err)
	}
	ctx = r.propagator.Extract(ctx, events.HeaderCarrier(headers))
	ctx, span := r.tracer.Start(ctx, "send "+x.subject,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingDestinationName(x.subject),
			semconv.MessagingMessageID(x.id),
			attribute.Int("rampart.outbox.attempts", x.attempts),
		))
	defer span.End()
	// The consumer's span becomes a child of this one.
	r.propagator.Inject(ctx, events.HeaderCarrier(headers))

	ctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	msg := &nats.Msg{Subject: x.subject, Data: x.payload, Header: headers}
	ack, err := r.cfg.JetStream.PublishMsg(ctx, msg, jetstream.WithMsgID(x.id))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "publish failed")
		return err
	}
	span.SetAttributes(attribute.Bool("rampart.outbox.duplicate", ack.Duplicate))
	return nil
}

// countAttempt records a failed publish. Failing to record it loses only
// the count, so the error is logged and not returned.
func (r *Relay) countAttempt(ctx context.Context, x row) {
	_, err := r.cfg.DB.ExecContext(ctx,
		"UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", x.id)
	if err != nil && ctx.Err() == nil {
		r.log.WarnContext(ctx, "counting outbox attempt", "id", x.id, "error", err.Error())
	}
}

// backoff is the wait after failures failed rounds in a row: doubling from
// MinBackoff up to MaxBackoff, with jitter so that relays do not retry in
// step.
func (r *Relay) backoff(failures int) time.Duration {
	d := r.cfg.MinBackoff
	for i := 1; i < failures && d < r.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1) //nolint:gosec // G404: jitter spreads retries; it needs no secrecy
}
