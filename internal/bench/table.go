package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"
)

// Verdict says whether a figure met its target.
type Verdict int

// Verdicts of a Row.
const (
	// Info: the figure has no target.
	Info Verdict = iota
	// Pass: the figure met its target.
	Pass
	// Miss: the figure missed its target.
	Miss
)

// String is the text of the table's ok column.
func (v Verdict) String() string {
	switch v {
	case Pass:
		return "yes"
	case Miss:
		return "NO"
	}
	return "-"
}

// Check returns Pass when ok, else Miss.
func Check(ok bool) Verdict {
	if ok {
		return Pass
	}
	return Miss
}

// Row is one line of the results table.
type Row struct {
	Metric string
	Value  string
	// Target is the goal in words ("≤ 40 MiB"); "" for information only.
	Target string
	OK     Verdict
}

// tableHeader is the column titles of WriteTable.
var tableHeader = [4]string{"metric", "value", "target", "ok"}

// WriteTable writes rows as a plain table with columns aligned on " | ":
// a header, a rule, then one line per row. Widths count runes, so "≤" and
// "×" take one column.
func WriteTable(w io.Writer, rows []Row) error {
	cells := make([][4]string, 0, len(rows)+1)
	cells = append(cells, tableHeader)
	for _, r := range rows {
		target := r.Target
		if target == "" {
			target = "-"
		}
		cells = append(cells, [4]string{r.Metric, r.Value, target, r.OK.String()})
	}
	var width [4]int
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], utf8.RuneCountInString(s))
		}
	}
	bw := bufio.NewWriter(w)
	line := func(c [4]string) {
		for i, s := range c {
			if i > 0 {
				bw.WriteString(" | ")
			}
			bw.WriteString(s)
			if i < len(c)-1 {
				bw.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(s)))
			}
		}
		bw.WriteString("\n")
	}
	line(cells[0])
	var rule [4]string
	for i := range rule {
		rule[i] = strings.Repeat("-", width[i])
	}
	for i, s := range rule {
		if i > 0 {
			bw.WriteString("-|-")
		}
		bw.WriteString(s)
	}
	bw.WriteString("\n")
	for _, c := range cells[1:] {
		line(c)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// Machine describes the host the figures were measured on.
type Machine struct {
	// CPU is the model name from /proc/cpuinfo ("unknown" when absent).
	CPU string
	// Cores is the number of logical CPUs usable by the process.
	Cores int
	// GoVersion is the toolchain that built the bench.
	GoVersion string
	// OS and Arch are the platform.
	OS, Arch string
	// Kernel is the running kernel release ("" when unknown).
	Kernel string
	// MemTotal is the host's memory in bytes (0 when unknown).
	MemTotal int64
	// Load is the 1-minute load average when the description was read ("" when unknown).
	Load string
}

// ReadMachine describes the running host.
func ReadMachine() Machine {
	m := Machine{CPU: "unknown", Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		if name := ParseCPUModel(f); name != "" {
			m.CPU = name
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			m.Load = f[0]
		}
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == "MemTotal" {
				if n, err := parseKB(v); err == nil {
					m.MemTotal = n
				}
				break
			}
		}
		f.Close()
	}
	return m
}

// ParseCPUModel returns the first "model name" of a /proc/cpuinfo file,
// falling back to "Hardware" or "Model" (ARM boards such as a Raspberry
// Pi), or "" when there is none.
func ParseCPUModel(r io.Reader) string {
	var fallback string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "model name":
			if v != "" {
				return v
			}
		case "Hardware", "Model":
			if fallback == "" && v != "" {
				fallback = v
			}
		}
	}
	return fallback
}

// String is the one-line machine description printed under the table.
func (m Machine) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "machine: %s, %d cores", m.CPU, m.Cores)
	if m.MemTotal > 0 {
		fmt.Fprintf(&b, ", %s RAM", FormatBytes(m.MemTotal))
	}
	fmt.Fprintf(&b, ", %s/%s", m.OS, m.Arch)
	if m.Kernel != "" {
		fmt.Fprintf(&b, " (kernel %s)", m.Kernel)
	}
	fmt.Fprintf(&b, ", %s", m.GoVersion)
	if m.Load != "" {
		fmt.Fprintf(&b, ", load average %s at start", m.Load)
	}
	return b.String()
}

// FormatBytes formats n with a binary unit: "512 B", "12.3 KiB", "31.9 MiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < 0 {
		return "-" + FormatBytes(-n)
	}
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB"} {
		v /= unit
		if v < unit || u == "GiB" {
			return fmt.Sprintf("%.1f %s", v, u)
		}
	}
	return fmt.Sprintf("%d B", n)
}

// FormatDuration formats d for the table: milliseconds below 10 s with at
// most one decimal ("845 ms", "3.21 s", "104.2 s").
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// FormatRate formats a per-second rate with thousands grouping: "123,456/s".
func FormatRate(perSecond float64, unit string) string {
	return groupThousands(int64(perSecond+0.5)) + " " + unit + "/s"
}

// groupThousands formats n with commas: 1234567 → "1,234,567".
func groupThousands(n int64) string {
	if n < 0 {
		return "-" + groupThousands(-n)
	}
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
