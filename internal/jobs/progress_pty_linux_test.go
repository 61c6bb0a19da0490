package jobs

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/tibbersync/tibbersync/internal/clock"
)

// openPTY opens a pseudo-terminal pair: the master to read what a program
// shows, the slave that the program writes to as its terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatalf("open pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// TestProgressBarOnPTYNeutralisesName draws the progress of a device whose
// Tibber name carries terminal escapes and a bidi override on a real
// pseudo-terminal (the case in which `tibbersync sync` draws the bar), and
// reads what the terminal received.
func TestProgressBarOnPTYNeutralisesName(t *testing.T) {
	master, slave := openPTY(t)
	if !term.IsTerminal(int(slave.Fd())) {
		t.Fatal("pty slave is not a terminal")
	}
	got := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		_, _ = io.Copy(&buf, master) // ends with EIO once the slave closes
		got <- buf.Bytes()
	}()
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	bar := NewProgressBar(slave, clk)
	name := "\x1b]0;owned\x07\x1b[2J\u202eevil\u009b"
	start := clk.Now().Add(-48 * time.Hour)
	bar(HistoryProgress{DeviceID: "dev\u202e1", DeviceName: name, Resolution: "hour", Pages: 1, Points: 24, Start: start, Target: clk.Now(), Reached: start.Add(24 * time.Hour)})
	clk.Advance(time.Second)
	bar(HistoryProgress{DeviceID: "dev\u202e1", DeviceName: name, Resolution: "hour", Pages: 2, Points: 48, Start: start, Target: clk.Now(), Reached: clk.Now(), Done: true})
	bar(HistoryProgress{DeviceID: "\x1b[2Jid-only", Resolution: "day", Pages: 1, Points: 1, Done: true})
	slave.Close()
	var out []byte
	select {
	case out = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("reading the pty did not end")
	}
	s := string(out)
	for _, bad := range []string{"\x1b]", "\x1b[2J", "\u202e", "\u009b", "\x07"} {
		if strings.Contains(s, bad) {
			t.Errorf("terminal received raw %q:\n%q", bad, s)
		}
	}
	if !strings.Contains(s, "done") || !strings.Contains(s, `\x1b[2Jid-`) {
		t.Errorf("progress lines missing:\n%q", s)
	}
}
