package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestSimulateBadFlags(t *testing.T) {
	cases := map[string][]string{
		"NonLoopback":   {"--listen", "0.0.0.0:9000"},
		"NoHost":        {"--listen", ":9000"},
		"LANAddress":    {"--listen", "192.168.1.10:9000"},
		"BadAddress":    {"--listen", "nonsense"},
		"UnknownFlag":   {"--client-secret", "x"},
		"BadFault":      {"--fault", "history:explode"},
		"NegativeHomes": {"--homes", "-1"},
		"BadDuration":   {"--access-ttl", "soon"},
		"MissingSecret": {"--client-secret-file", filepath.Join(t.TempDir(), "missing")},
		"ExtraArgs":     {"extra"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := runMain(context.Background(), append([]string{"simulate"}, args...), &environment{stdout: &out, stderr: &errOut}); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %s", code, errOut.String())
			}
			if errOut.Len() == 0 {
				t.Fatal("no message on stderr")
			}
			if out.Len() != 0 {
				t.Fatalf("stdout %q", out.String())
			}
		})
	}
}

func TestSimulateServesAndPrintsConfig(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runMain(ctx, []string{"simulate",
			"--listen", "127.0.0.1:0", "--client-id", "my-client", "--client-secret-file", secretFile,
			"--redirect-uri", "http://localhost:8515/callback", "--fault", "homes:503:count=1",
			"--latency", "1ms", "--auto-consent", "--quiet",
		}, &environment{stdout: &out, stderr: &errOut})
	}()
	apiRE := regexp.MustCompile(`(?m)^api_url = "(http://127\.0\.0\.1:\d+)"$`)
	var base string
	deadline := time.After(5 * time.Second)
	for base == "" {
		select {
		case code := <-done:
			t.Fatalf("exited early with %d: %s", code, errOut.String())
		case <-deadline:
			t.Fatalf("no config printed: %q", out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if m := apiRE.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
	}
	text := out.String()
	for _, want := range []string{
		"client_id:     my-client", "client_secret: s3cret", "[tibber]",
		`auth_url = "` + base + `/connect/authorize"`, `token_url = "` + base + `/connect/token"`,
		`userinfo_url = "` + base + `/connect/userinfo"`, `client_id = "my-client"`,
		`client_secret_file = "` + secretFile + `"`, `redirect_url = "http://localhost:8515/callback"`,
		"fault:         homes:status:status=503:count=1", "fault:         *:latency:delay=1ms",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	req, _ := http.NewRequest("GET", base+"/.well-known/openid-configuration", nil)
	req.Header.Set("User-Agent", "tibbersync-test/1.0")
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	var d map[string]any
	err = json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if err != nil || d["token_endpoint"] != base+"/connect/token" {
		t.Fatalf("discovery %v %v", d, err)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after cancel: %s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("simulate did not stop after cancel")
	}
	if !strings.Contains(out.String(), "simulator stopped") {
		t.Fatalf("no stop message: %s", out.String())
	}
}

func TestSimulateDefaultSecretFile(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runMain(ctx, []string{"simulate", "--listen", "127.0.0.1:0", "--quiet"}, &environment{stdout: &out, stderr: &errOut})
	}()
	re := regexp.MustCompile(`(?m)^client_secret_file = "([^"]+)"$`)
	var path string
	deadline := time.After(5 * time.Second)
	for path == "" {
		select {
		case code := <-done:
			t.Fatalf("exited early with %d: %s", code, errOut.String())
		case <-deadline:
			t.Fatalf("no config printed: %q", out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if m := re.FindStringSubmatch(out.String()); m != nil {
			path = m[1]
		}
	}
	b, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(b)) != "sim-secret" {
		t.Fatalf("secret file %s: %q %v", path, b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v %v", fi.Mode(), err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("simulate did not stop")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("temporary secret file left behind: %v", err)
	}
}
