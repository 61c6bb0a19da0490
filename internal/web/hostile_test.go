package web_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// hostile is Tibber text that tries to drive whatever shows it.
const hostile = "\x1b]0;owned\x07\x1b[2J\u009b31m\u202egpj.exe\u2066x\u2069"

func assertNoRaw(t *testing.T, where, body string) {
	t.Helper()
	for _, bad := range []string{"\x1b", "\x07", "\u009b", "\u202e", "\u2066", "\u2069"} {
		if strings.Contains(body, bad) {
			t.Errorf("%s contains raw %q", where, bad)
		}
	}
}

// TestStatusPageNeutralisesHostileText: html/template escapes markup but
// not control characters or bidi overrides; the status page and /readyz
// must show them as visible escapes.
func TestStatusPageNeutralisesHostileText(t *testing.T) {
	sum := richSummary()
	sum.Auth.Email = "eve" + hostile + "@example.com"
	sum.Auth.GrantedScopes = append(sum.Auth.GrantedScopes, "scope"+hostile)
	sum.Devices = append(sum.Devices, model.DeviceSummary{ID: "d3", Name: "Pump" + hostile, Brand: "B" + hostile, Model: "M" + hostile, Category: model.CategoryThermostat, Homes: []string{"h1"}})
	sum.Jobs[1].LastError = "device Pump" + hostile + ": HTTP 503"
	opts := baseOptions(&syncBuffer{})
	opts.Status = &fakeStatus{
		SummaryFn: func(context.Context) (model.Summary, error) { return sum, nil },
		SeriesFn: func(_ context.Context, capability string, _ time.Time) ([]model.Series, error) {
			if capability != "storage.stateOfCharge" {
				return nil, nil
			}
			return []model.Series{{DeviceID: "d3", DeviceName: "Pump" + hostile, CapabilityID: capability, Unit: "%", Points: []model.SeriesPoint{
				{At: t0.Add(-2 * time.Hour), Value: 40}, {At: t0.Add(-time.Hour), Value: 60},
			}}}, nil
		},
	}
	opts.JobIntervals = map[string]time.Duration{"history": time.Hour}
	_, ts := handlerServer(t, opts)
	r := get(t, noRedirect(), ts.URL+"/")
	if r.status != http.StatusOK {
		t.Fatalf("status %d\n%s", r.status, r.body)
	}
	assertNoRaw(t, "status page", r.body)
	mustContain(t, r.body, `Pump\x1b]0;owned\x07\x1b[2J\u009b31m\u202egpj.exe`)
	if cl := r.header.Get("Content-Length"); cl != strconv.Itoa(len(r.body)) {
		t.Errorf("Content-Length %s, body %d bytes", cl, len(r.body))
	}
	rz := get(t, noRedirect(), ts.URL+"/readyz")
	assertNoRaw(t, "/readyz", rz.body)
	if !strings.Contains(rz.body, "history") {
		t.Errorf("/readyz lost its checks:\n%s", rz.body)
	}
}

// TestStatusPageNamesAPIProblems: while authorized, a job whose last run
// met schema drift or a refused fresh token gets a banner that says so and
// names the endpoint.
func TestStatusPageNamesAPIProblems(t *testing.T) {
	for name, tc := range map[string]struct{ lastError, title string }{
		"Drift":   {`history bat/hour: page 3: fetch history: Tibber's response format changed at GET /v1/homes/h/devices/d/history: history page has no "items" member (members seen: "itemsV2", "next")`, "Tibber&#39;s response format changed"},
		"Refused": {"fetch homes: Tibber refuses a freshly refreshed token: GET /v1/homes: status 401 Unauthorized", "Tibber refuses a freshly refreshed token"},
	} {
		t.Run(name, func(t *testing.T) {
			sum := richSummary()
			sum.Jobs[1].LastError = tc.lastError
			opts := baseOptions(&syncBuffer{})
			opts.Status = &fakeStatus{SummaryFn: func(context.Context) (model.Summary, error) { return sum, nil }}
			_, ts := handlerServer(t, opts)
			r := get(t, noRedirect(), ts.URL+"/")
			mustContain(t, r.body, `id="auth-banner"`, "<h2>"+tc.title+"</h2>")
			if name == "Drift" {
				mustContain(t, r.body, "GET /v1/homes/h/devices/d/history")
			}
		})
	}
}
