package main

import (
	"context"
	"database/sql"
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
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/version"
	"github.com/tibbersync/tibbersync/internal/web"
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
func cmdDemo(ctx context.Context, args []string, env *environment) int {
	fs, _ := newFlagSet(ctx, "demo", env)
	cycles := fs.Int("cycles", 4, "devices cycles to run (simulated time moves 15 minutes per cycle)")
	dir := fs.String("dir", "", "state directory (default: a temporary directory, removed afterwards)")
	serve := fs.Bool("serve", false, "after the cycles keep the daemon running with its status page until Ctrl-C")
	listen := fs.String("listen", "127.0.0.1:0", "web UI address (with --serve, default 127.0.0.1:8765)")
	seed := fs.Int64("seed", 1, "simulator seed")
	backfill := fs.Int("backfill-days", 14, "history backfill in days")
	verbose := fs.Bool("v", false, "show the daemon's log")
	if code, ok := parseFlags(fs, args, 0, env); !ok {
		return code
	}
	if *cycles < 0 || *cycles > 1000 {
		fmt.Fprintf(env.stderr, "tibbersync demo: --cycles %d: want 0..1000\n", *cycles)
		return exitUsage
	}
	if *serve && *listen == "127.0.0.1:0" {
		*listen = "127.0.0.1:8765"
	}
	if h, _, err := net.SplitHostPort(*listen); err != nil || !loopbackHost(h) {
		fmt.Fprintf(env.stderr, "tibbersync demo: --listen %q: want a loopback host:port\n", *listen)
		return exitUsage
	}
	stateDir := *dir
	if stateDir == "" {
		tmp, err := os.MkdirTemp("", "tibbersync-demo-")
		if err != nil {
			fmt.Fprintf(env.stderr, "tibbersync demo: %v\n", err)
			return exitError
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

func (d *demo) run(ctx context.Context, listen string, serve bool) int {
	out := d.env.stdout
	// The web port must be known before the simulator registers the redirect URI.
	webAddr, err := reserveAddr(listen)
	if err != nil {
		fmt.Fprintf(d.env.stderr, "tibbersync demo: %v\n", err)
		return exitError
	}
	_, port, _ := net.SplitHostPort(webAddr)
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
		fmt.Fprintf(d.env.stderr, "tibbersync demo: simulator: %v\n", err)
		return exitError
	}
	simURL := "http://" + simLn.Addr().String()
	sim.SetBaseURL(simURL)
	simSrv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = simSrv.Serve(simLn) }()
	defer simSrv.Close()

	cfg := config.Default()
	cfg.Storage.Dir = d.stateDir
	cfg.Web.Listen = webAddr
	cfg.Tibber.ClientID = simulator.DefaultClientID
	cfg.ClientSecret = logging.NewSecret(simulator.DefaultClientSecret)
	cfg.ClientSecretSource = "demo"
	cfg.Tibber.RedirectURL = redirect
	cfg.Tibber.AuthURL = simURL + "/connect/authorize"
	cfg.Tibber.TokenURL = simURL + "/connect/token"
	cfg.Tibber.UserinfoURL = simURL + "/connect/userinfo"
	cfg.Tibber.APIURL = simURL
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

	if serve {
		return d.serve(ctx, cfg, log)
	}

	a, err := openApp(ctx, cfg, log, appOptions{clock: d.clk})
	if err != nil {
		fmt.Fprintf(d.env.stderr, "tibbersync demo: %v\n", err)
		return exitError
	}
	defer a.close()
	if err := a.source.Init(ctx); err != nil {
		fmt.Fprintf(d.env.stderr, "tibbersync demo: %v\n", err)
		return exitError
	}
	srv, err := web.New(web.Options{
		Listen: webAddr, RedirectURL: redirect, ClientID: cfg.Tibber.ClientID, Scopes: cfg.Tibber.Scopes,
		ClientConfigured: true, Flow: a.flow, Status: a.data, Clock: d.clk, Logger: log.With("component", "web"),
	})
	if err != nil {
		fmt.Fprintf(d.env.stderr, "tibbersync demo: web: %v\n", err)
		return exitError
	}
	if err := srv.Open(); err != nil {
		fmt.Fprintf(d.env.stderr, "tibbersync demo: web: %v\n", err)
		return exitError
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(cctx)
	}()

	fmt.Fprintln(out, "1. authorize: /setup/start → simulator consent (automatic) → /callback")
	if err := autoAuthorize(ctx, srv.URL()); err != nil {
		fmt.Fprintf(d.env.stderr, "tibbersync demo: authorization: %v\n", err)
		return exitError
	}
	st, err := a.source.Status(ctx)
	if err != nil || st.State != model.AuthOK {
		fmt.Fprintf(d.env.stderr, "tibbersync demo: authorization did not complete: state %s %v\n", st.State, err)
		return exitError
	}
	fmt.Fprintf(out, "   authorized as %s, %d scopes granted\n\n", st.Email, len(st.GrantedScopes))

	fmt.Fprintln(out, "2. first sync (homes, devices, history backfill)")
	failed := false
	for _, job := range jobNames {
		r, err := a.runJob(ctx, job)
		fmt.Fprintf(out, "   %-8s %-7s requests=%-4d rows=%d\n", job, r.Status, r.Requests, r.RowsWritten)
		if err != nil || r.Status == "failed" || r.Status == "skipped" {
			failed = true
			fmt.Fprintf(d.env.stderr, "   %s: %s %v\n", job, r.Error, err)
		}
	}
	fmt.Fprintf(out, "\n3. %d devices cycles, simulated time +15 min each\n", d.cycles)
	for i := 1; i <= d.cycles && ctx.Err() == nil; i++ {
		d.clk.Advance(15 * time.Minute)
		r, err := a.runJob(ctx, "devices")
		fmt.Fprintf(out, "   cycle %d at %s: %-7s requests=%-3d rows=%d\n", i, d.clk.Now().Format("15:04"), r.Status, r.Requests, r.RowsWritten)
		if err != nil || r.Status == "failed" {
			failed = true
		}
	}
	r, err := a.runJob(ctx, "history")
	fmt.Fprintf(out, "   history  %-7s requests=%-3d rows=%d (incremental, with lookback)\n\n", r.Status, r.Requests, r.RowsWritten)
	if err != nil || r.Status == "failed" {
		failed = true
	}
	dbPath := filepath.Join(d.stateDir, "data.db")
	if err := printDemoSummary(ctx, out, dbPath); err != nil {
		fmt.Fprintf(d.env.stderr, "tibbersync demo: summary: %v\n", err)
		return exitError
	}
	if d.keep {
		fmt.Fprintf(out, "\nTry: sqlite3 'file:%s?mode=ro' 'SELECT * FROM device_overview'\n", dbPath)
	} else {
		fmt.Fprintln(out, "\nThe state directory is removed now; run with --dir DIR to keep data.db and explore it (make run shows the status page).")
	}
	if failed {
		fmt.Fprintln(d.env.stderr, "tibbersync demo: some runs failed (see above)")
		return exitError
	}
	return exitOK
}

// serve runs the real daemon against the simulator until Ctrl-C, with the
// authorization done automatically once the web server listens.
func (d *demo) serve(ctx context.Context, cfg config.Config, log *slog.Logger) int {
	dm := &daemon{env: d.env, log: log}
	dm.ready = func(url string, a *app) {
		go func() {
			if err := autoAuthorize(ctx, url); err != nil {
				log.Error("demo authorization", "err", err)
				return
			}
			fmt.Fprintf(d.env.stdout, "authorized; status page: %s/  (Ctrl-C to stop)\n", url)
		}()
	}
	return dm.run(ctx, cfg, appOptions{clock: d.clk, withMetrics: true})
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

// reserveAddr resolves a :0 port to a concrete free one.
func reserveAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if port != "0" {
		return listen, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
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
