package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"modernc.org/sqlite"
)

// The connector refuses a connection whose settings differ from what the
// DSN promised, instead of letting the pool use it (R13).
func TestCheckedConnectorRefusesWrongSettings(t *testing.T) {
	// Each case gets its own file: WAL mode, once set, is a property of
	// the file, and would leak from one case into the next.
	dir := t.TempDir()
	path := filepath.Join(dir, "data.db")
	cases := map[string]string{
		// journal_mode left at the default (delete)
		"NoWAL": "file:" + path + "?_busy_timeout=10000&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)&_pragma=journal_size_limit(67108864)",
		// busy timeout missing
		"NoBusyTimeout": "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)&_pragma=journal_size_limit(67108864)",
		// synchronous NORMAL where FULL was asked for
		"WrongSynchronous": "file:" + path + "?_busy_timeout=10000&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)&_pragma=journal_size_limit(67108864)",
	}
	for name, dsn := range cases {
		t.Run(name, func(t *testing.T) {
			dsn = strings.Replace(dsn, path, filepath.Join(dir, name+".db"), 1)
			base, err := sqlite.NewConnector(dsn)
			if err != nil {
				t.Fatal(err)
			}
			pool := sql.OpenDB(checkedConnector{Connector: base, want: wantPragmas(false, "")})
			defer func() { _ = pool.Close() }()
			err = pool.PingContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), "check connection settings") {
				t.Fatalf("Ping = %v, want a settings check failure", err)
			}
		})
	}
	good, err := BuildDSN(path, false, "")
	if err != nil {
		t.Fatal(err)
	}
	base, err := sqlite.NewConnector(good)
	if err != nil {
		t.Fatal(err)
	}
	pool := sql.OpenDB(checkedConnector{Connector: base, want: wantPragmas(false, "")})
	defer func() { _ = pool.Close() }()
	if err := pool.PingContext(context.Background()); err != nil {
		t.Fatalf("BuildDSN's own DSN fails the check: %v", err)
	}
}
