// Package sdnotify speaks systemd's notify protocol (sd_notify(3)): READY=1
// once the daemon serves, WATCHDOG=1 keep-alives, and a STATUS= line that
// `systemctl status tibbersync` shows (the auth state). It is hand-written
// because the protocol is one datagram on a Unix socket and the maintained
// libraries pull in far more (coreos/go-systemd needs dbus for the rest).
package sdnotify

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Notifier sends notifications to the socket in $NOTIFY_SOCKET. The zero
// value (and a Notifier made outside systemd) does nothing.
type Notifier struct {
	addr *net.UnixAddr
	// Watchdog is the interval systemd expects WATCHDOG=1 within (from
	// $WATCHDOG_USEC), zero when the watchdog is off.
	Watchdog time.Duration
}

// New reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from environ
// (os.Environ() style). The watchdog counts only when WATCHDOG_PID is unset
// or names pid.
func New(environ []string, pid int) *Notifier {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	n := &Notifier{}
	if sock := env["NOTIFY_SOCKET"]; sock != "" {
		if strings.HasPrefix(sock, "@") {
			sock = "\x00" + sock[1:] // abstract socket
		}
		n.addr = &net.UnixAddr{Name: sock, Net: "unixgram"}
	}
	if usec, err := strconv.ParseInt(env["WATCHDOG_USEC"], 10, 64); err == nil && usec > 0 {
		if p := env["WATCHDOG_PID"]; p == "" || p == strconv.Itoa(pid) {
			n.Watchdog = time.Duration(usec) * time.Microsecond
		}
	}
	return n
}

// Enabled reports whether a notify socket is configured.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Send sends the given assignments (e.g. "READY=1", "STATUS=auth ok") in one
// datagram. Newlines inside a STATUS text are replaced so that it stays one
// assignment.
func (n *Notifier) Send(states ...string) error {
	if !n.Enabled() {
		return nil
	}
	for i, s := range states {
		states[i] = strings.ReplaceAll(s, "\n", " ")
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	if _, err := conn.Write([]byte(strings.Join(states, "\n"))); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Ready tells systemd that start-up finished, with a status line.
func (n *Notifier) Ready(status string) error {
	return n.Send("READY=1", "STATUS="+status)
}

// Status updates the status line.
func (n *Notifier) Status(status string) error { return n.Send("STATUS=" + status) }

// Ping sends a watchdog keep-alive.
func (n *Notifier) Ping() error {
	if n.Watchdog == 0 {
		return nil
	}
	return n.Send("WATCHDOG=1")
}

// Stopping tells systemd that shutdown began.
func (n *Notifier) Stopping() error { return n.Send("STOPPING=1") }
