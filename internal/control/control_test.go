package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// fakeFlow is an authorization flow with one pending state.
type fakeFlow struct {
	mu      sync.Mutex
	pending string
	n       int
}

func (f *fakeFlow) Start(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	f.pending = fmt.Sprintf("state%d", f.n)
	return "https://auth.example/authorize?state=" + f.pending, nil
}

func (f *fakeFlow) Complete(_ context.Context, u *url.URL) (model.AuthStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending == "" || u.Query().Get("state") != f.pending {
		return model.AuthStatus{}, errors.New("state does not match the pending attempt")
	}
	f.pending = ""
	return model.AuthStatus{State: model.AuthOK, Email: "a@example.com", GrantedScopes: []string{"openid"}}, nil
}

type rig struct {
	srv        *Server
	cli        *Client
	authorized chan model.AuthStatus
	cancel     context.CancelFunc
	done       chan struct{}
}

func newRig(t *testing.T, flow Flow) *rig {
	t.Helper()
	// A short path: sun_path holds 108 bytes.
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := &rig{authorized: make(chan model.AuthStatus, 4), done: make(chan struct{})}
	var status model.AuthStatus
	var mu sync.Mutex
	srv, err := Listen(Options{
		Dir:           dir,
		Flow:          flow,
		ConfigHint:    "set [tibber].client_id",
		RedirectURL:   "http://localhost:8765/callback",
		ParseRedirect: func(s string) (*url.URL, error) { return url.Parse(strings.TrimSpace(s)) },
		Status: func(context.Context) (model.AuthStatus, error) {
			mu.Lock()
			defer mu.Unlock()
			return status, nil
		},
		OnAuthorized: func(st model.AuthStatus) {
			mu.Lock()
			status = st
			mu.Unlock()
			r.authorized <- st
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.srv, r.cli, r.cancel = srv, NewClient(dir), cancel
	go func() {
		defer close(r.done)
		srv.Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func TestSocketModeAndPasteFlow(t *testing.T) {
	r := newRig(t, &fakeFlow{})
	fi, err := os.Stat(r.srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want a 0660 socket", fi.Mode())
	}
	ctx := context.Background()
	if _, err := r.cli.Probe(ctx); err != nil {
		t.Fatalf("probe: %v", err)
	}
	start, err := r.cli.Do(ctx, Request{Op: OpStart})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(start.AuthorizeURL, "state=state1") || start.RedirectURL != "http://localhost:8765/callback" {
		t.Fatalf("start answer %+v", start)
	}
	// A wrong paste is refused and names the problem; the attempt stays.
	_, err = r.cli.Do(ctx, Request{Op: OpComplete, Redirect: "http://localhost:8765/callback?code=x&state=nope", After: &start.Generation})
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != CodeAuth || !strings.Contains(ce.Msg, "state does not match") {
		t.Fatalf("wrong state: err %v", err)
	}
	done, err := r.cli.Do(ctx, Request{Op: OpComplete, Redirect: "http://localhost:8765/callback?code=x&state=state1", After: &start.Generation})
	if err != nil {
		t.Fatalf("complete: %v", err)
	}
	if done.Status == nil || done.Status.State != model.AuthOK || done.Status.Email != "a@example.com" {
		t.Fatalf("complete answer %+v", done)
	}
	select {
	case st := <-r.authorized:
		if st.State != model.AuthOK {
			t.Fatalf("OnAuthorized got %+v", st)
		}
	default:
		t.Fatal("OnAuthorized was not called: jobs would not start")
	}
	st, err := r.cli.Probe(ctx)
	if err != nil || st.Status.State != model.AuthOK || st.PID != os.Getpid() {
		t.Fatalf("status after: %+v %v", st, err)
	}
}

// The browser flow: the CLI waits while the daemon's web page completes.
func TestWaitReturnsOnAuthorizationElsewhere(t *testing.T) {
	r := newRig(t, &fakeFlow{})
	ctx := context.Background()
	start, err := r.cli.Do(ctx, Request{Op: OpStart})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := r.cli.Do(ctx, Request{Op: OpWait, After: &start.Generation, TimeoutSeconds: 600})
		got <- err
	}()
	// The web page's /callback: the daemon calls Authorized.
	r.srv.Authorized()
	if err := <-got; err != nil {
		t.Fatalf("wait: %v", err)
	}
	// A paste of an already-used redirect after the page completed it is
	// reported as authorized, not as an error.
	if _, err := r.cli.Do(ctx, Request{Op: OpComplete, Redirect: "http://localhost:8765/callback?code=x&state=stale", After: &start.Generation}); err != nil {
		t.Fatalf("paste after page completion: %v", err)
	}
}

// TestCompleteAdvancesGenerationOnce: the server counts an authorization
// it completed itself, exactly once, with no daemon around (this rig's
// OnAuthorized, like the daemon's, does not call Authorized); a client
// waiting for it returns.
func TestCompleteAdvancesGenerationOnce(t *testing.T) {
	r := newRig(t, &fakeFlow{})
	ctx := context.Background()
	first, err := r.cli.Do(ctx, Request{Op: OpStart})
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := r.cli.Do(ctx, Request{Op: OpWait, After: &first.Generation, TimeoutSeconds: 600})
		waited <- err
	}()
	if _, err := r.cli.Do(ctx, Request{Op: OpComplete, Redirect: "http://localhost:8765/callback?code=x&state=state1", After: &first.Generation}); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("wait: %v", err)
	}
	second, err := r.cli.Do(ctx, Request{Op: OpStart})
	if err != nil {
		t.Fatal(err)
	}
	if second.Generation != first.Generation+1 {
		t.Errorf("one authorization moved the generation from %d to %d, want %d", first.Generation, second.Generation, first.Generation+1)
	}
}

func TestWaitTimesOut(t *testing.T) {
	r := newRig(t, &fakeFlow{})
	r.srv.o.MaxWait = time.Millisecond
	g := 0
	_, err := r.cli.Do(context.Background(), Request{Op: OpWait, After: &g})
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != CodeTimeout {
		t.Fatalf("want timeout, got %v", err)
	}
}

func TestNotConfiguredAndBadRequests(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	_, err := r.cli.Do(ctx, Request{Op: OpStart})
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != CodeNotConfigured || !strings.Contains(ce.Msg, "client_id") {
		t.Fatalf("start without client: %v", err)
	}
	if _, err := r.cli.Do(ctx, Request{Op: "launch"}); !errors.As(err, &ce) || ce.Code != CodeBadRequest {
		t.Fatalf("unknown op: %v", err)
	}
	// Garbage on the wire.
	c, err := net.Dial("unix", r.srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("{not json\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	if !strings.Contains(string(buf[:n]), `"code":"bad_request"`) {
		t.Fatalf("garbage answered with %q", buf[:n])
	}
}

func TestNoDaemonAndStaleSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if _, err := NewClient(dir).Probe(context.Background()); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("no socket: %v, want ErrNoDaemon", err)
	}
	// A socket left by a crashed daemon: nobody listens.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: SocketPath(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := NewClient(dir).Probe(context.Background()); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("stale socket: %v, want ErrNoDaemon", err)
	}
	srv, err := Listen(Options{Dir: dir})
	if err != nil {
		t.Fatalf("a stale socket must be replaced: %v", err)
	}
	defer srv.Close()
	// A live one is not.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx)
	if _, err := Listen(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "another daemon") {
		t.Fatalf("second listener: %v", err)
	}
	// A regular file in the socket's place is not removed.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, SocketName), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(Options{Dir: dir2}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
}

// SO_PEERCRED: who may use the channel.
func TestPeerPolicy(t *testing.T) {
	s := &Server{selfUID: 998, sockGID: 997, o: Options{GroupsOf: func(uid int) ([]int, error) {
		switch uid {
		case 1000:
			return []int{1000, 997}, nil // alice, in the tibbersync group
		case 1001:
			return []int{1001, 27}, nil
		}
		return nil, errors.New("unknown uid")
	}}}
	for _, tc := range []struct {
		p    Peer
		want bool
	}{
		{Peer{UID: 0, GID: 0}, true},
		{Peer{UID: 998, GID: 997}, true},
		{Peer{UID: 1000, GID: 1000}, true},
		{Peer{UID: 1002, GID: 997}, true},
		{Peer{UID: 1003, GID: 1003, Groups: []int{1003, 997}}, true}, // SO_PEERGROUPS
		{Peer{UID: 1004, GID: 1004, Groups: []int{1004, 27}}, false},
		{Peer{UID: 1001, GID: 1001}, false},
		{Peer{UID: 4242, GID: 4242}, false},
	} {
		err := s.allowed(tc.p)
		if (err == nil) != tc.want {
			t.Errorf("peer %+v: allowed=%v, want %v (%v)", tc.p, err == nil, tc.want, err)
		}
		if err != nil && !strings.Contains(err.Error(), "usermod -aG") {
			t.Errorf("refusal does not say how to join the group: %v", err)
		}
	}
	// The real peer of a real connection is this process.
	r := newRig(t, &fakeFlow{})
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: r.srv.Path(), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := peerOf(c)
	if err != nil || p.UID != os.Geteuid() || p.PID != os.Getpid() {
		t.Fatalf("peerOf = %+v, %v", p, err)
	}
}

// A state directory deeper than sun_path allows still gets its socket.
func TestLongPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if len(SocketPath(dir)) <= maxSunPath {
		t.Fatalf("path %d bytes is not long", len(SocketPath(dir)))
	}
	srv, err := Listen(Options{Dir: dir, Status: func(context.Context) (model.AuthStatus, error) {
		return model.AuthStatus{State: model.AuthOK}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	if fi, err := os.Stat(SocketPath(dir)); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket at its real path: %v %v", fi, err)
	}
	st, err := NewClient(dir).Probe(ctx)
	if err != nil || st.Status.State != model.AuthOK {
		t.Fatalf("probe over a long path: %+v %v", st, err)
	}
	cancel()
	<-done
	if _, err := os.Stat(SocketPath(dir)); !os.IsNotExist(err) {
		t.Fatalf("socket left after Close: %v", err)
	}
}

// SO_PEERGROUPS of a real connection lists this process's groups.
func TestPeerGroupsOfARealConnection(t *testing.T) {
	r := newRig(t, &fakeFlow{})
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: r.srv.Path(), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := peerOf(c)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range want {
		if !slices.Contains(p.Groups, g) {
			t.Errorf("peer groups %v lack %d (os.Getgroups %v)", p.Groups, g, want)
		}
	}
}

// The permission message names the group of the socket file as the system
// names it (its number when it has no name), the state directory's when
// the socket cannot be stat'ed, and says it once for both ways a client is
// refused (no search permission on a long path's directory, EACCES on
// connect).
func TestPermissionMessageNamesTheSocketGroup(t *testing.T) {
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	c := NewClient(dir)
	message := func() string {
		err := c.permissionError()
		if !errors.Is(err, ErrPermission) {
			t.Fatalf("%v is not ErrPermission", err)
		}
		return err.Error()
	}
	gidOf := func(path string) int {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return int(fi.Sys().(*syscall.Stat_t).Gid)
	}

	// No socket: the state directory's group.
	dirGroup := groupName(gidOf(dir))
	if msg := message(); !strings.Contains(msg, "usermod -aG "+dirGroup+" $USER") {
		t.Errorf("without a socket the message does not name the directory's group %q: %s", dirGroup, msg)
	}

	// A socket whose group differs from the directory's: the socket's.
	if err := os.WriteFile(c.Path, nil, 0o660); err != nil {
		t.Fatal(err)
	}
	named := -1
	for gid := 1; gid < 1000; gid++ {
		if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil && g.Name != dirGroup && os.Chown(c.Path, -1, gid) == nil {
			named = gid
			break
		}
	}
	if named < 0 {
		t.Log("no other named group to give the socket (not root?); checked with the directory's group only")
	} else if msg, want := message(), groupName(named); !strings.Contains(msg, "usermod -aG "+want+" $USER") {
		t.Errorf("the message does not name the socket's group %q: %s", want, msg)
	}

	// A group without a name: its number.
	unnamed := 54321
	if _, err := user.LookupGroupId(strconv.Itoa(unnamed)); err == nil {
		t.Skipf("gid %d has a name here", unnamed)
	}
	if err := os.Chown(c.Path, -1, unnamed); err != nil {
		t.Skipf("cannot give the socket gid %d (not root?): %v", unnamed, err)
	}
	if msg := message(); !strings.Contains(msg, "usermod -aG 54321 $USER") {
		t.Errorf("the message does not give the unnamed group's number: %s", msg)
	}
}
