package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tibbersync/tibbersync/internal/model"
)

// Options configure a Server.
type Options struct {
	// Dir is the state directory; the socket is Dir/control.sock.
	Dir string
	// Flow is nil when the client id or secret is missing.
	Flow Flow
	// ConfigHint says what to configure when Flow is nil.
	ConfigHint string
	// Status reads the current auth state.
	Status func(ctx context.Context) (model.AuthStatus, error)
	// ParseRedirect turns a pasted text into the redirect URL (auth.ParseRedirect).
	ParseRedirect func(string) (*url.URL, error)
	// IsConfigError tells a rejected client configuration from other failures.
	IsConfigError func(error) bool
	// OnAuthorized runs after a successful Complete (starts the jobs).
	// The server then advances its generation itself (Authorized), so
	// OnAuthorized must not call Authorized.
	OnAuthorized func(model.AuthStatus)
	RedirectURL  string
	SetupURL     string
	Logger       *slog.Logger
	// GroupsOf returns the group ids of a uid (os/user when nil).
	GroupsOf func(uid int) ([]int, error)
	// ExchangeTimeout bounds the code exchange (60s when zero).
	ExchangeTimeout time.Duration
	// MaxWait bounds OpWait (15 minutes when zero).
	MaxWait time.Duration
}

// Server is the daemon's end of the control channel.
type Server struct {
	o       Options
	ln      listener
	path    string
	sockGID int
	selfUID int
	// pause waits d before the next accept after a failed one and reports
	// false when done closes first; sleepOrClose unless a test sets it.
	pause func(d time.Duration, done <-chan struct{}) bool
	done  chan struct{} // closed by Close

	mu     sync.Mutex
	gen    int           // incremented on every authorization
	genCh  chan struct{} // closed and replaced on every authorization
	closed bool
	// closeOnce makes Close idempotent and makes a second caller wait
	// until the socket file is removed.
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// listener is what Serve accepts from: the socket's *net.UnixListener, or
// a test's fake.
type listener interface {
	AcceptUnix() (*net.UnixConn, error)
	Close() error
}

// Listen creates the socket (mode 0660, group of the state directory). A
// stale socket left by a crashed daemon is replaced; a live one is an error
// (the daemon lock normally prevents that).
func Listen(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ExchangeTimeout == 0 {
		o.ExchangeTimeout = 60 * time.Second
	}
	if o.MaxWait == 0 {
		o.MaxWait = 15 * time.Minute
	}
	path := SocketPath(o.Dir)
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("control socket %q exists and is not a socket; remove it", path)
		}
		if c, err := (&Client{Path: path, DialTimeout: time.Second}).dial(context.Background()); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %q: another daemon answers on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale control socket: %w", err)
		}
	}
	addr, done, err := sockAddr(path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	done()
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Close removes the socket by its real path (addr may be a /proc name).
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	s := &Server{o: o, ln: ln, path: path, sockGID: -1, selfUID: os.Geteuid(), genCh: make(chan struct{}),
		pause: sleepOrClose, done: make(chan struct{})}
	if dfi, err := os.Stat(o.Dir); err == nil {
		if st, ok := dfi.Sys().(*syscall.Stat_t); ok {
			// The socket takes the state directory's group, so that the
			// analysts' group can hand over a setup.
			if err := os.Chown(path, -1, int(st.Gid)); err != nil {
				o.Logger.Warn("control socket: set group", "err", err)
			}
		}
	}
	if fi, err := os.Stat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			s.sockGID = int(st.Gid)
		}
	}
	return s, nil
}

// Path is the socket path.
func (s *Server) Path() string { return s.path }

// Bounds of the pause after a failed accept (EMFILE, ENFILE, ...), as in
// net/http's Server.Serve: it doubles per failure and starts over after an
// accept succeeds.
const (
	minAcceptPause = 5 * time.Millisecond
	maxAcceptPause = time.Second
)

// Serve accepts connections until ctx is done or Close is called. A failed
// accept (out of file descriptors, say) is retried after a pause, so that
// it neither spins a core nor floods the log: the first failure of a
// streak is logged at WARN, the repeats at DEBUG.
func (s *Server) Serve(ctx context.Context) {
	go func() {
		<-ctx.Done()
		s.Close()
	}()
	var pause time.Duration
	failures := 0
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				break
			}
			pause = min(max(2*pause, minAcceptPause), maxAcceptPause)
			failures++
			if failures == 1 {
				s.o.Logger.Warn("control socket accept failed; retrying with backoff", "err", err)
			} else {
				s.o.Logger.Debug("control socket accept failed again", "err", err, "failures", failures, "pause", pause)
			}
			if !s.pause(pause, s.done) {
				break
			}
			continue
		}
		if failures > 0 {
			s.o.Logger.Info("control socket accepts again", "failures", failures)
		}
		pause, failures = 0, 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(ctx, c)
		}()
	}
	// The accept loop can end on the listener's close before the closing
	// goroutine has removed the socket file: finish the close here, so the
	// socket is gone when Serve returns.
	s.Close()
	s.wg.Wait()
}

// Close stops listening and removes the socket.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.done)
		s.ln.Close()
		_ = os.Remove(s.path)
	})
}

// sleepOrClose waits d and reports true, or reports false as soon as done
// is closed.
func sleepOrClose(d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// Authorized tells waiting clients (the browser flow) that the daemon is
// authorized now, advancing the generation by one. The server calls it
// after each Complete it served; the daemon calls it for every other
// successful Complete (the web page's /callback and paste).
func (s *Server) Authorized() {
	s.mu.Lock()
	s.gen++
	close(s.genCh)
	s.genCh = make(chan struct{})
	s.mu.Unlock()
}

func (s *Server) generation() (int, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen, s.genCh
}

// Peer is a connecting process as SO_PEERCRED (and SO_PEERGROUPS, its
// supplementary groups) reports it.
type Peer struct {
	PID, UID, GID int
	Groups        []int
}

func peerOf(c *net.UnixConn) (Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *syscall.Ucred
	var groups []int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
		groups = peerGroups(fd)
	}); err != nil {
		return Peer{}, err
	}
	if serr != nil {
		return Peer{}, serr
	}
	return Peer{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid), Groups: groups}, nil
}

// peerGroups reads SO_PEERGROUPS (Linux 4.13+): the peer's supplementary
// groups as an array of gid_t. nil when the kernel cannot tell.
func peerGroups(fd uintptr) []int {
	buf := make([]uint32, 256)
	n := uint32(len(buf) * 4)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_PEERGROUPS,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return nil
	}
	var out []int
	for _, g := range buf[:min(int(n)/4, len(buf))] {
		out = append(out, int(g))
	}
	return out
}

// overflowUID is the uid an unmapped user appears as inside a user
// namespace (systemd PrivateUsers=).
func overflowUID() int {
	b, err := os.ReadFile("/proc/sys/kernel/overflowuid")
	if err != nil {
		return 65534
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 65534
	}
	return n
}

// allowed decides whether a peer may use the channel: root, the daemon's
// own user, a member of the socket's group, or an unmapped user (who
// already passed the socket's 0660 mode).
func (s *Server) allowed(p Peer) error {
	if p.UID == 0 || p.UID == s.selfUID || p.UID == overflowUID() {
		return nil
	}
	if s.sockGID >= 0 {
		if p.GID == s.sockGID || slices.Contains(p.Groups, s.sockGID) {
			return nil
		}
		groupsOf := s.o.GroupsOf
		if groupsOf == nil {
			groupsOf = lookupGroups
		}
		if gids, err := groupsOf(p.UID); err == nil {
			for _, g := range gids {
				if g == s.sockGID {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("uid %d is neither root nor a member of the daemon's group (gid %d): run the command with sudo, or join the group: sudo usermod -aG %s $USER (then log in again)", p.UID, s.sockGID, groupName(s.sockGID))
}

func lookupGroups(uid int) ([]int, error) {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return nil, err
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, err
	}
	var out []int
	for _, id := range ids {
		if n, err := strconv.Atoi(id); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

func (s *Server) handle(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	resp := s.respond(ctx, c)
	resp.PID = os.Getpid()
	resp.UID = s.selfUID
	b, err := encode(resp)
	if err != nil {
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write(b)
}

func fail(code, format string, args ...any) Response {
	return Response{Code: code, Error: fmt.Sprintf(format, args...)}
}

func (s *Server) respond(ctx context.Context, c *net.UnixConn) Response {
	p, err := peerOf(c)
	if err != nil {
		return fail(CodeForbidden, "cannot read the peer's credentials: %v", err)
	}
	if err := s.allowed(p); err != nil {
		s.o.Logger.Warn("control socket: refused a client", "uid", p.UID, "pid", p.PID)
		return fail(CodeForbidden, "%v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReaderSize(io.LimitReader(c, 64<<10), 16<<10).ReadBytes('\n')
	if err != nil && (len(line) == 0 || !errors.Is(err, io.EOF)) {
		return fail(CodeBadRequest, "read request: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return fail(CodeBadRequest, "bad request: %v", err)
	}
	switch req.Op {
	case OpStatus:
		return s.status(ctx)
	case OpStart:
		if s.o.Flow == nil {
			return fail(CodeNotConfigured, "the daemon's Tibber client is not configured: %s", s.o.ConfigHint)
		}
		gen, _ := s.generation()
		u, err := s.o.Flow.Start(ctx)
		if err != nil {
			return fail(CodeAuth, "start authorization: %v", err)
		}
		s.o.Logger.Info("authorization attempt started through the control socket", "uid", p.UID, "pid", p.PID)
		return Response{OK: true, AuthorizeURL: u, RedirectURL: s.o.RedirectURL, SetupURL: s.o.SetupURL, Generation: gen}
	case OpComplete:
		if s.o.Flow == nil {
			return fail(CodeNotConfigured, "the daemon's Tibber client is not configured: %s", s.o.ConfigHint)
		}
		u, err := s.o.ParseRedirect(req.Redirect)
		if err != nil {
			return fail(CodeBadRequest, "%v", err)
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.ExchangeTimeout)
		defer cancel()
		st, err := s.o.Flow.Complete(cctx, u)
		if err != nil {
			if gen, _ := s.generation(); req.After != nil && gen > *req.After {
				s.o.Logger.Info("pasted redirect not needed: the browser already completed this authorization through the setup page")
				return s.status(ctx)
			}
			code := CodeAuth
			if s.o.IsConfigError != nil && s.o.IsConfigError(err) {
				code = CodeConfig
			}
			return fail(code, "%v", err)
		}
		s.o.Logger.Info("authorized through the control socket", "uid", p.UID, "pid", p.PID)
		if s.o.OnAuthorized != nil {
			s.o.OnAuthorized(st)
		}
		s.Authorized()
		return Response{OK: true, Status: &st}
	case OpWait:
		return s.wait(ctx, req)
	default:
		return fail(CodeBadRequest, "unknown op %q", req.Op)
	}
}

func (s *Server) status(ctx context.Context) Response {
	if s.o.Status == nil {
		return fail(CodeBadRequest, "status not available")
	}
	st, err := s.o.Status(ctx)
	if err != nil {
		return fail(CodeAuth, "read auth status: %v", err)
	}
	return Response{OK: true, Status: &st, SetupURL: s.o.SetupURL, RedirectURL: s.o.RedirectURL}
}

// wait blocks until an authorization later than generation req.After.
func (s *Server) wait(ctx context.Context, req Request) Response {
	if req.After == nil {
		return fail(CodeBadRequest, "wait: no generation given")
	}
	after := *req.After
	d := time.Duration(req.TimeoutSeconds) * time.Second
	if d <= 0 || d > s.o.MaxWait {
		d = s.o.MaxWait
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		gen, ch := s.generation()
		if gen > after {
			return s.status(ctx)
		}
		select {
		case <-ch:
		case <-t.C:
			return fail(CodeTimeout, "timed out waiting for the authorization; nothing was stored")
		case <-ctx.Done():
			return fail(CodeTimeout, "the daemon is stopping")
		}
	}
}
