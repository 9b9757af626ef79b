package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"example.com/rampart/platform/jwks"
	"example.com/rampart/platform/txntoken"
)

// Outcomes of a message, as logged under "outcome".
const (
	outcomeOK       = "ok"       // handled and acknowledged
	outcomeRejected = "rejected" // refused by a check, terminated, audited
	outcomeRetry    = "retry"    // the handler failed; delivered again later
	outcomeFailed   = "failed"   // the handler failed for good; terminated
)

// Reasons a message is rejected or given up, as logged under "reason".
const (
	reasonPolicy     = "policy"
	reasonToken      = "token"
	reasonInvalid    = "invalid"
	reasonPermanent  = "permanent"
	reasonMaxDeliver = "max_deliver"
	reasonPanic      = "panic"
	// reasonKeysUnavailable: the token could not be checked yet.
	reasonKeysUnavailable = "keys_unavailable"
)

// result is what became of one message.
type result struct {
	outcome string
	reason  string
	err     error
	delay   time.Duration // before the next delivery, for outcomeRetry
	stack   []byte        // where a handler panicked
}

func rejected(reason string, err error) result {
	return result{outcome: outcomeRejected, reason: reason, err: err}
}

// permanentError marks a handler error that delivering again cannot cure.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps a handler's err to say that the event can never be
// handled, so that it is terminated instead of delivered again: for
// example, an event about an order that does not exist. Permanent(nil) is
// nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked by
// [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// handle takes one message through the platform's checks to its handler,
// settles it, and logs it once. The span comes first so that the log line
// carries its ids; the checks then run cheapest and least trusting first:
// policy needs only the subject and headers, the token costs a signature
// check, and only a message that passed both is decoded and validated.
func (c *Consumer) handle(ctx context.Context, msg jetstream.Msg) {
	start := time.Now()
	ctx, span := c.startSpan(ctx, msg, semconv.MessagingConsumerGroupName(c.cfg.Workload))
	defer span.End()

	res := c.process(ctx, msg)
	settleErr := c.settle(msg, res)

	endSpan(span, res)
	c.logResult(ctx, msg, res, settleErr, time.Since(start))
}

// startSpan starts the span of processing msg, in the trace its headers
// carry, with attrs besides the messaging ones every message has. The
// caller ends the span.
//
//nolint:spancheck // the span goes to the caller, which ends it
func (c *Consumer) startSpan(ctx context.Context, msg jetstream.Msg, attrs ...attribute.KeyValue) (
	context.Context, trace.Span,
) {
	headers := msg.Headers()
	ctx = c.propagator.Extract(ctx, HeaderCarrier(headers))
	ctx, span := c.tracer.Start(ctx, "process "+msg.Subject(),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(msg.Subject()),
			semconv.MessagingMessageID(headers.Get(jetstream.MsgIDHeader)),
		),
		trace.WithAttributes(attrs...))
	return ctx, span
}

// endSpan records what became of the message on its span.
func endSpan(span trace.Span, res result) {
	if res.err != nil {
		span.RecordError(res.err)
		span.SetStatus(codes.Error, res.outcome)
	}
	span.SetAttributes(attribute.String("rampart.outcome", res.outcome))
}

// process runs the checks and the handler, turning a panic into a result.
func (c *Consumer) process(ctx context.Context, msg jetstream.Msg) (res result) {
	defer func() {
		if p := recover(); p != nil {
			res = c.failure(msg, fmt.Errorf("panicked: %v", p))
			res.stack = debug.Stack()
			if res.reason == "" {
				res.reason = reasonPanic
			}
		}
	}()

	r, err := c.authorize(msg)
	if err != nil {
		return rejected(reasonPolicy, err)
	}
	raw := msg.Headers().Get(txntoken.HeaderKey)
	if raw == "" {
		return rejected(reasonToken, errors.New("no transaction token"))
	}
	enqueued, err := enqueuedAt(msg)
	if err != nil {
		return rejected(reasonToken, err)
	}
	tok, err := c.cfg.Tokens.VerifyAt(ctx, raw, enqueued)
	if errors.Is(err, jwks.ErrUnavailable) {
		// The gateway's keys cannot be fetched now, so nobody knows
		// whether the token is good: deliver it again later rather than
		// lose an event that may well be.
		res := c.failure(msg, fmt.Errorf("verifying transaction token: %w", err))
		if res.reason == "" {
			res.reason = reasonKeysUnavailable
		}
		return res
	}
	if err != nil {
		return rejected(reasonToken, fmt.Errorf("verifying transaction token: %w", err))
	}
	event, err := c.decode(r, msg)
	if err != nil {
		return rejected(reasonInvalid, err)
	}

	ctx, cancel := context.WithTimeout(txntoken.NewContext(ctx, tok), c.cfg.AckWait)
	defer cancel()
	if err := r.handle(ctx, event); err != nil {
		return c.failure(msg, err)
	}
	return result{outcome: outcomeOK}
}

// authorize finds the route of the message's subject. The subject must be
// an event that this workload may consume, and the event header must name
// that event, so that a message cannot pass for an event it is not.
func (c *Consumer) authorize(msg jetstream.Msg) (*route, error) {
	event, err := c.cfg.Policy.EventBySubject(msg.Subject())
	if err != nil {
		return nil, err
	}
	if err := event.CheckSubscriber(c.id); err != nil {
		return nil, err
	}
	if got := msg.Headers().Get(EventHeader); got != string(event.Name) {
		return nil, fmt.Errorf("%s header %q does not match %s, the event of subject %s",
			EventHeader, got, event.Name, event.Subject)
	}
	c.mu.Lock()
	r := c.routes[msg.Subject()]
	c.mu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("no handler for %s", event.Name)
	}
	return r, nil
}

// decode unmarshals and validates the payload.
func (c *Consumer) decode(r *route, msg jetstream.Msg) (proto.Message, error) {
	if got := msg.Headers().Get(ContentTypeHeader); got != ContentType {
		return nil, fmt.Errorf("content type %q, want %s", got, ContentType)
	}
	event := r.msgType.New().Interface()
	if err := proto.Unmarshal(msg.Data(), event); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", r.event.Name, err)
	}
	if err := c.cfg.Validator.Validate(event); err != nil {
		return nil, fmt.Errorf("validating %s: %w", r.event.Name, err)
	}
	return event, nil
}

// failure decides what follows a handler's error: another delivery after
// a delay, or, for a permanent error or the last allowed delivery, none.
func (c *Consumer) failure(msg jetstream.Msg, err error) result {
	if _, ok := errors.AsType[*permanentError](err); ok {
		return result{outcome: outcomeFailed, reason: reasonPermanent, err: err}
	}
	// This delivery's number, from 1 up to MaxDeliver.
	delivered := 1
	if meta, metaErr := msg.Metadata(); metaErr == nil {
		delivered = c.cfg.MaxDeliver
		if n := meta.NumDelivered; n < math.MaxInt32 {
			delivered = max(1, min(int(n), delivered))
		}
	}
	if delivered >= c.cfg.MaxDeliver {
		return result{outcome: outcomeFailed, reason: reasonMaxDeliver,
			err: fmt.Errorf("after %d deliveries: %w", delivered, err)}
	}
	delay := c.cfg.RetryDelays[min(delivered, len(c.cfg.RetryDelays))-1]
	return result{outcome: outcomeRetry, err: err, delay: delay}
}

// settle tells JetStream what became of the message.
func (c *Consumer) settle(msg jetstream.Msg, res result) error {
	switch res.outcome {
	case outcomeOK:
		return msg.Ack()
	case outcomeRetry:
		return msg.NakWithDelay(res.delay)
	default:
		return msg.TermWithReason(res.reason)
	}
}

// logResult writes the message's one log line. Rejections are audit
// events: they say which check refused the message and why.
func (c *Consumer) logResult(
	ctx context.Context, msg jetstream.Msg, res result, settleErr error, took time.Duration,
) {
	// The platform's logger adds trace_id and span_id from ctx.
	attrs := []slog.Attr{
		slog.String("subject", msg.Subject()),
		slog.String("event", msg.Headers().Get(EventHeader)),
		slog.String("outcome", res.outcome),
		slog.Int64("duration_ms", took.Milliseconds()),
	}
	if meta, err := msg.Metadata(); err == nil {
		attrs = append(attrs, slog.Uint64("delivery", meta.NumDelivered))
	}
	level := slog.LevelInfo
	switch res.outcome {
	case outcomeRejected:
		level = slog.LevelWarn
		attrs = append(attrs, slog.String("audit", "rejected"))
	case outcomeRetry:
		level = slog.LevelWarn
		attrs = append(attrs, slog.Int64("retry_in_ms", res.delay.Milliseconds()))
	case outcomeFailed:
		level = slog.LevelError
	}
	if res.stack != nil {
		level = slog.LevelError
	}
	if res.reason != "" {
		attrs = append(attrs, slog.String("reason", res.reason))
	}
	if res.err != nil {
		attrs = append(attrs, slog.String("error", res.err.Error()))
	}
	if res.stack != nil {
		attrs = append(attrs, slog.String("stack", string(res.stack)))
	}
	if settleErr != nil {
		attrs = append(attrs, slog.String("settle_error", settleErr.Error()))
	}
	c.log.LogAttrs(ctx, level, "event", attrs...)
}

// enqueuedAt is when the event was written to the publisher's outbox, in
// the transaction its token authorized. The publisher states it in
// [EnqueuedHeader]; the publisher is trusted as far as its payload is,
// since NATS lets only it publish on the subject. It may not lie beyond
// what JetStream itself saw: a time after the message was stored, or
// older than the stream keeps anything, is refused.
//
// TODO: within that bound a publisher may backdate its header, so a
// workload that captured a transaction token can publish events under it
// for as long as the stream keeps messages (MaxAge, days) rather than the
// token's minute. Binding the time to the outbox row, or a shorter MaxAge
// for the check than for retention, would narrow it.
func enqueuedAt(msg jetstream.Msg) (time.Time, error) {
	enqueued, err := time.Parse(time.RFC3339Nano, msg.Headers().Get(EnqueuedHeader))
	if err != nil {
		return time.Time{}, fmt.Errorf("no valid %s header", EnqueuedHeader)
	}
	meta, err := msg.Metadata()
	if err != nil {
		return time.Time{}, fmt.Errorf("reading message metadata: %w", err)
	}
	stored := meta.Timestamp
	if enqueued.After(stored.Add(maxClockSkew)) || stored.Sub(enqueued) > MaxAge {
		return time.Time{}, fmt.Errorf("enqueued at %s, stored at %s",
			enqueued.Format(time.RFC3339), stored.Format(time.RFC3339))
	}
	return enqueued, nil
}
