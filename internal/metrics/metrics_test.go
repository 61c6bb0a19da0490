package metrics_test

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	promodel "github.com/prometheus/common/model"

	"github.com/tibbersync/tibbersync/internal/metrics"
	"github.com/tibbersync/tibbersync/internal/model"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// scrape serves the handler and parses the text exposition.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("get metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status=%d, want 200", resp.StatusCode)
	}
	p := expfmt.NewTextParser(promodel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

// value returns the value of the series of family name whose labels include
// all of want, failing when there is none.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s missing", name)
	}
	for _, m := range f.GetMetric() {
		if !labelsMatch(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	t.Fatalf("metric %s%v missing", name, want)
	return 0
}

func hasSeries(fams map[string]*dto.MetricFamily, name string, want map[string]string) bool {
	f, ok := fams[name]
	if !ok {
		return false
	}
	for _, m := range f.GetMetric() {
		if labelsMatch(m, want) {
			return true
		}
	}
	return false
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// documentedNames returns the metric names in the reference table of
// docs/metrics.md.
func documentedNames(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../../docs/metrics.md")
	if err != nil {
		t.Fatalf("open docs: %v", err)
	}
	defer f.Close()
	re := regexp.MustCompile("^\\| `(tibbersync_[a-z0-9_]+)` \\| (counter|gauge) \\|")
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			names = append(names, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read docs: %v", err)
	}
	if len(names) < 10 {
		t.Fatalf("found only %d metrics in docs/metrics.md: %v", len(names), names)
	}
	return names
}

func fullSummary() model.Summary {
	return model.Summary{
		GeneratedAt: t0,
		Auth: model.AuthSummary{
			State:           model.AuthOK,
			Since:           t0.Add(-48 * time.Hour),
			GrantedScopes:   []string{"openid"},
			AccessExpiresAt: t0.Add(30 * time.Minute),
			RefreshIssuedAt: t0.Add(-10 * 24 * time.Hour),
		},
		Jobs: []model.JobSummary{
			{Job: "devices", LastSuccessAt: t0.Add(-5 * time.Minute), ConsecutiveFailures: 0},
			{Job: "history", LastSuccessAt: t0.Add(-2 * time.Hour), ConsecutiveFailures: 4, Running: true, Progress: &model.RunProgress{StreamsDone: 1, StreamsTotal: 4, Fraction: 0.25}},
		},
		Tables:      map[string]int64{"devices": 3, "device_history": 12345},
		DataDBBytes: 4096 * 10,
		WALBytes:    4096,
	}
}

// exercise touches every metric so that each has at least one series.
func exercise(m *metrics.Metrics) {
	m.ObserveRequest("devices", 200)
	m.ObserveRequest("devices", 200)
	m.ObserveRequest("token", 0)
	m.ObserveRequest("history", 429)
	m.ObserveRetry("history")
	m.ObserveRun("devices", "ok", 7, t0)
	m.ObserveRun("history", "failed", 0, t0)
	m.SetBytesWritten(1 << 20)
	m.ObserveSummaryError()
	m.UpdateFromSummary(fullSummary(), t0)
	m.ObserveMQTT(func() model.MQTTStatus {
		return model.MQTTStatus{Connected: true, MessagesPublished: 42, Errors: 2, LastError: "connection refused", LastErrorAt: t0}
	})
}

func TestEveryDocumentedMetricIsExportedAndViceVersa(t *testing.T) {
	m := metrics.New()
	exercise(m)
	fams := scrape(t, m.Handler())

	documented := map[string]bool{}
	for _, n := range documentedNames(t) {
		documented[n] = true
		if _, ok := fams[n]; !ok {
			t.Errorf("documented metric %s is not exported", n)
		}
	}
	var undocumented []string
	for n := range fams {
		if strings.HasPrefix(n, metrics.Namespace+"_") && !documented[n] {
			undocumented = append(undocumented, n)
		}
	}
	sort.Strings(undocumented)
	if len(undocumented) > 0 {
		t.Errorf("exported but not in docs/metrics.md: %v", undocumented)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("go runtime collector missing")
	}
	if _, ok := fams["process_start_time_seconds"]; !ok {
		t.Error("process collector missing")
	}
}

func TestObservationsShowUp(t *testing.T) {
	m := metrics.New()
	exercise(m)
	fams := scrape(t, m.Handler())

	cases := map[string]struct {
		name   string
		labels map[string]string
		want   float64
	}{
		"Requests200":       {"tibbersync_http_requests_total", map[string]string{"endpoint": "devices", "status": "200"}, 2},
		"TransportError":    {"tibbersync_http_requests_total", map[string]string{"endpoint": "token", "status": metrics.StatusTransportError}, 1},
		"Throttled":         {"tibbersync_http_throttled_total", map[string]string{"endpoint": "history"}, 1},
		"MQTTConnected":     {"tibbersync_mqtt_connected", nil, 1},
		"MQTTPublished":     {"tibbersync_mqtt_messages_published_total", nil, 42},
		"MQTTErrors":        {"tibbersync_mqtt_errors_total", nil, 2},
		"MQTTLastError":     {"tibbersync_mqtt_last_error_timestamp_seconds", nil, float64(t0.Unix())},
		"Retries":           {"tibbersync_http_retries_total", map[string]string{"endpoint": "history"}, 1},
		"RunsOK":            {"tibbersync_job_runs_total", map[string]string{"job": "devices", "status": "ok"}, 1},
		"RowsWritten":       {"tibbersync_rows_written_total", map[string]string{"job": "devices"}, 7},
		"BytesWritten":      {"tibbersync_db_bytes_written_total", nil, 1 << 20},
		"AccessExpiry":      {"tibbersync_access_token_expiry_seconds", nil, 1800},
		"RefreshExpiry":     {"tibbersync_refresh_token_expiry_seconds", nil, 20 * 24 * 3600},
		"ReauthNotRequired": {"tibbersync_reauth_required", nil, 0},
		"StateOK":           {"tibbersync_auth_state", map[string]string{"state": "ok"}, 1},
		"StateReauth":       {"tibbersync_auth_state", map[string]string{"state": "reauth_required"}, 0},
		"DBSize":            {"tibbersync_db_size_bytes", nil, 40960},
		"WALSize":           {"tibbersync_wal_size_bytes", nil, 4096},
		"TableRows":         {"tibbersync_table_rows", map[string]string{"table": "device_history"}, 12345},
		"LastSuccessStore":  {"tibbersync_job_last_success_timestamp_seconds", map[string]string{"job": "history"}, float64(t0.Add(-2 * time.Hour).Unix())},
		"FailuresStore":     {"tibbersync_job_consecutive_failures", map[string]string{"job": "history"}, 4},
		"SummaryErrors":     {"tibbersync_status_errors_total", nil, 1},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := value(t, fams, c.name, c.labels); got != c.want {
				t.Fatalf("%s%v=%v, want %v", c.name, c.labels, got, c.want)
			}
		})
	}
}

func TestConsecutiveFailuresAndLastSuccess(t *testing.T) {
	m := metrics.New()
	m.ObserveRun("homes", "failed", 0, t0)
	m.ObserveRun("homes", "failed", 0, t0.Add(time.Minute))
	m.ObserveRun("homes", "skipped", 0, t0.Add(2*time.Minute))
	fams := scrape(t, m.Handler())
	if got := value(t, fams, "tibbersync_job_consecutive_failures", map[string]string{"job": "homes"}); got != 2 {
		t.Fatalf("failures after 2 failed + 1 skipped=%v, want 2", got)
	}
	if hasSeries(fams, "tibbersync_job_last_success_timestamp_seconds", map[string]string{"job": "homes"}) {
		t.Fatal("last success exported for a job that never succeeded")
	}

	done := t0.Add(3 * time.Minute)
	m.ObserveRun("homes", "partial", 2, done)
	fams = scrape(t, m.Handler())
	if got := value(t, fams, "tibbersync_job_consecutive_failures", map[string]string{"job": "homes"}); got != 0 {
		t.Fatalf("failures after a partial run=%v, want 0", got)
	}
	if got, want := value(t, fams, "tibbersync_job_last_success_timestamp_seconds", map[string]string{"job": "homes"}), float64(done.Unix()); got != want {
		t.Fatalf("last success=%v, want %v", got, want)
	}
}

func TestAuthStateOneHotAndReauth(t *testing.T) {
	cases := map[string]struct {
		state  model.AuthState
		reauth float64
	}{
		"OK":             {model.AuthOK, 0},
		"SetupRequired":  {model.AuthSetupRequired, 1},
		"ReauthRequired": {model.AuthReauthRequired, 1},
		"ConfigError":    {model.AuthConfigError, 1},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			m := metrics.New()
			s := fullSummary()
			s.Auth.State = c.state
			m.UpdateFromSummary(s, t0)
			fams := scrape(t, m.Handler())
			if got := value(t, fams, "tibbersync_reauth_required", nil); got != c.reauth {
				t.Fatalf("reauth_required=%v, want %v", got, c.reauth)
			}
			sum := 0.0
			for _, st := range []model.AuthState{model.AuthOK, model.AuthSetupRequired, model.AuthReauthRequired, model.AuthConfigError} {
				v := value(t, fams, "tibbersync_auth_state", map[string]string{"state": string(st)})
				sum += v
				if (st == c.state) != (v == 1) {
					t.Errorf("auth_state{state=%q}=%v with current state %q", st, v, c.state)
				}
			}
			if sum != 1 {
				t.Fatalf("auth_state sums to %v, want 1", sum)
			}
		})
	}
}

func TestUnknownExpiryIsAbsentAndStaleTablesVanish(t *testing.T) {
	m := metrics.New()
	m.UpdateFromSummary(fullSummary(), t0)
	s := fullSummary()
	s.Auth = model.AuthSummary{State: model.AuthSetupRequired}
	s.Tables = map[string]int64{"homes": 1}
	m.UpdateFromSummary(s, t0)
	fams := scrape(t, m.Handler())
	if hasSeries(fams, "tibbersync_access_token_expiry_seconds", nil) {
		t.Error("access token expiry exported while unknown")
	}
	if hasSeries(fams, "tibbersync_refresh_token_expiry_seconds", nil) {
		t.Error("refresh token expiry exported while unknown")
	}
	if hasSeries(fams, "tibbersync_table_rows", map[string]string{"table": "device_history"}) {
		t.Error("table_rows kept a table that is no longer in the summary")
	}
	if got := value(t, fams, "tibbersync_table_rows", map[string]string{"table": "homes"}); got != 1 {
		t.Errorf("table_rows{homes}=%v, want 1", got)
	}
}

func TestExpiredAccessTokenIsNegative(t *testing.T) {
	m := metrics.New()
	s := fullSummary()
	s.Auth.AccessExpiresAt = t0.Add(-90 * time.Second)
	s.Auth.RefreshExpiresEst = t0.Add(48 * time.Hour)
	m.UpdateFromSummary(s, t0)
	fams := scrape(t, m.Handler())
	if got := value(t, fams, "tibbersync_access_token_expiry_seconds", nil); got != -90 {
		t.Errorf("access expiry=%v, want -90", got)
	}
	if got := value(t, fams, "tibbersync_refresh_token_expiry_seconds", nil); got != 48*3600 {
		t.Errorf("refresh expiry=%v, want explicit estimate %v", got, 48*3600)
	}
}

func TestBytesWrittenNeverDecreases(t *testing.T) {
	m := metrics.New()
	m.SetBytesWritten(500)
	m.SetBytesWritten(300)
	fams := scrape(t, m.Handler())
	if got := value(t, fams, "tibbersync_db_bytes_written_total", nil); got != 500 {
		t.Fatalf("bytes written=%v, want 500", got)
	}
}

func TestNilMetricsIsSafe(t *testing.T) {
	var m *metrics.Metrics
	exercise(m)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("nil metrics handler status=%d, want 404", rec.Code)
	}
}

func TestRefreshExpiry(t *testing.T) {
	if got := metrics.RefreshExpiry(model.AuthSummary{}); !got.IsZero() {
		t.Errorf("unknown refresh expiry=%v, want zero", got)
	}
	issued := t0.Add(-time.Hour)
	if got, want := metrics.RefreshExpiry(model.AuthSummary{RefreshIssuedAt: issued}), issued.Add(model.RefreshLifetimeEstimate); !got.Equal(want) {
		t.Errorf("fallback refresh expiry=%v, want %v", got, want)
	}
	est := t0.Add(time.Hour)
	if got := metrics.RefreshExpiry(model.AuthSummary{RefreshIssuedAt: issued, RefreshExpiresEst: est}); !got.Equal(est) {
		t.Errorf("refresh expiry=%v, want the given estimate %v", got, est)
	}
}
