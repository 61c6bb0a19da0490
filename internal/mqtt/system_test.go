package mqtt_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the read-only analyst connection

	"github.com/tibbersync/tibbersync/internal/cisummary"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

// systemWait bounds each wait of the system test on the real binary: a
// devices run every few seconds, slower on a loaded machine.
const systemWait = 3 * time.Minute

// sysRig is the real binary, the simulator and the broker.
type sysRig struct {
	t       *testing.T
	bin     string
	tmp     string
	cfgPath string
	state   string
	db      *sql.DB
	simNow  atomic.Int64 // the simulator's clock (Unix ns): frozen unless the test moves it
	simURL  string
	environ []string
	web     *testutil.Socket
}

// daemonProc is one `tibbersync run`.
type daemonProc struct {
	cmd  *exec.Cmd
	logs *testutil.SyncBuffer
	done chan struct{}
}

func newSysRig(t *testing.T, b *broker) *sysRig {
	t.Helper()
	r := &sysRig{t: t, tmp: t.TempDir()}
	r.bin = testutil.BuildTibbersync(t, r.tmp)
	r.simNow.Store(time.Date(2026, 9, 14, 8, 7, 30, 0, time.UTC).UnixNano())
	r.web = testutil.NewSocket(t) // held for the whole test, passed to each daemon
	webAddr := r.web.Addr
	redirect := "http://localhost:" + r.web.PortString() + "/callback"
	sim := simulator.New(simulator.Options{
		Seed: 16, AutoConsent: true, RedirectURIs: []string{redirect}, HistoryDays: 2,
		Now: func() time.Time { return time.Unix(0, r.simNow.Load()).UTC() },
	})
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { sim.Close(); srv.Close() })
	sim.SetBaseURL(srv.URL)
	r.simURL = srv.URL
	r.state = filepath.Join(r.tmp, "state")
	secret := filepath.Join(r.tmp, "client_secret")
	if err := os.WriteFile(secret, []byte(simulator.DefaultClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	r.cfgPath = filepath.Join(r.tmp, "config.toml")
	base := testutil.SimConfig{
		ClientID: simulator.DefaultClientID, SecretFile: secret, RedirectURL: redirect, SimURL: srv.URL,
		StateDir: r.state, Listen: webAddr, Devices: "@every 3s", History: "@every 24h",
	}.TOML()
	r.writeConfig(base, fmt.Sprintf("[mqtt]\nurl = %q\nclient_id = \"tibbersync-systest\"\n", "mqtt://"+b.Plain))
	r.environ = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + r.tmp, "NO_COLOR=1"}
	r.setup()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(r.state, "data.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r.db = db
	return r
}

var baseConfig string

func (r *sysRig) writeConfig(base, mqttSection string) {
	r.t.Helper()
	if base != "" {
		baseConfig = base
	}
	if err := os.WriteFile(r.cfgPath, []byte(baseConfig+"\n"+mqttSection), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// setup authorizes through `setup --paste` and the simulator's auto-consent.
func (r *sysRig) setup() {
	t := r.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), systemWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.bin, "-c", r.cfgPath, "setup", "--paste")
	cmd.Env = r.environ
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	errb := &testutil.SyncBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(stdout)
	var authURL string
	for authURL == "" {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("setup --paste printed no authorize URL: %v\n%s", err, errb.String())
		}
		if s := strings.TrimSpace(line); strings.HasPrefix(s, r.simURL+"/connect/authorize?") {
			authURL = s
		}
	}
	hc := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || loc == "" {
		t.Fatalf("authorize: %d %q", resp.StatusCode, loc)
	}
	if _, err := io.WriteString(stdin, loc+"\n"); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	out, _ := io.ReadAll(rd)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("setup --paste: %v\n%s\n%s", err, out, errb.String())
	}
}

func (r *sysRig) startDaemon() *daemonProc {
	r.t.Helper()
	d := &daemonProc{logs: &testutil.SyncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(r.bin, "-c", r.cfgPath, "run")
	d.cmd.Env = r.environ
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives the test
	r.web.Activate(d.cmd)
	if err := d.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	r.t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.done
		if r.t.Failed() {
			r.t.Logf("daemon log (tail):\n%s", tailLines(d.logs.String(), 60))
		}
	})
	return d
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// devicesRuns counts finished devices runs with the given status.
func (r *sysRig) devicesRuns(status string) int {
	var n int
	if err := r.db.QueryRow(`SELECT count(*) FROM sync_runs WHERE job = 'devices' AND status = ?`, status).Scan(&n); err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return 0
		}
		r.t.Fatalf("count runs: %v", err)
	}
	return n
}

// poll waits, bounded by systemWait, until cond holds.
func (r *sysRig) poll(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(systemWait)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("waited %s for %s", systemWait, what)
		}
		time.Sleep(100 * time.Millisecond) // poll interval, bounded by the deadline
	}
}

// dbRow is one row of latest_capabilities.
type dbRow struct {
	num     sql.NullFloat64
	text    sql.NullString
	unit    string
	missing bool
}

// latest reads latest_capabilities of the active devices.
func (r *sysRig) latest() map[string]map[string]dbRow {
	rows, err := r.db.Query(`SELECT l.device_id, l.capability_id, l.value_num, l.value_text, l.unit, l.missing
FROM latest_capabilities AS l JOIN devices AS d ON d.id = l.device_id WHERE d.removed_at IS NULL`)
	if err != nil {
		r.t.Fatalf("latest_capabilities: %v", err)
	}
	defer rows.Close()
	out := map[string]map[string]dbRow{}
	for rows.Next() {
		var dev, capID string
		var row dbRow
		if err := rows.Scan(&dev, &capID, &row.num, &row.text, &row.unit, &row.missing); err != nil {
			r.t.Fatal(err)
		}
		if out[dev] == nil {
			out[dev] = map[string]dbRow{}
		}
		out[dev][capID] = row
	}
	if err := rows.Err(); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// statesMatch compares the last state message of every active device with
// latest_capabilities; it returns "" or the first difference.
func statesMatch(prefix string, msgs map[string]string, db map[string]map[string]dbRow) string {
	if len(db) == 0 {
		return "no device in data.db yet"
	}
	for dev, caps := range db {
		payload := msgs[prefix+"/devices/"+dev+"/state"]
		if payload == "" {
			return "no state for " + dev
		}
		var st struct {
			ID           string
			Capabilities map[string]struct {
				Value any
				Unit  string
			}
		}
		if err := json.Unmarshal([]byte(payload), &st); err != nil {
			return fmt.Sprintf("state of %s: %v", dev, err)
		}
		if st.ID != dev || len(st.Capabilities) != len(caps) {
			return fmt.Sprintf("state of %s: id %q, %d capabilities, data.db has %d", dev, st.ID, len(st.Capabilities), len(caps))
		}
		for id, row := range caps {
			got, ok := st.Capabilities[id]
			if !ok {
				return fmt.Sprintf("%s: %s missing", dev, id)
			}
			if got.Unit != row.unit {
				return fmt.Sprintf("%s %s: unit %q, data.db %q", dev, id, got.Unit, row.unit)
			}
			switch v := got.Value.(type) {
			case nil:
				if !row.missing && (row.num.Valid || row.text.Valid) {
					return fmt.Sprintf("%s %s: null, data.db %v %v", dev, id, row.num, row.text)
				}
			case bool:
				if !row.text.Valid || row.text.String != fmt.Sprint(v) || !row.num.Valid || row.num.Float64 != map[bool]float64{false: 0, true: 1}[v] {
					return fmt.Sprintf("%s %s: %v, data.db %v %v", dev, id, v, row.num, row.text)
				}
			case float64:
				if !row.num.Valid || math.Abs(row.num.Float64-v) > 0 {
					return fmt.Sprintf("%s %s: %v, data.db %v", dev, id, v, row.num)
				}
			case string:
				if !row.text.Valid || row.text.String != v {
					return fmt.Sprintf("%s %s: %q, data.db %v", dev, id, v, row.text)
				}
			default:
				return fmt.Sprintf("%s %s: unexpected JSON value %T", dev, id, v)
			}
		}
	}
	return ""
}

// discoveryMatches checks that every capability of every active device has
// a valid discovery config; it returns "" or the first problem.
func discoveryMatches(msgs map[string]string, db map[string]map[string]dbRow) string {
	type cfg struct {
		UniqueID   string `json:"unique_id"`
		StateTopic string `json:"state_topic"`
		Template   string `json:"value_template"`
		Avail      string `json:"availability_topic"`
		Device     struct {
			Identifiers []string `json:"identifiers"`
			Name        string   `json:"name"`
		} `json:"device"`
	}
	have := map[string]bool{}
	ids := map[string]bool{}
	for topic, payload := range msgs {
		if !strings.HasPrefix(topic, "homeassistant/") || payload == "" {
			continue
		}
		var c cfg
		if err := json.Unmarshal([]byte(payload), &c); err != nil {
			return fmt.Sprintf("%s: %v", topic, err)
		}
		if c.UniqueID == "" || ids[c.UniqueID] || c.StateTopic == "" || len(c.Device.Identifiers) == 0 || c.Device.Name == "" || c.Avail != "tibbersync/status" {
			return fmt.Sprintf("%s: invalid config %s", topic, payload)
		}
		ids[c.UniqueID] = true
		have[c.StateTopic+" "+c.Template] = true
	}
	for dev, caps := range db {
		for id := range caps {
			found := false
			for k := range have {
				if strings.HasPrefix(k, "tibbersync/devices/"+dev+"/state ") && strings.Contains(k, `["`+id+`"]`) {
					found = true
				}
			}
			if !found {
				return fmt.Sprintf("no discovery config for %s %s", dev, id)
			}
		}
	}
	return ""
}

// statusJSON runs `tibbersync status --json` and returns its mqtt object.
func (r *sysRig) statusJSON() map[string]any {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.bin, "-c", r.cfgPath, "status", "--json")
	cmd.Env = r.environ
	out, _ := cmd.Output() // the exit code is the health verdict, not an error here
	var rep struct {
		MQTT map[string]any `json:"mqtt"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		r.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return rep.MQTT
}

// TestDaemonPublishesToARealBroker runs the real binary against the
// simulator and a real mosquitto: retained online, one state per device
// equal to latest_capabilities, discovery for every capability, nothing
// published across unchanged cycles, syncing on while the broker is down
// and the newest state republished when it is back, offline as the last
// will after kill -9, and a wrong password reported without stopping sync.
func TestDaemonPublishesToARealBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	began := time.Now()
	b := startBroker(t)
	r := newSysRig(t, b)
	built := time.Since(began)
	sub := subscribe(t, b.Plain, "tibbersync/#", "homeassistant/#")
	d := r.startDaemon()

	// 1. Every device's state equals latest_capabilities; discovery for all.
	var why string
	r.poll("states equal to latest_capabilities and discovery configs", func() bool {
		db := r.latest()
		msgs := sub.latest()
		why = statesMatch("tibbersync", msgs, db)
		if why == "" {
			why = discoveryMatches(msgs, db)
		}
		return why == "" && msgs["tibbersync/status"] == "online" && msgs["tibbersync/auth"] == "ok"
	})
	devices := len(r.latest())
	firstPublish := sub.count()
	late := subscribe(t, b.Plain, "tibbersync/status")
	for _, m := range late.waitFor(systemWait, "retained online", hasPayload("tibbersync/status", "online")) {
		if !m.Retained {
			t.Error("online is not retained")
		}
	}

	// 2. Unchanged cycles publish nothing (the simulator's clock is frozen).
	before := sub.count()
	runs := r.devicesRuns("ok")
	r.poll("two more devices runs", func() bool { return r.devicesRuns("ok") >= runs+2 })
	if extra := sub.all()[before:]; len(extra) > 0 {
		t.Errorf("%d messages across unchanged devices runs, want 0; first: %s=%.80q", len(extra), extra[0].Topic, extra[0].Payload)
	}

	// 3. The values change: the new state is published.
	r.simNow.Add(int64(20 * time.Minute))
	r.poll("changed states published", func() bool {
		why = statesMatch("tibbersync", sub.latest(), r.latest())
		return sub.count() > before && why == ""
	})

	// 4. The broker goes away: syncing continues, the error is visible.
	b.stop()
	r.simNow.Add(int64(20 * time.Minute))
	runs = r.devicesRuns("ok")
	r.poll("devices runs while the broker is down", func() bool { return r.devicesRuns("ok") >= runs+2 })
	if n := r.devicesRuns("failed"); n != 0 {
		t.Errorf("%d failed devices runs", n)
	}
	var st map[string]any
	r.poll("status --json to report the broker error", func() bool {
		st = r.statusJSON()
		return st != nil && st["connected"] == false && st["last_error"] != nil
	})
	if e := fmt.Sprint(st["last_error"]); !strings.Contains(e, "broker") {
		t.Errorf("status --json mqtt.last_error = %q", e)
	}
	if n := countLines(d.logs.String(), `"level":"WARN"`, `"component":"mqtt"`); n != 1 {
		t.Errorf("%d mqtt WARN lines for one outage, want 1", n)
	}

	// 5. The broker is back (empty: no persistence): everything is
	// republished, with the newest values.
	b.restart()
	restarted := time.Now()
	sub2 := subscribe(t, b.Plain, "tibbersync/#", "homeassistant/#")
	r.poll("republished newest states after the broker restart", func() bool {
		db := r.latest()
		msgs := sub2.latest()
		why = statesMatch("tibbersync", msgs, db)
		if why == "" {
			why = discoveryMatches(msgs, db)
		}
		return why == "" && msgs["tibbersync/status"] == "online"
	})

	republish := time.Since(restarted)

	// 6. kill -9: the broker delivers the last will.
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	killed := time.Now()
	sub2.waitFor(systemWait, "offline as the last will", hasPayload("tibbersync/status", "offline"))
	lwt := time.Since(killed)

	// 7. A wrong password: reported clearly, syncing goes on.
	pw := filepath.Join(r.tmp, "mqtt_password")
	if err := os.WriteFile(pw, []byte("CANARY-wrong-password-3b9c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.writeConfig("", fmt.Sprintf("[mqtt]\nurl = %q\nusername = %q\npassword_file = %q\nclient_id = \"tibbersync-systest\"\n", "mqtt://"+b.Auth, brokerUser, pw))
	runs = r.devicesRuns("ok")
	d2 := r.startDaemon()
	r.poll("devices runs with a refused password", func() bool {
		return r.devicesRuns("ok") >= runs+2 && strings.Contains(d2.logs.String(), "refused user")
	})
	r.poll("status --json to report the refused password", func() bool {
		st = r.statusJSON()
		return st != nil && strings.Contains(fmt.Sprint(st["last_error"]), "password")
	})
	if st["connected"] != false {
		t.Errorf("status --json says connected with a wrong password: %v", st)
	}
	logs := d2.logs.String()
	if n := countLines(logs, `"level":"WARN"`, "refused user"); n != 1 {
		t.Errorf("%d WARN lines for the refused password, want 1", n)
	}
	if strings.Contains(logs, "CANARY-wrong-password") {
		t.Error("the password is in the log")
	}
	if err := d2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d2.done:
		if code := d2.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("daemon exit %d after SIGTERM", code)
		}
	case <-time.After(systemWait):
		t.Fatal("daemon did not stop after SIGTERM")
	}
	line := fmt.Sprintf("mqtt (real mosquitto): %d devices = latest_capabilities, %d retained messages on connect, 0 across 2 unchanged devices runs, sync on while broker down, newest state republished %.1fs after broker restart, LWT offline %.2fs after kill -9, wrong password: 1 WARN, sync on; build %.0fs, %.1fs",
		devices, firstPublish, republish.Seconds(), lwt.Seconds(), built.Seconds(), time.Since(began).Seconds())
	t.Log(line)
	if !t.Failed() {
		if err := cisummary.Append(line); err != nil {
			t.Error(err)
		}
	}
}

// countLines counts lines containing all of subs.
func countLines(s string, subs ...string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		ok := true
		for _, sub := range subs {
			ok = ok && strings.Contains(l, sub)
		}
		if ok {
			n++
		}
	}
	return n
}
