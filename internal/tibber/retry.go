package tibber

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Retry timing from Tibber's client rules (tibber-data-api.md §8.2, §8.3).
const (
	// BackoffBase is the full-jitter base: the first retry waits up to this long.
	BackoffBase = 400 * time.Millisecond
	// BackoffCap is the longest full-jitter wait.
	BackoffCap = 15 * time.Second
	// RetryAfterJitter is the most random time added to a Retry-After wait.
	RetryAfterJitter = 250 * time.Millisecond
	// MaxRetryAfter caps what ParseRetryAfter returns.
	MaxRetryAfter = time.Hour
)

// ParseRetryAfter reads a Retry-After header value: delta-seconds or an
// HTTP-date in any of the three RFC 9110 formats, relative to now. It returns
// false for an empty, negative, fractional or unparseable value and for a
// date that is not after now. The result is capped at one hour.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if allDigits(v) {
		// Compare in seconds before converting, so that a huge value cannot
		// overflow time.Duration; more than 10 digits is capped unparsed.
		if len(strings.TrimLeft(v, "0")) > 10 {
			return MaxRetryAfter, true
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		if n >= int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d <= 0 {
		return 0, false
	}
	return capRetryAfter(d), true
}

func capRetryAfter(d time.Duration) time.Duration {
	if d > MaxRetryAfter {
		return MaxRetryAfter
	}
	return d
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// fullJitter is rand(0, min(BackoffCap, BackoffBase × 2^failures)), with r in [0, 1).
func fullJitter(failures int, r float64) time.Duration {
	ceil := BackoffCap
	if failures < 16 {
		if d := BackoffBase << failures; d < ceil {
			ceil = d
		}
	}
	return time.Duration(clamp01(r) * float64(ceil))
}

func clamp01(r float64) float64 {
	switch {
	case r > 0 && r < 1:
		return r
	case r >= 1:
		return 1
	}
	return 0 // negative or NaN
}
