package auth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

var bg = context.Background()

// spyStore wraps the real store and can make writes fail, as an unwritable
// tokens.db would: fail makes commits and backoff writes fail (the disk
// filled after the marker was written), failMarker the in-flight marker.
type spyStore struct {
	*tokenstore.Store
	fail       atomic.Bool
	failMarker atomic.Bool
}

var errDiskFull = errors.New("disk I/O error (injected)")

func (s *spyStore) SaveRefreshed(ctx context.Context, tok model.Token, base int64) (int64, error) {
	if s.fail.Load() {
		return 0, errDiskFull
	}
	return s.Store.SaveRefreshed(ctx, tok, base)
}

func (s *spyStore) SetInFlight(ctx context.Context, gen int64, f tokenstore.InFlight) error {
	if s.failMarker.Load() {
		return errDiskFull
	}
	return s.Store.SetInFlight(ctx, gen, f)
}

func (s *spyStore) SaveBackoff(ctx context.Context, gen int64, b tokenstore.Backoff) error {
	if s.fail.Load() {
		return errDiskFull
	}
	return s.Store.SaveBackoff(ctx, gen, b)
}

var _ auth.TokenStore = (*spyStore)(nil)

func TestAccessTokenRefreshesAheadOfExpiry(t *testing.T) {
	e := newEnv(t)
	e.setup()
	src := e.source()
	first, err := src.AccessToken(bg)
	if err != nil {
		t.Fatal(err)
	}
	// 6 min (10 % of 1 h) before expiry nothing happens yet…
	e.clk.Set(tStart.Add(54*time.Minute - time.Second))
	if tok, err := src.AccessToken(bg); err != nil || !tok.Equal(first) {
		t.Fatalf("refreshed too early: %v", err)
	}
	// …then one refresh.
	e.clk.Set(tStart.Add(54*time.Minute + time.Second))
	tok, err := src.AccessToken(bg)
	if err != nil || tok.Equal(first) {
		t.Fatalf("no refresh inside the margin: %v", err)
	}
	s := e.fake.stats()
	if s.refreshPosts != 1 {
		t.Fatalf("refreshes=%d", s.refreshPosts)
	}
	// Persisted before it was returned, with the rotated refresh token.
	g := e.grant()
	if !g.Token.AccessToken.Equal(tok) || g.Token.RefreshToken.Reveal() != s.current {
		t.Fatal("returned token is not the stored one")
	}
	if want := e.clk.Now().Add(time.Hour); !g.Token.Expiry.Equal(want) {
		t.Fatalf("expiry=%v, want receipt+expires_in=%v", g.Token.Expiry, want)
	}
	for _, ua := range s.userAgents {
		if ua != e.opts.UserAgent {
			t.Fatalf("User-Agent=%q", ua)
		}
	}
}

func TestExpiresInAsString(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.fake.expiresIn = 1800
	e.fake.addFaults(faultExpiresString)
	e.clk.Advance(time.Hour)
	if _, err := e.source().AccessToken(bg); err != nil {
		t.Fatal(err)
	}
	if got, want := e.grant().Token.Expiry, e.clk.Now().Add(30*time.Minute); !got.Equal(want) {
		t.Fatalf("expiry=%v, want %v", got, want)
	}
}

func TestNonRotatingServerKeepsRefreshToken(t *testing.T) {
	for name, omit := range map[string]bool{"SameToken": false, "NoRefreshTokenInResponse": true} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.setup()
			e.fake.rotate = false
			e.fake.omitRefresh = omit
			initial := e.grant().Token
			src := e.source()
			seen := map[string]bool{}
			for range 3 {
				e.clk.Advance(time.Hour)
				tok, err := src.AccessToken(bg)
				if err != nil {
					t.Fatal(err)
				}
				seen[tok.Reveal()] = true
			}
			g := e.grant()
			if !g.Token.RefreshToken.Equal(initial.RefreshToken) {
				t.Fatal("refresh token changed though the server did not rotate")
			}
			if !g.Token.RefreshIssuedAt.Equal(initial.RefreshIssuedAt) {
				t.Fatalf("refresh issued at moved: %v → %v", initial.RefreshIssuedAt, g.Token.RefreshIssuedAt)
			}
			if len(seen) != 3 || e.fake.stats().refreshPosts != 3 {
				t.Fatalf("access tokens=%d refreshes=%d", len(seen), e.fake.stats().refreshPosts)
			}
		})
	}
}

func TestSingleFlightFiftyGoroutines(t *testing.T) {
	e := newEnv(t)
	e.setup()
	src := e.source()
	e.clk.Advance(time.Hour + time.Second)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		mu    sync.Mutex
		got   = map[string]int{}
		errs  []error
	)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tok, err := src.AccessToken(bg)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			got[tok.Reveal()]++
		}()
	}
	guard(t, 20*time.Second, func() {
		close(start)
		wg.Wait()
	})
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	if len(got) != 1 {
		t.Fatalf("goroutines got %d different tokens", len(got))
	}
	if n := e.fake.stats().refreshPosts; n != 1 {
		t.Fatalf("token POSTs=%d, want exactly 1", n)
	}
}

func TestRefreshAfter401(t *testing.T) {
	e := newEnv(t)
	e.setup()
	src := e.source()
	tok0, err := src.AccessToken(bg)
	if err != nil {
		t.Fatal(err)
	}
	// The token is valid locally, but the Data API said 401.
	tok1, err := src.Refresh(bg, tok0)
	if err != nil || tok1.Equal(tok0) {
		t.Fatalf("Refresh: %v", err)
	}
	if n := e.fake.stats().refreshPosts; n != 1 {
		t.Fatalf("refreshes=%d, want 1", n)
	}
	// Two concurrent 401s on the same token: one refresh, one result.
	var wg sync.WaitGroup
	res := make([]logging.Secret, 2)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := src.Refresh(bg, tok1)
			if err != nil {
				t.Error(err)
			}
			res[i] = tok
		}()
	}
	guard(t, 10*time.Second, wg.Wait)
	if !res[0].Equal(res[1]) || res[0].Equal(tok1) {
		t.Fatal("concurrent Refresh calls got different or stale tokens")
	}
	if n := e.fake.stats().refreshPosts; n != 2 {
		t.Fatalf("refreshes=%d, want 2", n)
	}
	// A late Refresh with an already-replaced token does not refresh again.
	tok3, err := src.Refresh(bg, tok1)
	if err != nil || !tok3.Equal(res[0]) {
		t.Fatalf("late Refresh: %v", err)
	}
	if n := e.fake.stats().refreshPosts; n != 2 {
		t.Fatalf("refreshes=%d after late Refresh, want 2", n)
	}
}

// R3: whatever goes wrong, one refresh attempt is one POST.
func TestOneRefreshAttemptIsOnePOST(t *testing.T) {
	for _, fault := range []string{fault500, faultProcess500, faultDrop, faultRotateDrop, fault429, faultNoAccessToken} {
		t.Run(fault, func(t *testing.T) {
			e := newEnv(t)
			e.setup()
			e.clk.Advance(time.Hour)
			e.fake.addFaults(fault)
			_, err := e.source().AccessToken(bg)
			if !errors.Is(err, model.ErrTokenBackoff) {
				t.Fatalf("err=%v, want ErrTokenBackoff", err)
			}
			noCanary(t, err)
			if n := e.fake.stats().refreshPosts; n != 1 {
				t.Fatalf("POSTs=%d, want exactly 1", n)
			}
		})
	}
}

func TestTokenErrorOutcomesOver24Hours(t *testing.T) {
	tests := map[string]struct {
		fault string
		state model.AuthState
	}{
		"InvalidGrant":       {faultInvalidGrant, model.AuthReauthRequired},
		"ErrorIn200":         {fault200Error, model.AuthReauthRequired},
		"InvalidClient":      {faultInvalidClient, model.AuthConfigError},
		"ServerError":        {fault500, model.AuthOK},
		"TooManyRequests":    {fault429, model.AuthOK},
		"NoAccessTokenIn200": {faultNoAccessToken, model.AuthOK},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.setup()
			for range 100 {
				e.fake.addFaults(tt.fault)
			}
			src := e.source()
			e.clk.Advance(time.Hour)
			begin := e.clk.Now()
			// Backoff delays are whole minutes, so one-minute steps see every
			// due time exactly; permanent errors are checked every 5 minutes.
			step := time.Minute
			if tt.state != model.AuthOK {
				step = 5 * time.Minute
			}
			for e.clk.Now().Before(begin.Add(24 * time.Hour)) {
				_, _ = src.AccessToken(bg)
				e.clk.Advance(step)
			}
			s := e.fake.stats()
			if got := e.grant().State; got != tt.state {
				t.Fatalf("state=%s, want %s", got, tt.state)
			}
			if tt.state != model.AuthOK {
				if s.refreshPosts != 1 {
					t.Fatalf("permanent error: %d token calls, want 1", s.refreshPosts)
				}
				return
			}
			want := backoffSchedule(begin, 24*time.Hour)
			if len(s.refreshTimes) != len(want) {
				t.Fatalf("%d token calls, want %d (%v)", len(s.refreshTimes), len(want), s.refreshTimes)
			}
			for i := range want {
				if !s.refreshTimes[i].Equal(want[i]) {
					t.Fatalf("call %d at +%v, want +%v", i, s.refreshTimes[i].Sub(begin), want[i].Sub(begin))
				}
			}
		})
	}
}

// backoffSchedule returns the token request times R25 allows from begin:
// delays of 1, 2, 4, … minutes capped at 1 hour.
func backoffSchedule(begin time.Time, span time.Duration) []time.Time {
	var out []time.Time
	at, delay := begin, time.Minute
	for at.Before(begin.Add(span)) {
		out = append(out, at)
		at = at.Add(delay)
		delay = min(2*delay, time.Hour)
	}
	return out
}

func TestTransientBackoffSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	e.setup()
	for range 50 {
		e.fake.addFaults(fault500)
	}
	src := e.source()
	e.clk.Advance(time.Hour)
	begin := e.clk.Now()
	restarted := false
	for e.clk.Now().Before(begin.Add(3 * time.Hour)) {
		if !restarted && e.clk.Now().Sub(begin) >= 90*time.Minute {
			// Restart: close and reopen the store, new Source.
			if err := e.store.Close(); err != nil {
				t.Fatal(err)
			}
			e.store = e.openStore()
			e.opts.Store = e.store
			src = e.source()
			if err := src.Init(bg); err != nil {
				t.Fatal(err)
			}
			restarted = true
		}
		before := e.fake.stats().refreshPosts
		_, err := src.AccessToken(bg)
		if !errors.Is(err, model.ErrTokenBackoff) {
			t.Fatalf("at +%v: err=%v, want ErrTokenBackoff", e.clk.Now().Sub(begin), err)
		}
		if e.fake.stats().refreshPosts-before > 1 {
			t.Fatal("more than one request in one call")
		}
		e.clk.Advance(10 * time.Second)
	}
	got := e.fake.stats().refreshTimes
	want := backoffSchedule(begin, 3*time.Hour)
	if len(got) != len(want) {
		t.Fatalf("calls at %v, want %v", got, want)
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Fatalf("call %d at +%v, want +%v", i, got[i].Sub(begin), want[i].Sub(begin))
		}
	}
	if g := e.grant(); g.Backoff.Delay != time.Hour || g.Backoff.Failures != len(want) {
		t.Fatalf("persisted backoff=%+v", g.Backoff)
	}
	// Recovery resets the backoff.
	e.fake.mu.Lock()
	e.fake.faults = nil
	e.fake.mu.Unlock()
	e.clk.Advance(time.Hour)
	if _, err := src.AccessToken(bg); err != nil {
		t.Fatal(err)
	}
	if g := e.grant(); !g.Backoff.Next.IsZero() || g.Backoff.Failures != 0 {
		t.Fatalf("backoff after success=%+v", g.Backoff)
	}
}

// While the refresh backs off, a token that is still valid is handed out.
func TestBackoffServesStillValidToken(t *testing.T) {
	e := newEnv(t)
	e.setup()
	src := e.source()
	cur, _ := src.AccessToken(bg)
	e.fake.addFaults(fault500)
	e.clk.Advance(56 * time.Minute) // inside the margin, not expired
	tok, err := src.AccessToken(bg)
	if err != nil || !tok.Equal(cur) {
		t.Fatalf("AccessToken=%v, want the still-valid token", err)
	}
	tok, err = src.AccessToken(bg)
	if err != nil || !tok.Equal(cur) || e.fake.stats().refreshPosts != 1 {
		t.Fatalf("second call: %v, posts=%d", err, e.fake.stats().refreshPosts)
	}
}

func TestInvalidGrantIsStickyAcrossRestarts(t *testing.T) {
	e := newEnv(t)
	e.setup()
	src := e.source()
	if err := src.Init(bg); err != nil {
		t.Fatal(err)
	}
	e.fake.addFaults(faultInvalidGrant)
	e.clk.Advance(time.Hour)
	_, err := src.AccessToken(bg)
	if !errors.Is(err, model.ErrNotAuthorized) || !errors.Is(err, auth.ErrReauthRequired) {
		t.Fatalf("err=%v, want ErrNotAuthorized/ErrReauthRequired", err)
	}
	noCanary(t, err)
	postsAfterFailure := e.fake.stats().posts

	for i := range 10 {
		// A restart: a new store connection, new Source, Init, then the
		// usual calls. (src keeps the first connection, as a daemon that
		// never restarted would.)
		o := e.opts
		o.Store = e.openStore()
		s, err := auth.NewSource(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Init(bg); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AccessToken(bg); !errors.Is(err, model.ErrNotAuthorized) {
			t.Fatalf("restart %d: AccessToken err=%v", i, err)
		}
		if _, err := s.Refresh(bg, logging.NewSecret("whatever")); !errors.Is(err, model.ErrNotAuthorized) {
			t.Fatalf("restart %d: Refresh err=%v", i, err)
		}
		if err := s.KeepAlive(bg); err != nil {
			t.Fatalf("restart %d: KeepAlive err=%v", i, err)
		}
		e.clk.Advance(17 * time.Hour)
	}
	if got := e.fake.stats().posts - postsAfterFailure; got > 0 {
		t.Fatalf("%d token calls after the failure, want 0", got)
	}
	if got := e.logs.Count("level=WARN"); got != 1 {
		t.Fatalf("%d WARN lines, want 1:\n%s", got, e.logs.String())
	}
	var reauth int
	for _, st := range e.notif.calls() {
		if st.State == model.AuthReauthRequired {
			reauth++
		}
	}
	if reauth != 1 {
		t.Fatalf("%d reauth notifications, want 1", reauth)
	}
	rec := e.rec.get()
	if rec.State != model.AuthReauthRequired || !strings.Contains(rec.Reason, "invalid_grant") {
		t.Fatalf("recorded status=%+v", rec)
	}
	st, err := src.Status(bg)
	if err != nil || st.State != model.AuthReauthRequired {
		t.Fatalf("Status=%+v, %v", st, err)
	}

	// Setup again: the same (first) Source instance works again, no restart.
	e.setup()
	tok, err := src.AccessToken(bg)
	if err != nil || tok.Empty() {
		t.Fatalf("after new setup: %v", err)
	}
	if got := e.rec.get().State; got != model.AuthOK {
		t.Fatalf("recorded state=%s after setup", got)
	}
}

func TestConfigErrorIsSticky(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.fake.addFaults(faultInvalidClient)
	src := e.source()
	e.clk.Advance(time.Hour)
	_, err := src.AccessToken(bg)
	if !errors.Is(err, auth.ErrConfig) || !errors.Is(err, model.ErrNotAuthorized) {
		t.Fatalf("err=%v", err)
	}
	for range 24 * 12 {
		e.clk.Advance(5 * time.Minute)
		_, _ = src.AccessToken(bg)
		_ = src.KeepAlive(bg)
	}
	if n := e.fake.stats().refreshPosts; n != 1 {
		t.Fatalf("token calls=%d, want 1", n)
	}
	if g := e.grant(); g.State != model.AuthConfigError || !strings.Contains(g.Reason, "invalid_client") {
		t.Fatalf("grant state=%s reason=%q", g.State, g.Reason)
	}
}

// R7 in process: the server rotates, then the response is lost.
func TestLostResponse(t *testing.T) {
	for name, tc := range map[string]struct {
		grace     time.Duration
		wantState model.AuthState
	}{
		"NoGrace":   {0, model.AuthReauthRequired},
		"WithGrace": {5 * time.Minute, model.AuthOK},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.setup()
			e.fake.grace = tc.grace
			e.fake.addFaults(faultRotateDrop)
			src := e.source()
			e.clk.Advance(time.Hour)
			_, err := src.AccessToken(bg)
			if !errors.Is(err, model.ErrTokenBackoff) {
				t.Fatalf("lost response: err=%v", err)
			}
			if g := e.grant(); g.InFlight.Sends != 1 {
				t.Fatalf("marker=%+v, want one unanswered request", g.InFlight)
			}
			e.clk.Advance(time.Minute)
			_, err = src.AccessToken(bg)
			if got := e.grant().State; got != tc.wantState {
				t.Fatalf("state=%s, want %s (err=%v)", got, tc.wantState, err)
			}
			if tc.wantState == model.AuthReauthRequired {
				if !errors.Is(err, auth.ErrReauthRequired) || !strings.Contains(e.grant().Reason, "lost") {
					t.Fatalf("err=%v reason=%q", err, e.grant().Reason)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if g := e.grant(); g.Token.RefreshToken.Reveal() != e.fake.stats().current || g.InFlight.Active() {
					t.Fatal("stored token is not the server's current one")
				}
			}
			// No further calls either way.
			for range 10 {
				e.clk.Advance(time.Hour)
				_, _ = src.AccessToken(bg)
			}
			s := e.fake.stats()
			extra := 0
			if tc.wantState == model.AuthOK {
				extra = 10 // the normal hourly refreshes afterwards
			}
			if s.refreshPosts != 2+extra {
				t.Fatalf("refresh calls=%d, want %d", s.refreshPosts, 2+extra)
			}
		})
	}
}

// Two requests with unknown outcome for one refresh token: no third try.
func TestTwoLostResponsesEndInReauth(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.fake.addFaults(faultDrop, faultDrop)
	src := e.source()
	e.clk.Advance(time.Hour)
	_, _ = src.AccessToken(bg)
	e.clk.Advance(time.Minute)
	_, _ = src.AccessToken(bg)
	e.clk.Advance(2 * time.Minute)
	_, err := src.AccessToken(bg)
	if !errors.Is(err, auth.ErrReauthRequired) {
		t.Fatalf("err=%v, want ErrReauthRequired", err)
	}
	if n := e.fake.stats().refreshPosts; n != 2 {
		t.Fatalf("refresh calls=%d, want 2", n)
	}
	if r := e.grant().Reason; !strings.Contains(r, "lost") {
		t.Fatalf("reason=%q", r)
	}
}

// R5: with an unwritable tokens.db the new token is used from memory, the
// failure is reported, the old refresh token is never sent again, and the
// write is retried.
func TestPersistFailureKeepsTokenInMemory(t *testing.T) {
	e := newEnv(t)
	e.setup()
	spy := &spyStore{Store: e.store}
	e.opts.Store = spy
	src := e.source()
	old := e.grant().Token

	spy.fail.Store(true)
	e.clk.Advance(time.Hour)
	tok1, err := src.AccessToken(bg)
	if err != nil {
		t.Fatalf("AccessToken with failing store: %v", err)
	}
	if tok1.Equal(old.AccessToken) || !e.grant().Token.AccessToken.Equal(old.AccessToken) {
		t.Fatal("want a new token in memory and the old one still on disk")
	}
	st, _ := src.Status(bg)
	if st.Reason != auth.ReasonPersistFailed || e.rec.get().Reason != auth.ReasonPersistFailed {
		t.Fatalf("status reason=%q recorded=%q, want %s", st.Reason, e.rec.get().Reason, auth.ReasonPersistFailed)
	}
	if !strings.Contains(e.logs.String(), auth.ReasonPersistFailed) {
		t.Fatal("persist failure not logged")
	}
	// The next refresh uses the in-memory refresh token, not the old one.
	e.clk.Advance(time.Hour)
	tok2, err := src.AccessToken(bg)
	if err != nil || tok2.Equal(tok1) {
		t.Fatalf("second refresh: %v", err)
	}
	s := e.fake.stats()
	if s.reuse != 0 || s.revoked || s.refreshPosts != 2 {
		t.Fatalf("reuse=%d revoked=%v refreshes=%d", s.reuse, s.revoked, s.refreshPosts)
	}
	// The disk recovers: the newest token is written and the reason cleared.
	spy.fail.Store(false)
	tok3, err := src.AccessToken(bg)
	if err != nil || !tok3.Equal(tok2) {
		t.Fatalf("after recovery: %v", err)
	}
	g := e.grant()
	if !g.Token.AccessToken.Equal(tok2) || g.Token.RefreshToken.Reveal() != s.current {
		t.Fatal("newest token not stored after recovery")
	}
	if st, _ := src.Status(bg); st.Reason != "" || e.rec.get().Reason != "" {
		t.Fatalf("reason not cleared: %q / %q", st.Reason, e.rec.get().Reason)
	}
}

func TestThirtyDaysOfOneHourTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("long simulation")
	}
	for name, cadence := range map[string]time.Duration{"Every6Minutes": 6 * time.Minute, "Every5Minutes": 5 * time.Minute} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.setup()
			src := e.source()
			const lifetime = time.Hour
			margin := max(time.Minute, lifetime/10)
			span := 30 * 24 * time.Hour
			var last logging.Secret
			var expiry time.Time
			for at := tStart.Add(cadence); at.Before(tStart.Add(span)); at = at.Add(cadence) {
				e.clk.Set(at)
				tok, err := src.AccessToken(bg)
				if err != nil {
					t.Fatalf("at +%v: %v", at.Sub(tStart), err)
				}
				if !tok.Equal(last) {
					meta, _, err := src.Token(bg)
					if err != nil {
						t.Fatal(err)
					}
					last, expiry = tok, meta.Expiry
				}
				if expiry.Sub(at) < margin {
					t.Fatalf("at +%v: handed out a token with %v left", at.Sub(tStart), expiry.Sub(at))
				}
			}
			s := e.fake.stats()
			// The first call with less than the margin left refreshes: the
			// interval is the first multiple of the cadence past lifetime−margin.
			interval := cadence * ((lifetime-margin)/cadence + 1)
			want := int((span - cadence) / interval)
			if d := len(s.refreshTimes) - want; d < -1 || d > 1 {
				t.Fatalf("refreshes=%d, want %d ± 1", len(s.refreshTimes), want)
			}
			if cadence == 6*time.Minute {
				if d := len(s.refreshTimes) - 720; d < -1 || d > 1 {
					t.Fatalf("refreshes=%d, want 720 ± 1", len(s.refreshTimes))
				}
			}
			for i := 1; i < len(s.refreshTimes); i++ {
				if gap := s.refreshTimes[i].Sub(s.refreshTimes[i-1]); gap < lifetime-margin {
					t.Fatalf("refreshes %d and %d only %v apart", i-1, i, gap)
				}
			}
			if s.reuse != 0 || s.revoked {
				t.Fatalf("reuse=%d revoked=%v", s.reuse, s.revoked)
			}
		})
	}
}

func TestKeepAliveWhenIdle(t *testing.T) {
	e := newEnv(t)
	e.setup()
	src := e.source()
	for e.clk.Now().Before(tStart.Add(7 * 24 * time.Hour)) {
		e.clk.Advance(time.Hour)
		if err := src.KeepAlive(bg); err != nil {
			t.Fatal(err)
		}
	}
	s := e.fake.stats()
	if len(s.refreshTimes) != 2 {
		t.Fatalf("keep-alive refreshes=%d in 7 days, want 2 (%v)", len(s.refreshTimes), s.refreshTimes)
	}
	if first := s.refreshTimes[0].Sub(tStart); first > auth.DefaultKeepAlive {
		t.Fatalf("first keep-alive after %v, want within %v", first, auth.DefaultKeepAlive)
	}
	if gap := s.refreshTimes[1].Sub(s.refreshTimes[0]); gap > auth.DefaultKeepAlive {
		t.Fatalf("keep-alive gap %v", gap)
	}
}

func TestClockJumpForwardRefreshesOnce(t *testing.T) {
	for name, jump := range map[string]time.Duration{"TwoHours": 2 * time.Hour, "FortyDays": 40 * 24 * time.Hour} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.setup()
			src := e.source()
			e.clk.Advance(10 * time.Minute)
			if _, err := src.AccessToken(bg); err != nil {
				t.Fatal(err)
			}
			e.clk.Advance(jump)
			for range 10 {
				if _, err := src.AccessToken(bg); err != nil {
					t.Fatal(err)
				}
				if err := src.KeepAlive(bg); err != nil {
					t.Fatal(err)
				}
				e.clk.Advance(time.Minute)
			}
			if n := e.fake.stats().refreshPosts; n != 1 {
				t.Fatalf("refreshes after a %v jump=%d, want 1", jump, n)
			}
		})
	}
}

func TestClockBeforeBuildTimeMakesNoCalls(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.opts.NotBefore = tStart.Add(-24 * time.Hour)
	src := e.source()
	posts := e.fake.stats().posts
	e.clk.Set(time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC))
	if err := src.Init(bg); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := src.AccessToken(bg); !errors.Is(err, model.ErrTokenBackoff) {
			t.Fatalf("AccessToken err=%v, want ErrTokenBackoff", err)
		}
		if _, err := src.Refresh(bg, logging.NewSecret("x")); !errors.Is(err, model.ErrTokenBackoff) {
			t.Fatalf("Refresh err=%v", err)
		}
		if err := src.KeepAlive(bg); !errors.Is(err, model.ErrTokenBackoff) {
			t.Fatalf("KeepAlive err=%v", err)
		}
		e.clk.Advance(time.Hour)
	}
	if n := e.fake.stats().posts - posts; n != 0 {
		t.Fatalf("token calls=%d, want 0", n)
	}
	if n := e.logs.Count("earlier than the build time"); n != 1 {
		t.Fatalf("clock warnings=%d, want 1", n)
	}
	// Once the clock is set, tokens flow again.
	e.clk.Set(tStart.Add(2 * time.Hour))
	if _, err := src.AccessToken(bg); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.stats().refreshPosts; n != 1 {
		t.Fatalf("refreshes=%d, want 1", n)
	}
}

func TestInitWarnsAboutStaleRefresh(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.clk.Advance(31 * 24 * time.Hour)
	if err := e.source().Init(bg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.logs.String(), "more than 30 days old") {
		t.Fatal("no warning about a stale refresh")
	}
}

func TestNoRefreshTokenMeansReauth(t *testing.T) {
	e := newEnv(t)
	e.setup()
	// Simulate a grant without offline_access: store a token without refresh token.
	tok := e.grant().Token
	tok.RefreshToken = logging.Secret{}
	if _, err := e.store.SaveGrant(bg, tok, e.clk.Now()); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Hour)
	posts := e.fake.stats().posts
	_, err := e.source().AccessToken(bg)
	if !errors.Is(err, auth.ErrReauthRequired) {
		t.Fatalf("err=%v", err)
	}
	if e.fake.stats().posts != posts {
		t.Fatal("a token call was made without a refresh token")
	}
}

func TestOptionsValidation(t *testing.T) {
	e := newEnv(t)
	for name, mod := range map[string]func(o *auth.Options){
		"NoStore":    func(o *auth.Options) { o.Store = nil },
		"NoStatus":   func(o *auth.Options) { o.Status = nil },
		"NoTokenURL": func(o *auth.Options) { o.TokenURL = "" },
	} {
		o := e.opts
		mod(&o)
		if _, err := auth.NewSource(o); err == nil {
			t.Errorf("%s: NewSource accepted", name)
		}
		if _, err := auth.NewFlow(o); err == nil {
			t.Errorf("%s: NewFlow accepted", name)
		}
	}
	o := e.opts
	o.RedirectURL = ""
	if _, err := auth.NewFlow(o); err == nil {
		t.Error("NewFlow accepted an empty redirect URL")
	}
}

// TestSourceWithoutClientID: the daemon builds a Source before the client is
// configured (to serve its setup page); it reports the state and never sends
// a token request without a client id.
func TestSourceWithoutClientID(t *testing.T) {
	e := newEnv(t)
	e.setup()
	before := e.fake.stats()
	e.opts.ClientID = ""
	src := e.source()
	if err := src.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(2 * time.Hour)
	_, err := src.AccessToken(context.Background())
	if !errors.Is(err, auth.ErrNoClientID) || !errors.Is(err, model.ErrNotAuthorized) {
		t.Fatalf("AccessToken without a client id: %v", err)
	}
	if after := e.fake.stats(); after.refreshPosts != before.refreshPosts {
		t.Fatalf("refresh POSTs %d → %d without a client id", before.refreshPosts, after.refreshPosts)
	}
	if _, err := auth.NewFlow(e.opts); err == nil {
		t.Fatal("NewFlow accepted an empty client id")
	}
}
