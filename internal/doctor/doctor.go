// Package doctor is `tibbersync doctor`: the checks of what breaks
// installations, each with the fix to print when it fails. Everything that
// reaches outside the process (DNS, TLS, the daemon, the clock) is injected,
// so tests never touch the network.
package doctor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/control"
	"github.com/tibbersync/tibbersync/internal/model"
)

// Result of one check.
type Result int

const (
	OK Result = iota
	Fail
	Skip // not applicable or not possible here (offline); never an error
	Warn // works, but not as recommended; not an error
)

func (r Result) String() string {
	return [...]string{"ok", "FAIL", "skip", "warn"}[r]
}

// Check is one line of the report.
type Check struct {
	Name   string
	Result Result
	Detail string
	Fix    string // what to do, when Result is Fail or Warn
}

// Resolver resolves host names (net.DefaultResolver).
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Options are the doctor's inputs.
type Options struct {
	// Config is the loaded configuration; ConfigErr the load error (then
	// Config is unusable and only the config check runs).
	Config     config.Config
	ConfigPath string
	ConfigErr  error
	// SystemSecret is the file the packaged unit hands over with
	// LoadCredential= (/etc/tibbersync/client_secret).
	SystemSecret string
	// ServiceUser is the user the daemon runs as (tibbersync).
	ServiceUser string
	Now         func() time.Time
	// NotBefore is the earliest plausible time (the build's commit time).
	NotBefore time.Time
	Resolver  Resolver
	// DialTLS opens a TLS connection to host:443 and completes the handshake.
	DialTLS func(ctx context.Context, host string) error
	// Daemon asks the running daemon (control.Client.Probe).
	Daemon func(ctx context.Context) (control.Response, error)
	// StoredAuth reads the auth state from data.db when no daemon answers.
	StoredAuth func(ctx context.Context) (model.AuthStatus, error)
	// MQTTProbe connects to the [mqtt] broker once (mqtt.Probe); nil or
	// MQTT off skips the check.
	MQTTProbe func(ctx context.Context) error
	// Timeout bounds each network check (10s when zero).
	Timeout time.Duration
}

// Run runs every check in order.
func Run(ctx context.Context, o Options) []Check {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.ConfigErr != nil {
		fix := "correct the keys listed above in " + o.ConfigPath
		if errors.Is(o.ConfigErr, fs.ErrPermission) {
			fix = "run it with sudo, or join the group that may read the config: sudo usermod -aG tibbersync $USER (then log in again)"
		}
		return []Check{{Name: "config", Result: Fail, Detail: o.ConfigErr.Error(), Fix: fix}}
	}
	var out []Check
	out = append(out, Check{Name: "config", Result: OK, Detail: o.ConfigPath + " is valid"})
	out = append(out, checkClient(o)...)
	out = append(out, checkRedirect(o))
	out = append(out, checkStateDir(o)...)
	out = append(out, checkClock(o))
	out = append(out, checkNetwork(ctx, o)...)
	if c, ok := checkMQTT(ctx, o); ok {
		out = append(out, c)
	}
	daemonCheck, resp := checkDaemon(ctx, o)
	out = append(out, daemonCheck)
	out = append(out, checkAuth(ctx, o, resp))
	return out
}

// Failed reports whether any check failed.
func Failed(cs []Check) bool {
	for _, c := range cs {
		if c.Result == Fail {
			return true
		}
	}
	return false
}

// Print writes the report: one line per check, the fix indented below.
func Print(w io.Writer, cs []Check) {
	for _, c := range cs {
		fmt.Fprintf(w, "%-4s  %-12s %s\n", c.Result, c.Name, c.Detail)
		if c.Fix != "" && (c.Result == Fail || c.Result == Warn) {
			for _, l := range strings.Split(c.Fix, "\n") {
				fmt.Fprintf(w, "      %-12s fix: %s\n", "", l)
			}
		}
	}
	n := 0
	for _, c := range cs {
		if c.Result == Fail {
			n++
		}
	}
	if n == 0 {
		fmt.Fprintln(w, "no problems found")
	} else {
		fmt.Fprintf(w, "%d problem(s) found\n", n)
	}
}

func checkClient(o Options) []Check {
	cfg := o.Config
	var out []Check
	if cfg.Tibber.ClientID == "" {
		out = append(out, Check{Name: "client id", Result: Fail, Detail: "[tibber].client_id is empty",
			Fix: "set client_id in " + o.ConfigPath + " to the client id from https://thewall.tibber.com"})
	} else {
		out = append(out, Check{Name: "client id", Result: OK, Detail: "set"})
	}
	switch cfg.ClientSecretSource {
	case config.SourceCredentials:
		out = append(out, Check{Name: "secret", Result: OK, Detail: "from $CREDENTIALS_DIRECTORY (systemd LoadCredential=)"})
		return out
	case config.SourceFile:
		out = append(out, Check{Name: "secret", Result: OK, Detail: "from client_secret_file " + cfg.Tibber.ClientSecretFile + " (mode 0600 or stricter)"})
		return out
	case config.SourceEnvironment:
		out = append(out, Check{Name: "secret", Result: Warn, Detail: "from the environment (TIBBERSYNC_TIBBER_CLIENT_SECRET)",
			Fix: "prefer the credential file: sudo install -m 0600 /dev/null " + o.SystemSecret + " && sudoedit " + o.SystemSecret})
		return out
	}
	// Not visible to this process: the service gets it from systemd.
	fi, err := os.Stat(o.SystemSecret)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		out = append(out, Check{Name: "secret", Result: Fail, Detail: "no client secret: " + o.SystemSecret + " does not exist and no client_secret_file is set",
			Fix: "sudo install -m 0600 /dev/null " + o.SystemSecret + " && sudoedit " + o.SystemSecret + "   (paste the secret; the unit passes it with LoadCredential=)"})
	case err != nil:
		out = append(out, Check{Name: "secret", Result: Skip, Detail: fmt.Sprintf("cannot inspect %s: %v (run doctor with sudo to check it)", o.SystemSecret, err)})
	case fi.Mode().Perm()&0o077 != 0:
		out = append(out, Check{Name: "secret", Result: Fail, Detail: fmt.Sprintf("%s has mode %#o: group or others can read the secret", o.SystemSecret, fi.Mode().Perm()),
			Fix: "sudo chmod 600 " + o.SystemSecret})
	case fi.Size() == 0:
		out = append(out, Check{Name: "secret", Result: Fail, Detail: o.SystemSecret + " is empty",
			Fix: "sudoedit " + o.SystemSecret + "   (paste the client secret)"})
	default:
		out = append(out, Check{Name: "secret", Result: OK, Detail: o.SystemSecret + " (mode " + fmt.Sprintf("%#o", fi.Mode().Perm()) + "), handed to the service by systemd LoadCredential="})
	}
	return out
}

func checkRedirect(o Options) Check {
	cfg := o.Config
	ws := auth.CheckRedirectURL(cfg.Tibber.RedirectURL, cfg.Web.Listen)
	if len(ws) == 0 {
		return Check{Name: "redirect uri", Result: OK, Detail: cfg.Tibber.RedirectURL + " matches [web].listen " + cfg.Web.Listen}
	}
	_, port, err := net.SplitHostPort(cfg.Web.Listen)
	if err != nil {
		port = "8765"
	}
	return Check{Name: "redirect uri", Result: Fail, Detail: strings.Join(ws, "; "),
		Fix: fmt.Sprintf("set redirect_url = \"http://localhost:%s/callback\" and register exactly that URI (no trailing slash) at https://thewall.tibber.com", port)}
}

type owner struct {
	uid, gid int
	name     string
}

func ownerOf(fi fs.FileInfo) owner {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return owner{uid: -1, gid: -1}
	}
	o := owner{uid: int(st.Uid), gid: int(st.Gid), name: strconv.Itoa(int(st.Uid))}
	if u, err := user.LookupId(o.name); err == nil {
		o.name = u.Username
	}
	return o
}

func checkStateDir(o Options) []Check {
	dir := o.Config.Storage.Dir
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []Check{{Name: "state dir", Result: Fail, Detail: dir + " does not exist",
			Fix: fmt.Sprintf("sudo install -d -o %s -g %s -m 0750 %s   (the service's StateDirectory= also creates it)", o.ServiceUser, o.ServiceUser, dir)}}
	}
	if err != nil {
		return []Check{{Name: "state dir", Result: Fail, Detail: err.Error(), Fix: "run doctor with sudo, or join the tibbersync group"}}
	}
	own := ownerOf(fi)
	var out []Check
	chown := fmt.Sprintf("sudo chown -R %s:%s %s", o.ServiceUser, o.ServiceUser, dir)
	switch {
	case !fi.IsDir():
		return []Check{{Name: "state dir", Result: Fail, Detail: dir + " is not a directory", Fix: "move it away; the daemon creates the directory"}}
	case own.uid == 0 && o.ServiceUser != "" && userExists(o.ServiceUser):
		out = append(out, Check{Name: "state dir", Result: Fail, Detail: dir + " belongs to root, but the daemon runs as " + o.ServiceUser,
			Fix: chown})
	case fi.Mode().Perm()&0o007 != 0:
		out = append(out, Check{Name: "state dir", Result: Fail, Detail: fmt.Sprintf("%s has mode %#o: others can read data.db", dir, fi.Mode().Perm()),
			Fix: "sudo chmod 0750 " + dir})
	default:
		out = append(out, Check{Name: "state dir", Result: OK, Detail: fmt.Sprintf("%s %s:%d %#o", dir, own.name, own.gid, fi.Mode().Perm())})
	}
	// Files the daemon cannot write: root-owned leftovers, wrong modes.
	var bad []string
	for _, d := range []string{dir, filepath.Join(dir, "secrets")} {
		entries, err := os.ReadDir(d)
		if err != nil {
			if d == dir {
				out = append(out, Check{Name: "state files", Result: Skip, Detail: fmt.Sprintf("cannot list %s: %v (run doctor with sudo)", d, err)})
			}
			continue
		}
		for _, e := range entries {
			efi, err := os.Lstat(filepath.Join(d, e.Name()))
			if err != nil {
				continue
			}
			if eo := ownerOf(efi); eo.uid != own.uid {
				bad = append(bad, fmt.Sprintf("%s belongs to %s", filepath.Join(d, e.Name()), eo.name))
			}
		}
	}
	if sfi, err := os.Stat(filepath.Join(dir, "secrets")); err == nil {
		if sfi.Mode().Perm() != 0o700 {
			bad = append(bad, fmt.Sprintf("%s has mode %#o, want 0700", filepath.Join(dir, "secrets"), sfi.Mode().Perm()))
		}
	}
	if tfi, err := os.Stat(filepath.Join(dir, "secrets", "tokens.db")); err == nil {
		if tfi.Mode().Perm()&0o077 != 0 {
			bad = append(bad, fmt.Sprintf("%s has mode %#o, want 0600", filepath.Join(dir, "secrets", "tokens.db"), tfi.Mode().Perm()))
		}
	}
	if len(bad) > 0 {
		out = append(out, Check{Name: "state files", Result: Fail, Detail: strings.Join(bad, "; "),
			Fix: fmt.Sprintf("sudo chown -R %s: %s && sudo chmod 0700 %s/secrets && sudo chmod 0600 %s/secrets/tokens.db*", own.name, dir, dir, dir)})
	} else if len(out) == 1 && out[0].Result == OK {
		out = append(out, Check{Name: "state files", Result: OK, Detail: "all owned by " + own.name + ", secrets/ 0700, tokens.db 0600"})
	}
	return out
}

func userExists(name string) bool {
	_, err := user.Lookup(name)
	return err == nil
}

func checkClock(o Options) Check {
	now := o.Now()
	if now.Before(o.NotBefore) {
		return Check{Name: "clock", Result: Fail, Detail: fmt.Sprintf("the clock says %s, before this build (%s)", now.UTC().Format(time.RFC3339), o.NotBefore.UTC().Format("2006-01-02")),
			Fix: "sync the clock (timedatectl status; sudo timedatectl set-ntp true) and on a Pi: sudo systemctl enable systemd-time-wait-sync"}
	}
	return Check{Name: "clock", Result: OK, Detail: now.UTC().Format(time.RFC3339)}
}

// tibberHosts are the hosts of the authorization server and the Data API.
func tibberHosts(cfg config.Config) []*url.URL {
	var out []*url.URL
	seen := map[string]bool{}
	for _, raw := range []string{cfg.Tibber.AuthURL, cfg.Tibber.APIURL} {
		u, err := url.Parse(raw)
		if err != nil || u.Hostname() == "" || seen[u.Host] {
			continue
		}
		seen[u.Host] = true
		out = append(out, u)
	}
	return out
}

func checkNetwork(ctx context.Context, o Options) []Check {
	type lookup struct {
		u     *url.URL
		addrs []string
		err   error
	}
	var ls []lookup
	var out []Check
	for _, u := range tibberHosts(o.Config) {
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			out = append(out, Check{Name: "reach", Result: Skip, Detail: host + " is this machine (a simulator?): nothing to check"})
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, o.Timeout)
		addrs, err := o.Resolver.LookupHost(lctx, host)
		cancel()
		ls = append(ls, lookup{u, addrs, err})
	}
	// No Tibber host resolves at all: this machine is offline (or its DNS
	// answers nothing), which is no installation problem; say so and skip.
	resolved := 0
	for _, l := range ls {
		if l.err == nil {
			resolved++
		}
	}
	if len(ls) > 0 && resolved == 0 {
		var names []string
		for _, l := range ls {
			names = append(names, l.u.Hostname())
		}
		return append(out, Check{Name: "network", Result: Skip,
			Detail: fmt.Sprintf("DNS and TLS checks skipped: none of %s resolves (%v); looks offline. When online, 'getent hosts %s' must answer",
				strings.Join(names, ", "), ls[0].err, names[0])})
	}
	for _, l := range ls {
		host := l.u.Hostname()
		if l.err != nil {
			out = append(out, Check{Name: "dns", Result: Fail, Detail: fmt.Sprintf("%s: %v", host, l.err),
				Fix: "check the host in [tibber] auth_url/api_url and this machine's DNS (resolvectl status, /etc/resolv.conf)"})
			continue
		}
		out = append(out, Check{Name: "dns", Result: OK, Detail: fmt.Sprintf("%s -> %s", host, strings.Join(l.addrs, " "))})
		if l.u.Scheme != "https" {
			out = append(out, Check{Name: "tls", Result: Skip, Detail: l.u.Scheme + "://" + l.u.Host + " is not https"})
			continue
		}
		hostport := l.u.Host
		if l.u.Port() == "" {
			hostport = net.JoinHostPort(host, "443")
		}
		dctx, cancel := context.WithTimeout(ctx, o.Timeout)
		err := o.DialTLS(dctx, hostport)
		cancel()
		if err != nil {
			fix := "check the firewall/proxy for outgoing HTTPS to " + host
			var ce *tls.CertificateVerificationError
			if errors.As(err, &ce) {
				fix = "the certificate was not accepted: check the clock, and install ca-certificates (sudo apt install ca-certificates)"
			}
			out = append(out, Check{Name: "tls", Result: Fail, Detail: fmt.Sprintf("%s: %v", hostport, err), Fix: fix})
			continue
		}
		out = append(out, Check{Name: "tls", Result: OK, Detail: hostport + " handshake and certificate ok"})
	}
	return out
}

func checkDaemon(ctx context.Context, o Options) (Check, *control.Response) {
	resp, err := o.Daemon(ctx)
	switch {
	case err == nil:
		return Check{Name: "daemon", Result: OK, Detail: fmt.Sprintf("running (pid %d, uid %d), control socket answers", resp.PID, resp.UID)}, &resp
	case errors.Is(err, control.ErrNoDaemon):
		return Check{Name: "daemon", Result: Fail, Detail: "no daemon runs on " + o.Config.Storage.Dir,
			Fix: "sudo systemctl enable --now tibbersync   (then: journalctl -u tibbersync -e; systemctl status tibbersync)"}, nil
	case errors.Is(err, control.ErrPermission):
		return Check{Name: "daemon", Result: Fail, Detail: err.Error(),
			Fix: "run doctor with sudo, or join the group: sudo usermod -aG tibbersync $USER"}, nil
	default:
		return Check{Name: "daemon", Result: Fail, Detail: err.Error(), Fix: "sudo systemctl restart tibbersync"}, nil
	}
}

func checkAuth(ctx context.Context, o Options, resp *control.Response) Check {
	var st model.AuthStatus
	src := "the daemon"
	if resp != nil && resp.Status != nil {
		st = *resp.Status
	} else {
		var err error
		src = "data.db"
		if st, err = o.StoredAuth(ctx); err != nil {
			return Check{Name: "auth", Result: Skip, Detail: "cannot read the auth state: " + err.Error()}
		}
	}
	fix := "sudo tibbersync setup --paste   (headless), or open the setup page through a tunnel: ssh -L 8765:127.0.0.1:8765 <this host>"
	switch st.State {
	case model.AuthOK:
		d := "ok (from " + src + ")"
		if st.Email != "" {
			d += ", account " + st.Email
		}
		return Check{Name: "auth", Result: OK, Detail: d}
	case model.AuthConfigError:
		return Check{Name: "auth", Result: Fail, Detail: "config_error: Tibber rejected the client: " + st.Reason,
			Fix: "check client_id and the secret against https://thewall.tibber.com, then: " + fix}
	case "":
		return Check{Name: "auth", Result: Fail, Detail: "never authorized", Fix: fix}
	default:
		d := string(st.State)
		if st.Reason != "" {
			d += ": " + st.Reason
		}
		return Check{Name: "auth", Result: Fail, Detail: d + " (from " + src + ")", Fix: fix}
	}
}

// DialTLS is the real TLS check: connect to host:port and verify the chain.
func DialTLS(ctx context.Context, hostport string) error {
	d := tls.Dialer{Config: &tls.Config{MinVersion: tls.VersionTLS12}}
	c, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return err
	}
	return c.Close()
}

// checkMQTT connects to the MQTT broker once when [mqtt].url is set.
func checkMQTT(ctx context.Context, o Options) (Check, bool) {
	if !o.Config.MQTT.Enabled() || o.MQTTProbe == nil {
		return Check{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := o.MQTTProbe(ctx); err != nil {
		return Check{Name: "mqtt", Result: Fail, Detail: o.Config.MQTT.URL + ": " + err.Error(),
			Fix: "fix [mqtt] or the broker (docs/mqtt.md); syncing works without it"}, true
	}
	return Check{Name: "mqtt", Result: OK, Detail: o.Config.MQTT.URL + " accepts the connection"}, true
}
