package sqlitedb_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"

	"example.com/rampart/platform/sqlitedb"
)

// openTemp opens a fresh database in the test's temporary directory.
func openTemp(t *testing.T, migrations ...sqlitedb.Migrations) (*sql.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.db")
	db, err := sqlitedb.Open(t.Context(), path, migrations...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func TestOpenSettings(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	tests := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "5000"},
		{"synchronous", "2"}, // FULL
	}
	for _, tt := range tests {
		t.Run(tt.pragma, func(t *testing.T) {
			t.Parallel()
			// Ask on several connections at once, so that a setting
			// applied to only the first connection would show.
			var wg sync.WaitGroup
			for range 6 {
				wg.Go(func() {
					tx, err := db.BeginTx(t.Context(), &sql.TxOptions{ReadOnly: true})
					if err != nil {
						t.Errorf("BeginTx: %v", err)
						return
					}
					defer func() { _ = tx.Rollback() }() // read only: nothing to undo
					var got string
					row := tx.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma)
					if err := row.Scan(&got); err != nil {
						t.Errorf("PRAGMA %s: %v", tt.pragma, err)
						return
					}
					if got != tt.want {
						t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestOpenRefusesPaths(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"", ":memory:", "data.db?mode=ro"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			if db, err := sqlitedb.Open(t.Context(), path); err == nil {
				db.Close()
				t.Errorf("Open(%q) succeeded, want an error", path)
			}
		})
	}
}

func TestForeignKeysEnforced(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t, sqlitedb.Migrations{Name: "shop", FS: fstest.MapFS{
		"0001.sql": {Data: []byte(`
			CREATE TABLE orders (id INTEGER PRIMARY KEY);
			CREATE TABLE items (order_id INTEGER NOT NULL REFERENCES orders (id));`)},
	}})
	_, err := db.ExecContext(t.Context(), "INSERT INTO items (order_id) VALUES (42)")
	if err == nil {
		t.Fatal("inserting an item of a missing order succeeded")
	}
}

// TestConcurrentWriters runs transactions that read a value and write it
// back incremented, from many goroutines. Were transactions deferred, two
// of them could both read, and the second to write would fail at once
// with SQLITE_BUSY; with BEGIN IMMEDIATE they queue and none is lost.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t, sqlitedb.Migrations{Name: "counter", FS: fstest.MapFS{
		"0001.sql": {Data: []byte(`
			CREATE TABLE counter (n INTEGER NOT NULL);
			INSERT INTO counter (n) VALUES (0);`)},
	}})
	const writers, increments = 12, 25

	var wg sync.WaitGroup
	errs := make(chan error, writers*increments)
	for range writers {
		wg.Go(func() {
			for range increments {
				errs <- sqlitedb.InTx(t.Context(), db, func(tx *sql.Tx) error {
					var n int
					row := tx.QueryRowContext(t.Context(), "SELECT n FROM counter")
					if err := row.Scan(&n); err != nil {
						return err
					}
					_, err := tx.ExecContext(t.Context(), "UPDATE counter SET n = ?", n+1)
					return err
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("InTx: %v", err)
		}
	}

	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT n FROM counter").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != writers*increments {
		t.Errorf("counter = %d, want %d", n, writers*increments)
	}
}

func TestInTx(t *testing.T) {
	t.Parallel()
	errFailed := errors.New("failed")
	tests := []struct {
		name    string
		fn      func(*sql.Tx) error
		wantErr error
		panics  bool
		want    int // rows in the table afterwards
	}{
		{
			name: "commits on nil",
			fn:   insertRow,
			want: 1,
		},
		{
			name: "rolls back on error",
			fn: func(tx *sql.Tx) error {
				if err := insertRow(tx); err != nil {
					return err
				}
				return errFailed
			},
			wantErr: errFailed,
		},
		{
			name: "rolls back on panic",
			fn: func(tx *sql.Tx) error {
				if err := insertRow(tx); err != nil {
					return err
				}
				panic("boom")
			},
			panics: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, _ := openTemp(t, sqlitedb.Migrations{Name: "t", FS: fstest.MapFS{
				"0001.sql": {Data: []byte("CREATE TABLE t (x INTEGER)")},
			}})

			var recovered any
			err := func() (err error) {
				defer func() { recovered = recover() }()
				return sqlitedb.InTx(t.Context(), db, tt.fn)
			}()
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("InTx = %v, want %v", err, tt.wantErr)
			}
			if (recovered != nil) != tt.panics {
				t.Errorf("recovered %v, want a panic: %t", recovered, tt.panics)
			}

			// A transaction left open would hold the write lock and this
			// insert would time out.
			if err := sqlitedb.InTx(t.Context(), db, func(*sql.Tx) error { return nil }); err != nil {
				t.Fatalf("write after InTx: %v", err)
			}
			var got int
			row := db.QueryRowContext(t.Context(), "SELECT count(*) FROM t")
			if err := row.Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("rows = %d, want %d", got, tt.want)
			}
		})
	}
}

// insertRow inserts within tx, which InTx already bound to the test's context.
func insertRow(tx *sql.Tx) error {
	_, err := tx.ExecContext(context.Background(), "INSERT INTO t (x) VALUES (1)")
	return err
}
