package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFlagsAfterPositionalArguments: the usage lines put flags after the
// job or file (tibbersync sync devices -c FILE, tibbersync backup FILE
// --force); both orders work, and "--" ends the flags.
func TestFlagsAfterPositionalArguments(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	_, _, stateDir := syncedApp(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("[storage]\ndir = \""+stateDir+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "copy.db")
	if code, out, errOut := runCmd(t, ctx, nil, "", "backup", dest, "-c", cfg); code != 0 || !strings.Contains(out, "checked") {
		t.Fatalf("backup FILE -c CFG: exit %d, out %q, err %q", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, ctx, nil, "", "backup", dest, "-c", cfg); code == 0 || !strings.Contains(errOut, "exist") {
		t.Fatalf("backup over an existing file: exit %d, err %q; want a refusal", code, errOut)
	}
	if code, out, errOut := runCmd(t, ctx, nil, "", "backup", dest, "--force", "-c", cfg); code != 0 || strings.Contains(errOut, "unexpected arguments") {
		t.Fatalf("backup FILE --force -c CFG: exit %d, out %q, err %q", code, out, errOut)
	}
	// status takes no positional argument; a flag after "--" is one.
	if code, _, errOut := runCmd(t, ctx, nil, "", "status", "-c", cfg, "--", "--json"); code != exitUsage || !strings.Contains(errOut, "unexpected arguments: --json") {
		t.Fatalf("status -- --json: exit %d, err %q; want a usage error", code, errOut)
	}
	if code, out, _ := runCmd(t, ctx, nil, "", "status", "--json", "-c", cfg); code == exitUsage || !json.Valid([]byte(out)) {
		t.Fatalf("status --json -c CFG: exit %d, out %q", code, out)
	}
}

// TestStatusJSONWithoutDatabase: status --json prints a JSON error object,
// not nothing, when data.db is missing.
func TestStatusJSONWithoutDatabase(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("[storage]\ndir = \""+filepath.Join(dir, "nothing-here")+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, ctx, nil, "", "status", "--json", "-c", cfg)
	var rep struct {
		Healthy  *bool  `json:"healthy"`
		ExitCode int    `json:"exit_code"`
		Error    string `json:"error"`
		DataDB   string `json:"data_db"`
	}
	if code != statusError || json.Unmarshal([]byte(out), &rep) != nil || rep.Healthy == nil || *rep.Healthy ||
		rep.ExitCode != statusError || rep.Error == "" || !strings.HasSuffix(rep.DataDB, "data.db") {
		t.Fatalf("status --json without data.db: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestStatusTimesCarryTheirZone: the CLI prints local times with their
// zone, so they cannot be mistaken for the page's times.
func TestStatusTimesCarryTheirZone(t *testing.T) {
	got := fmtTime(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	zone, _ := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC).Local().Zone()
	if !strings.HasSuffix(got, " "+zone) {
		t.Fatalf("fmtTime = %q, want the zone %s at the end", got, zone)
	}
}

// TestBindErrorHasOnePrefix: a taken port is reported once, plainly.
func TestBindErrorHasOnePrefix(t *testing.T) {
	f := newFixture(t, nil)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", f.port))
	if err != nil {
		t.Skipf("cannot take the port first: %v", err)
	}
	defer ln.Close()
	code, _, errOut := runCmd(t, testCtx(t, 30*time.Second), f.environ, "", "run", "-c", f.cfgPath)
	if code == 0 || !strings.Contains(errOut, "listen on") || strings.Contains(errOut, "web: web:") {
		t.Fatalf("run on a taken port: exit %d, stderr %q", code, errOut)
	}
}

// TestRunWithoutConfigDoesNotCreateStateDir: `run` with no config file and
// no storage directory in the environment refuses, naming what to do,
// instead of silently creating the default state directory.
func TestRunWithoutConfigDoesNotCreateStateDir(t *testing.T) {
	if _, err := os.Stat("/var/lib/tibbersync"); err == nil {
		t.Skip("/var/lib/tibbersync exists on this machine")
	}
	if _, err := os.Stat("/etc/tibbersync/config.toml"); err == nil {
		t.Skip("/etc/tibbersync/config.toml exists on this machine")
	}
	t.Chdir(t.TempDir()) // no ./config.toml
	code, _, errOut := runCmd(t, testCtx(t, 30*time.Second), []string{"PATH=" + os.Getenv("PATH")}, "", "run")
	if code != exitConfig || !strings.Contains(errOut, "no config file") || !strings.Contains(errOut, "/var/lib/tibbersync") {
		t.Fatalf("run without config: exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat("/var/lib/tibbersync"); err == nil {
		t.Fatal("run without config created /var/lib/tibbersync")
	}
}

// TestSyncUpdatesJobState: runs made outside the scheduler (`tibbersync
// sync`, RunJob) update job_state like scheduled runs, so sync_health and
// /readyz see them.
func TestSyncUpdatesJobState(t *testing.T) {
	a, _, _ := syncedApp(t)
	ctx := testCtx(t, 60*time.Second)
	r, err := a.RunJob(ctx, "homes")
	if err != nil || r.Status != "ok" {
		t.Fatalf("homes: %+v %v", r, err)
	}
	st, err := a.Store().JobState(ctx, "homes")
	if err != nil {
		t.Fatal(err)
	}
	if !st.LastSuccessAt.Equal(r.FinishedAt) || !st.LastRunAt.Equal(r.StartedAt) || st.ConsecutiveFailures != 0 {
		t.Fatalf("job_state after a sync run: %+v; run %+v", st, r)
	}
}
