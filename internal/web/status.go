package web

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/health"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/metrics"
	"github.com/tibbersync/tibbersync/internal/model"
)

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
	// Health is the one verdict (health.Evaluate) the banner shows.
	Healthy  bool
	Problems []string
	// Now holds the current readings of the main capabilities.
	Now []nowView
	// DeviceCharts are the history charts, per device with history.
	DeviceCharts []deviceChartsView
	HistoryError string
	MQTT         *mqttView
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

// nowView is one current reading.
type nowView struct {
	Device, What, Value string
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
	// Blocked is set in setup_required, reauth_required and config_error:
	// no token is usable, so no renewal is promised; Action says what to do.
	Blocked      bool
	Action       string
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
	Running     bool
	Progress    string
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
	s.applyVerdict(&v, s.judge(ctx, sum, now), sum)
	since := now.Add(-ChartWindow)
	for _, spec := range s.charts {
		series, err := s.opts.Status.CapabilitySeries(ctx, spec.CapabilityID, since)
		if err != nil {
			s.log.Warn("read current values", "capability", spec.CapabilityID, "err", err)
			continue
		}
		for _, sr := range series {
			if len(sr.Points) == 0 {
				continue
			}
			last := sr.Points[len(sr.Points)-1]
			name := sr.DeviceName
			if name == "" {
				name = sr.DeviceID
			}
			unit := ""
			if sr.Unit != "" {
				unit = " " + sr.Unit
			}
			v.Now = append(v.Now, nowView{Device: name, What: spec.Title, Value: fmtValue(last.Value) + unit})
		}
	}
	slices.SortStableFunc(v.Now, func(a, b nowView) int { return strings.Compare(a.Device, b.Device) })
	v.HistoryError = s.addHistoryCharts(ctx, &v, sum, now)
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
	}
	switch a.State {
	case model.AuthOK:
		v.Banner = apiProblemBanner(sum.Jobs, func(t time.Time) string { return s.fmtWhen(t, now) })
	case model.AuthSetupRequired, "":
		if !s.opts.ClientConfigured {
			// Connecting cannot work yet: point at the steps, not at a
			// Connect button.
			v.Banner = &bannerView{
				Class: "warn", Title: "Tibber client not configured",
				Text:      "Register a client at Tibber and configure it before connecting: " + s.opts.ConfigHint + ".",
				ActionURL: "/setup", ActionLabel: "Setup steps",
			}
			break
		}
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
		Blocked:      a.State != model.AuthOK,
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
	if v.Auth.Blocked {
		// No usable token: promising a renewal or a refresh-token lifetime
		// would be false. Say what to do instead.
		v.Auth.AccessToken, v.Auth.RefreshToken = "", ""
		switch {
		case !s.opts.ClientConfigured:
			v.Auth.Action = "Configure the client first: " + s.opts.ConfigHint + ". Then restart tibbersync and connect on the setup page."
		case a.State == model.AuthReauthRequired:
			v.Auth.Action = "Authorize again on the setup page (Re-authorize above) or run 'tibbersync setup'. Nothing is synced until then; stored data is kept."
		case a.State == model.AuthConfigError:
			v.Auth.Action = "Fix the client id, secret, redirect URL or scopes in the configuration, restart tibbersync, then authorize again on the setup page."
		default:
			v.Auth.Action = "Connect to Tibber on the setup page or run 'tibbersync setup'."
		}
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
		if j.Running {
			jv.Running = true
			jv.Progress = s.progressText(j, now)
		}
		if p := j.LastProgress; p != nil && (p.Homes > 0 || p.Devices > 0) {
			jv.Rows = fmt.Sprintf("saw %s, %s; ", plural(p.Homes, "home"), plural(p.Devices, "device")) + jv.Rows
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

// plural renders "1 home", "3 homes".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// progressText describes a run in progress: since when, how far, and when
// it should end.
func (s *Server) progressText(j model.JobSummary, now time.Time) string {
	var b strings.Builder
	b.WriteString("running since " + s.fmtWhen(j.RunningSince, now))
	p := j.Progress
	if p == nil {
		return b.String()
	}
	if p.StreamsTotal > 0 {
		fmt.Fprintf(&b, "; %d of %d streams done", p.StreamsDone, p.StreamsTotal)
	}
	if p.Pages > 0 {
		fmt.Fprintf(&b, ", %s pages, %s points", humanCount(int64(p.Pages)), humanCount(int64(p.Points)))
	}
	if p.Current != "" {
		b.WriteString("; now: " + p.Current)
		if !p.CurrentReached.IsZero() {
			b.WriteString(" (reached " + s.fmtTime(p.CurrentReached) + ")")
		}
	}
	if p.Fraction >= 0 {
		fmt.Fprintf(&b, "; %d%%", int(p.Fraction*100))
	}
	if !p.ETA.IsZero() {
		b.WriteString("; expected to finish " + s.fmtWhen(p.ETA, now))
	}
	return b.String()
}

// applyVerdict puts the one health verdict on the page: an auth banner is
// already set by statusView; any other failing check gets its own banner.
func (s *Server) applyVerdict(v *statusView, verdict health.Verdict, sum model.Summary) {
	v.Healthy = verdict.Healthy
	v.Problems = verdict.Problems()
	c, bad := verdict.Failing()
	if !bad || v.Banner != nil {
		return
	}
	b := &bannerView{Class: "warn", Title: "Not healthy: " + c.Name, Text: c.Detail}
	if c.Code != health.CodeStale {
		b.Class = "error"
	}
	for _, j := range sum.Jobs {
		if "job "+j.Job == c.Name && j.Running {
			b.Title = "Working: " + j.Job + " is running"
			b.Text = c.Detail + ". Health turns ok once the run succeeds."
		}
	}
	if c.Action != "" {
		b.Reason = c.Action
	}
	v.Banner = b
}

// addHistoryCharts adds the per-device history charts: the last 7 days
// hourly and the last 30 days daily. It returns an error text for the page
// when history cannot be read.
func (s *Server) addHistoryCharts(ctx context.Context, v *statusView, sum model.Summary, now time.Time) string {
	hourFrom, dayFrom := now.Add(-HourlyWindow), now.Add(-DailyWindow)
	hourly, err := s.opts.Status.HistorySeries(ctx, model.ResolutionHour, hourFrom, now)
	if err != nil {
		s.log.Warn("read history for charts", "err", err)
		return "History could not be read: " + err.Error()
	}
	daily, err := s.opts.Status.HistorySeries(ctx, model.ResolutionDay, dayFrom, now)
	if err != nil {
		s.log.Warn("read history for charts", "err", err)
		return "History could not be read: " + err.Error()
	}
	h := buildHistoryCharts(hourly, model.ResolutionHour, hourFrom, now)
	d := buildHistoryCharts(daily, model.ResolutionDay, dayFrom, now)
	for _, dev := range sum.Devices {
		charts := append(h[dev.ID], d[dev.ID]...)
		if len(charts) == 0 {
			continue
		}
		// Hourly then daily per metric group, in the groups' order.
		slices.SortStableFunc(charts, func(a, b historyChartView) int {
			return strings.Compare(groupOrder(a.ID), groupOrder(b.ID))
		})
		name := dev.Name
		if name == "" {
			name = dev.ID
		}
		for i := range charts {
			charts[i].ID = "history-" + strconv.Itoa(len(v.DeviceCharts)) + "-" + strings.TrimPrefix(charts[i].ID, "history-")
		}
		v.DeviceCharts = append(v.DeviceCharts, deviceChartsView{DeviceID: dev.ID, Name: name, Charts: charts})
	}
	return ""
}

// groupOrder sorts chart ids ("history-energy-hour") by metric group.
func groupOrder(id string) string {
	for i, g := range historyGroups {
		if strings.Contains(id, "-"+g.key+"-") {
			return strconv.Itoa(i)
		}
	}
	return "9"
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

// apiProblemBanner warns about the job errors that need a person even
// while authorized: Tibber's response format changed (nothing from such
// responses is stored), or Tibber refuses even a freshly refreshed token.
// Nil when no job's last run says so.
func apiProblemBanner(jobs []model.JobSummary, when func(time.Time) string) *bannerView {
	for _, j := range jobs {
		switch {
		case strings.Contains(j.LastError, model.ErrSchemaDrift.Error()):
			return &bannerView{
				Class: "error", Title: model.ErrSchemaDrift.Error(),
				Text: "Tibber answered the " + j.Job + " job with a response tibbersync does not recognise, so nothing from it was stored. " +
					"The next runs try again and fetch what was missed once the format is back; if it stays, tibbersync needs an update.",
				Reason: j.LastError, Since: when(j.LastRunAt),
				ActionURL: "#jobs", ActionLabel: "See the jobs",
			}
		case strings.Contains(j.LastError, model.ErrTokenRefused.Error()):
			return &bannerView{
				Class: "error", Title: model.ErrTokenRefused.Error(),
				Text: "Tibber answers 401 even to an access token it has just issued (consent revoked at Tibber, or a wrong system clock). " +
					"tibbersync does not refresh again until a call succeeds; check the clock, or authorize again.",
				Reason: j.LastError, Since: when(j.LastRunAt),
				ActionURL: "/setup", ActionLabel: "Re-authorize",
			}
		}
	}
	return nil
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

// handleReadyz is 200 when health.Evaluate finds everything healthy (the
// same verdict as `tibbersync status` and the page's banner), else 503; the
// body lists every check.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
	defer cancel()
	v := s.verdict(ctx)
	var b strings.Builder
	for _, c := range v.Checks {
		mark := "ok"
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "%s %s: %s\n", mark, logging.Display(c.Name), logging.Display(c.Detail))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if v.Healthy {
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintf(w, "ready\n%s", b.String())
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = fmt.Fprintf(w, "not ready\n%s", b.String())
}

// verdict reads the summary and judges it.
func (s *Server) verdict(ctx context.Context) health.Verdict {
	if s.opts.Status == nil {
		return health.Verdict{ExitCode: health.CodeError, Checks: []health.Check{{Name: "status", Detail: "no status source in this mode", Code: health.CodeError}}}
	}
	sum, err := s.opts.Status.Summary(ctx)
	if err != nil {
		checks := []health.Check{{Name: "status", Detail: "cannot read data.db: " + err.Error(), Code: health.CodeError}}
		if s.opts.ExtraChecks != nil {
			// The storage checks say why, when data.db is damaged.
			checks = append(checks, s.opts.ExtraChecks(ctx)...)
		}
		return health.Verdict{ExitCode: health.CodeError, Checks: checks}
	}
	return s.judge(ctx, sum, s.clock.Now())
}

// judge is health.Evaluate with the server's job intervals and extra checks.
func (s *Server) judge(ctx context.Context, sum model.Summary, now time.Time) health.Verdict {
	var extra []health.Check
	if s.opts.ExtraChecks != nil {
		extra = s.opts.ExtraChecks(ctx)
	}
	return health.Evaluate(sum, s.opts.JobIntervals, now, extra...)
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
