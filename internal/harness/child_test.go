package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

// Environment of a child process (the test binary re-executed with
// -test.run=^TestHelperChild$).
const (
	envRole        = "TIBBERSYNC_HARNESS_ROLE"     // childLoop or childOnce
	envDir         = "TIBBERSYNC_HARNESS_DIR"      // storage dir
	envSimURL      = "TIBBERSYNC_HARNESS_SIM"      // simulator base URL
	envJobs        = "TIBBERSYNC_HARNESS_JOBS"     // comma-separated jobs (childOnce)
	envClockOffset = "TIBBERSYNC_HARNESS_OFFSET"   // time.ParseDuration, added to the real clock
	envBackfill    = "TIBBERSYNC_HARNESS_BACKFILL" // history backfill days
)

// Child roles.
const (
	// childLoop runs homes, devices and history over and over, reporting
	// every commit, until it is killed (or after childLoopLimit).
	childLoop = "loop"
	// childOnce runs the jobs in $TIBBERSYNC_HARNESS_JOBS once and exits 0
	// when all were ok, exitNotAuthorized when one was skipped for want of
	// authorization, exitFailed otherwise.
	childOnce = "once"
)

// Child exit codes and markers.
const (
	exitFailed        = 1
	exitNotAuthorized = 3
	readyLine         = "READY"
	runPrefix         = "RUN "
	childLoopLimit    = 2 * time.Minute
)

// TestHelperChild is not a test: it is the body of the child processes
// that the harness tests start. It runs the real write path in-process.
func TestHelperChild(t *testing.T) {
	role := os.Getenv(envRole)
	if role == "" {
		t.Skip("helper process for the harness tests; started by them")
	}
	os.Exit(runChild(role))
}

func runChild(role string) int {
	log, err := logging.New(os.Stderr, "info", "logfmt")
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return exitFailed
	}
	o := rigOptions{dir: os.Getenv(envDir), simURL: os.Getenv(envSimURL), log: log, report: os.Stdout}
	if v := os.Getenv(envClockOffset); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: clock offset:", err)
			return exitFailed
		}
		o.clock = offsetClock{offset: d}
	}
	if v := os.Getenv(envBackfill); v != "" {
		if o.backfillDays, err = strconv.Atoi(v); err != nil {
			fmt.Fprintln(os.Stderr, "child: backfill:", err)
			return exitFailed
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), childLoopLimit)
	defer cancel()
	r, err := openRig(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return exitFailed
	}
	defer r.close()
	fmt.Fprintln(os.Stdout, readyLine)
	switch role {
	case childLoop:
		for ctx.Err() == nil {
			for _, job := range []string{jobs.JobHomes, jobs.JobDevices, jobs.JobHistory} {
				if _, err := r.RunJob(ctx, job); errNotAuthorized(err) {
					fmt.Fprintln(os.Stderr, "child: not authorized:", err)
					return exitNotAuthorized
				}
			}
		}
		return exitFailed // only reached when the parent never killed us
	case childOnce:
		code := 0
		for _, job := range strings.Split(os.Getenv(envJobs), ",") {
			run, err := r.RunJob(ctx, job)
			fmt.Fprintf(os.Stdout, "%s%s %s requests=%d rows=%d error=%q\n", runPrefix, job, run.Status, run.Requests, run.RowsWritten, run.Error)
			switch {
			case run.Status == jobs.StatusSkipped || errNotAuthorized(err):
				return exitNotAuthorized
			case run.Status != jobs.StatusOK || err != nil:
				code = exitFailed
			}
		}
		return code
	}
	fmt.Fprintf(os.Stderr, "child: unknown role %q\n", role)
	return exitFailed
}

// child is a running child process, seen from the parent.
type child struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan struct{}
	err    error // cmd.Wait's result, valid after done
}

// lockedBuffer is the shared concurrency-safe log sink.
type lockedBuffer = testutil.SyncBuffer

// startChild re-executes the test binary as a child with role and env.
// The child dies with the parent (Pdeathsig) and is bounded by -test.timeout.
func startChild(t *testing.T, role string, env map[string]string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperChild$", "-test.timeout=150s")
	cmd.Env = append(os.Environ(), envRole+"="+role)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c := &child{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.stdout, c.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// waitLine waits until the child printed a line equal to want, or exited,
// or d passed.
func (c *child) waitLine(want string, d time.Duration) error {
	return c.waitFor(fmt.Sprintf("%q", want), func(l string) bool { return l == want }, d)
}

// waitReport waits until the child acknowledged a commit for which match
// returns true, or exited, or d passed.
func (c *child) waitReport(what string, match func(commitReport) bool, d time.Duration) error {
	return c.waitFor(what, func(l string) bool {
		rest, ok := strings.CutPrefix(l, commitPrefix)
		if !ok {
			return false
		}
		var r commitReport
		return json.Unmarshal([]byte(rest), &r) == nil && match(r)
	}, d)
}

// waitFor waits until a complete line of the child's stdout satisfies
// match, or the child exited, or d passed (d only bounds a hung child).
func (c *child) waitFor(what string, match func(string) bool, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		for _, l := range completeLines(c.stdout.String()) {
			if match(l) {
				return nil
			}
		}
		select {
		case <-c.done:
			return fmt.Errorf("child exited (%v) before printing %s; stderr:\n%s", c.err, what, tail(c.stderr.String(), 2000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("child did not print %s within %s; stderr:\n%s", what, d, tail(c.stderr.String(), 2000))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kill SIGKILLs the child and waits for it and its output.
func (c *child) kill() error {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-c.done:
		return nil
	case <-time.After(20 * time.Second):
		return fmt.Errorf("child %d did not die within 20s of SIGKILL", c.cmd.Process.Pid)
	}
}

// wait waits for the child to exit on its own and returns its exit code.
func (c *child) wait(d time.Duration) (int, error) {
	select {
	case <-c.done:
		return c.cmd.ProcessState.ExitCode(), nil
	case <-time.After(d):
		_ = c.kill()
		return -1, fmt.Errorf("child did not finish within %s; stderr:\n%s", d, tail(c.stderr.String(), 2000))
	}
}

// reports parses the commit reports among the child's complete stdout
// lines. A line cut off by the kill is not a report: the child writes each
// report with a single write after the commit returned, so a partial line
// can only belong to a commit the child had not acknowledged yet.
func (c *child) reports() ([]commitReport, error) {
	var out []commitReport
	for _, l := range completeLines(c.stdout.String()) {
		if !strings.HasPrefix(l, commitPrefix) {
			continue
		}
		var r commitReport
		if err := json.Unmarshal([]byte(strings.TrimPrefix(l, commitPrefix)), &r); err != nil {
			return nil, fmt.Errorf("parse child report %q: %w", l, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// runLines returns the RUN lines of a childOnce.
func (c *child) runLines() []string {
	var out []string
	for _, l := range completeLines(c.stdout.String()) {
		if strings.HasPrefix(l, runPrefix) {
			out = append(out, strings.TrimPrefix(l, runPrefix))
		}
	}
	return out
}

// completeLines returns the newline-terminated lines of s.
func completeLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if !strings.HasSuffix(s, "\n") && len(out) > 0 {
		out = out[:len(out)-1]
	}
	return out
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
