// Package sqlitedb opens the SQLite database a service owns, configured for
// many goroutines in one process, and brings its schema up to date from
// embedded migrations.
//
// The driver is modernc.org/sqlite, pure Go, so binaries stay static.
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// BusyTimeout is how long, in milliseconds, a connection waits for another
// connection's write lock before it gives up with SQLITE_BUSY.
const BusyTimeout = 5000

// Open opens the SQLite database file at path and applies migrations in
// the order given, then each set's files in lexical order. It returns a
// pool ready for concurrent use, or an error if the file cannot be opened,
// write-ahead logging cannot be turned on, or a migration fails or is
// refused (see [Migrations]).
//
// Every connection runs in WAL mode, so that readers never block the
// writer nor each other; enforces foreign keys; waits up to [BusyTimeout]
// for a lock; and begins every transaction that is not read-only with
// BEGIN IMMEDIATE. Taking the write lock up front is what lets concurrent
// writers queue: a deferred transaction that reads and then writes can
// find another writer ahead of it, and SQLite then fails it with
// SQLITE_BUSY at once, without waiting, because waiting could deadlock.
//
// path must name a file: Open refuses ":memory:", whose contents each
// pooled connection would hold separately, and a path containing '?', which
// the driver would take for options.
func Open(ctx context.Context, path string, migrations ...Migrations) (*sql.DB, error) {
	if path == "" || path == ":memory:" || strings.Contains(path, "?") {
		return nil, fmt.Errorf("sqlitedb: opening %q: not a usable file path", path)
	}
	options := url.Values{
		"_busy_timeout": {strconv.Itoa(BusyTimeout)},
		"_foreign_keys": {"1"},
		"_journal_mode": {"WAL"},
		// FULL syncs the log on every commit. NORMAL is faster, but a power
		// cut could then undo commits the caller was told had succeeded.
		"_synchronous": {"FULL"},
		"_txlock":      {"immediate"},
	}
	db, err := sql.Open("sqlite", path+"?"+options.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening database %s: %w", path, err)
	}

	// WAL admits any number of readers beside the one writer, so a few
	// connections let reads proceed in parallel. More than the CPUs buys
	// nothing: the driver runs SQLite on the calling goroutine. Writers
	// take turns through the write lock and busy_timeout, not the pool.
	conns := max(4, runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(conns)
	// Keep every connection: a new one repeats the pragmas above and
	// starts with a cold page cache. A local file has no server that
	// drops idle connections, so none is ever retired.
	db.SetMaxIdleConns(conns)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	if err := checkWAL(ctx, db); err != nil {
		return nil, errors.Join(fmt.Errorf("opening database %s: %w", path, err), db.Close())
	}
	if err := migrate(ctx, db, migrations); err != nil {
		return nil, errors.Join(fmt.Errorf("migrating database %s: %w", path, err), db.Close())
	}
	return db, nil
}

// checkWAL makes sure the journal mode took: SQLite keeps the old mode,
// without an error, where it cannot use WAL (some network file systems).
func checkWAL(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("reading journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	return nil
}

// InTx runs fn in a transaction on db. It commits if fn returns nil and
// rolls back if fn returns an error or panics; the panic then goes on up
// the stack. The error is fn's, or the one beginning or committing met.
//
// The transaction begins with BEGIN IMMEDIATE on a pool from [Open], so
// it holds the write lock from its first statement: keep it short, and do
// no network calls inside it.
func InTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	done := false
	defer func() {
		// Reached without done on a panic or runtime.Goexit as well as on
		// an error; neither must leave the write lock held.
		if !done {
			if rbErr := tx.Rollback(); rbErr != nil && err != nil {
				err = errors.Join(err, fmt.Errorf("rolling back: %w", rbErr))
			}
		}
	}()

	if err := fn(tx); err != nil {
		return err
	}
	done = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing transaction: %w", err)
	}
	return nil
}
