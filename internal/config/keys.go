package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// keySpec is one leaf key of Config, e.g. "schedule.devices".
type keySpec struct {
	key     string // section.name
	section string
	name    string
	typ     reflect.Type
	index   []int // reflect field index path from Config
}

var durationType = reflect.TypeFor[time.Duration]()

// keySpecs lists the leaf keys of Config in declaration order, derived from
// the koanf tags. It is computed on each call: cheap, and no package state.
func keySpecs() []keySpec {
	var specs []keySpec
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		sf := ct.Field(i)
		section := sf.Tag.Get("koanf")
		if section == "" || section == "-" || sf.Type.Kind() != reflect.Struct {
			continue
		}
		for j := range sf.Type.NumField() {
			ff := sf.Type.Field(j)
			name := ff.Tag.Get("koanf")
			if name == "" || name == "-" {
				continue
			}
			specs = append(specs, keySpec{
				key:     section + "." + name,
				section: section,
				name:    name,
				typ:     ff.Type,
				index:   []int{i, j},
			})
		}
	}
	return specs
}

// isList reports whether the key holds a list of strings.
func (s keySpec) isList() bool {
	return s.typ.Kind() == reflect.Slice && s.typ.Elem().Kind() == reflect.String
}

// flatValues returns the leaf values of c keyed by their koanf key.
func flatValues(c Config) map[string]any {
	v := reflect.ValueOf(c)
	out := map[string]any{}
	for _, s := range keySpecs() {
		f := v.FieldByIndex(s.index)
		if s.isList() {
			// Copy so that the map never aliases c's slices.
			out[s.key] = append([]string{}, f.Interface().([]string)...)
			continue
		}
		out[s.key] = f.Interface()
	}
	return out
}

// convert turns a raw value from koanf (TOML types, environment strings, or
// typed defaults) into the Go type of the key. The returned error wraps
// ErrWrongType and says what was expected.
func convert(s keySpec, raw any) (any, error) {
	switch {
	case s.typ == durationType:
		return toDuration(raw)
	case s.isList():
		return toStrings(raw)
	}
	switch s.typ.Kind() {
	case reflect.String:
		if v, ok := raw.(string); ok {
			return v, nil
		}
		return nil, fmt.Errorf("%w: expected a string, got %s", ErrWrongType, typeName(raw))
	case reflect.Bool:
		switch v := raw.(type) {
		case bool:
			return v, nil
		case string:
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return nil, fmt.Errorf("%w: expected true or false", ErrWrongType)
			}
			return b, nil
		}
		return nil, fmt.Errorf("%w: expected true or false, got %s", ErrWrongType, typeName(raw))
	case reflect.Int, reflect.Int64:
		n, err := toInt(raw)
		if err != nil {
			return nil, err
		}
		if s.typ.Kind() == reflect.Int {
			if n < math.MinInt || n > math.MaxInt {
				return nil, fmt.Errorf("%w: integer too large", ErrOutOfRange)
			}
			return int(n), nil
		}
		return n, nil
	case reflect.Float64:
		return toFloat(raw)
	}
	// A new field type in types.go needs a case above.
	return nil, fmt.Errorf("%w: unsupported field type %s", ErrWrongType, s.typ)
}

func toDuration(raw any) (time.Duration, error) {
	const want = `expected a duration such as "30s", "5m" or "48h"`
	switch v := raw.(type) {
	case time.Duration:
		return v, nil
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("%w: %s", ErrWrongType, want)
		}
		return d, nil
	case int64:
		// A bare number is ambiguous (seconds? nanoseconds?); only 0 is clear.
		if v == 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("%w: %s (a bare number is only allowed for 0)", ErrWrongType, want)
	}
	return 0, fmt.Errorf("%w: %s, got %s", ErrWrongType, want, typeName(raw))
}

func toStrings(raw any) ([]string, error) {
	switch v := raw.(type) {
	case []string:
		return append([]string{}, v...), nil
	case []any:
		out := make([]string, 0, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%w: element %d is %s, expected a string", ErrWrongType, i+1, typeName(e))
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: expected an array of strings, got %s", ErrWrongType, typeName(raw))
}

func toInt(raw any) (int64, error) {
	switch v := raw.(type) {
	case int:
		return int64(v), nil
	case int64:
		return v, nil
	case float64:
		if v != math.Trunc(v) || math.IsInf(v, 0) || v < math.MinInt64 || v >= math.MaxInt64 {
			return 0, fmt.Errorf("%w: expected an integer", ErrWrongType)
		}
		return int64(v), nil
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: expected an integer", ErrWrongType)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: expected an integer, got %s", ErrWrongType, typeName(raw))
}

func toFloat(raw any) (float64, error) {
	switch v := raw.(type) {
	case float64:
		return v, nil
	case int:
		return float64(v), nil
	case int64:
		return float64(v), nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, fmt.Errorf("%w: expected a number", ErrWrongType)
		}
		return f, nil
	}
	return 0, fmt.Errorf("%w: expected a number, got %s", ErrWrongType, typeName(raw))
}

// typeName names a raw value's type in TOML terms for error messages.
func typeName(raw any) string {
	switch raw.(type) {
	case nil:
		return "nothing"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64:
		return "an integer"
	case float64:
		return "a float"
	case []any, []string:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date-time"
	}
	return fmt.Sprintf("a %T", raw)
}

// showValue renders a raw value for FieldError.Value.
func showValue(raw any) string {
	switch v := raw.(type) {
	case string:
		return v
	case []string:
		return "[" + strings.Join(quoteAll(v), ", ") + "]"
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			if s, ok := e.(string); ok {
				parts[i] = strconv.Quote(s)
			} else {
				parts[i] = fmt.Sprint(e)
			}
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		return "{...}"
	}
	return fmt.Sprint(raw)
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// splitList splits an environment value on commas and white space.
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// suggest returns the known key closest to key (edit distance at most 2),
// or "" when nothing is close.
func suggest(key string, specs []keySpec) string {
	best, bestD := "", 3
	for _, s := range specs {
		if d := editDistance(key, s.key); d < bestD {
			best, bestD = s.key, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
