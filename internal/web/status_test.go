package web_test

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	promodel "github.com/prometheus/common/model"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/metrics"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/web"
)

const evilName = `<script>alert("x")</script>`

func ptr(f float64) *float64 { return &f }

func richSummary() model.Summary {
	return model.Summary{
		GeneratedAt: t0,
		Auth: model.AuthSummary{
			State:           model.AuthOK,
			Since:           t0.Add(-72 * time.Hour),
			GrantedScopes:   []string{"openid", "offline_access", "data-api-vehicles-read", "data-api-energy-systems-read"},
			MissingScopes:   []string{"data-api-chargers-read"},
			Email:           "ada@example.com",
			AccessExpiresAt: t0.Add(42 * time.Minute),
			RefreshIssuedAt: t0.Add(-3 * 24 * time.Hour),
		},
		Jobs: []model.JobSummary{
			{Job: "devices", LastRunAt: t0.Add(-2 * time.Minute), LastSuccessAt: t0.Add(-2 * time.Minute), LastStatus: "ok", NextRunAt: t0.Add(3 * time.Minute), LastRowsWritten: 12, RowsWrittenTotal: 34567},
			{Job: "history", LastRunAt: t0.Add(-10 * time.Minute), LastSuccessAt: t0.Add(-70 * time.Minute), LastStatus: "failed", LastError: "history of device X: HTTP 503", ConsecutiveFailures: 2, NextRunAt: t0.Add(50 * time.Minute)},
		},
		Tables:      map[string]int64{"devices": 2, "device_history": 1234567},
		DataDBBytes: 5 << 20,
		WALBytes:    300 << 10,
		Devices: []model.DeviceSummary{
			{ID: "d1", Name: "Home battery", Brand: "Homevolt", Category: model.CategoryEnergySystem, Homes: []string{"h1"}, StateOfCharge: ptr(74), LastSeen: t0.Add(-time.Minute)},
			{ID: "d2", Name: evilName, Brand: "Volkswagen", Model: "ID.3", Category: model.CategoryVehicle, Homes: []string{"h1"}, StateOfCharge: ptr(55.5)},
		},
	}
}

func socSeries() []model.Series {
	return []model.Series{
		{DeviceID: "d1", DeviceName: "Home battery", CapabilityID: "storage.stateOfCharge", Unit: "%", Points: []model.SeriesPoint{
			{At: t0.Add(-25 * time.Hour), Value: 10}, // outside the window
			{At: t0.Add(-23 * time.Hour), Value: 50},
			{At: t0.Add(-12 * time.Hour), Value: 100},
			{At: t0.Add(-1 * time.Hour), Value: 0},
		}},
		{DeviceID: "d2", DeviceName: evilName, CapabilityID: "storage.stateOfCharge", Unit: "%", Points: []model.SeriesPoint{
			{At: t0.Add(-2 * time.Hour), Value: 40},
			{At: t0.Add(-30 * time.Minute), Value: 80},
		}},
	}
}

type svgPolyline struct {
	Points string `xml:"points,attr"`
	Stroke string `xml:"stroke,attr"`
	Title  string `xml:"title"`
}

type svgDoc struct {
	XMLName   xml.Name      `xml:"svg"`
	ViewBox   string        `xml:"viewBox,attr"`
	Polylines []svgPolyline `xml:"polyline"`
	Texts     []string      `xml:"text"`
}

// chartSVG cuts the chart of one capability out of the page and parses it
// as XML, which also proves the SVG is well-formed.
func chartSVG(t *testing.T, body, capability string) svgDoc {
	t.Helper()
	fig := strings.Index(body, `id="chart-`+capability+`"`)
	if fig < 0 {
		t.Fatalf("no chart for %s", capability)
	}
	start := strings.Index(body[fig:], "<svg")
	end := strings.Index(body[fig:], "</svg>")
	if start < 0 || end < start {
		t.Fatalf("no svg in chart %s", capability)
	}
	var doc svgDoc
	if err := xml.Unmarshal([]byte(body[fig+start:fig+end+len("</svg>")]), &doc); err != nil {
		t.Fatalf("chart svg is not well-formed XML: %v", err)
	}
	return doc
}

type pt struct{ x, y float64 }

func parsePoints(t *testing.T, s string) []pt {
	t.Helper()
	var out []pt
	for _, f := range strings.Fields(s) {
		xs, ys, ok := strings.Cut(f, ",")
		if !ok {
			t.Fatalf("bad point %q", f)
		}
		x, err1 := strconv.ParseFloat(xs, 64)
		y, err2 := strconv.ParseFloat(ys, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad point %q", f)
		}
		out = append(out, pt{x, y})
	}
	return out
}

func TestStatusPageRendersEverything(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	var (
		mu     sync.Mutex
		asked  = map[string]time.Time{}
		series = map[string][]model.Series{"storage.stateOfCharge": socSeries()}
	)
	opts.Status = &fakeStatus{
		SummaryFn: func(context.Context) (model.Summary, error) { return richSummary(), nil },
		SeriesFn: func(_ context.Context, capability string, since time.Time) ([]model.Series, error) {
			mu.Lock()
			defer mu.Unlock()
			asked[capability] = since
			return series[capability], nil
		},
	}
	_, ts := handlerServer(t, opts)
	r := get(t, noRedirect(), ts.URL+"/")
	if r.status != http.StatusOK {
		t.Fatalf("status %d\n%s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type=%q", ct)
	}
	mustContain(t, r.body,
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		"ada@example.com",
		"<li>data-api-vehicles-read</li>",
		"<li>data-api-chargers-read</li>", // missing scope
		"EV chargers (<code>data-api-chargers-read</code>)",
		"expires in 42 min",
		"about 27 days left",
		"history of device X: HTTP 503",
		"2 failures in a row",
		"<code>device_history</code>",
		"1\u202f234\u202f567",
		"5.0 MiB", "300.0 KiB",
		"Homevolt", "74 %", "55.5 %",
		"Last 24 hours",
	)
	if strings.Contains(r.body, "<script") {
		t.Fatal("device name reached the page unescaped")
	}
	mustContain(t, r.body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;")
	if strings.Contains(r.body, `id="auth-banner"`) {
		t.Error("banner shown while state is ok")
	}
	for _, external := range []string{"<script", "src=\"http", "href=\"http://cdn", "<link "} {
		if strings.Contains(r.body, external) {
			t.Errorf("page loads something external: %q", external)
		}
	}

	// Every chart was asked for the last 24 h; charts without data are left out.
	mu.Lock()
	for _, spec := range web.DefaultCharts() {
		if got, ok := asked[spec.CapabilityID]; !ok || !got.Equal(t0.Add(-web.ChartWindow)) {
			t.Errorf("series %s asked since %v (asked=%v), want %v", spec.CapabilityID, got, ok, t0.Add(-24*time.Hour))
		}
	}
	mu.Unlock()
	if strings.Contains(r.body, `id="chart-temp.current"`) {
		t.Error("empty temperature chart rendered")
	}

	doc := chartSVG(t, r.body, "storage.stateOfCharge")
	if len(doc.Polylines) != 2 {
		t.Fatalf("polylines=%d, want 2", len(doc.Polylines))
	}
	byName := map[string]svgPolyline{}
	for _, p := range doc.Polylines {
		byName[p.Title] = p
	}
	bat, ok := byName["Home battery"]
	if !ok {
		t.Fatalf("no polyline titled Home battery: %+v", doc.Polylines)
	}
	if _, ok := byName[evilName]; !ok {
		t.Fatalf("evil device name not round-tripped as text: %+v", doc.Polylines)
	}
	if bat.Stroke == byName[evilName].Stroke {
		t.Error("two devices share a colour")
	}
	pts := parsePoints(t, bat.Points)
	if len(pts) != 3 {
		t.Fatalf("battery points=%d (%q), want 3 (the one outside 24 h dropped)", len(pts), bat.Points)
	}
	// Time runs left to right, proportionally: -23h, -12h, -1h.
	if !(pts[0].x < pts[1].x && pts[1].x < pts[2].x) {
		t.Fatalf("x not increasing: %v", pts)
	}
	if got, want := (pts[1].x-pts[0].x)/(pts[2].x-pts[0].x), 11.0/22.0; math.Abs(got-want) > 0.01 {
		t.Errorf("x proportion=%v, want %v", got, want)
	}
	// 100 % is on top, 0 % at the bottom, 50 % half-way (fixed 0–100 axis).
	if !(pts[1].y < pts[0].y && pts[0].y < pts[2].y) {
		t.Fatalf("y order wrong for 50/100/0 %%: %v", pts)
	}
	if mid := (pts[1].y + pts[2].y) / 2; math.Abs(pts[0].y-mid) > 0.11 {
		t.Errorf("y of 50%%=%v, want %v", pts[0].y, mid)
	}
	labels := strings.Join(doc.Texts, "|")
	for _, want := range []string{"100 %", "0 %"} {
		if !strings.Contains(labels, want) {
			t.Errorf("axis labels %q lack %q", labels, want)
		}
	}
}

func TestStatusBanners(t *testing.T) {
	cases := map[string]struct {
		state  model.AuthState
		reason string
		wants  []string
	}{
		"SetupRequired": {model.AuthSetupRequired, "", []string{"Not connected to Tibber yet", `href="/setup">Connect to Tibber</a>`}},
		"ReauthRequired": {model.AuthReauthRequired, "invalid_grant: refresh token revoked", []string{
			"Re-authorization required", "Reason: invalid_grant: refresh token revoked", `href="/setup">Re-authorize</a>`, "Since 2025-03-01 10:00 UTC (2 h ago)"}},
		"ConfigError": {model.AuthConfigError, "invalid_client", []string{"Configuration error", "Reason: invalid_client", `href="/setup">Re-authorize</a>`}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			opts := baseOptions(&syncBuffer{})
			opts.Status = &fakeStatus{SummaryFn: func(context.Context) (model.Summary, error) {
				return model.Summary{Auth: model.AuthSummary{State: c.state, Reason: c.reason, Since: t0.Add(-2 * time.Hour)}}, nil
			}}
			_, ts := handlerServer(t, opts)
			r := get(t, noRedirect(), ts.URL+"/")
			if r.status != http.StatusOK {
				t.Fatalf("status %d", r.status)
			}
			mustContain(t, r.body, append([]string{`id="auth-banner"`}, c.wants...)...)
		})
	}
}

func TestStatusPageSummaryError(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	opts.Status = &fakeStatus{SummaryFn: func(context.Context) (model.Summary, error) {
		return model.Summary{}, errors.New("database is locked")
	}}
	_, ts := handlerServer(t, opts)
	r := get(t, noRedirect(), ts.URL+"/")
	if r.status != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", r.status)
	}
	mustContain(t, r.body, "Status unavailable", "database is locked")
}

func TestStatusWithoutSourceGoesToSetup(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	opts.Status = nil
	_, ts := handlerServer(t, opts)
	r := get(t, noRedirect(), ts.URL+"/")
	if r.status != http.StatusFound || r.header.Get("Location") != "/setup" {
		t.Fatalf("status %d Location %q, want 302 /setup", r.status, r.header.Get("Location"))
	}
	if r := get(t, noRedirect(), ts.URL+"/readyz"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("/readyz without source: %d, want 503", r.status)
	}
}

func TestHealthz(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	opts.Status = &fakeStatus{SummaryFn: func(context.Context) (model.Summary, error) {
		return model.Summary{}, errors.New("broken")
	}}
	_, ts := handlerServer(t, opts)
	r := get(t, noRedirect(), ts.URL+"/healthz")
	if r.status != http.StatusOK || r.body != "ok\n" {
		t.Fatalf("/healthz: %d %q, want 200 ok", r.status, r.body)
	}
}

func TestReadyz(t *testing.T) {
	fake := clock.NewFake(t0)
	var (
		mu  sync.Mutex
		sum = model.Summary{Auth: model.AuthSummary{State: model.AuthOK}}
	)
	set := func(f func(*model.Summary)) {
		mu.Lock()
		defer mu.Unlock()
		f(&sum)
	}
	opts := baseOptions(&syncBuffer{})
	opts.Clock = fake
	opts.JobIntervals = map[string]time.Duration{"devices": 5 * time.Minute, "homes": time.Hour}
	opts.Status = &fakeStatus{SummaryFn: func(context.Context) (model.Summary, error) {
		mu.Lock()
		defer mu.Unlock()
		return sum, nil
	}}
	_, ts := handlerServer(t, opts)
	ready := func(wantStatus int, wants ...string) {
		t.Helper()
		r := get(t, noRedirect(), ts.URL+"/readyz")
		if r.status != wantStatus {
			t.Fatalf("/readyz: %d, want %d\n%s", r.status, wantStatus, r.body)
		}
		mustContain(t, r.body, wants...)
	}

	// Just started, nothing ran yet: ready (within the grace period).
	ready(http.StatusOK, "ready\n", "ok auth", "ok job devices: no success yet")

	// Auth flips.
	set(func(s *model.Summary) {
		s.Auth = model.AuthSummary{State: model.AuthReauthRequired, Reason: "invalid_grant"}
	})
	ready(http.StatusServiceUnavailable, "not ready\n", "FAIL auth: state reauth_required (invalid_grant)")
	set(func(s *model.Summary) { s.Auth = model.AuthSummary{State: model.AuthOK} })
	ready(http.StatusOK)

	// devices never succeeds for more than 3× 5 min: stale.
	fake.Advance(16 * time.Minute)
	ready(http.StatusServiceUnavailable, "FAIL job devices: no success in 16 min since start, limit 15 min", "ok job homes")

	// A success two minutes ago makes it ready again.
	set(func(s *model.Summary) {
		s.Jobs = []model.JobSummary{
			{Job: "devices", LastSuccessAt: t0.Add(14 * time.Minute)},
			{Job: "homes", LastSuccessAt: t0.Add(10 * time.Minute)},
		}
	})
	ready(http.StatusOK, "ok job devices: last success 2 min ago")

	// Then it goes stale: 16 minutes after its last success.
	fake.Advance(14 * time.Minute)
	set(func(s *model.Summary) { s.Jobs[0].LastError = "HTTP 503" })
	ready(http.StatusServiceUnavailable, "FAIL job devices: last success 16 min ago, limit 15 min", "last error: HTTP 503", "ok job homes")
}

func TestReadyzGraceAfterRestart(t *testing.T) {
	// The daemon was down for a day: old successes are not stale until the
	// job had 3 intervals to run.
	opts := baseOptions(&syncBuffer{})
	fake := clock.NewFake(t0)
	opts.Clock = fake
	opts.JobIntervals = map[string]time.Duration{"devices": 5 * time.Minute}
	opts.Status = &fakeStatus{SummaryFn: func(context.Context) (model.Summary, error) {
		return model.Summary{Auth: model.AuthSummary{State: model.AuthOK},
			Jobs: []model.JobSummary{{Job: "devices", LastSuccessAt: t0.Add(-24 * time.Hour)}}}, nil
	}}
	_, ts := handlerServer(t, opts)
	if r := get(t, noRedirect(), ts.URL+"/readyz"); r.status != http.StatusOK {
		t.Fatalf("right after restart: %d\n%s", r.status, r.body)
	}
	fake.Advance(16 * time.Minute)
	if r := get(t, noRedirect(), ts.URL+"/readyz"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("16 min after restart without success: %d\n%s", r.status, r.body)
	}
}

// A success saved while the clock ran 48 h ahead is unknown, not fresh:
// ready only within the start-up grace, then not (issue 17, item 5).
func TestReadyzSuccessInTheFutureIsUnknown(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	fake := clock.NewFake(t0)
	opts.Clock = fake
	opts.JobIntervals = map[string]time.Duration{"devices": 5 * time.Minute}
	opts.Status = &fakeStatus{SummaryFn: func(context.Context) (model.Summary, error) {
		return model.Summary{Auth: model.AuthSummary{State: model.AuthOK},
			Jobs: []model.JobSummary{{Job: "devices", LastSuccessAt: t0.Add(48 * time.Hour)}}}, nil
	}}
	_, ts := handlerServer(t, opts)
	r := get(t, noRedirect(), ts.URL+"/readyz")
	if r.status != http.StatusOK || !strings.Contains(r.body, "unknown") || !strings.Contains(r.body, "future") {
		t.Fatalf("within the grace: %d\n%s", r.status, r.body)
	}
	fake.Advance(16 * time.Minute)
	if r := get(t, noRedirect(), ts.URL+"/readyz"); r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "unknown") {
		t.Fatalf("16 min after start, success only \"in the future\": %d\n%s", r.status, r.body)
	}
}

// documentedMetrics reads the metric names from docs/metrics.md.
func documentedMetrics(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../../docs/metrics.md")
	if err != nil {
		t.Fatalf("open docs/metrics.md: %v", err)
	}
	defer f.Close()
	re := regexp.MustCompile("^\\| `(tibbersync_[a-z0-9_]+)` \\|")
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			names = append(names, m[1])
		}
	}
	if len(names) == 0 {
		t.Fatal("no metrics found in docs/metrics.md")
	}
	return names
}

func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := noRedirect().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(promodel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

func gaugeValue(t *testing.T, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok || len(f.GetMetric()) != 1 {
		t.Fatalf("metric %s missing or not a single series", name)
	}
	m := f.GetMetric()[0]
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.GetCounter().GetValue()
}

func TestMetricsEndpoint(t *testing.T) {
	var logs syncBuffer
	m := metrics.New()
	var (
		mu  sync.Mutex
		sum = richSummary()
		err error
	)
	opts := baseOptions(&logs)
	opts.Metrics = m
	opts.Status = &fakeStatus{SummaryFn: func(context.Context) (model.Summary, error) {
		mu.Lock()
		defer mu.Unlock()
		return sum, err
	}}
	s := openServer(t, opts)

	// What the API client and the jobs would report.
	m.ObserveRequest("devices", 200)
	m.ObserveRequest("token", 0)
	m.Observe429("history")
	m.ObserveRetry("history")
	m.ObserveRun("devices", "ok", 12, t0)
	m.SetBytesWritten(4096)
	m.ObserveSummaryError()
	m.ObserveMQTT(func() model.MQTTStatus { return model.MQTTStatus{Connected: true, LastErrorAt: t0} })

	fams := scrapeMetrics(t, s.URL()+"/metrics")
	for _, name := range documentedMetrics(t) {
		if _, ok := fams[name]; !ok {
			t.Errorf("documented metric %s missing from /metrics", name)
		}
	}
	if got := gaugeValue(t, fams, "tibbersync_access_token_expiry_seconds"); got != 42*60 {
		t.Errorf("access expiry=%v, want %v (from the summary at scrape time)", got, 42*60)
	}
	if got := gaugeValue(t, fams, "tibbersync_reauth_required"); got != 0 {
		t.Errorf("reauth_required=%v, want 0", got)
	}

	// The state follows the summary on the next scrape.
	mu.Lock()
	sum.Auth.State = model.AuthReauthRequired
	mu.Unlock()
	fams = scrapeMetrics(t, s.URL()+"/metrics")
	if got := gaugeValue(t, fams, "tibbersync_reauth_required"); got != 1 {
		t.Errorf("reauth_required=%v after reauth, want 1", got)
	}

	// A broken summary is counted, logged once, and the scrape still works.
	mu.Lock()
	err = errors.New("database is locked")
	mu.Unlock()
	scrapeMetrics(t, s.URL()+"/metrics")
	fams = scrapeMetrics(t, s.URL()+"/metrics")
	if got := gaugeValue(t, fams, "tibbersync_status_errors_total"); got != 3 {
		t.Errorf("status_errors_total=%v, want 3 (1 observed + 2 scrapes)", got)
	}
	if n := strings.Count(logs.String(), "read status summary for metrics"); n != 1 {
		t.Errorf("summary error logged %d times, want once", n)
	}
	if got := gaugeValue(t, fams, "tibbersync_reauth_required"); got != 1 {
		t.Errorf("reauth_required=%v kept from last good summary, want 1", got)
	}
}

func TestMetricsNilIs404(t *testing.T) {
	_, ts := handlerServer(t, baseOptions(&syncBuffer{}))
	if r := get(t, noRedirect(), ts.URL+"/metrics"); r.status != http.StatusNotFound {
		t.Fatalf("/metrics without Metrics: %d, want 404", r.status)
	}
}
