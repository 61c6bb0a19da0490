package store_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// R18: only SQLite touches the database files, and only one SQLite is linked.

// repoRoot is the module root, two levels up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	return root
}

func goCmd(t *testing.T, root string, args ...string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("SKIPPING R18 dependency checks: go not in PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

func TestOnlyModerncSQLiteIsLinked(t *testing.T) {
	root := repoRoot(t)
	deps := goCmd(t, root, "list", "-deps", "./...")
	if strings.Contains(deps, "github.com/mattn/go-sqlite3") {
		t.Fatal("mattn/go-sqlite3 is linked; only modernc.org/sqlite may be (R18)")
	}
	if !strings.Contains(deps, "modernc.org/sqlite") {
		t.Fatal("modernc.org/sqlite is not among the dependencies")
	}
}

func TestLibcIsTheVersionSQLiteRequires(t *testing.T) {
	root := repoRoot(t)
	selected := ""
	for _, line := range strings.Split(goCmd(t, root, "list", "-m", "all"), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "modernc.org/libc" {
			selected = f[1]
		}
	}
	sqliteVer := ""
	for _, line := range strings.Split(goCmd(t, root, "list", "-m", "modernc.org/sqlite"), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			sqliteVer = f[1]
		}
	}
	want := ""
	for _, line := range strings.Split(goCmd(t, root, "mod", "graph"), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "modernc.org/sqlite@"+sqliteVer && strings.HasPrefix(f[1], "modernc.org/libc@") {
			want = strings.TrimPrefix(f[1], "modernc.org/libc@")
		}
	}
	if selected == "" || want == "" || selected != want {
		t.Fatalf("modernc.org/libc selected %q, modernc.org/sqlite %s requires %q; pin libc to what sqlite requires (R18)", selected, sqliteVer, want)
	}
}

// dbFileCalls are the reviewed places where product code calls an os file
// function that could reach a database file. Each either runs before SQLite
// has the file open or works on a closed copy; a new call must be reviewed
// and added here with its reason.
var dbFileCalls = map[string]string{
	"internal/store/store.go: os.OpenFile(path":            "creates an empty data.db with its mode before SQLite opens it",
	"internal/store/maintenance.go: os.Remove(tmp":         "removes a failed backup copy, never opened by the daemon",
	"internal/store/maintenance.go: os.OpenFile(tmp":       "creates the empty backup copy 0640 before VACUUM INTO writes it",
	"internal/store/maintenance.go: os.Chmod(tmp":          "the finished VACUUM INTO copy, closed",
	"internal/store/maintenance.go: os.Rename(tmp":         "moves the checked backup copy into place",
	"internal/store/maintenance.go: os.Open(dir":           "fsyncs the backup's directory",
	"internal/tokenstore/store.go: os.Chmod(path":          "the secrets directory (0700), and tokens.db (0600) right after creating it, before SQLite opens it",
	"internal/tokenstore/store.go: os.OpenFile(path":       "creates an empty tokens.db 0600 before SQLite opens it",
	"internal/auth/lock.go: os.OpenFile(path":              "refresh.lock, not a database file",
	"internal/daemon/run.go: os.OpenFile(path":             "daemon.lock, not a database file",
	"internal/daemon/run.go: os.Open(\"/proc/self/io\"":    "/proc",
	"internal/config/credentials.go: os.Open(path":         "the client secret file",
	"cmd/tibbersync/simulate.go: os.ReadFile(f.secretFile": "the simulator's secret file",
	"cmd/tibbersync/simulate.go: os.RemoveAll(dir":         "the simulator's temporary secret directory",
	"cmd/tibbersync/simulate.go: os.WriteFile(secretFile":  "the simulator's secret file",
	"cmd/tibbersync/demo.go: os.RemoveAll(tmp":             "the demo's temporary state directory, after every connection closed",
	"internal/store/health.go: os.Remove(name":             "the state directory's write probe (.tibbersync-write-check-*), not a database file",
	"internal/tokenstore/health.go: os.Rename(path":        "moves a damaged tokens.db aside after this process closed it (rename opens no descriptor)",
	"internal/tokenstore/health.go: os.Rename(path+suffix": "moves the damaged tokens.db's -wal and -shm aside with it",
	"internal/tibber/gate.go: os.Remove(tmp.Name(":         "the rate gate's temporary file, not a database file",
	"internal/tibber/gate.go: os.Chmod(tmp.Name(":          "the rate gate's temporary file, not a database file",
	"internal/tibber/gate.go: os.Rename(tmp.Name(":         "moves the rate gate file into place, not a database file",
	"internal/tibber/gate.go: os.ReadFile(g.path":          "the rate gate file, not a database file",
	"cmd/tibbersync/mqtt.go: os.Open(filepath.Join(dir":    "daemon.lock (a shared flock probe: is a daemon running?), not a database file",
	"internal/config/mqtt.go: os.ReadFile(p":               "/etc/machine-id for the default MQTT client id",
	"internal/config/mqtt.go: os.ReadFile(m.CAFile":        "the MQTT broker's CA file",
	"internal/mqtt/mqtt.go: os.ReadFile(o.CAFile":          "the MQTT broker's CA file",
	"internal/mqtt/mqtt.go: os.Remove(tmp.Name(":           "the temporary mqtt-status.json, not a database file",
	"internal/mqtt/mqtt.go: os.Rename(tmp.Name(":           "mqtt-status.json, not a database file",
	"internal/mqtt/mqtt.go: os.ReadFile(path":              "mqtt-status.json, not a database file",
}

// TestNoFileCallsOnDatabaseFiles is R18's grep check: closing any descriptor
// of a database file drops SQLite's POSIX locks, so product code never opens,
// reads, copies or deletes *.db, -wal or -shm with os functions.
func TestNoFileCallsOnDatabaseFiles(t *testing.T) {
	root := repoRoot(t)
	// The key is the call with its first argument, which names the file.
	call := regexp.MustCompile(`os\.(Open|OpenFile|ReadFile|WriteFile|Remove|RemoveAll|Rename|Create|Truncate|Chmod|Link|Symlink)\(([^,)]*)`)
	found := map[string]bool{}
	for _, dir := range []string{"cmd/tibbersync", "internal/daemon", "internal/secret", "internal/store", "internal/tokenstore", "internal/auth", "internal/config", "internal/jobs", "internal/web", "internal/tibber", "internal/notify", "internal/logging", "internal/metrics", "internal/sdnotify", "internal/version", "internal/model", "internal/clock", "internal/mqtt"} {
		files, _ := filepath.Glob(filepath.Join(root, dir, "*.go"))
		for _, p := range files {
			if strings.HasSuffix(p, "_test.go") {
				continue
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(root, p)
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				line := strings.TrimSpace(sc.Text())
				if strings.HasPrefix(line, "//") {
					continue
				}
				for _, m := range call.FindAllStringSubmatch(line, -1) {
					key := rel + ": os." + m[1] + "(" + m[2]
					found[key] = true
					if _, ok := dbFileCalls[key]; !ok {
						t.Errorf("unreviewed os file call %s (R18: only SQLite may touch database files; review it and add it to dbFileCalls)", key)
					}
				}
			}
			f.Close()
		}
	}
	for key := range dbFileCalls {
		if !found[key] {
			t.Errorf("dbFileCalls lists %s, which no longer exists: remove it", key)
		}
	}
}
