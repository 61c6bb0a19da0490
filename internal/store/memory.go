package store

import (
	"context"
	"fmt"
)

// ReleaseMemory asks SQLite to free what it can of the writer's page
// cache and other caches (PRAGMA shrink_memory). The daemon calls it after
// each job, together with debug.FreeOSMemory, so that memory used by a
// large job (a history backfill fills the 2 MiB page cache and much more
// Go heap) goes back to the system instead of staying resident while the
// daemon idles. The next job refills the cache from the OS page cache.
func (db *DB) ReleaseMemory(ctx context.Context) error {
	if _, err := db.sql.ExecContext(ctx, `PRAGMA shrink_memory`); err != nil {
		return fmt.Errorf("release memory: %w", err)
	}
	return nil
}
