package logging_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/logging"
)

const canary = "CANARY-9d1e-secret"

// Shapes a secret may travel in.
type exported struct {
	Name  string
	Token logging.Secret
}

type nested struct {
	Inner exported
	Ptr   *exported
	List  []logging.Secret
	Map   map[string]logging.Secret
}

type unexported struct {
	name  string
	token logging.Secret
}

type deepUnexported struct {
	ID   string
	auth struct{ Access logging.Secret }
}

func TestSecretFormatting(t *testing.T) {
	s := logging.NewSecret(canary)
	e := exported{Name: "n", Token: s}
	n := nested{Inner: e, Ptr: &e, List: []logging.Secret{s}, Map: map[string]logging.Secret{"k": s}}
	cases := map[string]string{
		"v":          fmt.Sprintf("%v", s),
		"+v":         fmt.Sprintf("%+v", s),
		"#v":         fmt.Sprintf("%#v", s),
		"s":          fmt.Sprintf("%s", s),
		"q":          fmt.Sprintf("%q", s),
		"x":          fmt.Sprintf("%x", s),
		"d":          fmt.Sprintf("%d", s),
		"width":      fmt.Sprintf("%40s", s),
		"Sprint":     fmt.Sprint(s),
		"String":     s.String(),
		"ptr":        fmt.Sprintf("%v", &s),
		"struct v":   fmt.Sprintf("%v", e),
		"struct +v":  fmt.Sprintf("%+v", e),
		"struct #v":  fmt.Sprintf("%#v", e),
		"nested +v":  fmt.Sprintf("%+v", n),
		"nested #v":  fmt.Sprintf("%#v", n),
		"slice":      fmt.Sprintf("%v", []logging.Secret{s}),
		"map #v":     fmt.Sprintf("%#v", map[string]logging.Secret{"k": s}),
		"error wrap": fmt.Errorf("refresh with %v: %w", s, fmt.Errorf("x")).Error(),
	}
	for name, out := range cases {
		if strings.Contains(out, canary) {
			t.Errorf("%s: %q leaks the secret", name, out)
		}
		if !strings.Contains(out, "REDACTED") {
			t.Errorf("%s: %q does not say REDACTED", name, out)
		}
	}
	if got := fmt.Sprintf("%q", s); got != `"REDACTED"` {
		t.Errorf("%%q = %s", got)
	}

	for name, v := range map[string]any{"secret": s, "struct": e, "nested": n} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), canary) || !strings.Contains(string(b), `"REDACTED"`) {
			t.Errorf("json.Marshal(%s) = %s", name, b)
		}
	}
	if s.Reveal() != canary {
		t.Error("Reveal lost the value")
	}
}

// TestSecretInEveryHandler logs secrets, by type and by key, through every
// format New offers and checks that the canary never reaches the output.
func TestSecretInEveryHandler(t *testing.T) {
	s := logging.NewSecret(canary)
	e := exported{Name: "n", Token: s}
	for _, format := range []string{"logfmt", "json", "tint", "auto"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := logging.New(&buf, "debug", format)
			if err != nil {
				t.Fatal(err)
			}
			// By type, under innocent keys.
			log.Info("by type", "value", s, "ptr", &s, "struct", e, "structptr", &e,
				"nested", nested{Inner: e, Ptr: &e, List: []logging.Secret{s}, Map: map[string]logging.Secret{"k": s}})
			log.Info("unexported", "value", unexported{name: "n", token: s}, "ptr", &unexported{token: s},
				"deep", deepUnexported{ID: "x", auth: struct{ Access logging.Secret }{s}},
				"slice", []unexported{{token: s}})
			// By key, as plain strings and other types.
			log.Info("by key", "access_token", canary, "refresh_token", canary, "code", canary,
				"code_verifier", canary, "client_secret", canary, "Authorization", "Bearer "+canary,
				"password", []byte(canary), "token", map[string]string{"v": canary}, "secret", 42,
				"X-Api-Key", canary, "bearer_token", canary)
			log.Info("groups", slog.Group("token", "value", canary), slog.Group("req", "authorization", canary, "path", "/x"))
			log.With("refresh_token", canary).WithGroup("secret").Info("with", "plain", canary)
			log.WithGroup("oauth").With("code", canary).Info("with group", "state", "ok")

			out := buf.String()
			if strings.Contains(out, canary) {
				t.Errorf("%s output leaks the secret:\n%s", format, out)
			}
			if got := strings.Count(out, "REDACTED"); got < 20 {
				t.Errorf("only %d REDACTED in:\n%s", got, out)
			}
			// Redaction keeps innocent values.
			for _, keep := range []string{"path", "/x", "state", "ok", "by key", "unexported"} {
				if !strings.Contains(out, keep) {
					t.Errorf("output lost %q:\n%s", keep, out)
				}
			}
		})
	}
}

func TestSecretKey(t *testing.T) {
	for _, k := range []string{"token", "access_token", "Refresh_Token", "id_token", "code", "code_verifier",
		"client_secret", "secret", "password", "Authorization", "set-cookie", "api-key", "webhook_secret", "bearer_token"} {
		if !logging.SecretKey(k) {
			t.Errorf("SecretKey(%q) = false", k)
		}
	}
	for _, k := range []string{"err", "status", "status_code", "error", "token_expiry", "device_id", "codes_seen", "scope"} {
		if logging.SecretKey(k) {
			t.Errorf("SecretKey(%q) = true", k)
		}
	}
}

func TestRedactingHandlerKeepsStructure(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(logging.NewRedactingHandler(slog.NewJSONHandler(&buf, nil)))
	log.Info("m", slog.Group("req", "method", "POST", "code", "abc"), "n", 3)
	var got struct {
		Req struct{ Method, Code string }
		N   int
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if got.Req.Method != "POST" || got.Req.Code != "REDACTED" || got.N != 3 {
		t.Errorf("got %+v from %s", got, buf.String())
	}
}
