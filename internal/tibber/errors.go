package tibber

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tibbersync/tibbersync/internal/logging"
)

// ErrResponseTooLarge is wrapped by the error returned when a response body
// exceeds Options.MaxBodyBytes. Such a request is not retried.
var ErrResponseTooLarge = errors.New("response too large")

// ErrForeignLink is wrapped by the error returned when a next/prev link
// points to another scheme, host or port than the configured API base, or
// to a path outside the API's (base path + "/v1/"). The link is never
// followed, so the bearer token never leaves the API.
var ErrForeignLink = errors.New("link to another host refused")

// maxProblemText bounds every text taken from an error body.
const maxProblemText = 200

// maxErrorBody bounds how much of a non-2xx body is read to find a problem.
const maxErrorBody = 64 << 10

// Problem is what an error body said: RFC 7807 problem details as ASP.NET
// writes them, or the OAuth-style error/error_description pair. Every field
// is sanitized (printable, at most 200 characters, bearer tokens redacted)
// and may be empty when the body was not JSON or absent.
type Problem struct {
	// Type is the problem type URI.
	Type string
	// Title is the short summary, e.g. "Not Found".
	Title string
	// Status is the status the body claims (0 when absent).
	Status int
	// Detail is the human-readable explanation, e.g. "Device not found".
	Detail string
	// TraceID is the server's trace id, useful when reporting a problem to Tibber.
	TraceID string
	// ErrorCode is the OAuth-style "error" member.
	ErrorCode string
	// ErrorDescription is the OAuth-style "error_description" member.
	ErrorDescription string
}

// APIError is a non-2xx answer of the Data API, after any retries.
type APIError struct {
	// Status is the HTTP status code of the last attempt.
	Status int
	// Problem is the parsed error body of the last attempt.
	Problem Problem
	// RetryAfter is the server's Retry-After of the last attempt (0 when
	// absent), so callers can keep a breaker open at least that long.
	RetryAfter time.Duration
	// Endpoint is the method and path of the request, without the query.
	Endpoint string
	// Attempts is how many HTTP requests were made for this call.
	Attempts int
}

// Error implements error. It never contains a token or a raw body: only the
// status, the sanitized title/detail of a problem body and its trace id.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.Endpoint)
	fmt.Fprintf(&b, ": status %d", e.Status)
	title := e.Problem.Title
	if title == "" {
		title = e.Problem.ErrorCode
	}
	if title == "" {
		title = http.StatusText(e.Status)
	}
	if title != "" {
		b.WriteString(" ")
		b.WriteString(title)
	}
	detail := e.Problem.Detail
	if detail == "" {
		detail = e.Problem.ErrorDescription
	}
	if detail != "" && detail != title {
		b.WriteString(": ")
		b.WriteString(detail)
	}
	if e.Problem.TraceID != "" {
		fmt.Fprintf(&b, " (trace %s)", e.Problem.TraceID)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " after %d attempts", e.Attempts)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, ", retry after %s", e.RetryAfter.Round(time.Millisecond))
	}
	return b.String()
}

// Retryable reports whether the status is one Tibber says may be retried
// later (429, 500, 502, 503, 504).
func (e *APIError) Retryable() bool { return retryableStatus(e.Status) }

// HTTPStatus returns the status code; with RetryAfterHint it lets callers
// such as the jobs classify the error through an interface of their own.
func (e *APIError) HTTPStatus() int { return e.Status }

// RetryAfterHint returns the server's Retry-After (0 when absent).
func (e *APIError) RetryAfterHint() time.Duration { return e.RetryAfter }

// IsNotFound reports whether err is, or wraps, an *APIError with status 404.
func IsNotFound(err error) bool { return IsStatus(err, http.StatusNotFound) }

// IsStatus reports whether err is, or wraps, an *APIError with status code.
func IsStatus(err error, code int) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == code
}

// retryableStatus is Tibber's retry list (429, 500, 502, 503) plus 504 (R23).
func retryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// parseProblem reads an RFC 7807 or OAuth error body. Anything else (HTML
// from a proxy, no body, JSON of another shape) gives an empty Problem, and
// the caller falls back to the status line. Values of the wrong type are
// ignored member by member.
func parseProblem(body []byte, secrets ...logging.Secret) Problem {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return Problem{}
	}
	s := func(key string) string { return sanitize(str(m[key]), secrets) }
	p := Problem{
		Type:             s("type"),
		Title:            s("title"),
		Detail:           s("detail"),
		TraceID:          s("traceId"),
		ErrorCode:        s("error"),
		ErrorDescription: s("error_description"),
	}
	if f, ok := number(m["status"]); ok && f >= 100 && f <= 999 {
		p.Status = int(f)
	}
	return p
}

var (
	bearerRe = regexp.MustCompile(`(?i)bearer\s+[^\s"',;]+`)
	// jwtRe matches anything shaped like a JWT (header.payload[.signature]).
	jwtRe = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(\.[A-Za-z0-9_-]*)?`)
)

// sanitize makes untrusted server text safe for errors and logs: the given
// secrets, bearer credentials and JWT-shaped strings are redacted (matched
// after invisible characters are removed), control
// characters become spaces, runs of white space collapse, and the result is
// cut to maxProblemText runes.
func sanitize(s string, secrets []logging.Secret) string {
	if s == "" {
		return ""
	}
	// Match on the text as it reads: a copy of a token split by zero-width
	// characters must be found too.
	s = logging.StripInvisible(s)
	for _, sec := range secrets {
		if v := sec.Reveal(); len(v) >= 4 {
			s = strings.ReplaceAll(s, v, logging.Redacted)
		}
	}
	s = bearerRe.ReplaceAllString(s, "Bearer "+logging.Redacted)
	s = jwtRe.ReplaceAllString(s, logging.Redacted)
	var b strings.Builder
	n := 0
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
			n++
		}
		space = false
		if n >= maxProblemText {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
