package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Row counts live in the counters table as 'inserted:<table>' and
// 'deleted:<table>' (rows = inserted - deleted), kept by an AFTER INSERT and
// an AFTER DELETE trigger per table, in the same transaction as the write.
// Two counters rather than one let a transaction tell its own changes from
// the triggers' (see totalChanges). Summary reads them instead of counting, so
// /metrics, /readyz and the status page cost the same at 10 rows and at
// 10 M rows.

// insertedCounter and deletedCounter name a table's counters.
func insertedCounter(table string) string { return "inserted:" + table }
func deletedCounter(table string) string  { return "deleted:" + table }

// insertsCountedByStore are tables whose inserts the store counts itself,
// once per transaction, instead of by a trigger per row: history_values
// takes millions of rows, and a trigger per row would add an UPDATE of
// counters to each. Their deletes still go through a trigger.
var insertsCountedByStore = map[string]bool{"history_values": true}

// addInserted adds n to table's inserted counter within tx.
func addInserted(ctx context.Context, tx *tx, table string, n int64) error {
	if n == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE counters SET value = value + ?1 WHERE name = ?2`, n, insertedCounter(table)); err != nil {
		return fmt.Errorf("count inserted rows of %s: %w", table, err)
	}
	return nil
}

// uncountedTables have no row-count triggers: counters itself, the
// migration bookkeeping and the legacy history table that the conversion
// empties and drops.
var uncountedTables = map[string]bool{"counters": true, "schema_migrations": true, legacyHistoryTable: true}

// quoteIdent quotes an SQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// quoteText quotes an SQL string literal.
func quoteText(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// ensureCounters gives every table (those of later migrations too) its
// row-count triggers and its counters row, counting the table once when
// its triggers are created. It runs when the writer opens data.db, in one
// transaction, and does nothing when every table already has them.
func (db *DB) ensureCounters(ctx context.Context) error {
	missing, err := tablesWithoutCounter(ctx, db.sql)
	if err != nil || len(missing) == 0 {
		return err
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("row counters: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	// Checked again inside the write transaction.
	if missing, err = tablesWithoutCounter(ctx, tx); err != nil {
		return err
	}
	for _, t := range missing {
		ins, del := quoteText(insertedCounter(t)), quoteText(deletedCounter(t))
		insertTrigger := `CREATE TRIGGER ` + quoteIdent("count_"+t+"_insert") + ` AFTER INSERT ON ` + quoteIdent(t) + `
BEGIN UPDATE counters SET value = value + 1 WHERE name = ` + ins + `; END`
		if insertsCountedByStore[t] {
			insertTrigger = `SELECT 1`
		}
		for _, q := range []string{
			`DROP TRIGGER IF EXISTS ` + quoteIdent("count_"+t+"_insert"),
			`DROP TRIGGER IF EXISTS ` + quoteIdent("count_"+t+"_delete"),
			insertTrigger,
			`CREATE TRIGGER ` + quoteIdent("count_"+t+"_delete") + ` AFTER DELETE ON ` + quoteIdent(t) + `
BEGIN UPDATE counters SET value = value + 1 WHERE name = ` + del + `; END`,
			`INSERT INTO counters (name, value) SELECT ` + ins + `, count(*) FROM ` + quoteIdent(t) + `
WHERE 1 ON CONFLICT (name) DO UPDATE SET value = excluded.value`,
			`INSERT INTO counters (name, value) VALUES (` + del + `, 0)
ON CONFLICT (name) DO UPDATE SET value = excluded.value`,
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("row counters of %s: %w", t, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("row counters: commit: %w", err)
	}
	return nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// tablesWithoutCounter lists the tables that lack their row-count
// triggers or counters row.
func tablesWithoutCounter(ctx context.Context, q querier) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT t.name,
    EXISTS (SELECT 1 FROM sqlite_master AS g WHERE g.type = 'trigger' AND g.name = 'count_' || t.name || '_insert'),
    EXISTS (SELECT 1 FROM sqlite_master AS g WHERE g.type = 'trigger' AND g.name = 'count_' || t.name || '_delete')
      AND EXISTS (SELECT 1 FROM counters AS c WHERE c.name = 'inserted:' || t.name)
      AND EXISTS (SELECT 1 FROM counters AS c WHERE c.name = 'deleted:' || t.name)
FROM sqlite_master AS t
WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite\_%' ESCAPE '\'
ORDER BY t.name`)
	if err != nil {
		return nil, fmt.Errorf("row counters: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []string
	for rows.Next() {
		var (
			n                  string
			hasInsert, hasRest bool
		)
		if err := rows.Scan(&n, &hasInsert, &hasRest); err != nil {
			return nil, fmt.Errorf("row counters: %w", err)
		}
		if uncountedTables[n] {
			continue
		}
		if !hasRest || hasInsert == insertsCountedByStore[n] {
			out = append(out, n)
		}
	}
	return out, rows.Err()
}

// triggerChangesSQL is how many row changes the row-count triggers have
// made: one per counted insert or delete (history_values' inserts are
// counted by the store, not by a trigger).
const triggerChangesSQL = `SELECT coalesce(sum(value), 0) FROM counters
WHERE (name GLOB 'inserted:*' AND name <> 'inserted:history_values') OR name GLOB 'deleted:*'`
