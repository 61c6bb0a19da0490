package web

import (
	"strconv"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// TestHistoryTicksFollowDST: across the autumn change in Europe/Oslo the
// day grid lines sit at local midnights, 24 h apart before the change and
// 25 h across it, and the 25-hour day keeps all its points.
func TestHistoryTicksFollowDST(t *testing.T) {
	osl, err := time.LoadLocation("Europe/Oslo")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	now := time.Date(2025, 10, 28, 12, 0, 0, 0, osl)
	from := now.Add(-HourlyWindow)
	var pts []model.HistoryPoint
	for at := from.Truncate(time.Hour); at.Before(now); at = at.Add(time.Hour) {
		_, off := at.In(osl).Zone()
		pts = append(pts, model.HistoryPoint{Start: at.UTC(), Offset: time.Duration(off) * time.Second, Value: 1})
	}
	charts := buildHistoryCharts([]model.HistorySeries{{DeviceID: "d", Resolution: "hour", Metric: "temp.average", Points: pts}}, "hour", from, now)
	cv := charts["d"][0]
	xs := map[string]float64{}
	for _, l := range cv.XLabels {
		x, err := strconv.ParseFloat(l.GridX, 64)
		if err != nil {
			t.Fatal(err)
		}
		xs[l.Text] = x
	}
	perHour := float64(cv.PlotRight-cv.PlotLeft) / HourlyWindow.Hours()
	for _, c := range []struct {
		a, b  string
		hours float64
	}{{"Thu 23", "Fri 24", 24}, {"Fri 24", "Sat 25", 24}, {"Sat 25", "Sun 26", 24}, {"Sun 26", "Mon 27", 25}} {
		xa, oka := xs[c.a]
		xb, okb := xs[c.b]
		if !oka || !okb {
			t.Fatalf("ticks %v lack %s or %s", xs, c.a, c.b)
		}
		if got := (xb - xa) / perHour; got < c.hours-0.2 || got > c.hours+0.2 {
			t.Errorf("%s → %s: %.1f h apart, want %v", c.a, c.b, got, c.hours)
		}
	}
	if cv.Unit != "°C" || len(cv.Lines) != 1 || cv.Lines[0].Points != len(pts) {
		t.Fatalf("chart unit %q lines %+v, want °C and %d points", cv.Unit, cv.Lines, len(pts))
	}
}
