// Package outbox publishes a service's events if, and only if, the
// transaction that caused them commits. A [Writer] stores each event in the
// outbox table inside the caller's transaction; a [Relay] publishes the
// stored rows to NATS JetStream, oldest first, and deletes each once
// JetStream has acknowledged it.
//
// A row is published at least once. Its id travels as the Nats-Msg-Id
// header, so JetStream drops a repeat within its duplicate window (see
// events.DuplicateWindow); consumers must still be idempotent.
//
// A service sets it up once:
//
//	db, err := sqlitedb.Open(ctx, path, migrations, outbox.Migrations)
//	writer, err := outbox.NewWriter(policies, "order", validator)
//	relay, err := outbox.NewRelay(outbox.RelayConfig{DB: db, JetStream: js, Logger: logger})
//	go relay.Run(ctx)
//
// and then, for each change:
//
//	err = sqlitedb.InTx(ctx, db, func(tx *sql.Tx) error {
//		// store the order, then:
//		return writer.Enqueue(ctx, tx, &orderv1.OrderCreated{...})
//	})
//	if err == nil {
//		relay.Notify()
//	}
package outbox

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"buf.build/go/protovalidate"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/proto"

	"example.com/rampart/platform/events"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/sqlitedb"
	"example.com/rampart/platform/txntoken"
)

// MaxPayloadSize is the largest encoded event the outbox accepts. A row
// that JetStream refuses for its size would block every row behind it, so
// it is refused before it is stored.
const MaxPayloadSize = 64 << 10

// Errors returned by [Writer.Enqueue].
var (
	ErrNoToken  = errors.New("outbox: no transaction token in context")
	ErrTooLarge = errors.New("outbox: event too large")
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the outbox table. Pass it to sqlitedb.Open with the
// service's own migrations.
var Migrations = sqlitedb.Migrations{Name: "outbox", FS: mustSub(migrationFiles, "migrations")}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// Writer stores the events of one publishing workload in the outbox.
type Writer struct {
	set       *policy.Set
	workload  spiffeid.ID
	validator protovalidate.Validator
}

// NewWriter returns a writer for the events that set says workload
// publishes, "order". A nil validator means protovalidate.GlobalValidator.
func NewWriter(set *policy.Set, workload string, validator protovalidate.Validator) (*Writer, error) {
	if set == nil {
		return nil, errors.New("outbox: writer needs a policy set")
	}
	id, err := set.Workload(workload)
	if err != nil {
		return nil, fmt.Errorf("outbox: workload %q: %w", workload, err)
	}
	if validator == nil {
		validator = protovalidate.GlobalValidator
	}
	return &Writer{set: set, workload: id, validator: validator}, nil
}

// Enqueue stores event in the outbox as part of tx; it is published once
// tx commits, and never if tx rolls back. The subject is the one the
// event's policy names. The stored headers carry the event's type, its
// content type, the transaction token from ctx and the W3C trace context
// of ctx's span, so that the transaction and the trace go on at the
// consumer. The token stays in the row, at rest, until the row is
// published.
//
// Enqueue refuses, storing nothing: a message without an event policy
// (policy.ErrNoPolicy); an event another workload publishes
// (policy.ErrCallerNotAllowed); an event that fails protovalidate (a
// *protovalidate.ValidationError); a ctx with no transaction token
// ([ErrNoToken]), since consumers reject events without one; and an event
// larger than [MaxPayloadSize] ([ErrTooLarge]).
func (w *Writer) Enqueue(ctx context.Context, tx *sql.Tx, event proto.Message) error {
	if tx == nil || event == nil {
		return errors.New("outbox: Enqueue needs a transaction and an event")
	}
	name := event.ProtoReflect().Descriptor().FullName()
	rule, err := w.set.Event(name)
	if err != nil {
		return fmt.Errorf("enqueueing event: %w", err)
	}
	if err := rule.CheckPublisher(w.workload); err != nil {
		return fmt.Errorf("enqueueing event: %w", err)
	}
	if err := w.validator.Validate(event); err != nil {
		return fmt.Errorf("enqueueing %s: %w", name, err)
	}
	tok, ok := txntoken.FromContext(ctx)
	if !ok || tok.Raw == "" {
		return fmt.Errorf("enqueueing %s: %w", name, ErrNoToken)
	}
	payload, err := proto.Marshal(event)
	if err != nil {
		return fmt.Errorf("enqueueing %s: encoding: %w", name, err)
	}
	if len(payload) > MaxPayloadSize {
		return fmt.Errorf("enqueueing %s: %w: %d bytes", name, ErrTooLarge, len(payload))
	}

	headers := nats.Header{}
	headers.Set(events.EventHeader, string(name))
	headers.Set(events.ContentTypeHeader, events.ContentType)
	headers.Set(txntoken.HeaderKey, tok.Raw)
	headers.Set(events.EnqueuedHeader, time.Now().UTC().Format(time.RFC3339Nano))
	propagation.TraceContext{}.Inject(ctx, events.HeaderCarrier(headers))
	encoded, err := json.Marshal(headers)
	if err != nil {
		return fmt.Errorf("enqueueing %s: encoding headers: %w", name, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("enqueueing %s: %w", name, err)
	}

	_, err = tx.ExecContext(ctx,
		`INSERT INTO outbox (id, subject, payload, headers, created_at) VALUES (?, ?, ?, ?, ?)`,
		id.String(), rule.Subject, payload, string(encoded),
		time.Now().UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("enqueueing %s: %w", name, err)
	}
	return nil
}
