package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPlainHTTPTibberURLsExit78: token_url, api_url and userinfo_url carry
// the client secret and tokens, so http:// to a host other than loopback
// is a configuration error (exit 78) naming each key; http:// to
// 127.0.0.1 or localhost (the simulator) stays allowed.
func TestPlainHTTPTibberURLsExit78(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf(`
[storage]
dir = %q
[tibber]
token_url = "http://auth.example.com/connect/token"
api_url = "http://data-api.example.com"
userinfo_url = "HTTP://192.0.2.7/connect/userinfo"
auth_url = "http://localhost:9999/connect/authorize"
`, state)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"run", "sync"} {
		code, _, errOut := runCmd(t, testCtx(t, 10*time.Second), nil, "", "-c", cfg, cmd)
		if code != exitConfig {
			t.Fatalf("%s: exit %d, want 78; stderr %q", cmd, code, errOut)
		}
		for _, key := range []string{"tibber.token_url", "tibber.api_url", "tibber.userinfo_url"} {
			if !strings.Contains(errOut, key) || !strings.Contains(errOut, "https://") {
				t.Errorf("%s: stderr does not name %s with the fix:\n%s", cmd, key, errOut)
			}
		}
		if strings.Contains(errOut, "tibber.auth_url") {
			t.Errorf("%s: http://localhost was refused:\n%s", cmd, errOut)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("state dir was created by a bad config: %v", err)
	}
}
