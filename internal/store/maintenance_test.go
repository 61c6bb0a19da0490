package store_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

func TestBackup(t *testing.T) {
	ctx := context.Background()
	db, _, path := MustOpenDB(t)
	mustSave(t, db, twoHomes(t0, 74))
	dir := t.TempDir()
	dest := filepath.Join(dir, "backup.db")
	if err := db.Backup(ctx, dest, false); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != store.FileMode {
		t.Errorf("backup mode = %o", fi.Mode().Perm())
	}
	cp, err := store.OpenReadOnly(ctx, dest)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := count(t, cp, "SELECT count(*) FROM capability_values"), rowCount(t, db, "capability_values"); got != want {
		t.Fatalf("backup has %d value rows, want %d", got, want)
	}
	var ic string
	if err := cp.RawForTest().QueryRow("PRAGMA integrity_check").Scan(&ic); err != nil || ic != "ok" {
		t.Fatalf("integrity_check = %q, %v", ic, err)
	}
	_ = cp.Close()

	if err := db.Backup(ctx, dest, false); !errors.Is(err, store.ErrBackupExists) {
		t.Fatalf("second Backup without force = %v, want ErrBackupExists", err)
	}
	mustSave(t, db, twoHomes(t0.Add(time.Minute), 80))
	if err := db.Backup(ctx, dest, true); err != nil {
		t.Fatalf("Backup with force: %v", err)
	}
	cp, err = store.OpenReadOnly(ctx, dest)
	if err != nil {
		t.Fatal(err)
	}
	if got := count(t, cp, "SELECT count(*) FROM sync_runs"); got != 2 {
		t.Fatalf("forced backup has %d runs, want 2", got)
	}
	_ = cp.Close()
	if err := db.Backup(ctx, path, true); err == nil {
		t.Fatal("backup onto the database itself accepted")
	}
	if err := db.Backup(ctx, dir, true); err == nil {
		t.Fatal("backup onto a directory accepted")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

// R17: a backup taken by another process (read-only) while the daemon
// writes is consistent.
func TestBackupFromReaderWhileWriting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, _, path := MustOpenDB(t)
	mustSave(t, db, twoHomes(t0, 74))
	ro, err := store.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ro.Close() }()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				errc <- nil
				return
			default:
			}
			page := hourPage(t0.Add(time.Duration(i*24)*time.Hour), 24, time.UTC)
			if _, err := db.SaveHistoryPage(ctx, "veh-1", "hour", page, model.HistoryCheckpoint{HomeID: "h1"}); err != nil {
				errc <- err
				return
			}
		}
	}()
	dest := filepath.Join(t.TempDir(), "b.db")
	for i := 0; i < 3; i++ {
		if err := ro.Backup(ctx, dest, true); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("backup %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	cp, err := store.OpenReadOnly(ctx, dest)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cp.Close() }()
	if n := count(t, cp, "SELECT count(*) FROM device_history"); n%48 != 0 {
		t.Fatalf("backup holds %d history rows: a half page", n)
	}
}

// lockedBuffer is the shared concurrency-safe log sink.
type lockedBuffer = testutil.SyncBuffer

// R17: a reader holding a long transaction does not stall the checkpoint,
// the large WAL is reported once, and the WAL goes to 0 bytes once the
// reader lets go.
func TestCheckpointWithLongReader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs lockedBuffer
	path := filepath.Join(t.TempDir(), "data.db")
	db, err := store.Open(ctx, path, store.Options{
		Clock:        clock.NewFake(t0),
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
		WALWarnBytes: 64 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	mustSave(t, db, twoHomes(t0, 74))
	if wal, err := db.Checkpoint(ctx); err != nil || wal != 0 {
		t.Fatalf("idle Checkpoint = %d, %v; want 0 bytes", wal, err)
	}

	ro, err := store.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ro.Close() }()
	rtx, err := ro.RawForTest().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := rtx.QueryRow("SELECT count(*) FROM devices").Scan(&n); err != nil { // takes the snapshot
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		page := hourPage(t0.Add(time.Duration(i*100)*time.Hour), 100, time.UTC)
		if _, err := db.SaveHistoryPage(ctx, "veh-1", "hour", page, model.HistoryCheckpoint{HomeID: "h1"}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		wal, err := db.Checkpoint(ctx)
		if err != nil {
			t.Fatalf("Checkpoint with a reader: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Checkpoint waited %v for the reader", d)
		}
		if wal == 0 {
			t.Fatal("WAL truncated under a reader's snapshot")
		}
	}
	if got := strings.Count(logs.String(), "level=WARN"); got != 1 {
		t.Fatalf("%d warnings, want exactly 1:\n%s", got, logs.String())
	}
	if err := rtx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wal, err := db.Checkpoint(ctx)
	if err != nil || wal != 0 {
		t.Fatalf("Checkpoint after the reader left = %d, %v; want 0 bytes", wal, err)
	}
	if !strings.Contains(logs.String(), "back below") {
		t.Fatalf("no recovery note:\n%s", logs.String())
	}
	// busy_timeout is back on the writer's connection.
	if got := count(t, db, "PRAGMA busy_timeout"); got != store.BusyTimeout {
		t.Fatalf("busy_timeout after Checkpoint = %d", got)
	}
	// And a new episode warns again.
	rtx, _ = ro.RawForTest().BeginTx(ctx, nil)
	_ = rtx.QueryRow("SELECT count(*) FROM devices").Scan(&n)
	for i := 0; i < 3; i++ {
		page := hourPage(t0.Add(time.Duration(5000+i*100)*time.Hour), 100, time.UTC)
		if _, err := db.SaveHistoryPage(ctx, "veh-1", "hour", page, model.HistoryCheckpoint{HomeID: "h1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_ = rtx.Rollback()
	if got := strings.Count(logs.String(), "level=WARN"); got != 2 {
		t.Fatalf("%d warnings after a second episode, want 2", got)
	}
}
