package daemon

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestDaemonLockIs0600: anyone who can open daemon.lock can flock it and
// keep the daemon from starting, so it is 0600 (a read-only analyst in the
// group cannot open it), also when an older 0640 file exists.
func TestDaemonLockIs0600(t *testing.T) {
	old := syscall.Umask(0) // process-wide: not parallel
	defer syscall.Umask(old)
	for name, existing := range map[string]bool{"New": false, "Old0640": true} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "daemon.lock")
			if existing {
				if err := os.WriteFile(path, []byte("1\n"), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			unlock, err := lockDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("daemon.lock mode %o, want 600", fi.Mode().Perm())
			}
		})
	}
}
