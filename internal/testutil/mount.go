package testutil

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The storage-fault tests need a small file system they can fill and one
// they can make read-only: a tmpfs and a read-only bind mount. Both need
// root (CI runs the suite as root); without it the test skips, loudly.

// MountTmpfs mounts a tmpfs at dir (which must exist) with the given mount
// options (e.g. "size=2m,mode=0700") and unmounts it when the test ends.
func MountTmpfs(t testing.TB, dir, options string) {
	t.Helper()
	needRoot(t)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", options, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: cannot mount a tmpfs (%v: %s); this storage-fault test did not run", err, strings.TrimSpace(string(out)))
	}
	unmountAtEnd(t, dir)
}

// BindReadOnly makes dst (which must exist) a read-only view of src — what
// a file system remounted read-only after an error looks like — and
// unmounts it when the test ends.
func BindReadOnly(t testing.TB, src, dst string) {
	t.Helper()
	needRoot(t)
	if out, err := exec.Command("mount", "--bind", src, dst).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED read-only part: bind mount: %v: %s", err, strings.TrimSpace(string(out)))
	}
	unmountAtEnd(t, dst)
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", dst).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED read-only part: remount read-only: %v: %s", err, strings.TrimSpace(string(out)))
	}
}

// FillDisk writes dir/filler until the file system is full (ENOSPC, down
// to the last 512-byte write) and returns the file's path.
func FillDisk(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	for { // top up the last partial block
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	return p
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: this storage-fault test needs root to mount a small file system (CI runs it as root)")
	}
}

func unmountAtEnd(t testing.TB, dir string) {
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s", dir, err, out)
		}
	})
}
