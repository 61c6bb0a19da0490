package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/tibbersync/tibbersync/internal/logging"
)

// maxExpiresIn is the cap parseExpiresIn applies (ten years).
const maxExpiresIn = 10 * 365 * 24 * time.Hour

// FuzzDecodeTokenResponse feeds arbitrary token-endpoint bodies, JSON or
// form-encoded, to decodeTokenResponse (R28). Seeds are in
// testdata/fuzz/FuzzDecodeTokenResponse: JSON and form bodies, expires_in
// as a number, a string and garbage, scope as a string and an array, error
// responses. Invariants: no panic; a failure is exactly ErrMalformedResponse
// (whose text cannot carry the body); expires_in is whole seconds in
// [0, 10 years]; scopes are non-empty words; formatting the result never
// depends on the token values; and a decoded response re-encoded as a form
// body, and as JSON, decodes to the same response.
//
//	go test -run='^$' -fuzz='^FuzzDecodeTokenResponse$' -fuzztime=30s ./internal/auth
func FuzzDecodeTokenResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, contentType, body string) {
		r, err := decodeTokenResponse(contentType, []byte(body))
		if err != nil {
			if !errors.Is(err, ErrMalformedResponse) || err.Error() != ErrMalformedResponse.Error() {
				t.Fatalf("error %q is not exactly ErrMalformedResponse", err)
			}
			return
		}
		checkTokenResponse(t, r)

		// Formatting must not depend on the secrets' content.
		blank := r
		blank.AccessToken, blank.RefreshToken = logging.NewSecret("x"), logging.NewSecret("y")
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			if got, want := fmt.Sprintf(verb, r), fmt.Sprintf(verb, blank); got != want {
				t.Fatalf("%s of the decoded response depends on the token values:\n%s\n%s", verb, got, want)
			}
		}

		// Round trip through a form body.
		form := encodeForm(r)
		r2, err := decodeTokenResponse("application/x-www-form-urlencoded", []byte(form))
		if err != nil {
			t.Fatalf("re-encoded form %q does not decode: %v", form, err)
		}
		if !sameResponse(r, r2) {
			t.Fatalf("form round trip differs:\n%s\n%s", describe(r), describe(r2))
		}

		// Round trip through JSON, for values JSON can carry unchanged.
		if validUTF8(r) {
			js := encodeJSON(t, r)
			r3, err := decodeTokenResponse("application/json; charset=utf-8", js)
			if err != nil {
				t.Fatalf("re-encoded JSON %s does not decode: %v", js, err)
			}
			if !sameResponse(r, r3) {
				t.Fatalf("JSON round trip differs:\n%s\n%s", describe(r), describe(r3))
			}
		}
	})
}

// checkTokenResponse checks the invariants of any decoded response.
func checkTokenResponse(t *testing.T, r tokenResponse) {
	t.Helper()
	if r.ExpiresIn < 0 || r.ExpiresIn > maxExpiresIn {
		t.Fatalf("expires_in %s outside [0, 10 years]", r.ExpiresIn)
	}
	if r.ExpiresIn%time.Second != 0 {
		t.Fatalf("expires_in %s is not whole seconds", r.ExpiresIn)
	}
	for _, s := range r.Scope {
		if s == "" || strings.ContainsFunc(s, unicode.IsSpace) {
			t.Fatalf("scope entry %q is empty or holds white space", s)
		}
	}
}

// encodeForm writes r as an RFC 6749 form-encoded token response.
func encodeForm(r tokenResponse) string {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("access_token", r.AccessToken.Reveal())
	set("refresh_token", r.RefreshToken.Reveal())
	set("token_type", r.TokenType)
	set("error", r.ErrorCode)
	set("error_description", r.ErrorDescription)
	if r.ExpiresIn > 0 {
		v.Set("expires_in", strconv.FormatInt(int64(r.ExpiresIn/time.Second), 10))
	}
	if r.Scope != nil {
		v.Set("scope", strings.Join(r.Scope, " "))
	}
	return v.Encode()
}

// encodeJSON writes r as a JSON token response.
func encodeJSON(t *testing.T, r tokenResponse) []byte {
	t.Helper()
	m := map[string]any{}
	set := func(k, s string) {
		if s != "" {
			m[k] = s
		}
	}
	set("access_token", r.AccessToken.Reveal())
	set("refresh_token", r.RefreshToken.Reveal())
	set("token_type", r.TokenType)
	set("error", r.ErrorCode)
	set("error_description", r.ErrorDescription)
	if r.ExpiresIn > 0 {
		m["expires_in"] = int64(r.ExpiresIn / time.Second)
	}
	if r.Scope != nil {
		m["scope"] = strings.Join(r.Scope, " ")
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("encode JSON: %v", err)
	}
	return b
}

// validUTF8 reports whether every string of r survives a JSON round trip
// (encoding/json replaces invalid UTF-8).
func validUTF8(r tokenResponse) bool {
	for _, s := range append([]string{r.AccessToken.Reveal(), r.RefreshToken.Reveal(), r.TokenType, r.ErrorCode, r.ErrorDescription}, r.Scope...) {
		if strings.ToValidUTF8(s, "\uFFFD") != s {
			return false
		}
	}
	return true
}

// sameResponse compares two decoded responses. An absent scope (nil: keep
// the grant's scopes) and a present but empty one (nothing granted) differ.
func sameResponse(a, b tokenResponse) bool {
	return a.AccessToken.Equal(b.AccessToken) && a.RefreshToken.Equal(b.RefreshToken) &&
		a.TokenType == b.TokenType && a.ExpiresIn == b.ExpiresIn &&
		a.ErrorCode == b.ErrorCode && a.ErrorDescription == b.ErrorDescription &&
		(a.Scope == nil) == (b.Scope == nil) && slices.Equal(a.Scope, b.Scope)
}

// describe prints r for a failure message, tokens included (test output only).
func describe(r tokenResponse) string {
	return fmt.Sprintf("access=%q refresh=%q type=%q expires_in=%s scope=%q(nil=%v) error=%q description=%q",
		r.AccessToken.Reveal(), r.RefreshToken.Reveal(), r.TokenType, r.ExpiresIn, r.Scope, r.Scope == nil,
		r.ErrorCode, r.ErrorDescription)
}

// TestDecodeTokenResponseEdgeCases pins the decoder on shapes the seeds
// cover beyond TestDecodeTokenResponse: decimal and capped expiry, text/plain
// form bodies, an empty versus an absent scope, and garbage of every kind.
func TestDecodeTokenResponseEdgeCases(t *testing.T) {
	tests := []struct {
		name, ct, body string
		want           tokenResponse
		wantErr        bool
	}{
		{name: "JSONDecimal", ct: "application/json", body: `{"access_token":"AT","expires_in":59.9}`,
			want: tokenResponse{AccessToken: logging.NewSecret("AT"), ExpiresIn: 59 * time.Second}},
		{name: "JSONHugeString", ct: "application/json", body: `{"access_token":"AT","expires_in":"1e300"}`,
			want: tokenResponse{AccessToken: logging.NewSecret("AT"), ExpiresIn: maxExpiresIn}},
		{name: "JSONScopeWords", ct: "", body: `{"access_token":"AT","scope":["openid","email offline_access"]}`,
			want: tokenResponse{AccessToken: logging.NewSecret("AT"), Scope: []string{"openid", "email", "offline_access"}}},
		{name: "JSONEmptyScope", ct: "application/json", body: `{"access_token":"AT","scope":""}`,
			want: tokenResponse{AccessToken: logging.NewSecret("AT"), Scope: []string{}}},
		{name: "FormAllFields", ct: "application/x-www-form-urlencoded; charset=utf-8",
			body: "access_token=AT&refresh_token=RT&token_type=bearer&expires_in=3600&scope=openid+email",
			want: tokenResponse{AccessToken: logging.NewSecret("AT"), RefreshToken: logging.NewSecret("RT"), TokenType: "bearer",
				ExpiresIn: time.Hour, Scope: []string{"openid", "email"}}},
		{name: "FormEmptyScope", ct: "application/x-www-form-urlencoded", body: "access_token=AT&scope=",
			want: tokenResponse{AccessToken: logging.NewSecret("AT"), Scope: []string{}}},
		{name: "TextPlainForm", ct: "text/plain", body: "access_token=AT&expires_in=%203600%20",
			want: tokenResponse{AccessToken: logging.NewSecret("AT"), ExpiresIn: time.Hour}},
		{name: "FormError", ct: "application/x-www-form-urlencoded", body: "error=invalid_client&error_description=Unknown+client",
			want: tokenResponse{ErrorCode: "invalid_client", ErrorDescription: "Unknown client"}},
		{name: "JSONBoolExpiry", ct: "application/json", body: `{"access_token":"AT","expires_in":true}`, wantErr: true},
		{name: "JSONObjectExpiry", ct: "application/json", body: `{"access_token":"AT","expires_in":{"s":1}}`, wantErr: true},
		{name: "JSONNaNExpiry", ct: "application/json", body: `{"access_token":"AT","expires_in":"NaN"}`, wantErr: true},
		{name: "FormGarbageExpiry", ct: "application/x-www-form-urlencoded", body: "access_token=AT&expires_in=1h", wantErr: true},
		{name: "FormBadEscape", ct: "application/x-www-form-urlencoded", body: "access_token=%zz", wantErr: true},
		{name: "JSONScopeNumber", ct: "application/json", body: `{"access_token":"AT","scope":42}`, wantErr: true},
		{name: "JSONNotObject", ct: "application/json", body: `["access_token","AT"]`, wantErr: true},
		{name: "HTML", ct: "text/html", body: "<html><body>502 Bad Gateway</body></html>", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeTokenResponse(tt.ct, []byte(tt.body))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformedResponse) {
					t.Fatalf("decode(%q, %q) = %s, %v; want ErrMalformedResponse", tt.ct, tt.body, describe(got), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("decode(%q, %q): %v", tt.ct, tt.body, err)
			}
			checkTokenResponse(t, got)
			if !sameResponse(got, tt.want) {
				t.Fatalf("decode(%q, %q)\n got %s\nwant %s", tt.ct, tt.body, describe(got), describe(tt.want))
			}
		})
	}
}
