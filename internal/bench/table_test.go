package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestWriteTableAligns(t *testing.T) {
	rows := []Row{
		{Metric: "devices cycle", Value: "3.21 s (1.05× bound)", Target: "≤ 3.97 s", OK: Pass},
		{Metric: "  critical-path bound", Value: "3.05 s"},
		{Metric: "peak RSS", Value: "41.0 MiB", Target: "≤ 40.0 MiB", OK: Miss},
	}
	var b bytes.Buffer
	if err := WriteTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want header, rule and 3 rows:\n%s", len(lines), b.String())
	}
	// Every separator sits in the same rune column on every line.
	cols := func(line, sep string) []int {
		var out []int
		runes := 0
		for i := 0; i < len(line); {
			if strings.HasPrefix(line[i:], sep) {
				out = append(out, runes)
				i += len(sep)
				runes += utf8.RuneCountInString(sep)
				continue
			}
			_, size := utf8.DecodeRuneInString(line[i:])
			i += size
			runes++
		}
		return out
	}
	want := cols(lines[0], " | ")
	if len(want) != 3 {
		t.Fatalf("header %q: %d separators", lines[0], len(want))
	}
	if got := cols(lines[1], "-|-"); !equalInts(got, want) {
		t.Errorf("rule separators at %v, header at %v:\n%s", got, want, b.String())
	}
	for _, l := range lines[2:] {
		if got := cols(l, " | "); !equalInts(got, want) {
			t.Errorf("row %q: separators at %v, header at %v", l, got, want)
		}
	}
	for i, wantEnd := range []string{"| ok", "| yes", "| -", "| NO"} {
		l := lines[i]
		if i > 0 {
			l = lines[i+1]
		}
		if !strings.HasSuffix(l, wantEnd) {
			t.Errorf("line %q does not end with %q", l, wantEnd)
		}
	}
	if !strings.Contains(lines[3], "| - ") {
		t.Errorf("a row without target shows %q, want \"-\"", lines[3])
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFormatters(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{FormatBytes(512), "512 B"},
		{FormatBytes(32 << 10), "32.0 KiB"},
		{FormatBytes(40 << 20), "40.0 MiB"},
		{FormatBytes(3 << 30), "3.0 GiB"},
		{FormatBytes(-2048), "-2.0 KiB"},
		{FormatDuration(500 * time.Microsecond), "500 µs"},
		{FormatDuration(845 * time.Millisecond), "845 ms"},
		{FormatDuration(3210 * time.Millisecond), "3.21 s"},
		{FormatDuration(104250 * time.Millisecond), "104.2 s"},
		{FormatRate(1234567.4, "rows"), "1,234,567 rows/s"},
		{FormatRate(999, "points"), "999 points/s"},
		{FormatRate(1000, "points"), "1,000 points/s"},
		{Check(true).String(), "yes"},
		{Check(false).String(), "NO"},
		{Info.String(), "-"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestParseCPUModel(t *testing.T) {
	x86 := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\n"
	if got := ParseCPUModel(strings.NewReader(x86)); got != "Intel(R) Xeon(R) Processor" {
		t.Errorf("x86: %q", got)
	}
	pi := "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
	if got := ParseCPUModel(strings.NewReader(pi)); got != "BCM2835" {
		t.Errorf("raspberry pi: %q", got)
	}
	if got := ParseCPUModel(strings.NewReader("processor\t: 0\n")); got != "" {
		t.Errorf("no model: %q", got)
	}
	m := ReadMachine()
	if m.Cores < 1 || m.GoVersion == "" || !strings.HasPrefix(m.String(), "machine: ") {
		t.Errorf("ReadMachine: %+v / %q", m, m.String())
	}
}

func TestCriticalPathAndRateBound(t *testing.T) {
	// Issue 5: 10 homes × 20 devices at concurrency 4 and 50 ms:
	// (1 + 10 + 50) × 50 ms.
	if got := CriticalPath(10, 200, 4, 50*time.Millisecond); got != 3050*time.Millisecond {
		t.Errorf("CriticalPath = %v, want 3.05s", got)
	}
	if got := CriticalPath(1, 5, 4, time.Second); got != 4*time.Second {
		t.Errorf("CriticalPath(1 home, 5 devices, 4) = %v, want 4s (1 + 1 + 2 rounds)", got)
	}
	if got := CriticalPath(1, 3, 0, time.Second); got != 5*time.Second {
		t.Errorf("CriticalPath with concurrency 0 = %v, want sequential 5s", got)
	}
	if got := RateBound(211, 2, 4); got != 103500*time.Millisecond {
		t.Errorf("RateBound = %v, want 103.5s", got)
	}
	if got := RateBound(3, 2, 4); got != 0 {
		t.Errorf("RateBound within the burst = %v, want 0", got)
	}
}

func TestSummarize(t *testing.T) {
	if _, err := Summarize(nil); err == nil {
		t.Fatal("Summarize(nil): want an error")
	}
	s, err := Summarize([]CycleStat{
		{Wall: 3 * time.Second, Status: "ok", Requests: 211, FileBytes: 100, WriteBytes: 4096, DBGrowth: 0, RowsWritten: 1},
		{Wall: 5 * time.Second, Status: "ok", Requests: 211, FileBytes: 300, WriteBytes: 0, DBGrowth: 8192},
		{Wall: 4 * time.Second, Status: "partial", Requests: 212, FileBytes: 200, WriteBytes: 8192, DBGrowth: 4096},
		{Wall: 1 * time.Second, Status: "ok", Requests: 211, FileBytes: 0, WriteBytes: 0, DBGrowth: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Median != 3500*time.Millisecond || s.Min != time.Second || s.Max != 5*time.Second {
		t.Errorf("walls: %+v", s)
	}
	if s.FileBytes != 150 || s.WriteBytes != 3072 || s.DBGrowth != 3072 || s.RowsWritten != 1 || s.Requests != 211 {
		t.Errorf("means: %+v", s)
	}
	if len(s.Statuses) != 2 {
		t.Errorf("statuses %v, want ok and partial", s.Statuses)
	}
}
