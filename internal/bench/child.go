package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// Child roles: the scenarios that run in a process of their own, so that
// their memory and I/O counters are theirs alone.
const (
	// RoleCycles runs RunCycles.
	RoleCycles = "cycles"
	// RoleBackfill runs RunBackfill.
	RoleBackfill = "backfill"
)

// ChildArg is the first argument that puts the bench driver in a child role.
const ChildArg = "child"

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// ChildMain runs one scenario in this process: args are the role, stdin
// holds the parameters as JSON, and the result goes to stdout as JSON. Log
// lines (warnings and errors) are kept in memory and written to stderr only
// at the end, so that no write to a pipe lands in the scenario's wchar. It
// returns the exit code.
func ChildMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintf(stderr, "bench child: want one role (%s or %s), got %q\n", RoleCycles, RoleBackfill, args)
		return 2
	}
	logBuf := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dec := json.NewDecoder(stdin)
	dec.DisallowUnknownFields()
	var (
		result any
		err    error
	)
	switch args[0] {
	case RoleCycles:
		var p CycleParams
		if err = dec.Decode(&p); err == nil {
			result, err = RunCycles(ctx, p, log)
		}
	case RoleBackfill:
		var p BackfillParams
		if err = dec.Decode(&p); err == nil {
			result, err = RunBackfill(ctx, p, log)
		}
	default:
		err = fmt.Errorf("unknown role %q", args[0])
	}
	_, _ = stderr.Write(logBuf.Bytes())
	if err != nil {
		fmt.Fprintf(stderr, "bench child %s: %v\n", args[0], err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(result); err != nil {
		fmt.Fprintf(stderr, "bench child %s: write result: %v\n", args[0], err)
		return 1
	}
	return 0
}

// spawn runs `exe child role` with params on stdin and decodes the JSON it
// prints into result. It returns what the child logged (its warnings).
func spawn(ctx context.Context, exe, role string, params, result any) (string, error) {
	in, err := json.Marshal(params)
	if err != nil {
		return "", fmt.Errorf("spawn %s: %w", role, err)
	}
	cmd := exec.CommandContext(ctx, exe, ChildArg, role)
	cmd.Stdin = bytes.NewReader(in)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Env = os.Environ()
	if err := cmd.Run(); err != nil {
		return errOut.String(), fmt.Errorf("spawn %s: %w: %s", role, err, strings.TrimSpace(errOut.String()))
	}
	if err := json.Unmarshal(out.Bytes(), result); err != nil {
		return errOut.String(), fmt.Errorf("spawn %s: result: %w", role, err)
	}
	return errOut.String(), nil
}
