package model

import "time"

// ClockSkewTolerance is how far in the future a saved time (a job's last
// run, next run or last success) may lie before it is treated as suspect:
// written while the clock was wrong (a Pi that booted ahead and was then
// corrected). Suspect times are not trusted: the job runs when otherwise
// due, and a success "in the future" counts as unknown, not fresh.
const ClockSkewTolerance = 5 * time.Minute

// InFuture reports whether t lies more than ClockSkewTolerance after now.
func InFuture(t, now time.Time) bool {
	return !t.IsZero() && t.Sub(now) > ClockSkewTolerance
}
