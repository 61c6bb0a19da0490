package tibber_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/tibber"
)

// TestLinksStayUnderAPIPath: next/prev links must stay under the API's
// base path + "/v1/", not only on its origin: behind a reverse proxy the
// same origin serves other applications, which must never see the token.
func TestLinksStayUnderAPIPath(t *testing.T) {
	base := mustURL("https://proxy.example/tibber")
	for link, ok := range map[string]bool{
		"/tibber/v1/homes/h/devices/d/history?cursor=2": true,
		"https://proxy.example/tibber/v1/x":             true,
		"v1/x":                                          false, // relative to "/tibber": "/v1/x"
		"/other/v1/x":                                   false,
		"/tibber/admin":                                 false,
		"/tibber/v1/../admin":                           false,
		"/tibber/v1/%2e%2e/%2e%2e/admin":                false,
		"/tibber/v1/..%2F..%2Fadmin":                    false,
		"/tibberx/v1/x":                                 false,
		"/tibber/v1":                                    false,
		"https://proxy.example/metrics":                 false,
		"https://proxy.example/tibber/v1/./x":           true, // resolved to /tibber/v1/x
		"https://proxy.example/tibber%2Fv1/x":           false,
		"https://proxy.example/tibber/v1/homes/h/devices/d/history#f": true,
	} {
		page, err := tibber.DecodeHistoryPage(strings.NewReader(`{"items":[],"next":"`+link+`"}`), base)
		switch {
		case ok && err != nil:
			t.Errorf("link %q refused: %v", link, err)
		case !ok && !errors.Is(err, tibber.ErrForeignLink):
			t.Errorf("link %q: next %q, err %v; want ErrForeignLink", link, page.Next, err)
		}
	}
	// Without a base path, links must still be under /v1/.
	root := mustURL("https://data-api.tibber.com")
	for _, link := range []string{"/admin", "/v2/x", "/v1x", "https://data-api.tibber.com/.well-known/x"} {
		if _, err := tibber.DecodeHistoryPage(strings.NewReader(`{"items":[],"next":"`+link+`"}`), root); !errors.Is(err, tibber.ErrForeignLink) {
			t.Errorf("link %q under the root base: err %v, want ErrForeignLink", link, err)
		}
	}
}

// TestHistoryNextOutsideAPIPathMakesNoRequest: a stored or served link to
// another path of the API's origin is refused before any request.
func TestHistoryNextOutsideAPIPathMakesNoRequest(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"items":[]}`)
	})
	env := newTestClient(t, srv.URL+"/api", nil)
	for _, link := range []string{srv.URL + "/admin/v1/x", srv.URL + "/api/internal", "/v1/x", srv.URL + "/api/v1/%2e%2e/secret"} {
		if _, err := env.client.HistoryNext(context.Background(), link); !errors.Is(err, tibber.ErrForeignLink) {
			t.Errorf("HistoryNext(%q) err = %v, want ErrForeignLink", link, err)
		}
	}
	if n := srv.requests.Load(); n != 0 {
		t.Fatalf("%d requests made", n)
	}
	if _, err := env.client.HistoryNext(context.Background(), srv.URL+"/api/v1/homes/h/devices/d/history?cursor=1"); err != nil {
		t.Fatalf("link under the API path: %v", err)
	}
}
