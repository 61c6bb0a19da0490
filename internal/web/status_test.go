package web_test

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	promodel "github.com/prometheus/common/model"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/health"
	"github.com/tibbersync/tibbersync/internal/metrics"
	"github.com/tibbersync/tibbersync/internal/model"
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
			{Job: "history", LastRunAt: t0.Add(-10 * time.Minute), LastSuccessAt: t0.Add(-70 * time.Minute), LastStatus: "failed", LastError: "history of device X: HTTP 503", ConsecutiveFailures: 2, NextRunAt: t0.Add(50 * time.Minute),
				Running: true, RunningSince: t0.Add(-3 * time.Minute), Progress: &model.RunProgress{StreamsDone: 2, StreamsTotal: 8, Pages: 40, Points: 1900, Current: "Home battery, hour", Fraction: 0.3, ETA: t0.Add(7 * time.Minute)}},
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

type svgPath struct {
	D      string `xml:"d,attr"`
	Stroke string `xml:"stroke,attr"`
	Title  string `xml:"title"`
}

type svgDoc struct {
	XMLName    xml.Name  `xml:"svg"`
	ViewBox    string    `xml:"viewBox,attr"`
	Source     string    `xml:"data-source,attr"`
	Resolution string    `xml:"data-resolution,attr"`
	Paths      []svgPath `xml:"path"`
	Texts      []string  `xml:"text"`
}

// historySVG cuts the history chart with the given figure id out of the
// page and parses it as XML, which also proves the SVG is well-formed.
func historySVG(t *testing.T, body, id string) svgDoc {
	t.Helper()
	fig := strings.Index(body, `id="`+id+`"`)
	if fig < 0 {
		t.Fatalf("no chart %s", id)
	}
	start := strings.Index(body[fig:], "<svg")
	end := strings.Index(body[fig:], "</svg>")
	if start < 0 || end < start {
		t.Fatalf("no svg in chart %s", id)
	}
	var doc svgDoc
	if err := xml.Unmarshal([]byte(body[fig+start:fig+end+len("</svg>")]), &doc); err != nil {
		t.Fatalf("chart svg is not well-formed XML: %v", err)
	}
	return doc
}

// hourlySoC is 7 days of hourly state of charge of the battery before now,
// in Europe/Oslo, with a three-hour gap.
func hourlySoC(now time.Time) []model.HistorySeries {
	osl, _ := time.LoadLocation("Europe/Oslo")
	var pts []model.HistoryPoint
	for h := time.Duration(7 * 24); h >= 1; h-- {
		start := now.Add(-h * time.Hour).Truncate(time.Hour)
		if h > 30 && h <= 33 {
			continue // a gap of three hours
		}
		_, off := start.In(osl).Zone()
		pts = append(pts, model.HistoryPoint{Start: start, Offset: time.Duration(off) * time.Second, Value: float64(h % 100)})
	}
	return []model.HistorySeries{{DeviceID: "d1", DeviceName: "Home battery", Resolution: "hour", Metric: "storage.stateOfCharge", Points: pts}}
}

func TestStatusPageRendersEverything(t *testing.T) {
	logs := &syncBuffer{}
	opts := baseOptions(logs)
	var (
		mu     sync.Mutex
		asked  = map[string]time.Time{}
		series = map[string][]model.Series{"storage.stateOfCharge": socSeries()}
	)
	var hourFrom, hourTo, dayFrom time.Time
	opts.Status = &fakeStatus{
		HistoryFn: func(_ context.Context, res string, from, to time.Time) ([]model.HistorySeries, error) {
			mu.Lock()
			defer mu.Unlock()
			if res == "day" {
				dayFrom = from
				return []model.HistorySeries{{DeviceID: "d1", DeviceName: "Home battery", Resolution: "day", Metric: "energyFlow.gridImport",
					Points: []model.HistoryPoint{{Start: t0.Add(-48 * time.Hour), Offset: time.Hour, Value: 12000}, {Start: t0.Add(-24 * time.Hour), Offset: time.Hour, Value: 9000}}}}, nil
			}
			hourFrom, hourTo = from, to
			return hourlySoC(t0), nil
		},
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
		t.Fatalf("status %d\n%s\n%s", r.status, r.body, logs.String())
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
		`<span class="running-badge">running</span>`, "2 of 8 streams done", "now: Home battery, hour", "30%", "expected to finish 2025-03-01 12:07 UTC (in 7 min)",
		"<code>device_history</code>",
		"1\u202f234\u202f567",
		"5.0 MiB", "300.0 KiB",
		"Homevolt", "74 %", "55.5 %",
		`<h2>Now</h2>`, "80 %", // the newest reading of the vehicle, in the "now" panel
		`data-source="history"`,
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

	// History is read for the indexed windows only: 7 days hourly, 30 days daily.
	mu.Lock()
	if !hourTo.Equal(t0) || !hourFrom.Equal(t0.Add(-7*24*time.Hour)) || !dayFrom.Equal(t0.Add(-30*24*time.Hour)) {
		t.Errorf("history asked for hour [%v, %v], day from %v", hourFrom, hourTo, dayFrom)
	}
	mu.Unlock()

	soc := historySVG(t, r.body, "history-0-soc-hour")
	if soc.Source != "history" || soc.Resolution != "hour" || len(soc.Paths) != 1 {
		t.Fatalf("soc chart: source %q resolution %q paths %d", soc.Source, soc.Resolution, len(soc.Paths))
	}
	// The three-hour gap breaks the line: two "M" commands.
	if n := strings.Count(soc.Paths[0].D, "M"); n != 2 {
		t.Errorf("path has %d segments, want 2 (one gap): %.80s", n, soc.Paths[0].D)
	}
	// Midnight ticks are the home's local midnights (Oslo, +01:00 in March).
	labels := strings.Join(soc.Texts, "|")
	for _, want := range []string{"100", "0", "Fri 28"} {
		if !strings.Contains(labels, want) {
			t.Errorf("axis labels %q lack %q", labels, want)
		}
	}
	energy := historySVG(t, r.body, "history-0-energy-day")
	if energy.Resolution != "day" || len(energy.Paths) != 1 || energy.Paths[0].Title != "gridImport" {
		t.Fatalf("daily energy chart: %+v", energy)
	}
	if !strings.Contains(r.body, "Energy flows</strong> <span class=\"note\">last 30 days, daily, Wh") {
		t.Error("daily energy chart lacks its window and unit")
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

	// Just started, nothing ran yet: not ready, and it says why. There is
	// no grace period that `tibbersync status` could not see.
	ready(http.StatusServiceUnavailable, "not ready\n", "ok auth", "FAIL job devices: no success yet")

	// A run in progress is named.
	set(func(s *model.Summary) {
		s.Jobs = []model.JobSummary{{Job: "devices", Running: true, RunningSince: t0.Add(-time.Minute)}}
	})
	ready(http.StatusServiceUnavailable, "FAIL job devices: no success yet; running since 1 min ago")

	// Auth flips.
	set(func(s *model.Summary) {
		s.Auth = model.AuthSummary{State: model.AuthReauthRequired, Reason: "invalid_grant"}
	})
	ready(http.StatusServiceUnavailable, "not ready\n", "FAIL auth: state reauth_required (invalid_grant)")
	set(func(s *model.Summary) { s.Auth = model.AuthSummary{State: model.AuthOK} })

	// A success two minutes ago makes it ready.
	fake.Advance(16 * time.Minute)
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

// TestReadyzAgreesWithVerdict: /readyz, the page's banner and
// health.Evaluate (behind `tibbersync status`) give the same verdict on the
// same summary at the same moment, including right after a restart with
// old successes, which the server once called ready while `status` did not.
func TestReadyzAgreesWithVerdict(t *testing.T) {
	iv := map[string]time.Duration{"devices": 5 * time.Minute, "homes": time.Hour}
	for name, sum := range map[string]model.Summary{
		"AfterRestart": {Auth: model.AuthSummary{State: model.AuthOK},
			Jobs: []model.JobSummary{{Job: "devices", LastSuccessAt: t0.Add(-24 * time.Hour)}, {Job: "homes", LastSuccessAt: t0.Add(-time.Minute)}}},
		"FirstBackfillRunning": {Auth: model.AuthSummary{State: model.AuthOK},
			Jobs: []model.JobSummary{{Job: "devices", LastSuccessAt: t0}, {Job: "homes", Running: true, RunningSince: t0.Add(-time.Minute),
				Progress: &model.RunProgress{StreamsDone: 1, StreamsTotal: 4, Fraction: 0.3}}}},
		"Healthy": {Auth: model.AuthSummary{State: model.AuthOK},
			Jobs: []model.JobSummary{{Job: "devices", LastSuccessAt: t0}, {Job: "homes", LastSuccessAt: t0}}},
		"SetupRequired": {Auth: model.AuthSummary{State: model.AuthSetupRequired}},
	} {
		t.Run(name, func(t *testing.T) {
			opts := baseOptions(&syncBuffer{})
			opts.Clock = clock.NewFake(t0)
			opts.JobIntervals = iv
			opts.Status = &fakeStatus{SummaryFn: func(context.Context) (model.Summary, error) { return sum, nil }}
			_, ts := handlerServer(t, opts)
			want := health.Evaluate(sum, iv, t0)
			r := get(t, noRedirect(), ts.URL+"/readyz")
			if (r.status == http.StatusOK) != want.Healthy {
				t.Fatalf("/readyz %d, verdict healthy=%v\n%s", r.status, want.Healthy, r.body)
			}
			page := get(t, noRedirect(), ts.URL+"/")
			if strings.Contains(page.body, `<strong>Healthy</strong>`) != want.Healthy {
				t.Fatalf("page health disagrees with verdict healthy=%v", want.Healthy)
			}
			if !want.Healthy && !strings.Contains(page.body, `class="banner`) {
				t.Fatal("unhealthy, but the page shows no banner")
			}
			if want.Healthy && strings.Contains(page.body, `class="banner`) {
				t.Fatal("healthy, but the page shows a banner")
			}
		})
	}
}

// A success saved while the clock ran 48 h ahead is unknown, not fresh
// (issue 17, item 5); a storage problem from ExtraChecks fails /readyz.
func TestReadyzSuccessInTheFutureAndStorage(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	fake := clock.NewFake(t0)
	opts.Clock = fake
	opts.JobIntervals = map[string]time.Duration{"devices": 5 * time.Minute}
	jobsNow := []model.JobSummary{{Job: "devices", LastSuccessAt: t0.Add(48 * time.Hour)}}
	var storage model.StorageHealth
	opts.Status = &fakeStatus{SummaryFn: func(context.Context) (model.Summary, error) {
		return model.Summary{Auth: model.AuthSummary{State: model.AuthOK}, Jobs: jobsNow}, nil
	}}
	opts.StorageHealth = func() model.StorageHealth { return storage }
	opts.ExtraChecks = func(context.Context) []health.Check { return []health.Check{health.StorageCheck(storage)} }
	_, ts := handlerServer(t, opts)
	r := get(t, noRedirect(), ts.URL+"/readyz")
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "future") {
		t.Fatalf("success in the future: %d\n%s", r.status, r.body)
	}
	jobsNow = []model.JobSummary{{Job: "devices", LastSuccessAt: t0.Add(-time.Minute)}}
	storage = model.StorageHealth{Checked: t0, Dir: "/var/lib/tibbersync", FreeBytes: 1 << 30}
	if r := get(t, noRedirect(), ts.URL+"/readyz"); r.status != http.StatusOK || !strings.Contains(r.body, "ok storage") {
		t.Fatalf("healthy: %d\n%s", r.status, r.body)
	}
	storage.Problems = []string{"disk full: state directory /var/lib/tibbersync has no free space"}
	if r := get(t, noRedirect(), ts.URL+"/readyz"); r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "FAIL storage: disk full") {
		t.Fatalf("disk full: %d\n%s", r.status, r.body)
	}
	if r := get(t, noRedirect(), ts.URL+"/"); !strings.Contains(r.body, "Storage problem") || !strings.Contains(r.body, "tibbersync backup") {
		t.Fatalf("the status page does not show the storage problem:\n%.600s", r.body)
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
	m.ObserveRequest("history", 429)
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

// TestNoConnectButtonWithoutClient: without a configured client the page
// offers the setup steps, never a Connect button that can only fail.
func TestNoConnectButtonWithoutClient(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	opts.ClientConfigured = false
	opts.Flow = nil
	opts.ConfigHint = "set [tibber].client_id"
	opts.Status = &fakeStatus{SummaryFn: func(context.Context) (model.Summary, error) {
		return model.Summary{Auth: model.AuthSummary{State: model.AuthSetupRequired}}, nil
	}}
	_, ts := handlerServer(t, opts)
	r := get(t, noRedirect(), ts.URL+"/")
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	mustContain(t, r.body, "Tibber client not configured", "set [tibber].client_id", `href="/setup">Setup steps</a>`, `id="auth-action"`)
	for _, bad := range []string{"Connect to Tibber</a>", `href="/setup/start"`, "renewed", "days left"} {
		if strings.Contains(r.body, bad) {
			t.Errorf("page without a client offers %q", bad)
		}
	}
}
