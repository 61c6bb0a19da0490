// Package dbfile is what data.db (internal/store) and tokens.db
// (internal/tokenstore) share about their SQLite files on disk: noticing
// that a file was deleted or replaced under the running process, and
// telling a damaged database from an unreachable one. It is a leaf.
package dbfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrDeleted and ErrReplaced are wrapped by Files.Check's error.
var (
	ErrDeleted  = errors.New("deleted")
	ErrReplaced = errors.New("replaced by another file")
)

// Files are the identities (device and inode) of a database file and its
// -wal and -shm companions, as they were when Record was called.
type Files []id

type id struct {
	path     string
	dev, ino uint64
}

// Record notes the identity of path, path-wal and path-shm; those that do
// not exist (yet) are not watched.
func Record(path string) Files {
	var f Files
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if id, ok := identify(p); ok {
			f = append(f, id)
		}
	}
	return f
}

// Check returns nil while every recorded file is still the one recorded.
// Otherwise it returns an error naming the first file that was deleted
// (wrapping ErrDeleted) or replaced (ErrReplaced).
func (f Files) Check() error {
	for _, want := range f {
		cur, ok := identify(want.path)
		switch {
		case !ok:
			return fmt.Errorf("%s was %w", filepath.Base(want.path), ErrDeleted)
		case cur.dev != want.dev || cur.ino != want.ino:
			return fmt.Errorf("%s was %w", filepath.Base(want.path), ErrReplaced)
		}
	}
	return nil
}

func identify(path string) (id, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return id{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return id{}, false
	}
	return id{path: path, dev: uint64(st.Dev), ino: uint64(st.Ino)}, true
}

// Corrupt reports whether err is SQLite saying the file is damaged or not
// a database at all (SQLITE_CORRUPT, SQLITE_NOTADB), as opposed to
// unreachable, busy or insecure.
func Corrupt(err error) bool {
	if err == nil {
		return false
	}
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		switch coded.Code() & 0xff {
		case 11, 26: // SQLITE_CORRUPT, SQLITE_NOTADB
			return true
		}
	}
	msg := err.Error()
	return strings.Contains(msg, "malformed") || strings.Contains(msg, "not a database")
}
