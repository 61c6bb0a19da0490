package jobs

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// This file is the only place that classifies API errors. The jobs see them
// through the small interfaces below, never through the client's concrete
// types, so that jobs does not depend on the API client package.

// RetryAfterHinter is implemented by errors that carry a server's
// Retry-After. The scheduler keeps a job's breaker open at least that long.
type RetryAfterHinter interface {
	RetryAfterHint() time.Duration
}

// APIError is what the jobs need to know about an error answer of the Data
// API: its HTTP status and Retry-After. *tibber.APIError implements it.
type APIError interface {
	error
	HTTPStatus() int
	RetryAfterHinter
}

// withRequestCounter makes the API client count every HTTP attempt made
// with ctx into n.
func withRequestCounter(ctx context.Context, n *atomic.Int64) context.Context {
	return model.WithRequestCounter(ctx, n)
}

// hasStatus reports whether err is, or wraps, an APIError with status code.
func hasStatus(err error, code int) bool {
	var e APIError
	return errors.As(err, &e) && e.HTTPStatus() == code
}

// isBadRequest reports whether the API answered 400 (for history: a
// resolution the device does not support, or a stale cursor).
func isBadRequest(err error) bool { return hasStatus(err, http.StatusBadRequest) }

// isNotFound reports whether the API answered 404.
func isNotFound(err error) bool { return hasStatus(err, http.StatusNotFound) }

// RetryAfter returns the longest Retry-After carried anywhere in err's tree
// by an error implementing RetryAfterHinter (an APIError among them). It is
// zero when none is present.
func RetryAfter(err error) time.Duration {
	var longest time.Duration
	var walk func(error, int)
	walk = func(e error, depth int) {
		if e == nil || depth > 32 {
			return
		}
		if v, ok := e.(RetryAfterHinter); ok {
			longest = max(longest, v.RetryAfterHint())
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap(), depth+1)
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				walk(inner, depth+1)
			}
		}
	}
	walk(err, 0)
	return longest
}

// RateGated is implemented by errors for a request that was not sent
// because the installation's rate gate is closed (*tibber.GateError).
type RateGated interface {
	RateGated() bool
}

// RateLimited reports whether err says Tibber asked the installation to
// slow down: a 429, a request not sent because the rate gate is closed, or
// any error carrying a Retry-After. A run that met one stops making new
// requests and is not counted as a success (issue 17).
func RateLimited(err error) bool {
	if err == nil {
		return false
	}
	var g RateGated
	return hasStatus(err, http.StatusTooManyRequests) || (errors.As(err, &g) && g.RateGated()) || RetryAfter(err) > 0
}

// overloaded reports whether err is a retryable answer that survived all
// the client's retries (429, 500, 502, 503, 504): the API is failing right
// now, not this one request.
func overloaded(err error) bool {
	if RateLimited(err) {
		return true
	}
	var e APIError
	if !errors.As(err, &e) {
		return false
	}
	switch e.HTTPStatus() {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}
