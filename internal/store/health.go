package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tibbersync/tibbersync/internal/dbfile"
	"github.com/tibbersync/tibbersync/internal/model"
)

// Storage faults that make the store refuse writes (issue 17). Each stays
// until the process restarts: writing on would lose data silently.
var (
	// ErrFileReplaced: data.db, its -wal or its -shm was deleted or replaced
	// (e.g. a backup moved over it) under the running process. Writes would
	// go to a file nobody reads again, or discard the newer data.
	ErrFileReplaced = errors.New("data.db deleted or replaced under the running process")
	// ErrDamaged: quick_check found data.db damaged.
	ErrDamaged = errors.New("data.db is damaged")
)

// DefaultQuickCheckTimeout bounds the background quick_check of data.db.
const DefaultQuickCheckTimeout = 10 * time.Minute

// fault is the state that makes writes fail; see refuse.
type fault struct {
	mu    sync.Mutex
	err   error        // sticky: replaced, deleted or damaged
	files dbfile.Files // identities of data.db, -wal, -shm at open
	// lastWrite is the last failed write (disk full, read-only, I/O) and
	// when; cleared by the next successful commit.
	lastWrite   error
	lastWriteAt time.Time
	// onError, when set, is told about every storage error (for metrics).
	onError func(kind string)
}

// recordFiles remembers data.db's files as opened.
func (db *DB) recordFiles() {
	db.fault.mu.Lock()
	defer db.fault.mu.Unlock()
	db.fault.files = dbfile.Record(db.path)
}

// OnStorageError sets a callback told about every storage error by kind:
// "write" (a failed write: disk full, read-only, I/O), "replaced" (a file
// deleted or replaced), "damaged" (quick_check). For a metric.
func (db *DB) OnStorageError(fn func(kind string)) {
	db.fault.mu.Lock()
	db.fault.onError = fn
	db.fault.mu.Unlock()
}

func (db *DB) observe(kind string) {
	db.fault.mu.Lock()
	fn := db.fault.onError
	db.fault.mu.Unlock()
	if fn != nil {
		fn(kind)
	}
}

// setFault makes every later write fail with err, logging it once.
func (db *DB) setFault(err error, kind string) {
	db.fault.mu.Lock()
	first := db.fault.err == nil
	if first {
		db.fault.err = err
	}
	db.fault.mu.Unlock()
	if first {
		db.log.Error("data.db: no more writes until tibbersync is restarted", "err", err)
		db.observe(kind)
	}
}

// refuse returns the sticky fault, if any: begin calls it before every write.
func (db *DB) refuse() error {
	db.fault.mu.Lock()
	defer db.fault.mu.Unlock()
	return db.fault.err
}

// noteWrite records the outcome of a write transaction.
func (db *DB) noteWrite(err error) {
	if err == nil {
		db.fault.mu.Lock()
		db.fault.lastWrite = nil
		db.fault.mu.Unlock()
		return
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrFileReplaced) || errors.Is(err, ErrDamaged) || errors.Is(err, ErrReadOnly) {
		return
	}
	db.fault.mu.Lock()
	db.fault.lastWrite = err
	db.fault.lastWriteAt = db.clock.Now()
	db.fault.mu.Unlock()
	db.observe("write")
}

// CheckFiles checks that data.db, its -wal and its -shm are still the files
// this process opened. When one was deleted or replaced, writes are refused
// from then on (an error wrapping ErrFileReplaced, also returned here): the
// daemon must be restarted to reopen the file. The daemon calls it
// periodically and before each job.
func (db *DB) CheckFiles() error {
	if err := db.refuse(); err != nil && errors.Is(err, ErrFileReplaced) {
		return err
	}
	db.fault.mu.Lock()
	files := db.fault.files
	db.fault.mu.Unlock()
	err := files.Check()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, dbfile.ErrDeleted):
		err = fmt.Errorf("%w: %w; restart tibbersync to create or reopen it", ErrFileReplaced, err)
	default:
		err = fmt.Errorf("%w: %w; restart tibbersync to open the new one", ErrFileReplaced, err)
	}
	db.setFault(err, "replaced")
	return err
}

// QuickCheck runs PRAGMA quick_check on a separate read-only connection
// (writers are not blocked), bounded by timeout (DefaultQuickCheckTimeout
// when zero). Damage makes the store refuse writes and is returned wrapping
// ErrDamaged; a check that ran out of time returns an error that does not.
func (db *DB) QuickCheck(ctx context.Context, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultQuickCheckTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	problems, err := quickCheck(ctx, db.path)
	if err != nil {
		if dbfile.Corrupt(err) {
			derr := fmt.Errorf("%w: %v; see docs/operations.md (restore with tibbersync backup)", ErrDamaged, err)
			db.setFault(derr, "damaged")
			return derr
		}
		return fmt.Errorf("quick_check of data.db: %w", err)
	}
	if len(problems) > 0 {
		derr := fmt.Errorf("%w: quick_check: %s; see docs/operations.md (restore with tibbersync backup)", ErrDamaged, strings.Join(problems, "; "))
		db.setFault(derr, "damaged")
		return derr
	}
	return nil
}

// QuickCheckFile runs quick_check on the data.db at path on a read-only
// connection (ctx bounds it) and returns the problems it reports; an error
// wrapping ErrDamaged when the file cannot even be read as a database. For
// `tibbersync status`, which checks on its own.
func QuickCheckFile(ctx context.Context, path string) ([]string, error) {
	problems, err := quickCheck(ctx, path)
	if err != nil && dbfile.Corrupt(err) {
		return nil, fmt.Errorf("%w: %v; see docs/operations.md (restore with tibbersync backup)", ErrDamaged, err)
	}
	return problems, err
}

// quickCheck runs a bounded quick_check of the file at path on its own
// read-only connection and returns the problems it reports.
func quickCheck(ctx context.Context, path string) ([]string, error) {
	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		return nil, err
	}
	defer ro.Close()
	rows, err := ro.sql.QueryContext(ctx, `PRAGMA quick_check(10)`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, err
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	return problems, rows.Err()
}

// IsDamaged reports whether err says a database file is damaged (or not a
// database at all).
func IsDamaged(err error) bool { return errors.Is(err, ErrDamaged) || dbfile.Corrupt(err) }

// Fault returns why the store refuses writes (replaced, deleted, damaged),
// or nil.
func (db *DB) Fault() error { return db.refuse() }

// LastWriteFailure returns when the last failed write happened and its
// error, or a nil error when the last write succeeded.
func (db *DB) LastWriteFailure() (time.Time, error) {
	db.fault.mu.Lock()
	defer db.fault.mu.Unlock()
	return db.fault.lastWriteAt, db.fault.lastWrite
}

// MinFreeBytes is the free space below which the state directory counts as
// (nearly) full: a history page or a token refresh needs a few pages of
// WAL, a checkpoint more.
const MinFreeBytes = 16 << 20

// DirHealth is what CheckDir found out about the state directory.
type DirHealth struct {
	Dir       string
	FreeBytes uint64
	// ReadOnly: the file system is mounted read-only.
	ReadOnly bool
	// Writable: a file could be created and removed in the directory.
	Writable bool
	// Problems says, in words, what is wrong ("" entries never).
	Problems []string
}

// CheckDir checks the state directory itself, without SQLite: free space
// and a read-only mount (statfs) and, with probe, whether a file can be
// created there. `tibbersync status` probes; the daemon's Health probes only
// after a failed write, so that a healthy Pi does not write a probe file
// every minute (R19).
func CheckDir(dir string, probe bool) DirHealth {
	h := DirHealth{Dir: dir}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		h.Problems = append(h.Problems, fmt.Sprintf("state directory %s: %v", dir, err))
		return h
	}
	h.FreeBytes = st.Bavail * uint64(st.Bsize)
	h.ReadOnly = st.Flags&unix.ST_RDONLY != 0
	var err error
	switch {
	case h.ReadOnly:
		err = syscall.EROFS
	case probe:
		err = writeProbe(dir)
	case h.FreeBytes == 0:
		err = syscall.ENOSPC
	}
	h.Writable = err == nil
	switch {
	case h.ReadOnly:
		h.Problems = append(h.Problems, fmt.Sprintf("state directory %s is on a read-only file system: nothing can be stored (tokens, data); remount it read-write, then restart tibbersync", dir))
	case !h.Writable && errors.Is(err, syscall.ENOSPC):
		h.Problems = append(h.Problems, fmt.Sprintf("disk full: state directory %s has no free space: nothing can be stored and token refreshes are postponed; free space", dir))
	case !h.Writable:
		h.Problems = append(h.Problems, fmt.Sprintf("state directory %s is not writable (%v)", dir, err))
	case h.FreeBytes < MinFreeBytes:
		h.Problems = append(h.Problems, fmt.Sprintf("disk almost full: %d KiB free in %s (want at least %d MiB); free space before writes fail", h.FreeBytes>>10, dir, MinFreeBytes>>20))
	}
	return h
}

// writeProbe creates, writes and removes a small file in dir.
func writeProbe(dir string) error {
	f, err := os.CreateTemp(dir, ".tibbersync-write-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	_, werr := f.Write([]byte("x"))
	cerr := f.Close()
	_ = os.Remove(name)
	return errors.Join(werr, cerr)
}

// Health gathers a running daemon's storage health for /readyz, the status
// page, `systemctl status` and the storage-error metric: the state
// directory (free space, read-only, writable), data.db's files and sticky
// faults, the last failed write, and further checks (tokens.db's files, the
// token source's postponed refreshes). Check writes a tiny probe file, so
// it runs periodically and before each job, not on every probe; Last is
// what the status surfaces read. Safe for concurrent use.
type Health struct {
	// Dir is the state directory.
	Dir string
	// DB is data.db.
	DB *DB
	// Checks are further checks; each returns nil when fine, else an
	// error that says what is wrong and what to do.
	Checks []func() error
	// OnCheck, when set, is called with every Check's result and the
	// state directory's part (for metrics).
	OnCheck func(model.StorageHealth, DirHealth)

	mu      sync.Mutex
	last    model.StorageHealth
	lastDir DirHealth
}

// Check runs every check now and returns (and keeps) the result.
func (h *Health) Check() model.StorageHealth {
	_, writeErr := h.DB.LastWriteFailure()
	d := CheckDir(h.Dir, writeErr != nil)
	out := model.StorageHealth{Checked: h.DB.clock.Now(), Dir: h.Dir, FreeBytes: d.FreeBytes, Problems: d.Problems}
	if err := h.DB.CheckFiles(); err == nil {
		if err := h.DB.Fault(); err != nil {
			out.Problems = append(out.Problems, err.Error())
		}
	} else {
		out.Problems = append(out.Problems, err.Error())
	}
	if at, err := h.DB.LastWriteFailure(); err != nil {
		out.Problems = append(out.Problems, fmt.Sprintf("writing data.db failed at %s: %v", at.UTC().Format(time.RFC3339), err))
	}
	for _, c := range h.Checks {
		if err := c(); err != nil {
			out.Problems = append(out.Problems, err.Error())
		}
	}
	h.mu.Lock()
	h.last, h.lastDir = out, d
	h.mu.Unlock()
	if h.OnCheck != nil {
		h.OnCheck(out, d)
	}
	return out
}

// Last returns the result of the last Check (zero before the first).
func (h *Health) Last() model.StorageHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.last
	out.Problems = append([]string(nil), out.Problems...)
	return out
}

// BeforeJob runs Check and returns an error when a job could not store
// its result: data.db refuses writes (replaced, deleted, damaged) or the
// state directory is full or read-only. The job is then not started, so it
// makes no API call whose answer would be lost.
func (h *Health) BeforeJob() error {
	h.Check()
	if err := h.DB.Fault(); err != nil {
		return err
	}
	h.mu.Lock()
	d := h.lastDir
	h.mu.Unlock()
	if d.ReadOnly || !d.Writable {
		return fmt.Errorf("storage: %s", strings.Join(d.Problems, "; "))
	}
	return nil
}

// RunQuickCheck runs the background quick_check of data.db once (bounded by
// timeout) and logs its result; damage makes the store refuse writes and
// shows in Check. The daemon starts it in a goroutine after start-up, so a
// large file on a Pi does not delay readiness.
func (h *Health) RunQuickCheck(ctx context.Context, timeout time.Duration) error {
	start := time.Now()
	err := h.DB.QuickCheck(ctx, timeout)
	switch {
	case err == nil:
		h.DB.log.Info("data.db quick_check ok", "took", time.Since(start).Round(time.Millisecond))
	case errors.Is(err, ErrDamaged):
		// setFault logged it at ERROR.
	default:
		h.DB.log.Warn("data.db quick_check did not finish", "err", err)
	}
	h.Check()
	return err
}
