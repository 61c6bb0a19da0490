// Package tokenstore keeps tibbersync's secrets in their own SQLite file,
// [storage].dir/secrets/tokens.db: the OAuth2 tokens, the pending
// authorization attempt with its PKCE verifier, the refresh-in-flight marker,
// the token-endpoint backoff and, optionally, a client secret typed on the
// setup page (reliability.md R5, R7, R10, R25).
//
// The secrets directory is created 0700 and tokens.db 0600 with explicit
// modes before SQLite opens the file, so -wal and -shm inherit 0600 whatever
// the umask. Open refuses a directory or file that group or others can reach
// or that another user owns. Every write is one synchronous=FULL transaction
// with secure_delete on, so a committed token survives a crash and a replaced
// one is overwritten on disk.
package tokenstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/dbfile"
	"github.com/tibbersync/tibbersync/internal/model"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// File and directory names under [storage].dir.
const (
	// SecretsDirName is the directory under [storage].dir that holds tokens.db.
	SecretsDirName = "secrets"
	// DBName is the token database's file name inside the secrets directory.
	DBName = "tokens.db"
)

// Modes the secrets directory and files must have.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// busyTimeoutMS is how long a connection waits for another process's write
// lock (refreshes in `run`, `setup`, `sync` and `status` share tokens.db).
const busyTimeoutMS = 10000

//go:embed migrations/*.sql
var migrationFS embed.FS

// ErrInsecure is wrapped by Open's error when the secrets directory or a
// database file is accessible to group or others, or owned by another user.
var ErrInsecure = errors.New("insecure secrets permissions")

// Store is the token database. It is safe for concurrent use; all writes go
// through one connection.
type Store struct {
	db         *sql.DB
	clk        clock.Clock
	secretsDir string
	path       string
	// damage says why a damaged tokens.db was replaced at Open ("" if not).
	damage string
	// files are the identities of tokens.db, -wal and -shm at Open.
	files dbfile.Files
}

// Open opens (creating if needed) dir/secrets/tokens.db. It creates dir/secrets
// with mode 0700 and tokens.db with mode 0600 before SQLite touches them, and
// refuses, naming the path and its mode, a secrets directory or database file
// that group or others can access or that is not owned by the current user.
func Open(ctx context.Context, dir string, clk clock.Clock) (*Store, error) {
	if dir == "" {
		return nil, errors.New("open token store: storage dir is empty")
	}
	if clk == nil {
		clk = clock.Real{}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open token store: %w", err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("open token store: create storage dir: %w", err)
	}
	secrets := filepath.Join(abs, SecretsDirName)
	if err := ensureDir(secrets); err != nil {
		return nil, err
	}
	path := filepath.Join(secrets, DBName)
	if err := ensureFile(path); err != nil {
		return nil, err
	}
	for _, p := range []string{path + "-wal", path + "-shm"} {
		if err := checkFile(p, true); err != nil {
			return nil, err
		}
	}

	s, err := openDB(ctx, path, secrets, clk)
	if err != nil && !damaged(err) {
		return nil, err
	}
	if err == nil {
		err = s.checkIntegrity(ctx)
		if err == nil {
			s.recordFiles()
			return s, nil
		}
		_ = s.db.Close()
		if !damaged(err) {
			return nil, err
		}
	}
	// tokens.db is damaged: keep it aside for inspection and start afresh
	// in setup_required with a reason that says what happened.
	aside, merr := moveAside(path, clk.Now())
	if merr != nil {
		return nil, fmt.Errorf("open token store: %s is damaged (%v) and could not be moved aside: %w", path, err, merr)
	}
	if err := ensureFile(path); err != nil {
		return nil, err
	}
	s, oerr := openDB(ctx, path, secrets, clk)
	if oerr != nil {
		return nil, oerr
	}
	s.damage = fmt.Sprintf("tokens.db was damaged (%v) and was kept as %s; authorize again with tibbersync setup or the setup page",
		err, filepath.Base(aside))
	g, gerr := s.Grant(ctx)
	if gerr == nil {
		_, gerr = s.SetState(ctx, g.Generation, model.AuthSetupRequired, s.damage, clk.Now())
	}
	if gerr != nil {
		_ = s.db.Close()
		return nil, fmt.Errorf("open token store: record the damage: %w", gerr)
	}
	s.recordFiles()
	return s, nil
}

// openDB opens the SQLite file at path, checks its pragmas and migrates it.
func openDB(ctx context.Context, path, secrets string, clk clock.Clock) (*Store, error) {
	db, err := sql.Open("sqlite", DSN(path))
	if err != nil {
		return nil, fmt.Errorf("open token store %q: %w", path, err)
	}
	// One connection: every statement and transaction is serialised in the
	// process, and the connection (with its locks and -wal/-shm) lives as
	// long as the Store.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s := &Store{db: db, clk: clk, secretsDir: secrets, path: path}
	if err := s.checkPragmas(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	// SQLite gives -wal and -shm the database file's mode; check that it did.
	for _, p := range []string{path + "-wal", path + "-shm"} {
		if err := checkFile(p, true); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	return s, nil
}

// DSN returns the modernc.org/sqlite data source name for the token database
// at path: a file: URI (so SQLite honours its parameters) with WAL,
// synchronous=FULL, secure_delete and BEGIN IMMEDIATE transactions.
func DSN(path string) string {
	u := url.URL{Path: path}
	q := []string{
		fmt.Sprintf("_busy_timeout=%d", busyTimeoutMS),
		"_pragma=" + url.QueryEscape("journal_mode(WAL)"),
		"_pragma=" + url.QueryEscape("synchronous(FULL)"),
		"_pragma=" + url.QueryEscape("secure_delete(ON)"),
		"_pragma=" + url.QueryEscape("foreign_keys(1)"),
		"_pragma=" + url.QueryEscape("temp_store(MEMORY)"),
		"_txlock=immediate",
	}
	return "file:" + u.EscapedPath() + "?" + strings.Join(q, "&")
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close token store: %w", err)
	}
	return nil
}

// SecretsDir returns the absolute path of the secrets directory (0700), where
// the refresh lock file also lives.
func (s *Store) SecretsDir() string { return s.secretsDir }

// Path returns the absolute path of tokens.db.
func (s *Store) Path() string { return s.path }

// ensureDir creates the secrets directory with mode 0700, or checks an
// existing one.
func ensureDir(path string) error {
	err := os.Mkdir(path, DirMode)
	switch {
	case err == nil:
		// Mkdir's mode is filtered by the umask; set it explicitly.
		if err := os.Chmod(path, DirMode); err != nil {
			return fmt.Errorf("open token store: chmod %q: %w", path, err)
		}
	case errors.Is(err, fs.ErrExist):
	default:
		return fmt.Errorf("open token store: create secrets dir: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("open token store: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("open token store: %q is not a directory (%s)", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: secrets directory %q has mode %#o, so group or others can access it; run: chmod 700 %q",
			ErrInsecure, path, perm, path)
	}
	return checkOwner(path, fi)
}

// ensureFile creates the database file with mode 0600 if it does not exist
// yet, then checks it. The file is created here, not by SQLite, so that its
// mode (which -wal and -shm inherit) never depends on the umask.
func ensureFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode)
	switch {
	case err == nil:
		// No SQLite connection to this file exists yet in this process, so
		// closing this descriptor cannot drop any SQLite lock (R18).
		cerr := f.Close()
		if err := os.Chmod(path, FileMode); err != nil {
			return fmt.Errorf("open token store: chmod %q: %w", path, err)
		}
		if cerr != nil {
			return fmt.Errorf("open token store: create %q: %w", path, cerr)
		}
	case errors.Is(err, fs.ErrExist):
	default:
		return fmt.Errorf("open token store: create %q: %w", path, err)
	}
	return checkFile(path, false)
}

// checkFile refuses a file that group or others can access or that another
// user owns. A missing file is accepted when mayBeMissing is set.
func checkFile(path string, mayBeMissing bool) error {
	fi, err := os.Lstat(path)
	if err != nil {
		if mayBeMissing && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("open token store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("open token store: %q is not a regular file (%s)", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %q has mode %#o, so group or others can read it; run: chmod 600 %q",
			ErrInsecure, path, perm, path)
	}
	return checkOwner(path, fi)
}

func checkOwner(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("%w: %q is owned by uid %d, not by the current user (uid %d)", ErrInsecure, path, st.Uid, uid)
	}
	return nil
}

// checkPragmas reads back the settings the DSN asked for.
func (s *Store) checkPragmas(ctx context.Context) error {
	checks := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"},
		{"secure_delete", "1"},
		{"busy_timeout", fmt.Sprint(busyTimeoutMS)},
	}
	for _, c := range checks {
		var got string
		if err := s.db.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
			return fmt.Errorf("open token store: read pragma %s: %w", c.pragma, err)
		}
		if !strings.EqualFold(got, c.want) {
			return fmt.Errorf("open token store: pragma %s is %q, want %q", c.pragma, got, c.want)
		}
	}
	return nil
}

// migrate applies the embedded migrations in name order, each in its own
// transaction, recording each by name. Concurrent processes are serialised
// by BEGIN IMMEDIATE.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
    name       TEXT PRIMARY KEY,
    applied_ms INTEGER NOT NULL
)`); err != nil {
		return fmt.Errorf("migrate token store: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("migrate token store: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := s.applyMigration(ctx, name); err != nil {
			return fmt.Errorf("migrate token store: %s: %w", name, err)
		}
	}
	return nil
}

func (s *Store) applyMigration(ctx context.Context, name string) error {
	body, err := migrationFS.ReadFile(name)
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE name = ?`, name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name, applied_ms) VALUES (?, ?)`,
		name, s.clk.Now().UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}

// ms converts t to Unix milliseconds, with the zero time as NULL.
func ms(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

// fromMS converts a nullable Unix-milliseconds column to a time (zero for NULL).
func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}
