package leakcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

const (
	canaryAccess  = "CANARY-ACCESS-7e2b91c4d0f35a68"
	canaryRefresh = "CANARY-REFRESH-3c8d0a1f9b7e4d52"
)

// TestTokenFormattingRedacts checks that no fmt verb, JSON encoding or log
// format prints the secrets of a model.Token, alone or inside the values
// that carry one (pointer, slice, map, struct field, the token store's
// Grant, a wrapped error), and that the other fields still print.
func TestTokenFormattingRedacts(t *testing.T) {
	tok := model.Token{
		AccessToken:     logging.NewSecret(canaryAccess),
		RefreshToken:    logging.NewSecret(canaryRefresh),
		TokenType:       "Bearer",
		Expiry:          time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC),
		IssuedAt:        time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC),
		RefreshIssuedAt: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC),
		Scopes:          []string{"openid", "offline_access"},
	}
	values := map[string]any{
		"Token":       tok,
		"*Token":      &tok,
		"[]Token":     []model.Token{tok, tok},
		"map":         map[string]model.Token{"current": tok},
		"struct":      struct{ Current model.Token }{tok},
		"Grant":       tokenstore.Grant{Token: tok, HasToken: true, State: model.AuthOK},
		"*Grant":      &tokenstore.Grant{Token: tok, HasToken: true},
		"Secret":      tok.AccessToken,
		"[]Secret":    []logging.Secret{tok.AccessToken, tok.RefreshToken},
		"wrapped err": fmt.Errorf("refresh %v: %w", tok.RefreshToken, errors.New("boom")),
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10.3v", "%-40s", "%d"}
	checked := 0
	for name, v := range values {
		for _, verb := range verbs {
			out := fmt.Sprintf(verb, v)
			checked++
			if strings.Contains(out, canaryAccess) || strings.Contains(out, canaryRefresh) ||
				strings.Contains(out, "CANARY") {
				t.Errorf("%s of %s prints a secret: %s", verb, name, out)
			}
		}
		// The redaction is visible, so the check above looked at real output.
		if out := fmt.Sprintf("%+v", v); !strings.Contains(out, logging.Redacted) {
			t.Errorf("%%+v of %s shows no %s: %s", name, logging.Redacted, out)
		}
		b, err := json.Marshal(v)
		if err == nil && bytes.Contains(b, []byte("CANARY")) {
			t.Errorf("JSON of %s prints a secret: %s", name, b)
		}
	}
	if out := fmt.Sprintf("%+v", tok); !strings.Contains(out, "TokenType:Bearer") || !strings.Contains(out, "offline_access") {
		t.Errorf("%%+v of a token hides its non-secret fields too: %s", out)
	}

	// Every log format, with the token under an innocent key, a secret key
	// and inside a group.
	for _, format := range []string{logging.FormatJSON, logging.FormatLogfmt, logging.FormatTint} {
		var buf bytes.Buffer
		l, err := logging.New(&buf, "debug", format)
		if err != nil {
			t.Fatal(err)
		}
		l.Info("token", "current", tok, "token", tok.AccessToken.Reveal(), "grant", tokenstore.Grant{Token: tok},
			slog.Group("g", "t", &tok, "refresh_token", tok.RefreshToken.Reveal()))
		l.With("held", tok).Warn("with attrs", "err", fmt.Errorf("x %v", tok))
		if bytes.Contains(buf.Bytes(), []byte("CANARY")) {
			t.Errorf("%s log prints a secret:\n%s", format, buf.String())
		}
		if !bytes.Contains(buf.Bytes(), []byte("Bearer")) {
			t.Errorf("%s log lost the token's other fields:\n%s", format, buf.String())
		}
		checked++
	}
	t.Logf("%d formattings checked", checked)
}
