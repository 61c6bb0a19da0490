package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
)

// Exit codes of `tibbersync status` (documented in README.md).
const (
	statusHealthy        = 0
	statusError          = 1 // data.db missing or unreadable
	statusStale          = 3 // authorized, but a job's last success is older than 3× its interval
	statusSetupRequired  = 4
	statusReauthRequired = 5
	statusConfigError    = 6
)

// statusReport is `status --json`: the summary plus the verdict.
type statusReport struct {
	model.Summary
	Healthy  bool     `json:"healthy"`
	ExitCode int      `json:"exit_code"`
	Problems []string `json:"problems,omitempty"`
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
	path := filepath.Join(cfg.Storage.Dir, "data.db")
	db, err := store.OpenReadOnly(ctx, path)
	if err != nil {
		return withCode(statusError, fmt.Errorf("tibbersync status: %w", err))
	}
	defer db.Close()
	s, err := db.Summary(ctx)
	if err != nil {
		return withCode(statusError, fmt.Errorf("tibbersync status: %w", err))
	}
	rep := judge(s, daemon.JobIntervals(cfg), time.Now())
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return withCode(statusError, nil)
		}
	} else {
		printStatus(env.stdout, rep)
	}
	return withCode(rep.ExitCode, nil)
}

// judge decides the exit code: auth state first, then staleness.
func judge(s model.Summary, intervals map[string]time.Duration, now time.Time) statusReport {
	rep := statusReport{Summary: s}
	switch s.Auth.State {
	case model.AuthSetupRequired:
		rep.ExitCode = statusSetupRequired
		rep.Problems = append(rep.Problems, "authorization required: open the setup page or run 'tibbersync setup'")
	case model.AuthReauthRequired:
		rep.ExitCode = statusReauthRequired
		rep.Problems = append(rep.Problems, "re-authorization required"+reasonSuffix(s.Auth.Reason))
	case model.AuthConfigError:
		rep.ExitCode = statusConfigError
		rep.Problems = append(rep.Problems, "configuration error"+reasonSuffix(s.Auth.Reason))
	}
	if rep.ExitCode == 0 {
		for _, j := range s.Jobs {
			iv, ok := intervals[j.Job]
			if !ok || iv <= 0 {
				continue
			}
			if j.LastSuccessAt.IsZero() || now.Sub(j.LastSuccessAt) > 3*iv {
				rep.ExitCode = statusStale
				last := "never"
				if !j.LastSuccessAt.IsZero() {
					last = j.LastSuccessAt.UTC().Format(time.RFC3339)
				}
				rep.Problems = append(rep.Problems, fmt.Sprintf("job %s stale: last success %s, interval %s", j.Job, last, iv))
			}
		}
	}
	rep.Healthy = rep.ExitCode == 0
	return rep
}

func printStatus(w io.Writer, rep statusReport) {
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
		fmt.Fprintf(w, " since %s", s.Auth.Since.Local().Format(time.DateTime))
	}
	fmt.Fprintln(w)
	if s.Auth.Email != "" {
		fmt.Fprintf(w, "  account: %s\n", s.Auth.Email)
	}
	if !s.Auth.AccessExpiresAt.IsZero() {
		fmt.Fprintf(w, "  access token: expires %s (refreshed ahead of expiry)\n", fmtTime(s.Auth.AccessExpiresAt))
	}
	if !s.Auth.RefreshExpiresEst.IsZero() {
		days := int(time.Until(s.Auth.RefreshExpiresEst).Hours() / 24)
		fmt.Fprintf(w, "  refresh token: issued %s, about %d days left (Tibber: ~30 days; a rotation renews it)\n", fmtTime(s.Auth.RefreshIssuedAt), days)
	}
	if len(s.Auth.GrantedScopes) > 0 {
		fmt.Fprintf(w, "  granted: %s\n", strings.Join(s.Auth.GrantedScopes, " "))
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
		fmt.Fprintf(w, "  %-8s last %-8s at %s, next %s, last success %s",
			j.Job, orDash(j.LastStatus), fmtTime(j.LastRunAt), fmtTime(j.NextRunAt), fmtTime(j.LastSuccessAt))
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
	return t.Local().Format(time.DateTime)
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
