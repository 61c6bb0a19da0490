package store

import (
	"context"
	"database/sql"
)

// RawForTest exposes the pool so black-box tests can pin connections, hold
// a writer transaction open, and read SQLite's counters.
func (db *DB) RawForTest() *sql.DB { return db.sql }

// MigrateToForTest applies the migrations up to version to the file at
// path, as an older release would have, and closes it.
func MigrateToForTest(ctx context.Context, path string, version int) error {
	dsn, err := BuildDSN(path, false, "")
	if err != nil {
		return err
	}
	db, err := openPool(ctx, dsn, path, false, wantPragmas(false, ""), Options{})
	if err != nil {
		return err
	}
	defer func() { _ = db.sql.Close() }()
	return db.migrateTo(ctx, version)
}
