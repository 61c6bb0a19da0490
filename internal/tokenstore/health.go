package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/dbfile"
)

// integrityTimeout bounds the quick_check of tokens.db at Open. The file
// holds one row and a few attempts, so the check takes milliseconds; the
// bound only keeps a pathological file from delaying start-up.
const integrityTimeout = 10 * time.Second

// ErrDamaged is wrapped by errors that say tokens.db failed its integrity
// check or lost its grant row.
var ErrDamaged = errors.New("token database damaged")

// ErrFileReplaced is wrapped by CheckFiles' error when tokens.db, its -wal or
// its -shm file was deleted or replaced under the running process. Writes
// then go to a file nobody will read again.
var ErrFileReplaced = errors.New("token database file deleted or replaced under the running process")

// Damage returns, when Open found tokens.db damaged and replaced it, what
// happened and where the damaged file was kept; "" otherwise.
func (s *Store) Damage() string { return s.damage }

// checkIntegrity runs a bounded PRAGMA quick_check and checks that the one
// grant row exists.
func (s *Store) checkIntegrity(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, integrityTimeout)
	defer cancel()
	rows, err := s.db.QueryContext(cctx, `PRAGMA quick_check(5)`)
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			return nil // too slow to check now; not evidence of damage
		}
		return err
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			_ = rows.Close()
			return err
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		_ = rows.Close()
		if cctx.Err() != nil && ctx.Err() == nil {
			return nil
		}
		return err
	}
	_ = rows.Close()
	if len(problems) > 0 {
		return fmt.Errorf("%w: quick_check: %s", ErrDamaged, strings.Join(problems, "; "))
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM grant_state WHERE id = 1`).Scan(&n); err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("%w: the grant row is missing", ErrDamaged)
	}
	return nil
}

// damaged reports whether err says the database file is damaged (or is not
// a database at all) rather than unreachable or insecure.
func damaged(err error) bool {
	return errors.Is(err, ErrDamaged) || dbfile.Corrupt(err)
}

// moveAside renames path and its -wal and -shm files to
// path.damaged-<time>[-wal|-shm] and returns the new name of path.
func moveAside(path string, now time.Time) (string, error) {
	aside := path + ".damaged-" + now.UTC().Format("20060102T150405Z")
	if err := os.Rename(path, aside); err != nil {
		return "", err
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Rename(path+suffix, aside+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return aside, err
		}
	}
	return aside, nil
}

// recordFiles remembers the identities of tokens.db, -wal and -shm as open.
func (s *Store) recordFiles() {
	s.files = dbfile.Record(s.path)
}

// CheckFiles reports an error wrapping ErrFileReplaced when tokens.db, its
// -wal or its -shm file is no longer the file this Store opened (deleted,
// or replaced by another file such as a restored backup). The token source
// calls it before each refresh: a refresh whose result would be written
// into a deleted file is not sent.
func (s *Store) CheckFiles() error {
	if err := s.files.Check(); err != nil {
		return fmt.Errorf("%w: %w; restart tibbersync to reopen it", ErrFileReplaced, err)
	}
	return nil
}
