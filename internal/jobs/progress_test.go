package jobs_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
)

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	clk := clock.NewFake(hnow)
	bar := jobs.NewProgressBar(&buf, clk)
	start := hnow.AddDate(0, 0, -10)
	target := hnow.Truncate(time.Hour)
	p := jobs.HistoryProgress{DeviceID: "aG9tZXZvbHQgYmF0dGVyeQ", Resolution: "hour", Start: start, Target: target}

	// Halfway after 30 s: 50 % and an ETA of about 30 s.
	clk.Advance(time.Second) // the first report starts the stream's clock
	p.Pages, p.Points, p.Reached = 1, 10, start
	bar(p)
	clk.Advance(30 * time.Second)
	p.Pages, p.Points, p.Reached = 2, 120, start.Add(target.Sub(start)/2)
	bar(p)
	out := buf.String()
	for _, want := range []string{"aG9tZXZvbHQg…", "hour", " 50%", "pages 2", "points 120", "ETA 30s", "\r"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "\n") {
		t.Fatalf("line finished early: %q", out)
	}

	// Redraws are limited to ten a second.
	draws := strings.Count(buf.String(), "\r")
	for i := range 5 {
		clk.Advance(10 * time.Millisecond)
		p.Pages = 3 + i
		bar(p)
	}
	if got := strings.Count(buf.String(), "\r"); got != draws {
		t.Fatalf("%d redraws within 50 ms, want 0", got-draws)
	}
	clk.Advance(100 * time.Millisecond)
	bar(p)
	if got := strings.Count(buf.String(), "\r"); got != draws+1 {
		t.Fatalf("no redraw after 100 ms")
	}

	// Another stream finishes the line first; Done finishes its own.
	other := jobs.HistoryProgress{DeviceID: "dev2", Resolution: "day", Start: start, Target: target, Pages: 1, Points: 10, Reached: target}
	bar(other)
	if !strings.Contains(buf.String(), "pages 7") || strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("switching streams did not finish the old line with its last state: %q", buf.String())
	}
	other.Done = true
	bar(other)
	out = buf.String()
	if !strings.HasSuffix(out, "\n") || !strings.Contains(out, "100%") || !strings.Contains(out, "done") {
		t.Fatalf("Done did not finish the line at 100%%: %q", out)
	}

	// Unknown bounds do not divide by zero.
	buf.Reset()
	bar(jobs.HistoryProgress{DeviceID: "x", Resolution: "hour", Pages: 1})
	if !strings.Contains(buf.String(), "ETA ?") {
		t.Fatalf("unknown window: %q", buf.String())
	}
}

func TestProgressBarShowsDeviceName(t *testing.T) {
	var buf bytes.Buffer
	clk := clock.NewFake(hnow)
	bar := jobs.NewProgressBar(&buf, clk)
	start := hnow.AddDate(0, 0, -10)
	bar(jobs.HistoryProgress{DeviceID: "aG9tZXZvbHQgYmF0dGVyeQ", DeviceName: "Stue", Resolution: "hour", Start: start, Target: hnow.Truncate(time.Hour), Pages: 1, Points: 24, Reached: start.Add(24 * time.Hour)})
	if out := buf.String(); !strings.Contains(out, "Stue ") || strings.Contains(out, "aG9tZXZv") {
		t.Fatalf("output %q: want the device name instead of its id", out)
	}
}
