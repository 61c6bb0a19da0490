package leakcheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tibbersync/tibbersync/internal/cisummary"
	"github.com/tibbersync/tibbersync/internal/logging"
)

// canaryClientSecret is the client secret registered at the simulator and
// configured in tibbersync. Only the token endpoint may ever see it.
const canaryClientSecret = "CANARY-SECRET-5f3a9c2e7b1d4086a4e2c9b7"

// canaryWebhookToken is the credential in the notification webhook URL.
const canaryWebhookToken = "CANARY-WEBHOOK-9b41d7e05c3a"

// testUA is the User-Agent of the test's own browser-like requests (the
// simulator rejects requests without a well-formed one).
const testUA = "tibbersync-leakcheck/1.0 (linux; amd64)"

// canaries collects every secret value seen during a test, labelled by kind
// ("refresh_token#3"). The test may know them; the product's outputs must
// not contain them.
type canaries struct {
	mu     sync.Mutex
	labels map[string]string // value → label
	kinds  map[string]int    // kind → count
}

func newCanaries() *canaries {
	return &canaries{labels: map[string]string{}, kinds: map[string]int{}}
}

// add records v as a secret of the given kind. Values shorter than 8 bytes
// are not secrets the simulator issues and would only cause false alarms.
func (c *canaries) add(kind, v string) {
	if len(v) < 8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.labels[v]; ok {
		return
	}
	c.kinds[kind]++
	c.labels[v] = fmt.Sprintf("%s#%d", kind, c.kinds[kind])
}

// count returns how many distinct values of kind were recorded.
func (c *canaries) count(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kinds[kind]
}

// summary lists the counts per kind, e.g. "access_token=7 code=5".
func (c *canaries) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for k, n := range c.kinds {
		parts = append(parts, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// total is the number of distinct secret values.
func (c *canaries) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.labels)
}

// needles returns what to look for per secret: the value, its URL-escaped
// form, and fragments that survive truncation: a JWT's signature, and the
// middle 24 bytes of any long value.
func needles(v string) []string {
	out := []string{v}
	if q := url.QueryEscape(v); q != v {
		out = append(out, q)
	}
	if parts := strings.Split(v, "."); len(parts) == 3 && strings.HasPrefix(v, "eyJ") {
		if len(parts[2]) >= 16 {
			out = append(out, parts[2])
		}
	} else if len(v) >= 40 {
		m := len(v) / 2
		out = append(out, v[m-12:m+12])
	}
	return out
}

// find returns the labels of the secrets (restricted to kinds, when given)
// that occur in data.
func (c *canaries) find(data []byte, kinds ...string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var hits []string
	for v, label := range c.labels {
		if len(kinds) > 0 && !slices.Contains(kinds, label[:strings.IndexByte(label, '#')]) {
			continue
		}
		for _, n := range needles(v) {
			if bytes.Contains(data, []byte(n)) {
				hits = append(hits, label)
				break
			}
		}
	}
	sort.Strings(hits)
	return hits
}

// redact replaces every known secret in s by its label, so that a failure
// message can show context without printing the secret.
func (c *canaries) redact(s string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for v, label := range c.labels {
		for _, n := range needles(v) {
			s = strings.ReplaceAll(s, n, "<"+label+">")
		}
	}
	return s
}

// leakReport collects where secrets were found and how much was scanned.
type leakReport struct {
	c       *canaries
	mu      sync.Mutex
	scanned int64
	places  int
	leaks   []string
}

// check scans one output and records every secret found in it, with the
// surrounding text (secrets replaced by their labels).
func (r *leakReport) check(where string, data []byte, kinds ...string) {
	r.mu.Lock()
	r.scanned += int64(len(data))
	r.places++
	r.mu.Unlock()
	hits := r.c.find(data, kinds...)
	if len(hits) == 0 {
		return
	}
	ctx := contextOf(r.c, data, 160)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leaks = append(r.leaks, fmt.Sprintf("%s contains %s: %s", where, strings.Join(hits, ", "), ctx))
}

// contextOf returns the lines of data that hold a secret, redacted.
func contextOf(c *canaries, data []byte, maxLine int) string {
	var out []string
	for line := range strings.SplitSeq(string(data), "\n") {
		if len(c.find([]byte(line))) == 0 {
			continue
		}
		red := c.redact(line)
		red = strings.Map(func(r rune) rune {
			if r < 0x20 && r != '\t' {
				return '.'
			}
			return r
		}, red)
		if len(red) > maxLine {
			if i := strings.Index(red, "<"); i > maxLine/2 {
				red = "…" + red[i-maxLine/2:]
			}
			if len(red) > maxLine {
				red = red[:maxLine] + "…"
			}
		}
		out = append(out, red)
		if len(out) == 3 {
			break
		}
	}
	if len(out) == 0 {
		return "(binary)"
	}
	return strings.Join(out, " | ")
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// logSinks is one logger writing every record, at debug level, in all three
// formats the product supports, each into its own buffer.
type logSinks struct {
	json, logfmt, tint syncBuffer
}

func newLogSinks(t *testing.T) (*logSinks, *slog.Logger) {
	t.Helper()
	s := &logSinks{}
	var hs []slog.Handler
	for format, w := range map[string]io.Writer{
		logging.FormatJSON: &s.json, logging.FormatLogfmt: &s.logfmt, logging.FormatTint: &s.tint,
	} {
		l, err := logging.New(w, "debug", format)
		if err != nil {
			t.Fatalf("logger %s: %v", format, err)
		}
		hs = append(hs, l.Handler())
	}
	return s, slog.New(slog.NewMultiHandler(hs...))
}

// countJSON counts JSON log records whose msg is msg.
func (s *logSinks) countJSON(t *testing.T, msg string) int {
	t.Helper()
	n := 0
	for line := range bytes.SplitSeq(s.json.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var rec struct {
			Msg string `json:"msg"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("log line is not JSON: %v: %.200s", err, line)
		}
		if rec.Msg == msg {
			n++
		}
	}
	return n
}

// captureStderr points file descriptor 2 at a temporary file until the
// returned function is called, which restores it and returns what was
// written (by anything in the process: the runtime, the race detector, the
// log package, net/http's fallback logger). Should the test end first (a
// failure), the cleanup restores fd 2 and shows what was captured, with the
// secrets of c replaced by their labels, so that nothing is swallowed.
func captureStderr(t *testing.T, c *canaries) func() []byte {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stderr-*")
	if err != nil {
		t.Fatal(err)
	}
	saved, err := unix.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup3(int(f.Fd()), 2, 0); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var out []byte
	stop := func() []byte {
		once.Do(func() {
			if err := unix.Dup3(saved, 2, 0); err != nil {
				t.Errorf("restore stderr: %v", err)
			}
			_ = unix.Close(saved)
			out, err = os.ReadFile(f.Name())
			if err != nil {
				t.Errorf("read captured stderr: %v", err)
			}
			_ = f.Close()
		})
		return out
	}
	t.Cleanup(func() {
		if b := stop(); len(b) > 0 {
			t.Logf("captured stderr:\n%s", c.redact(string(b)))
		}
	})
	return stop
}

// fileHits scans every regular file under dir and returns, per path
// relative to dir, the labels of the secrets of kinds it contains.
func fileHits(t *testing.T, c *canaries, dir string, kinds ...string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = c.find(b, kinds...)
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", dir, err)
	}
	return out
}

// readFile returns the content of path or fails the test.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

// appendSummary appends one plain line to $TIBBERSYNC_SUMMARY_FILE when it
// is set, so that .ci/run can print one summary per harness.
func appendSummary(t *testing.T, line string) {
	t.Helper()
	if err := cisummary.Append(line); err != nil {
		t.Error(err)
	}
}

// uaTransport sets the test's User-Agent on every request.
type uaTransport struct{ base http.RoundTripper }

func (u uaTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", testUA)
	return u.base.RoundTrip(r)
}

// echo is one scripted answer of the recording proxy that repeats the
// secrets of the request it answers, the way a misbehaving server or
// proxy might.
type echo struct {
	// name describes the answer in failure messages.
	name   string
	status int
	ctype  string
	// body builds the answer from the request's secrets: for the token
	// endpoint "refresh_token", "client_secret", "code", "code_verifier";
	// for the Data API "access_token" and "authorization".
	body func(sec map[string]string) string
	// header, when set, adds response headers built the same way.
	header func(sec map[string]string) http.Header
}

// recorder is an http.Handler in front of the simulator. It records every
// secret the simulator issues or receives (tokens from token responses,
// codes from authorize redirects, states, verifiers) and answers queued
// echo faults instead of the simulator.
type recorder struct {
	next http.Handler
	c    *canaries

	mu        sync.Mutex
	tokenFx   []echo
	apiFx     []echo
	apiFxPath string // only /v1 paths with this prefix get apiFx
	// served counts echo answers; echoed counts, per kind, the secret
	// values they carried.
	served int
	echoed map[string]int
}

func newRecorder(next http.Handler, c *canaries) *recorder {
	return &recorder{next: next, c: c, echoed: map[string]int{}}
}

// queueToken makes the next len(fx) token requests get fx in order.
func (p *recorder) queueToken(fx ...echo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokenFx = append(p.tokenFx, fx...)
}

// queueAPI makes the next len(fx) Data API requests under pathPrefix get fx.
func (p *recorder) queueAPI(pathPrefix string, fx ...echo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.apiFxPath = pathPrefix
	p.apiFx = append(p.apiFx, fx...)
}

// pending returns how many queued faults are left.
func (p *recorder) pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tokenFx) + len(p.apiFx)
}

// echoes returns how many echo answers were served, and how many secret
// values of each kind they carried.
func (p *recorder) echoes() (int, map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.echoed {
		out[k] = v
	}
	return p.served, out
}

func (p *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case path == "/connect/authorize" && r.Method == http.MethodGet:
		p.c.add("state", r.URL.Query().Get("state"))
	case path == "/connect/token":
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		sec := map[string]string{
			"refresh_token": form.Get("refresh_token"),
			"client_secret": form.Get("client_secret"),
			"code":          form.Get("code"),
			"code_verifier": form.Get("code_verifier"),
		}
		p.c.add("code", sec["code"])
		p.c.add("code_verifier", sec["code_verifier"])
		p.c.add("refresh_token", sec["refresh_token"])
		if fx, ok := p.take(&p.tokenFx); ok {
			p.answer(w, fx, sec)
			return
		}
	case strings.HasPrefix(path, "/v1/"):
		auth := r.Header.Get("Authorization")
		tok := strings.TrimSpace(strings.TrimPrefix(auth, "Bearer"))
		p.mu.Lock()
		match := len(p.apiFx) > 0 && strings.HasPrefix(path, p.apiFxPath)
		p.mu.Unlock()
		if match {
			if fx, ok := p.take(&p.apiFx); ok {
				p.answer(w, fx, map[string]string{"access_token": tok, "authorization": auth})
				return
			}
		}
	}

	rec := httptest.NewRecorder()
	p.next.ServeHTTP(rec, r)
	res := rec.Result()
	body := rec.Body.Bytes()
	switch path {
	case "/connect/token":
		var tr struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
			IDToken      string `json:"id_token"`
		}
		if json.Unmarshal(body, &tr) == nil {
			p.c.add("access_token", tr.AccessToken)
			p.c.add("refresh_token", tr.RefreshToken)
			p.c.add("id_token", tr.IDToken)
		}
	case "/connect/authorize", "/connect/consent":
		if loc, err := url.Parse(res.Header.Get("Location")); err == nil {
			p.c.add("code", loc.Query().Get("code"))
		}
	}
	for k, vs := range res.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(res.StatusCode)
	_, _ = w.Write(body)
}

func (p *recorder) take(q *[]echo) (echo, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(*q) == 0 {
		return echo{}, false
	}
	fx := (*q)[0]
	*q = (*q)[1:]
	return fx, true
}

func (p *recorder) answer(w http.ResponseWriter, fx echo, sec map[string]string) {
	body := fx.body(sec)
	p.mu.Lock()
	p.served++
	for k, v := range sec {
		if v != "" && strings.Contains(body, v) {
			p.echoed[k]++
		}
	}
	p.mu.Unlock()
	if fx.header != nil {
		for k, vs := range fx.header(sec) {
			w.Header()[k] = vs
		}
	}
	w.Header().Set("Content-Type", fx.ctype)
	w.WriteHeader(fx.status)
	_, _ = io.WriteString(w, body)
}
