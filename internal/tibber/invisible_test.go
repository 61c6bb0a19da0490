package tibber_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/logging"
)

// TestProblemRedactsZeroWidthSplitToken: an error body that echoes the
// bearer token split by zero-width characters is redacted as if it were
// written plainly; no readable copy reaches the error (and so the logs).
func TestProblemRedactsZeroWidthSplitToken(t *testing.T) {
	splitJWT := "eyJhb\u200bGciOiJIUzI1NiJ9.ey\u2060JzdWIiOiIxMjM0NTY3ODkwIn0.c2ln\u200dbmF0dXJlLXBhcnQ"
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusBadRequest, "bad token acc\u200bess-tok\ufeffen-1 and "+splitJWT+" and Bear\u200ber xyz-secret")
	})
	env := newTestClient(t, srv.URL, nil)
	_, err := env.client.Homes(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, leak := range []string{"ess-tok", "en-1", "JzdWIiOiIx", "bmF0dXJl", "xyz-secret"} {
		if strings.Contains(logging.StripInvisible(msg), leak) {
			t.Errorf("error %q keeps a piece of a secret (%q)", msg, leak)
		}
	}
	if !strings.Contains(msg, logging.Redacted) {
		t.Errorf("error %q shows no redaction", msg)
	}
}
