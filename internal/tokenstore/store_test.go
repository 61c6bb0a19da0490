package tokenstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func mustOpen(tb testing.TB, dir string, clk clock.Clock) *tokenstore.Store {
	tb.Helper()
	s, err := tokenstore.Open(context.Background(), dir, clk)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func testToken(n string, at time.Time) model.Token {
	return model.Token{
		AccessToken:     logging.NewSecret("access-" + n),
		RefreshToken:    logging.NewSecret("refresh-" + n),
		TokenType:       "Bearer",
		Expiry:          at.Add(time.Hour),
		IssuedAt:        at,
		RefreshIssuedAt: at,
		Scopes:          []string{"openid", "data-api-homes-read"},
	}
}

func perm(tb testing.TB, path string) os.FileMode {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatalf("stat: %v", err)
	}
	return fi.Mode().Perm()
}

func TestModesUnderUmaskZero(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	dir := t.TempDir()
	s := mustOpen(t, dir, clock.NewFake(t0))
	// A write makes sure -wal and -shm exist while the store is open.
	if _, err := s.SaveGrant(context.Background(), testToken("a", t0), t0); err != nil {
		t.Fatal(err)
	}
	secrets := filepath.Join(dir, "secrets")
	if got := s.SecretsDir(); got != secrets {
		t.Fatalf("SecretsDir=%q, want %q", got, secrets)
	}
	if got := perm(t, secrets); got != 0o700 {
		t.Errorf("secrets mode=%#o, want 0700", got)
	}
	db := filepath.Join(secrets, "tokens.db")
	for _, p := range []string{db, db + "-wal", db + "-shm"} {
		if got := perm(t, p); got != 0o600 {
			t.Errorf("%s mode=%#o, want 0600", filepath.Base(p), got)
		}
	}
}

func TestOpenRefusesOpenModes(t *testing.T) {
	tests := map[string]struct {
		path func(dir string) string
		mode os.FileMode
	}{
		"DBFileWorldReadable":   {func(d string) string { return filepath.Join(d, "secrets", "tokens.db") }, 0o644},
		"DBFileGroupReadable":   {func(d string) string { return filepath.Join(d, "secrets", "tokens.db") }, 0o640},
		"SecretsDirOpen":        {func(d string) string { return filepath.Join(d, "secrets") }, 0o755},
		"SecretsDirGroupSearch": {func(d string) string { return filepath.Join(d, "secrets") }, 0o710},
		"WALReadable":           {func(d string) string { return filepath.Join(d, "secrets", "tokens.db-wal") }, 0o644},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := tokenstore.Open(context.Background(), dir, clock.NewFake(t0))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.SaveGrant(context.Background(), testToken("a", t0), t0); err != nil {
				t.Fatal(err)
			}
			p := tc.path(dir)
			if strings.HasSuffix(p, "-wal") {
				// Keep a -wal file around after close to check it.
				if err := os.WriteFile(p+".tmp", nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(p, "-wal") {
				if err := os.Rename(p+".tmp", p); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err = tokenstore.Open(context.Background(), dir, clock.NewFake(t0))
			if err == nil {
				t.Fatalf("Open succeeded with %s at %#o", p, tc.mode)
			}
			if !errors.Is(err, tokenstore.ErrInsecure) {
				t.Errorf("err=%v, want ErrInsecure", err)
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "0"+octal(tc.mode)) {
				t.Errorf("err=%q does not name the path and mode", err)
			}
		})
	}
}

func octal(m os.FileMode) string {
	const digits = "01234567"
	v := uint32(m.Perm())
	return string([]byte{digits[(v>>6)&7], digits[(v>>3)&7], digits[v&7]})
}

func TestGrantLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	s := mustOpen(t, dir, clk)

	g, err := s.Grant(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g.HasToken || g.State != model.AuthSetupRequired || g.Generation != 0 {
		t.Fatalf("fresh grant = %+v, want no token, setup_required, generation 0", g)
	}

	gen, err := s.SaveGrant(ctx, testToken("1", t0), t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetEmail(ctx, gen, "a@example.com"); err != nil {
		t.Fatal(err)
	}
	g, err = s.Grant(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !g.HasToken || g.Generation != gen || g.State != model.AuthOK || g.Email != "a@example.com" {
		t.Fatalf("after SaveGrant: %+v", g)
	}
	if got := g.Token.RefreshToken.Reveal(); got != "refresh-1" {
		t.Fatalf("refresh token=%q", got)
	}
	if !g.Token.Expiry.Equal(t0.Add(time.Hour)) || !g.LastRefresh.Equal(t0) {
		t.Fatalf("expiry=%v last=%v", g.Token.Expiry, g.LastRefresh)
	}
	if st := g.Status(); len(st.GrantedScopes) != 2 || st.Email != "a@example.com" {
		t.Fatalf("status=%+v", st)
	}

	// Marker and backoff, then a refresh clears both.
	if err := s.SetInFlight(ctx, gen, tokenstore.InFlight{Since: t0, Sends: 1}); err != nil {
		t.Fatal(err)
	}
	b := tokenstore.Backoff{Next: t0.Add(time.Minute), Delay: time.Minute, Failures: 1, LastError: "status 500"}
	if err := s.SaveBackoff(ctx, gen, b); err != nil {
		t.Fatal(err)
	}
	// Survives a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, clk)
	g, err = s.Grant(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g.InFlight.Sends != 1 || !g.InFlight.Since.Equal(t0) {
		t.Fatalf("marker=%+v", g.InFlight)
	}
	if g.Backoff != b {
		t.Fatalf("backoff=%+v, want %+v", g.Backoff, b)
	}

	// A stale writer is refused.
	if _, err := s.SaveRefreshed(ctx, testToken("x", t0), gen-1); !errors.Is(err, tokenstore.ErrGenerationChanged) {
		t.Fatalf("SaveRefreshed(stale)=%v, want ErrGenerationChanged", err)
	}
	if err := s.SetInFlight(ctx, gen+5, tokenstore.InFlight{}); !errors.Is(err, tokenstore.ErrGenerationChanged) {
		t.Fatalf("SetInFlight(stale)=%v, want ErrGenerationChanged", err)
	}
	t1 := t0.Add(50 * time.Minute)
	gen2, err := s.SaveRefreshed(ctx, testToken("2", t1), gen)
	if err != nil {
		t.Fatal(err)
	}
	g, err = s.Grant(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if gen2 != gen+1 || g.InFlight.Active() || !g.Backoff.Next.IsZero() || g.Backoff.Delay != 0 {
		t.Fatalf("after refresh: gen=%d marker=%+v backoff=%+v", gen2, g.InFlight, g.Backoff)
	}
	if g.Token.RefreshToken.Reveal() != "refresh-2" || !g.LastRefresh.Equal(t1) || g.Email != "a@example.com" {
		t.Fatalf("after refresh: %+v", g)
	}

	// State changes are reported once; since only moves on a change.
	changed, err := s.SetState(ctx, gen2, model.AuthReauthRequired, "invalid_grant", t1)
	if err != nil || !changed {
		t.Fatalf("SetState=%v,%v, want changed", changed, err)
	}
	changed, err = s.SetState(ctx, gen2, model.AuthReauthRequired, "again", t1.Add(time.Hour))
	if err != nil || changed {
		t.Fatalf("second SetState=%v,%v, want unchanged", changed, err)
	}
	g, _ = s.Grant(ctx)
	if !g.Since.Equal(t1) || g.Reason != "again" {
		t.Fatalf("since=%v reason=%q", g.Since, g.Reason)
	}
	if _, err := s.SetState(ctx, gen, model.AuthOK, "", t1); !errors.Is(err, tokenstore.ErrGenerationChanged) {
		t.Fatalf("SetState(stale)=%v", err)
	}
	// Setup clears the state.
	if _, err := s.SaveGrant(ctx, testToken("3", t1), t1); err != nil {
		t.Fatal(err)
	}
	g, _ = s.Grant(ctx)
	if g.State != model.AuthOK || g.Reason != "" || g.Email != "" {
		t.Fatalf("after new setup: %+v", g)
	}
}

func TestSaveRefreshedKeepsNoRefreshlessToken(t *testing.T) {
	s := mustOpen(t, t.TempDir(), clock.NewFake(t0))
	tok := testToken("1", t0)
	tok.RefreshToken = logging.Secret{}
	if _, err := s.SaveRefreshed(context.Background(), tok, 0); err == nil {
		t.Fatal("SaveRefreshed accepted a token without refresh token")
	}
}

func TestAttempts(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	s := mustOpen(t, t.TempDir(), clk)
	att := func(state string) tokenstore.Attempt {
		now := clk.Now()
		return tokenstore.Attempt{
			State:       logging.NewSecret(state),
			Verifier:    logging.NewSecret("verifier-" + state),
			RedirectURI: "http://localhost:8765/callback",
			Created:     now,
			Expires:     now.Add(10 * time.Minute),
		}
	}
	if _, err := s.ConsumeAttempt(ctx, "nothing", t0); !errors.Is(err, tokenstore.ErrNoAttempt) {
		t.Fatalf("no attempt: %v", err)
	}
	if err := s.SaveAttempt(ctx, att("one")); err != nil {
		t.Fatal(err)
	}
	if pending, _ := s.PendingAttempt(ctx, clk.Now()); !pending {
		t.Fatal("PendingAttempt=false after SaveAttempt")
	}
	if err := s.SaveAttempt(ctx, att("two")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeAttempt(ctx, "one", clk.Now()); !errors.Is(err, tokenstore.ErrAttemptSuperseded) {
		t.Fatalf("superseded: %v", err)
	}
	if _, err := s.ConsumeAttempt(ctx, "bogus", clk.Now()); !errors.Is(err, tokenstore.ErrUnknownState) {
		t.Fatalf("unknown: %v", err)
	}
	// The unknown state did not consume the pending attempt.
	a, err := s.ConsumeAttempt(ctx, "two", clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if a.Verifier.Reveal() != "verifier-two" || a.RedirectURI != "http://localhost:8765/callback" {
		t.Fatalf("attempt=%+v", a)
	}
	if _, err := s.ConsumeAttempt(ctx, "two", clk.Now()); !errors.Is(err, tokenstore.ErrAttemptUsed) {
		t.Fatalf("replay: %v", err)
	}
	if pending, _ := s.PendingAttempt(ctx, clk.Now()); pending {
		t.Fatal("PendingAttempt=true after consume")
	}
	if err := s.SaveAttempt(ctx, att("three")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(10*time.Minute + time.Second)
	if _, err := s.ConsumeAttempt(ctx, "three", clk.Now()); !errors.Is(err, tokenstore.ErrAttemptExpired) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := s.ConsumeAttempt(ctx, "three", clk.Now()); !errors.Is(err, tokenstore.ErrAttemptExpired) {
		t.Fatalf("expired again: %v", err)
	}
	if _, err := s.ConsumeAttempt(ctx, "other", clk.Now()); !errors.Is(err, tokenstore.ErrNoAttempt) {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestDSN(t *testing.T) {
	dsn := tokenstore.DSN("/var/lib/tibber sync/secrets/tokens.db")
	for _, want := range []string{"file:/var/lib/tibber%20sync/secrets/tokens.db?", "journal_mode%28WAL%29", "synchronous%28FULL%29", "secure_delete%28ON%29", "_txlock=immediate", "_busy_timeout=10000"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN %q lacks %q", dsn, want)
		}
	}
}

func TestConcurrentOpen(t *testing.T) {
	dir := t.TempDir()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := tokenstore.Open(context.Background(), dir, clock.NewFake(t0))
			if err == nil {
				_, err = s.Grant(context.Background())
				_ = s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("concurrent Open hung")
		}
	}
}
