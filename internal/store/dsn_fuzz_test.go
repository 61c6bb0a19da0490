package store_test

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/store"
)

// FuzzBuildDSN holds BuildDSN's invariants for any path and setting (R28):
// it never panics; what it accepts is a file: URI whose path part is the
// input unchanged, whose query parses into exactly the expected keys, and
// whose every _pragma is one plain call with no statement separator.
func FuzzBuildDSN(f *testing.F) {
	for _, seed := range []struct {
		path, sync string
		ro         bool
	}{
		{"/var/lib/tibbersync/data.db", "", false},
		{"/var/lib/tibbersync/data.db", "NORMAL", true},
		{"/tmp/a b/data.db", "full", false},
		{"/tmp/x.db?mode=rwc", "", false},
		{"/tmp/x.db", "FULL);ATTACH 'y.db' AS y;--", false},
		{"relative.db", "", false},
		{"/tmp/%41.db", "", true},
		{"/tmp/ø/données.db", "normal", false},
	} {
		f.Add(seed.path, seed.sync, seed.ro)
	}
	f.Fuzz(func(t *testing.T, path, sync string, ro bool) {
		dsn, err := store.BuildDSN(path, ro, sync)
		if err != nil {
			if dsn != "" {
				t.Fatalf("error %v with a DSN %q", err, dsn)
			}
			return
		}
		if len(dsn) > len(path)+300 {
			t.Fatalf("DSN unexpectedly long: %d bytes", len(dsn))
		}
		if !filepath.IsAbs(path) {
			t.Fatalf("accepted relative path %q", path)
		}
		rest, ok := strings.CutPrefix(dsn, "file:")
		if !ok {
			t.Fatalf("DSN %q is not a file: URI", dsn)
		}
		p, query, ok := strings.Cut(rest, "?")
		if !ok || p != path {
			t.Fatalf("path part %q, want %q", p, path)
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			t.Fatalf("query %q does not parse: %v", query, err)
		}
		want := map[string]bool{"_busy_timeout": true, "_pragma": true}
		if ro {
			want["mode"] = true
		} else {
			want["_txlock"] = true
		}
		for k := range q {
			if !want[k] {
				t.Fatalf("unexpected key %q in %q", k, dsn)
			}
		}
		if ro != (q.Get("mode") == "ro") {
			t.Fatalf("mode=%q for readOnly=%v", q.Get("mode"), ro)
		}
		for _, pr := range q["_pragma"] {
			name, arg, ok := strings.Cut(pr, "(")
			if !ok || !strings.HasSuffix(arg, ")") || strings.ContainsAny(pr, ";'\"` \t\n") {
				t.Fatalf("pragma %q is not one plain call", pr)
			}
			if ro && name == "journal_mode" {
				t.Fatal("read-only DSN sets journal_mode")
			}
			for _, r := range strings.TrimSuffix(arg, ")") {
				if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
					t.Fatalf("pragma %q has a non-plain argument", pr)
				}
			}
		}
	})
}
