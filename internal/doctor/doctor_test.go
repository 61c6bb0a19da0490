package doctor

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/control"
	"github.com/tibbersync/tibbersync/internal/model"
)

// fakeResolver answers from a table; anything else is NXDOMAIN.
type fakeResolver map[string][]string

func (r fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if a, ok := r[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

var now = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

// healthy is an installation with nothing wrong; each test breaks one thing.
func healthy(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	must(t, os.Mkdir(state, 0o750))
	must(t, os.Mkdir(filepath.Join(state, "secrets"), 0o700))
	must(t, os.WriteFile(filepath.Join(state, "secrets", "tokens.db"), nil, 0o600))
	must(t, os.WriteFile(filepath.Join(state, "data.db"), nil, 0o640))
	secret := filepath.Join(dir, "client_secret")
	must(t, os.WriteFile(secret, []byte("s3cret\n"), 0o600))
	cfg := config.Default()
	cfg.Tibber.ClientID = "my-client"
	cfg.Storage.Dir = state
	return Options{
		Config:       cfg,
		ConfigPath:   "/etc/tibbersync/config.toml",
		SystemSecret: secret,
		ServiceUser:  "tibbersync-doctor-test-no-such-user",
		Now:          func() time.Time { return now },
		NotBefore:    now.Add(-24 * time.Hour),
		Resolver:     fakeResolver{"thewall.tibber.com": {"192.0.2.1"}, "data-api.tibber.com": {"192.0.2.2"}},
		DialTLS:      func(context.Context, string) error { return nil },
		Daemon: func(context.Context) (control.Response, error) {
			return control.Response{OK: true, PID: 42, UID: 998, Status: &model.AuthStatus{State: model.AuthOK, Email: "a@example.com"}}, nil
		},
		StoredAuth: func(context.Context) (model.AuthStatus, error) {
			return model.AuthStatus{}, errors.New("must not be read while the daemon answers")
		},
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func find(cs []Check, name string) []Check {
	var out []Check
	for _, c := range cs {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

// expectFail runs the doctor and wants exactly the named check to fail,
// with a fix containing fixWant.
func expectFail(t *testing.T, o Options, name, fixWant string) []Check {
	t.Helper()
	cs := Run(context.Background(), o)
	if !Failed(cs) {
		t.Fatalf("no check failed; want %s to fail:\n%s", name, report(cs))
	}
	for _, c := range cs {
		if c.Result == Fail && c.Name != name {
			t.Errorf("unexpected failure %s: %s", c.Name, c.Detail)
		}
	}
	var hit bool
	for _, c := range find(cs, name) {
		if c.Result == Fail {
			hit = true
			if !strings.Contains(c.Fix, fixWant) {
				t.Errorf("%s fix %q lacks %q", name, c.Fix, fixWant)
			}
		}
	}
	if !hit {
		t.Errorf("%s did not fail:\n%s", name, report(cs))
	}
	return cs
}

func report(cs []Check) string {
	var b bytes.Buffer
	Print(&b, cs)
	return b.String()
}

func TestHealthyInstallation(t *testing.T) {
	cs := Run(context.Background(), healthy(t))
	if Failed(cs) {
		t.Fatalf("healthy installation reported problems:\n%s", report(cs))
	}
	out := report(cs)
	for _, want := range []string{"ok    config", "ok    secret", "ok    redirect uri", "ok    state dir", "ok    state files",
		"ok    clock", "ok    dns          thewall.tibber.com -> 192.0.2.1", "ok    tls          data-api.tibber.com:443",
		"ok    daemon       running (pid 42, uid 998)", "ok    auth         ok (from the daemon), account a@example.com", "no problems found"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestEachProblemHasItsFix(t *testing.T) {
	t.Run("config", func(t *testing.T) {
		o := healthy(t)
		o.ConfigErr = fmt.Errorf("tibber.client_idd: unknown key")
		cs := expectFail(t, o, "config", "correct the keys")
		if len(cs) != 1 {
			t.Errorf("with a bad config only the config check runs, got %d", len(cs))
		}
		o.ConfigErr = fmt.Errorf("read config: %w", os.ErrPermission)
		expectFail(t, o, "config", "usermod -aG tibbersync")
	})
	t.Run("client id", func(t *testing.T) {
		o := healthy(t)
		o.Config.Tibber.ClientID = ""
		expectFail(t, o, "client id", "set client_id in /etc/tibbersync/config.toml")
	})
	t.Run("secret missing", func(t *testing.T) {
		o := healthy(t)
		must(t, os.Remove(o.SystemSecret))
		expectFail(t, o, "secret", "install -m 0600 /dev/null "+o.SystemSecret)
	})
	t.Run("secret readable by others", func(t *testing.T) {
		o := healthy(t)
		must(t, os.Chmod(o.SystemSecret, 0o644))
		expectFail(t, o, "secret", "chmod 600 "+o.SystemSecret)
	})
	t.Run("secret from the credential", func(t *testing.T) {
		o := healthy(t)
		must(t, os.Remove(o.SystemSecret))
		o.Config.ClientSecretSource = config.SourceCredentials
		if cs := Run(context.Background(), o); Failed(cs) {
			t.Fatalf("a credential secret is fine:\n%s", report(cs))
		}
	})
	t.Run("redirect trailing slash", func(t *testing.T) {
		o := healthy(t)
		o.Config.Tibber.RedirectURL = "http://localhost:8765/callback/"
		expectFail(t, o, "redirect uri", `redirect_url = "http://localhost:8765/callback"`)
	})
	t.Run("redirect port differs from listen", func(t *testing.T) {
		o := healthy(t)
		o.Config.Web.Listen = "127.0.0.1:9000"
		expectFail(t, o, "redirect uri", `http://localhost:9000/callback`)
	})
	t.Run("redirect ip literal", func(t *testing.T) {
		o := healthy(t)
		o.Config.Tibber.RedirectURL = "http://127.0.0.1:8765/callback"
		expectFail(t, o, "redirect uri", "localhost")
	})
	t.Run("state dir world readable", func(t *testing.T) {
		o := healthy(t)
		must(t, os.Chmod(o.Config.Storage.Dir, 0o755))
		expectFail(t, o, "state dir", "chmod 0750 "+o.Config.Storage.Dir)
	})
	t.Run("state dir missing", func(t *testing.T) {
		o := healthy(t)
		must(t, os.RemoveAll(o.Config.Storage.Dir))
		o.Daemon = func(context.Context) (control.Response, error) { return control.Response{}, control.ErrNoDaemon }
		o.StoredAuth = func(context.Context) (model.AuthStatus, error) { return model.AuthStatus{}, os.ErrNotExist }
		cs := Run(context.Background(), o)
		if c := find(cs, "state dir"); len(c) != 1 || c[0].Result != Fail || !strings.Contains(c[0].Fix, "install -d") {
			t.Fatalf("state dir check: %+v", c)
		}
	})
	t.Run("tokens readable by group", func(t *testing.T) {
		o := healthy(t)
		must(t, os.Chmod(filepath.Join(o.Config.Storage.Dir, "secrets", "tokens.db"), 0o640))
		expectFail(t, o, "state files", "chmod 0600")
	})
	t.Run("file of another owner", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to give a file away")
		}
		o := healthy(t)
		p := filepath.Join(o.Config.Storage.Dir, "data.db-shm")
		must(t, os.WriteFile(p, nil, 0o640))
		must(t, os.Chown(p, 4242, 4242))
		expectFail(t, o, "state files", "chown -R")
	})
	t.Run("clock in the past", func(t *testing.T) {
		o := healthy(t)
		o.Now = func() time.Time { return time.Date(1970, 1, 1, 0, 0, 5, 0, time.UTC) }
		expectFail(t, o, "clock", "systemd-time-wait-sync")
	})
	t.Run("one host does not resolve", func(t *testing.T) {
		o := healthy(t)
		o.Resolver = fakeResolver{"thewall.tibber.com": {"192.0.2.1"}}
		expectFail(t, o, "dns", "auth_url/api_url")
	})
	t.Run("tls certificate rejected", func(t *testing.T) {
		o := healthy(t)
		o.DialTLS = func(_ context.Context, hp string) error {
			if strings.HasPrefix(hp, "data-api.") {
				return &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
			}
			return nil
		}
		expectFail(t, o, "tls", "ca-certificates")
	})
	t.Run("tls blocked", func(t *testing.T) {
		o := healthy(t)
		o.DialTLS = func(context.Context, string) error { return errors.New("connection refused") }
		expectFail(t, o, "tls", "firewall")
	})
	t.Run("no daemon", func(t *testing.T) {
		o := healthy(t)
		o.Daemon = func(context.Context) (control.Response, error) { return control.Response{}, control.ErrNoDaemon }
		o.StoredAuth = func(context.Context) (model.AuthStatus, error) { return model.AuthStatus{State: model.AuthOK}, nil }
		cs := expectFail(t, o, "daemon", "systemctl enable --now tibbersync")
		if a := find(cs, "auth"); len(a) != 1 || !strings.Contains(a[0].Detail, "from data.db") {
			t.Errorf("without a daemon the auth state comes from data.db: %+v", a)
		}
	})
	t.Run("daemon not reachable for this user", func(t *testing.T) {
		o := healthy(t)
		o.Daemon = func(context.Context) (control.Response, error) {
			return control.Response{}, fmt.Errorf("%w /var/lib/tibbersync/control.sock", control.ErrPermission)
		}
		o.StoredAuth = func(context.Context) (model.AuthStatus, error) { return model.AuthStatus{State: model.AuthOK}, nil }
		expectFail(t, o, "daemon", "usermod -aG tibbersync")
	})
	t.Run("re-authorization required", func(t *testing.T) {
		o := healthy(t)
		o.Daemon = func(context.Context) (control.Response, error) {
			return control.Response{OK: true, Status: &model.AuthStatus{State: model.AuthReauthRequired, Reason: "invalid_grant"}}, nil
		}
		expectFail(t, o, "auth", "sudo tibbersync setup --paste")
	})
}

// Offline: no Tibber host resolves. The network checks are skipped with a
// note, not failed, and nothing dials.
func TestOfflineSkipsNetworkChecks(t *testing.T) {
	o := healthy(t)
	o.Resolver = fakeResolver{}
	o.DialTLS = func(context.Context, string) error {
		t.Error("dialed while offline")
		return nil
	}
	cs := Run(context.Background(), o)
	if Failed(cs) {
		t.Fatalf("offline is not a problem:\n%s", report(cs))
	}
	n := find(cs, "network")
	if len(n) != 1 || n[0].Result != Skip || !strings.Contains(n[0].Detail, "looks offline") {
		t.Fatalf("network check: %+v", n)
	}
	if len(find(cs, "dns"))+len(find(cs, "tls")) != 0 {
		t.Error("dns/tls checks ran while offline")
	}
}

// A simulator on this machine: nothing to resolve, and no TLS to check.
func TestLocalEndpointsAreSkipped(t *testing.T) {
	o := healthy(t)
	o.Config.Tibber.AuthURL = "http://127.0.0.1:9999/connect/authorize"
	o.Config.Tibber.APIURL = "http://localhost:9999"
	o.Resolver = nil // must not be used
	cs := Run(context.Background(), o)
	if Failed(cs) || len(find(cs, "reach")) != 2 {
		t.Fatalf("local endpoints:\n%s", report(cs))
	}
}
