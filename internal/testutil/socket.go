package testutil

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// Socket is a loopback TCP socket a test binds once and holds until it
// ends, for a daemon's web server. Each daemon the test starts gets its own
// descriptor of the same socket (in-process through Listener, a child
// process through Activate, systemd's socket activation), so the port never
// becomes free while the test runs: no other process can take it between
// two daemons, and nothing closes a port hoping it stays free.
type Socket struct {
	t    testing.TB
	ln   *net.TCPListener
	Addr string // host:port
	Port int
}

// NewSocket binds 127.0.0.1 on a port the kernel picks.
func NewSocket(t testing.TB) *Socket {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("bind a loopback socket: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return &Socket{t: t, ln: ln, Addr: ln.Addr().String(), Port: ln.Addr().(*net.TCPAddr).Port}
}

// PortString is Port in decimal.
func (s *Socket) PortString() string { return strconv.Itoa(s.Port) }

// Listener returns a new descriptor of the socket for an in-process
// server. Closing it stops that server's Accept; the socket stays bound.
func (s *Socket) Listener() net.Listener {
	s.t.Helper()
	f := s.file()
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		s.t.Fatalf("listener from socket: %v", err)
	}
	return ln
}

// Activate makes cmd start with the socket passed as systemd does: the
// descriptor as fd 3, LISTEN_FDS=1 and LISTEN_PID set to the child's own
// pid (by a /bin/sh that then execs the program, keeping its pid). Call it
// after cmd.Env is set and before Start. The parent's copy of the
// descriptor is closed when the test ends.
func (s *Socket) Activate(cmd *exec.Cmd) {
	s.t.Helper()
	f := s.file()
	s.t.Cleanup(func() { f.Close() })
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "LISTEN_FDS=1")
	cmd.ExtraFiles = append([]*os.File{f}, cmd.ExtraFiles...)
	cmd.Args = append([]string{"/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
}

func (s *Socket) file() *os.File {
	f, err := s.ln.File() // a dup of the descriptor
	if err != nil {
		s.t.Fatalf("socket descriptor: %v", err)
	}
	return f
}
