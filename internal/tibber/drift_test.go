package tibber_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/tibber"
)

// TestDecodeHistoryDrift: a page whose shape is not recognised is an error
// wrapping ErrSchemaDrift that names the members seen, never an empty page
// (with a next link, an empty page would move the stream past lost data).
func TestDecodeHistoryDrift(t *testing.T) {
	for name, tc := range map[string]struct {
		body    string
		members []string
	}{
		"Renamed":         {`{"query":{},"entries":[{"time":"2026-09-13T00:00:00Z","data":{"x":1}}],"next":"/v1/x?cursor=2"}`, []string{`"entries"`, `"next"`, `"query"`}},
		"NoMembers":       {`{}`, nil},
		"ItemsObject":     {`{"items":{"time":"2026-09-13T00:00:00Z"}}`, []string{`"items"`}},
		"ItemsString":     {`{"items":"x"}`, []string{`"items"`}},
		"TopArray":        {`[{"time":"2026-09-13T00:00:00Z","data":{}}]`, nil},
		"TimeRenamed":     {`{"items":[{"timestamp":"2026-09-13T00:00:00Z","data":{"x":1}},{"timestamp":"2026-09-13T01:00:00Z","data":{"x":1}}]}`, []string{`"data"`, `"timestamp"`}},
		"DataRenamed":     {`{"items":[{"time":"2026-09-13T00:00:00Z","values":{"x":1}}]}`, []string{`"time"`, `"values"`}},
		"ManyMembersCaps": {`{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1,"m":1,"n":1}`, []string{`"a"`, `"l"`, `2 more`}},
	} {
		t.Run(name, func(t *testing.T) {
			page, err := tibber.DecodeHistoryPage(strings.NewReader(tc.body), testBase)
			if !errors.Is(err, tibber.ErrSchemaDrift) {
				t.Fatalf("err = %v (page %+v), want ErrSchemaDrift", err, page)
			}
			if !strings.Contains(err.Error(), "Tibber's response format changed") {
				t.Errorf("error %q does not say the format changed", err)
			}
			for _, m := range tc.members {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not name member %s", err, m)
				}
			}
		})
	}
	// One odd item among good ones is an item problem, not drift.
	page, err := tibber.DecodeHistoryPage(strings.NewReader(`{"items":[{"time":"2026-09-13T00:00:00Z","data":{"x":1}},{"data":{"x":2}}]}`), testBase)
	if err != nil || len(page.Items) != 1 || len(page.Problems) != 1 {
		t.Fatalf("one bad item: page %+v, err %v", page, err)
	}
}

type driftCounter struct {
	mu     sync.Mutex
	drifts map[string]int
}

func (d *driftCounter) ObserveRequest(string, int) {}
func (d *driftCounter) ObserveRetry(string)        {}
func (d *driftCounter) ObserveSchemaDrift(route string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.drifts[route]++
}

// TestClientReportsDrift: every endpoint's drift error names the endpoint
// and is counted by route.
func TestClientReportsDrift(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/history"):
			w.Write([]byte(`{"results":[],"next":"/v1/homes/h/devices/d/history?cursor=1"}`))
		case strings.HasSuffix(r.URL.Path, "/devices"):
			w.Write([]byte(`{"deviceList":[]}`))
		case strings.HasSuffix(r.URL.Path, "/homes"):
			w.Write([]byte(`{"data":{"homes":[]}}`))
		default:
			w.Write([]byte(`"a string"`))
		}
	}))
	defer srv.Close()
	obs := &driftCounter{drifts: map[string]int{}}
	c, err := tibber.New(tibber.Options{BaseURL: srv.URL, Tokens: &fakeTokens{token: "t"}, UserAgent: "tibbersync/1.0 (linux; amd64)", RateLimit: 1000, Burst: 100, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err1 := c.Homes(ctx)
	_, err2 := c.Devices(ctx, "h")
	_, err3 := c.Device(ctx, "h", "d")
	_, err4 := c.History(ctx, "h", "d", "hour", time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC))
	for i, tc := range []struct {
		err  error
		path string
	}{{err1, "GET /v1/homes"}, {err2, "GET /v1/homes/h/devices"}, {err3, "GET /v1/homes/h/devices/d"}, {err4, "GET /v1/homes/h/devices/d/history"}} {
		var de *tibber.SchemaDriftError
		if !errors.As(tc.err, &de) || de.Endpoint != tc.path {
			t.Errorf("call %d: err %v, want a drift error at %s", i, tc.err, tc.path)
			continue
		}
		if !strings.Contains(tc.err.Error(), tc.path) {
			t.Errorf("call %d: %q does not name the endpoint", i, tc.err)
		}
	}
	for _, r := range []string{"homes", "devices", "device", "history"} {
		if obs.drifts[r] != 1 {
			t.Errorf("drift count %s = %d, want 1 (all %v)", r, obs.drifts[r], obs.drifts)
		}
	}
}
