package auth

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeTokenResponse(t *testing.T) {
	tests := map[string]struct {
		ctype, body string
		expires     time.Duration
		scope       []string
		wantErr     bool
	}{
		"JSONNumber":        {"application/json", `{"access_token":"a","refresh_token":"r","expires_in":3600,"scope":"openid email"}`, time.Hour, []string{"openid", "email"}, false},
		"JSONString":        {"application/json; charset=utf-8", `{"access_token":"a","expires_in":"1800"}`, 30 * time.Minute, nil, false},
		"JSONScopeArray":    {"application/json", `{"access_token":"a","scope":["openid","email"]}`, 0, []string{"openid", "email"}, false},
		"JSONNullExpiry":    {"application/json", `{"access_token":"a","expires_in":null}`, 0, nil, false},
		"JSONBadExpiry":     {"application/json", `{"access_token":"a","expires_in":"soon"}`, 0, nil, true},
		"JSONNegative":      {"application/json", `{"access_token":"a","expires_in":-5}`, 0, nil, true},
		"JSONHuge":          {"application/json", `{"access_token":"a","expires_in":1e30}`, 10 * 365 * 24 * time.Hour, nil, false},
		"Form":              {"application/x-www-form-urlencoded", "access_token=a&expires_in=60&scope=openid+email", time.Minute, []string{"openid", "email"}, false},
		"Malformed":         {"application/json", `{"access_token":`, 0, nil, true},
		"NoContentTypeJSON": {"", `{"access_token":"a","expires_in":3600}`, time.Hour, nil, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := decodeTokenResponse(tt.ctype, []byte(tt.body))
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.ExpiresIn != tt.expires || strings.Join(r.Scope, " ") != strings.Join(tt.scope, " ") || r.AccessToken.Reveal() != "a" {
				t.Fatalf("got expires=%v scope=%v", r.ExpiresIn, r.Scope)
			}
		})
	}
}

func TestScrub(t *testing.T) {
	got := scrub("bad token SECRET-123\x00 here", "SECRET-123")
	if strings.Contains(got, "SECRET") || strings.ContainsRune(got, 0) {
		t.Fatalf("scrub=%q", got)
	}
	if long := scrub(strings.Repeat("x", 1000)); len(long) > 210 {
		t.Fatalf("scrub kept %d bytes", len(long))
	}
	if cleanCode("invalid_grant") != "invalid_grant" || cleanCode("<script>") != "invalid_error_code" {
		t.Fatal("cleanCode")
	}
}
