package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/health"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

// makeDataDB creates an authorized-looking data.db of ~400 KiB at dir.
func makeDataDB(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "data.db")
	db, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetAuthStatus(context.Background(), model.AuthStatus{State: model.AuthOK, Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`CREATE TABLE filler (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	for i := range 400 {
		if _, err := raw.Exec(`INSERT INTO filler (v) VALUES (?)`, strings.Repeat("y", 1000)+string(rune('a'+i%26))); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func statusJSON(t *testing.T, f *fixture) (int, statusReport, string) {
	t.Helper()
	code, out, errOut := runCmd(t, testCtx(t, 60*time.Second), f.environ, "", "-c", f.cfgPath, "status", "--json")
	var rep statusReport
	_ = json.Unmarshal([]byte(out), &rep)
	return code, rep, out + errOut
}

// `status` reads the state directory itself: a damaged data.db (8 KiB
// overwritten in the middle) was reported healthy (issue 17, item 4).
func TestStatusReportsDamagedDataDB(t *testing.T) {
	f := newFixture(t, nil)
	path := makeDataDB(t, filepath.Join(f.dir, "state"))
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
	code, rep, out := statusJSON(t, f)
	if code != statusError || !strings.Contains(out, "damaged") || !strings.Contains(out, "tibbersync backup") || !strings.Contains(out, "operations.md") {
		t.Fatalf("status with a damaged data.db: exit %d, want %d naming the damage, backup and docs/operations.md:\n%s", code, statusError, out)
	}
	if rep.Healthy {
		t.Fatal("report says healthy")
	}
}

// Disk full and a read-only file system are reported by `status`, which
// used to say healthy.
func TestStatusReportsFullAndReadOnlyDisk(t *testing.T) {
	f := newFixture(t, nil)
	state := filepath.Join(f.dir, "state")
	if err := os.MkdirAll(state, 0o750); err != nil {
		t.Fatal(err)
	}
	testutil.MountTmpfs(t, state, "size=32m")
	makeDataDB(t, state)
	if code, rep, out := statusJSON(t, f); code == statusError || !storageOf(rep).OK {
		t.Fatalf("fresh state dir: exit %d storage %+v\n%s", code, storageOf(rep), out)
	}
	filler := testutil.FillDisk(t, state)
	code, rep, out := statusJSON(t, f)
	if code != statusError || storageOf(rep).OK || !strings.Contains(out, "disk full") {
		t.Fatalf("status on a full disk: exit %d, storage %+v\n%s", code, storageOf(rep), out)
	}
	_ = os.Remove(filler)

	ro := filepath.Join(f.dir, "state-ro")
	if err := os.MkdirAll(ro, 0o750); err != nil {
		t.Fatal(err)
	}
	testutil.BindReadOnly(t, state, ro)
	cfg, err := os.ReadFile(f.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.cfgPath, []byte(strings.Replace(string(cfg), state, ro, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, rep, out = statusJSON(t, f)
	if code != statusError || storageOf(rep).OK || !strings.Contains(out, "read-only") {
		t.Fatalf("status on a read-only file system: exit %d, storage %+v\n%s", code, storageOf(rep), out)
	}
}

// storageOf is the report's storage check.
func storageOf(rep statusReport) health.Check {
	for _, c := range rep.Checks {
		if c.Name == "storage" {
			return c
		}
	}
	return health.Check{Name: "storage", Detail: "missing"}
}
