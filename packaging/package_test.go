// Package packaging_test builds the Debian packages with `make package`
// and checks them: metadata and contents (dpkg-deb), lintian, the packaged
// unit, the packaged binary run as a non-root service user with a systemd
// credential while root authorizes it through the control socket, and
// (where the machine allows) a real dpkg install/upgrade/remove/purge.
package packaging_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var arches = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "armhf": elf.EM_ARM}

// requireTools skips (loudly) without the Debian tools, except in CI where
// .ci/run installs them and a skip would hide a broken package.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required in CI (.ci/run installs it): %v", tool, err)
			}
			t.Skipf("SKIPPING package checks: %s not installed (apt-get install dpkg-dev lintian)", tool)
		}
	}
}

var built struct {
	once    sync.Once
	dir     string
	version string // the Debian version in the file names
	stamp   string // `make version`, passed to make package as VERSION
	debs    map[string]string
	out     string
	err     error
}

var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	os.Exit(code)
}

// makeCmd runs make on the repository's Makefile as a top-level make: no
// MAKEFLAGS, MFLAGS or MAKELEVEL from a make this test may run under (as in
// `make stress-test` → `make test`), and no "Entering directory" lines,
// which a sub-make prints on stdout and which once ended up in the version
// read from `make version`.
func makeCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "make", append([]string{"--no-print-directory", "-C", ".."}, args...)...)
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES":
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// packages runs `make package` once into a temporary DIST and returns the
// three .deb files by architecture.
func packages(t *testing.T) (version string, debs map[string]string) {
	t.Helper()
	requireTools(t, "dpkg-deb", "make", "git")
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "tibbersync-pkg-")
		if err != nil {
			built.err = err
			return
		}
		cleanups = append(cleanups, func() { os.RemoveAll(dir) })
		built.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		// The version is read once and passed on, so the stamp checked below
		// is the one make package was given.
		vout, err := makeCmd(ctx, "-s", "version").Output()
		if err != nil {
			built.err = fmt.Errorf("make version: %v", err)
			return
		}
		built.stamp = strings.TrimSpace(string(vout))
		cmd := makeCmd(ctx, "package", "DIST="+dir, "VERSION="+built.stamp)
		out, err := cmd.CombinedOutput()
		built.out = string(out)
		if err != nil {
			built.err = fmt.Errorf("make package: %v", err)
			return
		}
		built.debs = map[string]string{}
		for arch := range arches {
			m, _ := filepath.Glob(filepath.Join(dir, "tibbersync_*_"+arch+".deb"))
			if len(m) != 1 {
				built.err = fmt.Errorf("want one tibbersync_<version>_%s.deb, found %v", arch, m)
				return
			}
			built.debs[arch] = m[0]
			v := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m[0]), "tibbersync_"), "_"+arch+".deb")
			if built.version != "" && v != built.version {
				built.err = fmt.Errorf("versions differ between packages: %s and %s", built.version, v)
				return
			}
			built.version = v
		}
	})
	if built.err != nil {
		t.Fatalf("%v\n%s", built.err, built.out)
	}
	return built.version, built.debs
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// extract unpacks a .deb (data and control) into a fresh directory.
func extract(t *testing.T, deb string) (root, control string) {
	t.Helper()
	base := t.TempDir()
	root, control = filepath.Join(base, "root"), filepath.Join(base, "DEBIAN")
	run(t, "dpkg-deb", "-x", deb, root)
	run(t, "dpkg-deb", "-e", deb, control)
	return root, control
}

type entry struct{ mode, owner string }

func listing(t *testing.T, deb string) map[string]entry {
	t.Helper()
	out := run(t, "dpkg-deb", "-c", deb)
	m := map[string]entry{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("odd dpkg-deb -c line %q", line)
		}
		m[strings.TrimPrefix(f[5], ".")] = entry{f[0], f[1]}
	}
	return m
}

func TestPackageMetadataAndContents(t *testing.T) {
	version, debs := packages(t)
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(version) {
		t.Fatalf("package version %q is not a Debian native version", version)
	}
	repoUnit, err := os.ReadFile("../systemd/tibbersync.service")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	for arch, machine := range arches {
		t.Run(arch, func(t *testing.T) {
			deb := debs[arch]
			fields := run(t, "dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends", "Section", "Maintainer", "Description")
			for _, want := range []string{
				"Package: tibbersync\n", "Version: " + version + "\n", "Architecture: " + arch + "\n",
				"Depends: init-system-helpers", "Section: net\n", "Maintainer: tibbersync maintainers <",
				"Description: local SQLite copy of your Tibber Data API data\n",
			} {
				if !strings.Contains(fields, want) {
					t.Errorf("control fields lack %q:\n%s", want, fields)
				}
			}
			files := listing(t, deb)
			for path, want := range map[string]entry{
				"/usr/bin/tibbersync":                        {"-rwxr-xr-x", "root/root"},
				"/usr/lib/systemd/system/tibbersync.service": {"-rw-r--r--", "root/root"},
				"/usr/lib/sysusers.d/tibbersync.conf":        {"-rw-r--r--", "root/root"},
				// root:tibbersync comes from postinst's dpkg-statoverride.
				"/etc/tibbersync/config.toml":            {"-rw-r-----", "root/root"},
				"/usr/share/doc/tibbersync/README.md":    {"-rw-r--r--", "root/root"},
				"/usr/share/doc/tibbersync/schema.md":    {"-rw-r--r--", "root/root"},
				"/usr/share/doc/tibbersync/changelog.gz": {"-rw-r--r--", "root/root"},
				"/usr/share/doc/tibbersync/copyright":    {"-rw-r--r--", "root/root"},
			} {
				got, ok := files[path]
				if !ok {
					t.Errorf("package lacks %s", path)
				} else if got != want {
					t.Errorf("%s: %v, want %v", path, got, want)
				}
			}
			for path := range files {
				if strings.HasPrefix(path, "/var/") || strings.HasPrefix(path, "/usr/local/") {
					t.Errorf("package ships %s (state and /usr/local are not the package's)", path)
				}
			}

			root, control := extract(t, deb)
			conffiles, err := os.ReadFile(filepath.Join(control, "conffiles"))
			if err != nil || strings.TrimSpace(string(conffiles)) != "/etc/tibbersync/config.toml" {
				t.Errorf("conffiles = %q, %v; want /etc/tibbersync/config.toml", conffiles, err)
			}
			scripts := map[string]string{}
			for _, s := range []string{"postinst", "prerm", "postrm"} {
				b, err := os.ReadFile(filepath.Join(control, s))
				if err != nil {
					t.Fatalf("maintainer script %s: %v", s, err)
				}
				if fi, _ := os.Stat(filepath.Join(control, s)); fi.Mode().Perm()&0o111 == 0 {
					t.Errorf("%s is not executable", s)
				}
				scripts[s] = string(b)
			}
			checkScripts(t, scripts)

			// The binary: the cross build for this architecture, static and stripped.
			bin := filepath.Join(root, "usr/bin/tibbersync")
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != machine {
				t.Errorf("binary machine %v, want %v", f.Machine, machine)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Error("binary has an ELF interpreter: not static")
				}
			}
			if f.Section(".symtab") != nil {
				t.Error("binary has a symbol table: not stripped (-s)")
			}
			bi, err := buildinfo.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			settings := map[string]string{}
			for _, s := range bi.Settings {
				settings[s.Key] = s.Value
			}
			if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
				t.Errorf("binary not built like `make cross`: %v", settings)
			}
			if arch == "armhf" && settings["GOARM"] != "6" {
				// Raspberry Pi OS 32-bit is ARMv6 hard-float (Pi Zero/1 included).
				t.Errorf("armhf binary has GOARM=%q, want 6", settings["GOARM"])
			}
			cross, err := os.ReadFile(filepath.Join(built.dir, "tibbersync-linux-"+arch))
			if err != nil {
				t.Fatalf("make cross output: %v", err)
			}
			if packaged, _ := os.ReadFile(bin); !bytes.Equal(packaged, cross) {
				t.Error("packaged binary differs from make cross's binary")
			}
			if arch == "amd64" {
				// The version is stamped through ldflags, like `make build`.
				out := run(t, bin, "version")
				if !strings.HasPrefix(out, "tibbersync "+built.stamp+" ") {
					t.Errorf("tibbersync version = %q, not the stamped version %q", out, built.stamp)
				}
			}

			// The unit: the repository's hardened unit, started from /usr/bin.
			unit, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/tibbersync.service"))
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`(?m)^ExecStart=/usr/bin/tibbersync run -c /etc/tibbersync/config.toml$`).Match(unit) {
				t.Errorf("packaged unit's ExecStart is not /usr/bin/tibbersync run -c /etc/tibbersync/config.toml")
			}
			if a, b := hardening(string(unit)), hardening(string(repoUnit)); a != b {
				t.Errorf("packaged unit's settings differ from systemd/tibbersync.service:\n%s\n---\n%s", a, b)
			}
			sysusers, _ := os.ReadFile(filepath.Join(root, "usr/lib/sysusers.d/tibbersync.conf"))
			if !regexp.MustCompile(`(?m)^u tibbersync - "[^"]+" /var/lib/tibbersync /usr/sbin/nologin$`).Match(sysusers) {
				t.Errorf("sysusers.d entry missing or wrong:\n%s", sysusers)
			}
			conf, _ := os.ReadFile(filepath.Join(root, "etc/tibbersync/config.toml"))
			if !bytes.Equal(conf, example) {
				t.Error("/etc/tibbersync/config.toml is not config.example.toml")
			}
			checkChangelog(t, filepath.Join(root, "usr/share/doc/tibbersync/changelog.gz"), version)
		})
	}
}

// hardening is the unit without ExecStart and comments: what must stay
// identical between the repository's unit and the packaged one.
func hardening(unit string) string {
	var keep []string
	for _, l := range strings.Split(unit, "\n") {
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "ExecStart=") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

func checkScripts(t *testing.T, s map[string]string) {
	t.Helper()
	for _, want := range []string{
		"systemd-sysusers /usr/lib/sysusers.d/tibbersync.conf",
		"systemctl --system daemon-reload",
		"deb-systemd-helper enable",
		"dpkg-statoverride --update --add root tibbersync 0640",
		"NOT started",
	} {
		if !strings.Contains(s["postinst"], want) {
			t.Errorf("postinst lacks %q", want)
		}
	}
	if !strings.Contains(s["prerm"], "deb-systemd-invoke stop tibbersync.service") {
		t.Error("prerm does not stop the unit on remove")
	}
	purge := s["postrm"][strings.Index(s["postrm"], "purge)"):]
	say, rm := strings.Index(purge, `echo "tibbersync: purge: removing $state`), strings.Index(purge, `rm -rf "$state"`)
	if say < 0 || rm < 0 || say > rm {
		t.Error("postrm purge does not say it removes /var/lib/tibbersync before removing it")
	}
	remove := s["postrm"][:strings.Index(s["postrm"], "purge)")]
	if strings.Contains(remove, "rm -") {
		t.Error("postrm removes files on plain remove")
	}
}

func checkChangelog(t *testing.T, path, version string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("changelog.gz: %v", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if want := "tibbersync (" + version + ") unstable; urgency=medium"; lines[0] != want {
		t.Errorf("changelog starts %q, want %q", lines[0], want)
	}
	if !regexp.MustCompile(`^ -- .+ <[^>]+>  [A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$`).MatchString(lines[len(lines)-1]) {
		t.Errorf("changelog trailer %q is not Debian format", lines[len(lines)-1])
	}
	for _, l := range lines[:len(lines)-1] {
		if len(l) > 80 {
			t.Errorf("changelog line longer than 80: %q", l)
		}
	}
}

func TestLintian(t *testing.T) {
	requireTools(t, "lintian")
	_, debs := packages(t)
	args := []string{"--fail-on", "error,warning", "--tag-display-limit", "0"}
	for _, arch := range []string{"amd64", "arm64", "armhf"} {
		args = append(args, debs[arch])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "lintian", args...).CombinedOutput()
	var bad []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			bad = append(bad, l)
		}
	}
	if err != nil || len(bad) > 0 {
		t.Fatalf("lintian: %v\n%s", err, out)
	}
}

// The packaged unit passes systemd-analyze verify with its binary in place.
func TestPackagedUnitVerifies(t *testing.T) {
	requireTools(t, "systemd-analyze")
	_, debs := packages(t)
	root, _ := extract(t, debs["amd64"])
	unit, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/tibbersync.service"))
	if err != nil {
		t.Fatal(err)
	}
	u := strings.Replace(string(unit), "ExecStart=/usr/bin/tibbersync", "ExecStart="+filepath.Join(root, "usr/bin/tibbersync"), 1)
	path := filepath.Join(t.TempDir(), "tibbersync.service")
	if err := os.WriteFile(path, []byte(u), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
