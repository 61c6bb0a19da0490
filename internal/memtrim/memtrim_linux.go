//go:build linux

package memtrim

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// self holds the program headers of the running executable once read:
// /proc/self/exe is the file the process runs even if its path has since
// been replaced or removed, so they never change. A failed read (say, out
// of file descriptors) is tried again next time.
var self struct {
	sync.Mutex
	lay exeLayout
	ok  bool
}

func readSelfLayout() (exeLayout, error) {
	self.Lock()
	defer self.Unlock()
	if self.ok {
		return self.lay, nil
	}
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return exeLayout{}, err
	}
	defer f.Close()
	lay, err := readExeLayout(f)
	if err != nil {
		return exeLayout{}, fmt.Errorf("read ELF program headers of /proc/self/exe: %w", err)
	}
	self.lay, self.ok = lay, true
	return lay, nil
}

// ReleaseBinaryPages drops the pages of its own executable that are exact
// copies of the file (code and read-only data) from the process's resident
// set (madvise MADV_DONTNEED); adviseRanges says which. Writable mappings
// and the loader-relocated RELRO data are never touched, so no data
// changes; the dropped pages are read again from the page cache (or the
// file) when next used. It returns the bytes advised. When the executable's
// ELF file cannot be read or does not match its mappings it advises
// nothing and returns an error that says why.
func ReleaseBinaryPages() (int64, error) {
	lay, err := readSelfLayout()
	if err != nil {
		return 0, fmt.Errorf("release binary pages: %w", err)
	}
	path, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("release binary pages: %w", err)
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("release binary pages: %w", err)
	}
	maps, err := parseMaps(b)
	if err != nil {
		return 0, fmt.Errorf("release binary pages: %w", err)
	}
	spans, err := adviseRanges(maps, path, lay, uintptr(os.Getpagesize()))
	if err != nil {
		return 0, fmt.Errorf("release binary pages: %w", err)
	}
	var n int64
	for _, s := range spans {
		size := s.end - s.start
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, s.start, size, unix.MADV_DONTNEED); errno != 0 {
			return n, fmt.Errorf("release binary pages: madvise %x-%x: %w", s.start, s.end, errno)
		}
		n += int64(size)
	}
	return n, nil
}
