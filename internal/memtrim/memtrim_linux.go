//go:build linux

package memtrim

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ReleaseBinaryPages drops the process's read-only private mappings of its
// own executable from its resident set (madvise MADV_DONTNEED). Writable
// mappings are never touched, so no data changes; the dropped pages are
// read again from the page cache (or the file) when next used. It returns
// the bytes of the mappings advised.
func ReleaseBinaryPages() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
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
	var n int64
	for _, m := range binaryMappings(maps, exe) {
		size := m.end - m.start
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, size, unix.MADV_DONTNEED); errno != 0 {
			return n, fmt.Errorf("release binary pages: madvise %x-%x: %w", m.start, m.end, errno)
		}
		n += int64(size)
	}
	return n, nil
}
