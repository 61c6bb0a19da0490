package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
)

// tokenResponse is a decoded RFC 6749 §5.1/§5.2 token response.
type tokenResponse struct {
	AccessToken      logging.Secret
	RefreshToken     logging.Secret
	TokenType        string
	ExpiresIn        time.Duration // 0 when absent
	Scope            []string      // nil when absent
	ErrorCode        string
	ErrorDescription string
}

// wireToken is the JSON shape of a token response.
type wireToken struct {
	AccessToken      string          `json:"access_token"`
	RefreshToken     string          `json:"refresh_token"`
	TokenType        string          `json:"token_type"`
	ExpiresIn        json.RawMessage `json:"expires_in"`
	Scope            json.RawMessage `json:"scope"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
}

// decodeTokenResponse decodes a token response body, JSON or form-encoded
// (by Content-Type, as x/oauth2 does). expires_in may be a number or a
// numeric string; scope a space-separated string or a JSON array.
func decodeTokenResponse(contentType string, body []byte) (tokenResponse, error) {
	media, _, _ := mime.ParseMediaType(contentType)
	var r tokenResponse
	switch media {
	case "application/x-www-form-urlencoded", "text/plain":
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return r, ErrMalformedResponse
		}
		r.AccessToken = logging.NewSecret(v.Get("access_token"))
		r.RefreshToken = logging.NewSecret(v.Get("refresh_token"))
		r.TokenType = v.Get("token_type")
		r.ErrorCode = v.Get("error")
		r.ErrorDescription = v.Get("error_description")
		if s := v.Get("expires_in"); s != "" {
			d, err := parseExpiresIn(s)
			if err != nil {
				return r, err
			}
			r.ExpiresIn = d
		}
		if _, ok := v["scope"]; ok {
			r.Scope = strings.Fields(v.Get("scope"))
		}
		return r, nil
	default:
		var w wireToken
		if err := json.Unmarshal(body, &w); err != nil {
			return r, ErrMalformedResponse
		}
		r.AccessToken = logging.NewSecret(w.AccessToken)
		r.RefreshToken = logging.NewSecret(w.RefreshToken)
		r.TokenType = w.TokenType
		r.ErrorCode = w.Error
		r.ErrorDescription = w.ErrorDescription
		if len(w.ExpiresIn) > 0 && string(w.ExpiresIn) != "null" {
			var raw any
			if err := json.Unmarshal(w.ExpiresIn, &raw); err != nil {
				return r, ErrMalformedResponse
			}
			var s string
			switch x := raw.(type) {
			case float64:
				s = strconv.FormatFloat(x, 'f', -1, 64)
			case string:
				s = x
			default:
				return r, ErrMalformedResponse
			}
			d, err := parseExpiresIn(s)
			if err != nil {
				return r, err
			}
			r.ExpiresIn = d
		}
		if len(w.Scope) > 0 && string(w.Scope) != "null" {
			sc, err := parseScope(w.Scope)
			if err != nil {
				return r, err
			}
			r.Scope = sc
		}
		return r, nil
	}
}

// parseExpiresIn parses a non-negative number of seconds (integer or
// decimal), capped at ten years.
func parseExpiresIn(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || math.IsNaN(f) {
		return 0, ErrMalformedResponse
	}
	const maxSeconds = 10 * 365 * 24 * 3600
	if f > maxSeconds {
		f = maxSeconds
	}
	return time.Duration(f) * time.Second, nil
}

func parseScope(raw json.RawMessage) ([]string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return strings.Fields(s), nil
	}
	var a []string
	if err := json.Unmarshal(raw, &a); err == nil {
		var out []string
		for _, x := range a {
			out = append(out, strings.Fields(x)...)
		}
		return out, nil
	}
	return nil, ErrMalformedResponse
}

// postRefresh sends one refresh-token grant request: exactly one POST, with
// the client credentials in the form body, on a context detached from any
// caller (R3). The returned *TokenError says whether the outcome is unknown.
func postRefresh(hc *http.Client, tokenURL, clientID string, secret, refresh logging.Secret) (tokenResponse, error) {
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refresh.Reveal()},
		"client_id":     {clientID},
		"client_secret": {secret.Reveal()},
	}
	var wrote atomic.Bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenResponse{}, &TokenError{Err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return tokenResponse{}, &TokenError{Err: err, Unknown: wrote.Load()}
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if err != nil {
		// The server answered; a 2xx body we could not read is a lost token.
		return tokenResponse{}, &TokenError{Status: resp.StatusCode, Err: fmt.Errorf("read response: %w", err), Unknown: ok}
	}
	if len(body) > maxBody {
		return tokenResponse{}, &TokenError{Status: resp.StatusCode, Err: errors.New("response larger than 1 MiB"), Unknown: ok}
	}
	secrets := []string{refresh.Reveal(), secret.Reveal()}
	tr, derr := decodeTokenResponse(resp.Header.Get("Content-Type"), body)
	if derr != nil {
		if ok {
			return tokenResponse{}, &TokenError{Status: resp.StatusCode, Err: ErrMalformedResponse, Unknown: true}
		}
		return tokenResponse{}, &TokenError{Status: resp.StatusCode}
	}
	if !ok || tr.ErrorCode != "" {
		return tokenResponse{}, &TokenError{
			Status:      resp.StatusCode,
			Code:        cleanCode(tr.ErrorCode, append(secrets, tr.AccessToken.Reveal(), tr.RefreshToken.Reveal())...),
			Description: scrub(tr.ErrorDescription, append(secrets, tr.AccessToken.Reveal(), tr.RefreshToken.Reveal())...),
		}
	}
	if tr.AccessToken.Empty() {
		return tokenResponse{}, &TokenError{Status: resp.StatusCode, Err: ErrNoAccessToken}
	}
	if err := checkBearer(tr.TokenType); err != nil {
		return tokenResponse{}, &TokenError{Status: resp.StatusCode, Err: err}
	}
	return tr, nil
}

// exchangeCode exchanges an authorization code with x/oauth2: AuthStyle set
// explicitly to in-params (so the code is never re-sent by the auth-style
// probe), the PKCE verifier, and the timeout-bounded client injected via the
// oauth2.HTTPClient context key on a context not derived from the request.
func exchangeCode(hc *http.Client, o Options, secret, code, verifier logging.Secret, redirectURI string) (*oauth2.Token, error) {
	cfg := oauth2.Config{
		ClientID:     o.ClientID,
		ClientSecret: secret.Reveal(),
		Endpoint: oauth2.Endpoint{
			AuthURL:   o.AuthURL,
			TokenURL:  o.TokenURL,
			AuthStyle: oauth2.AuthStyleInParams,
		},
		RedirectURL: redirectURI,
		Scopes:      o.Scopes,
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	tok, err := cfg.Exchange(ctx, code.Reveal(), oauth2.VerifierOption(verifier.Reveal()))
	if err != nil {
		return nil, exchangeError(err, code.Reveal(), verifier.Reveal(), secret.Reveal())
	}
	return tok, nil
}

// exchangeError turns an x/oauth2 error into a *TokenError without the
// response body (RetrieveError.Error prints it).
func exchangeError(err error, secrets ...string) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		te := &TokenError{Code: cleanCode(re.ErrorCode, secrets...), Description: scrub(re.ErrorDescription, secrets...)}
		if re.Response != nil {
			te.Status = re.Response.StatusCode
		}
		return te
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return &TokenError{Err: ue}
	}
	if strings.Contains(err.Error(), "missing access_token") {
		return &TokenError{Status: http.StatusOK, Err: ErrNoAccessToken}
	}
	return &TokenError{Status: http.StatusOK, Err: ErrMalformedResponse}
}

// tokenFromOAuth2 converts an exchanged token, computing the expiry from the
// local receipt time and reading scope and expires_in from the response.
func tokenFromOAuth2(t *oauth2.Token, receipt time.Time) model.Token {
	expiresIn := time.Duration(t.ExpiresIn) * time.Second
	if expiresIn <= 0 {
		switch v := t.Extra("expires_in").(type) {
		case string:
			expiresIn, _ = parseExpiresIn(v)
		case float64:
			expiresIn, _ = parseExpiresIn(strconv.FormatFloat(v, 'f', -1, 64))
		}
	}
	if expiresIn <= 0 {
		expiresIn = defaultExpiresIn
	}
	var scopes []string
	switch v := t.Extra("scope").(type) {
	case string:
		scopes = strings.Fields(v)
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				scopes = append(scopes, strings.Fields(s)...)
			}
		}
	}
	// An omitted scope stays nil: unknown. RFC 6749 §5.1 lets a server omit
	// it when it granted exactly what was requested, but Tibber's consent
	// screen lets the user drop scopes and its documented example has no
	// scope member at all, so "everything requested" could be false. The
	// missing-scope report stays silent until the scopes are known.
	tok := model.Token{
		AccessToken:  logging.NewSecret(t.AccessToken),
		RefreshToken: logging.NewSecret(t.RefreshToken),
		TokenType:    t.TokenType,
		Expiry:       receipt.Add(expiresIn),
		IssuedAt:     receipt,
		Scopes:       scopes,
	}
	if t.RefreshToken != "" {
		tok.RefreshIssuedAt = receipt
	}
	return tok
}

// userinfo is what Tibber's userinfo endpoint says about the account.
type userinfo struct {
	Sub   string `json:"sub"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// fetchUserinfo calls userinfo with the access token and returns its sub,
// email and name claims as sent.
func fetchUserinfo(ctx context.Context, hc *http.Client, userinfoURL string, access logging.Secret) (userinfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, userinfoURL, nil)
	if err != nil {
		return userinfo{}, fmt.Errorf("userinfo: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+access.Reveal())
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return userinfo{}, fmt.Errorf("userinfo: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return userinfo{}, fmt.Errorf("userinfo: read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return userinfo{}, fmt.Errorf("userinfo: status %d", resp.StatusCode)
	}
	var claims userinfo
	if err := json.Unmarshal(body, &claims); err != nil {
		// A claim of another type costs only that claim.
		var raw map[string]json.RawMessage
		if json.Unmarshal(body, &raw) != nil {
			return userinfo{}, errors.New("userinfo: response is not a JSON object")
		}
		claims = userinfo{}
		_ = json.Unmarshal(raw["sub"], &claims.Sub)
		_ = json.Unmarshal(raw["email"], &claims.Email)
		_ = json.Unmarshal(raw["name"], &claims.Name)
	}
	return claims, nil
}
