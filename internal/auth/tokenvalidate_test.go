package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/model"
)

// TestExchangeRequiresBearer: a code exchange answering another token_type
// is refused, case-insensitively accepting Bearer, and a missing one ("-")
// taken as Bearer; nothing is stored after a refusal and the auth state
// does not claim ok.
func TestExchangeRequiresBearer(t *testing.T) {
	for typ, ok := range map[string]bool{"bearer": true, "BEARER": true, "mac": false, "DPoP": false, "-": true} {
		t.Run(typ, func(t *testing.T) {
			e := newEnv(t)
			e.fake.tokenType = typ
			f := e.flow()
			st, err := f.Complete(context.Background(), e.consent(e.start(f)))
			if ok {
				if err != nil || st.State != model.AuthOK {
					t.Fatalf("token_type %q: %+v, %v", typ, st, err)
				}
				return
			}
			if !errors.Is(err, auth.ErrNotBearer) || !errors.Is(err, auth.ErrExchangeFailed) {
				t.Fatalf("token_type %q: err %v, want ErrNotBearer", typ, err)
			}
			if g, gerr := e.store.Grant(context.Background()); gerr == nil && !g.Token.AccessToken.Empty() {
				t.Error("a non-Bearer token was stored")
			}
			if e.rec.get().State == model.AuthOK {
				t.Error("auth state ok after a refused token")
			}
		})
	}
}

// TestRefreshRequiresBearer: a refresh answering another token_type is a
// configuration error (retrying changes nothing), not a transient failure.
func TestRefreshRequiresBearer(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.fake.tokenType = "mac"
	s := e.source()
	if err := s.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(2 * time.Hour)
	_, err := s.AccessToken(context.Background())
	if err == nil {
		t.Fatal("a non-Bearer refresh was accepted")
	}
	if st := e.rec.get(); st.State != model.AuthConfigError {
		t.Fatalf("auth state %q (%s), want config_error", st.State, st.Reason)
	}
	if c := auth.Classify(&auth.TokenError{Status: 200, Err: auth.ErrNotBearer}); c != auth.ClassConfig {
		t.Errorf("Classify = %v, want config_error", c)
	}
}

// TestRefreshWithoutTokenTypeKeepsTheRotatedToken: a refresh answer with
// no token_type is taken as Bearer and its rotated refresh token stored.
// Refusing it used to drop the token the server had just made current,
// which cost the grant.
func TestRefreshWithoutTokenTypeKeepsTheRotatedToken(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.fake.tokenType = "-"
	s := e.source()
	if err := s.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	old := e.grant().Token
	e.clk.Advance(2 * time.Hour)
	tok, err := s.AccessToken(context.Background())
	if err != nil {
		t.Fatalf("refresh without token_type: %v", err)
	}
	g := e.grant()
	if !g.Token.AccessToken.Equal(tok) || g.Token.RefreshToken.Equal(old.RefreshToken) || g.State != model.AuthOK {
		t.Fatalf("after a refresh without token_type: state %s, access stored %v, refresh rotated %v",
			g.State, g.Token.AccessToken.Equal(tok), !g.Token.RefreshToken.Equal(old.RefreshToken))
	}
}

// TestExchangeWithoutRefreshTokenIsAnError: offline_access granted (or the
// scopes unknown while it was requested) but no refresh_token is an error,
// not a warning; without offline_access it is only a warning.
func TestExchangeWithoutRefreshTokenIsAnError(t *testing.T) {
	for name, tc := range map[string]struct {
		scopes    string
		omitScope bool
		wantErr   bool
	}{
		"Granted":      {scopes: "openid offline_access data-api-user-read", wantErr: true},
		"ScopeUnknown": {omitScope: true, wantErr: true},
		"NotGranted":   {scopes: "openid data-api-user-read", wantErr: false},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.fake.omitRefreshAll = true
			e.fake.grantedScopes = tc.scopes
			e.fake.omitScope = tc.omitScope
			f := e.flow()
			_, err := f.Complete(context.Background(), e.consent(e.start(f)))
			if tc.wantErr != errors.Is(err, auth.ErrNoRefreshToken) {
				t.Fatalf("err = %v, want ErrNoRefreshToken: %v", err, tc.wantErr)
			}
			if tc.wantErr && e.rec.get().State == model.AuthOK {
				t.Error("auth state ok without the refresh token")
			}
		})
	}
}

// TestExchangeWithoutScopeRecordsUnknown: Tibber's documented token
// response has no scope member; that must not be recorded as "every
// requested scope granted", which would make the missing-scope report lie.
func TestExchangeWithoutScopeRecordsUnknown(t *testing.T) {
	e := newEnv(t)
	e.fake.omitScope = true
	st := e.setup()
	if len(st.GrantedScopes) != 0 {
		t.Fatalf("granted scopes %q recorded from a response without scope; want unknown (none)", st.GrantedScopes)
	}
	if got := e.rec.get().GrantedScopes; len(got) != 0 {
		t.Fatalf("recorded granted scopes %q, want unknown", got)
	}
	if g := e.grant(); len(g.Token.Scopes) != 0 {
		t.Fatalf("stored token scopes %q, want unknown", g.Token.Scopes)
	}
}
