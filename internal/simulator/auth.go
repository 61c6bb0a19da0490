package simulator

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// codeRecord is an issued authorization code.
type codeRecord struct {
	clientID, redirectURI, challenge, nonce string
	scopes                                  []string
	issued                                  time.Time
	used                                    bool
	grant                                   *grant // the grant it was redeemed for
}

// authRequest is an authorize request waiting for consent.
type authRequest struct {
	id                                      string
	clientID, redirectURI, state, challenge string
	nonce                                   string
	scopes                                  []string
	created                                 time.Time
}

// grant is one authorization (a refresh-token family).
type grant struct {
	id       string
	clientID string
	scopes   []string
	created  time.Time
	authTime time.Time
	revoked  bool
	current  string // the refresh token currently valid ("" without offline_access)
}

// refreshRecord is one refresh token ever issued.
type refreshRecord struct {
	grant     *grant
	issued    time.Time
	lastUsed  time.Time
	rotated   bool
	rotatedAt time.Time
	// successor is the response given when this token was rotated out, for
	// answering again within the grace window.
	successor *TokenResponse
}

// errorPage writes Tibber's authorize error page (§2.5): 400 text/html, no redirect.
func (s *Simulator) errorPage(w http.ResponseWriter, ep, reason string) {
	s.mu.Lock()
	s.requestSeq++
	seq := s.requestSeq
	s.eventLocked("authorize-error", ep, reason)
	s.mu.Unlock()
	id := fmt.Sprintf("0HN%s:%08X", strings.ToUpper(s.randHex(5)), seq)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(400)
	errorTmpl.Execute(w, map[string]string{"RequestID": id, "Reason": reason})
}

var errorTmpl = template.Must(template.New("error").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Error</title></head>
<body><div class="error-page"><div class="lead"><h1>Error</h1></div>
<div class="alert alert-danger">Sorry, there was an error : invalid_request</div>
<div class="request-id">Request Id: {{.RequestID}}</div>
<!-- simulator: {{.Reason}} -->
</div></body></html>
`))

var consentTmpl = template.Must(template.New("consent").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Tibber – Consent</title></head>
<body><div class="page-consent">
<h1>{{.Client}} is requesting your permission</h1>
<p>Signed in as {{.Email}}. Uncheck nothing: the simulator grants what is listed.</p>
<form method="post" action="/connect/consent" id="consent">
<input type="hidden" name="request" value="{{.Request}}">
<ul class="scopes">{{range .Scopes}}
<li class="scope" data-scope="{{.}}">{{.}}</li>{{end}}
</ul>
<button type="submit" name="decision" value="approve" id="approve">Yes, Allow</button>
<button type="submit" name="decision" value="deny" id="deny">No, Do Not Allow</button>
</form></div></body></html>
`))

// knownScope reports whether the authorization server knows the scope name.
func knownScope(s string) bool { return slices.Contains(AllScopes, s) }

// grantable filters requested scopes: unknown names are an error; names the
// client is not registered for are dropped silently (§11 #10).
func (s *Simulator) grantable(requested []string) ([]string, string) {
	var out []string
	for _, sc := range requested {
		if !knownScope(sc) {
			return nil, fmt.Sprintf("unknown scope %q", sc)
		}
		if slices.Contains(s.opts.RegisteredScopes, sc) && !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, ""
}

// validChallenge checks the RFC 7636 form of a code challenge or verifier.
func validPKCEValue(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, c := range v {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// S256Challenge returns the RFC 7636 S256 challenge of a verifier.
func S256Challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (s *Simulator) handleAuthorize(w *bufWriter, rc *reqCtx) {
	r := rc.req
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err == nil && r.PostForm.Get("request") != "" {
			s.handleConsent(w, rc)
			return
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		s.errorPage(w, rc.endpoint, "method not allowed")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, rc.endpoint, "unparsable request")
		return
	}
	q := r.Form
	s.mu.Lock()
	deleted := s.deleted
	s.mu.Unlock()
	if q.Get("client_id") != s.opts.ClientID || deleted {
		s.errorPage(w, rc.endpoint, "unknown client_id")
		return
	}
	redirect := q.Get("redirect_uri")
	if !slices.Contains(s.opts.RedirectURIs, redirect) {
		s.errorPage(w, rc.endpoint, "redirect_uri does not match a registered URI")
		return
	}
	if q.Get("response_type") != "code" {
		s.errorPage(w, rc.endpoint, "unsupported response_type")
		return
	}
	scopes, bad := s.grantable(strings.Fields(q.Get("scope")))
	if bad != "" {
		s.errorPage(w, rc.endpoint, bad)
		return
	}
	if len(scopes) == 0 {
		s.errorPage(w, rc.endpoint, "no scope")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "" && method != "":
		s.errorPage(w, rc.endpoint, "code_challenge_method without code_challenge")
		return
	case challenge != "" && method != "S256":
		s.errorPage(w, rc.endpoint, "code_challenge_method must be S256")
		return
	case challenge != "" && !validPKCEValue(challenge):
		s.errorPage(w, rc.endpoint, "malformed code_challenge")
		return
	}
	ar := &authRequest{
		clientID: s.opts.ClientID, redirectURI: redirect, state: q.Get("state"),
		challenge: challenge, nonce: q.Get("nonce"), scopes: scopes, created: s.now(),
	}
	session := s.sessionCookie(w, r)
	switch {
	case s.opts.Deny:
		s.event("consent-denied", rc.endpoint, "Options.Deny")
		s.redirectError(w, ar)
	case s.opts.AutoConsent:
		s.redirectCode(w, ar, session)
	default:
		ar.id = s.randHex(16)
		s.mu.Lock()
		s.pruneLocked()
		s.pending[ar.id] = ar
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(200)
		consentTmpl.Execute(w, map[string]any{
			"Client": s.opts.ClientID, "Email": s.acct.user().email, "Request": ar.id, "Scopes": scopes,
		})
	}
}

// sessionCookie returns the browser session id, setting the cookie if needed.
func (s *Simulator) sessionCookie(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie("idsrv.session"); err == nil && c.Value != "" {
		return c.Value
	}
	v := strings.ToUpper(s.randHex(16))
	http.SetCookie(w, &http.Cookie{Name: "idsrv.session", Value: v, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return v
}

func (s *Simulator) handleConsent(w *bufWriter, rc *reqCtx) {
	r := rc.req
	if r.Method != http.MethodPost {
		s.errorPage(w, rc.endpoint, "consent must be posted")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, rc.endpoint, "unparsable consent")
		return
	}
	id := r.PostForm.Get("request")
	s.mu.Lock()
	ar := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if ar == nil || s.now().Sub(ar.created) > 10*time.Minute {
		s.errorPage(w, rc.endpoint, "unknown or expired consent request")
		return
	}
	switch r.PostForm.Get("decision") {
	case "approve":
		s.redirectCode(w, ar, s.sessionCookie(w, r))
	case "deny":
		s.event("consent-denied", rc.endpoint, "user denied")
		s.redirectError(w, ar)
	default:
		s.errorPage(w, rc.endpoint, "missing decision")
	}
}

func appendQuery(base string, v url.Values) string {
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + v.Encode()
}

func (s *Simulator) redirectError(w http.ResponseWriter, ar *authRequest) {
	v := url.Values{"error": {"access_denied"}}
	if ar.state != "" {
		v.Set("state", ar.state)
	}
	w.Header().Set("Location", appendQuery(ar.redirectURI, v))
	w.WriteHeader(http.StatusFound)
}

func (s *Simulator) redirectCode(w http.ResponseWriter, ar *authRequest, session string) {
	code := s.newCode(ar.scopes, ar.redirectURI, ar.challenge, ar.nonce)
	salt := s.randHex(8)
	sum := sha256.Sum256([]byte(ar.clientID + s.opts.RedirectURIs[0] + session + salt))
	v := url.Values{}
	v.Set("code", code)
	v.Set("scope", strings.Join(ar.scopes, " "))
	if ar.state != "" {
		v.Set("state", ar.state)
	}
	v.Set("session_state", base64.RawURLEncoding.EncodeToString(sum[:])+"."+salt)
	w.Header().Set("Location", appendQuery(ar.redirectURI, v))
	w.WriteHeader(http.StatusFound)
}

// newCode stores and returns a fresh authorization code.
func (s *Simulator) newCode(scopes []string, redirectURI, challenge, nonce string) string {
	code := strings.ToUpper(s.randHex(32))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked()
	s.codes[code] = &codeRecord{
		clientID: s.opts.ClientID, redirectURI: redirectURI, challenge: challenge, nonce: nonce,
		scopes: scopes, issued: s.now(),
	}
	s.stats.CodesIssued++
	s.eventLocked("code-issued", "authorize", "scopes="+strings.Join(scopes, " "))
	return code
}

// pruneLocked forgets codes and consent requests that can no longer be used
// (used codes are kept for reuse detection for a day).
func (s *Simulator) pruneLocked() {
	now := s.now()
	for k, c := range s.codes {
		if now.Sub(c.issued) > s.opts.CodeTTL+24*time.Hour {
			delete(s.codes, k)
		}
	}
	for k, a := range s.pending {
		if now.Sub(a.created) > time.Hour {
			delete(s.pending, k)
		}
	}
}

// IssueCode returns a valid authorization code without the browser step.
// Scopes are filtered like an authorize request (unknown and unregistered
// names dropped); an empty redirectURI means the first registered one.
func (s *Simulator) IssueCode(scopes []string, redirectURI, codeChallenge string) string {
	var granted []string
	for _, sc := range scopes {
		if knownScope(sc) && slices.Contains(s.opts.RegisteredScopes, sc) && !slices.Contains(granted, sc) {
			granted = append(granted, sc)
		}
	}
	if redirectURI == "" {
		redirectURI = s.opts.RedirectURIs[0]
	}
	return s.newCode(granted, redirectURI, codeChallenge, "")
}

// tokenError writes an RFC 6749 error body.
func (s *Simulator) tokenError(w http.ResponseWriter, status int, code, desc string) {
	if status == 401 {
		w.Header().Set("WWW-Authenticate", `Basic realm="thewall"`)
	}
	s.writeJSON(w, status, OAuthError{Error: code, ErrorDescription: desc})
}

func (s *Simulator) handleToken(w *bufWriter, rc *reqCtx) {
	r := rc.req
	if r.Method != http.MethodPost {
		s.tokenError(w, 400, "invalid_request", "The token endpoint takes POST.")
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		s.tokenError(w, 400, "invalid_request", "The body must be application/x-www-form-urlencoded.")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.tokenError(w, 400, "invalid_request", "Unparsable form body.")
		return
	}
	f := r.PostForm
	grantType := f.Get("grant_type")
	s.mu.Lock()
	s.stats.TokenRequests[grantType]++
	s.mu.Unlock()

	clientID, secret := f.Get("client_id"), f.Get("client_secret")
	if user, pass, ok := r.BasicAuth(); ok {
		if !s.opts.AcceptBasic {
			s.clientError(w, rc, "HTTP Basic client authentication is not accepted.")
			return
		}
		if clientID != "" || secret != "" {
			s.tokenError(w, 400, "invalid_request", "Use one client authentication method.")
			return
		}
		clientID, _ = url.QueryUnescape(user)
		secret, _ = url.QueryUnescape(pass)
	}
	rlKey := clientID
	if rlKey == "" {
		rlKey = "anonymous"
	}
	if s.rateLimited(w, rc, rlKey) {
		return
	}
	s.mu.Lock()
	deleted := s.deleted
	s.mu.Unlock()
	switch {
	case clientID == "" || secret == "":
		s.clientError(w, rc, "Client credentials are required.")
		return
	case clientID != s.opts.ClientID || deleted ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret)) != 1:
		s.clientError(w, rc, "Unknown client or wrong secret.")
		return
	}
	switch grantType {
	case "":
		s.tokenError(w, 400, "invalid_request", "grant_type is required.")
	case "authorization_code":
		s.codeGrant(w, rc, f)
	case "refresh_token":
		s.refreshGrant(w, rc, f)
	default:
		s.tokenError(w, 400, "unsupported_grant_type", "")
	}
}

func (s *Simulator) clientError(w http.ResponseWriter, rc *reqCtx, desc string) {
	s.event("invalid-client", rc.endpoint, desc)
	s.tokenError(w, s.opts.InvalidClientStatus, "invalid_client", "")
}

func (s *Simulator) codeGrant(w http.ResponseWriter, rc *reqCtx, f url.Values) {
	code, redirect, verifier := f.Get("code"), f.Get("redirect_uri"), f.Get("code_verifier")
	if code == "" || redirect == "" {
		s.tokenError(w, 400, "invalid_request", "code and redirect_uri are required.")
		return
	}
	now := s.now()
	s.mu.Lock()
	c := s.codes[code]
	var reason string
	switch {
	case c == nil:
		reason = "unknown code"
	case c.used:
		reason = "code already used"
		s.stats.CodesReused++
		if c.grant != nil && !s.opts.DisableFamilyRevocation && !c.grant.revoked {
			c.grant.revoked = true
			s.stats.GrantsRevoked++
			s.eventLocked("grant-revoked", rc.endpoint, "authorization code reused: grant "+c.grant.id)
		}
	case now.Sub(c.issued) >= s.opts.CodeTTL:
		reason = "code expired"
		s.stats.CodesExpired++
	case c.clientID != s.opts.ClientID:
		reason = "code issued to another client"
	case c.redirectURI != redirect:
		reason = "redirect_uri differs from the authorize request"
	case c.challenge != "" && verifier == "":
		reason = "code_verifier missing"
	case c.challenge != "" && (!validPKCEValue(verifier) || S256Challenge(verifier) != c.challenge):
		reason = "code_verifier does not match the challenge"
	}
	if reason != "" {
		s.eventLocked("code-rejected", rc.endpoint, reason)
		s.mu.Unlock()
		s.tokenError(w, 400, "invalid_grant", "")
		return
	}
	c.used = true
	s.stats.CodesRedeemed++
	g := &grant{id: s.randHex(8), clientID: c.clientID, scopes: c.scopes, created: now, authTime: c.issued}
	c.grant = g
	s.grants = append(s.grants, g)
	var refresh string
	if slices.Contains(g.scopes, ScopeOfflineAccess) {
		refresh = strings.ToUpper(s.randHex(32))
		g.current = refresh
		s.refresh[refresh] = &refreshRecord{grant: g, issued: now, lastUsed: now}
	}
	s.eventLocked("code-redeemed", rc.endpoint, "grant "+g.id)
	resp := s.tokenResponseLocked(rc, g, refresh, c.nonce)
	s.mu.Unlock()
	s.writeJSON(w, 200, resp)
}

func (s *Simulator) refreshGrant(w http.ResponseWriter, rc *reqCtx, f url.Values) {
	tok := f.Get("refresh_token")
	if tok == "" {
		s.tokenError(w, 400, "invalid_request", "refresh_token is required.")
		return
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.refresh[tok]
	reject := func(reason string) {
		s.eventLocked("refresh-rejected", rc.endpoint, reason)
		s.tokenError(w, 400, "invalid_grant", "")
	}
	if rec == nil {
		reject("unknown refresh token")
		return
	}
	g := rec.grant
	switch {
	case g.revoked:
		reject("grant " + g.id + " revoked")
		return
	case g.clientID != s.opts.ClientID:
		reject("refresh token of another client")
		return
	}
	expiry := g.created.Add(s.opts.RefreshTTL)
	if s.opts.RefreshExpirySliding {
		expiry = rec.lastUsed.Add(s.opts.RefreshTTL)
	}
	if !now.Before(expiry) {
		reject("refresh token expired")
		return
	}
	if rec.rotated {
		if s.opts.ReuseGrace > 0 && now.Sub(rec.rotatedAt) <= s.opts.ReuseGrace &&
			rec.successor != nil && rec.successor.RefreshToken == g.current {
			s.stats.RefreshReuseGrace++
			s.eventLocked("refresh-reuse-grace", rc.endpoint, "grant "+g.id)
			s.writeJSON(w, 200, *rec.successor)
			return
		}
		s.stats.RefreshReuse++
		s.eventLocked("refresh-reuse", rc.endpoint, "rotated-out refresh token presented: grant "+g.id)
		if !s.opts.DisableFamilyRevocation {
			g.revoked = true
			s.stats.GrantsRevoked++
			s.eventLocked("grant-revoked", rc.endpoint, "refresh token reuse: grant "+g.id)
		}
		reject("refresh token already rotated")
		return
	}
	if sc := f.Get("scope"); sc != "" {
		req := strings.Fields(sc)
		for _, x := range req {
			if !slices.Contains(g.scopes, x) {
				s.eventLocked("refresh-rejected", rc.endpoint, "scope beyond the grant")
				s.tokenError(w, 400, "invalid_scope", "")
				return
			}
		}
	}
	omit := s.opts.OmitRefreshToken || rc.faultKind() == KindOmitRefreshToken
	rotate := !s.opts.DisableRotation && !omit
	rec.lastUsed = now
	refresh := tok
	if rotate {
		refresh = strings.ToUpper(s.randHex(32))
		s.refresh[refresh] = &refreshRecord{grant: g, issued: now, lastUsed: now}
		g.current = refresh
		rec.rotated = true
		rec.rotatedAt = now
	}
	s.stats.Refreshes++
	send := refresh
	if omit {
		send = ""
	}
	resp := s.tokenResponseLocked(rc, g, send, "")
	if rotate {
		cp := resp
		rec.successor = &cp
		s.eventLocked("refresh-rotated", rc.endpoint, "grant "+g.id)
	} else {
		s.eventLocked("refresh-reused-token", rc.endpoint, "grant "+g.id+" (no rotation)")
	}
	s.writeJSON(w, 200, resp)
}

func (rc *reqCtx) faultKind() string {
	if rc.fault == nil {
		return ""
	}
	return rc.fault.Kind
}

// tokenResponseLocked mints the access and id tokens for g; s.mu is held.
func (s *Simulator) tokenResponseLocked(rc *reqCtx, g *grant, refresh, nonce string) TokenResponse {
	now := s.now()
	u := s.acct.user()
	iss := s.baseOverride
	if iss == "" {
		scheme := "http"
		if rc.req.TLS != nil {
			scheme = "https"
		}
		iss = scheme + "://" + rc.req.Host
	}
	at := signJWT(s.jwtKey, "at+jwt", accessClaims{
		Iss: iss, Sub: u.id, ClientID: g.clientID, Scope: g.scopes,
		Iat: now.Unix(), Nbf: now.Unix(), Exp: now.Add(s.opts.AccessTTL).Unix(),
		Jti: strings.ToUpper(s.randHex(16)), Sid: g.id,
	})
	idc := idClaims{Iss: iss, Sub: u.id, Aud: g.clientID, Iat: now.Unix(), Exp: now.Add(5 * time.Minute).Unix(), AuthTime: g.authTime.Unix(), Nonce: nonce}
	if slices.Contains(g.scopes, ScopeEmail) {
		idc.Email = u.email
	}
	if slices.Contains(g.scopes, ScopeProfile) {
		idc.Name = u.name
	}
	var idTok string
	if slices.Contains(g.scopes, ScopeOpenID) {
		idTok = signJWT(s.jwtKey, "JWT", idc)
	}
	secs := int(s.opts.AccessTTL / time.Second)
	var expiresIn any = secs
	if s.opts.ExpiresInAsString || rc.faultKind() == KindExpiresInString {
		expiresIn = fmt.Sprint(secs)
	}
	s.stats.TokensIssued++
	scope := strings.Join(g.scopes, " ")
	if s.opts.OmitScope {
		scope = ""
	}
	return TokenResponse{
		AccessToken: at, RefreshToken: refresh, ExpiresIn: expiresIn, TokenType: "Bearer",
		Scope: scope, IDToken: idTok,
	}
}

// CurrentRefreshToken returns the refresh token currently valid for the
// latest grant, or "" if there is none, it was revoked, or it expired.
func (s *Simulator) CurrentRefreshToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.grants) == 0 {
		return ""
	}
	g := s.grants[len(s.grants)-1]
	if g.revoked || g.current == "" || s.deleted {
		return ""
	}
	rec := s.refresh[g.current]
	expiry := g.created.Add(s.opts.RefreshTTL)
	if s.opts.RefreshExpirySliding {
		expiry = rec.lastUsed.Add(s.opts.RefreshTTL)
	}
	if !s.now().Before(expiry) {
		return ""
	}
	return g.current
}

// RevokeGrants revokes every grant, as a user revoking access in the Tibber
// account UI: refreshes get invalid_grant; issued access tokens stay valid
// until they expire (§2.12).
func (s *Simulator) RevokeGrants() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.grants {
		if !g.revoked {
			g.revoked = true
			s.stats.GrantsRevoked++
			s.eventLocked("grant-revoked", "", "revoked by the user: grant "+g.id)
		}
	}
}

// DeleteClient deletes the client at Tibber: every token request gets
// invalid_client, authorize shows the error page, and the Data API answers
// 401 to its tokens.
func (s *Simulator) DeleteClient() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleted = true
	s.eventLocked("client-deleted", "", s.opts.ClientID)
}

// authenticate checks the bearer token; on failure it writes 401 and
// returns false.
func (s *Simulator) authenticate(w http.ResponseWriter, rc *reqCtx) (accessClaims, bool) {
	h := rc.req.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(h, " ")
	fail := func(challenge, detail string) (accessClaims, bool) {
		s.mu.Lock()
		s.stats.Unauthorized++
		s.eventLocked("unauthorized", rc.endpoint, detail)
		s.mu.Unlock()
		w.Header().Set("WWW-Authenticate", challenge)
		s.problem(w, 401, detail)
		return accessClaims{}, false
	}
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return fail("Bearer", "A bearer token is required.")
	}
	c, err := verifyAccessToken(s.jwtKey, strings.TrimSpace(tok), s.now())
	if err != nil {
		return fail(fmt.Sprintf("Bearer error=\"invalid_token\", error_description=%q", err.Error()), err.Error())
	}
	s.mu.Lock()
	deleted := s.deleted
	s.mu.Unlock()
	if deleted || c.ClientID != s.opts.ClientID {
		return fail(`Bearer error="invalid_token", error_description="The client is unknown"`, "The client is unknown.")
	}
	if rc.faultKind() == KindUnauthorizedOnce {
		return fail(`Bearer error="invalid_token"`, "The token is invalid.")
	}
	return c, true
}

func (s *Simulator) handleUserinfo(w *bufWriter, rc *reqCtx) {
	if rc.req.Method != http.MethodGet && rc.req.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	c, ok := s.authenticate(w, rc)
	if !ok {
		return
	}
	if !c.has(ScopeOpenID) {
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
		w.WriteHeader(http.StatusForbidden)
		return
	}
	u := s.acct.user()
	info := UserInfo{Sub: u.id}
	if c.has(ScopeEmail) {
		info.Email = u.email
	}
	if c.has(ScopeProfile) {
		info.Name = u.name
	}
	s.writeJSON(w, 200, info)
}

func (s *Simulator) handleDiscovery(w *bufWriter, rc *reqCtx) {
	base := s.baseURL(rc.req)
	auth := []string{"client_secret_post"}
	if s.opts.AcceptBasic {
		auth = append(auth, "client_secret_basic")
	}
	s.writeJSON(w, 200, map[string]any{
		"issuer":                                base,
		"authorization_endpoint":                base + "/connect/authorize",
		"token_endpoint":                        base + "/connect/token",
		"userinfo_endpoint":                     base + "/connect/userinfo",
		"scopes_supported":                      AllScopes,
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": auth,
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"HS256"},
	})
}
