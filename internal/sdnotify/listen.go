package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// listenFdsStart is SD_LISTEN_FDS_START: the first passed descriptor.
const listenFdsStart = 3

// Listeners returns the sockets systemd passed by socket activation
// (sd_listen_fds(3)): LISTEN_FDS descriptors from fd 3 on, when LISTEN_PID
// names pid. It returns nil, nil when nothing was passed to this process.
// The descriptors are marked close-on-exec. A passed descriptor that is
// not a listening socket is an error naming it.
//
// Tests use the same door: a test binds a socket once, holds it for its
// whole life and passes it to each daemon it starts, so that no port is
// ever closed and hoped to stay free.
func Listeners(environ []string, pid int) ([]net.Listener, error) {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	if env["LISTEN_PID"] == "" || env["LISTEN_FDS"] == "" {
		return nil, nil
	}
	if p, err := strconv.Atoi(env["LISTEN_PID"]); err != nil || p != pid {
		return nil, nil // meant for another process (our parent)
	}
	n, err := strconv.Atoi(env["LISTEN_FDS"])
	if err != nil || n < 0 || n > 64 {
		return nil, fmt.Errorf("socket activation: LISTEN_FDS=%q: want a small count of passed sockets", env["LISTEN_FDS"])
	}
	names := strings.Split(env["LISTEN_FDNAMES"], ":")
	var out []net.Listener
	for i := range n {
		fd := listenFdsStart + i
		syscall.CloseOnExec(fd)
		name := "LISTEN_FD_" + strconv.Itoa(fd)
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		f := os.NewFile(uintptr(fd), name)
		ln, err := net.FileListener(f) // dups the descriptor
		f.Close()
		if err != nil {
			for _, l := range out {
				l.Close()
			}
			return nil, fmt.Errorf("socket activation: descriptor %d (%s) is not a listening socket: %w", fd, name, err)
		}
		out = append(out, ln)
	}
	return out, nil
}
