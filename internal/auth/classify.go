package auth

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/oauth2"

	"github.com/tibbersync/tibbersync/internal/logging"
)

// Class is what to do about a token-endpoint outcome (R4).
type Class int

// The classes of token-endpoint outcomes.
const (
	// ClassNone is the class of a nil error.
	ClassNone Class = iota
	// ClassReauth: the grant is gone (invalid_grant); setup must run again.
	ClassReauth
	// ClassConfig: the client configuration is wrong; never retried.
	ClassConfig
	// ClassTransient: retry later with backoff (429, 5xx, timeouts, connection errors).
	ClassTransient
)

// String implements fmt.Stringer.
func (c Class) String() string {
	switch c {
	case ClassNone:
		return "none"
	case ClassReauth:
		return "reauth_required"
	case ClassConfig:
		return "config_error"
	case ClassTransient:
		return "transient"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Errors a TokenError can wrap for a response that is not a usable token.
var (
	// ErrNoAccessToken: a 2xx token response without access_token.
	ErrNoAccessToken = errors.New("token response has no access_token")
	// ErrMalformedResponse: a 2xx token response that could not be decoded.
	ErrMalformedResponse = errors.New("token response could not be decoded")
	// ErrNotBearer: a 2xx token response whose token_type is not Bearer
	// (compared case-insensitively): the token cannot be used as sent, and
	// retrying changes nothing, so it is a configuration error.
	ErrNotBearer = errors.New("token response's token_type is not Bearer")
	// ErrNoRefreshToken: offline_access was granted (or the scopes are not
	// known) but the response carried no refresh_token, so access would end
	// with the access token.
	//lint:ignore ST1005 Tibber is a name; the text is shown to the user as is
	ErrNoRefreshToken = errors.New("Tibber issued no refresh token although offline_access was requested; access would end within the hour. Authorize again, and make sure the client is registered with offline_access")
)

// checkBearer returns an error wrapping ErrNotBearer unless tokenType is
// Bearer in any letter case.
//
// A missing or empty token_type is taken as Bearer, as x/oauth2 does: the
// member is required by RFC 6749, but refusing a refresh answer for its
// absence would throw away a rotated refresh token that the server already
// considers current, and lose the grant. Only a type that says something
// else (mac, DPoP, …) is refused.
func checkBearer(tokenType string) error {
	t := strings.TrimSpace(tokenType)
	if t == "" || strings.EqualFold(t, "bearer") {
		return nil
	}
	return fmt.Errorf("%w (token_type %q)", ErrNotBearer, truncateRunes(scrub(tokenType), 40))
}

func truncateRunes(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// TokenError is a failed token-endpoint request. Its message holds the HTTP
// status, the RFC 6749 error code and description, or the transport error;
// never a body, a token, a code or the client secret.
type TokenError struct {
	// Status is the HTTP status (0 when no response was received).
	Status int
	// Code is the RFC 6749 §5.2 "error" value, if any.
	Code string
	// Description is "error_description", scrubbed of secrets and shortened.
	Description string
	// Err is the transport or decoding error, if any.
	Err error
	// Unknown is set when the request may have reached the server but no
	// usable answer came back (lost response, R7).
	Unknown bool
}

// Error implements error.
func (e *TokenError) Error() string {
	var b strings.Builder
	b.WriteString("token endpoint")
	if e.Status != 0 {
		fmt.Fprintf(&b, ": status %d", e.Status)
	}
	if e.Code != "" {
		b.WriteString(": ")
		b.WriteString(e.Code)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, " (%s)", e.Description)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the transport or decoding error.
func (e *TokenError) Unwrap() error { return e.Err }

// Classify maps a token-endpoint outcome to an action (R4). It classifies by
// the RFC 6749 error code first and by HTTP status only when there is no
// known code: invalid_grant → ClassReauth; invalid_client,
// unauthorized_client, invalid_request, unsupported_grant_type and
// invalid_scope (and other 4xx) → ClassConfig; 408, 429, 5xx, timeouts,
// connection errors and undecodable or token-less 2xx answers →
// ClassTransient. It is pure: it looks only at err.
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	if errors.Is(err, ErrNotBearer) || errors.Is(err, ErrNoRefreshToken) {
		return ClassConfig
	}
	var (
		code   string
		status int
	)
	var te *TokenError
	var re *oauth2.RetrieveError
	switch {
	case errors.As(err, &te):
		code, status = te.Code, te.Status
	case errors.As(err, &re):
		code = re.ErrorCode
		if re.Response != nil {
			status = re.Response.StatusCode
		}
	}
	switch code {
	case "invalid_grant":
		return ClassReauth
	case "invalid_client", "unauthorized_client", "invalid_request", "unsupported_grant_type",
		"invalid_scope", "access_denied", "unsupported_response_type":
		return ClassConfig
	case "temporarily_unavailable", "server_error", "slow_down":
		return ClassTransient
	}
	switch {
	case status == 408 || status == 425 || status == 429 || status >= 500:
		return ClassTransient
	case status >= 400:
		return ClassConfig
	case status >= 200 && status < 300:
		// 200 with an unknown error code, without access_token, or undecodable.
		return ClassTransient
	}
	// No response (timeouts, resets, refused connections, DNS failures) or
	// an error we cannot attribute to the server's verdict: retry later.
	return ClassTransient
}

// scrub removes secret values from server-provided text and bounds its
// length, so that an error_description echoing a token cannot leak it.
func scrub(s string, secrets ...string) string {
	// Match on the text as it reads: a zero-width-split copy of a token is
	// still the token.
	s = logging.StripInvisible(s)
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "REDACTED")
		}
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	const maxLen = 200
	if len(s) > maxLen {
		s = s[:maxLen] + "…"
	}
	return s
}

// cleanCode keeps an RFC 6749 error code only if it looks like one and
// holds none of secrets: a server that echoes a token or code as the error
// code must not get it into an error or a log line (R12).
func cleanCode(s string, secrets ...string) string {
	if len(s) > 64 {
		return "invalid_error_code"
	}
	for _, sec := range secrets {
		if len(sec) >= 4 && strings.Contains(logging.StripInvisible(s), sec) {
			return "invalid_error_code"
		}
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return "invalid_error_code"
		}
	}
	return s
}
