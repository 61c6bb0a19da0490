// Package logging builds the process's one *slog.Logger and holds Secret,
// the redacting type for tokens, codes, verifiers and the client secret.
//
// Every logger New returns passes records through a redacting handler, a
// second line of defence behind Secret: attributes whose key looks secret
// (token, code, client_secret, authorization, ...) are replaced by REDACTED
// whatever their type, and so is any value that would print a Secret's
// content through fmt (a Secret in an unexported struct field, which fmt
// prints without calling its methods). Below the redaction, a display
// handler neutralises control characters and bidi overrides in every
// message and string value (see Display), whatever the format.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/lmittmann/tint"
	"github.com/mattn/go-isatty"
)

// The accepted values of the format argument of New.
const (
	FormatAuto   = "auto"
	FormatTint   = "tint"
	FormatLogfmt = "logfmt"
	FormatJSON   = "json"
)

// New builds the one logger of the process, writing to w.
//
// format is "auto" (tint with colour when w is a terminal, logfmt
// otherwise; under journald, logfmt without the time, which the journal
// records itself), "tint" (human-friendly; colour only on a terminal and
// when NO_COLOR is unset), "logfmt" (slog.TextHandler) or "json"
// (slog.JSONHandler). level is debug, info, warn or error.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	var h slog.Handler
	switch strings.ToLower(strings.TrimSpace(format)) {
	case FormatAuto:
		switch {
		case isTerminal(w):
			h = newTint(w, lvl)
		case underJournald(w):
			h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl, ReplaceAttr: dropTime})
		default:
			h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})
		}
	case FormatTint:
		h = newTint(w, lvl)
	case FormatLogfmt:
		h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})
	case FormatJSON:
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})
	default:
		return nil, fmt.Errorf("unknown log format %q (want auto, tint, logfmt or json)", format)
	}
	return slog.New(NewRedactingHandler(NewDisplayHandler(h))), nil
}

// ParseLevel parses debug, info, warn or error (case-insensitive).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

// Discard returns a logger that writes nothing, for tests and for
// components constructed without a logger.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newTint(w io.Writer, lvl slog.Level) slog.Handler {
	return tint.NewTextHandler(w, &tint.Options{
		Level:      lvl,
		TimeFormat: "2006-01-02 15:04:05.000",
		NoColor:    !isTerminal(w) || os.Getenv("NO_COLOR") != "",
	})
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// dropTime removes the record's time (journald stamps every line itself).
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
