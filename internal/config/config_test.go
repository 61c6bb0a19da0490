package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/config"
)

// writeFile writes content to name in a fresh temp dir and returns its path.
func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
	return path
}

// mustLoad loads a TOML string with the given environment.
func mustLoad(t *testing.T, toml string, environ ...string) config.Config {
	t.Helper()
	path := writeFile(t, "config.toml", toml, 0o644)
	cfg, err := config.Load(path, environ)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg
}

// validationError asserts err is a *ValidationError wrapping ErrConfig.
func validationError(t *testing.T, err error) *config.ValidationError {
	t.Helper()
	if err == nil {
		t.Fatal("err = nil, want a validation error")
	}
	if !errors.Is(err, config.ErrConfig) {
		t.Fatalf("err %v does not wrap ErrConfig", err)
	}
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err %T %v is not a *ValidationError", err, err)
	}
	return ve
}

func fieldKeys(ve *config.ValidationError) []string {
	keys := make([]string, len(ve.Fields))
	for i, f := range ve.Fields {
		keys[i] = f.Key
	}
	return keys
}

func TestDefaults(t *testing.T) {
	d := config.Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	checks := map[string]struct{ got, want any }{
		"RedirectURL":       {d.Tibber.RedirectURL, "http://localhost:8765/callback"},
		"AuthURL":           {d.Tibber.AuthURL, "https://thewall.tibber.com/connect/authorize"},
		"TokenURL":          {d.Tibber.TokenURL, "https://thewall.tibber.com/connect/token"},
		"UserinfoURL":       {d.Tibber.UserinfoURL, "https://thewall.tibber.com/connect/userinfo"},
		"APIURL":            {d.Tibber.APIURL, "https://data-api.tibber.com"},
		"ScopeCount":        {len(d.Tibber.Scopes), 11},
		"RequestTimeout":    {d.Tibber.RequestTimeout, 30 * time.Second},
		"RequestsPerSecond": {d.Tibber.RequestsPerSecond, 2.0},
		"MaxResponseBytes":  {d.Tibber.MaxResponseBytes, int64(8388608)},
		"Dir":               {d.Storage.Dir, "/var/lib/tibbersync"},
		"Listen":            {d.Web.Listen, "127.0.0.1:8765"},
		"AllowRemote":       {d.Web.AllowRemote, false},
		"Devices":           {d.Schedule.Devices, "*/5 * * * *"},
		"Homes":             {d.Schedule.Homes, "0 * * * *"},
		"History":           {d.Schedule.History, "7 * * * *"},
		"Jitter":            {d.Schedule.Jitter, 30 * time.Second},
		"Resolutions":       {strings.Join(d.History.Resolutions, ","), "hour,day"},
		"BackfillDays":      {d.History.BackfillDays, 30},
		"Lookback":          {d.History.Lookback, 48 * time.Hour},
		"Concurrency":       {d.Sync.Concurrency, 4},
		"CycleTimeout":      {d.Sync.CycleTimeout, 5 * time.Minute},
		"WebhookURL":        {d.Notify.WebhookURL, ""},
		"Reminder":          {d.Notify.Reminder, 24 * time.Hour},
		"Level":             {d.Log.Level, "info"},
		"Format":            {d.Log.Format, "auto"},
	}
	for name, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", name, c.got, c.want)
		}
	}
	for _, s := range []string{"openid", "offline_access", "data-api-homes-read", "data-api-inverters-read"} {
		if !slices.Contains(d.Tibber.Scopes, s) {
			t.Errorf("default scopes lack %q", s)
		}
	}
	// Default returns fresh slices: changing one must not change the next.
	d.Tibber.Scopes[0] = "changed"
	if config.Default().Tibber.Scopes[0] != "openid" {
		t.Error("Default shares its scopes slice between calls")
	}
}

func TestLoadNoFileGivesDefaults(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.LoadSearch("", nil, []string{filepath.Join(dir, "missing.toml"), filepath.Join(dir, "also-missing.toml")})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Path != "" {
		t.Errorf("Path = %q, want empty", cfg.Path)
	}
	want := config.Default()
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load without file =\n%+v\nwant defaults\n%+v", cfg, want)
	}
}

func TestLoadDefaultSearchOrder(t *testing.T) {
	dir := t.TempDir()
	system := filepath.Join(dir, "etc.toml")
	local := writeFile(t, "config.toml", "[log]\nlevel = \"warn\"\n", 0o644)
	search := []string{system, local}

	cfg, err := config.LoadSearch("", nil, search)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != local || cfg.Log.Level != "warn" {
		t.Errorf("Path=%q level=%q, want the local file and warn", cfg.Path, cfg.Log.Level)
	}

	if err := os.WriteFile(system, []byte("[log]\nlevel = \"error\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err = config.LoadSearch("", nil, search)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != system || cfg.Log.Level != "error" {
		t.Errorf("Path=%q level=%q, want the system file first", cfg.Path, cfg.Log.Level)
	}
}

func TestLoadExplicitMissingFileIsError(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "nope.toml"), nil)
	if err == nil || !errors.Is(err, config.ErrConfig) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrConfig wrapping not-exist", err)
	}
	_, err = config.Load(t.TempDir(), nil)
	if err == nil || !errors.Is(err, config.ErrConfig) {
		t.Fatalf("directory as config: err = %v, want ErrConfig", err)
	}
}

func TestFileOverridesDefaults(t *testing.T) {
	cfg := mustLoad(t, `
[tibber]
client_id = "my-client"
scopes = ["openid", "offline_access", "data-api-homes-read"]
request_timeout = "10s"
requests_per_second = 0.5
max_response_bytes = 1048576

[storage]
dir = "/srv/tibber"

[web]
listen = "0.0.0.0:9000"
allow_remote = true

[schedule]
devices = "@every 2m"
homes = "@hourly"
jitter = "0"

[history]
resolutions = ["quarterHour"]
backfill_days = 365
lookback = "0s"

[sync]
concurrency = 8
cycle_timeout = "10m"

[notify]
webhook_url = "https://ntfy.sh/"
topic = "tibber"
command = ["/usr/bin/logger", "-t", "tibbersync"]
reminder = "12h"

[log]
level = "debug"
format = "json"
`)
	want := config.Default()
	want.Tibber.ClientID = "my-client"
	want.Tibber.Scopes = []string{"openid", "offline_access", "data-api-homes-read"}
	want.Tibber.RequestTimeout = 10 * time.Second
	want.Tibber.RequestsPerSecond = 0.5
	want.Tibber.MaxResponseBytes = 1 << 20
	want.Storage.Dir = "/srv/tibber"
	want.Web = config.Web{Listen: "0.0.0.0:9000", AllowRemote: true}
	want.Schedule.Devices = "@every 2m"
	want.Schedule.Homes = "@hourly"
	want.Schedule.Jitter = 0
	want.History = config.History{Resolutions: []string{"quarterHour"}, BackfillDays: 365, Lookback: 0}
	want.Sync = config.Sync{Concurrency: 8, CycleTimeout: 10 * time.Minute}
	want.Notify = config.Notify{WebhookURL: "https://ntfy.sh/", Topic: "tibber", Command: []string{"/usr/bin/logger", "-t", "tibbersync"}, Reminder: 12 * time.Hour}
	want.Log = config.Log{Level: "debug", Format: "json"}
	want.Path = cfg.Path
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestEnvOverridesFile(t *testing.T) {
	cfg := mustLoad(t, `
[tibber]
client_id = "from-file"
[log]
level = "debug"
[schedule]
devices = "*/10 * * * *"
`,
		"TIBBERSYNC_TIBBER_CLIENT_ID=from-env",
		"TIBBERSYNC_LOG_LEVEL=warn",
		"TIBBERSYNC_TIBBER_SCOPES=openid, offline_access data-api-homes-read",
		"TIBBERSYNC_HISTORY_RESOLUTIONS=hour,day,month",
		"TIBBERSYNC_NOTIFY_COMMAND=/usr/bin/notify-send tibbersync",
		"TIBBERSYNC_HISTORY_BACKFILL_DAYS=90",
		"TIBBERSYNC_TIBBER_REQUESTS_PER_SECOND=1.5",
		"TIBBERSYNC_WEB_ALLOW_REMOTE=true",
		"TIBBERSYNC_WEB_LISTEN=[::]:8765",
		"TIBBERSYNC_SYNC_CYCLE_TIMEOUT=90s",
		"TIBBERSYNC_NOTIFY_REMINDER=0",
		"TIBBERSYNC_EVENT=problem", // not a config variable: ignored
		"OTHER_VAR=1",
	)
	checks := map[string]struct{ got, want any }{
		"ClientID":          {cfg.Tibber.ClientID, "from-env"},
		"Level":             {cfg.Log.Level, "warn"},
		"Devices":           {cfg.Schedule.Devices, "*/10 * * * *"},
		"Scopes":            {strings.Join(cfg.Tibber.Scopes, "|"), "openid|offline_access|data-api-homes-read"},
		"Resolutions":       {strings.Join(cfg.History.Resolutions, "|"), "hour|day|month"},
		"Command":           {strings.Join(cfg.Notify.Command, "|"), "/usr/bin/notify-send|tibbersync"},
		"BackfillDays":      {cfg.History.BackfillDays, 90},
		"RequestsPerSecond": {cfg.Tibber.RequestsPerSecond, 1.5},
		"AllowRemote":       {cfg.Web.AllowRemote, true},
		"Listen":            {cfg.Web.Listen, "[::]:8765"},
		"CycleTimeout":      {cfg.Sync.CycleTimeout, 90 * time.Second},
		"Reminder":          {cfg.Notify.Reminder, time.Duration(0)},
	}
	for name, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", name, c.got, c.want)
		}
	}
}

func TestEnvWithoutFile(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.LoadSearch("", []string{"TIBBERSYNC_STORAGE_DIR=/data"}, []string{filepath.Join(dir, "none.toml")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Storage.Dir != "/data" {
		t.Errorf("Storage.Dir = %q, want /data", cfg.Storage.Dir)
	}
}

func TestUnknownKeys(t *testing.T) {
	path := writeFile(t, "config.toml", `
[schedule]
device = "*/5 * * * *"
[tibbr]
client_id = "x"
[log]
levle = "debug"
`, 0o644)
	_, err := config.Load(path, []string{"TIBBERSYNC_SCHEDULE_HOMESS=@hourly"})
	ve := validationError(t, err)
	if !errors.Is(err, config.ErrUnknownKey) {
		t.Errorf("err does not wrap ErrUnknownKey: %v", err)
	}
	got := fieldKeys(ve)
	want := []string{"TIBBERSYNC_SCHEDULE_HOMESS", "log.levle", "schedule.device", "tibbr"}
	if !slices.Equal(got, want) {
		t.Errorf("keys = %q, want %q", got, want)
	}
	msg := err.Error()
	for _, s := range []string{
		"config: schedule.device: unknown key: no such key (did you mean schedule.devices?)",
		"config: log.levle: unknown key: no such key (did you mean log.level?)",
		"config: tibbr: unknown key: no such section",
		"did you mean TIBBERSYNC_SCHEDULE_HOMES?",
	} {
		if !strings.Contains(msg, s) {
			t.Errorf("error lacks %q:\n%s", s, msg)
		}
	}
}

func TestWrongTypes(t *testing.T) {
	path := writeFile(t, "config.toml", `
[tibber]
client_id = 12345
scopes = "openid offline_access"
requests_per_second = "fast"
[history]
backfill_days = "thirty"
resolutions = ["hour", 5]
lookback = 48
[web]
allow_remote = "yes please"
[sync]
concurrency = 2.5
[log]
level = ["info"]
[notify]
reminder = "1 day"
`, 0o644)
	_, err := config.Load(path, []string{"TIBBERSYNC_SYNC_CYCLE_TIMEOUT=soon"})
	ve := validationError(t, err)
	if !errors.Is(err, config.ErrWrongType) {
		t.Errorf("err does not wrap ErrWrongType: %v", err)
	}
	want := []string{
		"tibber.client_id", "tibber.scopes", "tibber.requests_per_second",
		"web.allow_remote", "history.resolutions", "history.backfill_days",
		"history.lookback", "sync.concurrency", "sync.cycle_timeout",
		"notify.reminder", "log.level",
	}
	if got := fieldKeys(ve); !slices.Equal(got, want) {
		t.Errorf("keys = %q\nwant   %q", got, want)
	}
	for _, f := range ve.Fields {
		if !errors.Is(f, config.ErrWrongType) {
			t.Errorf("%s: %v does not wrap ErrWrongType", f.Key, f.Err)
		}
	}
	msg := err.Error()
	for _, s := range []string{
		`config: tibber.client_id = "12345": wrong type: expected a string, got an integer`,
		`config: history.backfill_days = "thirty": wrong type: expected an integer`,
		`config: sync.cycle_timeout = "soon": wrong type: expected a duration`,
		`config: tibber.scopes = "openid offline_access": wrong type: expected an array of strings, got a string`,
	} {
		if !strings.Contains(msg, s) {
			t.Errorf("error lacks %q:\n%s", s, msg)
		}
	}
}

func TestSectionNotATable(t *testing.T) {
	path := writeFile(t, "config.toml", "log = \"debug\"\n", 0o644)
	_, err := config.Load(path, nil)
	ve := validationError(t, err)
	if len(ve.Fields) != 1 || ve.Fields[0].Key != "log" || !errors.Is(err, config.ErrWrongType) {
		t.Fatalf("err = %v, want one wrong-type error on log", err)
	}
}

func TestSyntaxError(t *testing.T) {
	path := writeFile(t, "config.toml", "[tibber]\nclient_id = \"abc\nx = 1\n", 0o644)
	_, err := config.Load(path, nil)
	if err == nil || !errors.Is(err, config.ErrConfig) {
		t.Fatalf("err = %v, want ErrConfig", err)
	}
	if !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error %q does not give the line", err)
	}
}

// TestLoadAtMovesTheDefaultPlaces: LoadAt searches the given system and
// local paths in order and takes its default storage directory from the
// locations; an environment variable still wins over that default.
func TestLoadAtMovesTheDefaultPlaces(t *testing.T) {
	dir := t.TempDir()
	loc := config.Locations{
		System:   filepath.Join(dir, "etc.toml"),
		Local:    filepath.Join(dir, "local.toml"),
		StateDir: filepath.Join(dir, "state"),
	}
	cfg, err := config.LoadAt("", nil, loc)
	if err != nil || cfg.Path != "" || cfg.Storage.Dir != loc.StateDir {
		t.Fatalf("no files: path %q dir %q err %v; want no file and %s", cfg.Path, cfg.Storage.Dir, err, loc.StateDir)
	}
	if err := os.WriteFile(loc.Local, []byte("[log]\nlevel = \"debug\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = config.LoadAt("", nil, loc); err != nil || cfg.Path != loc.Local || cfg.Log.Level != "debug" {
		t.Fatalf("local file: path %q level %q err %v", cfg.Path, cfg.Log.Level, err)
	}
	if err := os.WriteFile(loc.System, []byte("[log]\nlevel = \"warn\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = config.LoadAt("", nil, loc); err != nil || cfg.Path != loc.System || cfg.Log.Level != "warn" {
		t.Fatalf("system file first: path %q level %q err %v", cfg.Path, cfg.Log.Level, err)
	}
	if cfg, err = config.LoadAt("", []string{"TIBBERSYNC_STORAGE_DIR=/data"}, loc); err != nil || cfg.Storage.Dir != "/data" {
		t.Fatalf("environment over the located default: dir %q err %v", cfg.Storage.Dir, err)
	}
	if d := config.DefaultLocations(); d.System != config.SystemPath || d.Local != config.LocalPath || d.StateDir != "/var/lib/tibbersync" {
		t.Fatalf("DefaultLocations = %+v", d)
	}
}
