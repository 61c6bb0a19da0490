package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrConfig is wrapped by every error Load and Validate return, so that the
// caller can map any configuration problem to exit status 78 (EX_CONFIG) with
// errors.Is.
var ErrConfig = errors.New("config")

// Sentinels wrapped by FieldError.Err; test for them with errors.Is on a
// *ValidationError or a single FieldError.
var (
	// ErrUnknownKey is a key in the TOML file (or a TIBBERSYNC_ environment
	// variable for a known section) that Config does not have.
	ErrUnknownKey = errors.New("unknown key")
	// ErrWrongType is a value of the wrong TOML type, e.g. a string where an
	// integer is expected.
	ErrWrongType = errors.New("wrong type")
	// ErrSecretInConfig is a client_secret key in the TOML file; the secret
	// only comes from a file, a systemd credential or the environment.
	ErrSecretInConfig = errors.New("the client secret is never read from the config file")
	// ErrBadCron is a schedule that robfig/cron's standard parser rejects.
	ErrBadCron = errors.New("bad cron spec")
	// ErrBadURL is a URL that is not absolute http(s) with a host (or, for
	// redirect_url, lacks a path).
	ErrBadURL = errors.New("bad URL")
	// ErrUnknownResolution is a history resolution Tibber does not know.
	ErrUnknownResolution = errors.New("unknown resolution")
	// ErrNegativeDuration is a duration below zero.
	ErrNegativeDuration = errors.New("negative duration")
	// ErrOutOfRange is a number or duration outside its allowed range.
	ErrOutOfRange = errors.New("out of range")
	// ErrBadValue is a value that is not one of the allowed words, or is
	// malformed in another way.
	ErrBadValue = errors.New("bad value")
	// ErrEmpty is a required value that is empty.
	ErrEmpty = errors.New("empty")
	// ErrSecretFile is a client secret file (or systemd credential) that is
	// missing, unreadable, too large, empty, or readable by group or others.
	ErrSecretFile = errors.New("bad client secret file")
	// ErrPasswordInConfig is a password key in the [mqtt] section; the
	// broker password only comes from a file or a systemd credential.
	ErrPasswordInConfig = errors.New("the MQTT password is never read from the config file")
	// ErrPasswordFile is an MQTT password file (or systemd credential) that
	// is missing, unreadable, too large, empty, or readable by group or
	// others.
	ErrPasswordFile = errors.New("bad MQTT password file")
)

// FieldError is one bad configuration key. Value is the offending value as
// text (never a secret); Err wraps one of the sentinels above.
type FieldError struct {
	Key   string
	Value string
	Err   error
}

// maxShownValue bounds how much of a value an error message repeats.
const maxShownValue = 200

// Error prints `config: key = "value": problem`. The value is left out for
// unknown keys and for a client_secret in the file, where it might be a
// secret the user pasted, and when it is empty for a wrong type (the value
// of a whole section, which is never shown).
func (e FieldError) Error() string {
	if e.hideValue() {
		return fmt.Sprintf("config: %s: %v", e.Key, e.Err)
	}
	v := e.Value
	if len(v) > maxShownValue {
		v = v[:maxShownValue] + "..."
	}
	if strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
		// A list, already shown in TOML syntax.
		return fmt.Sprintf("config: %s = %s: %v", e.Key, v, e.Err)
	}
	return fmt.Sprintf("config: %s = %q: %v", e.Key, v, e.Err)
}

func (e FieldError) hideValue() bool {
	return errors.Is(e.Err, ErrUnknownKey) || errors.Is(e.Err, ErrSecretInConfig) || errors.Is(e.Err, ErrPasswordInConfig) ||
		(e.Value == "" && errors.Is(e.Err, ErrWrongType))
}

// Unwrap returns the underlying problem (one of the sentinels, wrapped).
func (e FieldError) Unwrap() error { return e.Err }

// ValidationError lists every bad key found in one Load or Validate, in the
// order of the keys in Config (unknown keys last).
type ValidationError struct {
	Fields []FieldError
}

// Error prints one line per bad key.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		lines[i] = f.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap makes errors.Is match ErrConfig and every field's sentinel.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, 0, len(e.Fields)+1)
	errs = append(errs, ErrConfig)
	for _, f := range e.Fields {
		errs = append(errs, f)
	}
	return errs
}

// problems collects FieldErrors while loading and validating.
type problems struct {
	fields []FieldError
}

func (p *problems) add(key, value string, err error) {
	p.fields = append(p.fields, FieldError{Key: key, Value: value, Err: err})
}

func (p *problems) addf(key, value string, sentinel error, format string, args ...any) {
	p.add(key, value, fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...))
}

// err returns nil or a *ValidationError sorted by key order.
func (p *problems) err() error {
	if len(p.fields) == 0 {
		return nil
	}
	order := map[string]int{}
	for i, s := range keySpecs() {
		order[s.key] = i
	}
	fields := append([]FieldError(nil), p.fields...)
	rank := func(k string) int {
		if i, ok := order[k]; ok {
			return i
		}
		return len(order)
	}
	slices.SortStableFunc(fields, func(a, b FieldError) int {
		if c := cmp.Compare(rank(a.Key), rank(b.Key)); c != 0 {
			return c
		}
		if rank(a.Key) == len(order) {
			return strings.Compare(a.Key, b.Key)
		}
		return 0
	})
	return &ValidationError{Fields: fields}
}
