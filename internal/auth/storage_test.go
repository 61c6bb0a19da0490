package auth_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/testutil"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

// An unwritable in-flight marker means the refresh is not sent at all: its
// answer could not be stored either (issue 17, item 1).
func TestMarkerWriteFailurePostponesRefresh(t *testing.T) {
	e := newEnv(t)
	e.setup()
	spy, src := e.spySource()
	old := e.grant().Token

	spy.failMarker.Store(true)
	e.clk.Advance(time.Hour)
	_, err := src.AccessToken(bg)
	if !errors.Is(err, auth.ErrStorageUnsafe) || !errors.Is(err, model.ErrTokenBackoff) {
		t.Fatalf("AccessToken with unwritable marker: %v, want ErrStorageUnsafe and ErrTokenBackoff", err)
	}
	if !strings.Contains(err.Error(), "cannot store tokens safely (disk full / read-only): refresh postponed") {
		t.Fatalf("error text %q", err)
	}
	if n := e.fake.stats().refreshPosts; n != 0 {
		t.Fatalf("%d refresh requests sent although the marker could not be stored", n)
	}
	if st, _ := src.Status(bg); st.Reason != auth.ReasonStorageUnwritable || e.rec.get().Reason != auth.ReasonStorageUnwritable {
		t.Fatalf("status reason %q / recorded %q, want %s", st.Reason, e.rec.get().Reason, auth.ReasonStorageUnwritable)
	}
	if src.StorageError() == nil {
		t.Fatal("StorageError() is nil while refreshes are postponed")
	}
	if strings.Count(e.logs.String(), "level=ERROR msg=\"cannot store tokens safely") != 1 {
		t.Fatalf("want exactly one ERROR line:\n%s", e.logs.String())
	}
	// A second call stays quiet and sends nothing.
	if _, err := src.AccessToken(bg); !errors.Is(err, auth.ErrStorageUnsafe) {
		t.Fatalf("second call: %v", err)
	}
	if strings.Count(e.logs.String(), "level=ERROR") != 1 || e.fake.stats().refreshPosts != 0 {
		t.Fatal("second call logged again or sent a refresh")
	}

	// Storage works again: the refresh happens at once.
	spy.failMarker.Store(false)
	tok, err := src.AccessToken(bg)
	if err != nil || tok.Equal(old.AccessToken) {
		t.Fatalf("after recovery: %v", err)
	}
	if s := e.fake.stats(); s.refreshPosts != 1 || s.reuse != 0 {
		t.Fatalf("refreshes=%d reuse=%d", s.refreshPosts, s.reuse)
	}
	if st, _ := src.Status(bg); st.Reason != "" || st.State != model.AuthOK || src.StorageError() != nil {
		t.Fatalf("after recovery: %+v, storage err %v", st, src.StorageError())
	}
}

// Space returns while the still-valid access token needs no refresh: the
// daemon's health round (RecheckStorage) notices at once instead of the
// status saying "cannot store tokens safely" until the next refresh that is
// actually needed. It sends no token request and keeps the marker as it was.
func TestRecheckStorageClearsTheFailureWithoutARefresh(t *testing.T) {
	e := newEnv(t)
	e.setup()
	spy, src := e.spySource()
	t.Cleanup(func() { _ = src.Close(bg) })

	spy.failMarker.Store(true)
	src.RecheckStorage(bg) // nothing recorded yet: no write, no change
	if src.StorageError() != nil {
		t.Fatal("StorageError before any failure")
	}
	e.clk.Advance(time.Hour)
	if _, err := src.AccessToken(bg); !errors.Is(err, auth.ErrStorageUnsafe) {
		t.Fatalf("AccessToken with unwritable marker: %v", err)
	}
	src.RecheckStorage(bg) // still failing
	if src.StorageError() == nil {
		t.Fatal("RecheckStorage cleared the failure while writes still fail")
	}
	spy.failMarker.Store(false)
	src.RecheckStorage(bg)
	if err := src.StorageError(); err != nil {
		t.Fatalf("after space returned: StorageError %v", err)
	}
	if st, _ := src.Status(bg); st.Reason != "" || st.State != model.AuthOK || e.rec.get().Reason != "" {
		t.Fatalf("after space returned: status %+v, recorded %+v", st, e.rec.get())
	}
	if n := e.fake.stats().refreshPosts; n != 0 {
		t.Fatalf("RecheckStorage sent %d refresh requests", n)
	}
	if e.grant().InFlight.Active() {
		t.Fatal("RecheckStorage left a refresh-in-flight marker")
	}
}

// A token that could not be stored is retried in the background and, at
// shutdown, once more; if that fails too, Close says exactly what is lost.
func TestCloseReportsAnUnsavedToken(t *testing.T) {
	e := newEnv(t)
	e.setup()
	spy, src := e.spySource()
	spy.fail.Store(true)
	e.clk.Advance(time.Hour)
	if _, err := src.AccessToken(bg); err != nil {
		t.Fatal(err)
	}
	if serr := src.StorageError(); serr == nil || !strings.Contains(serr.Error(), auth.ReasonPersistFailed) {
		t.Fatalf("StorageError with an unsaved token: %v", serr)
	}
	err := src.Close(bg)
	if !errors.Is(err, auth.ErrTokenLost) {
		t.Fatalf("Close with an unsaved token: %v, want ErrTokenLost", err)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "level=ERROR msg=\"shutting down with a refreshed token that could not be stored") ||
		!strings.Contains(logs, "tibbersync setup") || !strings.Contains(logs, "writable") {
		t.Fatalf("shutdown did not say what is lost and what to do:\n%s", logs)
	}

	// With storage back, Close stores the token instead of losing it.
	e2 := newEnv(t)
	e2.setup()
	spy2 := &spyStore{Store: e2.store}
	e2.opts.Store = spy2
	src2 := e2.source()
	spy2.fail.Store(true)
	e2.clk.Advance(time.Hour)
	tok, err := src2.AccessToken(bg)
	if err != nil {
		t.Fatal(err)
	}
	spy2.fail.Store(false)
	if err := src2.Close(bg); err != nil {
		t.Fatalf("Close with storage back: %v", err)
	}
	if !e2.grant().Token.AccessToken.Equal(tok) {
		t.Fatal("Close did not store the unsaved token")
	}
}

// Deleting tokens.db-wal under a running process and then killing it lost
// a rotated token: the refresh was committed into the deleted file. Now the
// refresh is not sent.
func TestDeletedWALPostponesRefresh(t *testing.T) {
	e := newEnv(t)
	e.setup()
	src := e.source()
	if err := os.Remove(e.store.Path() + "-wal"); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Hour)
	_, err := src.AccessToken(bg)
	if !errors.Is(err, auth.ErrStorageUnsafe) || !errors.Is(err, tokenstore.ErrFileReplaced) {
		t.Fatalf("AccessToken with deleted -wal: %v", err)
	}
	if n := e.fake.stats().refreshPosts; n != 0 {
		t.Fatalf("%d refresh requests sent into a deleted file", n)
	}
}

// The reproduction: the state dir's disk is full when a refresh is
// due, the daemon restarts after space returns. Before the fix the refresh
// was sent although the marker could not be written, the rotated token lived
// only in memory, and the restart presented the rotated-out refresh token:
// reuse detected, grant revoked, reauth_required.
func TestFullDiskAtRefreshThenRestartLosesNothing(t *testing.T) {
	mnt := t.TempDir()
	testutil.MountTmpfs(t, mnt, "size=2m,mode=0700")
	e, sim := simEnv(t, simulator.Options{})
	e.dir = mnt
	e.store = e.openStore()
	e.opts.Store = e.store
	f := e.flow()
	authorizeURL, err := f.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Complete(context.Background(), browse(t, e, authorizeURL)); err != nil {
		t.Fatal(err)
	}
	src := e.source()
	if _, err := src.AccessToken(bg); err != nil {
		t.Fatal(err)
	}

	filler := testutil.FillDisk(t, mnt)
	// Several refresh slots pass on the full disk.
	for range 3 {
		e.clk.Advance(time.Hour)
		if _, err := src.AccessToken(bg); !errors.Is(err, auth.ErrStorageUnsafe) {
			t.Fatalf("AccessToken on a full disk: %v, want ErrStorageUnsafe", err)
		}
	}
	if n := sim.Stats().TokenRequests["refresh_token"]; n != 0 {
		t.Fatalf("%d refresh requests sent while tokens.db could not be written", n)
	}
	if st, _ := src.Status(bg); st.Reason != auth.ReasonStorageUnwritable {
		t.Fatalf("status on a full disk: %+v", st)
	}
	_ = src.Close(bg)
	if err := e.store.Close(); err != nil {
		t.Logf("close store on a full disk: %v", err)
	}

	// Space returns; the daemon restarts.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	e.store = e.openStore()
	e.opts.Store = e.store
	src = e.source()
	if err := src.Init(bg); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		e.clk.Advance(time.Hour)
		if _, err := src.AccessToken(bg); err != nil {
			t.Fatalf("after restart: %v", err)
		}
	}
	s := sim.Stats()
	st, _ := src.Status(bg)
	if s.RefreshReuse != 0 || s.GrantsRevoked != 0 || st.State != model.AuthOK || st.Reason != "" {
		t.Fatalf("reuse=%d revoked=%d state=%s reason=%q", s.RefreshReuse, s.GrantsRevoked, st.State, st.Reason)
	}
	if s.TokenRequests["authorization_code"] != 1 || s.Refreshes != 3 {
		t.Fatalf("code exchanges=%d refreshes=%d, want 1 and 3 (no re-authorization)", s.TokenRequests["authorization_code"], s.Refreshes)
	}
	if e.grant().Token.RefreshToken.Reveal() != sim.CurrentRefreshToken() {
		t.Fatal("stored refresh token is not the simulator's current one")
	}
}

// The save of a token whose commit failed is retried in the background
// every few seconds, without any further token call (issue 17, item 1).
func TestUnsavedTokenIsRetriedInTheBackground(t *testing.T) {
	e := newEnv(t)
	e.setup()
	spy, src := e.spySource()
	t.Cleanup(func() { _ = src.Close(bg) })
	spy.fail.Store(true)
	e.clk.Advance(time.Hour)
	tok, err := src.AccessToken(bg)
	if err != nil {
		t.Fatal(err)
	}
	spy.fail.Store(false)
	// The first retry comes after persistRetryMin (2 s of real time); the
	// bound only stops a broken test.
	deadline := time.Now().Add(time.Minute)
	for !e.grant().Token.AccessToken.Equal(tok) {
		if time.Now().After(deadline) {
			t.Fatal("the unsaved token was not stored by the background retry")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(e.logs.String(), "refreshed token stored after earlier failure") {
		t.Fatalf("recovery not logged:\n%s", e.logs.String())
	}
}

// spySource puts a spyStore in front of the environment's token store and
// returns it with a Source that uses it.
func (e *env) spySource() (*spyStore, *auth.Source) {
	spy := &spyStore{Store: e.store}
	e.opts.Store = spy
	return spy, e.source()
}
