package tibber_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tibbersync/tibbersync/internal/model"
)

// TestPersistent401CostsOneRefresh: when the token refreshed because of a
// 401 is refused too, later 401s (other calls, other runs) do not refresh
// again until a call succeeds; the error says Tibber refuses a freshly
// refreshed token. After a success, a new 401 gets its one refresh again.
func TestPersistent401CostsOneRefresh(t *testing.T) {
	var ok atomic.Bool
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		if ok.Load() {
			writeJSON(w, 200, homesBody)
			return
		}
		problem(w, http.StatusUnauthorized, "invalid token")
	})
	env := newTestClient(t, srv.URL, nil)
	ctx := context.Background()
	for i := range 6 {
		var err error
		switch i % 3 {
		case 0:
			_, err = env.client.Homes(ctx)
		case 1:
			_, err = env.client.Devices(ctx, "h")
		default:
			_, err = env.client.Device(ctx, "h", "d")
		}
		if !errors.Is(err, model.ErrTokenRefused) {
			t.Fatalf("call %d: err = %v, want ErrTokenRefused", i, err)
		}
		if !strings.Contains(err.Error(), "Tibber refuses a freshly refreshed token") || !strings.Contains(err.Error(), "status 401") {
			t.Errorf("call %d: error %q", i, err)
		}
	}
	if got := env.tokens.calls(); got != 1 {
		t.Fatalf("refresh calls for 6 refused calls = %d, want 1", got)
	}
	if got := srv.requests.Load(); got != 7 {
		t.Errorf("requests = %d, want 7 (2 for the first call, 1 for each other)", got)
	}
	// A success clears the latch; a later 401 gets one refresh again.
	ok.Store(true)
	if _, err := env.client.Homes(ctx); err != nil {
		t.Fatalf("Homes after recovery: %v", err)
	}
	ok.Store(false)
	if _, err := env.client.Homes(ctx); !errors.Is(err, model.ErrTokenRefused) {
		t.Fatalf("err = %v", err)
	}
	if got := env.tokens.calls(); got != 2 {
		t.Fatalf("refresh calls after a success and a new 401 = %d, want 2", got)
	}
}
