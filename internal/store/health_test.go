package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

var bg = context.Background()

func writeState(db *store.DB, n int) error {
	return db.SaveJobState(bg, model.JobState{Job: "devices", NextRunAt: t0.Add(time.Duration(n) * time.Minute), LastRunAt: t0})
}

// A data.db deleted under the running process was written to as a ghost
// until restart (all writes lost); a backup moved over it silently
// discarded newer data. Now the store notices, refuses writes and says so.
func TestDataDBDeletedOrReplacedRefusesWrites(t *testing.T) {
	for _, how := range []string{"deleted", "replaced"} {
		t.Run(how, func(t *testing.T) {
			db, _, path := MustOpenDB(t)
			if err := writeState(db, 1); err != nil {
				t.Fatal(err)
			}
			h := &store.Health{Dir: filepath.Dir(path), DB: db}
			if st := h.Check(); !st.OK() {
				t.Fatalf("healthy store: %v", st.Problems)
			}
			var kinds []string
			db.OnStorageError(func(k string) { kinds = append(kinds, k) })
			if how == "deleted" {
				for _, p := range []string{path, path + "-wal", path + "-shm"} {
					_ = os.Remove(p)
				}
			} else {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path+".backup", b, 0o640); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(path+".backup", path); err != nil {
					t.Fatal(err)
				}
			}
			err := h.BeforeJob()
			if !errors.Is(err, store.ErrFileReplaced) || !strings.Contains(err.Error(), how) || !strings.Contains(err.Error(), "restart") {
				t.Fatalf("BeforeJob = %v, want ErrFileReplaced saying %s and what to do", err, how)
			}
			if err := writeState(db, 2); !errors.Is(err, store.ErrFileReplaced) {
				t.Fatalf("write after the file was %s: %v, want it refused", how, err)
			}
			if st := h.Last(); st.OK() || !strings.Contains(strings.Join(st.Problems, " "), how) {
				t.Fatalf("health %+v does not say the file was %s", st, how)
			}
			if len(kinds) != 1 || kinds[0] != "replaced" {
				t.Fatalf("storage error callbacks %v, want one \"replaced\"", kinds)
			}
		})
	}
}

// 8 KiB overwritten in the middle of data.db: the background quick_check
// finds it, writes are refused, and the health names backup and the docs.
func TestQuickCheckFindsDamageAndRefusesWrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data.db")
	clk := clock.NewFake(t0)
	db, err := store.Open(bg, path, store.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.QuickCheck(bg, 0); err != nil {
		t.Fatalf("quick_check of a fresh file: %v", err)
	}
	// Grow the file: a filler table of ~400 KiB.
	raw := db.RawForTest()
	if _, err := raw.Exec(`CREATE TABLE filler (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	for i := range 400 {
		if _, err := raw.Exec(`INSERT INTO filler (v) VALUES (?)`, strings.Repeat("x", 1000)+string(rune('a'+i%26))); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mid := len(b) / 2 &^ 4095
	for i := mid; i < mid+8192; i++ {
		b[i] = 0x5A
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	db, err = store.Open(bg, path, store.Options{Clock: clk})
	if err != nil {
		t.Fatalf("reopen (schema intact, damage in the middle): %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := writeState(db, 1); err != nil {
		t.Fatalf("write before the check: %v", err)
	}
	h := &store.Health{Dir: dir, DB: db}
	err = h.RunQuickCheck(bg, time.Minute)
	if !errors.Is(err, store.ErrDamaged) {
		t.Fatalf("quick_check: %v, want ErrDamaged", err)
	}
	if err := writeState(db, 2); !errors.Is(err, store.ErrDamaged) {
		t.Fatalf("write into a damaged data.db: %v, want it refused", err)
	}
	st := h.Last()
	if msg := strings.Join(st.Problems, " "); !strings.Contains(msg, "damaged") || !strings.Contains(msg, "backup") || !strings.Contains(msg, "operations.md") {
		t.Fatalf("health %v does not name the damage, backup and the recovery steps", st.Problems)
	}
}

// Disk full and a read-only file system show in the health (they were
// only logged as "save job state" errors while /readyz stayed ready).
func TestHealthReportsDiskFullAndReadOnly(t *testing.T) {
	dir := t.TempDir()
	testutil.MountTmpfs(t, dir, "size=32m")
	path := filepath.Join(dir, "data.db")
	db, err := store.Open(bg, path, store.Options{Clock: clock.NewFake(t0)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	var kinds []string
	db.OnStorageError(func(k string) { kinds = append(kinds, k) })
	h := &store.Health{Dir: dir, DB: db}
	if st := h.Check(); !st.OK() {
		t.Fatalf("fresh tmpfs: %v", st.Problems)
	}
	filler := testutil.FillDisk(t, dir)
	var werr error
	for i := range 200 {
		// Enough distinct rows that the WAL must grow.
		if werr = db.SetAuthStatus(bg, model.AuthStatus{State: model.AuthOK, Reason: strings.Repeat("r", 3000) + string(rune('a'+i%26)), Since: t0}); werr != nil {
			break
		}
	}
	if werr == nil {
		t.Fatal("no write failed on a full disk")
	}
	st := h.Check()
	msg := strings.Join(st.Problems, " ")
	if st.OK() || !strings.Contains(msg, "disk full") || !strings.Contains(msg, "writing data.db failed") {
		t.Fatalf("health on a full disk: %v", st.Problems)
	}
	if err := h.BeforeJob(); err == nil {
		t.Fatal("BeforeJob allows a job on a full disk")
	}
	if len(kinds) == 0 || kinds[0] != "write" {
		t.Fatalf("storage error callbacks %v, want \"write\"", kinds)
	}
	// Space returns: a write succeeds and the health is clean again.
	_ = os.Remove(filler)
	if err := writeState(db, 3); err != nil {
		t.Fatalf("write after space returned: %v", err)
	}
	if st := h.Check(); !st.OK() {
		t.Fatalf("after space returned: %v", st.Problems)
	}
	// The file system turns read-only under the running daemon (ext4
	// errors=remount-ro): a read-only bind mount of the state directory.
	ro := t.TempDir()
	testutil.BindReadOnly(t, dir, ro)
	h.Dir = ro
	st = h.Check()
	if st.OK() || !strings.Contains(strings.Join(st.Problems, " "), "read-only") {
		t.Fatalf("health on a read-only file system: %v", st.Problems)
	}
	if err := h.BeforeJob(); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("BeforeJob on a read-only file system: %v", err)
	}
}
