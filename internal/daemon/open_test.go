package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

// TestOpenErrorsRestartCanFixAreNotConfigErrors: only what the admin must
// fix exits 78 (which systemd does not restart). A store open that was
// cancelled — systemd's start timeout or a stop during the one-off history
// conversion after an upgrade — or that failed on a busy or full disk must
// leave the service restartable. It used to be a ConfigError, so a Pi that
// needed longer than the start timeout to convert stayed stopped for good.
func TestOpenErrorsRestartCanFixAreNotConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		err    error
		config bool
	}{
		{context.Canceled, false},
		{fmt.Errorf("convert history: batch: %w", context.DeadlineExceeded), false},
		{fmt.Errorf("write: %w", syscall.ENOSPC), false},
		{fmt.Errorf("lock: %w", syscall.EIO), false},
		{errors.New("database is locked"), false},
		{fmt.Errorf("open data.db: %w", fs.ErrPermission), true},
		{fmt.Errorf("secrets: %w", tokenstore.ErrInsecure), true},
		{fmt.Errorf("%w: too new", store.ErrNewerSchema), true},
		{fmt.Errorf("%w: bad", store.ErrBadDSN), true},
		{&fs.PathError{Op: "mkdir", Path: "/x/data.db", Err: syscall.ENOTDIR}, true},
	} {
		if got := IsConfigError(openErr(tc.err)); got != tc.config {
			t.Errorf("openErr(%v): config error %v, want %v", tc.err, got, tc.config)
		}
	}

	// End to end: Open with its context already ended (what a stop during
	// the migrations looks like) fails, and not as a ConfigError.
	clk := clock.NewFake(start)
	cfg, _ := testConfig(t, clk)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Open(ctx, cfg, Options{Clock: clk, Logger: logging.Discard()})
	if err == nil || IsConfigError(err) {
		t.Fatalf("Open with a cancelled context: %v (config error %v), want a restartable error", err, IsConfigError(err))
	}
}

// TestConvertProgressExtendsSystemdStartTimeout: under systemd, each batch
// of the one-off history conversion tells systemd to extend the start
// timeout and shows the progress in the unit's status; outside systemd,
// or for a non-service Open, nothing is sent.
func TestConvertProgressExtendsSystemdStartTimeout(t *testing.T) {
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	d := &Daemon{clk: clock.NewFake(start), opts: Options{Service: true, Environ: []string{"NOTIFY_SOCKET=" + sockPath}}}
	p := d.convertProgress(logging.Discard())
	p(store.ConvertProgress{Total: 1000})
	p(store.ConvertProgress{Done: 500, Total: 1000})
	p(store.ConvertProgress{Done: 1000, Total: 1000, Finished: true})
	want := []string{
		"EXTEND_TIMEOUT_USEC=300000000\nSTATUS=converting history to the compact layout: 0 of 1000 values",
		"EXTEND_TIMEOUT_USEC=300000000\nSTATUS=converting history to the compact layout: 500 of 1000 values",
		"EXTEND_TIMEOUT_USEC=300000000\nSTATUS=history converted to the compact layout",
	}
	buf := make([]byte, 4096)
	for i, w := range want {
		if err := sock.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		n, err := sock.Read(buf) // the datagrams were sent before: no race
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if got := strings.TrimSpace(string(buf[:n])); got != w {
			t.Errorf("datagram %d = %q, want %q", i, got, w)
		}
	}

	// Not a service (sync, demo): no datagram, however the environment looks.
	quiet := &Daemon{clk: clock.NewFake(start), opts: Options{Environ: []string{"NOTIFY_SOCKET=" + sockPath}}}
	quiet.convertProgress(logging.Discard())(store.ConvertProgress{Total: 1})
	if err := sock.SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, err := sock.Read(buf); err == nil {
		t.Fatalf("a non-service Open sent %q", buf[:n])
	}
	_ = os.Remove(sockPath)
}

// TestSyncRunJudgedLikeScheduledRuns: `tibbersync sync` (RunJob) records a
// partial run that a storm or a 429 ended as a failure, exactly as the
// scheduler does (jobs.CountedStatus): it must not reset the failure count
// or the breaker. It used to count as a success.
func TestSyncRunJudgedLikeScheduledRuns(t *testing.T) {
	clk := clock.NewFake(start)
	cfg, _ := testConfig(t, clk)
	ctx := context.Background()
	d := openTest(t, ctx, cfg, clk, Options{})
	breaker := start.Add(time.Hour)
	before := model.JobState{Job: "devices", ConsecutiveFailures: 2, BreakerUntil: breaker, LastSuccessAt: start.Add(-time.Hour)}
	if err := d.data.SaveJobState(ctx, before); err != nil {
		t.Fatal(err)
	}
	run := model.Run{Job: "devices", Status: jobs.StatusPartial, StartedAt: start, FinishedAt: start.Add(time.Minute)}
	d.recordJobState(ctx, run, fmt.Errorf("devices: %w", jobs.ErrStorm))
	st, err := d.data.JobState(ctx, "devices")
	if err != nil {
		t.Fatal(err)
	}
	if st.ConsecutiveFailures != 3 || !st.BreakerUntil.Equal(breaker) || !st.LastSuccessAt.Equal(before.LastSuccessAt) || !strings.Contains(st.LastError, "kept failing") {
		t.Fatalf("after a partial run ended by a storm: %+v; want 3 failures, the breaker kept, no new success, the error", st)
	}
	// A plain partial run (some devices failed, no storm) is a success.
	d.recordJobState(ctx, run, errors.New("one device failed"))
	if st, _ = d.data.JobState(ctx, "devices"); st.ConsecutiveFailures != 0 || !st.LastSuccessAt.Equal(run.FinishedAt) {
		t.Fatalf("after a plain partial run: %+v; want a success", st)
	}
}
