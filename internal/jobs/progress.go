package jobs

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/logging"
)

// progressRedraw is the least time between two redraws of the bar (10×/s).
const progressRedraw = 100 * time.Millisecond

// progressBarWidth is the number of cells of the bar itself.
const progressBarWidth = 24

// NewProgressBar returns a Syncer.Progress callback that draws one line per
// history stream on w: device, resolution, a bar with the percentage of the
// window reached (Reached between Start and Target), pages, points and an
// ETA. The line is redrawn in place with \r at most ten times a second, and
// finished with a newline when the stream ends or another stream reports.
// Use it only when w is a terminal. It is safe for concurrent use.
func NewProgressBar(w io.Writer, clk clock.Clock) func(HistoryProgress) {
	if clk == nil {
		clk = clock.Real{}
	}
	b := &progressBar{w: w, clk: clk}
	return b.update
}

type progressBar struct {
	mu      sync.Mutex
	w       io.Writer
	clk     clock.Clock
	key     string // device/resolution of the stream on the line
	began   time.Time
	drawn   time.Time
	lastLen int
	last    HistoryProgress
}

func (b *progressBar) update(p HistoryProgress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clk.Now()
	key := p.DeviceID + "/" + p.Resolution
	if key != b.key {
		if b.key != "" {
			b.draw(b.last, now)
			io.WriteString(b.w, "\n")
		}
		b.key, b.began, b.drawn, b.lastLen = key, now, time.Time{}, 0
	}
	b.last = p
	if p.Done {
		b.draw(p, now)
		io.WriteString(b.w, "\n")
		b.key = ""
		return
	}
	if !b.drawn.IsZero() && now.Sub(b.drawn) < progressRedraw {
		return
	}
	b.draw(p, now)
}

// draw writes the line for p over the previous one.
func (b *progressBar) draw(p HistoryProgress, now time.Time) {
	b.drawn = now
	line := formatProgress(p, now.Sub(b.began))
	pad := ""
	if n := b.lastLen - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	b.lastLen = len(line)
	io.WriteString(b.w, "\r"+line+pad)
}

// formatProgress renders one progress line; elapsed is the time since the
// stream's first report, for the ETA.
func formatProgress(p HistoryProgress, elapsed time.Duration) string {
	// The name a person gave the device reads better than Tibber's opaque id.
	// Names and ids come from Tibber: never let them drive the terminal.
	id := logging.Display(p.DeviceName)
	if id == "" {
		id = logging.Display(p.DeviceID)
	}
	if r := []rune(id); len(r) > 13 {
		id = string(r[:12]) + "…"
	}
	frac, known := progressFraction(p)
	var b strings.Builder
	fmt.Fprintf(&b, "%-13s %-11s ", id, logging.Display(p.Resolution))
	if known {
		filled := int(frac * progressBarWidth)
		b.WriteString("[" + strings.Repeat("#", filled) + strings.Repeat(".", progressBarWidth-filled) + "]")
		fmt.Fprintf(&b, " %3d%%", int(frac*100))
	} else {
		b.WriteString("[" + strings.Repeat("?", progressBarWidth) + "]    ?")
	}
	fmt.Fprintf(&b, "  pages %d  points %d", p.Pages, p.Points)
	if !p.Reached.IsZero() {
		fmt.Fprintf(&b, "  reached %s", p.Reached.UTC().Format("2006-01-02 15:04"))
	}
	switch {
	case p.Done:
		b.WriteString("  done")
	case known && frac > 0 && frac < 1 && elapsed > 0:
		eta := time.Duration(float64(elapsed) * (1 - frac) / frac)
		fmt.Fprintf(&b, "  ETA %s", eta.Round(time.Second))
	case known && frac >= 1:
		b.WriteString("  ETA 0s")
	default:
		b.WriteString("  ETA ?")
	}
	return b.String()
}

// progressFraction is how far Reached is between Start and Target, in [0, 1].
func progressFraction(p HistoryProgress) (float64, bool) {
	if p.Start.IsZero() || p.Target.IsZero() || !p.Target.After(p.Start) {
		return 0, false
	}
	if p.Reached.IsZero() || !p.Reached.After(p.Start) {
		return 0, true
	}
	f := float64(p.Reached.Sub(p.Start)) / float64(p.Target.Sub(p.Start))
	return min(max(f, 0), 1), true
}
