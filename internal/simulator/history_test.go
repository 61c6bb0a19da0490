package simulator_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/simulator"
)

// page is a decoded history page that remembers which link members were present.
type page struct {
	simulator.HistoryResponse
	raw map[string]json.RawMessage
}

func (e *env) historyPage(u, tok string) page {
	e.t.Helper()
	st, _, body := e.get(u, tok)
	if st != 200 {
		e.t.Fatalf("GET %s: %d %s", u, st, body)
	}
	var p page
	if err := json.Unmarshal(body, &p.HistoryResponse); err != nil {
		e.t.Fatalf("decode page: %v", err)
	}
	if err := json.Unmarshal(body, &p.raw); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func linkOf(raw json.RawMessage) string {
	var s string
	if len(raw) > 0 {
		json.Unmarshal(raw, &s)
	}
	return s
}

// walk follows next (forward) or prev (backward) links from the first URL
// and returns the pages in the order fetched.
func (e *env) walk(first, tok string, backward bool) []page {
	e.t.Helper()
	var pages []page
	u := first
	for range 10000 {
		p := e.historyPage(u, tok)
		pages = append(pages, p)
		next, prev := linkOf(p.Next), linkOf(p.Prev)
		if backward && next != "" || !backward && prev != "" {
			e.t.Fatalf("page carries a link in the wrong direction: next=%q prev=%q", next, prev)
		}
		link := next
		if backward {
			link = prev
		}
		if link == "" {
			return pages
		}
		if !strings.HasPrefix(link, "/") && !strings.HasPrefix(link, e.srv.URL+"/") {
			e.t.Fatalf("link %q is not on the simulator's base", link)
		}
		u = link
	}
	e.t.Fatal("paging did not end")
	return nil
}

func historyURL(h simulator.Home, d simulator.Device, res, param string, t time.Time) string {
	return devicePath(h.ID, d.ID) + "/history?" + url.Values{"resolution": {res}, param: {t.UTC().Format(time.RFC3339)}}.Encode()
}

// pointsOf flattens the items of pages in the given order.
func pointsOf(t *testing.T, pages []page) []simulator.HistoryPoint {
	t.Helper()
	var out []simulator.HistoryPoint
	for _, p := range pages {
		for _, it := range p.Items {
			ts, err := time.Parse(time.RFC3339, it.Time)
			if err != nil {
				t.Fatalf("item time %q: %v", it.Time, err)
			}
			_, off := ts.Zone()
			out = append(out, simulator.HistoryPoint{Time: ts, OffsetSeconds: off, Metrics: flatten("", it.Data)})
		}
	}
	return out
}

func flatten(prefix string, m map[string]any) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		switch x := v.(type) {
		case map[string]any:
			for kk, vv := range flatten(prefix+k+".", x) {
				out[kk] = vv
			}
		case float64:
			out[prefix+k] = x
		default:
			panic(fmt.Sprintf("non-numeric history value %v", v))
		}
	}
	return out
}

// sameSeries compares wire points with ground truth (instant, offset, metrics).
func sameSeries(t *testing.T, got, want []simulator.HistoryPoint) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d items, ground truth has %d", len(got), len(want))
	}
	for i := range got {
		if !got[i].Time.Equal(want[i].Time) || got[i].OffsetSeconds != want[i].OffsetSeconds || !reflect.DeepEqual(got[i].Metrics, want[i].Metrics) {
			t.Fatalf("item %d: got %v %d %v, want %v %d %v", i, got[i].Time, got[i].OffsetSeconds, got[i].Metrics,
				want[i].Time, want[i].OffsetSeconds, want[i].Metrics)
		}
	}
}

func TestHistoryForwardPagingMatchesSeries(t *testing.T) {
	e := newEnv(t, simulator.Options{PageSize: 24, HistoryDays: 20})
	tok, _ := e.login()
	h, bat := findDevice(t, e.sim, "battery")
	pages := e.walk(historyURL(h, bat, "hour", "since", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)), tok, false)
	q0 := pages[0].Query
	for i, p := range pages {
		if p.Query != q0 {
			t.Fatalf("page %d query %+v differs from the first %+v", i, p.Query, q0)
		}
		if len(p.Items) > 24 || i < len(pages)-1 && len(p.Items) != 24 {
			t.Fatalf("page %d has %d items", i, len(p.Items))
		}
	}
	if q0.PageSize != 24 {
		t.Fatalf("pageSize %d", q0.PageSize)
	}
	start, _ := time.Parse(time.RFC3339, q0.EffectiveStart)
	end, _ := time.Parse(time.RFC3339, q0.EffectiveEnd)
	// First record: local midnight 20 days before construction; end: the
	// start of the current hour.
	oslo, _ := time.LoadLocation("Europe/Oslo")
	wantStart := time.Date(2026, 8, 25, 0, 0, 0, 0, oslo)
	if !start.Equal(wantStart) || q0.EffectiveStart != "2026-08-25T00:00:00+02:00" {
		t.Fatalf("effectiveStart %s, want %s", q0.EffectiveStart, wantStart)
	}
	if !end.Equal(testStart.Truncate(time.Hour)) {
		t.Fatalf("effectiveEnd %s, want %s", end, testStart.Truncate(time.Hour))
	}
	got := pointsOf(t, pages)
	for i := 1; i < len(got); i++ {
		if !got[i].Time.Equal(got[i-1].Time.Add(time.Hour)) {
			t.Fatalf("gap or duplicate between %s and %s", got[i-1].Time, got[i].Time)
		}
	}
	if int(end.Sub(start)/time.Hour) != len(got) {
		t.Fatalf("%d items for %s..%s", len(got), start, end)
	}
	sameSeries(t, got, e.sim.HistorySeries(bat.ID, "hour", start, end))
}

func TestHistoryBackwardPaging(t *testing.T) {
	e := newEnv(t, simulator.Options{PageSize: 7})
	tok, _ := e.login()
	h, th := findDevice(t, e.sim, "thermostat")
	pages := e.walk(historyURL(h, th, "day", "until", testStart.Add(72*time.Hour)), tok, true)
	// Pages come newest first; items ascend within each page.
	var ordered []page
	for i := len(pages) - 1; i >= 0; i-- {
		ordered = append(ordered, pages[i])
	}
	got := pointsOf(t, ordered)
	q := pages[0].Query
	start, _ := time.Parse(time.RFC3339, q.EffectiveStart)
	end, _ := time.Parse(time.RFC3339, q.EffectiveEnd)
	oslo, _ := time.LoadLocation("Europe/Oslo")
	if want := time.Date(2026, 9, 14, 0, 0, 0, 0, oslo); !end.Equal(want) {
		t.Fatalf("effectiveEnd %s, want today's local midnight %s (until in the future is clamped)", end, want)
	}
	// Retention (365 days) is tighter than the 800 days of history.
	if want := time.Date(2025, 9, 14, 0, 0, 0, 0, oslo); !start.Equal(want) {
		t.Fatalf("effectiveStart %s, want %s", start, want)
	}
	if len(got) != 365 {
		t.Fatalf("%d day items, want 365", len(got))
	}
	for i := 1; i < len(got); i++ {
		if !got[i].Time.After(got[i-1].Time) {
			t.Fatalf("items not ascending at %d", i)
		}
	}
	for _, p := range got {
		if len(p.Metrics) != 1 || p.Metrics["temp.average"] == 0 {
			t.Fatalf("thermostat day item %v: want temp.average only", p.Metrics)
		}
	}
	sameSeries(t, got, e.sim.HistorySeries(th.ID, "day", start, end))
}

func TestHistoryDST(t *testing.T) {
	clock := newClock(time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC))
	sim := simulator.New(simulator.Options{Now: clock.Now})
	oslo, _ := time.LoadLocation("Europe/Oslo")
	london, _ := time.LoadLocation("Europe/London")
	_, bat := findDevice(t, sim, "battery")  // Oslo
	_, hp := findDevice(t, sim, "heatpump")  // London
	_, inv := findDevice(t, sim, "inverter") // London
	cases := []struct {
		dev     simulator.Device
		loc     *time.Location
		day     time.Time
		hours   int
		offsets []int
	}{
		{bat, oslo, time.Date(2026, 3, 29, 0, 0, 0, 0, oslo), 23, []int{3600, 7200}},
		{bat, oslo, time.Date(2026, 10, 25, 0, 0, 0, 0, oslo), 25, []int{7200, 3600}},
		{hp, london, time.Date(2026, 3, 29, 0, 0, 0, 0, london), 23, []int{0, 3600}},
		{inv, london, time.Date(2026, 10, 25, 0, 0, 0, 0, london), 25, []int{3600, 0}},
	}
	for _, c := range cases {
		next := c.day.AddDate(0, 0, 1)
		hours := sim.HistorySeries(c.dev.ID, "hour", c.day, next)
		if len(hours) != c.hours {
			t.Fatalf("%s %s: %d hour items, want %d", c.dev.Kind, c.day.Format("2006-01-02"), len(hours), c.hours)
		}
		if hours[0].OffsetSeconds != c.offsets[0] || hours[len(hours)-1].OffsetSeconds != c.offsets[1] {
			t.Fatalf("%s: offsets %d..%d, want %v", c.dev.Kind, hours[0].OffsetSeconds, hours[len(hours)-1].OffsetSeconds, c.offsets)
		}
		days := sim.HistorySeries(c.dev.ID, "day", c.day.AddDate(0, 0, -1), next.AddDate(0, 0, 1))
		if len(days) != 3 {
			t.Fatalf("%d day items", len(days))
		}
		for _, d := range days {
			lt := d.Time.In(c.loc)
			if lt.Hour() != 0 || lt.Minute() != 0 {
				t.Fatalf("day item at %s is not local midnight", d.Time)
			}
		}
		if d := days[2].Time.Sub(days[1].Time); d != time.Duration(c.hours)*time.Hour {
			t.Fatalf("the DST day lasts %s, want %dh", d, c.hours)
		}
	}
	// Quarter hours on the 23-hour day: 92 periods, each with storage data.
	qh := sim.HistorySeries(bat.ID, "quarterHour", time.Date(2026, 3, 29, 0, 0, 0, 0, oslo), time.Date(2026, 3, 30, 0, 0, 0, 0, oslo))
	if len(qh) != 92 {
		t.Fatalf("%d quarter hours on the spring-forward day, want 92", len(qh))
	}
	// Month items start on the first at local midnight and carry its offset.
	months := sim.HistorySeries(bat.ID, "month", time.Date(2026, 1, 1, 0, 0, 0, 0, oslo), time.Date(2026, 11, 1, 0, 0, 0, 0, oslo))
	if len(months) != 10 {
		t.Fatalf("%d months", len(months))
	}
	for _, m := range months {
		if lt := m.Time.In(oslo); lt.Day() != 1 || lt.Hour() != 0 {
			t.Fatalf("month item at %s", m.Time)
		}
		if _, ok := m.Metrics["storage.stateOfCharge"]; ok {
			t.Fatal("storage series at month resolution")
		}
	}
}

func TestHistoryWireOffsets(t *testing.T) {
	// The wire carries the home's offset, "+00:00" rather than "Z" in London winter.
	clock := newClock(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, simulator.Options{Now: clock.Now, PageSize: 3})
	tok, _ := e.login()
	h, hp := findDevice(t, e.sim, "heatpump")
	p := e.historyPage(historyURL(h, hp, "hour", "since", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)), tok)
	if p.Query.EffectiveStart != "2026-12-01T00:00:00+00:00" || p.Items[0].Time != "2026-12-01T00:00:00+00:00" {
		t.Fatalf("query %+v first item %s", p.Query, p.Items[0].Time)
	}
	hb, bat := findDevice(t, e.sim, "battery")
	p = e.historyPage(historyURL(hb, bat, "day", "since", time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)), tok)
	if p.Items[0].Time != "2026-12-01T00:00:00+01:00" {
		t.Fatalf("Oslo day item %s", p.Items[0].Time)
	}
}

func TestHistoryClampingAndErrors(t *testing.T) {
	e := newEnv(t, simulator.Options{PageSize: 5})
	tok, _ := e.login()
	h, bat := findDevice(t, e.sim, "battery")
	base := devicePath(h.ID, bat.ID) + "/history?"

	// since is truncated to the hour, even for quarter hours.
	p := e.historyPage(base+"resolution=quarterHour&since=2026-09-13T10:37:12.345Z", tok)
	if p.Query.EffectiveStart != "2026-09-13T12:00:00+02:00" || p.Items[0].Time != "2026-09-13T12:00:00+02:00" {
		t.Fatalf("truncated since: query %+v first %s", p.Query, p.Items[0].Time)
	}
	if linkOf(p.Next) == "" {
		t.Fatal("no next link")
	}
	// until in the future ends at the start of the current period.
	p = e.historyPage(base+"resolution=day&until=2030-01-01T00:00:00Z", tok)
	if p.Query.EffectiveEnd != "2026-09-14T00:00:00+02:00" {
		t.Fatalf("effectiveEnd %s", p.Query.EffectiveEnd)
	}
	// A window entirely in the future is empty.
	p = e.historyPage(base+"resolution=hour&since=2030-01-01T00:00:00Z", tok)
	if len(p.Items) != 0 || len(p.raw["next"]) != 0 {
		t.Fatalf("future window: %d items, next %s", len(p.Items), p.raw["next"])
	}

	_, veh := findDevice(t, e.sim, "vehicle")
	_, th := findDevice(t, e.sim, "thermostat")
	cases := map[string]string{
		"Both":             base + "resolution=hour&since=2026-09-01T00:00:00Z&until=2026-09-02T00:00:00Z",
		"Neither":          base + "resolution=hour",
		"NoResolution":     base + "since=2026-09-01T00:00:00Z",
		"LegacyResolution": base + "resolution=HOURLY&since=2026-09-01T00:00:00Z",
		"FromTo":           base + "resolution=hour&from=2026-09-01T00:00:00Z&to=2026-09-02T00:00:00Z",
		"BadTime":          base + "resolution=hour&since=yesterday",
		"UnencodedPlus":    base + "resolution=hour&since=2026-09-01T00:00:00+02:00",
		"VehicleNoHistory": devicePath(h.ID, veh.ID) + "/history?resolution=hour&since=2026-09-01T00:00:00Z",
		"Unsupported":      devicePath(h.ID, th.ID) + "/history?resolution=quarterHour&since=2026-09-01T00:00:00Z",
		"TamperedCursor":   base + "resolution=hour&cursor=eyJjIjp7fSwibSI6IiJ9",
	}
	for name, u := range cases {
		t.Run(name, func(t *testing.T) {
			st, hdr, b := e.get(u, tok)
			p := checkProblem(t, st, hdr, b, 400)
			if (name == "VehicleNoHistory" || name == "Unsupported") && p["detail"] != "resolution not supported" {
				t.Fatalf("detail %v", p["detail"])
			}
		})
	}
	t.Run("CursorMisuse", func(t *testing.T) {
		first := e.historyPage(base+"resolution=hour&since=2026-09-10T00:00:00Z", tok)
		next := linkOf(first.Next)
		nu, _ := url.Parse(next)
		cur := nu.Query().Get("cursor")
		// Flip one character of the cursor.
		b := []byte(cur)
		b[len(b)/2] ^= 1
		for name, u := range map[string]string{
			"Flipped":     base + "resolution=hour&cursor=" + url.QueryEscape(string(b)),
			"OtherRes":    base + "resolution=day&cursor=" + url.QueryEscape(cur),
			"OtherDevice": devicePath(h.ID, th.ID) + "/history?resolution=hour&cursor=" + url.QueryEscape(cur),
			"WithSince":   next + "&since=2026-09-10T00:00:00Z",
		} {
			st, hdr, body := e.get(u, tok)
			if st != 400 {
				t.Fatalf("%s: status %d", name, st)
			}
			checkProblem(t, st, hdr, body, 400)
		}
		// The untouched link works.
		e.historyPage(next, tok)
	})

	empty := newEnv(t, simulator.Options{NoHistoryEmpty: true})
	tok2, _ := empty.login()
	p = empty.historyPage(devicePath(h.ID, veh.ID)+"/history?resolution=hour&since=2026-09-01T00:00:00Z", tok2)
	if len(p.Items) != 0 || p.Items == nil {
		t.Fatalf("NoHistoryEmpty: items %v", p.Items)
	}
}

func TestHistoryDataShapes(t *testing.T) {
	sim := simulator.New(simulator.Options{Now: newClock(testStart).Now})
	_, bat := findDevice(t, sim, "battery")
	from := testStart.AddDate(0, 0, -30)
	hours := sim.HistorySeries(bat.ID, "hour", from, testStart)
	holes := 0
	for _, p := range hours {
		if _, ok := p.Metrics["storage.stateOfCharge"]; !ok {
			t.Fatalf("hour item without storage: %v", p.Metrics)
		}
		if _, ok := p.Metrics["energyFlow.gridImport"]; !ok {
			holes++
		}
	}
	if holes == 0 || holes > len(hours)/5 {
		t.Fatalf("%d of %d hours have holes in energyFlow", holes, len(hours))
	}
	for _, p := range sim.HistorySeries(bat.ID, "day", from, testStart) {
		if _, ok := p.Metrics["storage.stateOfCharge"]; ok {
			t.Fatal("storage series at day resolution")
		}
		if _, ok := p.Metrics["energyFlow.gridImport"]; !ok {
			t.Fatal("day item without energyFlow")
		}
	}
	// Day energy equals the sum of its quarter hours.
	oslo, _ := time.LoadLocation("Europe/Oslo")
	day := time.Date(2026, 9, 1, 0, 0, 0, 0, oslo)
	d := sim.HistorySeries(bat.ID, "day", day, day.AddDate(0, 0, 1))
	sum := 0.0
	for _, q := range sim.HistorySeries(bat.ID, "quarterHour", day, day.AddDate(0, 0, 1)) {
		sum += q.Metrics["energyFlow.loadConsumed"]
	}
	// Quarter hours in a hole lack the metric, so the exact comparison needs
	// a day without holes; otherwise the day total is at least the sum.
	if len(d) != 1 {
		t.Fatalf("%d day items", len(d))
	}
	hourSum := 0.0
	holey := false
	for _, hp := range sim.HistorySeries(bat.ID, "hour", day, day.AddDate(0, 0, 1)) {
		v, ok := hp.Metrics["energyFlow.loadConsumed"]
		holey = holey || !ok
		hourSum += v
	}
	if !holey {
		if math.Abs(d[0].Metrics["energyFlow.loadConsumed"]-sum) > 0.05 || math.Abs(hourSum-sum) > 0.05 {
			t.Fatalf("day %v, sum of hours %v, sum of quarters %v", d[0].Metrics["energyFlow.loadConsumed"], hourSum, sum)
		}
	} else if d[0].Metrics["energyFlow.loadConsumed"] < sum {
		t.Fatalf("day total %v below the sum of the quarters present %v", d[0].Metrics["energyFlow.loadConsumed"], sum)
	}
}

func TestHistoryOptions(t *testing.T) {
	walkAll := func(t *testing.T, opts simulator.Options) (*env, []page, []simulator.HistoryPoint, time.Time, time.Time, simulator.Device) {
		opts.PageSize = 10
		opts.HistoryDays = 3
		e := newEnv(t, opts)
		tok, _ := e.login()
		h, bat := findDevice(t, e.sim, "battery")
		pages := e.walk(historyURL(h, bat, "hour", "since", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)), tok, false)
		start, _ := time.Parse(time.RFC3339, pages[0].Query.EffectiveStart)
		end, _ := time.Parse(time.RFC3339, pages[0].Query.EffectiveEnd)
		return e, pages, pointsOf(t, pages), start, end, bat
	}
	t.Run("RelativeAndNullLinks", func(t *testing.T) {
		_, pages, _, _, _, _ := walkAll(t, simulator.Options{RelativeLinks: true, NullLink: true})
		if l := linkOf(pages[0].Next); !strings.HasPrefix(l, "/v1/homes/") {
			t.Fatalf("relative link %q", l)
		}
		last := pages[len(pages)-1]
		if string(last.raw["next"]) != "null" {
			t.Fatalf("last page next=%s, want null", last.raw["next"])
		}
	})
	t.Run("OmittedLinkByDefault", func(t *testing.T) {
		_, pages, _, _, _, _ := walkAll(t, simulator.Options{})
		if _, has := pages[len(pages)-1].raw["next"]; has {
			t.Fatal("last page has a next member")
		}
	})
	t.Run("Shuffle", func(t *testing.T) {
		e, pages, got, start, end, bat := walkAll(t, simulator.Options{ShuffleItems: true})
		unsorted := false
		for _, p := range pages {
			if !slices.IsSortedFunc(p.Items, func(a, b simulator.HistoryItem) int { return strings.Compare(a.Time, b.Time) }) {
				unsorted = true
			}
		}
		if !unsorted {
			t.Fatal("no page is shuffled")
		}
		slices.SortFunc(got, func(a, b simulator.HistoryPoint) int { return a.Time.Compare(b.Time) })
		sameSeries(t, got, e.sim.HistorySeries(bat.ID, "hour", start, end))
	})
	t.Run("GapsAndMisaligned", func(t *testing.T) {
		e, _, got, start, end, bat := walkAll(t, simulator.Options{Gaps: true, MisalignedTimes: true})
		periods := int(end.Sub(start) / time.Hour)
		if len(got) >= periods {
			t.Fatalf("Gaps dropped nothing: %d items for %d periods", len(got), periods)
		}
		off := 0
		for _, p := range got {
			if p.Time.Truncate(time.Hour) != p.Time {
				off++
			}
		}
		if off == 0 {
			t.Fatal("MisalignedTimes shifted nothing")
		}
		sameSeries(t, got, e.sim.HistorySeries(bat.ID, "hour", start, end))
	})
}

func TestHistoryCorrection(t *testing.T) {
	e := newEnv(t, simulator.Options{PageSize: 48})
	tok, _ := e.login()
	h, th := findDevice(t, e.sim, "thermostat")
	period := time.Date(2026, 9, 10, 5, 0, 0, 0, time.UTC)
	u := historyURL(h, th, "hour", "since", period)
	before := pointsOf(t, []page{e.historyPage(u, tok)})
	e.sim.SetHistoryCorrection(th.ID, "hour", period, "temp.average", 12.34)
	after := pointsOf(t, []page{e.historyPage(u, tok)})
	if after[0].Metrics["temp.average"] != 12.34 || before[0].Metrics["temp.average"] == 12.34 {
		t.Fatalf("correction not served: before %v after %v", before[0].Metrics, after[0].Metrics)
	}
	if !reflect.DeepEqual(before[1:], after[1:]) {
		t.Fatal("correction changed other periods")
	}
	truth := e.sim.HistorySeries(th.ID, "hour", period, period.Add(time.Hour))
	if len(truth) != 1 || truth[0].Metrics["temp.average"] != 12.34 {
		t.Fatalf("HistorySeries %v", truth)
	}
}

func TestHistoryDeterminism(t *testing.T) {
	clock := newClock(testStart)
	a := simulator.New(simulator.Options{Seed: 1, Now: clock.Now})
	b := simulator.New(simulator.Options{Seed: 1, Now: clock.Now})
	c := simulator.New(simulator.Options{Seed: 2, Now: clock.Now})
	_, inv := findDevice(t, a, "inverter")
	from := testStart.AddDate(0, 0, -60)
	for _, res := range []string{"hour", "day", "month"} {
		sa, sb, sc := a.HistorySeries(inv.ID, res, from, testStart), b.HistorySeries(inv.ID, res, from, testStart), c.HistorySeries(inv.ID, res, from, testStart)
		if len(sa) == 0 || !reflect.DeepEqual(sa, sb) {
			t.Fatalf("%s: same seed differs (%d items)", res, len(sa))
		}
		if reflect.DeepEqual(sa, sc) {
			t.Fatalf("%s: seeds 1 and 2 agree", res)
		}
	}
}
