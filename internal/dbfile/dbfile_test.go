package dbfile_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tibbersync/tibbersync/internal/dbfile"
)

func write(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCheckNamesDeletedAndReplacedFiles(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "data.db")
	write(t, db)
	write(t, db+"-wal")
	f := dbfile.Record(db) // no -shm yet: not watched
	if err := f.Check(); err != nil {
		t.Fatalf("unchanged files: %v", err)
	}
	write(t, db+"-shm") // created later: fine
	if err := f.Check(); err != nil {
		t.Fatalf("a new -shm: %v", err)
	}
	// Replaced: a new file moved over the -wal.
	write(t, db+"-wal.new")
	if err := os.Rename(db+"-wal.new", db+"-wal"); err != nil {
		t.Fatal(err)
	}
	if err := f.Check(); !errors.Is(err, dbfile.ErrReplaced) || err.Error() != "data.db-wal was replaced by another file" {
		t.Fatalf("replaced -wal: %v", err)
	}
	f = dbfile.Record(db)
	if err := os.Remove(db); err != nil {
		t.Fatal(err)
	}
	if err := f.Check(); !errors.Is(err, dbfile.ErrDeleted) || err.Error() != "data.db was deleted" {
		t.Fatalf("deleted data.db: %v", err)
	}
}

type coded int

func (c coded) Error() string { return fmt.Sprintf("sqlite code %d", int(c)) }
func (c coded) Code() int     { return int(c) }

func TestCorrupt(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{coded(11), true},        // SQLITE_CORRUPT
		{coded(26), true},        // SQLITE_NOTADB
		{coded(11 | 1<<8), true}, // an extended corrupt code
		{fmt.Errorf("open: %w", coded(26)), true},
		{coded(5), false},  // SQLITE_BUSY
		{coded(14), false}, // SQLITE_CANTOPEN
		{errors.New("database disk image is malformed"), true},
		{errors.New("file is not a database"), true},
		{errors.New("permission denied"), false},
	} {
		if got := dbfile.Corrupt(tc.err); got != tc.want {
			t.Errorf("Corrupt(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
