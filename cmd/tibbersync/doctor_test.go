package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// doctor prints each problem with its fix and exits non-zero; --offline
// keeps it off the network (tests never resolve Tibber's hosts).
func TestDoctorExitAndFixes(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.toml")
	body := "[tibber]\nclient_id = \"\"\nredirect_url = \"http://localhost:8765/callback/\"\n[storage]\ndir = \"" + state + "\"\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, ctx, nil, "", "-c", cfg, "doctor", "--offline")
	if code != exitError {
		t.Fatalf("doctor exit %d, want %d\n%s%s", code, exitError, out, errOut)
	}
	for _, want := range []string{
		"FAIL  client id", "fix: set client_id in " + cfg,
		"FAIL  redirect uri", `fix: set redirect_url = "http://localhost:8765/callback"`,
		"FAIL  state dir", "fix: sudo chmod 0750 " + state,
		"FAIL  daemon", "fix: sudo systemctl enable --now tibbersync",
		"skip  network", "looks offline",
		"problem(s) found",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	// A config that does not load: 78, and the reason.
	if err := os.WriteFile(cfg, []byte("[tibber]\nclient_idd = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(t, ctx, nil, "", "-c", cfg, "doctor", "--offline")
	if code != exitConfig || !strings.Contains(out, "FAIL  config") || !strings.Contains(out, "client_idd") {
		t.Fatalf("bad config: exit %d\n%s", code, out)
	}
	// Nothing was written into the state dir.
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Errorf("doctor wrote into the state dir: %v", entries)
	}
}

// setup without a daemon on a state dir whose secrets belong to someone
// else says what to do instead of only "insecure".
func TestSetupPermissionProblemSaysWhatToDo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give secrets/ to another user")
	}
	ctx := testCtx(t, 2*time.Minute)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(filepath.Join(state, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(state, "secrets"), 4242, 4242); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.toml")
	body := "[tibber]\nclient_id = \"x\"\nclient_secret_file = \"" + secret + "\"\n[storage]\ndir = \"" + state + "\"\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, ctx, nil, "", "-c", cfg, "setup", "--paste")
	if code == 0 || !strings.Contains(errOut, "sudo systemctl start tibbersync") || !strings.Contains(errOut, "setup --paste") {
		t.Fatalf("setup exit %d\n%s%s", code, out, errOut)
	}
}
