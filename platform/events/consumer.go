package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"buf.build/go/protovalidate"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/txntoken"
)

// tracerName is the instrumentation scope of the spans this package starts.
const tracerName = "example.com/rampart/platform/events"

// TokenVerifier verifies the transaction token a message carries and
// returns it, or an error if it is not one the service accepts. The
// token's validity is judged at the instant the event was enqueued, in the
// transaction the token authorized, not when the event is delivered: an
// event may wait in the outbox or the stream longer than its token lives.
// *txntoken.Verifier implements it.
type TokenVerifier interface {
	VerifyAt(ctx context.Context, raw string, at time.Time) (*txntoken.Token, error)
}

// HandlerFunc handles one event, a message of the type it was registered
// for. It must be idempotent: the same event may arrive more than once. An
// error makes the message be delivered again later, unless it is wrapped
// by [Permanent].
type HandlerFunc func(ctx context.Context, msg proto.Message) error

// ConsumerConfig configures a [Consumer]. JetStream, Policy, Workload and
// Tokens are required; the other fields have working defaults.
type ConsumerConfig struct {
	// JetStream is the connection to consume through.
	JetStream jetstream.JetStream
	// Policy says which events exist, who publishes them and who may
	// consume them.
	Policy *policy.Set
	// Workload is this service's workload name, "payment". It names the
	// durable consumer on every stream.
	Workload string
	// Tokens verifies the transaction token of every message.
	Tokens TokenVerifier
	// Validator checks every decoded event; nil means
	// protovalidate.GlobalValidator.
	Validator protovalidate.Validator
	// Logger receives one line per message, rejections among them as
	// audit events; nil discards them.
	Logger *slog.Logger
	// TracerProvider starts a span per message; nil starts none.
	TracerProvider trace.TracerProvider

	// AckWait is how long a handler may run. A message that is not
	// settled by then is delivered again. Default 30s.
	AckWait time.Duration
	// MaxDeliver bounds how many times a message is delivered before it
	// is given up. Default 5.
	MaxDeliver int
	// RetryDelays are the waits before delivering a message again after
	// its handler failed, by delivery: the first after the first failure,
	// the last for every later one. Default 1s, 5s, 30s, 2m.
	RetryDelays []time.Duration
}

// Consumer receives the events a workload subscribes to and hands each to
// its handler only after it passed the platform's checks. Register
// handlers with [Consumer.Handle] or [Handle], then call [Consumer.Run].
type Consumer struct {
	cfg        ConsumerConfig
	id         spiffeid.ID
	log        *slog.Logger
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator

	mu      sync.Mutex
	routes  map[string]*route // by subject
	running bool
}

// route is where messages on one subject go.
type route struct {
	event   *policy.Event
	msgType protoreflect.MessageType
	handle  HandlerFunc
}

// NewConsumer returns a consumer with no handlers, or an error if cfg lacks
// a required field or names a workload the trust domain cannot hold.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	if cfg.JetStream == nil || cfg.Policy == nil || cfg.Tokens == nil || cfg.Workload == "" {
		return nil, errors.New("events: consumer needs JetStream, Policy, Workload and Tokens")
	}
	id, err := cfg.Policy.Workload(cfg.Workload)
	if err != nil {
		return nil, fmt.Errorf("events: workload %q: %w", cfg.Workload, err)
	}
	if cfg.Validator == nil {
		cfg.Validator = protovalidate.GlobalValidator
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = noop.NewTracerProvider()
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = 5
	}
	if len(cfg.RetryDelays) == 0 {
		cfg.RetryDelays = []time.Duration{
			time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute,
		}
	}
	return &Consumer{
		cfg:        cfg,
		id:         id,
		log:        cfg.Logger,
		tracer:     cfg.TracerProvider.Tracer(tracerName),
		propagator: propagation.TraceContext{},
		routes:     map[string]*route{},
	}, nil
}

// Handle registers fn for the events of prototype's message type; the
// prototype's contents are ignored. It returns an error wrapping
// policy.ErrNoPolicy for a message that is not an event, one wrapping
// policy.ErrCallerNotAllowed for an event this workload may not consume,
// and an error if the event has a handler already or [Consumer.Run] has
// started.
func (c *Consumer) Handle(prototype proto.Message, fn HandlerFunc) error {
	if prototype == nil || fn == nil {
		return errors.New("events: Handle needs a prototype message and a function")
	}
	msgType := prototype.ProtoReflect().Type()
	event, err := c.cfg.Policy.Event(msgType.Descriptor().FullName())
	if err != nil {
		return fmt.Errorf("registering handler: %w", err)
	}
	if err := event.CheckSubscriber(c.id); err != nil {
		return fmt.Errorf("registering handler: %w", err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return fmt.Errorf("registering handler for %s: consumer has started", event.Name)
	}
	if _, ok := c.routes[event.Subject]; ok {
		return fmt.Errorf("registering handler for %s: already registered", event.Name)
	}
	c.routes[event.Subject] = &route{event: event, msgType: msgType, handle: fn}
	return nil
}

// Handle registers fn for the events of type M on c, as [Consumer.Handle]
// does:
//
//	err := events.Handle(c, func(ctx context.Context, e *orderv1.OrderCreated) error { ... })
func Handle[M proto.Message](c *Consumer, fn func(ctx context.Context, msg M) error) error {
	if fn == nil {
		return errors.New("events: Handle needs a function")
	}
	var prototype M
	return c.Handle(prototype, func(ctx context.Context, msg proto.Message) error {
		typed, ok := msg.(M)
		if !ok {
			return Permanent(fmt.Errorf("events: handler of %T given a %T", prototype, msg))
		}
		return fn(ctx, typed)
	})
}

// Run consumes until ctx is done, then waits for the message in hand to be
// settled and returns nil. On each stream that publishes an event with a
// handler it creates, or updates, a durable pull consumer named after the
// workload, filtered on the handled subjects, with explicit
// acknowledgement and at most MaxDeliver deliveries. A stream that does
// not exist yet, because its publisher has not started, is waited for.
//
// Run may be called once. It returns an error if no handler is registered,
// if it was called before, or if JetStream refuses a consumer's
// configuration.
func (c *Consumer) Run(ctx context.Context) error {
	streams, err := c.start()
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(streams))
	var wg sync.WaitGroup
	for stream, subjects := range streams {
		wg.Go(func() {
			if err := c.consume(ctx, stream, subjects); err != nil {
				errs <- fmt.Errorf("consuming %s: %w", stream, err)
				cancel()
			}
		})
	}
	wg.Wait()
	close(errs)
	// The first error, or nil from the closed channel: any others
	// followed from cancel.
	return <-errs
}

// start marks the consumer running and groups the handled subjects by the
// stream that holds them.
func (c *Consumer) start() (map[string][]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return nil, errors.New("events: Run called twice")
	}
	if len(c.routes) == 0 {
		return nil, errors.New("events: consumer has no handlers")
	}
	c.running = true
	streams := map[string][]string{}
	for _, subject := range slices.Sorted(maps.Keys(c.routes)) {
		name := StreamName(c.routes[subject].event.PublisherName)
		streams[name] = append(streams[name], subject)
	}
	return streams, nil
}

// consume keeps one durable consumer on stream fed into c.handle until ctx
// is done, recreating it if the server drops it.
func (c *Consumer) consume(ctx context.Context, stream string, subjects []string) error {
	// Messages in hand when ctx ends are still settled: handlers run on a
	// context that shutdown does not cancel, bounded by AckWait.
	base := context.WithoutCancel(ctx)
	for {
		cons, err := c.ensureConsumer(ctx, stream, subjects)
		if err != nil {
			if ctx.Err() != nil {
				// Shutting down: err is the cancellation, and Run ends with nil.
				return nil //nolint:nilerr // see above
			}
			return err
		}
		// A small batch: the server starts AckWait when it sends a
		// message, so a long queue in the client would expire unhandled.
		cc, err := cons.Consume(
			func(msg jetstream.Msg) { c.handle(base, msg) },
			jetstream.PullMaxMessages(16),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				c.log.WarnContext(ctx, "consuming events",
					"stream", stream, "error", err.Error())
			}))
		if err != nil {
			c.log.WarnContext(ctx, "starting to consume events",
				"stream", stream, "error", err.Error())
		} else {
			select {
			case <-ctx.Done():
				cc.Stop()
				<-cc.Closed()
				return nil
			case <-cc.Closed():
			}
		}
		if !sleep(ctx, time.Second) {
			return nil
		}
	}
}

// ensureConsumer creates or updates the durable consumer, waiting for the
// stream to exist. It returns an error only when ctx ends or JetStream
// refuses the configuration itself.
func (c *Consumer) ensureConsumer(
	ctx context.Context, stream string, subjects []string,
) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:        c.cfg.Workload,
		Description:    "Events consumed by the " + c.cfg.Workload + " workload",
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.cfg.AckWait,
		MaxDeliver:     c.cfg.MaxDeliver,
	}
	if len(subjects) == 1 {
		// A single filter travels in the API request's subject, where NATS
		// permissions can pin it (see package natsauth).
		cfg.FilterSubject, cfg.FilterSubjects = subjects[0], nil
	}
	wait := 250 * time.Millisecond
	for {
		cons, err := c.cfg.JetStream.CreateOrUpdateConsumer(ctx, stream, cfg)
		if err == nil {
			return cons, nil
		}
		var apiErr *jetstream.APIError
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, jetstream.ErrStreamNotFound):
			c.log.InfoContext(ctx, "waiting for stream",
				"stream", stream)
		case errors.As(err, &apiErr):
			return nil, fmt.Errorf("creating consumer %s: %w", c.cfg.Workload, err)
		default: // not connected, JetStream not answering: try again
			c.log.WarnContext(ctx, "creating consumer",
				"stream", stream, "error", err.Error())
		}
		if !sleep(ctx, wait) {
			return nil, ctx.Err()
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// sleep waits for d or for ctx to end, and reports whether ctx is alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
