package tibber

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"

	"github.com/tibbersync/tibbersync/internal/model"
)

// ErrSchemaDrift is wrapped by the error of a call whose response has a
// shape the client does not recognise: a list or page without its member,
// a member of another type, history items without time or data. Such a
// response is never read as an empty list or page, since that would lose
// data silently; the caller's run fails for it and retries later.
var ErrSchemaDrift = model.ErrSchemaDrift

// maxMembersListed bounds the member names quoted in a drift error.
const maxMembersListed = 12

// SchemaDriftError says which endpoint answered with an unknown shape and
// what was seen instead. It wraps ErrSchemaDrift.
type SchemaDriftError struct {
	// Endpoint is "GET <path>" of the request (filled in by the client).
	Endpoint string
	// Route is the low-cardinality endpoint name (see Route), for metrics.
	Route string
	// Problem says what is missing or of the wrong type.
	Problem string
	// Members are the top-level member names seen (sorted, bounded).
	Members []string
}

func (e *SchemaDriftError) Error() string {
	var b strings.Builder
	b.WriteString(ErrSchemaDrift.Error())
	if e.Endpoint != "" {
		b.WriteString(" at " + e.Endpoint)
	}
	b.WriteString(": " + e.Problem)
	if e.Members != nil {
		quoted := make([]string, len(e.Members))
		for i, m := range e.Members {
			quoted[i] = quoteName(m)
		}
		if len(quoted) == 0 {
			b.WriteString(" (no members)")
		} else {
			b.WriteString(" (members seen: " + strings.Join(quoted, ", ") + ")")
		}
	}
	return b.String()
}

// Is makes errors.Is(err, ErrSchemaDrift) true.
func (e *SchemaDriftError) Is(target error) bool { return target == ErrSchemaDrift }

// IsSchemaDrift reports whether err says Tibber's response format changed.
func IsSchemaDrift(err error) bool { return errors.Is(err, ErrSchemaDrift) }

// driftf returns a drift error for a response whose top-level members are
// those of obj (nil when the body was not an object).
func driftf[V any](obj map[string]V, format string, args ...any) *SchemaDriftError {
	e := &SchemaDriftError{Problem: fmt.Sprintf(format, args...)}
	if obj != nil {
		e.Members = memberNames(obj)
	}
	return e
}

func memberNames[V any](obj map[string]V) []string {
	names := make([]string, 0, len(obj))
	for k := range obj {
		names = append(names, k)
	}
	slices.Sort(names)
	if len(names) > maxMembersListed {
		names = append(names[:maxMembersListed], fmt.Sprintf("… %d more", len(obj)-maxMembersListed))
	}
	return names
}

// DriftObserver is implemented by an Observer that also counts responses
// whose format changed (tibbersync_schema_drift_total).
type DriftObserver interface {
	ObserveSchemaDrift(route string)
}

// decodeFailed wraps a decoder error of the response to u. A drift error
// gets the endpoint filled in, is counted and logged at WARN.
func (c *Client) decodeFailed(ctx context.Context, u *url.URL, err error) error {
	var de *SchemaDriftError
	if !errors.As(err, &de) {
		return fmt.Errorf("decode GET %s: %w", u.EscapedPath(), err)
	}
	de.Endpoint = "GET " + u.EscapedPath()
	de.Route = Route(u)
	if o, ok := c.observer.(DriftObserver); ok {
		o.ObserveSchemaDrift(de.Route)
	}
	c.log.LogAttrs(ctx, slog.LevelWarn, "Tibber's response format changed; nothing from this response is stored",
		slog.String("endpoint", de.Route),
		slog.String("path", u.EscapedPath()),
		slog.String("problem", de.Problem),
		slog.Any("members", de.Members))
	return de
}
