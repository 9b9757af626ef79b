package workload

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"

	"example.com/rampart/platform/events"
	"example.com/rampart/platform/outbox"
	"example.com/rampart/platform/sqlitedb"
)

var errNoNATS = errors.New("workload: events need NATS, but NATS_URL is empty")

// OpenDB opens the workload's SQLite database, DataDir/<name>.db, and
// applies the outbox's migrations and the service's own.
func (w *Workload) OpenDB(ctx context.Context, migrations sqlitedb.Migrations) (*sql.DB, error) {
	if err := os.MkdirAll(w.Config.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the data directory: %w", err)
	}
	path := filepath.Join(w.Config.DataDir, w.Config.Name+".db")
	db, err := sqlitedb.Open(ctx, path, outbox.Migrations, migrations)
	if err != nil {
		return nil, err
	}
	w.OnClose(func(context.Context) error { return db.Close() })
	return db, nil
}

// Outbox stores the events a workload publishes in the transaction that
// causes them, and relays them to JetStream once committed.
type Outbox struct {
	writer *outbox.Writer
	relay  *outbox.Relay
}

// Enqueue stores event as part of tx; see [outbox.Writer.Enqueue].
func (o *Outbox) Enqueue(ctx context.Context, tx *sql.Tx, event proto.Message) error {
	return o.writer.Enqueue(ctx, tx, event)
}

// Notify wakes the relay; call it after committing a transaction that
// enqueued events.
func (o *Outbox) Notify() { o.relay.Notify() }

// Outbox creates the stream of the events this workload publishes and
// returns an outbox on db whose relay runs with the workload.
func (w *Workload) Outbox(_ context.Context, db *sql.DB) (*Outbox, error) {
	if w.JetStream == nil {
		return nil, errNoNATS
	}
	writer, err := outbox.NewWriter(w.Policy, w.Config.Name, nil)
	if err != nil {
		return nil, err
	}
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		DB:             db,
		JetStream:      w.JetStream,
		Logger:         w.Logger,
		TracerProvider: w.Telemetry.TracerProvider,
	})
	if err != nil {
		return nil, err
	}
	w.Go("stream set-up", func(ctx context.Context) error {
		// NATS may not be up yet: keep trying, the relay waits for it too.
		for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
			err := events.EnsureStream(ctx, w.JetStream, w.Policy, w.Config.Name)
			if err == nil {
				return nil
			}
			w.Logger.WarnContext(ctx, "creating the event stream", "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
		}
	})
	w.Go("outbox relay", relay.Run)
	return &Outbox{writer: writer, relay: relay}, nil
}

// ConsumerConfig is the configuration of a consumer of events that acts
// as this workload: its JetStream, policy, name, transaction-token
// verifier, logger and tracer, with the other settings left to their
// defaults.
func (w *Workload) ConsumerConfig() (events.ConsumerConfig, error) {
	if w.JetStream == nil {
		return events.ConsumerConfig{}, errNoNATS
	}
	return events.ConsumerConfig{
		JetStream:      w.JetStream,
		Policy:         w.Policy,
		Workload:       w.Config.Name,
		Tokens:         w.TxnTokens,
		Logger:         w.Logger,
		TracerProvider: w.Telemetry.TracerProvider,
	}, nil
}

// Consumer returns a consumer of the events this workload subscribes to,
// which runs with the workload. Register its handlers before Run.
func (w *Workload) Consumer() (*events.Consumer, error) {
	cfg, err := w.ConsumerConfig()
	if err != nil {
		return nil, err
	}
	c, err := events.NewConsumer(cfg)
	if err != nil {
		return nil, err
	}
	w.Go("event consumer", func(ctx context.Context) error {
		if !w.waitTxnKeys(ctx) {
			return nil
		}
		return c.Run(ctx)
	})
	return c, nil
}

// waitTxnKeys waits until the gateway's keys have arrived, so that the
// events waiting in JetStream are not delivered before their tokens can be
// checked, and reports whether they did before ctx ended. A consumer that
// started sooner would only have to deliver them again later.
func (w *Workload) waitTxnKeys(ctx context.Context) bool {
	if w.txnKeysLoaded == nil {
		return true
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !w.txnKeysLoaded() {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}
