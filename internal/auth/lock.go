package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Lock waiting uses real time, not the injected clock: it bounds how long
// this process waits for another process's refresh (itself bounded by the
// HTTP timeout), which has nothing to do with token expiry.
const (
	lockPoll    = 20 * time.Millisecond
	lockTimeout = 2 * time.Minute
)

// lockFile takes an exclusive flock(2) on path (created 0600), waiting until
// ctx is done or lockTimeout passes. The returned func releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open refresh lock: %w", err)
	}
	fd := int(f.Fd())
	deadline := time.NewTimer(lockTimeout)
	defer deadline.Stop()
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(fd, syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		t := time.NewTimer(lockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = f.Close()
			return nil, fmt.Errorf("wait for refresh lock: %w", ctx.Err())
		case <-deadline.C:
			t.Stop()
			_ = f.Close()
			return nil, fmt.Errorf("wait for refresh lock %s: held by another process for more than %s", path, lockTimeout)
		case <-t.C:
		}
	}
}
