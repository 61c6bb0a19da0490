package tibber

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
)

// GateFileName is the rate gate's file in the state directory.
const GateFileName = "rate-gate"

// ErrRateGated is wrapped by *GateError: a request was not sent because
// Tibber asked this installation to wait (429, or a 503 with Retry-After).
var ErrRateGated = errors.New("rate gate closed")

// Gate is the installation's rate gate: a not-before time set by a 429's
// Retry-After (or a 503's, when sent), honoured by every request of every
// Client that shares it and, through its file in the state directory, by
// every process on the same state directory (the daemon and any
// `tibbersync sync`). It is safe for concurrent use.
type Gate struct {
	path string
	clk  clock.Clock

	mu     sync.Mutex
	until  time.Time
	reason string
	seen   fileStamp
}

type fileStamp struct {
	ino  uint64
	size int64
	mod  time.Time
}

// NewGate returns a gate persisted at path ("" keeps it in memory only).
func NewGate(path string, clk clock.Clock) *Gate {
	if clk == nil {
		clk = clock.Real{}
	}
	return &Gate{path: path, clk: clk}
}

// Path returns the gate's file ("" when in memory only).
func (g *Gate) Path() string { return g.path }

// Until returns the not-before time and why it was set. A zero or past
// time means the gate is open.
func (g *Gate) Until() (time.Time, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reloadLocked()
	return g.until, g.reason
}

// Close moves the not-before time to until, unless it is already later,
// and persists it. A failure to persist is returned; the gate still holds
// in this process.
func (g *Gate) Close(until time.Time, reason string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reloadLocked()
	if !until.After(g.until) {
		return nil
	}
	g.until, g.reason = until, reason
	if g.path == "" {
		return nil
	}
	line := until.UTC().Format(time.RFC3339Nano) + " " + strings.ReplaceAll(reason, "\n", " ") + "\n"
	tmp, err := os.CreateTemp(filepath.Dir(g.path), "."+filepath.Base(g.path)+".*")
	if err != nil {
		return fmt.Errorf("persist rate gate: %w", err)
	}
	_, werr := tmp.WriteString(line)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("persist rate gate: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o640); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("persist rate gate: %w", err)
	}
	if err := os.Rename(tmp.Name(), g.path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("persist rate gate: %w", err)
	}
	if st, ok := stamp(g.path); ok {
		g.seen = st
	}
	return nil
}

// reloadLocked reads the file when another process (or an earlier life)
// wrote it since it was last read; a later time there wins.
func (g *Gate) reloadLocked() {
	if g.path == "" {
		return
	}
	st, ok := stamp(g.path)
	if !ok || st == g.seen {
		return
	}
	b, err := os.ReadFile(g.path)
	if err != nil {
		return
	}
	g.seen = st
	text := strings.TrimSpace(string(b))
	when, reason, _ := strings.Cut(text, " ")
	t, err := time.Parse(time.RFC3339Nano, when)
	if err != nil {
		return
	}
	// A gate persisted far in the future (a clock that was wrong when it
	// was written) is capped like a Retry-After.
	if limit := g.clk.Now().Add(MaxRetryAfter); t.After(limit) {
		t = limit
	}
	if t.After(g.until) {
		g.until, g.reason = t, reason
	}
}

func stamp(path string) (fileStamp, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	st := fileStamp{size: fi.Size(), mod: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	return st, true
}

// GateError is returned for a request that was not sent because the gate
// is closed for longer than the call may wait.
type GateError struct {
	// Endpoint is the method and path that was not requested.
	Endpoint string
	// Until is when the gate opens.
	Until time.Time
	// Wait is how long that was from the call.
	Wait time.Duration
	// Reason is what closed the gate.
	Reason string
}

// Error implements error.
func (e *GateError) Error() string {
	s := fmt.Sprintf("%s: not sent: Tibber asked this installation to wait until %s (%s)",
		e.Endpoint, e.Until.UTC().Format(time.RFC3339), e.Wait.Round(time.Second))
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Unwrap makes errors.Is(err, ErrRateGated) true.
func (e *GateError) Unwrap() error { return ErrRateGated }

// RateGated marks the error as "not sent: rate gate closed" (jobs.RateGated).
func (e *GateError) RateGated() bool { return true }

// RetryAfterHint is how long the caller should wait (jobs.RetryAfterHinter).
func (e *GateError) RetryAfterHint() time.Duration { return e.Wait }
