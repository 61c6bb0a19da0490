package jobs

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/tibbersync/tibbersync/internal/tibber"
)

// This file is the only place that knows the tibber client's error and
// request-counting helpers.

// withRequestCounter makes the tibber client count every HTTP attempt made
// with ctx into n.
func withRequestCounter(ctx context.Context, n *atomic.Int64) context.Context {
	return tibber.WithRequestCounter(ctx, n)
}

// isBadRequest reports whether the API answered 400 (for history: a
// resolution the device does not support, or a stale cursor).
func isBadRequest(err error) bool { return tibber.IsStatus(err, http.StatusBadRequest) }

// isNotFound reports whether the API answered 404.
func isNotFound(err error) bool { return tibber.IsNotFound(err) }

// RetryAfterHinter is implemented by errors that carry a server's
// Retry-After. The scheduler keeps a job's breaker open at least that long.
type RetryAfterHinter interface {
	RetryAfterHint() time.Duration
}

// RetryAfter returns the longest Retry-After carried anywhere in err's tree:
// by a *tibber.APIError or by an error implementing RetryAfterHinter. It is
// zero when none is present.
func RetryAfter(err error) time.Duration {
	var longest time.Duration
	var walk func(error, int)
	walk = func(e error, depth int) {
		if e == nil || depth > 32 {
			return
		}
		switch v := e.(type) {
		case *tibber.APIError:
			longest = max(longest, v.RetryAfter)
		case RetryAfterHinter:
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

// RateLimited reports whether err says Tibber asked the installation to
// slow down: a 429, a request not sent because the rate gate is closed, or
// any error carrying a Retry-After. A run that met one stops making new
// requests and is not counted as a success (issue 17).
func RateLimited(err error) bool {
	return err != nil && (tibber.IsStatus(err, http.StatusTooManyRequests) ||
		errors.Is(err, tibber.ErrRateGated) || RetryAfter(err) > 0)
}

// overloaded reports whether err is a retryable server or network failure
// that survived all the client's retries: the API is failing right now,
// not this one request.
func overloaded(err error) bool {
	if err == nil || RateLimited(err) {
		return err != nil
	}
	var ae *tibber.APIError
	if errors.As(err, &ae) {
		return ae.Retryable()
	}
	return false
}
