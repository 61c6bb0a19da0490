package sdnotify_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/sdnotify"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

// childMode, when set in the environment, makes this test binary act as the
// activated process: it reports what Listeners returned and serves one
// HTTP request on the passed socket.
const childMode = "SDNOTIFY_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childMode) == "1" {
		os.Exit(activatedChild())
	}
	os.Exit(m.Run())
}

func activatedChild() int {
	lns, err := sdnotify.Listeners(os.Environ(), os.Getpid())
	if err != nil {
		fmt.Println("error:", err)
		return 3
	}
	if len(lns) != 1 {
		fmt.Println("listeners:", len(lns))
		return 4
	}
	conn, err := lns[0].Accept()
	if err != nil {
		fmt.Println("accept:", err)
		return 5
	}
	defer conn.Close()
	if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
		fmt.Println("read request:", err)
		return 6
	}
	body := fmt.Sprintf("pid %d", os.Getpid())
	fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	return 0
}

func TestListenersForAnotherProcessAreIgnored(t *testing.T) {
	for _, env := range [][]string{
		nil,
		{"LISTEN_FDS=1"},
		{"LISTEN_PID=7", "LISTEN_FDS=1"},
		{"LISTEN_PID=x", "LISTEN_FDS=1"},
	} {
		lns, err := sdnotify.Listeners(env, 8)
		if err != nil || lns != nil {
			t.Errorf("%q: got %v, %v; want nothing passed", env, lns, err)
		}
	}
}

func TestListenersBadCountIsNamed(t *testing.T) {
	for _, n := range []string{"many", "-1", "1000"} {
		_, err := sdnotify.Listeners([]string{"LISTEN_PID=8", "LISTEN_FDS=" + n}, 8)
		if err == nil || !strings.Contains(err.Error(), "LISTEN_FDS") {
			t.Errorf("LISTEN_FDS=%s: err %v, want one naming LISTEN_FDS", n, err)
		}
	}
}

// TestListenersServeThePassedSocket starts this test binary as a child
// with a socket the test holds, passed the way systemd passes it; the
// child serves on it. The test's request is queued by the kernel until the
// child accepts, so nothing depends on who is faster.
func TestListenersServeThePassedSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sock := testutil.NewSocket(t)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childMode+"=1")
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	sock.Activate(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+sock.Addr+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		_ = cmd.Wait()
		t.Fatalf("request to the passed socket: %v; child: %s", err, out.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	if want := "pid " + strconv.Itoa(cmd.Process.Pid); string(body) != want {
		t.Fatalf("served %q, want %q (the exec'd child itself)", body, want)
	}
}

// TestListenersRejectANonSocket: a passed descriptor that is a plain file
// is an error naming the descriptor.
func TestListenersRejectANonSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f, err := os.Create(filepath.Join(t.TempDir(), "plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childMode+"=1", "LISTEN_FDS=1")
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "descriptor 3") || !strings.Contains(string(out), "not a listening socket") {
		t.Fatalf("plain file passed: err %v, output %q", err, out)
	}
}
