package packaging_test

import (
	"crypto/md5"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestDpkgRoundTrip installs the amd64 package into this machine for real:
// install → upgrade (the user's conffile edit kept) → remove (data kept) →
// purge (data removed after saying so). It changes the system, so it runs
// only as root in CI (CI=true) or when TIBBERSYNC_DPKG_TEST=1, and never
// where tibbersync is already installed; cleanup purges the package and
// removes the user it created.
func TestDpkgRoundTrip(t *testing.T) {
	if os.Geteuid() != 0 || (os.Getenv("CI") != "true" && os.Getenv("TIBBERSYNC_DPKG_TEST") != "1") {
		t.Skip("SKIPPING dpkg install round trip: needs root and CI=true or TIBBERSYNC_DPKG_TEST=1 (it installs into this system)")
	}
	requireTools(t, "dpkg", "dpkg-deb", "dpkg-statoverride")
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "tibbersync").CombinedOutput(); err == nil && strings.Contains(string(out), "installed") {
		t.Skipf("SKIPPING: tibbersync is installed on this machine (%s); not touching it", out)
	}
	for _, p := range []string{"/etc/tibbersync", "/var/lib/tibbersync"} {
		if _, err := os.Stat(p); err == nil {
			t.Skipf("SKIPPING: %s exists; not touching it", p)
		}
	}
	version, debs := packages(t)
	userExisted := exec.Command("getent", "passwd", "tibbersync").Run() == nil
	t.Cleanup(func() {
		_ = exec.Command("dpkg", "--purge", "tibbersync").Run()
		if !userExisted {
			_ = exec.Command("userdel", "tibbersync").Run()
			_ = exec.Command("groupdel", "tibbersync").Run()
		}
	})

	// The upgrade: the same package with a higher version and a changed
	// default config.
	v2 := version + "+upgrade1"
	raw := filepath.Join(t.TempDir(), "raw")
	run(t, "dpkg-deb", "-R", debs["amd64"], raw)
	ctl := filepath.Join(raw, "DEBIAN/control")
	b, err := os.ReadFile(ctl)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, ctl, strings.Replace(string(b), "Version: "+version+"\n", "Version: "+v2+"\n", 1), 0o644)
	conf := filepath.Join(raw, "etc/tibbersync/config.toml")
	cb, _ := os.ReadFile(conf)
	newConf := string(cb) + "# a new default in " + v2 + "\n"
	writeFile(t, conf, newConf, 0o640)
	sum := md5.Sum([]byte(newConf))
	sums := filepath.Join(raw, "DEBIAN/md5sums")
	sb, _ := os.ReadFile(sums)
	re := regexp.MustCompile(`(?m)^[0-9a-f]{32}  etc/tibbersync/config.toml$`)
	writeFile(t, sums, re.ReplaceAllString(string(sb), hex.EncodeToString(sum[:])+"  etc/tibbersync/config.toml"), 0o644)
	deb2 := filepath.Join(t.TempDir(), "tibbersync_"+v2+"_amd64.deb")
	run(t, "dpkg-deb", "--root-owner-group", "-b", raw, deb2)

	// 1. install
	out := run(t, "dpkg", "-i", debs["amd64"])
	if !strings.Contains(out, "NOT started") || !strings.Contains(out, "sudoedit /etc/tibbersync/config.toml") {
		t.Errorf("install does not say the daemon was not started and what to do:\n%s", out)
	}
	if err := exec.Command("getent", "passwd", "tibbersync").Run(); err != nil {
		t.Fatal("no tibbersync user after install")
	}
	checkOwner(t, "/etc/tibbersync/config.toml", "root", "tibbersync", 0o640)
	checkOwner(t, "/var/lib/tibbersync", "tibbersync", "tibbersync", 0o750|os.ModeDir)
	if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/tibbersync.service"); err != nil {
		t.Errorf("unit not enabled: %v", err)
	}
	if out := run(t, "/usr/bin/tibbersync", "version"); !strings.Contains(out, "tibbersync") {
		t.Errorf("installed binary: %q", out)
	}

	// 2. the admin edits the config; upgrade keeps the edit.
	cur, _ := os.ReadFile("/etc/tibbersync/config.toml")
	edited := strings.Replace(string(cur), `client_id = ""`, `client_id = "my-client"`, 1)
	if edited == string(cur) {
		t.Fatal("no client_id line to edit")
	}
	if err := os.WriteFile("/etc/tibbersync/config.toml", []byte(edited), 0o640); err != nil {
		t.Fatal(err)
	}
	out = run(t, "dpkg", "--force-confdef", "--force-confold", "-i", deb2)
	got, _ := os.ReadFile("/etc/tibbersync/config.toml")
	if string(got) != edited {
		t.Errorf("upgrade lost the edited config:\n%s", out)
	}
	if d, err := os.ReadFile("/etc/tibbersync/config.toml.dpkg-dist"); err != nil || string(d) != newConf {
		t.Errorf("the new default is not next to it as .dpkg-dist: %v", err)
	}
	checkOwner(t, "/etc/tibbersync/config.toml", "root", "tibbersync", 0o640)
	if st := run(t, "dpkg-query", "-W", "-f=${Version}", "tibbersync"); st != v2 {
		t.Errorf("installed version %q after upgrade, want %q", st, v2)
	}

	// 3. remove keeps data and config.
	if err := os.WriteFile("/var/lib/tibbersync/data.db", []byte("precious"), 0o640); err != nil {
		t.Fatal(err)
	}
	out = run(t, "dpkg", "-r", "tibbersync")
	if _, err := os.Stat("/usr/bin/tibbersync"); err == nil {
		t.Error("binary still there after remove")
	}
	if b, err := os.ReadFile("/var/lib/tibbersync/data.db"); err != nil || string(b) != "precious" {
		t.Errorf("remove touched the data: %v", err)
	}
	if _, err := os.Stat("/etc/tibbersync/config.toml"); err != nil {
		t.Errorf("remove deleted the config: %v", err)
	}
	if !strings.Contains(out, "data in /var/lib/tibbersync") {
		t.Errorf("remove does not say the data stays:\n%s", out)
	}

	// 4. purge says so, then removes data, config and the statoverride.
	out = run(t, "dpkg", "-P", "tibbersync")
	if !strings.Contains(out, "purge: removing /var/lib/tibbersync") {
		t.Errorf("purge does not say it removes the data:\n%s", out)
	}
	for _, p := range []string{"/var/lib/tibbersync", "/etc/tibbersync", "/etc/systemd/system/multi-user.target.wants/tibbersync.service"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s still there after purge", p)
		}
	}
	if out, err := exec.Command("dpkg-statoverride", "--list", "/etc/tibbersync/config.toml").CombinedOutput(); err == nil {
		t.Errorf("statoverride left after purge: %s", out)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func checkOwner(t *testing.T, path, user, group string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	u := strings.TrimSpace(run(t, "id", "-nu", itoa(st.Uid)))
	g := strings.TrimSpace(strings.SplitN(run(t, "getent", "group", itoa(st.Gid)), ":", 2)[0])
	if u != user || g != group || fi.Mode()&(os.ModePerm|os.ModeDir) != mode {
		t.Errorf("%s is %s:%s %v, want %s:%s %v", path, u, g, fi.Mode(), user, group, mode)
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
