// Package health is the one verdict on whether tibbersync is healthy. The
// /readyz endpoint, the exit code of `tibbersync status` and the status
// page's banner all call Evaluate on the same summary, so they agree at
// every moment.
//
// The verdict depends only on what data.db says (model.Summary), the job
// intervals from the configuration and the time: never on the uptime of the
// process asking, which `tibbersync status` cannot know. Other sources of
// trouble (storage health, for example) feed it as extra checks.
package health

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// StaleFactor is how many job intervals may pass without a success before
// a job is stale.
const StaleFactor = 3

// Exit codes of `tibbersync status`, one per kind of failing check
// (documented in README.md).
const (
	CodeHealthy        = 0
	CodeError          = 1 // data.db missing or unreadable, or a storage problem
	CodeStale          = 3 // authorized, but a job has no recent success
	CodeSetupRequired  = 4
	CodeReauthRequired = 5
	CodeConfigError    = 6
)

// Check is one line of the verdict.
type Check struct {
	// Name is what was checked: "auth", "job history", "storage".
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Detail says what was found, in words.
	Detail string `json:"detail"`
	// Code is the exit code of `status` when this check fails.
	Code int `json:"code,omitempty"`
	// Action says what to do about a failing check ("" when nothing can be
	// done but wait).
	Action string `json:"action,omitempty"`
}

// Verdict is the result of Evaluate.
type Verdict struct {
	Healthy bool `json:"healthy"`
	// ExitCode is the code of the first failing check (auth before storage
	// before jobs), 0 when healthy.
	ExitCode int     `json:"exit_code"`
	Checks   []Check `json:"checks"`
}

// Problems are the details of the failing checks, for one-line display.
func (v Verdict) Problems() []string {
	var out []string
	for _, c := range v.Checks {
		if !c.OK {
			out = append(out, c.Name+": "+c.Detail)
		}
	}
	return out
}

// Failing returns the first failing check, if any.
func (v Verdict) Failing() (Check, bool) {
	for _, c := range v.Checks {
		if !c.OK {
			return c, true
		}
	}
	return Check{}, false
}

// Evaluate judges s at now. intervals holds each scheduled job's nominal
// interval (jobs without one are not judged). extra are further checks
// (storage, for example), placed after the auth check; a failing extra
// check with Code 0 counts as CodeError.
//
// A job is fresh when its last success (ok or partial; skipped and
// interrupted runs are not successes) is at most StaleFactor intervals old.
// A job that has never succeeded is not fresh, however recently the daemon
// started: "no success yet" is what every surface says until the first
// success.
func Evaluate(s model.Summary, intervals map[string]time.Duration, now time.Time, extra ...Check) Verdict {
	var checks []Check
	checks = append(checks, authCheck(s.Auth))
	for _, c := range extra {
		if !c.OK && c.Code == 0 {
			c.Code = CodeError
		}
		checks = append(checks, c)
	}
	byJob := map[string]model.JobSummary{}
	for _, j := range s.Jobs {
		byJob[j.Job] = j
	}
	names := make([]string, 0, len(intervals))
	for name, iv := range intervals {
		if iv > 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		checks = append(checks, jobCheck(name, byJob[name], intervals[name], now))
	}
	v := Verdict{Healthy: true, Checks: checks}
	if c, bad := v.Failing(); bad {
		v.Healthy = false
		v.ExitCode = c.Code
	}
	return v
}

func authCheck(a model.AuthSummary) Check {
	c := Check{Name: "auth", Detail: "state " + string(a.State)}
	switch a.State {
	case model.AuthOK:
		c.OK = true
		if a.Email != "" {
			c.Detail += " (" + a.Email + ")"
		}
		return c
	case model.AuthReauthRequired:
		c.Code = CodeReauthRequired
		c.Action = "authorize again: open the status page's Re-authorize button or run 'tibbersync setup'"
	case model.AuthConfigError:
		c.Code = CodeConfigError
		c.Action = "fix [tibber] client_id, the client secret, redirect_url or scopes, restart, then authorize again"
	default:
		c.Code = CodeSetupRequired
		c.Action = "connect to Tibber: open the setup page or run 'tibbersync setup'"
		if a.State == "" {
			c.Detail = "state unknown (never authorized)"
		}
	}
	if a.Reason != "" {
		c.Detail += " (" + a.Reason + ")"
	}
	return c
}

func jobCheck(name string, j model.JobSummary, interval time.Duration, now time.Time) Check {
	limit := StaleFactor * interval
	c := Check{Name: "job " + name, Code: CodeStale}
	last := j.LastSuccessAt
	running := ""
	if j.Running {
		running = "; running since " + ago(now, j.RunningSince)
		if p := j.Progress; p != nil && p.StreamsTotal > 0 {
			running += fmt.Sprintf(" (%d of %d streams)", p.StreamsDone, p.StreamsTotal)
		}
	}
	switch {
	case last.IsZero():
		c.Detail = "no success yet" + running
	case model.InFuture(last, now):
		c.Detail = "last success is in the future (" + last.UTC().Format(time.RFC3339) + "): the clock moved back; waiting for a new success" + running
	case now.Sub(last) <= limit:
		c.OK = true
		c.Code = 0
		c.Detail = fmt.Sprintf("last success %s, limit %s", ago(now, last), humanDuration(limit)) + running
	default:
		c.Detail = fmt.Sprintf("last success %s, limit %s (%d× %s)", ago(now, last), humanDuration(limit), StaleFactor, humanDuration(interval)) + running
	}
	if !c.OK && !j.Running && j.LastError != "" {
		c.Detail += "; last error: " + j.LastError
	}
	return c
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return humanDuration(max(0, now.Sub(t))) + " ago"
}

// humanDuration renders d coarsely: "45 s", "12 min", "3 h 5 min", "2 d 4 h".
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 48*time.Hour:
		h := int(d / time.Hour)
		m := int((d % time.Hour) / time.Minute)
		if m == 0 {
			return fmt.Sprintf("%d h", h)
		}
		return fmt.Sprintf("%d h %d min", h, m)
	}
	days := int(d / (24 * time.Hour))
	h := int((d % (24 * time.Hour)) / time.Hour)
	if h == 0 {
		return fmt.Sprintf("%d d", days)
	}
	return fmt.Sprintf("%d d %d h", days, h)
}

// StorageCheck turns a storage health (the state directory, data.db and
// tokens.db) into the "storage" check: failing, with CodeError, while it has
// problems.
func StorageCheck(st model.StorageHealth) Check {
	c := Check{Name: "storage", OK: st.OK(), Detail: "ok"}
	switch {
	case !st.OK():
		c.Code = CodeError
		c.Detail = strings.Join(st.Problems, "; ")
		c.Action = "see docs/operations.md (free space, remount read-write, restart, or restore a copy made with tibbersync backup)"
	case st.Checked.IsZero():
		c.Detail = "not checked yet"
	default:
		c.Detail = fmt.Sprintf("ok, %d MiB free", st.FreeBytes>>20)
		if len(st.Notes) > 0 {
			c.Detail += " (" + strings.Join(st.Notes, "; ") + ")"
		}
	}
	return c
}
