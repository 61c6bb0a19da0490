package config_test

import (
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/knadh/koanf/parsers/toml/v2"

	"github.com/tibbersync/tibbersync/internal/config"
)

const examplePath = "../../config.example.toml"

// configKeys walks Config by reflection and returns every koanf key
// ("section.name"), skipping fields tagged "-".
func configKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	var walk func(typ reflect.Type, prefix string)
	walk = func(typ reflect.Type, prefix string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := f.Tag.Get("koanf")
			if tag == "-" {
				continue
			}
			if tag == "" {
				t.Errorf("field %s%s has no koanf tag", prefix, f.Name)
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == typ.PkgPath() {
				walk(f.Type, prefix+tag+".")
				continue
			}
			keys = append(keys, prefix+tag)
		}
	}
	walk(reflect.TypeFor[config.Config](), "")
	sort.Strings(keys)
	return keys
}

// exampleKeys parses the example file and returns its leaf keys.
func exampleKeys(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := toml.Parser().Unmarshal(b)
	if err != nil {
		t.Fatalf("parse %s: %v", examplePath, err)
	}
	var keys []string
	for section, v := range raw {
		table, ok := v.(map[string]any)
		if !ok {
			keys = append(keys, section)
			continue
		}
		for name := range table {
			keys = append(keys, section+"."+name)
		}
	}
	sort.Strings(keys)
	return keys
}

func TestExampleDocumentsEveryKey(t *testing.T) {
	want, got := configKeys(t), exampleKeys(t)
	if len(want) < 25 { // sanity: the walk found the sections
		t.Fatalf("reflection found only %d keys: %q", len(want), want)
	}
	for _, k := range want {
		if !slices.Contains(got, k) {
			t.Errorf("config.example.toml lacks %s", k)
		}
	}
	for _, k := range got {
		if !slices.Contains(want, k) {
			t.Errorf("config.example.toml has %s, which Config does not know", k)
		}
	}
}

// TestExampleShowsDefaults loads the example as a config file: it must be
// valid and equal to the built-in defaults, since it documents them.
func TestExampleShowsDefaults(t *testing.T) {
	cfg, err := config.Load(examplePath, nil)
	if err != nil {
		t.Fatalf("Load(example): %v", err)
	}
	if cfg.Path != examplePath {
		t.Errorf("Path = %q", cfg.Path)
	}
	cfg.Path = ""
	if want := config.Default(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("example values differ from Default():\n got %+v\nwant %+v", cfg, want)
	}
}

// TestExampleAndReadmeAgreeOnClientRegistration: the example config and
// the README send the user to the same client management page.
func TestExampleAndReadmeAgreeOnClientRegistration(t *testing.T) {
	const page = "https://data-api.tibber.com/clients/manage/"
	for _, path := range []string{examplePath, "../../README.md"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), page) {
			t.Errorf("%s does not name %s as where a client is registered", path, page)
		}
	}
}
