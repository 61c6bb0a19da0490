package tibber_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

func TestDevicePathEscaping(t *testing.T) {
	cases := map[string]struct{ home, device, wantPath string }{
		"DashUnderscore": {"7ea61717-e440", "ZWFzZWUg-_x", "/v1/homes/7ea61717-e440/devices/ZWFzZWUg-_x"},
		"SlashQuestion":  {"h", "a/b?c#d", "/v1/homes/h/devices/a%2Fb%3Fc%23d"},
		"SpacePercent":   {"h 1", "x%y", "/v1/homes/h%201/devices/x%25y"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var gotPath atomic.Value
			srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
				gotPath.Store(r.URL.EscapedPath())
				writeJSON(w, 200, `{"id":`+quoteJSON(tc.device)+`,"info":{"name":"n","brand":"b"},"capabilities":[{"id":"temp.current","value":21}]}`)
			})
			env := newTestClient(t, srv.URL, nil)
			d, err := env.client.Device(context.Background(), tc.home, tc.device)
			if err != nil {
				t.Fatalf("Device: %v", err)
			}
			if got := gotPath.Load(); got != tc.wantPath {
				t.Fatalf("path = %v, want %s", got, tc.wantPath)
			}
			if d.ID != tc.device || d.Category != model.CategoryThermostat || len(d.Raw) == 0 {
				t.Fatalf("device = %+v", d)
			}
		})
	}
}

func quoteJSON(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

func TestInvalidIDsMakeNoRequest(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"id":"x"}`)
	})
	env := newTestClient(t, srv.URL, nil)
	ctx := context.Background()
	since := time.Now()
	for _, err := range []error{
		func() error { _, err := env.client.Devices(ctx, ""); return err }(),
		func() error { _, err := env.client.Devices(ctx, ".."); return err }(),
		func() error { _, err := env.client.Device(ctx, "h", ".."); return err }(),
		func() error { _, err := env.client.Device(ctx, "h\n", "d"); return err }(),
		func() error { _, err := env.client.History(ctx, "h", "", "hour", since); return err }(),
		func() error { _, err := env.client.History(ctx, "h", "d", "HOURLY", since); return err }(),
		func() error { _, err := env.client.History(ctx, "h", "d", "hour", time.Time{}); return err }(),
		func() error { _, err := env.client.HistoryNext(ctx, ""); return err }(),
	} {
		if err == nil {
			t.Error("an invalid call succeeded")
		}
	}
	if got := srv.requests.Load(); got != 0 {
		t.Fatalf("requests = %d, want 0", got)
	}
}

func TestDeviceIDMismatch(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"id":"other"}`)
	})
	env := newTestClient(t, srv.URL, nil)
	if _, err := env.client.Device(context.Background(), "h", "d"); err == nil {
		t.Fatal("a detail of another device was accepted")
	}
}

func TestMalformedJSONNamesEndpoint(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"devices":[{"id":`)
	})
	env := newTestClient(t, srv.URL, nil)
	_, err := env.client.Devices(context.Background(), "home-9")
	if err == nil || !strings.Contains(err.Error(), "GET /v1/homes/home-9/devices") || !strings.Contains(err.Error(), "malformed json") {
		t.Fatalf("err = %v", err)
	}
	if got := srv.requests.Load(); got != 1 {
		t.Fatalf("requests = %d: a decode error must not be retried", got)
	}
}

func TestHistoryPaging(t *testing.T) {
	for _, relative := range []bool{true, false} {
		name := "Absolute"
		if relative {
			name = "Relative"
		}
		t.Run(name, func(t *testing.T) {
			var srvURL string
			var queries []string
			srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/homes/h1/devices/dev-_1/history" {
					http.NotFound(w, r)
					return
				}
				queries = append(queries, r.URL.RawQuery)
				q := r.URL.Query()
				switch q.Get("cursor") {
				case "":
					link := "/v1/homes/h1/devices/dev-_1/history?resolution=hour&cursor=p2"
					if !relative {
						link = srvURL + link
					}
					writeJSON(w, 200, `{"query":{"effectiveStart":"2026-09-13T00:00:00+02:00","effectiveEnd":"2026-09-14T00:00:00+02:00","pageSize":2},
						"items":[{"time":"2026-09-13T00:00:00+02:00","data":{"energyFlow":{"gridImport":1}}},
						         {"time":"2026-09-13T01:00:00+02:00","data":{"energyFlow":{"gridImport":2}}}],
						"next":"`+link+`"}`)
				case "p2":
					writeJSON(w, 200, `{"query":{"effectiveStart":"2026-09-13T00:00:00+02:00","effectiveEnd":"2026-09-14T00:00:00+02:00","pageSize":2},
						"items":[{"time":"2026-09-13T02:00:00+02:00","data":{"energyFlow":{"gridImport":3}}}],"next":null}`)
				default:
					problem(w, 400, "bad cursor")
				}
			})
			srvURL = srv.URL
			env := newTestClient(t, srv.URL, nil)
			since := time.Date(2026, 9, 13, 0, 30, 0, 0, time.FixedZone("CEST", 7200))
			page, err := env.client.History(context.Background(), "h1", "dev-_1", model.ResolutionHour, since)
			if err != nil {
				t.Fatalf("History: %v", err)
			}
			if queries[0] != "resolution=hour&since=2026-09-12T22%3A30%3A00Z" {
				t.Fatalf("first query = %q", queries[0])
			}
			if want := srv.URL + "/v1/homes/h1/devices/dev-_1/history?resolution=hour&cursor=p2"; page.Next != want {
				t.Fatalf("Next = %q, want %q", page.Next, want)
			}
			if len(page.Items) != 2 || page.Items[1].Metrics["energyFlow.gridImport"] != 2 || page.PageSize != 2 {
				t.Fatalf("page 1 = %+v", page)
			}
			page, err = env.client.HistoryNext(context.Background(), page.Next)
			if err != nil {
				t.Fatalf("HistoryNext: %v", err)
			}
			if page.Next != "" || len(page.Items) != 1 || page.Items[0].UTCOffsetSeconds != 7200 {
				t.Fatalf("page 2 = %+v", page)
			}
			// A relative link given to HistoryNext directly is resolved too.
			if _, err := env.client.HistoryNext(context.Background(), "/v1/homes/h1/devices/dev-_1/history?resolution=hour&cursor=p2"); err != nil {
				t.Fatalf("HistoryNext(relative): %v", err)
			}
		})
	}
}

func TestHistoryNextRefusesOtherHosts(t *testing.T) {
	other := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"items":[]}`)
	})
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"items":[]}`)
	})
	env := newTestClient(t, srv.URL, nil)
	for _, link := range []string{
		other.URL + "/v1/homes/h/devices/d/history?cursor=x",
		"https://data-api.tibber.com/v1/homes/h/devices/d/history",
		strings.Replace(srv.URL, "http://", "https://", 1) + "/v1/x",
		"//evil.example/v1/x",
		strings.Replace(srv.URL, "http://", "http://user:pw@", 1) + "/v1/x",
	} {
		_, err := env.client.HistoryNext(context.Background(), link)
		if !errors.Is(err, tibber.ErrForeignLink) {
			t.Errorf("HistoryNext(%q) err = %v, want ErrForeignLink", link, err)
		}
	}
	if other.requests.Load() != 0 || srv.requests.Load() != 0 {
		t.Fatalf("requests: other %d, own %d, want none", other.requests.Load(), srv.requests.Load())
	}
}

func TestHistoryPageWithForeignLinkFails(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"items":[],"next":"https://evil.example/v1/x?cursor=1"}`)
	})
	env := newTestClient(t, srv.URL, nil)
	_, err := env.client.History(context.Background(), "h", "d", "day", time.Now())
	if !errors.Is(err, tibber.ErrForeignLink) {
		t.Fatalf("err = %v, want ErrForeignLink", err)
	}
}

func TestBaseURLWithPath(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/homes" {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, 200, `[{"id":"a","name":"A"}]`)
	})
	env := newTestClient(t, srv.URL+"/api/", nil)
	homes, err := env.client.Homes(context.Background())
	if err != nil || len(homes) != 1 {
		t.Fatalf("Homes = %v, %v", homes, err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	var n atomic.Int64
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, 200, homesBody)
	})
	env := newTestClient(t, srv.URL, nil)
	errs := make(chan error, 20)
	within(t, 10*time.Second, func() {
		for range 20 {
			go func() {
				_, err := env.client.Homes(context.Background())
				errs <- err
			}()
		}
		for range 20 {
			if err := <-errs; err != nil {
				t.Errorf("Homes: %v", err)
			}
		}
	})
}

func TestRoute(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/homes":                       "homes",
		"/v1/homes/h1/devices":            "devices",
		"/v1/homes/h1/devices/d-_1":       "device",
		"/v1/homes/h1/devices/d1/history": "history",
		"/prefix/v1/homes/h1/devices":     "devices",
		"/v1/homes/h1/live-events":        "other",
		"/connect/token":                  "other",
	} {
		if got := tibber.Route(&url.URL{Path: path}); got != want {
			t.Errorf("Route(%q) = %q, want %q", path, got, want)
		}
	}
}
