package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/health"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
)

// Exit codes of `tibbersync status` (documented in README.md): those of
// health.Evaluate, the one verdict /readyz and the status page use too.
const (
	statusHealthy        = health.CodeHealthy
	statusError          = health.CodeError // data.db missing, unreadable or damaged; state dir full or read-only
	statusStale          = health.CodeStale // authorized, but a job's last success is older than 3× its interval
	statusSetupRequired  = health.CodeSetupRequired
	statusReauthRequired = health.CodeReauthRequired
	statusConfigError    = health.CodeConfigError
)

// statusReport is `status --json`: the summary plus the verdict.
type statusReport struct {
	model.Summary
	Healthy  bool           `json:"healthy"`
	ExitCode int            `json:"exit_code"`
	Problems []string       `json:"problems,omitempty"`
	Checks   []health.Check `json:"checks"`
	// MQTT is the MQTT bridge's state; broker problems never change the exit code.
	MQTT *mqttReport `json:"mqtt,omitempty"`
}

// statusQuickCheck bounds status's own quick_check of data.db: a large
// file on a slow card is reported as not checked rather than holding the
// command up.
const statusQuickCheck = 15 * time.Second

// checkStorage is status's own look at the state directory (free space,
// read-only, writable, by a probe file) and at data.db (a bounded
// quick_check), independent of the daemon, which may not be running or may
// be the one in trouble.
func checkStorage(ctx context.Context, dir, dataPath string) model.StorageHealth {
	// An analyst in the daemon's group may read the state directory but
	// not write to it (0750): that is as meant, so the write probe is left
	// to users who may write there (the service user, root).
	probe := unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK, unix.AT_EACCESS) == nil
	d := store.CheckDir(dir, probe)
	st := model.StorageHealth{Checked: time.Now(), Dir: dir, FreeBytes: d.FreeBytes, Problems: d.Problems}
	if !probe {
		st.Notes = append(st.Notes, "write probe skipped: this user may not write to the state directory")
	}
	qctx, cancel := context.WithTimeout(ctx, statusQuickCheck)
	defer cancel()
	if problems, err := store.QuickCheckFile(qctx, dataPath); err != nil {
		switch {
		case errors.Is(err, store.ErrDamaged):
			st.Problems = append(st.Problems, err.Error())
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(qctx.Err(), context.DeadlineExceeded):
			st.Notes = append(st.Notes, fmt.Sprintf("data.db integrity not checked: quick_check did not finish within %s", statusQuickCheck))
		default:
			st.Notes = append(st.Notes, fmt.Sprintf("data.db integrity not checked: %v", err))
		}
	} else if len(problems) > 0 {
		st.Problems = append(st.Problems, fmt.Sprintf("data.db is damaged (quick_check: %s); see docs/operations.md: stop the daemon, keep the file aside, restore the last copy made with tibbersync backup",
			strings.Join(problems, "; ")))
	}
	return st
}

// statusErrorReport is `status --json` when data.db cannot be read.
type statusErrorReport struct {
	Healthy  bool   `json:"healthy"`
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error"`
	DataDB   string `json:"data_db"`
}

// statusChecks are the checks `status` adds to the summary's verdict, the
// same ones the daemon's web server adds: storage, checked here directly.
func statusChecks(ctx context.Context, cfg config.Config) []health.Check {
	dataPath := filepath.Join(cfg.Storage.Dir, "data.db")
	return []health.Check{health.StorageCheck(checkStorage(ctx, cfg.Storage.Dir, dataPath))}
}

// cmdStatus reads data.db read-only; it works while the daemon runs and
// never opens tokens.db.
func cmdStatus(ctx context.Context, g globalFlags, args []string, env *environment) error {
	fs := newFlagSet("status", &g, env)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	// A config file that does not load is 78, as for every command: the
	// status codes describe the stored state, and 6 is the auth state
	// config_error (Tibber rejected the client), not a bad file.
	cfg, err := loadConfig(g, env)
	if err != nil {
		return err
	}
	// Run as root on the service's state dir: act as its owner, so that
	// SQLite's -shm (and any file) it creates stays the daemon's.
	restore, err := actAsStateOwner(cfg.Storage.Dir, "status")
	if err != nil {
		return withCode(statusError, err)
	}
	defer restore()
	path := filepath.Join(cfg.Storage.Dir, "data.db")
	fail := func(err error) error {
		if *asJSON {
			// A script reading --json gets an answer, not an empty stdout.
			enc := json.NewEncoder(env.stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(statusErrorReport{ExitCode: statusError, Error: err.Error(), DataDB: path})
		}
		return withCode(statusError, fmt.Errorf("tibbersync status: %w", err))
	}
	db, err := store.OpenReadOnly(ctx, path)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	s, err := db.Summary(ctx)
	if err != nil {
		if store.IsDamaged(err) {
			err = fmt.Errorf("%w: data.db is damaged; see docs/operations.md: stop the daemon, keep the file aside, restore the last copy made with tibbersync backup", err)
		}
		return fail(err)
	}
	rep := judge(s, daemon.JobIntervals(cfg), time.Now(), statusChecks(ctx, cfg)...)
	rep.MQTT = readMQTTReport(cfg)
	// Names, emails, scopes and errors come from Tibber: neutralise
	// control characters and bidi overrides (in JSON too, as \u escapes).
	out := logging.DisplayWriter(env.stdout)
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return withCode(statusError, nil)
		}
	} else {
		printStatus(out, rep, time.Now())
	}
	return withCode(rep.ExitCode, nil)
}

// judge is health.Evaluate, the verdict /readyz and the page use too.
func judge(s model.Summary, intervals map[string]time.Duration, now time.Time, extra ...health.Check) statusReport {
	v := health.Evaluate(s, intervals, now, extra...)
	if s.Auth.State != model.AuthOK {
		// No usable token: no expiry to renew and no refresh-token
		// lifetime to promise; the auth check's action says what to do.
		s.Auth.AccessExpiresAt, s.Auth.RefreshExpiresEst = time.Time{}, time.Time{}
	}
	rep := statusReport{Summary: s, Healthy: v.Healthy, ExitCode: v.ExitCode, Checks: v.Checks}
	for _, c := range v.Checks {
		if c.OK {
			continue
		}
		p := c.Name + ": " + c.Detail
		if c.Action != "" {
			p += "; " + c.Action
		}
		rep.Problems = append(rep.Problems, p)
	}
	return rep
}

func printStatus(w io.Writer, rep statusReport, now time.Time) {
	s := rep.Summary
	verdict := "healthy"
	if !rep.Healthy {
		verdict = "UNHEALTHY"
	}
	fmt.Fprintf(w, "tibbersync: %s\n", verdict)
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  ! %s\n", p)
	}
	fmt.Fprintf(w, "\nauth: %s", s.Auth.State)
	if s.Auth.Reason != "" {
		fmt.Fprintf(w, " (%s)", s.Auth.Reason)
	}
	if !s.Auth.Since.IsZero() {
		fmt.Fprintf(w, " since %s", fmtTime(s.Auth.Since))
	}
	fmt.Fprintln(w)
	if s.Auth.Email != "" {
		fmt.Fprintf(w, "  account: %s\n", s.Auth.Email)
	}
	switch {
	case s.Auth.State != model.AuthOK:
		// No usable token: no renewal promise, no refresh-token lifetime.
		if c, bad := health.Evaluate(s, nil, now).Failing(); bad && c.Action != "" {
			fmt.Fprintf(w, "  what to do: %s\n", c.Action)
		}
	default:
		if !s.Auth.AccessExpiresAt.IsZero() {
			fmt.Fprintf(w, "  access token: expires %s (refreshed ahead of expiry)\n", fmtTime(s.Auth.AccessExpiresAt))
		}
		if !s.Auth.RefreshExpiresEst.IsZero() {
			days := int(s.Auth.RefreshExpiresEst.Sub(now).Hours() / 24)
			fmt.Fprintf(w, "  refresh token: issued %s, about %d days left (Tibber: ~30 days; a rotation renews it)\n", fmtTime(s.Auth.RefreshIssuedAt), days)
		}
	}
	if len(s.Auth.GrantedScopes) > 0 {
		fmt.Fprintf(w, "  granted: %s\n", strings.Join(s.Auth.GrantedScopes, " "))
	}
	if len(s.Auth.MissingScopes) > 0 {
		fmt.Fprintf(w, "  missing scopes: %s (their devices stay invisible)\n", strings.Join(s.Auth.MissingScopes, " "))
	}
	if len(s.Categories) > 0 {
		var cats []string
		for c, v := range s.Categories {
			cats = append(cats, fmt.Sprintf("%s: %s", c, v))
		}
		sort.Strings(cats)
		fmt.Fprintf(w, "  categories: %s\n", strings.Join(cats, ", "))
	}
	fmt.Fprintln(w, "\njobs:")
	for _, j := range s.Jobs {
		if j.Running {
			fmt.Fprintf(w, "  %-8s RUNNING since %s%s\n", j.Job, fmtTime(j.RunningSince), progressLine(j.Progress))
		}
		fmt.Fprintf(w, "  %-8s last %-8s at %s, next %s, last success %s",
			j.Job, orDash(j.LastStatus), fmtTime(j.LastRunAt), fmtTime(j.NextRunAt), fmtTime(j.LastSuccessAt))
		if p := j.LastProgress; p != nil && (p.Homes > 0 || p.Devices > 0) {
			fmt.Fprintf(w, ", saw %d homes and %d devices", p.Homes, p.Devices)
		}
		if j.ConsecutiveFailures > 0 {
			fmt.Fprintf(w, ", %d failures in a row", j.ConsecutiveFailures)
		}
		fmt.Fprintln(w)
		if j.LastError != "" {
			fmt.Fprintf(w, "           error: %s\n", j.LastError)
		}
	}
	fmt.Fprintln(w, "\nrows:")
	var tables []string
	for t := range s.Tables {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		fmt.Fprintf(w, "  %-20s %d\n", t, s.Tables[t])
	}
	fmt.Fprintf(w, "\ndata.db: %s, WAL: %s\n", humanBytes(s.DataDBBytes), humanBytes(s.WALBytes))
	for _, c := range rep.Checks {
		if c.Name == "storage" {
			fmt.Fprintf(w, "storage: %s\n", c.Detail)
		}
	}
	printMQTT(w, rep.MQTT)
}

// progressLine describes a run's progress on the status line.
func progressLine(p *model.RunProgress) string {
	if p == nil {
		return ""
	}
	var b strings.Builder
	if p.StreamsTotal > 0 {
		fmt.Fprintf(&b, ", %d of %d streams done", p.StreamsDone, p.StreamsTotal)
	}
	if p.Pages > 0 {
		fmt.Fprintf(&b, ", %d pages, %d points", p.Pages, p.Points)
	}
	if p.Current != "" {
		b.WriteString(", now " + p.Current)
	}
	if p.Fraction >= 0 {
		fmt.Fprintf(&b, ", %d%%", int(p.Fraction*100))
	}
	if !p.ETA.IsZero() {
		b.WriteString(", expected to finish " + fmtTime(p.ETA))
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	// The zone is printed: the page shows its own zone, and a bare local
	// time reads as UTC to a reader who compares the two.
	return t.Local().Format("2006-01-02 15:04:05 MST")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
