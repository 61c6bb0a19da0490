package web

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// Chart geometry in SVG user units; the SVG scales to the page width.
const (
	chartWidth   = 640
	chartHeight  = 220
	chartLeft    = 56
	chartRight   = 10
	chartTop     = 12
	chartBottom  = 26
	chartPlotW   = chartWidth - chartLeft - chartRight
	chartPlotH   = chartHeight - chartTop - chartBottom
	chartLabelDX = 6
)

// chartPalette has colours that stay apart for the usual colour-vision
// deficiencies (Okabe–Ito).
var chartPalette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"}

// chartView is one chart, ready for the template: geometry is computed
// here, the template only places it. Device names reach the page only
// through the template, which escapes them.
type chartView struct {
	Title        string
	CapabilityID string
	Unit         string
	Error        string
	Width        int
	Height       int
	PlotLeft     int
	PlotRight    int
	PlotTop      int
	PlotBottom   int
	PlotMid      int
	LabelX       int
	YMaxLabel    string
	YMidLabel    string
	YMinLabel    string
	XStartLabel  string
	XEndLabel    string
	Lines        []chartLine
}

// chartLine is one device's values.
type chartLine struct {
	Name   string
	Color  string
	Points string // "x,y x,y ..." for a polyline with two or more points
	// Dot is set instead of Points when there is a single point.
	Dot    *chartDot
	Latest string
}

type chartDot struct{ X, Y string }

// buildChart lays out series over [since, now].
func (s *Server) buildChart(spec ChartSpec, series []model.Series, since, now time.Time) (chartView, bool) {
	cv := chartView{
		Title: spec.Title, CapabilityID: spec.CapabilityID,
		Width: chartWidth, Height: chartHeight,
		PlotLeft: chartLeft, PlotRight: chartLeft + chartPlotW,
		PlotTop: chartTop, PlotBottom: chartTop + chartPlotH, PlotMid: chartTop + chartPlotH/2,
		LabelX:      chartLeft - chartLabelDX,
		XStartLabel: since.In(s.loc).Format("Mon 15:04"),
		XEndLabel:   now.In(s.loc).Format("Mon 15:04 MST"),
	}
	type line struct {
		name, unit string
		pts        []model.SeriesPoint
	}
	var lines []line
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, sr := range series {
		var pts []model.SeriesPoint
		for _, p := range sr.Points {
			if p.At.Before(since) || p.At.After(now) || math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
				continue
			}
			pts = append(pts, p)
			lo, hi = min(lo, p.Value), max(hi, p.Value)
		}
		if len(pts) == 0 {
			continue
		}
		slices.SortStableFunc(pts, func(a, b model.SeriesPoint) int { return a.At.Compare(b.At) })
		name := sr.DeviceName
		if name == "" {
			name = sr.DeviceID
		}
		lines = append(lines, line{name: name, unit: sr.Unit, pts: pts})
	}
	if len(lines) == 0 {
		return cv, false
	}
	slices.SortStableFunc(lines, func(a, b line) int { return strings.Compare(a.name, b.name) })
	cv.Unit = lines[0].unit

	if spec.Fixed && spec.Max > spec.Min {
		lo, hi = min(lo, spec.Min), max(hi, spec.Max)
	} else if hi-lo < 1e-9 {
		lo, hi = lo-1, hi+1
	} else {
		pad := (hi - lo) * 0.05
		lo, hi = lo-pad, hi+pad
	}
	dec := decimals(hi - lo)
	unit := ""
	if cv.Unit != "" {
		unit = " " + cv.Unit
	}
	cv.YMaxLabel = strconv.FormatFloat(hi, 'f', dec, 64) + unit
	cv.YMidLabel = strconv.FormatFloat((hi+lo)/2, 'f', dec, 64) + unit
	cv.YMinLabel = strconv.FormatFloat(lo, 'f', dec, 64) + unit

	span := now.Sub(since).Seconds()
	xOf := func(t time.Time) float64 {
		return chartLeft + t.Sub(since).Seconds()/span*chartPlotW
	}
	yOf := func(v float64) float64 {
		return chartTop + (hi-v)/(hi-lo)*chartPlotH
	}
	for i, l := range lines {
		cl := chartLine{
			Name:   l.name,
			Color:  chartPalette[i%len(chartPalette)],
			Latest: fmtValue(l.pts[len(l.pts)-1].Value) + unit,
		}
		if len(l.pts) == 1 {
			cl.Dot = &chartDot{X: coord(xOf(l.pts[0].At)), Y: coord(yOf(l.pts[0].Value))}
		} else {
			var b strings.Builder
			for j, p := range l.pts {
				if j > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(coord(xOf(p.At)))
				b.WriteByte(',')
				b.WriteString(coord(yOf(p.Value)))
			}
			cl.Points = b.String()
		}
		cv.Lines = append(cv.Lines, cl)
	}
	return cv, true
}

// decimals picks how many decimals a label needs for values spanning r.
func decimals(r float64) int {
	switch {
	case r >= 20:
		return 0
	case r >= 2:
		return 1
	default:
		return 2
	}
}

// fmtValue renders a single reading: whole numbers without decimals,
// others with one (two below 10).
func fmtValue(v float64) string {
	switch {
	case v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func coord(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }
