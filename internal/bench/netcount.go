package bench

import (
	"context"
	"net"
	"sync/atomic"
)

// SocketCounter counts what a process writes to its network connections,
// so that file writes can be told apart from socket writes in the wchar
// and syscw counters of /proc/<pid>/io, which count both.
type SocketCounter struct {
	bytes atomic.Int64
	calls atomic.Int64
}

// Written returns the bytes written and the write calls made so far.
func (c *SocketCounter) Written() (bytes, calls int64) {
	return c.bytes.Load(), c.calls.Load()
}

// WrapDial returns a DialContext that dials with dial and counts every
// write on the connections it returns.
func (c *SocketCounter) WrapDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countedConn{Conn: conn, c: c}, nil
	}
}

type countedConn struct {
	net.Conn
	c *SocketCounter
}

// Write counts the bytes handed to the kernel. A net.Conn Write loops
// until everything is written, so one call here is at least one write(2).
func (cc *countedConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	cc.c.bytes.Add(int64(n))
	cc.c.calls.Add(1)
	return n, err
}
