package auth_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tibbersync/tibbersync/internal/auth"
)

func TestClassify(t *testing.T) {
	te := func(status int, code string) error { return &auth.TokenError{Status: status, Code: code} }
	timeout := &url.Error{Op: "Post", URL: "http://127.0.0.1/connect/token", Err: os.ErrDeadlineExceeded}
	reset := &url.Error{Op: "Post", URL: "http://127.0.0.1/connect/token", Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}
	refused := &url.Error{Op: "Post", URL: "http://127.0.0.1/connect/token", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	tests := map[string]struct {
		err  error
		want auth.Class
	}{
		"Nil": {nil, auth.ClassNone},
		// RFC 6749 §5.2 codes, classified by code whatever the status.
		"InvalidGrant":           {te(400, "invalid_grant"), auth.ClassReauth},
		"InvalidGrant401":        {te(401, "invalid_grant"), auth.ClassReauth},
		"InvalidClient400":       {te(400, "invalid_client"), auth.ClassConfig},
		"InvalidClient401":       {te(401, "invalid_client"), auth.ClassConfig},
		"UnauthorizedClient":     {te(400, "unauthorized_client"), auth.ClassConfig},
		"InvalidRequest":         {te(400, "invalid_request"), auth.ClassConfig},
		"UnsupportedGrantType":   {te(400, "unsupported_grant_type"), auth.ClassConfig},
		"InvalidScope":           {te(400, "invalid_scope"), auth.ClassConfig},
		"InvalidGrantIn500":      {te(500, "invalid_grant"), auth.ClassReauth},
		"ServerErrorCode":        {te(400, "server_error"), auth.ClassTransient},
		"TemporarilyUnavailable": {te(400, "temporarily_unavailable"), auth.ClassTransient},
		// Status only, no code.
		"Status400":      {te(400, ""), auth.ClassConfig},
		"Status401":      {te(401, ""), auth.ClassConfig},
		"Status403":      {te(403, ""), auth.ClassConfig},
		"Status408":      {te(408, ""), auth.ClassTransient},
		"Status429":      {te(429, ""), auth.ClassTransient},
		"Status500":      {te(500, ""), auth.ClassTransient},
		"Status502":      {te(502, ""), auth.ClassTransient},
		"Status503":      {te(503, ""), auth.ClassTransient},
		"Status504":      {te(504, ""), auth.ClassTransient},
		"UnknownCode400": {te(400, "weird_error"), auth.ClassConfig},
		"UnknownCode503": {te(503, "weird_error"), auth.ClassTransient},
		// 200 that is not a token.
		"200WithError":          {te(200, "invalid_grant"), auth.ClassReauth},
		"200WithInvalidClient":  {te(200, "invalid_client"), auth.ClassConfig},
		"200WithoutAccessToken": {&auth.TokenError{Status: 200, Err: auth.ErrNoAccessToken}, auth.ClassTransient},
		"200Malformed":          {&auth.TokenError{Status: 200, Err: auth.ErrMalformedResponse, Unknown: true}, auth.ClassTransient},
		// No response.
		"Timeout":         {&auth.TokenError{Err: timeout, Unknown: true}, auth.ClassTransient},
		"ConnectionReset": {&auth.TokenError{Err: reset, Unknown: true}, auth.ClassTransient},
		"Refused":         {&auth.TokenError{Err: refused}, auth.ClassTransient},
		"EOF":             {&auth.TokenError{Err: io.ErrUnexpectedEOF, Unknown: true}, auth.ClassTransient},
		"Deadline":        {fmt.Errorf("refresh: %w", context.DeadlineExceeded), auth.ClassTransient},
		"BareTimeout":     {timeout, auth.ClassTransient},
		// Wrapped, and x/oauth2's own error type.
		"Wrapped":             {fmt.Errorf("refresh token: %w", te(400, "invalid_grant")), auth.ClassReauth},
		"RetrieveErrorGrant":  {&oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant"}, auth.ClassReauth},
		"RetrieveErrorClient": {&oauth2.RetrieveError{Response: &http.Response{StatusCode: 401}, ErrorCode: "invalid_client"}, auth.ClassConfig},
		"RetrieveError503":    {&oauth2.RetrieveError{Response: &http.Response{StatusCode: 503}}, auth.ClassTransient},
		"Unknown":             {errors.New("something else"), auth.ClassTransient},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := auth.Classify(tt.err); got != tt.want {
				t.Fatalf("Classify(%v)=%v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestTokenErrorMessage(t *testing.T) {
	err := &auth.TokenError{Status: 400, Code: "invalid_grant", Description: "grant expired"}
	if got, want := err.Error(), "token endpoint: status 400: invalid_grant (grant expired)"; got != want {
		t.Fatalf("Error()=%q, want %q", got, want)
	}
	wrapped := &auth.TokenError{Status: 200, Err: auth.ErrNoAccessToken}
	if !errors.Is(wrapped, auth.ErrNoAccessToken) || !strings.Contains(wrapped.Error(), "no access_token") {
		t.Fatalf("Error()=%q", wrapped.Error())
	}
	if got := auth.ClassReauth.String(); got != "reauth_required" {
		t.Fatalf("String()=%q", got)
	}
}
