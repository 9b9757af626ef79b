package sqlitedb_test

import (
	"database/sql"
	"errors"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"example.com/rampart/platform/sqlitedb"
)

var (
	createUsers  = &fstest.MapFile{Data: []byte("CREATE TABLE users (id TEXT PRIMARY KEY);")}
	addUserEmail = &fstest.MapFile{Data: []byte("ALTER TABLE users ADD COLUMN email TEXT;")}
	// createBroken creates a table, then fails on its second statement.
	createBroken = &fstest.MapFile{Data: []byte(`
		CREATE TABLE sessions (id TEXT PRIMARY KEY);
		INSERT INTO no_such_table VALUES (1);`)}
)

// applied returns the recorded migrations as "name/version".
func applied(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(),
		"SELECT name || '/' || version FROM schema_migrations ORDER BY name, version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var n int
	err := db.QueryRowContext(t.Context(),
		"SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", name).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestMigrationsApplyInOrderOnce(t *testing.T) {
	t.Parallel()
	// Listed out of order: the file names decide.
	v2 := sqlitedb.Migrations{Name: "user", FS: fstest.MapFS{
		"0002_email.sql": addUserEmail,
		"0001_users.sql": createUsers,
		"README.md":      {Data: []byte("not a migration")},
	}}
	db, path := openTemp(t, v2)
	if _, err := db.ExecContext(t.Context(),
		"INSERT INTO users (id, email) VALUES ('u1', 'a@example.com')"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// Reopening runs nothing twice: a second ALTER TABLE ADD COLUMN email
	// would fail, and a second CREATE TABLE would too.
	for range 2 {
		db, err := sqlitedb.Open(t.Context(), path, v2)
		if err != nil {
			t.Fatalf("reopening: %v", err)
		}
		want := []string{"user/0001_users.sql", "user/0002_email.sql"}
		if diff := cmp.Diff(want, applied(t, db)); diff != "" {
			t.Errorf("applied migrations (-want +got):\n%s", diff)
		}
		var email string
		row := db.QueryRowContext(t.Context(), "SELECT email FROM users WHERE id = 'u1'")
		if err := row.Scan(&email); err != nil {
			t.Errorf("data lost on reopening: %v", err)
		}
		db.Close()
	}
}

func TestMigrationsAddedLater(t *testing.T) {
	t.Parallel()
	v1 := fstest.MapFS{"0001_users.sql": createUsers}
	db, path := openTemp(t, sqlitedb.Migrations{Name: "user", FS: v1})
	db.Close()

	v2 := fstest.MapFS{"0001_users.sql": createUsers, "0002_email.sql": addUserEmail}
	outbox := fstest.MapFS{"0001_outbox.sql": {Data: []byte("CREATE TABLE outbox (id TEXT);")}}
	db, err := sqlitedb.Open(t.Context(), path,
		sqlitedb.Migrations{Name: "user", FS: v2},
		sqlitedb.Migrations{Name: "outbox", FS: outbox})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	want := []string{"outbox/0001_outbox.sql", "user/0001_users.sql", "user/0002_email.sql"}
	if diff := cmp.Diff(want, applied(t, db)); diff != "" {
		t.Errorf("applied migrations (-want +got):\n%s", diff)
	}
}

func TestFailedMigrationLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := dir + "/test.db"
	set := sqlitedb.Migrations{Name: "user", FS: fstest.MapFS{
		"0001_users.sql":    createUsers,
		"0002_sessions.sql": createBroken,
	}}
	if db, err := sqlitedb.Open(t.Context(), path, set); err == nil {
		db.Close()
		t.Fatal("Open succeeded with a failing migration")
	}

	// Look at what was left, with no migrations to apply.
	db, err := sqlitedb.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if diff := cmp.Diff([]string{"user/0001_users.sql"}, applied(t, db)); diff != "" {
		t.Errorf("applied migrations (-want +got):\n%s", diff)
	}
	if tableExists(t, db, "sessions") {
		t.Error("the failed migration's first statement was kept")
	}
	if !tableExists(t, db, "users") {
		t.Error("the migration before the failing one was lost")
	}
}

func TestNewerDatabaseRefused(t *testing.T) {
	t.Parallel()
	newer := sqlitedb.Migrations{Name: "user", FS: fstest.MapFS{
		"0001_users.sql": createUsers,
		"0002_email.sql": addUserEmail,
	}}
	db, path := openTemp(t, newer)
	db.Close()

	tests := []struct {
		name string
		fs   fstest.MapFS
	}{
		{"older binary", fstest.MapFS{"0001_users.sql": createUsers}},
		{"renamed file", fstest.MapFS{"0001_users.sql": createUsers, "0002_mail.sql": addUserEmail}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, err := sqlitedb.Open(t.Context(), path, sqlitedb.Migrations{Name: "user", FS: tt.fs})
			if err == nil {
				db.Close()
			}
			if !errors.Is(err, sqlitedb.ErrNewerSchema) {
				t.Errorf("Open = %v, want %v", err, sqlitedb.ErrNewerSchema)
			}
		})
	}
}

func TestMigrationsRefused(t *testing.T) {
	t.Parallel()
	users := fstest.MapFS{"0001_users.sql": createUsers}
	tests := []struct {
		name string
		sets []sqlitedb.Migrations
	}{
		{"no name", []sqlitedb.Migrations{{FS: users}}},
		{"no file system", []sqlitedb.Migrations{{Name: "user"}}},
		{"no files", []sqlitedb.Migrations{{Name: "user", FS: fstest.MapFS{}}}},
		{"same name twice", []sqlitedb.Migrations{
			{Name: "user", FS: users}, {Name: "user", FS: users},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := t.TempDir() + "/test.db"
			if db, err := sqlitedb.Open(t.Context(), path, tt.sets...); err == nil {
				db.Close()
				t.Error("Open succeeded")
			}
		})
	}
}
