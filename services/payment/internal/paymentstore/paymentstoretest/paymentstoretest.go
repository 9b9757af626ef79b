// Package paymentstoretest opens a payment store on a temporary database for
// tests, with the platform's real outbox writer behind it, and reads back
// the events the store enqueued.
package paymentstoretest

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/events"
	"example.com/rampart/platform/outbox"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/sqlitedb"
	"example.com/rampart/platform/txntoken"
	"example.com/rampart/services/payment/internal/paymentstore"
)

// Fixture is a store on its own database, closed when the test ends.
type Fixture struct {
	Store  *paymentstore.Store
	DB     *sql.DB
	Outbox *Outbox
}

// Outbox is the platform's outbox writer, validating and storing events as
// in production, with a count of the relay wake-ups in place of a relay.
type Outbox struct {
	*outbox.Writer
	notified atomic.Int64
}

// Notify counts a wake-up.
func (o *Outbox) Notify() { o.notified.Add(1) }

// Notified returns how many times Notify was called.
func (o *Outbox) Notified() int { return int(o.notified.Load()) }

// New returns a fixture on a fresh database in t.TempDir().
func New(t testing.TB) *Fixture {
	t.Helper()
	db, err := sqlitedb.Open(t.Context(), filepath.Join(t.TempDir(), "payment.db"),
		outbox.Migrations, paymentstore.Migrations)
	if err != nil {
		t.Fatalf("opening database: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("closing database: %v", err)
		}
	})
	td := spiffeid.RequireTrustDomainFromString("rampart.local")
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("loading policy: %v", err)
	}
	writer, err := outbox.NewWriter(set, "payment", nil)
	if err != nil {
		t.Fatalf("creating outbox writer: %v", err)
	}
	box := &Outbox{Writer: writer}
	return &Fixture{Store: paymentstore.New(db, box), DB: db, Outbox: box}
}

// outboxEvents selects the payload and event name of every outbox row.
const outboxEvents = `SELECT payload, json_extract(headers, '$."` + events.EventHeader + `"[0]')
	FROM outbox ORDER BY rowid`

// Events decodes the events in the outbox, oldest first.
func (f *Fixture) Events(t testing.TB) []proto.Message {
	t.Helper()
	rows, err := f.DB.QueryContext(t.Context(), outboxEvents)
	if err != nil {
		t.Fatalf("reading outbox: %v", err)
	}
	defer rows.Close()
	var out []proto.Message
	for rows.Next() {
		var payload []byte
		var name string
		if err := rows.Scan(&payload, &name); err != nil {
			t.Fatalf("reading outbox: %v", err)
		}
		typ, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
		if err != nil {
			t.Fatalf("event type %q: %v", name, err)
		}
		msg := typ.New().Interface()
		if err := proto.Unmarshal(payload, msg); err != nil {
			t.Fatalf("decoding %s: %v", name, err)
		}
		out = append(out, msg)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("reading outbox: %v", err)
	}
	return out
}

// UserContext returns ctx carrying a transaction token for userID with
// the scopes of the payment methods, as the platform's checks leave it for
// a handler or an event consumer.
func UserContext(ctx context.Context, userID string) context.Context {
	return txntoken.NewContext(ctx, &txntoken.Token{
		Raw: "test-token-" + userID,
		Claims: txntoken.Claims{
			ID:      uuid.NewString(),
			Subject: userID,
			Scopes:  []string{"payments:read", "orders:write"},
		},
	})
}
