package packaging_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/control"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

// The service user of the test: nobody/nogroup exist on every Debian.
const svcUID, svcGID = 65534, 65534

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// requireRoot: switching to the service user needs root; CI runs as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test must run as root in CI")
		}
		t.Skip("SKIPPING: running the packaged daemon as a service user needs root")
	}
}

// rootOwned lists every file under dir that belongs to root.
func rootOwned(t *testing.T, dir string) []string {
	t.Helper()
	var bad []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid == 0 || st.Gid == 0 {
			bad = append(bad, fmt.Sprintf("%s (%d:%d %v)", p, st.Uid, st.Gid, fi.Mode()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bad
}

// setKey sets key in [section] of the packaged config, as an admin edits it.
func setKey(t *testing.T, conf, section, key, value string) string {
	t.Helper()
	start := strings.Index(conf, "\n["+section+"]\n")
	if start < 0 {
		t.Fatalf("packaged config has no [%s]", section)
	}
	end := strings.Index(conf[start+1:], "\n[")
	if end < 0 {
		end = len(conf)
	} else {
		end += start + 1
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + ` = .*$`)
	body := conf[start:end]
	if n := len(re.FindAllString(body, -1)); n != 1 {
		t.Fatalf("packaged config has %d %q lines in [%s], want 1", n, key, section)
	}
	return conf[:start] + re.ReplaceAllLiteralString(body, key+" = "+value) + conf[end:]
}

// TestPackagedDaemonHeadlessSetup is the end-to-end test: the
// packaged binary runs as a non-root service user with the client secret
// as a systemd credential; root runs `setup --paste` against the simulator
// while it runs; the daemon owns the exchange and starts its jobs without a
// restart, and no root-owned file appears in the state directory, not even
// after root runs status, sync, backup and setup itself.
func TestPackagedDaemonHeadlessSetup(t *testing.T) {
	requireRoot(t)
	_, debs := packages(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// A root the service user can traverse (t.TempDir is 0700).
	base, err := os.MkdirTemp("", "tibbersync-svc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "root")
	run(t, "dpkg-deb", "-x", debs["amd64"], root)
	bin := filepath.Join(root, "usr/bin/tibbersync")

	// The state directory as StateDirectory=tibbersync (0750) makes it.
	state := filepath.Join(root, "var/lib/tibbersync")
	if err := os.MkdirAll(filepath.Dir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(state, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, svcUID, svcGID); err != nil {
		t.Fatal(err)
	}
	// The credential as systemd passes it: a directory only the service
	// user can read, $CREDENTIALS_DIRECTORY pointing at it.
	creds := filepath.Join(base, "credentials/tibbersync.service")
	if err := os.Mkdir(filepath.Dir(creds), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(creds, 0o500); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, "client_secret"), []byte(simulator.DefaultClientSecret+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(creds, "client_secret"), creds} {
		if err := os.Chown(p, svcUID, svcGID); err != nil {
			t.Fatal(err)
		}
	}

	// The web socket, held by the test and passed to the daemon the way a
	// systemd socket unit would.
	web := testutil.NewSocket(t)
	webAddr, port := web.Addr, web.PortString()
	redirect := "http://localhost:" + port + "/callback"
	sim := simulator.New(simulator.Options{Seed: 12, RedirectURIs: []string{redirect}, AutoConsent: true, HistoryDays: 2})
	t.Cleanup(sim.Close)
	simSrv := httptest.NewServer(sim)
	t.Cleanup(simSrv.Close)
	sim.SetBaseURL(simSrv.URL)

	// The packaged config, edited as an admin would: client id, the
	// simulator's URLs, this root's state dir. No client_secret_file.
	confPath := filepath.Join(root, "etc/tibbersync/config.toml")
	b, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	for k, v := range map[string]string{
		"tibber.client_id":    fmt.Sprintf("%q", simulator.DefaultClientID),
		"tibber.redirect_url": fmt.Sprintf("%q", redirect),
		"tibber.auth_url":     fmt.Sprintf("%q", simSrv.URL+"/connect/authorize"),
		"tibber.token_url":    fmt.Sprintf("%q", simSrv.URL+"/connect/token"),
		"tibber.userinfo_url": fmt.Sprintf("%q", simSrv.URL+"/connect/userinfo"),
		"tibber.api_url":      fmt.Sprintf("%q", simSrv.URL),
		"storage.dir":         fmt.Sprintf("%q", state),
		"web.listen":          fmt.Sprintf("%q", webAddr),
	} {
		section, key, _ := strings.Cut(k, ".")
		conf = setKey(t, conf, section, key, v)
	}
	if !strings.Contains(conf, `client_secret_file = ""`) {
		t.Fatal("the packaged config names a client_secret_file")
	}
	if err := os.WriteFile(confPath, []byte(conf), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(confPath, 0, svcGID); err != nil { // root:tibbersync 0640, as postinst sets it
		t.Fatal(err)
	}

	// systemd's notify socket tells us when the daemon serves.
	notifyPath := filepath.Join(base, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	if err := os.Chmod(notifyPath, 0o666); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 8)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := notify.ReadFromUnix(buf)
			if err != nil {
				close(ready)
				return
			}
			ready <- string(buf[:n])
		}
	}()

	daemon := exec.CommandContext(ctx, bin, "run", "-c", confPath)
	daemon.Dir = "/"
	daemon.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "NO_COLOR=1",
		"CREDENTIALS_DIRECTORY=" + creds, "NOTIFY_SOCKET=" + notifyPath}
	daemon.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: svcUID, Gid: svcGID, Groups: []uint32{}}}
	var dlog syncBuf
	daemon.Stdout, daemon.Stderr = &dlog, &dlog
	web.Activate(daemon)
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	stopDaemon := func() {
		if daemon.ProcessState == nil {
			_ = daemon.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(time.Minute):
				_ = daemon.Process.Kill()
				<-exited
			}
		}
	}
	t.Cleanup(stopDaemon)
	for waiting := true; waiting; {
		select {
		case msg, ok := <-ready:
			if !ok {
				t.Fatal("notify socket closed")
			}
			waiting = !strings.Contains(msg, "READY=1")
		case err := <-exited:
			t.Fatalf("daemon exited before READY=1: %v\n%s", err, dlog.String())
		case <-ctx.Done():
			t.Fatalf("no READY=1\n%s", dlog.String())
		}
	}
	ctl := control.NewClient(state)
	st, err := ctl.Probe(ctx)
	if err != nil {
		t.Fatalf("control socket: %v\n%s", err, dlog.String())
	}
	if st.UID != svcUID || st.PID != daemon.Process.Pid || st.Status.State != model.AuthSetupRequired {
		t.Fatalf("daemon before setup: uid %d pid %d state %s", st.UID, st.PID, st.Status.State)
	}

	cli := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-c", confPath}, args...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/root", "NO_COLOR=1"}
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if err != nil && cmd.ProcessState == nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out.String(), errb.String(), cmd.ProcessState.ExitCode()
	}

	// Root runs setup --paste while the daemon runs: follow the printed
	// authorize URL, paste the redirect back.
	setup := exec.CommandContext(ctx, bin, "-c", confPath, "setup", "--paste")
	setup.Env = []string{"PATH=/usr/bin:/bin", "HOME=/root", "NO_COLOR=1"}
	stdin, _ := setup.StdinPipe()
	stdout, _ := setup.StdoutPipe()
	var setupErr syncBuf
	setup.Stderr = &setupErr
	if err := setup.Start(); err != nil {
		t.Fatal(err)
	}
	var setupOut bytes.Buffer
	rd := bufio.NewReader(io.TeeReader(stdout, &setupOut))
	var authURL string
	for authURL == "" {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("setup --paste printed no authorize URL: %v\n%s\n%s", err, setupOut.String(), setupErr.String())
		}
		if s := strings.TrimSpace(line); strings.HasPrefix(s, simSrv.URL+"/connect/authorize?") {
			authURL = s
		}
	}
	noFollow := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(back, redirect+"?") {
		t.Fatalf("authorize answered %d Location %q", resp.StatusCode, back)
	}
	if _, err := io.WriteString(stdin, back+"\n"); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	if _, err := io.Copy(io.Discard, rd); err != nil {
		t.Fatal(err)
	}
	if err := setup.Wait(); err != nil || !strings.Contains(setupOut.String(), "Authorized.") {
		t.Fatalf("setup --paste: %v\n%s\n%s\ndaemon:\n%s", err, setupOut.String(), setupErr.String(), dlog.String())
	}
	if !strings.Contains(setupErr.String(), "handing the authorization to the running daemon") {
		t.Errorf("setup did not go through the daemon:\n%s", setupErr.String())
	}

	// The daemon's auth state is ok, and the same daemon process (no
	// restart) syncs homes and devices.
	st, err = ctl.Probe(ctx)
	if err != nil || st.Status.State != model.AuthOK || st.PID != daemon.Process.Pid {
		t.Fatalf("daemon after setup: %+v %v", st, err)
	}
	var rep struct {
		Auth struct {
			State string `json:"state"`
		} `json:"auth"`
		Jobs []struct {
			Job        string `json:"job"`
			LastStatus string `json:"last_status"`
		} `json:"jobs"`
		Tables map[string]int64 `json:"tables"`
	}
	synced := func() bool {
		out, errOut, _ := cli("", "status", "--json")
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("status --json: %v\n%s%s", err, out, errOut)
		}
		ok := map[string]bool{}
		for _, j := range rep.Jobs {
			ok[j.Job] = j.LastStatus == "ok"
		}
		return rep.Auth.State == "ok" && ok["homes"] && ok["devices"] && rep.Tables["homes"] > 0 && rep.Tables["devices"] > 0
	}
	// The daemon triggers homes and devices on authorization; wait for
	// their outcome (bounded), not for a fixed time.
	for !synced() {
		select {
		case err := <-exited:
			t.Fatalf("daemon exited: %v\n%s", err, dlog.String())
		case <-ctx.Done():
			t.Fatalf("homes and devices not synced: %+v\n%s", rep, dlog.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if st, _ := ctl.Probe(ctx); st.PID != daemon.Process.Pid {
		t.Fatal("the daemon was restarted")
	}

	// tokens.db belongs to the service user, 0600.
	fi, err := os.Stat(filepath.Join(state, "secrets/tokens.db"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != svcUID || fi.Mode().Perm() != 0o600 {
		t.Fatalf("tokens.db is %d %v, want uid %d 0600", st.Uid, fi.Mode().Perm(), svcUID)
	}
	if bad := rootOwned(t, state); len(bad) > 0 {
		t.Fatalf("root-owned files in the state dir after setup:\n%s", strings.Join(bad, "\n"))
	}

	// Someone neither root nor in the group is refused with the fix.
	outsiderConf := filepath.Join(base, "outsider.toml")
	if err := os.WriteFile(outsiderConf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out := exec.CommandContext(ctx, bin, "-c", outsiderConf, "setup", "--paste")
	out.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
	out.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242, Groups: []uint32{}}}
	outb, _ := out.CombinedOutput()
	// The fix names the group the socket really belongs to (the service
	// group; nogroup for the stand-in service user here, tibbersync in
	// the package).
	group := strconv.Itoa(svcGID)
	if g, err := user.LookupGroupId(group); err == nil {
		group = g.Name
	}
	if out.ProcessState.ExitCode() == 0 || !strings.Contains(string(outb), "usermod -aG "+group+" ") {
		t.Fatalf("outsider setup: exit %d\n%s", out.ProcessState.ExitCode(), outb)
	}

	// A member of the daemon's group (a supplementary group, as after
	// `usermod -aG tibbersync`) reaches the daemon: doctor asks it.
	member := exec.CommandContext(ctx, bin, "-c", confPath, "doctor", "--offline")
	member.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "NO_COLOR=1"}
	member.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4243, Gid: 4243, Groups: []uint32{svcGID}}}
	mb, _ := member.CombinedOutput()
	if want := fmt.Sprintf("ok    daemon       running (pid %d, uid %d)", daemon.Process.Pid, svcUID); !strings.Contains(string(mb), want) ||
		!strings.Contains(string(mb), "ok    auth         ok (from the daemon)") {
		t.Fatalf("group member's doctor lacks %q and the auth state:\n%s", want, mb)
	}
	// The outsider's doctor names the fix.
	od := exec.CommandContext(ctx, bin, "-c", outsiderConf, "doctor", "--offline")
	od.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "NO_COLOR=1"}
	od.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242, Groups: []uint32{}}}
	ob, _ := od.CombinedOutput()
	if od.ProcessState.ExitCode() == 0 || !strings.Contains(string(ob), "FAIL  daemon") || !strings.Contains(string(ob), "usermod -aG tibbersync") {
		t.Fatalf("outsider's doctor: exit %d\n%s", od.ProcessState.ExitCode(), ob)
	}

	// Root's CLI commands while the daemon runs, then without it (SQLite
	// then creates -wal and -shm afresh): nothing root-owned may remain.
	rootCommands := func(phase string) {
		t.Helper()
		// 3 is "stale": history has not run yet in this short test.
		if _, e, code := cli("", "status"); code != 0 && code != 3 {
			t.Fatalf("%s: status exit %d: %s", phase, code, e)
		}
		if _, e, code := cli("", "sync", "--no-progress", "homes"); code != 0 {
			t.Fatalf("%s: sync homes exit %d: %s", phase, code, e)
		}
		backup := filepath.Join(base, "backup-"+phase+".db")
		if _, e, code := cli("", "backup", backup); code != 0 {
			t.Fatalf("%s: backup exit %d: %s", phase, code, e)
		}
		if _, e, code := cli("", "backup", filepath.Join(state, "backup-"+phase+".db")); code != 0 {
			t.Fatalf("%s: backup into the state dir exit %d: %s", phase, code, e)
		}
		if bad := rootOwned(t, state); len(bad) > 0 {
			t.Fatalf("%s: root-owned files in the state dir:\n%s", phase, strings.Join(bad, "\n"))
		}
	}
	rootCommands("daemon-running")
	stopDaemon()
	if !strings.Contains(dlog.String(), "stopped") {
		t.Fatalf("daemon did not stop cleanly:\n%s", dlog.String())
	}
	rootCommands("daemon-stopped")
	// setup without a daemon, as root: acts as the state dir's owner. The
	// paste is empty, so it stops at reading stdin, having opened tokens.db.
	if _, e, code := cli("", "setup", "--paste"); code == 0 || strings.Contains(e, "insecure") {
		t.Fatalf("setup without daemon and without paste: exit %d: %s", code, e)
	}
	if bad := rootOwned(t, state); len(bad) > 0 {
		t.Fatalf("setup as root: root-owned files in the state dir:\n%s", strings.Join(bad, "\n"))
	}
}
