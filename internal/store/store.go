// Package store owns data.db, the analysts' SQLite file: homes, devices,
// their state changes, history, job runs and the auth state (never a
// secret). It opens the file with the connection settings of reliability.md
// R13 and checks them on every pooled connection, applies the embedded
// numbered migrations, and writes each batch in one BEGIN IMMEDIATE
// transaction (R14). *DB implements jobs.Store and auth's status recorder.
//
// Only SQLite touches the database files (R18): this package calls os.Stat
// on them and creates data.db itself (empty, mode 0640) before SQLite first
// opens it. Backup's copy is written by SQLite (VACUUM INTO) under a
// temporary name and only renamed into place.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"

	"github.com/tibbersync/tibbersync/internal/clock"
)

// FileMode is the mode data.db is created with, whatever the umask: the
// owner writes, the group (analysts, R22) reads.
const FileMode fs.FileMode = 0o640

// ErrReadOnly is returned by write methods of a DB opened with OpenReadOnly.
var ErrReadOnly = errors.New("database opened read-only")

// ErrNewerSchema is wrapped by Open's error when data.db was written by a
// newer release than this binary: only an upgrade helps, not a restart.
var ErrNewerSchema = errors.New("data.db schema is newer than this binary")

// Options configures Open.
type Options struct {
	// Clock stamps rows that carry no time of their own. Default clock.Real.
	Clock clock.Clock
	// Logger receives the few warnings the store logs itself (a WAL that
	// stays large). Default: discard.
	Logger *slog.Logger
	// Synchronous is "FULL" (default) or "NORMAL" (R13, R19).
	Synchronous string
	// WALWarnBytes is the -wal size above which Checkpoint warns (once per
	// episode). Default DefaultWALWarnBytes.
	WALWarnBytes int64
	// ConvertProgress, when set, receives the progress of the one-off
	// conversion of history to the compact layout that Open runs on a
	// data.db written by an older release (LogProgress logs it).
	ConvertProgress func(ConvertProgress)
	// ConvertBatch is how many history rows one conversion transaction
	// moves. Default DefaultConvertBatch.
	ConvertBatch int
}

// DefaultWALWarnBytes is the -wal size that means a reader is holding a
// transaction open for long (R17).
const DefaultWALWarnBytes = 64 << 20

// DB is an open data.db: either the daemon's single writer (Open) or a
// read-only pool (OpenReadOnly). It is safe for concurrent use.
type DB struct {
	sql      *sql.DB
	path     string
	readOnly bool
	clock    clock.Clock
	log      *slog.Logger

	walWarnBytes int64
	// walMu guards walWarned, which makes Checkpoint warn once per episode
	// of a large WAL instead of on every call.
	walMu     sync.Mutex
	walWarned bool

	// fault: storage faults that refuse writes, and the last failed write.
	fault fault
}

// Open opens (creating it when missing, mode 0640) the data.db at path as
// the daemon's writer: one connection for the life of the DB, settings
// checked on connect, migrations applied. Like OpenReadOnly, it switches on
// modernc's process-wide sqlite.StrictPragmas, which only narrows what any
// DSN in the process can do.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	dsn, err := BuildDSN(path, false, opts.Synchronous)
	if err != nil {
		return nil, fmt.Errorf("open data db: %w", err)
	}
	if err := createFile(path); err != nil {
		return nil, fmt.Errorf("open data db %q: %w", path, err)
	}
	want := wantPragmas(false, opts.Synchronous)
	db, err := openPool(ctx, dsn, path, false, want, opts)
	if err != nil {
		return nil, fmt.Errorf("open data db %q: %w", path, err)
	}
	if err := db.migrate(ctx); err != nil {
		_ = db.sql.Close()
		return nil, fmt.Errorf("open data db %q: %w", path, err)
	}
	// The counters only spare the status surfaces a count(*): a table they
	// cannot be set up for (a damaged page, found by the health checks) is
	// counted on each read instead, and the file still opens.
	if err := db.ensureCounters(ctx); err != nil {
		db.log.Warn("row counters not set up; status pages count those tables", "err", err)
	}
	if err := db.convertLegacyHistory(ctx, opts.ConvertBatch, opts.ConvertProgress); err != nil {
		_ = db.sql.Close()
		return nil, fmt.Errorf("open data db %q: %w", path, err)
	}
	db.recordFiles()
	return db, nil
}

// OpenReadOnly opens an existing data.db (or a backup of it) with
// mode=ro, for `tibbersync status`, the status page and the like. It never
// creates the file and never applies migrations.
func OpenReadOnly(ctx context.Context, path string) (*DB, error) {
	dsn, err := BuildDSN(path, true, "")
	if err != nil {
		return nil, fmt.Errorf("open data db read-only: %w", err)
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open data db read-only %q: %w (has the daemon run yet?)", path, err)
		}
		return nil, fmt.Errorf("open data db read-only %q: %w", path, err)
	}
	db, err := openPool(ctx, dsn, path, true, wantPragmas(true, ""), Options{})
	if err != nil {
		return nil, fmt.Errorf("open data db read-only %q: %w", path, err)
	}
	return db, nil
}

// Close closes the database. A writer's close lets SQLite checkpoint and
// remove the -wal file when no reader is left.
func (db *DB) Close() error {
	if err := db.sql.Close(); err != nil {
		return fmt.Errorf("close data db: %w", err)
	}
	return nil
}

// Path is the database file path the DB was opened with.
func (db *DB) Path() string { return db.path }

// createFile creates an empty data.db with FileMode when none exists, so
// that SQLite (which would use 0644 minus umask) opens a file whose mode we
// chose. SQLite gives -wal and -shm the mode of the main file.
func createFile(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// O_EXCL: if it appeared meanwhile, it is someone else's file and we
	// must not hold (and then close) a descriptor on it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	// Chmod on the descriptor: the create mode was filtered by the umask.
	if err := f.Chmod(FileMode); err != nil {
		_ = f.Close()
		return fmt.Errorf("chmod: %w", err)
	}
	return f.Close()
}

func openPool(ctx context.Context, dsn, path string, readOnly bool, want []pragmaWant, opts Options) (*DB, error) {
	// The DSN is built from configuration, so refuse multi-statement
	// _pragma values process-wide (R13). It only narrows what a DSN can do.
	sqlite.StrictPragmas(true)
	base, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("connector: %w", err)
	}
	pool := sql.OpenDB(checkedConnector{Connector: base, want: want})
	if readOnly {
		pool.SetMaxOpenConns(4)
		pool.SetMaxIdleConns(2)
		// Readers that sit idle are closed, so an idle status process does
		// not keep -shm mapped forever.
		pool.SetConnMaxIdleTime(5 * time.Minute)
	} else {
		// One writer connection, kept for life (R14, R17).
		pool.SetMaxOpenConns(1)
		pool.SetMaxIdleConns(1)
		pool.SetConnMaxLifetime(0)
		pool.SetConnMaxIdleTime(0)
	}
	if err := pool.PingContext(ctx); err != nil {
		_ = pool.Close()
		return nil, err
	}
	c := opts.Clock
	if c == nil {
		c = clock.Real{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	warn := opts.WALWarnBytes
	if warn <= 0 {
		warn = DefaultWALWarnBytes
	}
	return &DB{sql: pool, path: path, readOnly: readOnly, clock: c, log: log, walWarnBytes: warn}, nil
}

// pragmaWant is one setting a fresh connection must report.
type pragmaWant struct {
	name string
	want string
}

func wantPragmas(readOnly bool, synchronous string) []pragmaWant {
	sync := "2"
	if strings.EqualFold(strings.TrimSpace(synchronous), SynchronousNormal) {
		sync = "1"
	}
	w := []pragmaWant{
		{"busy_timeout", strconv.Itoa(BusyTimeout)},
		{"synchronous", sync},
		{"foreign_keys", "1"},
		{"temp_store", "2"},
		{"cache_size", strconv.Itoa(CachePages)},
	}
	if !readOnly {
		// A reader reports whatever mode the file is in (a backup copy is
		// in rollback mode); only the writer sets and needs WAL.
		w = append(w,
			pragmaWant{"journal_mode", "wal"},
			pragmaWant{"journal_size_limit", strconv.Itoa(JournalSizeLimit)},
		)
	}
	return w
}

// checkedConnector opens connections through modernc and reads every
// setting back before database/sql may use the connection (R13: checked on
// every pooled connection, not just the first). It returns the driver's own
// connection, so no optional interface is hidden.
type checkedConnector struct {
	driver.Connector
	want []pragmaWant
}

// Connect implements driver.Connector.
func (c checkedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkConn(ctx, conn, c.want); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("check connection settings: %w", err)
	}
	return conn, nil
}

func checkConn(ctx context.Context, conn driver.Conn, want []pragmaWant) error {
	q, ok := conn.(driver.QueryerContext)
	if !ok {
		return errors.New("driver connection cannot query")
	}
	for _, w := range want {
		got, err := queryOne(ctx, q, "PRAGMA "+w.name)
		if err != nil {
			return fmt.Errorf("read %s: %w", w.name, err)
		}
		if !strings.EqualFold(got, w.want) {
			return fmt.Errorf("%s is %q, want %q", w.name, got, w.want)
		}
	}
	return nil
}

func queryOne(ctx context.Context, q driver.QueryerContext, query string) (string, error) {
	rows, err := q.QueryContext(ctx, query, nil)
	if err != nil {
		return "", err
	}
	defer func() { _ = rows.Close() }()
	dest := make([]driver.Value, len(rows.Columns()))
	if len(dest) == 0 {
		return "", errors.New("no columns")
	}
	if err := rows.Next(dest); err != nil {
		return "", fmt.Errorf("no row: %w", err)
	}
	switch v := dest[0].(type) {
	case int64:
		return strconv.FormatInt(v, 10), nil
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	case nil:
		return "", nil
	default:
		return fmt.Sprint(v), nil
	}
}

// tx is a write transaction with the time it started, which stamps the
// rows it writes (style.md habit 5).
type tx struct {
	*sql.Tx
	now time.Time
	db  *DB
	// uncounted are changes that are not data rows of the batch (metadata
	// kept beside them), left out of a run's rows_written.
	uncounted int64
}

// Commit commits and records the outcome for the storage health.
func (t *tx) Commit() error {
	err := t.Tx.Commit()
	t.db.noteWrite(err)
	return err
}

// begin starts a BEGIN IMMEDIATE transaction (the DSN's _txlock) on the
// writer.
func (db *DB) begin(ctx context.Context) (*tx, error) {
	if db.readOnly {
		return nil, ErrReadOnly
	}
	if err := db.refuse(); err != nil {
		return nil, err
	}
	t, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		db.noteWrite(err)
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &tx{Tx: t, now: db.clock.Now().UTC(), db: db}, nil
}

// beginRead starts a deferred read transaction, so that a multi-query read
// sees one snapshot. It works on the writer and on readers.
func (db *DB) beginRead(ctx context.Context) (*sql.Tx, error) {
	t, err := db.sql.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("begin read: %w", err)
	}
	return t, nil
}

// ms converts t to Unix milliseconds for storage; the zero time is NULL.
func ms(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// fromMS converts a stored millisecond value back to a UTC time; NULL is
// the zero time.
func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

// nullText stores "" as NULL.
func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}
