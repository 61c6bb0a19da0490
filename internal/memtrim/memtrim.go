// Package memtrim hands back memory that a daemon at rest does not use.
//
// After a large job (a history backfill) the daemon's resident set holds
// three kinds of memory it no longer needs: Go heap the job left behind
// (debug.FreeOSMemory returns it), SQLite page cache (kept small by the
// store's cache_size) and pages of its own executable. The last is the
// largest: a backfill runs much of the 17 MiB binary (the SQLite engine
// alone is several MiB of code), and every page of code or read-only data
// it ran stays mapped, about 16 MiB, while the idle daemon runs a small
// part of it. ReleaseBinaryPages unmaps those pages from the process; they
// stay in the kernel's page cache, and the code the daemon runs next
// faults back in from there.
package memtrim

import (
	"bufio"
	"bytes"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
)

// Release returns the Go heap left behind by a job to the system and drops
// the executable's pages from the resident set. It returns the bytes of
// executable mappings advised.
func Release() (int64, error) {
	debug.FreeOSMemory()
	return ReleaseBinaryPages()
}

// mapping is one line of /proc/self/maps.
type mapping struct {
	start, end uintptr
	perms      string
	path       string
}

// parseMaps reads the mappings of /proc/self/maps text.
func parseMaps(b []byte) ([]mapping, error) {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps: bad range %q", f[0])
		}
		s, err1 := strconv.ParseUint(lo, 16, 64)
		e, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || e < s {
			return nil, fmt.Errorf("maps: bad range %q", f[0])
		}
		m := mapping{start: uintptr(s), end: uintptr(e), perms: f[1]}
		if len(f) >= 6 {
			m.path = strings.Join(f[5:], " ")
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// binaryMappings picks the mappings of exe that are neither writable nor
// shared: code and read-only data, whose pages are exact copies of the
// file and can be dropped and faulted back in at any time.
func binaryMappings(maps []mapping, exe string) []mapping {
	var out []mapping
	for _, m := range maps {
		if m.path != exe || len(m.perms) < 4 || m.perms[1] != '-' || m.perms[3] != 'p' {
			continue
		}
		out = append(out, m)
	}
	return out
}
