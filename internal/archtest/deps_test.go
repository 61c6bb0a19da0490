// Package archtest checks the import direction that docs/architecture.md
// draws: dependencies point inward, towards the plain types in model.
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

const module = "github.com/tibbersync/tibbersync/internal/"

// forbidden lists, per package, the internal packages it must not depend on,
// directly or transitively, with the reason.
var forbidden = map[string]struct {
	deps []string
	why  string
}{
	"store": {
		[]string{"jobs", "tibber", "auth", "web", "tokenstore", "logging", "daemon"},
		"the store persists model types; it must not depend on the jobs, the API client, the auth flow, the web UI or the token store (secrets stay out of data.db)",
	},
	"model": {
		[]string{"logging", "clock", "jobs", "tibber", "auth", "store", "tokenstore", "web"},
		"model is the innermost package: plain shared types and the leaf secret only",
	},
	"secret": {nil, "secret is a leaf"},
	"clock":  {nil, "clock is a leaf"},
	"dbfile": {nil, "dbfile is a leaf shared by store and tokenstore"},
	"jobs": {
		[]string{"tibber", "store", "auth", "tokenstore", "web", "daemon"},
		"jobs declares the API, Store and APIError interfaces it needs and never sees the concrete types",
	},
	"tibber": {
		[]string{"store", "auth", "tokenstore", "jobs", "web", "daemon"},
		"tibber, auth and store never import each other; they meet only in model",
	},
	"mqtt": {
		[]string{"store", "tibber", "jobs", "auth", "tokenstore", "web", "daemon", "logging"},
		"the MQTT bridge reads data.db through mqtt.Source and knows nothing else of the daemon",
	},
	"auth": {
		[]string{"store", "tibber", "jobs", "web", "daemon"},
		"tibber, auth and store never import each other; they meet only in model",
	},
}

// TestDependenciesPointInward runs `go list -deps` once over the internal
// packages (offline: GOPROXY=off) and checks
// each package's transitive internal dependencies against forbidden.
func TestDependenciesPointInward(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"list", "-f", "{{.ImportPath}}{{range .Deps}} {{.}}{{end}}"}
	for p := range forbidden {
		args = append(args, module+p)
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=", "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	seen := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(fields[0], module)
		rule, ok := forbidden[pkg]
		if !ok {
			t.Fatalf("go list answered for unexpected package %q", fields[0])
		}
		seen[pkg] = true
		var internal []string
		for _, d := range fields[1:] {
			if rest, ok := strings.CutPrefix(d, module); ok {
				internal = append(internal, rest)
			}
		}
		if rule.deps == nil && len(internal) > 0 {
			t.Errorf("internal/%s depends on internal/%s: %s", pkg, strings.Join(internal, ", internal/"), rule.why)
			continue
		}
		for _, d := range internal {
			// A forbidden package's own sub-packages are forbidden too.
			top, _, _ := strings.Cut(d, "/")
			if slices.Contains(rule.deps, top) {
				t.Errorf("internal/%s depends on internal/%s: %s", pkg, d, rule.why)
			}
		}
	}
	for p := range forbidden {
		if !seen[p] {
			t.Errorf("go list said nothing about internal/%s", p)
		}
	}
}
