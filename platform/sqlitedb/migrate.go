package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"
)

// ErrNewerSchema is returned by [Open] when the database records a
// migration that the binary does not carry, most likely applied by a newer
// release. Running older code against a schema it does not know could
// corrupt data, so the database is refused rather than used.
var ErrNewerSchema = errors.New("sqlitedb: database schema is newer than this binary")

// Migrations is one named set of schema changes: the *.sql files at the
// root of FS (use fs.Sub for a folder of an embed.FS). A service and each
// platform package that keeps tables in the service's database bring their
// own set, so their files are numbered independently.
//
// Files are applied in lexical order of their names, so number them with
// leading zeros: 0001_create_orders.sql. A file may hold several
// statements, but no BEGIN or COMMIT of its own. Each file runs in its own
// transaction and is recorded in the table schema_migrations as (Name,
// file name) in that same transaction: a file that fails leaves nothing of
// itself behind, and one that was recorded is never run again. Once
// released, a file must not change.
type Migrations struct {
	// Name identifies the set in schema_migrations, "order" or "outbox".
	Name string
	// FS holds the set's *.sql files.
	FS fs.FS
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	name       TEXT NOT NULL,
	version    TEXT NOT NULL,
	applied_at TEXT NOT NULL,
	PRIMARY KEY (name, version)
) STRICT`

// migrate applies every set, refusing them all before running anything if
// one set finds the database ahead of it.
func migrate(ctx context.Context, db *sql.DB, sets []Migrations) error {
	if _, err := db.ExecContext(ctx, createMigrationsTable); err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}
	files := make([][]string, len(sets))
	for i, set := range sets {
		if set.Name == "" || set.FS == nil {
			return errors.New("migration set needs a name and a file system")
		}
		if slices.ContainsFunc(sets[:i], func(m Migrations) bool { return m.Name == set.Name }) {
			return fmt.Errorf("migration set %q given twice", set.Name)
		}
		names, err := fs.Glob(set.FS, "*.sql")
		if err != nil {
			return fmt.Errorf("listing migrations of %s: %w", set.Name, err)
		}
		if len(names) == 0 {
			return fmt.Errorf("no *.sql files in migration set %s", set.Name)
		}
		if err := checkNotAhead(ctx, db, set.Name, names); err != nil {
			return err
		}
		files[i] = names
	}
	for i, set := range sets {
		for _, name := range files[i] {
			if err := applyFile(ctx, db, set, name); err != nil {
				return fmt.Errorf("applying %s/%s: %w", set.Name, name, err)
			}
		}
	}
	return nil
}

// checkNotAhead returns [ErrNewerSchema] if the database records a
// version of the set that is not among names.
func checkNotAhead(ctx context.Context, db *sql.DB, set string, names []string) error {
	rows, err := db.QueryContext(ctx,
		"SELECT version FROM schema_migrations WHERE name = ? ORDER BY version", set)
	if err != nil {
		return fmt.Errorf("reading applied migrations of %s: %w", set, err)
	}
	defer rows.Close()
	for rows.Next() {
		var version string
		if err := rows.Scan(&version); err != nil {
			return fmt.Errorf("reading applied migrations of %s: %w", set, err)
		}
		if !slices.Contains(names, version) {
			return fmt.Errorf("%w: %s/%s is applied but unknown", ErrNewerSchema, set, version)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading applied migrations of %s: %w", set, err)
	}
	return nil
}

// applyFile runs one file unless it is recorded already. The check runs
// inside the transaction, under the write lock, so that two processes
// starting together cannot both apply it.
func applyFile(ctx context.Context, db *sql.DB, set Migrations, name string) error {
	script, err := fs.ReadFile(set.FS, name)
	if err != nil {
		return err
	}
	return InTx(ctx, db, func(tx *sql.Tx) error {
		var applied bool
		err := tx.QueryRowContext(ctx,
			"SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name = ? AND version = ?)",
			set.Name, name).Scan(&applied)
		if err != nil || applied {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(script)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			"INSERT INTO schema_migrations (name, version, applied_at) VALUES (?, ?, ?)",
			set.Name, name, time.Now().UTC().Format(time.RFC3339Nano))
		return err
	})
}
