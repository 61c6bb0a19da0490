// Package secret holds Secret, the type for tokens, codes, verifiers and the
// client secret: every way of printing one shows REDACTED. It is a leaf so
// that the shared types in model can carry secrets without importing logging.
package secret

import (
	"fmt"
	"log/slog"
)

// Redacted is what every formatting of a Secret prints.
const Redacted = "REDACTED"

// Secret holds a token, code, verifier or client secret. Every way of
// printing it (fmt verbs, slog, JSON) shows REDACTED; only Reveal returns the
// value, and only code that sends it to Tibber or stores it in tokens.db
// calls Reveal.
type Secret struct{ v string }

// New wraps s.
func New(s string) Secret { return Secret{v: s} }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return s.v }

// Empty reports whether the secret is unset.
func (s Secret) Empty() bool { return s.v == "" }

// Equal compares two secrets.
func (s Secret) Equal(o Secret) bool { return s.v == o.v }

// String implements fmt.Stringer.
func (s Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return Redacted }

// Format implements fmt.Formatter so that every verb, flag and width redacts.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		_, _ = fmt.Fprintf(f, "%q", Redacted)
		return
	}
	_, _ = f.Write([]byte(Redacted))
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON redacts in JSON output too.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText redacts in text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
