package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// backupWritten, when set (tests), is called with the copy's path right
// after SQLite wrote it.
var backupWritten func(tmp string)

// ErrBackupExists is returned by Backup when dest exists and force is off.
var ErrBackupExists = errors.New("backup destination exists")

// Backup writes a consistent copy of the database to dest (R17): VACUUM
// INTO a temporary file in dest's directory, PRAGMA integrity_check on the
// copy opened read-only, then an atomic rename into place. An existing dest
// is replaced only when force is set. It works on the writer and on a
// read-only DB; on the writer it occupies the single connection while it
// copies.
func (db *DB) Backup(ctx context.Context, dest string, force bool) error {
	abs, err := filepath.Abs(dest)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := checkPath(abs); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if abs == db.path {
		return fmt.Errorf("backup: destination %q is the database itself", abs)
	}
	switch fi, err := os.Stat(abs); {
	case err == nil && fi.IsDir():
		return fmt.Errorf("backup: destination %q is a directory", abs)
	case err == nil && !force:
		return fmt.Errorf("backup to %q: %w (use --force to replace it)", abs, ErrBackupExists)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("backup: %w", err)
	}

	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	dir := filepath.Dir(abs)
	tmp := filepath.Join(dir, "."+filepath.Base(abs)+".tmp-"+hex.EncodeToString(rnd[:]))
	ok := false
	defer func() {
		if !ok {
			// Our own unfinished copy, which no SQLite connection holds any
			// more; never the database or a finished backup.
			_ = os.Remove(tmp)
		}
	}()

	// Create the copy empty with its final mode before SQLite writes into
	// it (VACUUM INTO accepts an empty file): SQLite would create it 0644,
	// readable by everyone while the data is written.
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := f.Chmod(FileMode); err != nil { // whatever the umask
		f.Close()
		return fmt.Errorf("backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := db.sql.ExecContext(ctx, `VACUUM INTO ?1`, tmp); err != nil {
		return fmt.Errorf("backup: vacuum into %q: %w", tmp, err)
	}
	if backupWritten != nil {
		backupWritten(tmp)
	}
	if err := verifyCopy(ctx, tmp); err != nil {
		return fmt.Errorf("backup: check copy: %w", err)
	}
	if err := os.Chmod(tmp, FileMode); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, abs); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	ok = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// verifyCopy opens path read-only and runs PRAGMA integrity_check.
func verifyCopy(ctx context.Context, path string) error {
	dsn, err := BuildDSN(path, true, "")
	if err != nil {
		return err
	}
	c, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	rows, err := c.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("integrity check: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("integrity check: %d problem(s), first: %s", len(problems), problems[0])
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %q: %w", dir, err)
	}
	return nil
}

// Checkpoint runs PRAGMA wal_checkpoint(TRUNCATE), meant for idle moments
// between jobs (R17), and returns the -wal size afterwards. It does not
// wait for readers: when one holds an old snapshot, the checkpoint copies
// what it can and the WAL stays. The first time the WAL is found above the
// warning size it logs a warning; it warns again only after the WAL went
// back below it.
func (db *DB) Checkpoint(ctx context.Context) (walBytes int64, err error) {
	if db.readOnly {
		return 0, fmt.Errorf("checkpoint: %w", ErrReadOnly)
	}
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	defer func() { _ = conn.Close() }()

	// A TRUNCATE checkpoint waits, under busy_timeout, for readers to move
	// off the WAL: an analyst's long transaction would stall the daemon for
	// 10 s on every call. Switch the wait off for this statement only.
	if _, err := conn.ExecContext(ctx, `PRAGMA busy_timeout = 0`); err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	defer func() {
		if _, rerr := conn.ExecContext(context.Background(), `PRAGMA busy_timeout = `+strconv.Itoa(BusyTimeout)); rerr != nil {
			// Never hand a connection with the wrong setting back to the
			// pool: make database/sql discard it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			if err == nil {
				err = fmt.Errorf("checkpoint: restore busy_timeout: %w", rerr)
			}
		}
	}()

	var busy, logFrames, done int64
	if err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done); err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	size, err := fileSize(db.path + "-wal")
	if err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	db.noteWALSize(size, busy != 0)
	return size, nil
}

func (db *DB) noteWALSize(size int64, busy bool) {
	db.walMu.Lock()
	defer db.walMu.Unlock()
	switch {
	case size > db.walWarnBytes && !db.walWarned:
		db.walWarned = true
		db.log.Warn("data.db WAL file is large: a reader is probably holding a long transaction",
			"wal_bytes", size, "warn_bytes", db.walWarnBytes, "checkpoint_busy", busy)
	case size <= db.walWarnBytes && db.walWarned:
		db.walWarned = false
		db.log.Info("data.db WAL file is back below the warning size", "wal_bytes", size)
	}
}
