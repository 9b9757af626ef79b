package sqlitedb_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing/fstest"

	"example.com/rampart/platform/sqlitedb"
)

func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sqlitedb")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	// A service embeds its migrations with //go:embed migrations/*.sql and
	// passes fs.Sub(files, "migrations").
	migrations := sqlitedb.Migrations{Name: "order", FS: fstest.MapFS{
		"0001_orders.sql": {Data: []byte(`CREATE TABLE orders (
			id     TEXT PRIMARY KEY,
			status TEXT NOT NULL
		) STRICT;`)},
	}}
	db, err := sqlitedb.Open(ctx, filepath.Join(dir, "order.db"), migrations)
	if err != nil {
		panic(err)
	}
	defer db.Close()

	err = sqlitedb.InTx(ctx, db, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			"INSERT INTO orders (id, status) VALUES ('o-1', 'PENDING_PAYMENT')")
		return err
	})
	if err != nil {
		panic(err)
	}

	var status string
	if err := db.QueryRowContext(ctx, "SELECT status FROM orders").Scan(&status); err != nil {
		panic(err)
	}
	fmt.Println(status)
	// Output: PENDING_PAYMENT
}
