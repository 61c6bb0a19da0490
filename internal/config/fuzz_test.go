package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/config"
)

// FuzzLoad feeds arbitrary bytes as the TOML file. Load must not panic and
// must return either an error wrapping ErrConfig or a config that passes
// Validate; and no error may repeat the canary secret.
func FuzzLoad(f *testing.F) {
	if b, err := os.ReadFile(examplePath); err == nil {
		f.Add(b)
	}
	f.Add([]byte("[schedule]\ndevices = \"@every 5m\"\n"))
	f.Add([]byte("[tibber]\nclient_secret = \"" + canary + "\"\n"))
	f.Add([]byte("[history]\nresolutions = [\"hour\", 1]\nlookback = 0\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "config.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path, nil)
		if err != nil {
			if !errors.Is(err, config.ErrConfig) {
				t.Fatalf("error does not wrap ErrConfig: %v", err)
			}
			if strings.Contains(err.Error(), canary) {
				t.Fatalf("error repeats the secret: %v", err)
			}
			return
		}
		if verr := cfg.Validate(); verr != nil {
			t.Fatalf("Load returned a config that fails Validate: %v", verr)
		}
	})
}
