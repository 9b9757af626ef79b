// Package events carries the platform's domain events over NATS JetStream
// and applies, to every message a service consumes, the checks an RPC gets:
// panic recovery, tracing, one log line, event policy, transaction token
// verification and protovalidate, before the handler runs.
//
// An event is a protobuf message whose rampart.policy.v1.event option names
// its subject, the one workload that publishes it and the workloads that
// may consume it. Each publishing workload owns one stream (see
// [EnsureStream]) and writes to it through the transactional outbox in
// package outbox; each consuming workload reads through a [Consumer].
//
// Delivery is at least once. The outbox publishes with a message id that
// JetStream deduplicates within [DuplicateWindow], but a relay that crashes
// longer than that before recording a publish, or a consumer that crashes
// between handling a message and acknowledging it, delivers an event twice.
// Handlers must therefore be idempotent: key the change an event causes on
// an id the event carries (the order id, the payment id) so that applying
// it a second time changes nothing.
package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"example.com/rampart/platform/policy"
)

// Headers every event carries besides the transaction token
// (txntoken.HeaderKey), the W3C trace context ("traceparent",
// "tracestate") and the message id JetStream deduplicates on.
const (
	// EventHeader names the event's message type, "order.v1.OrderCreated".
	// It must agree with the event that the policy assigns to the subject.
	EventHeader = "Rampart-Event"
	// ContentTypeHeader gives the payload's encoding, always [ContentType].
	ContentTypeHeader = "Content-Type"
	// ContentType is the binary protobuf encoding of the event message.
	ContentType = "application/protobuf"
)

// Limits of the stream [EnsureStream] creates, sized for a template: tune
// them to the traffic and the disk.
const (
	// DuplicateWindow is how long JetStream remembers a message id to drop
	// a second publish of the same outbox row.
	DuplicateWindow = 2 * time.Minute
	// MaxAge is how long an event stays in its stream, consumed or not. It
	// bounds how long a consumer may be down without missing events.
	MaxAge = 7 * 24 * time.Hour
	// MaxBytes caps a stream's size on disk.
	MaxBytes = 1 << 30
	// MaxMessageSize caps one message, headers included.
	MaxMessageSize = 1 << 20
)

// EnqueuedHeader carries the time, RFC 3339 with nanoseconds, at which the
// event was written to the publisher's outbox.
const EnqueuedHeader = "Rampart-Enqueued-At"

// maxClockSkew is how far ahead of the NATS server's clock a publisher's
// may run.
const maxClockSkew = 5 * time.Second

// ErrNoEvents is returned by [StreamConfig] and [EnsureStream] for a
// workload that the policy gives no event to publish.
var ErrNoEvents = errors.New("events: workload publishes no events")

// StreamName returns the name of the stream that holds the events a
// workload publishes: "EVENTS_ORDER" for "order".
func StreamName(workload string) string {
	return "EVENTS_" + strings.ToUpper(strings.ReplaceAll(workload, "-", "_"))
}

// StreamConfig returns the configuration [EnsureStream] applies for the
// publishing workload: the subjects of every event that set says it
// publishes, file storage with one replica (raise it on a cluster),
// deduplication over [DuplicateWindow], and the [MaxAge], [MaxBytes] and
// [MaxMessageSize] limits.
//
// A full stream refuses new messages rather than dropping old ones that a
// consumer may not have read: the outbox keeps the refused rows and
// retries, so nothing is lost while the limits are raised.
func StreamConfig(set *policy.Set, workload string) (jetstream.StreamConfig, error) {
	var subjects []string
	for e := range set.Events() {
		if e.PublisherName == workload {
			subjects = append(subjects, e.Subject)
		}
	}
	if len(subjects) == 0 {
		return jetstream.StreamConfig{}, fmt.Errorf("%w: %q", ErrNoEvents, workload)
	}
	return jetstream.StreamConfig{
		Name:        StreamName(workload),
		Description: "Events published by the " + workload + " workload",
		Subjects:    subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    1,
		Duplicates:  DuplicateWindow,
		MaxAge:      MaxAge,
		MaxBytes:    MaxBytes,
		MaxMsgSize:  MaxMessageSize,
		Discard:     jetstream.DiscardNew,
	}, nil
}

// EnsureStream creates the stream of the publishing workload, or updates
// it to [StreamConfig] if it exists, so that it may run at every start.
func EnsureStream(ctx context.Context, js jetstream.JetStream, set *policy.Set, workload string) error {
	cfg, err := StreamConfig(set, workload)
	if err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("creating stream %s: %w", cfg.Name, err)
	}
	return nil
}

// HeaderCarrier lets OpenTelemetry propagators read and write the trace
// context in NATS message headers. Unlike HTTP headers, NATS headers are
// case-sensitive, and W3C trace context keys are lowercase.
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string { return nats.Header(c).Get(key) }

// Set replaces the values of key with value.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
