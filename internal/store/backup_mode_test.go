package store_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/tibbersync/tibbersync/internal/store"
)

// TestBackupCopyIs0640WhileWritten: the backup's temporary copy holds the
// whole database before it is checked and renamed; it must be 0640 from
// creation, not 0644 (SQLite's default) until the final chmod.
func TestBackupCopyIs0640WhileWritten(t *testing.T) {
	// Process-wide: this test must not run in parallel with others.
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	db, err := store.Open(context.Background(), filepath.Join(dir, "data.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seen os.FileMode
	var size int64
	store.SetBackupWritten(func(tmp string) {
		fi, err := os.Stat(tmp)
		if err != nil {
			t.Errorf("stat copy: %v", err)
			return
		}
		seen, size = fi.Mode().Perm(), fi.Size()
	})
	defer store.SetBackupWritten(nil)
	dest := filepath.Join(dir, "backup.db")
	if err := db.Backup(context.Background(), dest, false); err != nil {
		t.Fatal(err)
	}
	if size == 0 {
		t.Fatal("hook saw an empty copy; it must run after SQLite wrote it")
	}
	if seen != 0o640 {
		t.Errorf("backup copy mode while written = %o, want 640", seen)
	}
	fi, err := os.Stat(dest)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("finished backup: %v, %v", fi.Mode(), err)
	}
}
