package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// stateOwner is the owner of the state directory when the command runs as
// root and the directory belongs to someone else (the service user): the
// files a root command creates there must belong to that user, or the
// daemon can no longer write its own databases (SQLite -wal and -shm
// included).
type stateOwner struct {
	dir      string
	uid, gid int
	name     string
}

// stateOwnerOf returns the owner of dir when this process is root and dir
// exists and belongs to another user; nil otherwise (nothing to do).
func stateOwnerOf(dir string) *stateOwner {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	o := &stateOwner{dir: dir, uid: int(st.Uid), gid: int(st.Gid), name: strconv.Itoa(int(st.Uid))}
	if u, err := user.LookupId(o.name); err == nil {
		o.name = u.Username
	}
	return o
}

// become switches the effective uid and gid (and the supplementary groups)
// to the owner for the rest of the command, so that every file the command
// creates in the state directory is the owner's. The real and saved uid
// stay 0; restore switches back. Call it after the configuration (and the
// client secret it names) was read as root.
func (o *stateOwner) become() (restore func(), err error) {
	if o == nil {
		return func() {}, nil
	}
	groups, err := syscall.Getgroups()
	if err != nil {
		return nil, fmt.Errorf("act as %s: %w", o.name, err)
	}
	if err := syscall.Setgroups([]int{o.gid}); err != nil {
		return nil, fmt.Errorf("act as %s: setgroups: %w", o.name, err)
	}
	if err := syscall.Setegid(o.gid); err != nil {
		_ = syscall.Setgroups(groups)
		return nil, fmt.Errorf("act as %s: setegid: %w", o.name, err)
	}
	if err := syscall.Seteuid(o.uid); err != nil {
		_ = syscall.Setegid(0)
		_ = syscall.Setgroups(groups)
		return nil, fmt.Errorf("act as %s: seteuid: %w", o.name, err)
	}
	return func() {
		_ = syscall.Seteuid(0)
		_ = syscall.Setegid(0)
		_ = syscall.Setgroups(groups)
	}, nil
}

// chownLeftovers gives every root-owned file in the state directory and its
// secrets/ to the owner: for commands that must stay root for a file outside
// the state directory (backup's destination).
func (o *stateOwner) chownLeftovers() error {
	if o == nil {
		return nil
	}
	var first error
	for _, d := range []string{o.dir, filepath.Join(o.dir, "secrets")} {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			fi, err := os.Lstat(p)
			if err != nil {
				continue
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 {
				if err := os.Lchown(p, o.uid, o.gid); err != nil && first == nil {
					first = err
				}
			}
		}
	}
	return first
}

// actAsStateOwner is become() for a command: when root runs it on a state
// directory owned by the service user, the command continues as that user
// (see stateOwner). Call the returned restore when done.
func actAsStateOwner(dir, cmd string) (restore func(), err error) {
	restore, err = stateOwnerOf(dir).become()
	if err != nil {
		return nil, fmt.Errorf("tibbersync %s: %w", cmd, err)
	}
	return restore, nil
}
