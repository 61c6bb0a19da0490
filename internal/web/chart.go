package web

import (
	"math"
	"strconv"
)

// chartPalette has colours that stay apart for the usual colour-vision
// deficiencies (Okabe–Ito).
var chartPalette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"}

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
