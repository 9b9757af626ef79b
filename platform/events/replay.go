package events

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// reasonNotRedelivered is logged for a replayed event whose handler
// failed: replay acknowledges nothing, so nothing delivers it again.
const reasonNotRedelivered = "not_redelivered"

// ReplayConfig configures [Consumer.RunReplay].
type ReplayConfig struct {
	// Since is how far back, from the moment RunReplay starts, delivery
	// begins: events stored earlier are skipped. It must be positive and
	// at most [MaxAge], which is all a stream keeps.
	Since time.Duration
	// CaughtUp, if set, is called once, when every event that the
	// streams held at the start, from Since ago, has been handled. A
	// stream that does not exist yet holds none.
	CaughtUp func()
}

// RunReplay consumes until ctx is done, like [Consumer.Run], but for a
// workload whose every process must see every event, and see again at
// each start the events of a recent window: a process that keeps state
// in memory, such as the gateway's list of revoked sessions.
//
// On each stream that publishes an event with a handler, RunReplay reads
// through an ordered consumer of its own: ephemeral, held in the server's
// memory, named after the workload and a random suffix, filtered on the
// handled subjects, starting at the first event stored cfg.Since ago. It
// delivers in stream order, and when a message goes missing (a reconnect,
// a server restart) the client library recreates it from the last event
// handled. No process shares it, so each one gets every event; when the
// process stops reading, the server drops it after a few minutes.
//
// Every message passes the same checks as with Run before its handler
// runs, and is logged the same way. Nothing is acknowledged, so an event
// whose handler fails is logged and not delivered again: handlers must
// not fail for reasons that retrying would cure.
//
// RunReplay may be called once, instead of Run. It returns an error if no
// handler is registered, if Run or RunReplay was called before, or if
// cfg.Since is out of range.
func (c *Consumer) RunReplay(ctx context.Context, cfg ReplayConfig) error {
	if cfg.Since <= 0 || cfg.Since > MaxAge {
		return fmt.Errorf("events: replay window %v outside (0, %v]", cfg.Since, MaxAge)
	}
	streams, err := c.start()
	if err != nil {
		return err
	}
	from := time.Now().Add(-cfg.Since)

	var caughtUp sync.WaitGroup
	caughtUp.Add(len(streams))
	if cfg.CaughtUp != nil {
		go func() {
			caughtUp.Wait()
			cfg.CaughtUp()
		}()
	}
	var wg sync.WaitGroup
	for stream, subjects := range streams {
		r := &replay{c: c, stream: stream, subjects: subjects, from: from, caughtUp: caughtUp.Done}
		wg.Go(func() { r.run(ctx) })
	}
	wg.Wait()
	return nil
}

// replay is the ordered consumption of one stream.
type replay struct {
	c        *Consumer
	stream   string
	subjects []string
	from     time.Time

	// caughtUp is called once, through done.
	caughtUp func()
	done     sync.Once
	// remaining counts the events stored at the start not yet handled.
	remaining atomic.Int64
	// last is the stream sequence of the last event handled, where a
	// consumer made again goes on from.
	last atomic.Uint64
}

// run keeps an ordered consumer fed into the checks until ctx is done,
// making a new one if the library gives up on its own.
func (r *replay) run(ctx context.Context) {
	// As in Run, a message in hand when ctx ends is still handled.
	base := context.WithoutCancel(ctx)
	wait := 250 * time.Millisecond
	for ctx.Err() == nil {
		cons, err := r.consumer(ctx)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			// Nothing was published yet, so there is nothing to catch up
			// on; the stream is waited for.
			r.done.Do(r.caughtUp)
			r.c.log.InfoContext(ctx, "waiting for stream", "stream", r.stream)
		case err != nil:
			if ctx.Err() == nil {
				r.c.log.WarnContext(ctx, "creating replay consumer",
					"stream", r.stream, "error", err.Error())
			}
		default:
			wait = 250 * time.Millisecond
			r.consume(ctx, base, cons)
		}
		if !sleep(ctx, wait) {
			return
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// consumer creates the ordered consumer: from the replay window's start
// the first time, after the last event handled afterwards.
func (r *replay) consumer(ctx context.Context) (jetstream.Consumer, error) {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: r.subjects,
		NamePrefix:     r.c.cfg.Workload + "_" + rand.Text(),
	}
	if last := r.last.Load(); last > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = last + 1
	} else {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &r.from
	}
	createCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := r.c.cfg.JetStream.OrderedConsumer(createCtx, r.stream, cfg)
	if err != nil {
		return nil, err
	}
	if r.last.Load() == 0 {
		// A stream cannot hold more than MaxInt64 messages; the bound only keeps the
		// conversion exact.
		pending := int64(math.MaxInt64)
		if n := cons.CachedInfo().NumPending; n < math.MaxInt64 {
			pending = int64(n)
		}
		r.remaining.Store(pending)
		if pending == 0 {
			r.done.Do(r.caughtUp)
		}
	}
	return cons, nil
}

// consume hands cons's messages to the checks until ctx is done or the
// consumption ends.
func (r *replay) consume(ctx, base context.Context, cons jetstream.Consumer) {
	cc, err := cons.Consume(
		func(msg jetstream.Msg) { r.handle(base, msg) },
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			r.c.log.WarnContext(ctx, "replaying events", "stream", r.stream, "error", err.Error())
		}))
	if err != nil {
		r.c.log.WarnContext(ctx, "starting to replay events",
			"stream", r.stream, "error", err.Error())
		return
	}
	select {
	case <-ctx.Done():
		cc.Stop()
	case <-cc.Closed():
	}
	<-cc.Closed()
}

// handle takes one message through the checks of [Consumer.handle], and
// settles nothing.
func (r *replay) handle(ctx context.Context, msg jetstream.Msg) {
	c := r.c
	start := time.Now()
	ctx, span := c.startSpan(ctx, msg)
	defer span.End()

	res := c.process(ctx, msg)
	if res.outcome == outcomeRetry {
		res = result{outcome: outcomeFailed, reason: reasonNotRedelivered, err: res.err}
	}
	endSpan(span, res)
	c.logResult(ctx, msg, res, nil, time.Since(start))

	if meta, err := msg.Metadata(); err == nil {
		r.last.Store(meta.Sequence.Stream)
		if r.remaining.Add(-1) <= 0 || meta.NumPending == 0 {
			r.done.Do(r.caughtUp)
		}
	}
}
