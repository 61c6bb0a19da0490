package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the analysts' read-only view of data.db in the summary

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/version"
)

// demoClock is the real clock shifted by an offset that the demo advances,
// so that a few cycles show the simulated devices changing. The simulator
// and the daemon share it.
type demoClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *demoClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Sleep waits in real time: only the offset moves faster.
func (c *demoClock) Sleep(ctx context.Context, d time.Duration) error {
	return clock.Real{}.Sleep(ctx, d)
}

func (c *demoClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// cmdDemo wires the simulator and the daemon together: the authorization
// runs over real HTTP with automatic consent, then a few sync cycles run
// while simulated time moves on, and a summary is read back from data.db.
func cmdDemo(ctx context.Context, g globalFlags, args []string, env *environment) error {
	fs := newFlagSet("demo", &g, env)
	cycles := fs.Int("cycles", 4, "devices cycles to run (simulated time moves 15 minutes per cycle)")
	dir := fs.String("dir", "", "state directory (default: a temporary directory, removed afterwards)")
	serve := fs.Bool("serve", false, "after the cycles keep the daemon running with its status page until Ctrl-C")
	listen := fs.String("listen", "127.0.0.1:0", "web UI address (with --serve, default 127.0.0.1:8765; port 0 picks a free one)")
	seed := fs.Int64("seed", 1, "simulator seed")
	backfill := fs.Int("backfill-days", 14, "history backfill in days")
	verbose := fs.Bool("v", false, "show the daemon's log")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *cycles < 0 || *cycles > 1000 {
		return usageErrorf("tibbersync demo: --cycles %d: want 0..1000", *cycles)
	}
	listenGiven := false
	fs.Visit(func(f *flag.Flag) { listenGiven = listenGiven || f.Name == "listen" })
	if *serve && !listenGiven {
		*listen = "127.0.0.1:8765" // an explicit --listen 127.0.0.1:0 picks a free port
	}
	if h, _, err := net.SplitHostPort(*listen); err != nil || !loopbackHost(h) {
		return usageErrorf("tibbersync demo: --listen %q: want a loopback host:port", *listen)
	}
	stateDir := *dir
	if stateDir == "" {
		tmp, err := os.MkdirTemp("", "tibbersync-demo-")
		if err != nil {
			return fmt.Errorf("tibbersync demo: %w", err)
		}
		defer os.RemoveAll(tmp)
		stateDir = tmp
	}
	d := &demo{env: env, clk: &demoClock{}, stateDir: stateDir, seed: *seed, backfill: *backfill, cycles: *cycles, verbose: *verbose, keep: *dir != ""}
	return d.run(ctx, *listen, *serve)
}

type demo struct {
	env      *environment
	clk      *demoClock
	stateDir string
	seed     int64
	backfill int
	cycles   int
	verbose  bool
	keep     bool // the state directory was given and is kept
}

// loopbackHost reports whether host (of --listen) is loopback.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (d *demo) run(ctx context.Context, listen string, serve bool) error {
	out := d.env.stdout
	// The web port must be known before the simulator registers the
	// redirect URI: bind it now and hand the socket to the daemon.
	webLn, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("tibbersync demo: %w", err)
	}
	handedOver := false
	defer func() {
		if !handedOver {
			webLn.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(webLn.Addr().String())
	redirect := "http://localhost:" + port + "/callback"

	sim := simulator.New(simulator.Options{
		Now:          d.clk.Now,
		Seed:         d.seed,
		AutoConsent:  true,
		RedirectURIs: []string{redirect},
		PageSize:     168,
	})
	defer sim.Close()
	simLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("tibbersync demo: simulator: %w", err)
	}
	simURL := "http://" + simLn.Addr().String()
	sim.SetBaseURL(simURL)
	simSrv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = simSrv.Serve(simLn) }()
	defer simSrv.Close()

	cfg := config.Default()
	cfg.Storage.Dir = d.stateDir
	cfg.Web.Listen = webLn.Addr().String()
	simulator.Configure(&cfg, simURL, redirect)
	cfg.ClientSecretSource = "demo"
	cfg.Tibber.RequestsPerSecond = 50
	cfg.History.BackfillDays = d.backfill
	cfg.Schedule.Jitter = 0

	var logw io.Writer = io.Discard
	if d.verbose || serve {
		logw = d.env.stderr
	}
	log, err := logging.New(logw, "info", "auto")
	if err != nil {
		log = slog.New(slog.DiscardHandler)
	}

	fmt.Fprintf(out, "tibbersync demo (%s)\n", version.Get().Version)
	fmt.Fprintf(out, "  simulator: %s (fixture account: 2 homes, every device category)\n", simURL)
	fmt.Fprintf(out, "  state dir: %s\n\n", d.stateDir)

	handedOver = true
	if serve {
		return d.serve(ctx, cfg, log, webLn)
	}

	// The daemon's web server serves the authorization; the demo runs the
	// jobs itself, one after the other, while simulated time moves on.
	dm, err := daemon.Open(ctx, cfg, daemon.Options{Clock: d.clk, Logger: log, Listener: webLn, ManualSchedule: true})
	if err != nil {
		return fmt.Errorf("tibbersync demo: %w", err)
	}
	defer dm.Close()
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- dm.Run(runCtx) }()
	defer func() {
		stop()
		<-runErr
	}()
	select {
	case <-dm.Ready():
	case err := <-runErr:
		return fmt.Errorf("tibbersync demo: web: %w", err)
	}
	return d.cycle(ctx, dm)
}

// cycle authorizes, runs the first sync and the devices cycles, and prints
// the summary.
func (d *demo) cycle(ctx context.Context, dm *daemon.Daemon) error {
	out := d.env.stdout
	fmt.Fprintln(out, "1. authorize: /setup/start → simulator consent (automatic) → /callback")
	if err := autoAuthorize(ctx, dm.URL()); err != nil {
		return fmt.Errorf("tibbersync demo: authorization: %w", err)
	}
	st, err := dm.Auth().Status(ctx)
	if err != nil || st.State != model.AuthOK {
		return fmt.Errorf("tibbersync demo: authorization did not complete: state %s %v", st.State, err)
	}
	fmt.Fprintf(out, "   authorized as %s, %d scopes granted\n\n", st.Email, len(st.GrantedScopes))

	fmt.Fprintln(out, "2. first sync (homes, devices, history backfill)")
	failed := false
	for _, job := range daemon.JobNames {
		r, err := dm.RunJob(ctx, job)
		fmt.Fprintf(out, "   %-8s %-7s requests=%-4d rows=%d\n", job, r.Status, r.Requests, r.RowsWritten)
		if err != nil || r.Status == jobs.StatusFailed || r.Status == jobs.StatusSkipped {
			failed = true
			fmt.Fprintf(d.env.stderr, "   %s: %s %v\n", job, r.Error, err)
		}
	}
	fmt.Fprintf(out, "\n3. %d devices cycles, simulated time +15 min each\n", d.cycles)
	for i := 1; i <= d.cycles && ctx.Err() == nil; i++ {
		d.clk.Advance(15 * time.Minute)
		r, err := dm.RunJob(ctx, jobs.JobDevices)
		fmt.Fprintf(out, "   cycle %d at %s: %-7s requests=%-3d rows=%d\n", i, d.clk.Now().Format("15:04"), r.Status, r.Requests, r.RowsWritten)
		if err != nil || r.Status == jobs.StatusFailed {
			failed = true
		}
	}
	r, err := dm.RunJob(ctx, jobs.JobHistory)
	fmt.Fprintf(out, "   history  %-7s requests=%-3d rows=%d (incremental, with lookback)\n\n", r.Status, r.Requests, r.RowsWritten)
	if err != nil || r.Status == jobs.StatusFailed {
		failed = true
	}
	dbPath := filepath.Join(d.stateDir, "data.db")
	if err := printDemoSummary(ctx, out, dbPath); err != nil {
		return fmt.Errorf("tibbersync demo: summary: %w", err)
	}
	if d.keep {
		fmt.Fprintf(out, "\nTry: sqlite3 'file:%s?mode=ro' 'SELECT * FROM device_overview'\n", dbPath)
	} else {
		fmt.Fprintln(out, "\nThe state directory is removed now; run with --dir DIR to keep data.db and explore it (make run shows the status page).")
	}
	if failed {
		return errors.New("tibbersync demo: some runs failed (see above)")
	}
	return nil
}

// serve runs the real daemon against the simulator until Ctrl-C, with the
// authorization done automatically once the web server listens.
func (d *demo) serve(ctx context.Context, cfg config.Config, log *slog.Logger, ln net.Listener) error {
	return serve(ctx, cfg, log, d.env, daemon.Options{Clock: d.clk, Listener: ln}, func(dm *daemon.Daemon) {
		if err := autoAuthorize(ctx, dm.URL()); err != nil {
			log.Error("demo authorization", "err", err)
			return
		}
		fmt.Fprintf(d.env.stdout, "authorized; status page: %s/  (Ctrl-C to stop)\n", dm.URL())
	})
}

// autoAuthorize walks /setup/start → authorize → /callback with a cookie-jar
// client that follows redirects, like curl -L -b jar -c jar.
func autoAuthorize(ctx context.Context, webURL string) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, webURL+"/setup/start", nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", version.UserAgent())
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback page: %s: %s", resp.Status, firstLine(string(body)))
	}
	return nil
}

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

// printDemoSummary reads data.db the way an analyst would: read-only.
func printDemoSummary(ctx context.Context, w io.Writer, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintln(w, "4. what is stored in data.db (read-only, as an analyst sees it)")
	rows, err := db.QueryContext(ctx, `SELECT h.name, COUNT(hd.device_id) FROM homes h LEFT JOIN home_devices hd ON hd.home_id = h.id AND hd.removed_at IS NULL GROUP BY h.id ORDER BY h.name`)
	if err != nil {
		return fmt.Errorf("homes: %w", err)
	}
	fmt.Fprintln(w, "   homes:")
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			rows.Close()
			return err
		}
		fmt.Fprintf(w, "     %-20s %d devices\n", name, n)
	}
	rows.Close()

	rows, err = db.QueryContext(ctx, `
SELECT d.name, d.brand, d.category,
       (SELECT COUNT(*) FROM home_devices hd WHERE hd.device_id = d.id AND hd.removed_at IS NULL),
       (SELECT COUNT(*) FROM device_snapshots s WHERE s.device_id = d.id),
       (SELECT COUNT(*) FROM device_history h WHERE h.device_id = d.id)
FROM devices d ORDER BY d.category, d.name`)
	if err != nil {
		return fmt.Errorf("devices: %w", err)
	}
	fmt.Fprintln(w, "   devices:                      category        homes snapshots history-rows")
	for rows.Next() {
		var name, brand, cat string
		var homes, snaps, hist int
		if err := rows.Scan(&name, &brand, &cat, &homes, &snaps, &hist); err != nil {
			rows.Close()
			return err
		}
		fmt.Fprintf(w, "     %-28s %-15s %5d %9d %12d\n", brand+" "+name, cat, homes, snaps, hist)
	}
	rows.Close()

	rows, err = db.QueryContext(ctx, `
SELECT d.name, l.capability_id, l.value_num, l.value_text, COALESCE(l.unit, '')
FROM latest_capabilities l JOIN devices d ON d.id = l.device_id
WHERE l.capability_id IN ('storage.stateOfCharge', 'temp.current', 'charging.status', 'powerFlow.grid.power', 'range.remaining')
ORDER BY d.name, l.capability_id`)
	if err != nil {
		return fmt.Errorf("latest values: %w", err)
	}
	fmt.Fprintln(w, "   latest values (view latest_capabilities):")
	for rows.Next() {
		var name, id, unit string
		var num sql.NullFloat64
		var text sql.NullString
		if err := rows.Scan(&name, &id, &num, &text, &unit); err != nil {
			rows.Close()
			return err
		}
		v := "null"
		switch {
		case num.Valid:
			v = fmt.Sprintf("%g", num.Float64)
		case text.Valid:
			v = text.String
		}
		fmt.Fprintf(w, "     %-20s %-24s %s %s\n", name, id, v, unit)
	}
	rows.Close()

	var runs, values, snaps, hist int
	q := `SELECT (SELECT COUNT(*) FROM sync_runs), (SELECT COUNT(*) FROM capability_values), (SELECT COUNT(*) FROM device_snapshots), (SELECT COUNT(*) FROM device_history)`
	if err := db.QueryRowContext(ctx, q).Scan(&runs, &values, &snaps, &hist); err != nil {
		return fmt.Errorf("counts: %w", err)
	}
	fmt.Fprintf(w, "   rows: sync_runs=%d device_snapshots=%d capability_values=%d device_history=%d\n", runs, snaps, values, hist)
	var days int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(DISTINCT local_date) FROM history_hourly`).Scan(&days); err != nil {
		return fmt.Errorf("history_hourly: %w", err)
	}
	fmt.Fprintf(w, "   history_hourly covers %d local days\n", days)
	return nil
}
