package store

import "database/sql"

// RawForTest exposes the pool so black-box tests can pin connections, hold
// a writer transaction open, and read SQLite's counters.
func (db *DB) RawForTest() *sql.DB { return db.sql }
