package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/cisummary"
	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

// tokenFiles are tokens.db and the WAL files SQLite may keep next to it.
var tokenFileSuffixes = []string{"", "-wal", "-shm"}

// snapshotTokens copies secrets/tokens.db (and -wal/-shm when present) into
// to. Only call it while no process has tokens.db open: R18 forbids touching
// an open database's files, because closing any descriptor of the file drops
// SQLite's POSIX locks.
func snapshotTokens(dir, to string) ([]string, error) {
	src := filepath.Join(dir, tokenstore.SecretsDirName, tokenstore.DBName)
	if err := os.MkdirAll(to, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot tokens: %w", err)
	}
	var copied []string
	for _, suf := range tokenFileSuffixes {
		err := copyFile(src+suf, filepath.Join(to, tokenstore.DBName+suf))
		if errors.Is(err, fs.ErrNotExist) && suf != "" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("snapshot tokens: %w", err)
		}
		copied = append(copied, tokenstore.DBName+suf)
	}
	return copied, nil
}

// restoreTokens puts a snapshot back: it is the state a power loss leaves
// when the last commit never reached the disk. -wal and -shm files that are
// not in the snapshot are removed, or SQLite would replay the lost commit
// from them. The same rule as snapshotTokens: nothing may have tokens.db open.
func restoreTokens(dir, from string) error {
	dst := filepath.Join(dir, tokenstore.SecretsDirName, tokenstore.DBName)
	for _, suf := range tokenFileSuffixes {
		snap := filepath.Join(from, tokenstore.DBName+suf)
		if _, err := os.Stat(snap); errors.Is(err, fs.ErrNotExist) {
			if err := os.Remove(dst + suf); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("restore tokens: %w", err)
			}
			continue
		}
		if err := copyFile(snap, dst+suf); err != nil {
			return fmt.Errorf("restore tokens: %w", err)
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// readGrant reads tokens.db and data.db's auth status with nothing else open.
func readGrant(t *testing.T, ctx context.Context, dir string) (tokenstore.Grant, model.AuthStatus) {
	t.Helper()
	ts, err := tokenstore.Open(ctx, dir, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := ts.Grant(ctx)
	ts.Close()
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.OpenReadOnly(ctx, filepath.Join(dir, "data.db"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := db.AuthStatus(ctx)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	return g, st
}

// TestTokenPowerLoss is R16. SIGKILL keeps the page cache, so a lost commit
// is emulated instead: snapshot the closed tokens.db, let a refresh rotate
// the refresh token and commit, restore the snapshot (the commit "never
// reached the disk"), restart. The restarted daemon holds a refresh token
// the server rotated out; with rotation, family revocation and no grace
// (the worst case we assume for Tibber) it may make at most one token call,
// and must end in reauth_required, where it stays without further calls.
func TestTokenPowerLoss(t *testing.T) {
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sim, simURL := startSim(t, simulator.Options{Seed: 16, AutoConsent: true, PageSize: 48})
	dir := t.TempDir()
	setupGrant(t, ctx, rigOptions{dir: dir, simURL: simURL})
	// Children see the clock two hours ahead, so the stored 1-hour access
	// token is expired and their first API call refreshes.
	env := map[string]string{envDir: dir, envSimURL: simURL, envClockOffset: "2h", envBackfill: "1", envJobs: "devices"}

	g0, _ := readGrant(t, ctx, dir)
	snap := filepath.Join(t.TempDir(), "snapshot")
	copied, err := snapshotTokens(dir, snap)
	if err != nil {
		t.Fatal(err)
	}

	// A refresh rotates and commits.
	c := startChild(t, childOnce, env)
	if code, err := c.wait(time.Minute); err != nil || code != 0 {
		t.Fatalf("refreshing run: exit %d, %v\n%s\nstderr:\n%s", code, err, strings.Join(c.runLines(), "\n"), tail(c.stderr.String(), 3000))
	}
	g1, _ := readGrant(t, ctx, dir)
	st := sim.Stats()
	if st.Refreshes != 1 || g1.Generation != g0.Generation+1 || g1.Token.RefreshToken.Equal(g0.Token.RefreshToken) {
		t.Fatalf("the refresh did not rotate and commit: %d refreshes, generation %d → %d", st.Refreshes, g0.Generation, g1.Generation)
	}

	// Power loss: the rotation's commit is gone.
	if err := restoreTokens(dir, snap); err != nil {
		t.Fatal(err)
	}
	g2, _ := readGrant(t, ctx, dir)
	if g2.Generation != g0.Generation || !g2.Token.RefreshToken.Equal(g0.Token.RefreshToken) {
		t.Fatalf("restore did not bring back generation %d (got %d)", g0.Generation, g2.Generation)
	}
	before := sim.Stats().TokenRequests["refresh_token"]

	// Restart, twice: the first start learns that the grant is gone, the
	// second must not call the token endpoint at all.
	var codes []int
	for i := range 2 {
		c := startChild(t, childOnce, env)
		code, err := c.wait(time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, code)
		if code != exitNotAuthorized {
			t.Errorf("restart %d: exit %d, want %d (not authorized)\n%s\nstderr:\n%s", i+1, code, exitNotAuthorized, strings.Join(c.runLines(), "\n"), tail(c.stderr.String(), 3000))
		}
	}
	after := sim.Stats()
	calls := after.TokenRequests["refresh_token"] - before
	if calls > 1 {
		t.Errorf("%d token calls after the restore, want at most 1", calls)
	}
	g3, status := readGrant(t, ctx, dir)
	if g3.State != model.AuthReauthRequired || status.State != model.AuthReauthRequired {
		t.Errorf("after the restore: tokens.db state %s, data.db state %s; want reauth_required in both", g3.State, status.State)
	}
	if after.RefreshReuse != 1 || after.GrantsRevoked != 1 {
		t.Errorf("simulator saw %d reuses and %d revocations, want 1 and 1 (the restored token is rotated out)", after.RefreshReuse, after.GrantsRevoked)
	}
	summary := fmt.Sprintf("token power loss: snapshot %s, 1 rotation committed then lost, %d token call(s) after restore (max 1), restarts exited %v, final state %s (%q), %s",
		strings.Join(copied, "+"), calls, codes, g3.State, g3.Reason, time.Since(started).Round(100*time.Millisecond))
	t.Log(summary)
	if err := cisummary.Append(summary); err != nil {
		t.Error(err)
	}
}
