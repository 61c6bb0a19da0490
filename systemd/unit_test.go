// Package systemd_test checks the shipped unit: systemd-analyze verify, the
// hardening-score gate (R20), and the secret lint (R11).
package systemd_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const unitFile = "tibbersync.service"

func readUnit(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatalf("read unit: %v", err)
	}
	return string(b)
}

func analyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("systemd-analyze is required in CI (apt-get install systemd): %v", err)
		}
		t.Skip("SKIPPING systemd unit checks: systemd-analyze not installed")
	}
	return p
}

// unitWithBinary writes a copy of the unit whose ExecStart points at an
// existing executable, because verify checks that the binary exists.
func unitWithBinary(t *testing.T) string {
	t.Helper()
	unit := readUnit(t)
	re := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/tibbersync`)
	if !re.MatchString(unit) {
		t.Fatalf("ExecStart does not start /usr/local/bin/tibbersync")
	}
	unit = re.ReplaceAllString(unit, "ExecStart=/bin/true")
	path := filepath.Join(t.TempDir(), unitFile)
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUnitVerifies(t *testing.T) {
	bin := analyze(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "verify", unitWithBinary(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Fatalf("systemd-analyze verify printed warnings:\n%s", s)
	}
}

func TestUnitHardeningScore(t *testing.T) {
	bin := analyze(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// --threshold is on a 0-100 scale: 20 means exposure <= 2.0.
	out, err := exec.CommandContext(ctx, bin, "security", "--offline=yes", "--threshold=20", unitWithBinary(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security gate (exposure must be <= 2.0): %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no exposure line in output:\n%s", out)
	}
	t.Logf("exposure %s %s", m[1], m[2])
}

func TestUnitHasNoSecretsInEnvironment(t *testing.T) {
	unit := readUnit(t)
	if regexp.MustCompile(`(?mi)^\s*Environment=.*(SECRET|TOKEN)`).MatchString(unit) {
		t.Fatal("unit passes a secret through Environment=; use LoadCredential=")
	}
	for _, want := range []string{
		"LoadCredential=client_secret:",
		"RestartPreventExitStatus=78",
		"User=tibbersync",
		"StateDirectory=tibbersync",
		"SystemCallFilter=@system-service",
		"SystemCallFilter=~@privileged",
		"SystemCallErrorNumber=EPERM",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	if strings.Contains(unit, "~@resources") {
		t.Error("unit denies @resources, which crashes the Go runtime at start (R21)")
	}
}
