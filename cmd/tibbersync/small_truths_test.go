package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/testutil"
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
	f := newFixture(t, nil) // its socket holds [web].listen's port
	code, _, errOut := runCmd(t, testCtx(t, 30*time.Second), f.environ, "", "run", "-c", f.cfgPath)
	if code == 0 || !strings.Contains(errOut, "listen on") || strings.Contains(errOut, "web: web:") {
		t.Fatalf("run on a taken port: exit %d, stderr %q", code, errOut)
	}
}

// TestRunWithoutConfigDoesNotCreateStateDir: `run` with no config file and
// no storage directory in the environment refuses, naming what to do,
// instead of silently creating the default state directory.
func TestRunWithoutConfigDoesNotCreateStateDir(t *testing.T) {
	// The installation's default places, moved under a temporary root so
	// that what this machine has in /etc and /var/lib does not matter.
	root := t.TempDir()
	loc := config.Locations{
		System:   filepath.Join(root, "etc/tibbersync/config.toml"),
		Local:    filepath.Join(root, "cwd/config.toml"),
		StateDir: filepath.Join(root, "var/lib/tibbersync"),
	}
	var out syncBuffer
	env := &environment{stdin: strings.NewReader(""), stdout: &out, stderr: &out, environ: []string{"PATH=" + os.Getenv("PATH")}, locations: loc}
	code := runMain(testCtx(t, 30*time.Second), []string{"run"}, env)
	errOut := out.String()
	if code != exitConfig || !strings.Contains(errOut, "no config file") || !strings.Contains(errOut, loc.StateDir) || !strings.Contains(errOut, loc.System) {
		t.Fatalf("run without config: exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(loc.StateDir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("run without config created %s: %v", loc.StateDir, err)
	}
	if _, err := os.Stat(filepath.Join(root, "var")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("run without config created a parent of the state dir: %v", err)
	}

	// The same places with a config file at the system path: it is found
	// and read (its bad key is named).
	state := filepath.Join(root, "state")
	if err := os.MkdirAll(filepath.Dir(loc.System), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loc.System, []byte("[storage]\ndir = \""+state+"\"\n[schedule]\ndevices = \"nonsense\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = syncBuffer{}
	code = runMain(testCtx(t, 30*time.Second), []string{"run"}, env)
	if code != exitConfig || !strings.Contains(out.String(), "schedule.devices") {
		t.Fatalf("run with a config at the system path: exit %d, stderr %q (want the file's bad key named)", code, out.String())
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

// TestRunRefusesTwoPassedSockets: socket activation with two sockets is a
// configuration error naming what to fix, and both sockets are closed.
func TestRunRefusesTwoPassedSockets(t *testing.T) {
	f := newFixture(t, nil)
	a, b := testutil.NewSocket(t).Listener(), testutil.NewSocket(t).Listener()
	var out syncBuffer
	env := &environment{stdin: strings.NewReader(""), stdout: &out, stderr: &out, environ: f.environ,
		inherited: func() ([]net.Listener, error) { return []net.Listener{a, b}, nil }}
	code := runMain(testCtx(t, 30*time.Second), []string{"-c", f.cfgPath, "run"}, env)
	if code != exitConfig || !strings.Contains(out.String(), "2 sockets") || !strings.Contains(out.String(), "ListenStream=") {
		t.Fatalf("two passed sockets: exit %d, output %q", code, out.String())
	}
	for _, ln := range []net.Listener{a, b} {
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("passed socket %s not closed: %v", ln.Addr(), err)
		}
	}
}
