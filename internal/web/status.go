package web

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/metrics"
	"github.com/tibbersync/tibbersync/internal/model"
)

// StaleFactor is how many job intervals may pass without a success before
// /readyz reports the job as stale.
const StaleFactor = 3

// statusTimeout bounds the reads behind one status page, /readyz or scrape.
const statusTimeout = 10 * time.Second

// statusView is the status page.
type statusView struct {
	Title       string
	GeneratedAt string
	Error       string
	Banner      *bannerView
	Storage     []string
	Auth        authView
	Jobs        []jobView
	Tables      []tableView
	DBSize      string
	WALSize     string
	Devices     []deviceView
	Charts      []chartView
	ChartHours  int
	MQTT        *mqttView
}

// mqttView is the MQTT bridge section of the status page.
type mqttView struct {
	Broker      string
	State       string
	StateClass  string
	Since       string
	Published   int64
	Errors      int64
	LastError   string
	LastErrorAt string
}

// mqttView describes the MQTT bridge, or nil when MQTT is off.
func (s *Server) mqttView(now time.Time) *mqttView {
	if s.opts.MQTT == nil {
		return nil
	}
	st := s.opts.MQTT()
	v := &mqttView{Broker: st.Broker, State: "not connected", StateClass: "bad", Since: s.fmtWhen(st.Since, now),
		Published: st.MessagesPublished, Errors: st.Errors, LastError: st.LastError, LastErrorAt: s.fmtWhen(st.LastErrorAt, now)}
	if st.Connected {
		v.State, v.StateClass = "connected", "ok"
	}
	return v
}

type bannerView struct {
	Class       string // "warn" or "error"
	Title       string
	Text        string
	Reason      string
	Since       string
	ActionURL   string
	ActionLabel string
}

type authView struct {
	State        string
	StateClass   string
	Since        string
	Email        string
	Granted      []string
	Missing      []string
	Invisible    []categoryView
	AccessToken  string
	RefreshToken string
}

type jobView struct {
	Name        string
	LastRun     string
	Status      string
	StatusClass string
	NextRun     string
	LastSuccess string
	Failures    int
	LastError   string
	Rows        string
	Breaker     string
}

type tableView struct {
	Name string
	Rows string
}

type deviceView struct {
	Name     string
	Maker    string
	Category string
	Homes    int
	LastSeen string
	Charge   string
	Removed  bool
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if s.callbackAtRoot() && hasRedirectParams(r) {
		// The registered redirect URI is http://localhost[:port]/.
		s.handleCallback(w, r)
		return
	}
	if s.opts.Status == nil {
		http.Redirect(w, r, "/setup", http.StatusFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
	defer cancel()
	now := s.clock.Now()
	sum, err := s.opts.Status.Summary(ctx)
	if err != nil {
		s.log.Error("read status summary", "err", err)
		s.render(w, http.StatusInternalServerError, "status.html", statusView{
			Title:       "tibbersync status",
			GeneratedAt: s.fmtTime(now),
			Error:       "The status could not be read from data.db: " + err.Error(),
			Storage:     s.storageProblems(),
		})
		return
	}
	v := s.statusView(sum, now)
	since := now.Add(-ChartWindow)
	for _, spec := range s.charts {
		series, err := s.opts.Status.CapabilitySeries(ctx, spec.CapabilityID, since)
		if err != nil {
			s.log.Warn("read chart series", "capability", spec.CapabilityID, "err", err)
			v.Charts = append(v.Charts, chartView{Title: spec.Title, CapabilityID: spec.CapabilityID, Error: "could not be read: " + err.Error()})
			continue
		}
		if cv, ok := s.buildChart(spec, series, since, now); ok {
			v.Charts = append(v.Charts, cv)
		}
	}
	s.render(w, http.StatusOK, "status.html", v)
}

func (s *Server) callbackAtRoot() bool {
	return s.redirect != nil && (s.redirect.Path == "" || s.redirect.Path == "/")
}

func hasRedirectParams(r *http.Request) bool {
	q := r.URL.Query()
	return q.Has("state") || q.Has("code") || q.Has("error")
}

func (s *Server) statusView(sum model.Summary, now time.Time) statusView {
	a := sum.Auth
	v := statusView{
		Title:       "tibbersync status",
		GeneratedAt: s.fmtTime(now),
		DBSize:      humanBytes(sum.DataDBBytes),
		WALSize:     humanBytes(sum.WALBytes),
		ChartHours:  int(ChartWindow / time.Hour),
	}
	switch a.State {
	case model.AuthOK:
	case model.AuthSetupRequired, "":
		v.Banner = &bannerView{
			Class: "warn", Title: "Not connected to Tibber yet",
			Text:      "tibbersync needs your consent at Tibber once before it can sync anything.",
			Reason:    a.Reason,
			ActionURL: "/setup", ActionLabel: "Connect to Tibber",
		}
	case model.AuthReauthRequired:
		v.Banner = &bannerView{
			Class: "error", Title: "Re-authorization required",
			Text:      "Tibber no longer accepts tibbersync's refresh token. Nothing is synced until you authorize again.",
			Reason:    a.Reason,
			Since:     s.fmtWhen(a.Since, now),
			ActionURL: "/setup", ActionLabel: "Re-authorize",
		}
	case model.AuthConfigError:
		v.Banner = &bannerView{
			Class: "error", Title: "Configuration error",
			Text:      "Tibber refused tibbersync's client (id, secret, redirect URL or scopes). Fix the configuration, restart, then authorize again.",
			Reason:    a.Reason,
			Since:     s.fmtWhen(a.Since, now),
			ActionURL: "/setup", ActionLabel: "Re-authorize",
		}
	default:
		v.Banner = &bannerView{
			Class: "warn", Title: "Unknown authorization state " + string(a.State),
			Reason: a.Reason, ActionURL: "/setup", ActionLabel: "Open setup",
		}
	}

	v.Storage = s.storageProblems()
	v.Auth = authView{
		State:        string(a.State),
		StateClass:   stateClass(a.State),
		Since:        s.fmtWhen(a.Since, now),
		Email:        a.Email,
		Granted:      a.GrantedScopes,
		Missing:      a.MissingScopes,
		AccessToken:  s.accessExpiry(a, now),
		RefreshToken: s.refreshExpiry(a, now),
	}
	if v.Auth.State == "" {
		v.Auth.State = "unknown"
	}
	if len(a.GrantedScopes) > 0 {
		var invisible []model.Category
		if len(sum.Categories) > 0 {
			for _, c := range model.AllCategories {
				if st, ok := sum.Categories[c]; ok && st != "granted" {
					invisible = append(invisible, c)
				}
			}
		} else {
			invisible = model.MissingCategories(a.GrantedScopes)
		}
		v.Auth.Invisible = categoryViews(invisible)
	}

	for _, j := range sum.Jobs {
		jv := jobView{
			Name:        j.Job,
			LastRun:     s.fmtWhen(j.LastRunAt, now),
			Status:      j.LastStatus,
			StatusClass: runClass(j.LastStatus),
			NextRun:     s.fmtWhen(j.NextRunAt, now),
			LastSuccess: s.fmtWhen(j.LastSuccessAt, now),
			Failures:    j.ConsecutiveFailures,
			LastError:   j.LastError,
			Rows:        fmt.Sprintf("%s last run, %s in total", humanCount(int64(j.LastRowsWritten)), humanCount(j.RowsWrittenTotal)),
		}
		if jv.Status == "" {
			jv.Status = "never run"
		}
		if j.BreakerUntil.After(now) {
			jv.Breaker = "paused after repeated failures until " + s.fmtWhen(j.BreakerUntil, now)
		}
		v.Jobs = append(v.Jobs, jv)
	}

	names := make([]string, 0, len(sum.Tables))
	for name := range sum.Tables {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v.Tables = append(v.Tables, tableView{Name: name, Rows: humanCount(sum.Tables[name])})
	}

	for _, d := range sum.Devices {
		dv := deviceView{
			Name:     d.Name,
			Maker:    strings.TrimSpace(d.Brand + " " + d.Model),
			Category: string(d.Category),
			Homes:    len(d.Homes),
			LastSeen: s.fmtWhen(d.LastSeen, now),
			Removed:  d.Removed,
		}
		if name, ok := categoryNames[d.Category]; ok {
			dv.Category = name
		}
		if dv.Name == "" {
			dv.Name = d.ID
		}
		if d.StateOfCharge != nil && !math.IsNaN(*d.StateOfCharge) {
			dv.Charge = fmtValue(*d.StateOfCharge) + " %"
		}
		v.Devices = append(v.Devices, dv)
	}
	v.MQTT = s.mqttView(now)
	return v
}

func (s *Server) accessExpiry(a model.AuthSummary, now time.Time) string {
	exp := a.AccessExpiresAt
	switch {
	case exp.IsZero():
		return "unknown"
	case exp.After(now):
		return "expires in " + humanDuration(exp.Sub(now)) + " (" + s.fmtTime(exp) + "); renewed automatically before then"
	default:
		return "expired " + humanDuration(now.Sub(exp)) + " ago (" + s.fmtTime(exp) + "); renewed before the next request"
	}
}

func (s *Server) refreshExpiry(a model.AuthSummary, now time.Time) string {
	exp := metrics.RefreshExpiry(a)
	rotated := ""
	if !a.RefreshIssuedAt.IsZero() {
		rotated = ", last rotated " + s.fmtWhen(a.RefreshIssuedAt, now)
	}
	switch {
	case exp.IsZero():
		return "unknown" + rotated
	case exp.Sub(now) >= 48*time.Hour:
		return fmt.Sprintf("about %d days left (estimate%s)", int(exp.Sub(now)/(24*time.Hour)), rotated)
	case exp.After(now):
		return "about " + humanDuration(exp.Sub(now)) + " left (estimate" + rotated + ")"
	default:
		return "probably expired (estimate" + rotated + "); if the next refresh fails, authorize again"
	}
}

func stateClass(st model.AuthState) string {
	switch st {
	case model.AuthOK:
		return "ok"
	case model.AuthReauthRequired, model.AuthConfigError:
		return "bad"
	default:
		return "warn"
	}
}

func runClass(status string) string {
	switch status {
	case "ok":
		return "ok"
	case "failed":
		return "bad"
	case "partial", "skipped":
		return "warn"
	default:
		return ""
	}
}

// handleHealthz reports that the process is alive and serving.
func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// check is one line of /readyz.
type check struct {
	Name   string
	OK     bool
	Detail string
}

// handleReadyz is 200 when authorized and every job with a known interval
// succeeded within StaleFactor intervals, else 503; the body lists every
// check.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
	defer cancel()
	checks := s.readiness(ctx)
	ready := true
	var b strings.Builder
	for _, c := range checks {
		mark := "ok"
		if !c.OK {
			mark = "FAIL"
			ready = false
		}
		fmt.Fprintf(&b, "%s %s: %s\n", mark, c.Name, c.Detail)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if ready {
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintf(w, "ready\n%s", b.String())
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = fmt.Fprintf(w, "not ready\n%s", b.String())
}

func (s *Server) readiness(ctx context.Context) []check {
	if s.opts.Status == nil {
		return []check{{Name: "status", Detail: "no status source in this mode"}}
	}
	sum, err := s.opts.Status.Summary(ctx)
	if err != nil {
		checks := []check{{Name: "status", Detail: "cannot read data.db: " + err.Error()}}
		if c, ok := s.storageCheck(); ok {
			checks = append(checks, c)
		}
		return checks
	}
	now := s.clock.Now()
	var checks []check
	auth := check{Name: "auth", OK: sum.Auth.State == model.AuthOK, Detail: "state " + string(sum.Auth.State)}
	if sum.Auth.State == "" {
		auth.Detail = "state unknown"
	}
	if !auth.OK && sum.Auth.Reason != "" {
		auth.Detail += " (" + sum.Auth.Reason + ")"
	}
	checks = append(checks, auth)
	if c, ok := s.storageCheck(); ok {
		checks = append(checks, c)
	}

	jobs := map[string]model.JobSummary{}
	for _, j := range sum.Jobs {
		jobs[j.Job] = j
	}
	names := make([]string, 0, len(s.opts.JobIntervals))
	for name := range s.opts.JobIntervals {
		names = append(names, name)
	}
	slices.Sort(names)
	up := now.Sub(s.started)
	for _, name := range names {
		interval := s.opts.JobIntervals[name]
		if interval <= 0 {
			continue
		}
		limit := StaleFactor * interval
		c := check{Name: "job " + name}
		last := jobs[name].LastSuccessAt
		noSuccess := "no success yet"
		if model.InFuture(last, now) {
			// Written while the clock was wrong: when the job really last
			// succeeded is unknown, so it is not fresh (issue 17).
			noSuccess = fmt.Sprintf("last success unknown (saved as %s, in the future: was the clock corrected?)", last.UTC().Format(time.RFC3339))
			last = time.Time{}
		}
		switch {
		case last.IsZero() && up <= limit:
			c.OK = true
			c.Detail = fmt.Sprintf("%s; started %s ago, limit %s", noSuccess, humanDuration(up), humanDuration(limit))
		case last.IsZero():
			c.Detail = fmt.Sprintf("no success in %s since start, limit %s (%d× %s)", humanDuration(up), humanDuration(limit), StaleFactor, humanDuration(interval))
			if noSuccess != "no success yet" {
				c.Detail = noSuccess + "; " + c.Detail
			}
		case now.Sub(last) <= limit:
			c.OK = true
			c.Detail = fmt.Sprintf("last success %s ago, limit %s", humanDuration(max(0, now.Sub(last))), humanDuration(limit))
		case up <= limit:
			// Restarted after a pause: give the job its grace before
			// calling old data stale.
			c.OK = true
			c.Detail = fmt.Sprintf("last success %s ago, but started only %s ago; limit %s", humanDuration(now.Sub(last)), humanDuration(up), humanDuration(limit))
		default:
			c.Detail = fmt.Sprintf("last success %s ago, limit %s (%d× %s)", humanDuration(now.Sub(last)), humanDuration(limit), StaleFactor, humanDuration(interval))
		}
		if j, ok := jobs[name]; ok && !c.OK && j.LastError != "" {
			c.Detail += "; last error: " + j.LastError
		}
		checks = append(checks, c)
	}
	return checks
}

// handleMetrics refreshes the state metrics from the summary, then serves
// the registry.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if s.opts.Metrics == nil {
		http.NotFound(w, r)
		return
	}
	if s.opts.Status != nil {
		ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
		sum, err := s.opts.Status.Summary(ctx)
		cancel()
		s.mu.Lock()
		logIt := err != nil && err.Error() != s.lastSummaryErr
		if err != nil {
			s.lastSummaryErr = err.Error()
		} else {
			s.lastSummaryErr = ""
		}
		s.mu.Unlock()
		if err != nil {
			s.opts.Metrics.ObserveSummaryError()
			if logIt {
				s.log.Warn("read status summary for metrics", "err", err)
			}
		} else {
			s.opts.Metrics.UpdateFromSummary(sum, s.clock.Now())
		}
	}
	s.metricsHandler.ServeHTTP(w, r)
}

// storageProblems is the last storage check's problems (none without a
// StorageHealth source).
func (s *Server) storageProblems() []string {
	if s.opts.StorageHealth == nil {
		return nil
	}
	return s.opts.StorageHealth().Problems
}

// storageCheck is /readyz's storage line (ok is false without a
// StorageHealth source).
func (s *Server) storageCheck() (check, bool) {
	if s.opts.StorageHealth == nil {
		return check{}, false
	}
	h := s.opts.StorageHealth()
	c := check{Name: "storage", OK: h.OK(), Detail: "ok"}
	switch {
	case !h.OK():
		c.Detail = strings.Join(h.Problems, "; ")
	case h.Checked.IsZero():
		c.Detail = "not checked yet"
	default:
		c.Detail = fmt.Sprintf("ok, %s free", humanBytes(int64(min(h.FreeBytes, 1<<62))))
	}
	return c, true
}
