package store_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"modernc.org/sqlite"

	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
)

func TestBuildDSN(t *testing.T) {
	got, err := store.BuildDSN("/var/lib/tibbersync/data.db", false, "")
	if err != nil {
		t.Fatal(err)
	}
	want := "file:/var/lib/tibbersync/data.db?_busy_timeout=10000&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)&_pragma=cache_size(256)&_pragma=journal_size_limit(67108864)&_txlock=immediate"
	if got != want {
		t.Fatalf("writer DSN\n got %s\nwant %s", got, want)
	}
	ro, err := store.BuildDSN("/var/lib/tibbersync/data.db", true, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ro, "file:/var/lib/tibbersync/data.db?mode=ro&") || strings.Contains(ro, "journal_mode") || strings.Contains(ro, "_txlock") {
		t.Fatalf("reader DSN %s: want mode=ro, no journal_mode, no _txlock", ro)
	}
	normal, err := store.BuildDSN("/d/data.db", false, "normal")
	if err != nil || !strings.Contains(normal, "synchronous(NORMAL)") {
		t.Fatalf("NORMAL: %s, %v", normal, err)
	}
}

func TestBuildDSNRejects(t *testing.T) {
	cases := map[string]struct {
		path, sync string
	}{
		"Empty":            {"", ""},
		"Relative":         {"data.db", ""},
		"DotRelative":      {"./data.db", ""},
		"Unclean":          {"/var/lib/../lib/data.db", ""},
		"TrailingSlash":    {"/var/lib/", ""},
		"Query":            {"/tmp/x.db?mode=rwc", ""},
		"Fragment":         {"/tmp/x#y.db", ""},
		"Percent":          {"/tmp/x%2f.db", ""},
		"Newline":          {"/tmp/x\n.db", ""},
		"NUL":              {"/tmp/x\x00.db", ""},
		"InvalidUTF8":      {"/tmp/\xff.db", ""},
		"SyncOff":          {"/tmp/x.db", "OFF"},
		"SyncMultiStmt":    {"/tmp/x.db", "FULL);ATTACH 'x.db' AS x;--"},
		"SyncSemicolon":    {"/tmp/x.db", "FULL; PRAGMA foreign_keys=0"},
		"SyncNumber":       {"/tmp/x.db", "2"},
		"SyncParenthesize": {"/tmp/x.db", "FULL)"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if dsn, err := store.BuildDSN(c.path, false, c.sync); !errors.Is(err, store.ErrBadDSN) {
				t.Fatalf("BuildDSN(%q, %q) = %q, %v; want ErrBadDSN", c.path, c.sync, dsn, err)
			}
		})
	}
}

// The driver itself refuses a multi-statement pragma once Open has switched
// StrictPragmas on, so even a hand-made DSN cannot smuggle in a statement.
func TestStrictPragmasRejectMultiStatement(t *testing.T) {
	MustOpenDB(t)
	if !sqlite.StrictPragmasEnabled() {
		t.Fatal("Open did not enable StrictPragmas")
	}
	dir := t.TempDir()
	c := openRaw(t, filepath.Join(dir, "x.db"), "_pragma=foreign_keys(1)%3BATTACH%20'"+filepath.Join(dir, "y.db")+"'%20AS%20y")
	err := c.Ping()
	if !errors.Is(err, sqlite.ErrMultiStatementPragma) {
		t.Fatalf("Ping = %v, want ErrMultiStatementPragma", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "y.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the smuggled ATTACH ran: %v", err)
	}
}

func readPragmas(t *testing.T, ctx context.Context, c *sql.Conn) (jm string, sync, busy, fk int) {
	t.Helper()
	for _, p := range []struct {
		q   string
		dst any
	}{
		{"PRAGMA journal_mode", &jm}, {"PRAGMA synchronous", &sync},
		{"PRAGMA busy_timeout", &busy}, {"PRAGMA foreign_keys", &fk},
	} {
		if err := c.QueryRowContext(ctx, p.q).Scan(p.dst); err != nil {
			t.Fatalf("%s: %v", p.q, err)
		}
	}
	return
}

// R13: every pooled connection, not only the first, carries the settings.
func TestPragmasOnEveryPooledConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, _, path := MustOpenDB(t)
	ro, err := store.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ro.Close() }()
	pools := map[string]*sql.DB{"Writer": db.RawForTest(), "ReadOnly": ro.RawForTest()}
	for name, pool := range pools {
		t.Run(name, func(t *testing.T) {
			pool.SetMaxOpenConns(4)
			defer pool.SetMaxOpenConns(1)
			var conns []*sql.Conn
			for i := 0; i < 4; i++ {
				c, err := pool.Conn(ctx)
				if err != nil {
					t.Fatalf("conn %d: %v", i, err)
				}
				conns = append(conns, c)
			}
			for i, c := range conns {
				jm, sync, busy, fk := readPragmas(t, ctx, c)
				if jm != "wal" || sync != 2 || busy != 10000 || fk != 1 {
					t.Errorf("conn %d: journal_mode=%s synchronous=%d busy_timeout=%d foreign_keys=%d; want wal 2 10000 1", i, jm, sync, busy, fk)
				}
			}
			for _, c := range conns {
				_ = c.Close()
			}
		})
	}
}

func TestOpenCreatesFileWithMode0640EvenUnderUmask0(t *testing.T) {
	// Process-wide: this test must not run in parallel with others.
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "data.db")
	db, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if _, err := db.SaveInventory(context.Background(), devicesRun(t0), model.InventoryBatch{ObservedAt: t0, Homes: []model.Home{{ID: "h1"}}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o640 {
			t.Errorf("%s mode = %o, want 640", filepath.Base(p), got)
		}
	}
}

func TestOpenKeepsModeOfExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.db")
	db, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err = store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %o, want the operator's 600 kept", fi.Mode().Perm())
	}
}

func TestMigrationsRecordedAndIdempotent(t *testing.T) {
	ctx := context.Background()
	db, _, path := MustOpenDB(t)
	if got, want := rowCount(t, db, "schema_migrations"), int64(store.SchemaVersion()); got != want || want < 1 {
		t.Fatalf("schema_migrations rows = %d, want %d", got, want)
	}
	var name string
	var applied int64
	if err := db.RawForTest().QueryRow("SELECT name, applied_at FROM schema_migrations WHERE version = 1").Scan(&name, &applied); err != nil {
		t.Fatal(err)
	}
	if name != "0001_init.sql" || applied != t0.UnixMilli() {
		t.Fatalf("migration 1 = %q at %d, want 0001_init.sql at %d (the injected clock)", name, applied, t0.UnixMilli())
	}
	if _, err := db.SaveInventory(ctx, devicesRun(t0), model.InventoryBatch{ObservedAt: t0, Homes: []model.Home{{ID: "h1", Name: "Huis"}}}); err != nil {
		t.Fatal(err)
	}
	// Reopen twice more (the first handle stays open: a status process
	// opening the writer path would do the same): nothing re-applied, data kept.
	for i := 0; i < 2; i++ {
		again, err := store.Open(ctx, path, store.Options{})
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		if got := rowCount(t, again, "schema_migrations"); got != int64(store.SchemaVersion()) {
			t.Fatalf("reopen %d: schema_migrations rows = %d", i, got)
		}
		if got := rowCount(t, again, "homes"); got != 1 {
			t.Fatalf("reopen %d: homes = %d, want 1", i, got)
		}
		_ = again.Close()
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	db, _, path := MustOpenDB(t)
	if _, err := db.RawForTest().Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future.sql', 0)"); err != nil {
		t.Fatal(err)
	}
	_, err := store.Open(ctx, path, store.Options{})
	if !errors.Is(err, store.ErrNewerSchema) || !strings.Contains(err.Error(), "upgrade tibbersync") {
		t.Fatalf("Open = %v, want a 'newer schema' error", err)
	}
}

func TestOpenReadOnlyMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.db")
	_, err := store.OpenReadOnly(context.Background(), path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenReadOnly = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenReadOnly created the file: %v", err)
	}
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	ctx := context.Background()
	_, _, path := MustOpenDB(t)
	ro, err := store.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ro.Close() }()
	if err := ro.SetAuthStatus(ctx, model.AuthStatus{State: model.AuthOK}); !errors.Is(err, store.ErrReadOnly) {
		t.Fatalf("SetAuthStatus on reader = %v, want ErrReadOnly", err)
	}
	if _, err := ro.RawForTest().Exec("INSERT INTO homes (id, first_seen_at, last_seen_at) VALUES ('x', 0, 0)"); err == nil {
		t.Fatal("raw insert through a mode=ro connection succeeded")
	}
}

// R17: a reader reads while the writer is inside a transaction, and while
// it commits batch after batch, without an error and without seeing a
// half-written batch.
func TestReaderDuringWriterTransaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, _, path := MustOpenDB(t)
	mustSave(t, db, model.InventoryBatch{ObservedAt: t0, Homes: []model.Home{{ID: "h1", Name: "Huis"}},
		HomeDevices: map[string][]model.Device{"h1": {listItem("d1", "Battery")}}})
	ro, err := store.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ro.Close() }()

	tx, err := db.RawForTest().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO homes (id, name, first_seen_at, last_seen_at) VALUES ('h2', 'Hytte', 1, 1)"); err != nil {
		t.Fatal(err)
	}
	st, err := ro.Summary(ctx)
	if err != nil {
		t.Fatalf("Summary during writer tx: %v", err)
	}
	if st.Tables["homes"] != 1 {
		t.Fatalf("reader saw %d homes during the writer's tx, want 1", st.Tables["homes"])
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := count(t, ro, "SELECT count(*) FROM homes"); got != 2 {
		t.Fatalf("reader saw %d homes after commit, want 2", got)
	}

	// Commits in a loop while the reader polls: every read sees whole pages.
	done := make(chan error, 1)
	go func() {
		base := t0.Add(time.Hour)
		for i := 0; i < 40; i++ {
			page := hourPage(base.Add(time.Duration(i*10)*time.Hour), 10, time.UTC)
			if _, err := db.SaveHistoryPage(ctx, "d1", "hour", page, model.HistoryCheckpoint{HomeID: "h1"}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	reads := 0
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("writer: %v", err)
			}
			finished = true
		case <-ctx.Done():
			t.Fatal("timed out")
		default:
		}
		n := count(t, ro, "SELECT count(*) FROM device_history")
		if n%20 != 0 { // each page writes 10 items x 2 metrics
			t.Fatalf("reader saw %d history rows: a half-written page", n)
		}
		reads++
	}
	if got := count(t, ro, "SELECT count(*) FROM device_history"); got != 800 {
		t.Fatalf("history rows = %d, want 800", got)
	}
	t.Logf("%d reads during 40 commits", reads)
}

// R14: when the writer is not inside a transaction it holds no lock, so
// another connection's BEGIN IMMEDIATE without any busy wait succeeds.
func TestBeginImmediateWhileWriterIdle(t *testing.T) {
	db, _, path := MustOpenDB(t)
	mustSave(t, db, model.InventoryBatch{ObservedAt: t0, Homes: []model.Home{{ID: "h1"}}})
	other := openRaw(t, path, "_pragma=busy_timeout(0)")
	c, err := other.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	for i := 0; i < 3; i++ {
		if _, err := c.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
			t.Fatalf("BEGIN IMMEDIATE with busy_timeout=0 while the writer is idle: %v", err)
		}
		if _, err := c.ExecContext(context.Background(), "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RecordRun(context.Background(), model.Run{Job: "homes", Status: "skipped"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestJobStateRoundTrip(t *testing.T) {
	ctx := context.Background()
	db, _, _ := MustOpenDB(t)
	got, err := db.JobState(ctx, "devices")
	if err != nil || got != (model.JobState{Job: "devices"}) {
		t.Fatalf("JobState of a new job = %+v, %v; want zero with Job set", got, err)
	}
	want := model.JobState{Job: "devices", NextRunAt: t0.Add(5 * time.Minute), LastRunAt: t0, LastSuccessAt: t0.Add(-time.Hour),
		ConsecutiveFailures: 2, BreakerUntil: t0.Add(time.Minute), LastError: "fetch devices: 503"}
	if err := db.SaveJobState(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got, err := db.JobState(ctx, "devices"); err != nil || got != want {
		t.Fatalf("JobState = %+v, %v; want %+v", got, err, want)
	}
	want.ConsecutiveFailures, want.LastError, want.BreakerUntil = 0, "", time.Time{}
	if err := db.SaveJobState(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got, err := db.JobState(ctx, "devices"); err != nil || got != want {
		t.Fatalf("JobState after reset = %+v, %v; want %+v", got, err, want)
	}
}

func TestRecordRunRejectsUnknownJobAndStatus(t *testing.T) {
	ctx := context.Background()
	db, _, _ := MustOpenDB(t)
	if _, err := db.RecordRun(ctx, model.Run{Job: "nope", Status: "ok"}); err == nil {
		t.Fatal("unknown job accepted")
	}
	if _, err := db.RecordRun(ctx, model.Run{Job: "homes", Status: "meh"}); err == nil {
		t.Fatal("unknown status accepted")
	}
	id, err := db.RecordRun(ctx, model.Run{Job: "history", Status: "failed", Error: "token refresh backing off", Requests: 0})
	if err != nil || id <= 0 {
		t.Fatalf("RecordRun = %d, %v", id, err)
	}
	if got := count(t, db, "SELECT count(*) FROM sync_runs WHERE error = 'token refresh backing off' AND finished_at = ?", t0.UnixMilli()); got != 1 {
		t.Fatalf("stored runs with the error and clock time = %d, want 1", got)
	}
}

func TestAuthStatus(t *testing.T) {
	ctx := context.Background()
	db, clk, _ := MustOpenDB(t)
	st, err := db.AuthStatus(ctx)
	if err != nil || st.State != model.AuthSetupRequired {
		t.Fatalf("AuthStatus before any = %+v, %v; want setup_required", st, err)
	}
	want := model.AuthStatus{State: model.AuthOK, Reason: "authorized", Since: t0.Add(-time.Minute),
		GrantedScopes: []string{"openid", "data-api-homes-read", "data-api-vehicles-read"}, Email: "a@example.org"}
	if err := db.SetAuthStatus(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := db.AuthStatus(ctx)
	if err != nil || got.State != want.State || got.Reason != want.Reason || !got.Since.Equal(want.Since) ||
		strings.Join(got.GrantedScopes, " ") != strings.Join(want.GrantedScopes, " ") || got.Email != want.Email {
		t.Fatalf("AuthStatus = %+v, %v; want %+v", got, err, want)
	}
	clk.Advance(time.Hour)
	if err := db.SetAuthStatus(ctx, model.AuthStatus{State: model.AuthReauthRequired, Reason: "refresh token rejected (invalid_grant)"}); err != nil {
		t.Fatal(err)
	}
	got, _ = db.AuthStatus(ctx)
	if got.State != model.AuthReauthRequired || !got.Since.Equal(t0.Add(time.Hour)) || len(got.GrantedScopes) != 0 {
		t.Fatalf("AuthStatus = %+v; want reauth_required since the clock time", got)
	}
	if rowCount(t, db, "auth_status") != 1 {
		t.Fatal("auth_status must hold one row")
	}
	if err := db.SetAuthStatus(ctx, model.AuthStatus{State: "bogus"}); err == nil {
		t.Fatal("bogus state accepted")
	}
}
