package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Self names the calling process in ReadStatus and ReadIO.
const Self = "self"

// Status is the memory part of /proc/<pid>/status, in bytes.
type Status struct {
	// RSS is VmRSS: the resident set size now.
	RSS int64
	// HWM is VmHWM: the peak resident set size since the process started.
	HWM int64
	// Anon and File split RSS into anonymous memory (Go heap, stacks,
	// SQLite's allocations) and file pages (the binary's code and data);
	// RssAnon and RssFile, 0 when the kernel does not report them.
	Anon, File int64
}

// ReadStatus reads /proc/<pid>/status; pid is a number or Self.
func ReadStatus(pid string) (Status, error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return Status{}, fmt.Errorf("read status: %w", err)
	}
	defer f.Close()
	st, err := ParseStatus(f)
	if err != nil {
		return Status{}, fmt.Errorf("read status of %s: %w", pid, err)
	}
	return st, nil
}

// ParseStatus parses the VmRSS and VmHWM lines of a /proc/<pid>/status
// file ("VmHWM:	   12345 kB"). Both must be present.
func ParseStatus(r io.Reader) (Status, error) {
	var st Status
	var haveRSS, haveHWM bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM" && key != "RssAnon" && key != "RssFile") {
			continue
		}
		n, err := parseKB(val)
		if err != nil {
			return Status{}, fmt.Errorf("parse status: %s: %w", key, err)
		}
		switch key {
		case "VmRSS":
			st.RSS, haveRSS = n, true
		case "VmHWM":
			st.HWM, haveHWM = n, true
		case "RssAnon":
			st.Anon = n
		case "RssFile":
			st.File = n
		}
	}
	if err := sc.Err(); err != nil {
		return Status{}, fmt.Errorf("parse status: %w", err)
	}
	if !haveRSS || !haveHWM {
		return Status{}, fmt.Errorf("parse status: VmRSS or VmHWM missing")
	}
	return st, nil
}

// parseKB parses "   12345 kB" into bytes.
func parseKB(v string) (int64, error) {
	fields := strings.Fields(v)
	if len(fields) != 2 || fields[1] != "kB" {
		return 0, fmt.Errorf("unexpected value %q (want \"<n> kB\")", strings.TrimSpace(v))
	}
	n, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("unexpected value %q (want \"<n> kB\")", strings.TrimSpace(v))
	}
	return n * 1024, nil
}

// IO is /proc/<pid>/io: the process's I/O counters.
type IO struct {
	// RChar and WChar are the bytes passed to read and write system calls
	// of any kind: files, pipes and sockets alike.
	RChar, WChar int64
	// SyscR and SyscW count read and write system calls.
	SyscR, SyscW int64
	// ReadBytes and WriteBytes are the bytes the process caused to be
	// fetched from or sent to the storage layer (zero on tmpfs).
	ReadBytes, WriteBytes int64
	// CancelledWriteBytes were dirtied and then truncated away before writeback.
	CancelledWriteBytes int64
}

// ReadIO reads /proc/<pid>/io; pid is a number or Self.
func ReadIO(pid string) (IO, error) {
	f, err := os.Open("/proc/" + pid + "/io")
	if err != nil {
		return IO{}, fmt.Errorf("read io: %w", err)
	}
	defer f.Close()
	v, err := ParseIO(f)
	if err != nil {
		return IO{}, fmt.Errorf("read io of %s: %w", pid, err)
	}
	return v, nil
}

// ParseIO parses a /proc/<pid>/io file ("wchar: 123" lines). wchar and
// write_bytes must be present; unknown keys are ignored.
func ParseIO(r io.Reader) (IO, error) {
	var v IO
	fields := map[string]*int64{
		"rchar": &v.RChar, "wchar": &v.WChar, "syscr": &v.SyscR, "syscw": &v.SyscW,
		"read_bytes": &v.ReadBytes, "write_bytes": &v.WriteBytes, "cancelled_write_bytes": &v.CancelledWriteBytes,
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		p, known := fields[key]
		if !ok || !known {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		if err != nil {
			return IO{}, fmt.Errorf("parse io: %s: %w", key, err)
		}
		*p = n
		seen[key] = true
	}
	if err := sc.Err(); err != nil {
		return IO{}, fmt.Errorf("parse io: %w", err)
	}
	if !seen["wchar"] || !seen["write_bytes"] {
		return IO{}, fmt.Errorf("parse io: wchar or write_bytes missing")
	}
	return v, nil
}

// Sub returns the counters of v minus those of base.
func (v IO) Sub(base IO) IO {
	return IO{
		RChar: v.RChar - base.RChar, WChar: v.WChar - base.WChar,
		SyscR: v.SyscR - base.SyscR, SyscW: v.SyscW - base.SyscW,
		ReadBytes: v.ReadBytes - base.ReadBytes, WriteBytes: v.WriteBytes - base.WriteBytes,
		CancelledWriteBytes: v.CancelledWriteBytes - base.CancelledWriteBytes,
	}
}
