//go:build linux

package memtrim

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReleaseBinaryPagesBuildModes builds testdata/relrohelper as the
// Makefile does (not PIE), as -buildmode=pie (Go's linker) and as distros
// build (-buildmode=pie, external linking), and runs each: the helper drops
// its executable's pages, then uses type descriptors, interface tables and
// read-only tables (RELRO in a PIE binary). Each must advise some pages,
// print "ok" and exit 0. Advising the RELRO pages crashed the PIE builds.
func TestReleaseBinaryPagesBuildModes(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the go tool is not in PATH: %v", err)
		}
		t.Skipf("SKIPPED: the go tool is not in PATH (%v); the build-mode test did not run", err)
	}
	cgo := func() bool {
		out, err := exec.Command(goTool, "env", "CGO_ENABLED").Output()
		return err == nil && strings.TrimSpace(string(out)) == "1"
	}
	for _, tc := range []struct {
		name  string
		cgo   bool
		flags []string
		relro bool // the build has a PT_GNU_RELRO segment
	}{
		{name: "exe", flags: []string{"-buildmode=exe"}},
		{name: "pie", flags: []string{"-buildmode=pie"}, relro: true},
		{name: "pie-external", cgo: true, flags: []string{"-buildmode=pie", "-ldflags=-linkmode=external"}, relro: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append(os.Environ(), "CGO_ENABLED=0")
			if tc.cgo {
				if !cgo() {
					t.Skipf("SKIPPED: cgo is not available (go env CGO_ENABLED != 1); %s needs a C linker and did not run", tc.name)
				}
				env = append(os.Environ(), "CGO_ENABLED=1")
			}
			bin := filepath.Join(t.TempDir(), "relrohelper")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			args := append(append([]string{"build", "-o", bin}, tc.flags...), "./testdata/relrohelper")
			build := exec.CommandContext(ctx, goTool, args...)
			build.Env = env
			if out, err := build.CombinedOutput(); err != nil {
				if strings.Contains(string(out), "-buildmode=pie not supported") {
					t.Skipf("SKIPPED: -buildmode=pie is not supported on this platform; the PIE test did not run:\n%s", out)
				}
				t.Fatalf("go %v: %v\n%s", args, err, out)
			}

			f, err := os.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			lay, err := readExeLayout(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if tc.relro && len(lay.relro) == 0 {
				t.Fatalf("%s build has no PT_GNU_RELRO segment: this test proves nothing", tc.name)
			}

			ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var stdout, stderr bytes.Buffer
			run := exec.CommandContext(ctx, bin)
			run.Stdout, run.Stderr = &stdout, &stderr
			if err := run.Run(); err != nil {
				t.Fatalf("%s helper: %v\nstdout:\n%s\nstderr:\n%s", tc.name, err, stdout.Bytes(), firstLines(stderr.String(), 30))
			}
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			if len(lines) != 2 || lines[1] != "ok" || !strings.HasPrefix(lines[0], "advised ") {
				t.Fatalf("%s helper printed %q, want advised N and ok", tc.name, stdout.String())
			}
			n, err := strconv.ParseInt(strings.TrimPrefix(lines[0], "advised "), 10, 64)
			if err != nil || n <= 0 {
				t.Fatalf("%s helper: %s, want pages advised", tc.name, lines[0])
			}
			t.Logf("%s: %d RELRO segment(s), %d bytes advised over two releases", tc.name, len(lay.relro), n)
		})
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, "\n")
}
