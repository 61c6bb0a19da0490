package notify_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/notify"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

// guard bounds every wait on the notifier goroutine.
const guard = 5 * time.Second

var t0 = time.Date(2025, 3, 30, 0, 30, 0, 0, time.UTC)

// received is one webhook request as the receiver saw it.
type received struct {
	msg  notify.Message
	raw  []byte
	at   time.Time // fake-clock time of receipt
	ua   string
	ct   string
	path string
}

// receiver is an httptest webhook that answers with status(n) for the n-th
// request (1-based) and reports every request on got.
type receiver struct {
	srv *httptest.Server
	got chan received
}

func newReceiver(t *testing.T, clk clock.Clock, status func(n int) int) *receiver {
	t.Helper()
	r := &receiver{got: make(chan received, 256)}
	var mu sync.Mutex
	count := 0
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		var m notify.Message
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("body is not a Message: %v: %s", err, body)
		}
		mu.Lock()
		count++
		n := count
		mu.Unlock()
		r.got <- received{msg: m, raw: body, at: clk.Now(), ua: req.Header.Get("User-Agent"), ct: req.Header.Get("Content-Type"), path: req.URL.RequestURI()}
		code := http.StatusOK
		if status != nil {
			code = status(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) next(t *testing.T) received {
	t.Helper()
	select {
	case m := <-r.got:
		return m
	case <-time.After(guard):
		t.Fatal("no webhook request within the guard time")
		return received{}
	}
}

// start runs n.Run until the test ends, and checks that it returns.
func start(t *testing.T, n *notify.Notifier) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(ctx)
	}()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(guard):
			t.Error("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func status(s model.AuthState, reason string) model.AuthStatus {
	return model.AuthStatus{State: s, Reason: reason, Since: t0}
}

// logBuffer is the shared concurrency-safe log sink.
type logBuffer = testutil.SyncBuffer

func TestOneMessagePerTransition(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newReceiver(t, clk, nil)
	n := notify.New(notify.Options{WebhookURL: r.srv.URL, Clock: clk, UserAgent: "tibbersync/test (linux; amd64)", StatusURL: "http://127.0.0.1:8765/"})
	start(t, n)
	ctx := context.Background()

	n.Notify(ctx, status(model.AuthSetupRequired, "no token yet")) // first start: nothing
	n.Notify(ctx, status(model.AuthOK, ""))                        // setup done: nothing (no problem before)
	n.Notify(ctx, status(model.AuthOK, ""))                        // ok → ok: nothing
	n.Notify(ctx, status(model.AuthReauthRequired, "refresh token rejected (invalid_grant)"))
	n.Notify(ctx, status(model.AuthReauthRequired, "refresh token rejected (invalid_grant)")) // repeat: nothing
	n.Notify(ctx, status(model.AuthOK, ""))
	n.Notify(ctx, status(model.AuthOK, ""))
	n.Notify(ctx, status(model.AuthConfigError, "invalid_client"))

	want := []struct{ event, state string }{
		{notify.EventProblem, "reauth_required"},
		{notify.EventRecovered, "ok"},
		{notify.EventProblem, "config_error"},
	}
	for i, w := range want {
		got := r.next(t)
		if got.msg.Event != w.event || got.msg.State != w.state {
			t.Fatalf("message %d = %s/%s, want %s/%s", i+1, got.msg.Event, got.msg.State, w.event, w.state)
		}
		if got.ua != "tibbersync/test (linux; amd64)" || got.ct != "application/json" {
			t.Errorf("message %d: User-Agent %q, Content-Type %q", i+1, got.ua, got.ct)
		}
	}
	// The last message was queued after all the others, so anything extra
	// would already have arrived.
	select {
	case extra := <-r.got:
		t.Errorf("unexpected extra message %s/%s", extra.msg.Event, extra.msg.State)
	default:
	}
}

func TestRecoveryAnnouncedAfterSetup(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newReceiver(t, clk, nil)
	n := notify.New(notify.Options{WebhookURL: r.srv.URL, Clock: clk})
	start(t, n)
	ctx := context.Background()
	n.Notify(ctx, status(model.AuthReauthRequired, "expired"))
	n.Notify(ctx, status(model.AuthSetupRequired, "setup started"))
	n.Notify(ctx, status(model.AuthOK, ""))
	if got := r.next(t); got.msg.Event != notify.EventProblem {
		t.Fatalf("first = %s", got.msg.Event)
	}
	if got := r.next(t); got.msg.Event != notify.EventRecovered || got.msg.Priority != notify.PriorityRecovered {
		t.Fatalf("second = %s priority %d, want recovered 3", got.msg.Event, got.msg.Priority)
	}
}

func TestReminderEvery24h(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newReceiver(t, clk, nil)
	n := notify.New(notify.Options{WebhookURL: r.srv.URL, Clock: clk, Reminder: 24 * time.Hour})
	start(t, n)
	ctx := context.Background()

	n.Notify(ctx, status(model.AuthReauthRequired, "expired"))
	first := r.next(t)
	if first.msg.Event != notify.EventProblem || !first.at.Equal(t0) {
		t.Fatalf("first = %s at %v, want problem at %v", first.msg.Event, first.at, t0)
	}
	second := r.next(t)
	if second.msg.Event != notify.EventReminder || !second.at.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("second = %s at %v, want reminder at %v", second.msg.Event, second.at, t0.Add(24*time.Hour))
	}
	if second.msg.Since != t0.Format(time.RFC3339) || second.msg.Priority != notify.PriorityProblem {
		t.Errorf("reminder since=%s priority=%d", second.msg.Since, second.msg.Priority)
	}
	if !strings.Contains(second.msg.Title, "reminder") || !strings.Contains(second.msg.Message, "since "+t0.Format(time.RFC3339)) {
		t.Errorf("reminder title %q message %q", second.msg.Title, second.msg.Message)
	}

	// Recovery stops the reminders: after the recovered message the next
	// one must be the new problem, not a reminder.
	n.Notify(ctx, status(model.AuthOK, ""))
	for {
		m := r.next(t)
		if m.msg.Event == notify.EventReminder {
			continue // queued before the recovery was seen
		}
		if m.msg.Event != notify.EventRecovered {
			t.Fatalf("got %s, want recovered", m.msg.Event)
		}
		break
	}
	n.Notify(ctx, status(model.AuthConfigError, "bad client"))
	if m := r.next(t); m.msg.Event != notify.EventProblem || m.msg.State != "config_error" {
		t.Fatalf("after recovery got %s/%s, want problem/config_error", m.msg.Event, m.msg.State)
	}
}

func TestFailingWebhookRetriedWithBackoff(t *testing.T) {
	clk := clock.NewFake(t0)
	const failures = 9
	r := newReceiver(t, clk, func(n int) int {
		if n <= failures {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	var logs logBuffer
	n := notify.New(notify.Options{
		WebhookURL: r.srv.URL + "/message?token=CANARY-gotify-token",
		Clock:      clk,
		Logger:     slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	start(t, n)
	n.Notify(context.Background(), status(model.AuthReauthRequired, "expired"))

	wantGaps := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60} // minutes, capped at 1 h
	prev := r.next(t)
	if !prev.at.Equal(t0) {
		t.Fatalf("first attempt at %v, want %v", prev.at, t0)
	}
	for i, gap := range wantGaps {
		// Notify never blocks, not even while deliveries fail.
		returned := make(chan struct{})
		go func() {
			n.Notify(context.Background(), status(model.AuthReauthRequired, "expired"))
			close(returned)
		}()
		select {
		case <-returned:
		case <-time.After(guard):
			t.Fatal("Notify blocked")
		}
		got := r.next(t)
		if d := got.at.Sub(prev.at); d != gap*time.Minute {
			t.Errorf("attempt %d came %v after the previous one, want %v", i+2, d, gap*time.Minute)
		}
		if got.msg.Event != notify.EventProblem {
			t.Errorf("attempt %d is %s, want the same problem message", i+2, got.msg.Event)
		}
		prev = got
	}
	if got := strings.Count(logs.String(), `"msg":"notification failed"`); got != failures {
		t.Errorf("%d failure log lines, want %d", got, failures)
	}
	if strings.Contains(logs.String(), "CANARY") {
		t.Errorf("log contains the webhook token:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"retry_in":"1h0m0s"`) {
		t.Errorf("log lacks the capped retry delay:\n%s", logs.String())
	}
}

func TestNotifyNeverBlocksOnHungWebhook(t *testing.T) {
	clk := clock.NewFake(t0)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	entered := make(chan struct{}, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(unblock) // runs before srv.Close

	n := notify.New(notify.Options{WebhookURL: srv.URL, Clock: clk, Timeout: time.Hour})
	stop := start(t, n)
	ctx := context.Background()
	n.Notify(ctx, status(model.AuthReauthRequired, "expired"))
	select {
	case <-entered:
	case <-time.After(guard):
		t.Fatal("webhook never called")
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			if i%2 == 0 {
				n.Notify(ctx, status(model.AuthOK, ""))
			} else {
				n.Notify(ctx, status(model.AuthConfigError, "x"))
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatal("Notify blocked while the webhook hangs")
	}
	// Run stops promptly even in the middle of a hung delivery.
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(guard):
		t.Fatal("Run did not stop during a hung delivery")
	}
}

func TestDisabledNotifierSendsNothing(t *testing.T) {
	n := notify.New(notify.Options{Clock: clock.NewFake(t0), Reminder: time.Hour})
	if n.Enabled() {
		t.Fatal("Enabled with no webhook and no command")
	}
	stop := start(t, n)
	n.Notify(context.Background(), status(model.AuthReauthRequired, "x"))
	stop()
}

// TestBodyFitsEachService decodes the body as ntfy, Gotify and Home
// Assistant would read it.
func TestBodyFitsEachService(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newReceiver(t, clk, nil)
	n := notify.New(notify.Options{WebhookURL: r.srv.URL, Topic: "tibbersync-alerts", Clock: clk, StatusURL: "http://pi.local:8765/"})
	start(t, n)
	n.Notify(context.Background(), model.AuthStatus{State: model.AuthReauthRequired, Reason: "refresh token expired", Since: t0, GrantedScopes: []string{"openid"}, Email: "me@example.org"})
	got := r.next(t)

	// ntfy JSON publishing: topic, title, message, priority 1-5, tags, click.
	var ntfy struct {
		Topic    string   `json:"topic"`
		Title    string   `json:"title"`
		Message  string   `json:"message"`
		Priority int      `json:"priority"`
		Tags     []string `json:"tags"`
		Click    string   `json:"click"`
	}
	if err := json.Unmarshal(got.raw, &ntfy); err != nil {
		t.Fatal(err)
	}
	if ntfy.Topic != "tibbersync-alerts" || ntfy.Title != "tibbersync: re-authorization required" ||
		ntfy.Priority < 1 || ntfy.Priority > 5 || ntfy.Click != "http://pi.local:8765/" || len(ntfy.Tags) == 0 {
		t.Errorf("ntfy view: %+v", ntfy)
	}
	if want := "refresh token expired — open http://pi.local:8765/"; ntfy.Message != want {
		t.Errorf("message = %q, want %q", ntfy.Message, want)
	}

	// Gotify POST /message: title, message (required), priority (int), extras.
	var gotify struct {
		Title    string                    `json:"title"`
		Message  string                    `json:"message"`
		Priority *int                      `json:"priority"`
		Extras   map[string]map[string]any `json:"extras"`
	}
	if err := json.Unmarshal(got.raw, &gotify); err != nil {
		t.Fatal(err)
	}
	if gotify.Message == "" || gotify.Title == "" || gotify.Priority == nil || *gotify.Priority != notify.PriorityProblem {
		t.Errorf("gotify view: %+v", gotify)
	}
	if click, _ := gotify.Extras["client::notification"]["click"].(map[string]any); click["url"] != "http://pi.local:8765/" {
		t.Errorf("gotify extras = %v", gotify.Extras)
	}

	// Home Assistant webhook trigger: any JSON object, read as trigger.json.
	var ha map[string]any
	if err := json.Unmarshal(got.raw, &ha); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"event": "problem", "state": "reauth_required", "reason": "refresh token expired", "since": "2025-03-30T00:30:00Z"} {
		if ha[k] != want {
			t.Errorf("trigger.json.%s = %v, want %q", k, ha[k], want)
		}
	}
	if _, err := time.Parse(time.RFC3339, ha["since"].(string)); err != nil {
		t.Errorf("since is not RFC 3339: %v", err)
	}
	// Nothing beyond the documented fields: no email, no scopes.
	if strings.Contains(string(got.raw), "me@example.org") || strings.Contains(string(got.raw), "granted") {
		t.Errorf("body carries account data: %s", got.raw)
	}
}

func TestNoTopicOmitted(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newReceiver(t, clk, nil)
	n := notify.New(notify.Options{WebhookURL: r.srv.URL, Clock: clk})
	start(t, n)
	n.Notify(context.Background(), model.AuthStatus{State: model.AuthConfigError})
	got := r.next(t)
	if bytes.Contains(got.raw, []byte(`"topic"`)) || bytes.Contains(got.raw, []byte(`"click"`)) {
		t.Errorf("empty topic/click sent: %s", got.raw)
	}
	if got.msg.Title != "tibbersync: configuration error" || got.msg.Message == "" || strings.Contains(got.msg.Message, "open") {
		t.Errorf("message without reason/status URL: %+v", got.msg)
	}
	if got.msg.Since != t0.Format(time.RFC3339) {
		t.Errorf("since = %q, want the clock's now for a zero Since", got.msg.Since)
	}
}

// TestHelperProcess is the command run by TestCommandReceivesEnv: it writes
// its environment to $NOTIFY_HELPER_OUT.
func TestHelperProcess(t *testing.T) {
	out := os.Getenv("NOTIFY_HELPER_OUT")
	if out == "" {
		return
	}
	if err := os.WriteFile(out+".tmp", []byte(strings.Join(os.Environ(), "\n")), 0o600); err != nil {
		os.Exit(2)
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		os.Exit(2)
	}
	if os.Getenv("NOTIFY_HELPER_FAIL") != "" {
		os.Stdout.WriteString("helper says no")
		os.Exit(3)
	}
	os.Exit(0)
}

// readEnvFile waits (bounded) for the helper's output and parses it.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(guard)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			env := map[string]string{}
			sc := bufio.NewScanner(bytes.NewReader(b))
			for sc.Scan() {
				k, v, _ := strings.Cut(sc.Text(), "=")
				env[k] = v
			}
			return env
		}
		if time.Now().After(deadline) {
			t.Fatal("command did not run within the guard time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCommandReceivesEnv(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	t.Setenv("NOTIFY_HELPER_OUT", out)
	t.Setenv("TIBBERSYNC_TIBBER_CLIENT_SECRET", "CANARY-client-secret")
	t.Setenv("CREDENTIALS_DIRECTORY", "/run/credentials/tibbersync.service")

	n := notify.New(notify.Options{
		Command:   []string{os.Args[0], "-test.run=^TestHelperProcess$"},
		Clock:     clock.NewFake(t0),
		StatusURL: "http://127.0.0.1:8765/",
	})
	start(t, n)
	n.Notify(context.Background(), status(model.AuthReauthRequired, "refresh token rejected"))

	env := readEnvFile(t, out)
	want := map[string]string{
		"TIBBERSYNC_EVENT":      "problem",
		"TIBBERSYNC_STATE":      "reauth_required",
		"TIBBERSYNC_REASON":     "refresh token rejected",
		"TIBBERSYNC_MESSAGE":    "refresh token rejected — open http://127.0.0.1:8765/",
		"TIBBERSYNC_PRIORITY":   "5",
		"TIBBERSYNC_SINCE":      "2025-03-30T00:30:00Z",
		"TIBBERSYNC_STATUS_URL": "http://127.0.0.1:8765/",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["TIBBERSYNC_TIBBER_CLIENT_SECRET"]; ok {
		t.Error("the command inherited the client secret")
	}
	if _, ok := env["CREDENTIALS_DIRECTORY"]; ok {
		t.Error("the command inherited CREDENTIALS_DIRECTORY")
	}
	if env["PATH"] != os.Getenv("PATH") {
		t.Error("the command lost PATH")
	}
}

func TestFailingCommandRetried(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	t.Setenv("NOTIFY_HELPER_OUT", out)
	t.Setenv("NOTIFY_HELPER_FAIL", "1")
	clk := clock.NewFake(t0)
	var logs logBuffer
	n := notify.New(notify.Options{
		Command: []string{os.Args[0], "-test.run=^TestHelperProcess$"},
		Clock:   clk,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	start(t, n)
	n.Notify(context.Background(), status(model.AuthConfigError, "bad"))
	readEnvFile(t, out)
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	// The retry runs the command again after the first backoff.
	readEnvFile(t, out)
	deadline := time.Now().Add(guard)
	for !strings.Contains(logs.String(), "helper says no") {
		if time.Now().After(deadline) {
			t.Fatalf("failure not logged with the command's output:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !clk.Now().After(t0) {
		t.Error("retry did not wait for the backoff")
	}
}

// TestRestoredProblemIsQuietThenRecovers: a daemon restarted while
// re-authorization is pending sends nothing at start (an earlier life
// announced it), and announces the recovery when setup completes.
func TestRestoredProblemIsQuietThenRecovers(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newReceiver(t, clk, nil)
	n := notify.New(notify.Options{WebhookURL: r.srv.URL, Clock: clk})
	start(t, n)
	ctx := context.Background()
	n.Restore(status(model.AuthReauthRequired, "refresh token rejected"))
	n.Notify(ctx, status(model.AuthReauthRequired, "refresh token rejected")) // same state: nothing
	n.Notify(ctx, status(model.AuthOK, ""))
	got := r.next(t)
	if got.msg.Event != notify.EventRecovered {
		t.Fatalf("first message after a restored problem = %s, want recovered", got.msg.Event)
	}
	select {
	case extra := <-r.got:
		t.Errorf("unexpected extra message %s/%s", extra.msg.Event, extra.msg.State)
	default:
	}
}
