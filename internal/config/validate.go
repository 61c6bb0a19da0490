package config

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/robfig/cron/v3"

	"github.com/tibbersync/tibbersync/internal/model"
)

// Allowed words for log.level and log.format.
var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"auto", "tint", "logfmt", "json"}
)

// Limits checked by Validate.
const (
	minBackfillDays = 1
	maxBackfillDays = 3650
	minConcurrency  = 1
	maxConcurrency  = 64
)

// Validate checks every key and returns nil or a *ValidationError that lists
// every bad key at once (wrapping ErrConfig). It does not look at the client
// secret: a missing secret is for the caller to judge.
func (c Config) Validate() error {
	var p problems
	c.validate(&p)
	return p.err()
}

func (c Config) validate(p *problems) {
	t := c.Tibber
	checkURL(p, "tibber.redirect_url", t.RedirectURL, true)
	checkSecureURL(p, "tibber.auth_url", t.AuthURL)
	checkSecureURL(p, "tibber.token_url", t.TokenURL)
	checkSecureURL(p, "tibber.userinfo_url", t.UserinfoURL)
	checkSecureURL(p, "tibber.api_url", t.APIURL)
	checkScopes(p, t.Scopes)
	checkDuration(p, "tibber.request_timeout", t.RequestTimeout, false)
	if r := t.RequestsPerSecond; !(r > 0) || math.IsInf(r, 0) {
		p.addf("tibber.requests_per_second", strconv.FormatFloat(r, 'g', -1, 64), ErrOutOfRange, "must be a number greater than 0")
	}
	if t.MaxResponseBytes <= 0 {
		p.addf("tibber.max_response_bytes", strconv.FormatInt(t.MaxResponseBytes, 10), ErrOutOfRange, "must be greater than 0")
	}

	if strings.TrimSpace(c.Storage.Dir) == "" {
		p.addf("storage.dir", c.Storage.Dir, ErrEmpty, "a directory for data.db and secrets/ is required")
	}

	checkListen(p, c.Web)

	checkCron(p, "schedule.devices", c.Schedule.Devices)
	checkCron(p, "schedule.homes", c.Schedule.Homes)
	checkCron(p, "schedule.history", c.Schedule.History)
	checkDuration(p, "schedule.jitter", c.Schedule.Jitter, true)

	checkResolutions(p, c.History.Resolutions)
	if d := c.History.BackfillDays; d < minBackfillDays || d > maxBackfillDays {
		p.addf("history.backfill_days", strconv.Itoa(d), ErrOutOfRange, "must be between %d and %d", minBackfillDays, maxBackfillDays)
	}
	checkDuration(p, "history.lookback", c.History.Lookback, true)

	if n := c.Sync.Concurrency; n < minConcurrency || n > maxConcurrency {
		p.addf("sync.concurrency", strconv.Itoa(n), ErrOutOfRange, "must be between %d and %d", minConcurrency, maxConcurrency)
	}
	checkDuration(p, "sync.cycle_timeout", c.Sync.CycleTimeout, false)

	if c.Notify.WebhookURL != "" {
		checkURL(p, "notify.webhook_url", c.Notify.WebhookURL, false)
	}
	if len(c.Notify.Command) > 0 && strings.TrimSpace(c.Notify.Command[0]) == "" {
		p.addf("notify.command", showValue(c.Notify.Command), ErrEmpty, "the first element must name a program")
	}
	checkDuration(p, "notify.reminder", c.Notify.Reminder, true)

	c.MQTT.validate(p)

	if !slices.Contains(logLevels, c.Log.Level) {
		p.addf("log.level", c.Log.Level, ErrBadValue, "want one of %s", strings.Join(logLevels, ", "))
	}
	if !slices.Contains(logFormats, c.Log.Format) {
		p.addf("log.format", c.Log.Format, ErrBadValue, "want one of %s", strings.Join(logFormats, ", "))
	}
}

// checkURL requires an absolute http or https URL with a host; with
// needPath, also a path other than "/" (the web server's status page owns
// "/", so the OAuth callback needs its own path such as /callback).
func checkURL(p *problems, key, raw string, needPath bool) {
	shown := redactURL(raw)
	if raw == "" {
		p.addf(key, shown, ErrBadURL, "required")
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		p.addf(key, shown, ErrBadURL, "does not parse")
		return
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		p.addf(key, shown, ErrBadURL, "must be an absolute http:// or https:// URL")
	case u.Host == "" || u.Hostname() == "":
		p.addf(key, shown, ErrBadURL, "has no host")
	case u.Port() != "" && !validPort(u.Port()):
		p.addf(key, shown, ErrBadURL, "bad port %q", u.Port())
	case u.Fragment != "" || strings.Contains(raw, "#"):
		p.addf(key, shown, ErrBadURL, "must not have a #fragment")
	case needPath && (u.Path == "" || u.Path == "/"):
		p.addf(key, shown, ErrBadURL, "must have a path such as /callback")
	}
}

// checkSecureURL is checkURL for the URLs that carry the client secret,
// tokens or the login: plain http:// is allowed only to a loopback host (the
// simulator, a local test proxy), never across a network.
func checkSecureURL(p *problems, key, raw string) {
	before := len(p.fields)
	checkURL(p, key, raw, false)
	if len(p.fields) != before {
		return
	}
	u, _ := url.Parse(raw)
	if strings.EqualFold(u.Scheme, "http") && !loopbackName(u.Hostname()) {
		p.addf(key, redactURL(raw), ErrBadURL, "must use https:// (plain http:// only to a loopback host such as 127.0.0.1 or localhost): it carries tokens or the client secret")
	}
}

// loopbackName reports whether host is localhost or a loopback IP.
func loopbackName(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redactURL hides a password and query values (ntfy ?auth=, Gotify
// ?token=) so that an error message never repeats a webhook credential.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.User == nil && u.RawQuery == "") {
		return raw
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"REDACTED"}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= 65535
}

func checkScopes(p *problems, scopes []string) {
	shown := showValue(scopes)
	if len(scopes) == 0 {
		p.addf("tibber.scopes", shown, ErrEmpty, "at least openid and offline_access are needed")
		return
	}
	for _, s := range scopes {
		if s == "" || strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			p.addf("tibber.scopes", shown, ErrBadValue, "scope %q is empty or contains white space", s)
			return
		}
	}
	if !slices.Contains(scopes, "offline_access") {
		p.addf("tibber.scopes", shown, ErrBadValue, "must contain offline_access: without it Tibber issues no refresh token and every sync stops after the first hour")
	}
}

func checkDuration(p *problems, key string, d time.Duration, zeroOK bool) {
	switch {
	case d < 0:
		p.addf(key, d.String(), ErrNegativeDuration, "must be 0 or more")
	case d == 0 && !zeroOK:
		p.addf(key, d.String(), ErrOutOfRange, "must be greater than 0")
	}
}

// checkCron parses a spec the way the scheduler will: robfig/cron's
// standard parser (5 fields, or a descriptor such as "@hourly" or
// "@every 5m").
func checkCron(p *problems, key, spec string) {
	if strings.TrimSpace(spec) == "" {
		p.addf(key, spec, ErrBadCron, "empty")
		return
	}
	if err := parseCron(spec); err != nil {
		p.add(key, spec, fmt.Errorf("%w: %w", ErrBadCron, err))
	}
}

// parseCron guards against a parser panic on odd input: a config file must
// never crash the daemon.
func parseCron(spec string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unparsable: %v", r)
		}
	}()
	if rest, ok := strings.CutPrefix(strings.TrimSpace(spec), "@every "); ok {
		// cron silently turns "@every -5m" or "@every 0s" into every second.
		if d, perr := time.ParseDuration(strings.TrimSpace(rest)); perr == nil && d <= 0 {
			return fmt.Errorf("@every needs a positive duration")
		}
	}
	_, err = cron.ParseStandard(spec)
	return err
}

func checkResolutions(p *problems, rs []string) {
	shown := showValue(rs)
	if len(rs) == 0 {
		p.addf("history.resolutions", shown, ErrEmpty, "list at least one of quarterHour, hour, day, month")
		return
	}
	var bad []string
	for _, r := range rs {
		if !model.ValidResolution(r) {
			bad = append(bad, strconv.Quote(r))
		}
	}
	if len(bad) > 0 {
		p.addf("history.resolutions", shown, ErrUnknownResolution, "%s (want quarterHour, hour, day or month)", strings.Join(bad, ", "))
	}
}

// checkListen requires host:port, and a loopback host unless allow_remote
// is set (reliability.md R2: the setup page must not be on the LAN by
// accident).
func checkListen(p *problems, w Web) {
	host, port, err := net.SplitHostPort(w.Listen)
	if err != nil {
		p.addf("web.listen", w.Listen, ErrBadValue, "want host:port such as 127.0.0.1:8765")
		return
	}
	if !validPort(port) {
		p.addf("web.listen", w.Listen, ErrBadValue, "bad port %q", port)
		return
	}
	if !w.AllowRemote && !isLoopback(host) {
		p.addf("web.listen", w.Listen, ErrBadValue, "not a loopback address; set web.allow_remote = true to listen on the network")
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
