package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Client talks to the daemon of one state directory.
type Client struct {
	Path string
	// DialTimeout bounds connecting (2s when zero).
	DialTimeout time.Duration
}

// NewClient is the client of the daemon running on state directory dir.
func NewClient(dir string) *Client { return &Client{Path: SocketPath(dir)} }

// Probe tells whether a daemon answers: nil when one does, ErrNoDaemon when
// none runs (no socket, or a stale one nobody listens on), ErrPermission
// (wrapped, with the fix) when this user may not connect.
func (c *Client) Probe(ctx context.Context) (Response, error) {
	return c.Do(ctx, Request{Op: OpStatus})
}

// Do sends one request and reads the answer. A response with OK false is
// returned as *Error.
func (c *Client) Do(ctx context.Context, req Request) (Response, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return Response{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	b, err := encode(req)
	if err != nil {
		return Response{}, err
	}
	// A refused peer is answered before the request is read, so a failed
	// send still leaves that answer to read.
	_, werr := conn.Write(b)
	line, err := bufio.NewReaderSize(io.LimitReader(conn, 1<<20), 16<<10).ReadBytes('\n')
	if werr != nil && len(line) == 0 {
		return Response{}, fmt.Errorf("control socket %s: send: %w", c.Path, werr)
	}
	if err != nil && (len(line) == 0 || !errors.Is(err, io.EOF)) {
		if ctx.Err() != nil {
			return Response{}, ctx.Err()
		}
		return Response{}, fmt.Errorf("control socket %s: read answer: %w", c.Path, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("control socket %s: bad answer: %w", c.Path, err)
	}
	if !resp.OK {
		return resp, &Error{Code: resp.Code, Msg: resp.Error}
	}
	return resp, nil
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	to := c.DialTimeout
	if to == 0 {
		to = 2 * time.Second
	}
	addr, done, err := sockAddr(c.Path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNoDaemon
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, c.permissionError()
		}
		return nil, fmt.Errorf("control socket %s: %w", c.Path, err)
	}
	d := net.Dialer{Timeout: to}
	conn, err := d.DialContext(ctx, "unix", addr)
	done()
	if err == nil {
		return conn, nil
	}
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return nil, ErrNoDaemon
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return nil, c.permissionError()
	}
	return nil, fmt.Errorf("control socket %s: %w", c.Path, err)
}

// permissionError is ErrPermission with the fix: sudo, or joining the
// group that owns the socket (the state directory's group, which Listen
// gives it), named as the system names it.
func (c *Client) permissionError() error {
	how := "join the daemon's group"
	if g := socketGroup(c.Path); g != "" {
		how += ": sudo usermod -aG " + g + " $USER, then log in again"
	} else {
		how += " (the group of " + filepath.Dir(c.Path) + ", see ls -ld), then log in again"
	}
	return fmt.Errorf("%w %s (uid %d): run the command as root (sudo), or %s", ErrPermission, c.Path, os.Geteuid(), how)
}

// socketGroup is the name of the socket file's group (its number when the
// group has no name), or the state directory's when the socket cannot be
// stat'ed; "" when neither can.
func socketGroup(path string) string {
	for _, p := range []string{path, filepath.Dir(path)} {
		if fi, err := os.Stat(p); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				return groupName(int(st.Gid))
			}
		}
	}
	return ""
}
