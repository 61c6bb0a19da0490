package logging

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// hostileName is a device name as a hostile or broken Tibber could send it:
// an OSC retitle ending in BEL, a clear-screen CSI, a C1 CSI, a bidi
// override, an isolate and a byte that is not UTF-8.
const hostileName = "Heat\x1b]0;pwned\x07\x1b[2J pump \u202egpj.exe\u2066x\u2069 \u009b31m end\xff"

func assertNeutral(t *testing.T, where, out string) {
	t.Helper()
	for _, bad := range []string{"\x1b]", "\x1b[2J", "\u202e", "\u2066", "\u009b", "\x07", "\xff"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s contains raw %q:\n%q", where, bad, out)
		}
	}
}

func TestDisplayNeutralises(t *testing.T) {
	got := Display(hostileName)
	assertNeutral(t, "Display", got)
	want := `Heat\x1b]0;pwned\x07\x1b[2J pump \u202egpj.exe\u2066x\u2069 \u009b31m end\xff`
	if got != want {
		t.Errorf("Display = %q\nwant     %q", got, want)
	}
	for _, s := range []string{"", "plain ascii", "Wohnzimmer Wärmepumpe ☀ 日本", "tab\there"} {
		if s == "tab\there" {
			if Display(s) != `tab\x09here` {
				t.Errorf("Display(%q) = %q", s, Display(s))
			}
			continue
		}
		if Display(s) != s {
			t.Errorf("Display(%q) = %q, want unchanged", s, Display(s))
		}
	}
	if got := DisplayText("line1\n\tline2\x1b[2J\u202e"); got != "line1\n\tline2\\x1b[2J\\u202e" {
		t.Errorf("DisplayText = %q", got)
	}
	// Distinct inputs stay distinct.
	if Display("a\u202eb") == Display("a\u202db") {
		t.Error("two different overrides display the same")
	}
}

func TestDisplayWriter(t *testing.T) {
	var buf bytes.Buffer
	w := DisplayWriter(&buf)
	n, err := fmt.Fprintf(w, "device: %s\n", hostileName)
	if err != nil || n != len("device: ")+len(hostileName)+1 {
		t.Fatalf("write: n=%d err=%v", n, err)
	}
	assertNeutral(t, "DisplayWriter output", buf.String())
	if !strings.HasSuffix(buf.String(), "end\\xff\n") {
		t.Errorf("newline lost: %q", buf.String())
	}
}

type nameStringer string

func (n nameStringer) String() string { return string(n) }

// TestLogFormatsNeutralise logs Tibber text through every format New
// offers, as message, attribute, WithAttrs, group, error, Stringer and
// string slice: no format may write the raw sequences.
func TestLogFormatsNeutralise(t *testing.T) {
	for _, format := range []string{FormatAuto, FormatTint, FormatLogfmt, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(&buf, "debug", format)
			if err != nil {
				t.Fatal(err)
			}
			log.With("home_name", hostileName).WithGroup("dev").Info("device "+hostileName,
				"name", hostileName,
				"err", errors.New("detail "+hostileName),
				"str", nameStringer(hostileName),
				"scopes", []string{"ok", hostileName},
				slog.Group("info", "brand", hostileName),
			)
			out := buf.String()
			assertNeutral(t, format+" log", out)
			if strings.Count(out, "pump") < 7 {
				t.Errorf("%s log lost values:\n%s", format, out)
			}
		})
	}
}

func TestStripInvisible(t *testing.T) {
	tok := "eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl"
	split := "eyJhbG\u200bciOi.ey\u2060JzdWIi\ufeffOiIx.c2ln\u00adbmF0\u200dd\ufe0fXJl"
	if got := StripInvisible(split); got != tok {
		t.Errorf("StripInvisible = %q, want %q", got, tok)
	}
	if s := "Wärme ☀"; StripInvisible(s) != s {
		t.Errorf("StripInvisible changed visible text")
	}
}
