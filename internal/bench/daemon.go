package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/store"
)

// DaemonParams configures RunDaemon: the real binary's `run` command.
type DaemonParams struct {
	// Binary is the tibbersync executable.
	Binary string
	// Dir is a fresh directory for the config, the secret file, the state
	// directory and the daemon's log.
	Dir string
	// SimURL is the simulator's base URL. The simulator must have
	// AutoConsent and RedirectURIs containing RedirectURL(Port).
	SimURL string
	// Port is the daemon's web port on 127.0.0.1 (see FreePort).
	Port int
	// RateLimit is [tibber].requests_per_second.
	RateLimit float64
	// BackfillDays is [history].backfill_days.
	BackfillDays int
	// Idle is how long the daemon idles after its first runs before its
	// memory is read.
	Idle time.Duration
	// WarmStarts is how many restarts on the populated state directory are timed.
	WarmStarts int
	// Scrapes is how many times GET /metrics is timed after the idle time
	// (the first one warms the caches and is not counted).
	Scrapes int
	// FirstRunsTimeout bounds the wait for the first runs (default 3 minutes).
	FirstRunsTimeout time.Duration
}

// DaemonResult is the outcome of RunDaemon.
type DaemonResult struct {
	// ColdStart is exec → /healthz 200 on an empty state directory.
	ColdStart time.Duration
	// WarmStarts are exec → /healthz 200 on the populated directory.
	WarmStarts []time.Duration
	// AuthToDevices is from the end of the automated authorization (the
	// callback answered) to the end of the first devices run.
	AuthToDevices time.Duration
	// ExecToDevices is from exec to the end of the first devices run.
	ExecToDevices time.Duration
	// FirstRuns maps each job to its first run after the authorization.
	FirstRuns map[string]RunInfo
	// Idle is VmRSS/VmHWM after the first runs and the idle time.
	Idle Status
	// Scrapes are the timed warm GET /metrics (p.Scrapes - 1 of them).
	Scrapes []time.Duration
	// HistoryValues is tibbersync_table_rows{table="device_history"} and
	// HeapInuse go_memstats_heap_inuse_bytes of the last scrape.
	HistoryValues, HeapInuse int64
	// DBBytes is data.db plus its WAL after the first stop.
	DBBytes int64
}

// RunInfo is the outcome of one job run, as recorded in sync_runs.
type RunInfo struct {
	Status         string
	Requests, Rows int
}

// RedirectURL is the redirect URI the daemon on port uses.
func RedirectURL(port int) string {
	return "http://localhost:" + strconv.Itoa(port) + "/callback"
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// daemonJobs are the jobs whose first runs RunDaemon waits for.
var daemonJobs = []string{"homes", "devices", "history"}

// RunDaemon starts `tibbersync run` on an empty state directory and times
// it to /healthz, authorizes it through its own setup page, waits for the
// first homes, devices and history runs, lets it idle and reads its memory
// from /proc, stops it with SIGTERM, then times p.WarmStarts restarts.
func RunDaemon(ctx context.Context, p DaemonParams) (DaemonResult, error) {
	var res DaemonResult
	cfgPath, stateDir, err := writeDaemonConfig(p)
	if err != nil {
		return res, fmt.Errorf("daemon: %w", err)
	}
	base := "http://127.0.0.1:" + strconv.Itoa(p.Port)
	logPath := filepath.Join(p.Dir, "daemon.log")

	d, t0, err := startDaemon(p.Binary, cfgPath, logPath)
	if err != nil {
		return res, fmt.Errorf("daemon: %w", err)
	}
	defer d.kill()
	if res.ColdStart, err = waitHealthy(ctx, base, t0, d); err != nil {
		return res, fmt.Errorf("daemon: cold start: %w%s", err, logTail(logPath))
	}
	// sync_runs stores milliseconds: round down so a run that starts
	// within the same millisecond counts.
	authStart := time.Now().Truncate(time.Millisecond)
	if err := authorizeDaemon(ctx, base); err != nil {
		return res, fmt.Errorf("daemon: authorize: %w%s", err, logTail(logPath))
	}
	authDone := time.Now()
	runs, err := waitFirstRuns(ctx, filepath.Join(stateDir, "data.db"), authStart, d, p.FirstRunsTimeout)
	if err != nil {
		return res, fmt.Errorf("daemon: first runs: %w%s", err, logTail(logPath))
	}
	res.FirstRuns = map[string]RunInfo{}
	for job, r := range runs {
		res.FirstRuns[job] = RunInfo{Status: r.status, Requests: r.requests, Rows: r.rows}
	}
	devEnd := runs["devices"].finished
	res.AuthToDevices = devEnd.Sub(authDone)
	res.ExecToDevices = devEnd.Sub(t0)

	select {
	case <-ctx.Done():
		return res, fmt.Errorf("daemon: idle: %w", ctx.Err())
	case <-time.After(p.Idle):
	}
	if res.Idle, err = ReadStatus(strconv.Itoa(d.cmd.Process.Pid)); err != nil {
		return res, fmt.Errorf("daemon: %w", err)
	}
	if p.Scrapes > 0 {
		if err := scrapeMetrics(ctx, base, p.Scrapes, &res); err != nil {
			return res, fmt.Errorf("daemon: %w", err)
		}
	}
	if err := d.stop(); err != nil {
		return res, fmt.Errorf("daemon: stop: %w%s", err, logTail(logPath))
	}
	for _, f := range []string{"data.db", "data.db-wal"} {
		if fi, err := os.Stat(filepath.Join(stateDir, f)); err == nil {
			res.DBBytes += fi.Size()
		}
	}

	for i := range p.WarmStarts {
		d, t0, err := startDaemon(p.Binary, cfgPath, logPath)
		if err != nil {
			return res, fmt.Errorf("daemon: warm start %d: %w", i+1, err)
		}
		took, err := waitHealthy(ctx, base, t0, d)
		if err != nil {
			d.kill()
			return res, fmt.Errorf("daemon: warm start %d: %w%s", i+1, err, logTail(logPath))
		}
		res.WarmStarts = append(res.WarmStarts, took)
		if err := d.stop(); err != nil {
			return res, fmt.Errorf("daemon: stop after warm start %d: %w%s", i+1, err, logTail(logPath))
		}
	}
	return res, nil
}

// writeDaemonConfig writes the client secret file and config.toml: the
// defaults, except the simulator's endpoints, the rate limit, no schedule
// jitter and the backfill depth.
func writeDaemonConfig(p DaemonParams) (cfgPath, stateDir string, err error) {
	secretFile := filepath.Join(p.Dir, "client_secret")
	if err := os.WriteFile(secretFile, []byte(simulator.DefaultClientSecret+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write client secret: %w", err)
	}
	stateDir = filepath.Join(p.Dir, "state")
	cfg := fmt.Sprintf(`[tibber]
client_id = %q
client_secret_file = %q
redirect_url = %q
auth_url = %q
token_url = %q
userinfo_url = %q
api_url = %q
requests_per_second = %s

[storage]
dir = %q

[web]
listen = "127.0.0.1:%d"

[schedule]
jitter = "0s"

[history]
backfill_days = %d

[log]
format = "json"
level = "info"
`, simulator.DefaultClientID, secretFile, RedirectURL(p.Port),
		p.SimURL+"/connect/authorize", p.SimURL+"/connect/token", p.SimURL+"/connect/userinfo", p.SimURL,
		strconv.FormatFloat(p.RateLimit, 'f', 1, 64), stateDir, p.Port, p.BackfillDays)
	cfgPath = filepath.Join(p.Dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return "", "", fmt.Errorf("write config: %w", err)
	}
	return cfgPath, stateDir, nil
}

// daemonProc is a running `tibbersync run`.
type daemonProc struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error // set when done is closed
}

// startDaemon execs the binary; t0 is taken just before the exec.
func startDaemon(binary, cfgPath, logPath string) (*daemonProc, time.Time, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("open daemon log: %w", err)
	}
	cmd := exec.Command(binary, "-c", cfgPath, "run")
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, time.Time{}, fmt.Errorf("start %s: %w", binary, err)
	}
	d := &daemonProc{cmd: cmd, log: lf, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		lf.Close()
		close(d.done)
	}()
	return d, t0, nil
}

// exited reports whether the process has ended, with its error.
func (d *daemonProc) exited() (bool, error) {
	select {
	case <-d.done:
		if d.err == nil {
			return true, errors.New("exited with status 0")
		}
		return true, d.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM and waits up to 20 s for a clean exit.
func (d *daemonProc) stop() error {
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("sigterm: %w", err)
	}
	select {
	case <-d.done:
		if d.err != nil {
			return fmt.Errorf("exit after SIGTERM: %w", d.err)
		}
		return nil
	case <-time.After(20 * time.Second):
		d.kill()
		return errors.New("no exit within 20s of SIGTERM; killed")
	}
}

// kill ends the process if it still runs and waits for it.
func (d *daemonProc) kill() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Kill()
	<-d.done
}

// waitHealthy polls /healthz every 2 ms until it answers 200 and returns
// the time since t0.
func waitHealthy(ctx context.Context, base string, t0 time.Time, d *daemonProc) (time.Duration, error) {
	c := &http.Client{Timeout: time.Second}
	deadline := time.After(30 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		if err != nil {
			return 0, err
		}
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(t0), nil
			}
		}
		if gone, err := d.exited(); gone {
			return 0, fmt.Errorf("daemon exited before /healthz answered: %w", err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-deadline:
			return 0, errors.New("/healthz did not answer 200 within 30s")
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// authorizeDaemon walks /setup/start → the simulator's authorize endpoint
// (AutoConsent) → /callback with a cookie-jar client that follows
// redirects, like a browser.
func authorizeDaemon(ctx context.Context, base string) error {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return err
	}
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/setup/start", nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "tibbersync-bench/1.0 (linux)")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback answered %s: %s", resp.Status, firstLine(string(body)))
	}
	return nil
}

// firstRun is the first finished run of a job after the authorization.
type firstRun struct {
	status   string
	finished time.Time
	requests int
	rows     int
}

// waitFirstRuns polls data.db read-only until each of daemonJobs has
// finished a run that started at or after since and was not skipped (the
// daemon records skipped runs while it is not authorized yet), and returns
// the first of each. A failed run is an error.
func waitFirstRuns(ctx context.Context, dataPath string, since time.Time, d *daemonProc, timeout time.Duration) (map[string]firstRun, error) {
	if timeout <= 0 {
		timeout = 3 * time.Minute
	}
	dsn, err := store.BuildDSN(dataPath, true, "")
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	deadline := time.After(timeout)
	for {
		runs, err := queryFirstRuns(ctx, db, since)
		if err == nil && len(runs) == len(daemonJobs) {
			for job, r := range runs {
				if r.status != "ok" && r.status != "partial" {
					return runs, fmt.Errorf("first %s run: %s", job, r.status)
				}
			}
			return runs, nil
		}
		if gone, err := d.exited(); gone {
			return nil, fmt.Errorf("daemon exited: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline:
			return nil, fmt.Errorf("first runs not finished within %s (have %v, last error %v)", timeout, slices.Sorted(maps.Keys(runs)), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func queryFirstRuns(ctx context.Context, db *sql.DB, since time.Time) (map[string]firstRun, error) {
	rows, err := db.QueryContext(ctx, `SELECT job, status, started_at, finished_at, requests, rows_written FROM sync_runs
WHERE started_at >= ?1 AND finished_at IS NOT NULL AND status <> 'skipped' ORDER BY id`, since.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]firstRun{}
	for rows.Next() {
		var job string
		var r firstRun
		var start, fin int64
		if err := rows.Scan(&job, &r.status, &start, &fin, &r.requests, &r.rows); err != nil {
			return nil, err
		}
		r.finished = time.UnixMilli(fin)
		// The history run that counts is the one the first devices run
		// triggered: one that started earlier saw no devices yet.
		if dev, ok := out["devices"]; job == "history" && (!ok || start < dev.finished.UnixMilli()) {
			continue
		}
		if _, ok := out[job]; !ok {
			out[job] = r
		}
	}
	return out, rows.Err()
}

// logTail returns the last lines of the daemon's log for an error message.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "\ndaemon log (last lines):\n" + strings.Join(lines, "\n")
}

// firstLine returns the first line of s, at most 200 bytes.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// scrapeMetrics times n GET /metrics one after the other; the first warms
// the page cache and the daemon's code paths and is not kept. The last
// body gives the history value count and the Go heap in use.
func scrapeMetrics(ctx context.Context, base string, n int, res *DaemonResult) error {
	c := &http.Client{Timeout: 30 * time.Second}
	var body []byte
	for i := range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
		if err != nil {
			return err
		}
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("scrape /metrics: %w", err)
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(t0)
		if err != nil {
			return fmt.Errorf("scrape /metrics: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("scrape /metrics: %s", resp.Status)
		}
		if i > 0 {
			res.Scrapes = append(res.Scrapes, took)
		}
	}
	res.HistoryValues = int64(metricValue(string(body), `tibbersync_table_rows{table="device_history"}`))
	res.HeapInuse = int64(metricValue(string(body), "go_memstats_heap_inuse_bytes"))
	return nil
}

// metricValue is the value of the sample named exactly series (name and
// labels as exposed) in a Prometheus text exposition; 0 when absent.
func metricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err == nil {
			return v
		}
	}
	return 0
}
