package web

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
)

// ClientManageURL is Tibber's page for registering an OAuth2 client
// (tibber-data-api.md §1).
const ClientManageURL = "https://data-api.tibber.com/clients/manage/"

// requiredScopes is the group Tibber's registration UI always includes
// (tibber-data-api.md §2.2).
var requiredScopes = []string{"openid", "profile", "email", "offline_access", "data-api-user-read"}

// scopeInfo says what each scope gives, for the setup page.
var scopeInfo = map[string]string{
	"openid":                       "sign-in (always included)",
	"profile":                      "name (always included)",
	"email":                        "account email (always included)",
	"offline_access":               "a refresh token, so tibbersync keeps working (always included)",
	"data-api-user-read":           "basic user context (always included)",
	"data-api-homes-read":          "your homes",
	"data-api-vehicles-read":       "vehicles",
	"data-api-chargers-read":       "EV chargers",
	"data-api-thermostats-read":    "thermostats, heat pumps, heaters",
	"data-api-energy-systems-read": "home batteries and energy systems",
	"data-api-inverters-read":      "inverters (legacy category)",
	"data-api-meters-read":         "live meter stream (Pulse, Watty)",
}

// categoryNames are the device categories as the pages name them.
var categoryNames = map[model.Category]string{
	model.CategoryVehicle:      "Vehicles",
	model.CategoryCharger:      "EV chargers",
	model.CategoryThermostat:   "Thermostats and heat pumps",
	model.CategoryEnergySystem: "Home batteries and energy systems",
	model.CategoryInverter:     "Inverters",
}

type scopeView struct {
	Scope string
	Gives string
}

type categoryView struct {
	Name  string
	Scope string
}

func categoryViews(cats []model.Category) []categoryView {
	out := make([]categoryView, 0, len(cats))
	for _, c := range cats {
		name := categoryNames[c]
		if name == "" {
			name = string(c)
		}
		out = append(out, categoryView{Name: name, Scope: model.CategoryScopes[c]})
	}
	return out
}

// setupView is the /setup page.
type setupView struct {
	Title            string
	RedirectURL      string
	RedirectWarnings []string
	ManageURL        string
	ClientID         string
	ClientConfigured bool
	ConfigHint       string
	RequiredScopes   []scopeView
	TickScopes       []scopeView
	ScopeWarnings    []string
	State            string
	StateReason      string
	Remote           bool
	TunnelCommand    string
}

func (s *Server) handleSetup(w http.ResponseWriter, r *http.Request) {
	_, localPort := s.localAddr(r)
	v := setupView{
		Title:            "Connect tibbersync to Tibber",
		RedirectURL:      s.opts.RedirectURL,
		RedirectWarnings: s.redirectWarnings(localPort),
		ManageURL:        ClientManageURL,
		ClientID:         s.opts.ClientID,
		ClientConfigured: s.opts.ClientConfigured && s.opts.Flow != nil,
		ConfigHint:       s.setupHint(),
		Remote:           s.remote,
		TunnelCommand:    "ssh -L " + localPort + ":127.0.0.1:" + localPort + " USER@THIS-HOST",
	}
	for _, sc := range s.opts.Scopes {
		sv := scopeView{Scope: sc, Gives: scopeInfo[sc]}
		if slices.Contains(requiredScopes, sc) {
			v.RequiredScopes = append(v.RequiredScopes, sv)
		} else {
			v.TickScopes = append(v.TickScopes, sv)
		}
	}
	if len(s.opts.Scopes) > 0 && !slices.Contains(s.opts.Scopes, "offline_access") {
		v.ScopeWarnings = append(v.ScopeWarnings, "tibber.scopes lacks offline_access: Tibber then issues no refresh token, and tibbersync stops working when the first access token expires.")
	}
	if missing := model.MissingCategories(s.opts.Scopes); len(s.opts.Scopes) > 0 && len(missing) > 0 {
		var names []string
		for _, c := range categoryViews(missing) {
			names = append(names, c.Name)
		}
		v.ScopeWarnings = append(v.ScopeWarnings, "tibber.scopes does not request every category, so these devices will stay invisible: "+strings.Join(names, ", ")+".")
	}
	if s.opts.Status != nil {
		ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
		defer cancel()
		if sum, err := s.opts.Status.Summary(ctx); err == nil {
			v.State = string(sum.Auth.State)
			v.StateReason = sum.Auth.Reason
		}
	}
	s.render(w, http.StatusOK, "setup.html", v)
}

// redirectWarnings explains problems with the configured redirect URL that
// Tibber or the browser will trip over.
func (s *Server) redirectWarnings(localPort string) []string {
	u := s.redirect
	if u == nil {
		return []string{"tibber.redirect_url is empty. Set it (default http://localhost:8765/callback) and register the same string at Tibber."}
	}
	var out []string
	host := u.Hostname()
	switch {
	case host == "localhost":
	case isLoopbackHost(host):
		out = append(out, "The redirect URL uses "+host+". Every working registration seen so far uses localhost; Tibber may refuse an IP literal.")
	case u.Scheme == "http":
		out = append(out, "Tibber accepts plain http redirect URLs only for localhost; this one will be refused.")
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	if isLoopbackHost(host) && port != localPort {
		out = append(out, "After you consent, Tibber sends your browser to port "+port+", but tibbersync listens on port "+localPort+
			". The browser will not reach tibbersync there: copy the address it lands on and paste it in step 3.")
	}
	return out
}

// handleStart creates a fresh attempt and sends the browser to Tibber.
func (s *Server) handleStart(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		// HEAD (link prefetchers) must not replace a pending attempt.
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		// Another site must not be able to restart (and so cancel) an
		// attempt in progress.
		s.renderMessage(w, http.StatusForbidden, messageView{
			Title:   "Start from the setup page",
			Message: "Authorization can only be started from tibbersync's own setup page.",
			Links:   []link{{URL: "/setup", Label: "Open setup"}},
		})
		return
	}
	if !s.opts.ClientConfigured || s.opts.Flow == nil {
		s.renderMessage(w, http.StatusConflict, messageView{
			Title:   "Client not configured",
			Message: "tibbersync has no complete Tibber client yet, so it cannot start authorization.",
			Detail:  s.setupHint(),
			Links:   []link{{URL: "/setup", Label: "Back to setup"}},
		})
		return
	}
	authURL, err := s.opts.Flow.Start(r.Context())
	if err == nil {
		var u *url.URL
		u, err = url.Parse(authURL)
		if err == nil && (u.Host == "" || (u.Scheme != "https" && u.Scheme != "http")) {
			err = errors.New("authorize URL is not absolute")
		}
	}
	if err != nil {
		msg := userMessage(err, nil)
		s.log.Error("start authorization", "err", msg)
		s.renderMessage(w, statusFor(err, http.StatusInternalServerError), messageView{
			Title:   "Could not start authorization",
			Message: msg,
			Links:   []link{{URL: "/setup", Label: "Back to setup"}},
		})
		return
	}
	s.log.Info("authorization started; waiting for the redirect back from Tibber")
	// No body: the URL carries the state, and there is no need to repeat it.
	w.Header().Set("Location", authURL)
	w.WriteHeader(http.StatusFound)
}

func (s *Server) setupHint() string {
	if s.opts.ConfigHint != "" {
		return s.opts.ConfigHint
	}
	return "Set tibber.client_id and the client secret (tibber.client_secret_file or the systemd credential client_secret), then restart tibbersync."
}

// handleCallback completes the attempt with the redirect from Tibber.
func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.complete(w, r.URL, "callback")
}

// handlePaste completes the attempt with a URL the user copied from the
// browser's address bar.
func (s *Server) handlePaste(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		s.renderMessage(w, http.StatusBadRequest, messageView{
			Title:   "Could not read the form",
			Message: "The pasted text could not be read (is it longer than 16 KiB?).",
			Links:   []link{{URL: "/setup", Label: "Back to setup"}},
		})
		return
	}
	raw := strings.TrimSpace(r.PostForm.Get("url"))
	parse := s.opts.ParseRedirect
	if parse == nil {
		parse = url.Parse
	}
	u, err := parse(raw)
	if raw == "" || err != nil || u.RawQuery == "" {
		s.renderMessage(w, http.StatusBadRequest, messageView{
			Title:   "Not a redirect address",
			Message: "Paste the complete address from the browser's address bar after consenting at Tibber. It starts with your redirect URL and contains ?code= and &state=.",
			Links:   []link{{URL: "/setup", Label: "Back to setup"}},
		})
		return
	}
	s.complete(w, u, "paste")
}

// successView is the page after a completed authorization.
type successView struct {
	Title         string
	Email         string
	GrantedScopes []string
	Invisible     []categoryView
	// SyncStarted says that OnAuthorized kicked off the jobs.
	SyncStarted bool
}

// complete runs Flow.Complete on a context of its own, so that a browser
// that goes away does not abort the one-time code exchange (R3).
func (s *Server) complete(w http.ResponseWriter, redirected *url.URL, via string) {
	if !s.opts.ClientConfigured || s.opts.Flow == nil {
		s.renderMessage(w, http.StatusConflict, messageView{
			Title:   "Client not configured",
			Message: "tibbersync has no complete Tibber client, so there is no authorization to complete.",
			Detail:  s.setupHint(),
		})
		return
	}
	ctx, cancel := context.WithTimeout(s.baseCtx, s.completeTimeout)
	defer cancel()
	st, err := s.opts.Flow.Complete(ctx, redirected)
	if err != nil {
		msg := userMessage(err, redirected)
		s.log.Warn("authorization failed", "via", via, "err", msg)
		s.renderMessage(w, statusFor(err, http.StatusBadRequest), messageView{
			Title:   "Authorization failed",
			Message: msg,
			Detail:  "Nothing was changed. Start again from the setup page; each attempt works only once and only for a few minutes.",
			Links:   []link{{URL: "/setup", Label: "Back to setup"}, {URL: "/", Label: "Status"}},
		})
		return
	}
	s.log.Info("authorization completed", "via", via, "email", st.Email, "granted_scopes", strings.Join(st.GrantedScopes, " "))
	if s.opts.OnAuthorized != nil {
		s.opts.OnAuthorized(st)
	}
	var invisible []categoryView
	if len(st.GrantedScopes) > 0 { // unknown scopes name no category as missing
		invisible = categoryViews(model.MissingCategories(st.GrantedScopes))
	}
	s.render(w, http.StatusOK, "success.html", successView{
		Title:         "Connected to Tibber",
		Email:         st.Email,
		GrantedScopes: st.GrantedScopes,
		Invisible:     invisible,
		SyncStarted:   s.opts.OnAuthorized != nil,
	})
}

// secretParams are query parameters whose values must never reach a page or
// a log line.
var secretParams = []string{"code", "state", "session_state", "id_token", "access_token", "refresh_token"}

// userMessage turns err into the text shown to the user: UserMessage() when
// the error has one, else Error(). Values of secret query parameters of
// redirected are cut out, should an error ever carry one.
func userMessage(err error, redirected *url.URL) string {
	msg := err.Error()
	var um UserMessager
	if errors.As(err, &um) {
		msg = um.UserMessage()
	} else if errors.Is(err, context.DeadlineExceeded) {
		msg = "Tibber did not answer in time. Start again from the setup page."
	}
	if redirected == nil {
		return msg
	}
	q := redirected.Query()
	msg = logging.StripInvisible(msg)
	for _, k := range secretParams {
		for _, v := range q[k] {
			if len(v) < 4 {
				continue
			}
			msg = strings.ReplaceAll(msg, v, "REDACTED")
			msg = strings.ReplaceAll(msg, url.QueryEscape(v), "REDACTED")
		}
	}
	return msg
}

// statusFor picks the status code of an error page.
func statusFor(err error, fallback int) int {
	var sc StatusCoder
	if errors.As(err, &sc) {
		if c := sc.HTTPStatus(); c >= 400 && c <= 599 {
			return c
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout
	}
	return fallback
}
