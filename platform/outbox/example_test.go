package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/rampart/platform/outbox"
	"example.com/rampart/platform/policy"
	"example.com/rampart/platform/sqlitedb"
	"example.com/rampart/platform/txntoken"
	orderv1 "example.com/rampart/proto/order/v1"
	paymentv1 "example.com/rampart/proto/payment/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
)

func ExampleWriter_Enqueue() {
	ctx := context.Background()
	set, err := policy.Load(spiffeid.RequireTrustDomainFromString("rampart.local"),
		protoregistry.GlobalFiles)
	if err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "outbox")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	db, err := sqlitedb.Open(ctx, filepath.Join(dir, "order.db"), outbox.Migrations)
	if err != nil {
		panic(err)
	}
	defer db.Close()
	writer, err := outbox.NewWriter(set, "order", nil)
	if err != nil {
		panic(err)
	}

	// In an RPC handler, the platform has put the caller's verified
	// transaction token in ctx.
	ctx = txntoken.NewContext(ctx, &txntoken.Token{Raw: "eyJ0eXAiOiJ0eG50b2tlbitqd3QifQ.e30.sig"})
	err = sqlitedb.InTx(ctx, db, func(tx *sql.Tx) error {
		// Store the order here, in the same transaction.
		return writer.Enqueue(ctx, tx, &orderv1.OrderCreated{
			OrderId:       "5d1c7f38-2a0e-4c55-9a4b-0f6f3f0a8e21",
			UserId:        "9b2e6c1d-7f3a-4e8b-8c5d-2a1b3c4d5e6f",
			Total:         &moneyv1.Money{CurrencyCode: "EUR", Amount: 2599},
			PaymentMethod: "tok_visa",
			CreateTime:    timestamppb.Now(),
		})
	})
	if err != nil {
		panic(err)
	}
	// Here a service calls relay.Notify().

	var subject string
	if err := db.QueryRowContext(ctx, "SELECT subject FROM outbox").Scan(&subject); err != nil {
		panic(err)
	}
	fmt.Println("stored for", subject)

	// The order workload may not publish the payment service's events.
	err = sqlitedb.InTx(ctx, db, func(tx *sql.Tx) error {
		return writer.Enqueue(ctx, tx, &paymentv1.PaymentFailed{})
	})
	fmt.Println(errors.Is(err, policy.ErrCallerNotAllowed))
	// Output:
	// stored for orders.created
	// true
}
