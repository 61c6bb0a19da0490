package web

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// History chart windows: the last 7 days at hourly resolution and the last
// 30 days at daily resolution.
const (
	HourlyWindow = 7 * 24 * time.Hour
	DailyWindow  = 30 * 24 * time.Hour
)

// historyGroup is one chart of a device: metrics that share a unit.
type historyGroup struct {
	key, title string
	match      func(metric string) bool
}

var historyGroups = []historyGroup{
	{"energy", "Energy flows", func(m string) bool { return strings.HasPrefix(m, "energyFlow.") }},
	{"soc", "State of charge", func(m string) bool { return m == "storage.stateOfCharge" }},
	{"temp", "Temperature", func(m string) bool { return strings.HasPrefix(m, "temp.") }},
}

// deviceChartsView is one device's history charts.
type deviceChartsView struct {
	DeviceID string
	Name     string
	Charts   []historyChartView
}

// historyChartView is one history chart, laid out for the template.
type historyChartView struct {
	ID         string
	Title      string
	Window     string // "last 7 days, hourly"
	Resolution string
	Unit       string
	Width      int
	Height     int
	PlotLeft   int
	PlotRight  int
	PlotTop    int
	PlotBottom int
	YLabels    []axisLabel
	XLabels    []axisLabel
	Lines      []historyLine
}

type axisLabel struct {
	X, Y   string
	GridX  string // where the tick's grid line goes (x axis)
	Anchor string // text-anchor
	Text   string
}

type historyLine struct {
	Name   string
	Color  string
	Path   string // SVG path data; gaps in the history break the line
	Latest string
	Points int
}

// History chart geometry in SVG user units. The left margin leaves room for
// value labels, which are drawn larger on a phone (see layout.html).
const (
	hcWidth  = 640
	hcHeight = 240
	hcLeft   = 72
	hcRight  = 12
	hcTop    = 14
	hcBottom = 34
)

// buildHistoryCharts groups the series per device and lays out the charts
// of one resolution over [from, to].
func buildHistoryCharts(series []model.HistorySeries, resolution string, from, to time.Time) map[string][]historyChartView {
	byDevice := map[string][]model.HistorySeries{}
	for _, s := range series {
		if s.Resolution == resolution && len(s.Points) > 0 {
			byDevice[s.DeviceID] = append(byDevice[s.DeviceID], s)
		}
	}
	window := "last 7 days, hourly"
	step := time.Hour
	if resolution == model.ResolutionDay {
		window = "last 30 days, daily"
		step = 25 * time.Hour
	}
	out := map[string][]historyChartView{}
	for dev, list := range byDevice {
		for _, g := range historyGroups {
			var in []model.HistorySeries
			for _, s := range list {
				if g.match(s.Metric) {
					in = append(in, s)
				}
			}
			if len(in) == 0 {
				continue
			}
			slices.SortFunc(in, func(a, b model.HistorySeries) int { return cmp.Compare(a.Metric, b.Metric) })
			cv := layoutHistoryChart(in, from, to, step, resolution)
			cv.ID = "history-" + g.key + "-" + resolution
			cv.Title = g.title
			cv.Window = window
			out[dev] = append(out[dev], cv)
		}
	}
	return out
}

func layoutHistoryChart(in []model.HistorySeries, from, to time.Time, step time.Duration, resolution string) historyChartView {
	cv := historyChartView{
		Resolution: resolution,
		Unit:       model.HistoryUnit(in[0].Metric),
		Width:      hcWidth, Height: hcHeight,
		PlotLeft: hcLeft, PlotRight: hcWidth - hcRight,
		PlotTop: hcTop, PlotBottom: hcHeight - hcBottom,
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range in {
		for _, p := range s.Points {
			if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
				continue
			}
			lo, hi = min(lo, p.Value), max(hi, p.Value)
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0, 1
	}
	switch {
	case cv.Unit == "%":
		lo, hi = min(lo, 0), max(hi, 100)
	case cv.Unit == "Wh" && lo >= 0:
		lo = 0
		if hi <= 0 {
			hi = 1
		}
		hi = niceCeil(hi * 1.02)
	case hi-lo < 1e-9:
		lo, hi = lo-1, hi+1
	default:
		pad := (hi - lo) * 0.08
		lo, hi = lo-pad, hi+pad
	}
	plotW := float64(cv.PlotRight - cv.PlotLeft)
	plotH := float64(cv.PlotBottom - cv.PlotTop)
	span := to.Sub(from).Seconds()
	xOf := func(t time.Time) float64 { return float64(cv.PlotLeft) + t.Sub(from).Seconds()/span*plotW }
	yOf := func(v float64) float64 { return float64(cv.PlotTop) + (hi-v)/(hi-lo)*plotH }

	for i := 0; i <= 2; i++ {
		v := hi - (hi-lo)*float64(i)/2
		cv.YLabels = append(cv.YLabels, axisLabel{X: strconv.Itoa(cv.PlotLeft - 6), Y: coord(yOf(v)), Text: compactValue(v, hi-lo)})
	}

	// Ticks at local midnights (hourly) or local Mondays (daily), taken from
	// the stored offsets, so a DST change moves them with the home's clock.
	ticks := map[int64]string{}
	for _, s := range in {
		for _, p := range s.Points {
			local := p.Start.Add(p.Offset).UTC()
			switch resolution {
			case model.ResolutionDay:
				if local.Weekday() == time.Monday {
					ticks[p.Start.Unix()] = local.Format("2 Jan")
				}
			default:
				if local.Hour() == 0 {
					ticks[p.Start.Unix()] = local.Format("Mon 2")
				}
			}
		}
	}
	for _, u := range slices.Sorted(maps.Keys(ticks)) {
		at := time.Unix(u, 0)
		x := xOf(at)
		if x < float64(cv.PlotLeft) || x > float64(cv.PlotRight) {
			continue
		}
		l := axisLabel{X: coord(x), GridX: coord(x), Y: strconv.Itoa(cv.Height - 8), Text: ticks[u], Anchor: "start"}
		if resolution != model.ResolutionDay {
			// A day's name sits in the middle of its day.
			mid := xOf(at.Add(12 * time.Hour))
			if mid > float64(cv.PlotRight)-28 {
				continue
			}
			l.X, l.Anchor = coord(mid), "middle"
		} else if x > float64(cv.PlotRight)-40 {
			continue
		}
		cv.XLabels = append(cv.XLabels, l)
	}

	for i, s := range in {
		var b strings.Builder
		var prev time.Time
		n := 0
		for _, p := range s.Points {
			if p.Start.Before(from) || p.Start.After(to) || math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
				continue
			}
			cmd := "L"
			if prev.IsZero() || p.Start.Sub(prev) > step+step/2 {
				cmd = "M"
			}
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(cmd + coord(xOf(p.Start)) + "," + coord(yOf(p.Value)))
			prev = p.Start
			n++
		}
		if n == 0 {
			continue
		}
		name := s.Metric
		if j := strings.LastIndexByte(name, '.'); j >= 0 {
			name = name[j+1:]
		}
		unit := ""
		if cv.Unit != "" {
			unit = " " + cv.Unit
		}
		cv.Lines = append(cv.Lines, historyLine{
			Name:   name,
			Color:  chartPalette[i%len(chartPalette)],
			Path:   b.String(),
			Latest: fmtValue(s.Points[len(s.Points)-1].Value) + unit,
			Points: n,
		})
	}
	return cv
}

// niceCeil rounds x > 0 up to a round axis maximum: 1, 1.2, 1.5, 2, 2.5,
// 3, 4, 5, 6 or 8 times a power of ten.
func niceCeil(x float64) float64 {
	if x <= 0 || math.IsInf(x, 0) || math.IsNaN(x) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*p >= x*(1-1e-12) {
			return m * p
		}
	}
	return 10 * p
}

// compactValue renders an axis value briefly: 12k, 1.5k, 230, 4.5.
func compactValue(v, span float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 1, 64) + "M"
	case a >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 0, 64) + "k"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', decimals(span), 64)
}
