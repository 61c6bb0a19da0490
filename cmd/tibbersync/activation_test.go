package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/testutil"
)

// TestSocketActivationBySystemd runs the real binary under systemd's own
// implementation of socket activation (systemd-socket-activate, shipped in
// Debian's systemd package): the tool binds the address, waits for the
// first connection and execs `tibbersync run` with the socket as fd 3. The
// daemon must serve that connection on the passed socket although
// [web].listen names another port (held by the fixture, so binding it
// would fail), and say in its log that it did.
func TestSocketActivationBySystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	tool, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("systemd-socket-activate is required in CI (.ci/run installs systemd): %v", err)
		}
		t.Skipf("SKIPPED: systemd-socket-activate not found (%v); apt-get install systemd", err)
	}
	f := newFixture(t, nil)
	bin := testutil.BuildTibbersync(t, t.TempDir())
	ctx := testCtx(t, 3*time.Minute)

	cmd, addr, logs := startActivated(t, ctx, tool, bin, f)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /healthz on the activated socket: %v\n%s", err, logs.String())
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz on the activated socket: %s\n%s", resp.Status, logs.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("daemon after SIGTERM: %v\n%s", err, logs.String())
	}
	want := fmt.Sprintf(`"address":%q,"configured":"127.0.0.1:%d"`, addr, f.port)
	if !strings.Contains(logs.String(), "serving on the socket passed by socket activation") || !strings.Contains(logs.String(), want) {
		t.Fatalf("the log does not say the passed socket replaced [web].listen (want %s):\n%s", want, logs.String())
	}
}

// startActivated starts systemd-socket-activate on a free loopback port.
// The tool binds the port itself (it takes no port 0), so a port is chosen
// and, when another process took it first, the tool reports the failed bind
// and exits, and the next port is tried. It returns once the tool listens.
func startActivated(t *testing.T, ctx context.Context, tool, bin string, f *fixture) (*exec.Cmd, string, *testutil.SyncBuffer) {
	t.Helper()
	var lastErr string
	for range 10 {
		probe, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := probe.Addr().String()
		probe.Close()
		args := []string{"-l", addr}
		for _, kv := range append(f.environ, "NO_COLOR=1") {
			args = append(args, "-E", kv)
		}
		cmd := exec.CommandContext(ctx, tool, append(args, bin, "-c", f.cfgPath, "run")...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		logs := &testutil.SyncBuffer{}
		cmd.Stdout = logs
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		rd := bufio.NewReader(stderr)
		for {
			line, err := rd.ReadString('\n')
			_, _ = logs.Write([]byte(line))
			if strings.HasPrefix(line, "Listening on "+addr) {
				go func() { _, _ = io.Copy(logs, rd) }()
				t.Cleanup(func() { _ = cmd.Process.Kill() })
				return cmd, addr, logs
			}
			if err != nil {
				_ = cmd.Wait()
				lastErr = logs.String()
				break
			}
		}
	}
	t.Fatalf("systemd-socket-activate did not listen on any of 10 ports; last output:\n%s", lastErr)
	return nil, "", nil
}
