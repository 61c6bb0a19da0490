package control

import (
	"context"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

// flakyListener wraps the server's real listener: call i of AcceptUnix
// returns script[i] when that is an error, and otherwise accepts on the
// real socket, first sending i on reached.
type flakyListener struct {
	real    listener
	script  []error
	reached chan int

	mu    sync.Mutex
	calls int
}

func (f *flakyListener) AcceptUnix() (*net.UnixConn, error) {
	f.mu.Lock()
	i := f.calls
	f.calls++
	f.mu.Unlock()
	if i < len(f.script) && f.script[i] != nil {
		return nil, f.script[i]
	}
	f.reached <- i
	return f.real.AcceptUnix()
}

func (f *flakyListener) Close() error { return f.real.Close() }

func (f *flakyListener) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// acceptErr is what accept(2) fails with when the process is out of
// file descriptors.
func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", errno)}
}

// flakyServer is a listening server whose accepts follow script and whose
// backoff waits go to pause instead of the clock; Serve is not started.
func flakyServer(t *testing.T, script []error, pause func(time.Duration, <-chan struct{}) bool) (*Server, *flakyListener, *testutil.SyncBuffer) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	logs := &testutil.SyncBuffer{}
	srv, err := Listen(Options{
		Dir:    dir,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Status: func(context.Context) (model.AuthStatus, error) { return model.AuthStatus{State: model.AuthOK}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyListener{real: srv.ln, script: script, reached: make(chan int, len(script)+2)}
	srv.ln, srv.pause = f, pause
	t.Cleanup(srv.Close)
	return srv, f, logs
}

// TestAcceptErrorsBackOff: accept failing with EMFILE or ENFILE (out of
// file descriptors) is retried after a pause that starts at 5 ms, doubles
// up to 1 s and starts over after an accept succeeds, as net/http's
// Server.Serve does; the first failure of a streak is logged at WARN, the
// repeats only at DEBUG. Before, the loop retried at once, spinning a core
// and writing a WARN line per attempt.
func TestAcceptErrorsBackOff(t *testing.T) {
	var script []error
	for range 10 {
		script = append(script, acceptErr(syscall.EMFILE))
	}
	script = append(script, nil, acceptErr(syscall.ENFILE), acceptErr(syscall.ENFILE))
	var mu sync.Mutex
	var waits []time.Duration
	srv, f, logs := flakyServer(t, script, func(d time.Duration, done <-chan struct{}) bool {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return true // the test's clock: the pause is over at once
	})
	recorded := func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(waits)
	}
	ms := time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ctx)
	}()

	// Ten failures, each followed by one pause: 5 ms doubling, capped at 1 s.
	if i := <-f.reached; i != 10 {
		t.Fatalf("accept call %d reached the socket, want call 10", i)
	}
	want := []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second}
	if got := recorded(); !slices.Equal(got, want) {
		t.Errorf("pauses after 10 failed accepts: %v, want %v", got, want)
	}
	if n := logs.Lines("level=WARN"); n != 1 {
		t.Errorf("%d WARN lines for one streak of 10 failed accepts, want 1:\n%s", n, logs.String())
	}

	// An accept succeeds (a client connects): the next failure pauses 5 ms again.
	if _, err := NewClient(srv.o.Dir).Probe(ctx); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if i := <-f.reached; i != 13 {
		t.Fatalf("accept call %d reached the socket, want call 13", i)
	}
	want = append(want, 5*ms, 10*ms)
	if got := recorded(); !slices.Equal(got, want) {
		t.Errorf("pauses after a success and 2 more failures: %v, want %v", got, want)
	}
	if n := logs.Lines("level=WARN"); n != 2 {
		t.Errorf("%d WARN lines for two streaks of failed accepts, want 2:\n%s", n, logs.String())
	}
	if n := logs.Lines("accepts again"); n != 1 {
		t.Errorf("%d lines saying the socket accepts again, want 1:\n%s", n, logs.String())
	}
	if n := f.count(); n != 14 {
		t.Errorf("%d accept calls, want 14 (13 scripted and the one waiting)", n)
	}

	cancel()
	<-served
	if _, err := os.Stat(srv.Path()); !os.IsNotExist(err) {
		t.Errorf("socket left after Serve returned: %v", err)
	}
}

// TestCloseEndsAcceptPause: Close during the pause after a failed accept
// ends Serve without another accept.
func TestCloseEndsAcceptPause(t *testing.T) {
	paused := make(chan time.Duration, 1)
	srv, f, _ := flakyServer(t, []error{acceptErr(syscall.EMFILE)}, func(d time.Duration, done <-chan struct{}) bool {
		paused <- d
		<-done // the test's clock never ends the pause: only Close does
		return false
	})
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(context.Background())
	}()
	select {
	case <-paused:
	case i := <-f.reached:
		t.Fatalf("accept call %d followed the failed one without a pause", i)
	}
	srv.Close()
	<-served
	if n := f.count(); n != 1 {
		t.Errorf("%d accept calls, want 1: Close during the pause must end the loop", n)
	}
}

// sleepOrClose, the pause outside tests, ends on done even when its timer
// is far off.
func TestSleepOrClose(t *testing.T) {
	done := make(chan struct{})
	close(done)
	if sleepOrClose(time.Hour, done) {
		t.Error("sleepOrClose reported a finished pause although done was closed")
	}
	if !sleepOrClose(time.Nanosecond, make(chan struct{})) {
		t.Error("sleepOrClose reported done after its timer fired")
	}
}
