package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Connection settings shared by the DSN builder and the per-connection check.
const (
	// BusyTimeout is how long (ms) a connection waits for a lock before
	// SQLITE_BUSY. Readers and the writer use the same value (R13).
	BusyTimeout = 10000
	// JournalSizeLimit caps the size (bytes) the -wal file is truncated back
	// to after a checkpoint (R17, R19).
	JournalSizeLimit = 64 << 20
	// CachePages is each connection's SQLite page cache in pages (PRAGMA
	// cache_size; 256 pages of 4 KiB = 1 MiB). SQLite's default is 2000 KiB; memory the
	// cache once held stays resident in the process after a large job (the
	// allocator keeps freed regions for reuse), so a smaller cache is a
	// smaller daemon at rest. Inserts append to a few B-tree leaves, so
	// 1 MiB (256 pages) holds every page a history page or a devices cycle
	// touches; the OS page cache serves the rest.
	CachePages = 256
)

// Synchronous levels accepted for the writer (R13, R19).
const (
	SynchronousFull   = "FULL"
	SynchronousNormal = "NORMAL"
)

// ErrBadDSN is wrapped by every BuildDSN rejection.
var ErrBadDSN = errors.New("bad database path or setting")

// BuildDSN returns the modernc.org/sqlite DSN for path, exactly in the shape
// reliability.md R13 prescribes: a file: URI with busy timeout, WAL, the
// synchronous level, foreign keys, in-memory temp storage, a journal size
// limit and BEGIN IMMEDIATE transactions. A read-only DSN uses mode=ro, has
// no journal_mode key (a reader must never try to change the journal mode)
// and no _txlock (BEGIN IMMEDIATE would fail on a read-only connection).
//
// path must be absolute, clean, valid UTF-8 and free of characters that
// carry meaning in a URI ('?', '#', '%') or are invisible (control
// characters). synchronous is "FULL" (also for "") or "NORMAL"; nothing else
// reaches a PRAGMA, so the result is always one statement per _pragma.
func BuildDSN(path string, readOnly bool, synchronous string) (string, error) {
	if err := checkPath(path); err != nil {
		return "", err
	}
	sync := strings.ToUpper(strings.TrimSpace(synchronous))
	switch sync {
	case "":
		sync = SynchronousFull
	case SynchronousFull, SynchronousNormal:
	default:
		return "", fmt.Errorf("%w: synchronous %q (want FULL or NORMAL)", ErrBadDSN, synchronous)
	}

	var q []string
	if readOnly {
		q = append(q, "mode=ro")
	}
	q = append(q, "_busy_timeout="+strconv.Itoa(BusyTimeout))
	if !readOnly {
		q = append(q, "_pragma=journal_mode(WAL)")
	}
	q = append(q,
		"_pragma=synchronous("+sync+")",
		"_pragma=foreign_keys(1)",
		"_pragma=temp_store(MEMORY)",
		"_pragma=cache_size("+strconv.Itoa(CachePages)+")",
	)
	if !readOnly {
		q = append(q,
			"_pragma=journal_size_limit("+strconv.Itoa(JournalSizeLimit)+")",
			"_txlock=immediate",
		)
	}
	return "file:" + path + "?" + strings.Join(q, "&"), nil
}

// checkPath rejects paths that would not survive the trip through a file:
// URI unchanged, or that are not what an operator meant.
func checkPath(path string) error {
	switch {
	case path == "":
		return fmt.Errorf("%w: empty path", ErrBadDSN)
	case !utf8.ValidString(path):
		return fmt.Errorf("%w: path %q is not valid UTF-8", ErrBadDSN, path)
	case !filepath.IsAbs(path):
		return fmt.Errorf("%w: path %q is not absolute", ErrBadDSN, path)
	case filepath.Clean(path) != path:
		return fmt.Errorf("%w: path %q is not clean (want %q)", ErrBadDSN, path, filepath.Clean(path))
	case path == "/" || strings.HasSuffix(path, "/"):
		return fmt.Errorf("%w: path %q names a directory", ErrBadDSN, path)
	}
	for _, r := range path {
		switch {
		case r == '?' || r == '#' || r == '%':
			return fmt.Errorf("%w: path %q contains %q, which has a meaning in a file: URI", ErrBadDSN, path, r)
		case r == '\\' || unicode.IsControl(r) || r == utf8.RuneError:
			return fmt.Errorf("%w: path %q contains a control or escape character", ErrBadDSN, path)
		}
	}
	return nil
}
