package outbox_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/rampart/platform/outbox"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/sqlitedb"
	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
)

const testToken = "header.claims.signature"

func loadPolicy(t testing.TB) *policy.Set {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("rampart.local")
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("loading policy: %v", err)
	}
	return set
}

func openDB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sqlitedb.Open(t.Context(), filepath.Join(t.TempDir(), "order.db"), outbox.Migrations)
	if err != nil {
		t.Fatalf("opening database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newWriter returns the order workload's writer: every test event is an
// order event.
func newWriter(t testing.TB) *outbox.Writer {
	t.Helper()
	w, err := outbox.NewWriter(loadPolicy(t), "order", nil)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	return w
}

// withToken returns ctx carrying a transaction token, as a handler's
// context does after the platform verified the caller's.
func withToken(ctx context.Context) context.Context {
	return txntoken.NewContext(ctx, &txntoken.Token{
		Raw:    testToken,
		Claims: txntoken.Claims{ID: uuid.NewString(), Subject: uuid.NewString()},
	})
}

func orderCreated() *orderv1.OrderCreated {
	return &orderv1.OrderCreated{
		OrderId:       uuid.NewString(),
		UserId:        uuid.NewString(),
		Total:         &moneyv1.Money{CurrencyCode: "EUR", Amount: 4200},
		PaymentMethod: "tok_visa",
		CreateTime:    timestamppb.Now(),
	}
}

// enqueue stores events in one committed transaction.
func enqueue(
	t testing.TB, ctx context.Context, db *sql.DB, w *outbox.Writer, events ...*orderv1.OrderCreated,
) {
	t.Helper()
	err := sqlitedb.InTx(ctx, db, func(tx *sql.Tx) error {
		for _, e := range events {
			if err := w.Enqueue(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("enqueueing: %v", err)
	}
}

func pendingRows(t testing.TB, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM outbox").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// eventually polls cond until it holds, failing the test after a while.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runRelay runs r until the test ends.
func runRelay(t testing.TB, r *outbox.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}
