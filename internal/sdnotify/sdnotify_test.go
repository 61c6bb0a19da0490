package sdnotify_test

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/sdnotify"
)

func listen(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, path
}

func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read datagram: %v", err)
	}
	return string(buf[:n])
}

func TestReadyStatusAndWatchdog(t *testing.T) {
	conn, path := listen(t)
	n := sdnotify.New([]string{"NOTIFY_SOCKET=" + path, "WATCHDOG_USEC=180000000", "WATCHDOG_PID=42"}, 42)
	if !n.Enabled() || n.Watchdog != 3*time.Minute {
		t.Fatalf("notifier = %+v, want enabled with a 3m watchdog", n)
	}
	if err := n.Ready("auth ok\nsecond line"); err != nil {
		t.Fatal(err)
	}
	if got, want := recv(t, conn), "READY=1\nSTATUS=auth ok second line"; got != want {
		t.Fatalf("datagram = %q, want %q", got, want)
	}
	if err := n.Ping(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("ping = %q", got)
	}
	if err := n.Status("reauth_required"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, conn); !strings.HasPrefix(got, "STATUS=reauth_required") {
		t.Fatalf("status = %q", got)
	}
}

func TestWatchdogForAnotherPIDIsIgnored(t *testing.T) {
	n := sdnotify.New([]string{"WATCHDOG_USEC=1000000", "WATCHDOG_PID=7"}, 8)
	if n.Watchdog != 0 {
		t.Fatalf("watchdog for another pid = %v, want 0", n.Watchdog)
	}
}

func TestOutsideSystemdDoesNothing(t *testing.T) {
	n := sdnotify.New(nil, 1)
	if n.Enabled() {
		t.Fatal("enabled without NOTIFY_SOCKET")
	}
	if err := n.Ready("x"); err != nil {
		t.Fatalf("Ready outside systemd: %v", err)
	}
	if err := n.Ping(); err != nil {
		t.Fatalf("Ping outside systemd: %v", err)
	}
}

func TestUnreachableSocketIsAnError(t *testing.T) {
	n := sdnotify.New([]string{"NOTIFY_SOCKET=" + filepath.Join(t.TempDir(), "missing.sock")}, 1)
	if err := n.Ready("x"); err == nil {
		t.Fatal("Ready to a missing socket succeeded")
	}
}
