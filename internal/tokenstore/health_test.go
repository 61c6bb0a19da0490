package tokenstore_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

// storedGrant opens dir, stores a grant and closes the store again, leaving
// a checkpointed tokens.db.
func storedGrant(t *testing.T, dir string) string {
	t.Helper()
	s, err := tokenstore.Open(context.Background(), dir, clock.NewFake(t0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SaveGrant(context.Background(), testToken("1", t0), t0); err != nil {
		t.Fatal(err)
	}
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func assertReplacedDamaged(t *testing.T, dir, path string) {
	t.Helper()
	s := mustOpen(t, dir, clock.NewFake(t0))
	if s.Damage() == "" || !strings.Contains(s.Damage(), "tokens.db.damaged-") || !strings.Contains(s.Damage(), "setup") {
		t.Fatalf("Damage() = %q, want what happened, where the file is kept and what to do", s.Damage())
	}
	g, err := s.Grant(context.Background())
	if err != nil {
		t.Fatalf("Grant after repair: %v", err)
	}
	if g.HasToken || g.State != model.AuthSetupRequired || !strings.Contains(g.Reason, "damaged") {
		t.Fatalf("grant after repair: has_token=%v state=%s reason=%q", g.HasToken, g.State, g.Reason)
	}
	matches, _ := filepath.Glob(path + ".damaged-*")
	if len(matches) == 0 {
		t.Fatal("the damaged tokens.db was not kept aside")
	}
	// The fresh file takes a new grant.
	if _, err := s.SaveGrant(context.Background(), testToken("2", t0), t0); err != nil {
		t.Fatalf("SaveGrant after repair: %v", err)
	}
}

func TestOpenKeepsGarbageTokensDBAside(t *testing.T) {
	dir := t.TempDir()
	path := storedGrant(t, dir)
	junk := []byte(strings.Repeat("this is not a database ", 400))
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	assertReplacedDamaged(t, dir, path)
}

func TestOpenKeepsCorruptTokensDBAside(t *testing.T) {
	dir := t.TempDir()
	path := storedGrant(t, dir)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 3*4096 {
		t.Fatalf("tokens.db is %d bytes; want at least 3 pages", len(b))
	}
	// Overwrite every page after the first (the schema page stays intact).
	for i := 4096 + 100; i < len(b); i++ {
		b[i] = 0xA5
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	assertReplacedDamaged(t, dir, path)
}

func TestOpenTreatsMissingGrantRowAsDamage(t *testing.T) {
	dir := t.TempDir()
	path := storedGrant(t, dir)
	db, err := sql.Open("sqlite", tokenstore.DSN(path))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM grant_state`); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	assertReplacedDamaged(t, dir, path)
}

func TestCheckFilesNoticesDeletedAndReplacedFiles(t *testing.T) {
	for _, victim := range []string{"-wal", ""} {
		t.Run("tokens.db"+victim, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir, clock.NewFake(t0))
			if _, err := s.SaveGrant(context.Background(), testToken("1", t0), t0); err != nil {
				t.Fatal(err)
			}
			if err := s.CheckFiles(); err != nil {
				t.Fatalf("fresh store: %v", err)
			}
			p := s.Path() + victim
			if victim == "" {
				// Replace: a copy moved over the open file.
				b, _ := os.ReadFile(p)
				if err := os.WriteFile(p+".new", b, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(p+".new", p); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			err := s.CheckFiles()
			if !errors.Is(err, tokenstore.ErrFileReplaced) || !strings.Contains(err.Error(), "tokens.db"+victim) {
				t.Fatalf("CheckFiles = %v, want ErrFileReplaced naming tokens.db%s", err, victim)
			}
		})
	}
}
