package logging

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
)

// secretKeys are attribute keys whose value is redacted whatever its type
// (compared lower-case, with "-" read as "_"). Log an OAuth error code
// under "error", not "code".
var secretKeys = map[string]bool{
	"token":         true,
	"access_token":  true,
	"refresh_token": true,
	"id_token":      true,
	"code":          true,
	"code_verifier": true,
	"client_secret": true,
	"secret":        true,
	"password":      true,
	"passwd":        true,
	"authorization": true,
	"cookie":        true,
	"set_cookie":    true,
}

// secretSuffixes extend secretKeys to keys like "bearer_token",
// "webhook_secret" or "x_api_key".
var secretSuffixes = []string{"_token", "_secret", "_password", "api_key"}

// SecretKey reports whether an attribute key looks like it names a secret,
// in which case the redacting handler replaces its value.
func SecretKey(key string) bool {
	k := strings.ReplaceAll(strings.ToLower(key), "-", "_")
	if secretKeys[k] {
		return true
	}
	for _, s := range secretSuffixes {
		if strings.HasSuffix(k, s) {
			return true
		}
	}
	return false
}

// NewRedactingHandler wraps next so that every attribute, including those
// added with WithAttrs and those inside groups, is redacted before next
// sees it: secret-looking keys (SecretKey) get the value REDACTED, as does
// every attribute under a secret-looking group, and any value whose type
// holds a Secret where fmt would print it raw (behind an unexported field).
// New uses it; it is exported for callers that build their own handler.
func NewRedactingHandler(next slog.Handler) slog.Handler {
	return &redactingHandler{next: next, scan: &typeScanner{}}
}

type redactingHandler struct {
	next slog.Handler
	// all is set under a WithGroup whose name looks secret.
	all  bool
	scan *typeScanner
}

// Enabled defers to the wrapped handler.
func (h *redactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

// Handle redacts the record's attributes and passes it on.
func (h *redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(h.redact(a, h.all))
		return true
	})
	return h.next.Handle(ctx, nr)
}

// WithAttrs redacts attrs before the wrapped handler stores them.
func (h *redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = h.redact(a, h.all)
	}
	return &redactingHandler{next: h.next.WithAttrs(out), all: h.all, scan: h.scan}
}

// WithGroup redacts everything under a secret-looking group name.
func (h *redactingHandler) WithGroup(name string) slog.Handler {
	return &redactingHandler{next: h.next.WithGroup(name), all: h.all || SecretKey(name), scan: h.scan}
}

func (h *redactingHandler) redact(a slog.Attr, all bool) slog.Attr {
	if all || SecretKey(a.Key) {
		if a.Value.Kind() == slog.KindGroup && a.Key == "" {
			// An inlined group: redact its members, keeping their keys.
			return slog.Attr{Key: a.Key, Value: h.redactGroup(a.Value.Group(), true)}
		}
		return slog.String(a.Key, Redacted)
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		return slog.Attr{Key: a.Key, Value: h.redactGroup(v.Group(), false)}
	case slog.KindAny:
		if h.scan.unsafe(v.Any()) {
			return slog.String(a.Key, Redacted)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func (h *redactingHandler) redactGroup(attrs []slog.Attr, all bool) slog.Value {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = h.redact(a, all)
	}
	return slog.GroupValue(out...)
}

// typeScanner decides, per type, whether printing a value with fmt (as the
// text and tint handlers do) could reveal a Secret: fmt cannot call methods
// on values reached through unexported fields, so a Secret there prints its
// raw content. Results are cached per type; the cache belongs to one
// handler tree.
type typeScanner struct {
	cache sync.Map // reflect.Type → bool
}

var (
	secretType    = reflect.TypeFor[Secret]()
	formatterType = reflect.TypeFor[fmt.Formatter]()
	stringerType  = reflect.TypeFor[fmt.Stringer]()
	errorType     = reflect.TypeFor[error]()
)

func (s *typeScanner) unsafe(v any) bool {
	if v == nil {
		return false
	}
	t := reflect.TypeOf(v)
	if cached, ok := s.cache.Load(t); ok {
		return cached.(bool)
	}
	leak := leaks(t, false, map[seenKey]bool{})
	s.cache.Store(t, leak)
	return leak
}

// leaks reports whether fmt printing a value of type t could print a Secret
// raw. hidden is set once the path crossed an unexported field, after which
// fmt calls no methods. Interface-typed fields are not followed (their
// dynamic type is unknown here); pointers are followed although fmt prints
// nested pointers as addresses, which errs on the side of redacting.
// seenKey marks a type already visited in a given state, so that recursive
// types end the walk.
type seenKey struct {
	t      reflect.Type
	hidden bool
}

func leaks(t reflect.Type, hidden bool, seen map[seenKey]bool) bool {
	if t == secretType {
		return hidden
	}
	if !hidden && (t.Implements(formatterType) || t.Implements(stringerType) || t.Implements(errorType)) {
		// fmt prints it through its own method.
		return false
	}
	key := seenKey{t, hidden}
	if seen[key] {
		return false
	}
	seen[key] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return leaks(t.Elem(), hidden, seen)
	case reflect.Map:
		return leaks(t.Key(), hidden, seen) || leaks(t.Elem(), hidden, seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if leaks(f.Type, hidden || !f.IsExported(), seen) {
				return true
			}
		}
	}
	return false
}
