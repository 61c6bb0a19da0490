package archtest

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestOneWiring: the command and every harness build the daemon through
// internal/daemon (docs/architecture.md, "The wiring"), not a copy of it.
// Each of them imports internal/daemon, in its code or its tests, and none
// but internal/daemon builds the token source, the Data API client or the
// syncer itself.
func TestOneWiring(t *testing.T) {
	users := []string{"cmd/tibbersync", "internal/e2e", "internal/harness", "internal/leakcheck", "internal/browser", "internal/bench"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"list", "-f", "{{.ImportPath}} {{join .Imports \" \"}} {{join .TestImports \" \"}} {{join .XTestImports \" \"}}"}
	for _, u := range users {
		args = append(args, "github.com/tibbersync/tibbersync/"+u)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=", "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := 0
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		seen++
		if !slices.Contains(f[1:], module+"daemon") {
			t.Errorf("%s does not import internal/daemon: it must build the daemon through daemon.Open", f[0])
		}
	}
	if seen != len(users) {
		t.Fatalf("go list answered for %d packages, want %d:\n%s", seen, len(users), out)
	}

	// The constructors of the wired components are called only in
	// internal/daemon (and in the tests of their own packages).
	for _, u := range users {
		dir := "../../" + u
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".go") {
				continue
			}
			b, err := os.ReadFile(dir + "/" + e.Name())
			if err != nil {
				t.Fatal(err)
			}
			for _, ctor := range []string{"auth.NewSource(", "auth.NewFlow(", "tibber.New(", "jobs.Syncer{", "notify.New("} {
				if strings.Contains(string(b), ctor) {
					t.Errorf("%s/%s calls %s: wiring belongs in internal/daemon", u, e.Name(), ctor)
				}
			}
		}
	}
}
