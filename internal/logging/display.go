package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text from Tibber (device and home names, emails, scopes, error details)
// is stored exactly as received, but it must never drive the terminal, the
// log viewer or the browser that shows it: an ESC ] sequence retitles a
// terminal, ESC [2J clears it, and a bidi override (U+202E) makes "gpj.exe"
// read as "exe.jpg". Display and DisplayText are the one place that
// neutralises such characters; the CLI, the progress bar, every log format
// (NewDisplayHandler, installed by New) and the status page use them.
//
// Neutralised are: C0 controls and DEL, C1 controls (U+0080–U+009F), the
// bidi embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069),
// the implicit direction marks (U+200E, U+200F, U+061C), the line and
// paragraph separators (U+2028, U+2029), the interlinear annotation and
// object replacement controls (U+FFF9–U+FFFB) and bytes that are not UTF-8.
// Each becomes a visible escape: \x1b for a C0 control or DEL, \u202e for
// the others, \xff for a byte that is not UTF-8; so nothing is silently
// dropped and two different names never look the same.

// Neutralise reports whether r is a character Display escapes.
func Neutralise(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f:
		return true
	case r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	case r == 0x200e, r == 0x200f, r == 0x061c, r == 0x2028, r == 0x2029:
		return true
	case r >= 0xfff9 && r <= 0xfffb:
		return true
	}
	return false
}

// Display returns s safe to print on one line: every character Neutralise
// reports, newlines and tabs included, is replaced by a visible escape.
func Display(s string) string { return display(s, false) }

// DisplayText is Display for multi-line text: newlines and tabs are kept,
// every other character Neutralise reports is escaped.
func DisplayText(s string) string { return display(s, true) }

func display(s string, keepLines bool) string {
	if clean(s, keepLines) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepLines && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case r < 0x80 && Neutralise(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case Neutralise(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// clean reports whether s needs no escaping (the fast path).
func clean(s string, keepLines bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			// Decode the rest properly.
			for _, r := range s[i:] {
				if r == utf8.RuneError || Neutralise(r) && !(keepLines && (r == '\n' || r == '\t')) {
					return false
				}
			}
			return utf8.ValidString(s[i:])
		}
		if (c < 0x20 || c == 0x7f) && !(keepLines && (c == '\n' || c == '\t')) {
			return false
		}
	}
	return true
}

// DisplayWriter returns a writer that passes text to w with DisplayText
// applied to every write, for CLI output that may carry Tibber text. Writes
// should be whole lines or at least whole characters (fmt.Fprintf calls
// are); a character split across two writes is shown as escaped bytes.
func DisplayWriter(w io.Writer) io.Writer { return &displayWriter{w: w} }

type displayWriter struct{ w io.Writer }

func (d *displayWriter) Write(p []byte) (int, error) {
	s := string(p)
	out := DisplayText(s)
	if _, err := io.WriteString(d.w, out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// NewDisplayHandler wraps next so that the message and every string value
// (attributes, groups, errors and Stringers included) reach it with Display
// applied: no log format, the coloured terminal one in particular, ever
// writes a raw control character or bidi override that came from Tibber.
// Keys are ours and pass unchanged. New installs it in every logger.
func NewDisplayHandler(next slog.Handler) slog.Handler {
	return &displayHandler{next: next}
}

type displayHandler struct{ next slog.Handler }

func (h *displayHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *displayHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, Display(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(displayAttr(a))
		return true
	})
	return h.next.Handle(ctx, nr)
}

func (h *displayHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = displayAttr(a)
	}
	return &displayHandler{next: h.next.WithAttrs(out)}
}

func (h *displayHandler) WithGroup(name string) slog.Handler {
	return &displayHandler{next: h.next.WithGroup(name)}
}

func displayAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); !clean(s, false) {
			return slog.String(a.Key, Display(s))
		}
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, ga := range g {
			out[i] = displayAttr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			if s := x.Error(); !clean(s, false) {
				return slog.String(a.Key, Display(s))
			}
		case fmt.Stringer:
			if s := x.String(); !clean(s, false) {
				return slog.String(a.Key, Display(s))
			}
		case []byte:
			if s := string(x); !clean(s, false) {
				return slog.String(a.Key, Display(s))
			}
		case []string:
			var out []string
			for i, s := range x {
				if !clean(s, false) {
					if out == nil {
						out = append([]string(nil), x...)
					}
					out[i] = Display(s)
				}
			}
			if out != nil {
				return slog.Any(a.Key, out)
			}
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// StripInvisible removes the characters that render as nothing: format
// characters (zero-width space, joiners, word joiner, soft hyphen, BOM, the
// bidi controls) and variation selectors. Redaction matches secrets on the
// stripped text, so a copy of a token split by zero-width characters is
// still found.
func StripInvisible(s string) string {
	if !hasInvisible(s) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if invisible(r) {
			return -1
		}
		return r
	}, s)
}

func hasInvisible(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return strings.IndexFunc(s[i:], invisible) >= 0
		}
	}
	return false
}

func invisible(r rune) bool {
	switch {
	case r < 0x80:
		return false
	case unicode.Is(unicode.Cf, r):
		return true
	case r >= 0xfe00 && r <= 0xfe0f, r >= 0xe0100 && r <= 0xe01ef: // variation selectors
		return true
	case r == 0x034f, r == 0x115f, r == 0x1160, r == 0x3164, r == 0xffa0: // grapheme joiner, Hangul fillers
		return true
	}
	return false
}
