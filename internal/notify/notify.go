// Package notify tells the user when tibbersync needs them: on entering
// reauth_required or config_error, on recovery, and as a reminder while the
// problem lasts. It POSTs one JSON message to a webhook (ntfy, Gotify and
// Home Assistant all accept it; see docs/notifications.md) and/or runs a
// command with the message in its environment.
//
// Notify never blocks its caller: it records what should be sent and
// returns. Run, on its own goroutine, delivers, retries failures with
// backoff, and sends reminders. There is no Close: Run returns when its
// context is done, and that is the end of the Notifier (undelivered
// messages are dropped, with a log line).
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/model"
)

// The events a message reports.
const (
	EventProblem   = "problem"
	EventRecovered = "recovered"
	EventReminder  = "reminder"
)

// Priorities, on the 1–5 scale that ntfy and Gotify share.
const (
	PriorityProblem   = 5
	PriorityRecovered = 3
)

// Defaults for the zero values of Options.
const (
	DefaultTimeout    = 30 * time.Second
	DefaultMinBackoff = time.Minute
	DefaultMaxBackoff = time.Hour
	DefaultMaxWait    = time.Minute
)

// maxQueue bounds undelivered messages; the oldest is dropped beyond it.
const maxQueue = 16

// Options configures a Notifier. With neither WebhookURL nor Command set,
// the Notifier does nothing.
type Options struct {
	// WebhookURL receives the JSON Message by POST. Credentials may be in
	// the URL (user:password@, ?auth= for ntfy, ?token= for Gotify); they
	// are never logged.
	WebhookURL string
	// Topic is sent as "topic" (ntfy's JSON publishing needs it when
	// WebhookURL is the server's root URL).
	Topic string
	// Command is run without a shell, with the message in TIBBERSYNC_EVENT,
	// TIBBERSYNC_STATE, TIBBERSYNC_REASON, TIBBERSYNC_MESSAGE,
	// TIBBERSYNC_TITLE, TIBBERSYNC_PRIORITY, TIBBERSYNC_SINCE and
	// TIBBERSYNC_STATUS_URL. It inherits the daemon's environment minus
	// every TIBBERSYNC_* variable and CREDENTIALS_DIRECTORY, so that no
	// secret reaches it.
	Command []string
	// Reminder repeats the problem message this often while the state stays
	// reauth_required or config_error; 0 turns reminders off.
	Reminder time.Duration
	// HTTPClient sends the webhook; nil means a client with a 30 s timeout.
	HTTPClient *http.Client
	// UserAgent is sent with the webhook request.
	UserAgent string
	// Clock tells time and waits; nil means clock.Real.
	Clock clock.Clock
	// Logger receives delivery results; nil discards them.
	Logger *slog.Logger
	// StatusURL links to the status page; it is included in the message.
	StatusURL string
	// Timeout bounds one delivery (one POST or one command run); 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the retry delay after a failed
	// delivery, which doubles from MinBackoff up to MaxBackoff; 0 means the
	// defaults (1 min, 1 h).
	MinBackoff, MaxBackoff time.Duration
	// MaxWait caps a single wait so that a due reminder or retry is noticed
	// soon after a suspend (Go timers stop while the machine sleeps); 0
	// means DefaultMaxWait.
	MaxWait time.Duration
}

// Message is the JSON body POSTed to the webhook. Gotify reads title,
// message, priority and extras; ntfy (POST to its root URL) reads topic,
// title, message, priority, tags and click; Home Assistant hands the whole
// object to the automation as trigger.json. The remaining fields are for
// any receiver that wants to act on the state.
type Message struct {
	Topic    string         `json:"topic,omitempty"`
	Title    string         `json:"title"`
	Message  string         `json:"message"`
	Priority int            `json:"priority"`
	Tags     []string       `json:"tags,omitempty"`
	Click    string         `json:"click,omitempty"`
	Extras   map[string]any `json:"extras,omitempty"`
	Event    string         `json:"event"`
	State    string         `json:"state"`
	Reason   string         `json:"reason"`
	Since    string         `json:"since"`
}

// Notifier turns auth-state changes into notifications. Create it with New,
// start Run on a goroutine, and call Notify on every auth-state change.
type Notifier struct {
	webhook    string
	webhookLog string // scheme://host/path, safe to log
	topic      string
	command    []string
	reminder   time.Duration
	client     *http.Client
	userAgent  string
	clock      clock.Clock
	log        *slog.Logger
	statusURL  string
	timeout    time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	maxWait    time.Duration

	// wake tells Run that Notify queued something (capacity 1).
	wake chan struct{}

	mu     sync.Mutex
	known  bool             // Notify has been called
	status model.AuthStatus // the latest status
	// owed is set once a problem was queued and cleared by the recovery
	// message, so that recovery is announced even via setup_required.
	owed         bool
	queue        []*delivery
	nextReminder time.Time // zero when no reminder is due
}

// delivery is one message on its way to the configured receivers.
type delivery struct {
	msg         Message
	webhookDone bool
	commandDone bool
	attempts    int
	notBefore   time.Time
}

// New returns a Notifier. It starts nothing; run Run.
func New(opts Options) *Notifier {
	n := &Notifier{
		webhook:    opts.WebhookURL,
		webhookLog: safeURL(opts.WebhookURL),
		topic:      opts.Topic,
		command:    append([]string(nil), opts.Command...),
		reminder:   max(opts.Reminder, 0),
		client:     opts.HTTPClient,
		userAgent:  opts.UserAgent,
		clock:      opts.Clock,
		log:        opts.Logger,
		statusURL:  opts.StatusURL,
		timeout:    orDefault(opts.Timeout, DefaultTimeout),
		minBackoff: orDefault(opts.MinBackoff, DefaultMinBackoff),
		maxBackoff: orDefault(opts.MaxBackoff, DefaultMaxBackoff),
		maxWait:    orDefault(opts.MaxWait, DefaultMaxWait),
		wake:       make(chan struct{}, 1),
	}
	if n.client == nil {
		n.client = &http.Client{Timeout: n.timeout}
	}
	if n.clock == nil {
		n.clock = clock.Real{}
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if len(n.command) > 0 && n.command[0] == "" {
		n.command = nil
	}
	n.maxBackoff = max(n.maxBackoff, n.minBackoff)
	return n
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Enabled reports whether a webhook or command is configured.
func (n *Notifier) Enabled() bool { return n.webhook != "" || len(n.command) > 0 }

func problem(s model.AuthState) bool {
	return s == model.AuthReauthRequired || s == model.AuthConfigError
}

// Notify records an auth-state change; it is called on every change and may
// be called repeatedly with the same state. Entering reauth_required or
// config_error queues a problem message (also on the first call, so a
// daemon that starts in trouble says so); returning to ok after a problem
// queues a recovery message; anything else queues nothing. It never blocks
// and never fails: delivery happens in Run. ctx is not used for delivery,
// which outlives the caller's request.
func (n *Notifier) Notify(ctx context.Context, st model.AuthStatus) {
	now := n.clock.Now()
	n.mu.Lock()
	prev, known := n.status.State, n.known
	n.known, n.status = true, st
	event := ""
	switch {
	case problem(st.State) && (!known || prev != st.State):
		event = EventProblem
		n.owed = true
	case st.State == model.AuthOK && n.owed:
		event = EventRecovered
		n.owed = false
	}
	switch {
	case !problem(st.State):
		n.nextReminder = time.Time{}
	case event != "" && n.reminder > 0:
		n.nextReminder = now.Add(n.reminder)
	}
	queued := false
	if event != "" && n.Enabled() {
		n.enqueue(n.message(event, st, now), now)
		queued = true
	}
	n.mu.Unlock()
	if queued {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
}

// Restore tells the notifier the auth state that was stored when the daemon
// started, without sending anything: a daemon restarted while
// re-authorization is pending stays quiet (the problem was announced by an
// earlier life), keeps reminding, and announces the recovery when setup
// completes. It does nothing once Notify has been called.
func (n *Notifier) Restore(st model.AuthStatus) {
	now := n.clock.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.known {
		return
	}
	n.known, n.status = true, st
	n.owed = problem(st.State)
	if n.owed && n.reminder > 0 {
		n.nextReminder = now.Add(n.reminder)
	}
}

// enqueue appends a delivery, dropping the oldest beyond maxQueue. n.mu is held.
func (n *Notifier) enqueue(m Message, now time.Time) {
	if len(n.queue) >= maxQueue {
		dropped := n.queue[0]
		n.queue = n.queue[1:]
		n.log.Warn("notification dropped: too many undelivered", "event", dropped.msg.Event, "state", dropped.msg.State)
	}
	n.queue = append(n.queue, &delivery{msg: m, notBefore: now})
}

// message builds the notification for event from st.
func (n *Notifier) message(event string, st model.AuthStatus, now time.Time) Message {
	since := st.Since
	if since.IsZero() {
		since = now
	}
	reason := strings.TrimSpace(st.Reason)
	m := Message{
		Topic:  n.topic,
		Event:  event,
		State:  string(st.State),
		Reason: reason,
		Since:  since.UTC().Format(time.RFC3339),
		Click:  n.statusURL,
	}
	if n.statusURL != "" {
		// Gotify's Android client opens this URL when the message is tapped.
		m.Extras = map[string]any{"client::notification": map[string]any{"click": map[string]string{"url": n.statusURL}}}
	}
	text := reason
	switch event {
	case EventRecovered:
		m.Title = "tibbersync: authorization restored"
		m.Priority = PriorityRecovered
		m.Tags = []string{"white_check_mark"}
		text = "Tibber authorization works again; syncing resumes"
	case EventProblem, EventReminder:
		m.Priority = PriorityProblem
		m.Tags = []string{"warning"}
		if st.State == model.AuthConfigError {
			m.Title = "tibbersync: configuration error"
			if text == "" {
				text = "Tibber rejected the client configuration"
			}
		} else {
			m.Title = "tibbersync: re-authorization required"
			if text == "" {
				text = "Tibber no longer accepts the saved authorization; run the setup again"
			}
		}
		if event == EventReminder {
			m.Title += " (reminder)"
			text += " (since " + m.Since + ")"
		}
	}
	if n.statusURL != "" {
		text += " — open " + n.statusURL
	}
	m.Message = text
	return m
}

// Run delivers queued messages, retries failed deliveries with backoff
// (MinBackoff doubling up to MaxBackoff, forever), and queues a reminder
// every Reminder while the state stays reauth_required or config_error. It
// returns when ctx is done.
func (n *Notifier) Run(ctx context.Context) {
	for ctx.Err() == nil {
		now := n.clock.Now()
		n.mu.Lock()
		n.queueDueReminder(now)
		var head *delivery
		wait := time.Duration(-1) // -1: nothing timed to wait for
		if len(n.queue) > 0 {
			head = n.queue[0]
			wait = max(head.notBefore.Sub(now), 0)
		}
		if !n.nextReminder.IsZero() {
			if w := max(n.nextReminder.Sub(now), 0); wait < 0 || w < wait {
				wait = w
			}
		}
		n.mu.Unlock()

		if head != nil && !head.notBefore.After(now) {
			n.deliver(ctx, head)
			continue
		}
		n.wait(ctx, wait)
	}
	n.mu.Lock()
	left := len(n.queue)
	n.mu.Unlock()
	if left > 0 {
		n.log.Warn("notifier stopped with undelivered notifications", "count", left)
	}
}

// queueDueReminder queues a reminder when one is due and nothing is still
// waiting for delivery (a stuck receiver must not pile up reminders). n.mu
// is held.
func (n *Notifier) queueDueReminder(now time.Time) {
	if n.nextReminder.IsZero() || now.Before(n.nextReminder) {
		return
	}
	// After a suspend, send one reminder, not one per missed interval.
	n.nextReminder = now.Add(n.reminder)
	if len(n.queue) == 0 && n.Enabled() && problem(n.status.State) {
		n.enqueue(n.message(EventReminder, n.status, now), now)
	}
}

// wait sleeps for d (capped at maxWait), or until Notify wakes Run or ctx
// is done. d < 0 waits without a timer.
func (n *Notifier) wait(ctx context.Context, d time.Duration) {
	if d < 0 {
		select {
		case <-ctx.Done():
		case <-n.wake:
		}
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-n.wake:
			cancel()
		case <-sctx.Done():
		}
	}()
	_ = n.clock.Sleep(sctx, min(d, n.maxWait))
	cancel()
	<-done
}

// deliver sends d to every receiver it has not reached yet, then removes it
// or schedules a retry.
func (n *Notifier) deliver(ctx context.Context, d *delivery) {
	var errs []error
	webhookOK, commandOK := d.webhookDone, d.commandDone
	if n.webhook != "" && !webhookOK {
		if err := n.post(ctx, d.msg); err != nil {
			errs = append(errs, err)
		} else {
			webhookOK = true
			n.log.Info("notification sent", "event", d.msg.Event, "state", d.msg.State, "webhook", n.webhookLog)
		}
	}
	if len(n.command) > 0 && !commandOK {
		if err := n.run(ctx, d.msg); err != nil {
			errs = append(errs, err)
		} else {
			commandOK = true
			n.log.Info("notification sent", "event", d.msg.Event, "state", d.msg.State, "command", filepath.Base(n.command[0]))
		}
	}
	if ctx.Err() != nil {
		return // shutting down: not a delivery failure
	}
	now := n.clock.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	d.webhookDone = webhookOK || n.webhook == ""
	d.commandDone = commandOK || len(n.command) == 0
	if len(errs) == 0 {
		n.remove(d)
		return
	}
	d.attempts++
	backoff := n.backoff(d.attempts)
	d.notBefore = now.Add(backoff)
	n.log.Warn("notification failed", "event", d.msg.Event, "state", d.msg.State,
		"attempt", d.attempts, "retry_in", backoff.String(), "err", errors.Join(errs...))
}

// backoff is MinBackoff doubled per further failed attempt, up to MaxBackoff.
func (n *Notifier) backoff(attempts int) time.Duration {
	b := n.minBackoff
	for i := 1; i < attempts && b < n.maxBackoff; i++ {
		b *= 2
	}
	return min(b, n.maxBackoff)
}

// remove drops d from the queue. n.mu is held.
func (n *Notifier) remove(d *delivery) {
	for i, q := range n.queue {
		if q == d {
			n.queue = append(n.queue[:i], n.queue[i+1:]...)
			return
		}
	}
}

// post sends the message to the webhook. Errors never contain the URL,
// which may carry a token.
func (n *Notifier) post(ctx context.Context, m Message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode notification: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.webhook, bytes.NewReader(body))
	if err != nil {
		return errors.New("post webhook: invalid webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	if n.userAgent != "" {
		req.Header.Set("User-Agent", n.userAgent)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post webhook %s: %w", n.webhookLog, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post webhook %s: status %s", n.webhookLog, resp.Status)
	}
	return nil
}

// run executes the command with the message in its environment.
func (n *Notifier) run(ctx context.Context, m Message) error {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.command[0], n.command[1:]...)
	cmd.Env = append(childEnv(os.Environ()),
		"TIBBERSYNC_EVENT="+envValue(m.Event),
		"TIBBERSYNC_STATE="+envValue(m.State),
		"TIBBERSYNC_REASON="+envValue(m.Reason),
		"TIBBERSYNC_MESSAGE="+envValue(m.Message),
		"TIBBERSYNC_TITLE="+envValue(m.Title),
		"TIBBERSYNC_PRIORITY="+strconv.Itoa(m.Priority),
		"TIBBERSYNC_SINCE="+envValue(m.Since),
		"TIBBERSYNC_STATUS_URL="+envValue(n.statusURL),
	)
	out := &headBuffer{max: 512}
	cmd.Stdout, cmd.Stderr = out, out
	// A child that leaves a grandchild holding the pipes must not hang us.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if o := strings.TrimSpace(out.String()); o != "" {
			return fmt.Errorf("run %s: %w: %q", filepath.Base(n.command[0]), err, o)
		}
		return fmt.Errorf("run %s: %w", filepath.Base(n.command[0]), err)
	}
	return nil
}

// childEnv is the daemon's environment without anything that may hold or
// point to a secret or that belongs to the daemon alone.
func childEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "TIBBERSYNC_") || name == "CREDENTIALS_DIRECTORY" || name == "NOTIFY_SOCKET" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// envValue removes NUL bytes, which exec rejects in the environment.
func envValue(s string) string { return strings.ReplaceAll(s, "\x00", "") }

// safeURL renders a URL without userinfo and query, for logs.
func safeURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}

// headBuffer keeps the first max bytes written to it (the start of a
// failing command's output says most about why it failed).
type headBuffer struct {
	max int
	buf bytes.Buffer
}

// Write keeps what fits and reports success, so the command never blocks.
func (b *headBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// String returns the kept output.
func (b *headBuffer) String() string { return b.buf.String() }
