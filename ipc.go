package ipc

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport"
)

// Conn is a message connection: every Send arrives as exactly one Recv, in
// order, whatever the transport.
//
// Send and Recv honour the context and the deadline set with SetDeadline
// (the earlier wins); a passed deadline gives ErrTimeout. Concurrency: one
// Send and one Recv may run at the same time; concurrent Sends (or Recvs)
// are serialised, never interleaved. After Close every call returns
// net.ErrClosed; when the peer is gone, Recv returns io.EOF (Send returns
// io.EOF or succeeds into a buffer no one will read).
type Conn interface {
	// Send sends msg as one message. A message larger than
	// Config.MaxMessageSize fails with ErrMessageTooLarge and sends nothing.
	Send(ctx context.Context, msg []byte) error
	// Recv receives the next message into buf[:0], growing it if needed,
	// and returns it.
	Recv(ctx context.Context, buf []byte) ([]byte, error)
	// SetDeadline sets the deadline of later and pending Send and Recv
	// calls; the zero time means none.
	SetDeadline(t time.Time) error
	// Close closes the connection.
	Close() error
}

// Dial connects to addr, e.g. "unix:///run/app.sock".
func Dial(ctx context.Context, addr string, cfg *Config) (Conn, error) {
	a, d, o, err := resolve(addr, cfg)
	if err != nil {
		return nil, ipcerr.Wrap("dial", addr, err)
	}
	if d.Dial == nil {
		return nil, ipcerr.Wrap("dial", addr, fmt.Errorf("%w: %s has no Dial", ErrUnsupported, a.Transport))
	}
	c, err := d.Dial(ctx, target(a), o)
	if err != nil {
		return nil, ipcerr.Wrap("dial", addr, err)
	}
	return &conn{c: c, addr: addr}, nil
}

// Listener accepts connections at an address. Accept makes it a
// net.Listener that hands out byte-stream views (for net/http, gRPC, ...);
// AcceptConn hands out message connections.
type Listener struct {
	l      transport.Listener
	addr   Addr
	raw    string
	closed atomic.Bool
}

// Listen listens at addr.
func Listen(addr string, cfg *Config) (*Listener, error) {
	a, d, o, err := resolve(addr, cfg)
	if err != nil {
		return nil, ipcerr.Wrap("listen", addr, err)
	}
	if d.Listen == nil {
		return nil, ipcerr.Wrap("listen", addr, fmt.Errorf("%w: %s has no Listen", ErrUnsupported, a.Transport))
	}
	l, err := d.Listen(target(a), o)
	if err != nil {
		return nil, ipcerr.Wrap("listen", addr, err)
	}
	if na, ok := l.(interface{ Addr() net.Addr }); ok && a.Transport == TCP {
		a.Host = na.Addr().String() // the port the kernel chose for port 0
	}
	return &Listener{l: l, addr: a, raw: addr}, nil
}

// AcceptConn waits for the next connection as long as ctx allows.
func (l *Listener) AcceptConn(ctx context.Context) (Conn, error) {
	if l.closed.Load() {
		return nil, ipcerr.Wrap("accept", l.raw, net.ErrClosed)
	}
	c, err := l.l.Accept(ctx)
	if err != nil {
		if l.closed.Load() {
			err = net.ErrClosed
		}
		return nil, ipcerr.Wrap("accept", l.raw, err)
	}
	return &conn{c: c, addr: l.raw}, nil
}

// Accept waits for the next connection and returns its byte-stream view.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptConn(context.Background())
	if err != nil {
		return nil, err
	}
	return NewStream(c, l.addr, l.addr), nil
}

// Close stops listening and removes what Listen created (socket file,
// FIFOs, queues). Blocked Accepts return net.ErrClosed.
func (l *Listener) Close() error {
	if l.closed.Swap(true) {
		return ipcerr.Wrap("close", l.raw, net.ErrClosed)
	}
	return ipcerr.Wrap("close", l.raw, l.l.Close())
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.addr }

// SetupStats counts what a listener did with the connections it set up
// before Accept took them (Config.SetupTimeout, Config.MaxPendingSetups).
// The shm, fifo and posixmq listeners fill every field; unix, unixpacket
// and tcp listeners, whose set-up needs nothing from the peer and runs in
// Accept, count only Failed (for unix, peers not in AllowUIDs).
type SetupStats = transport.SetupStats

// SetupStats returns the listener's set-up counts.
func (l *Listener) SetupStats() SetupStats {
	sl, ok := l.l.(interface{ SetupStats() transport.SetupStats })
	if !ok {
		return SetupStats{}
	}
	return sl.SetupStats()
}

var _ net.Listener = (*Listener)(nil)

func resolve(addr string, cfg *Config) (Addr, transport.Driver, *transport.Options, error) {
	a, err := ParseAddr(addr)
	if err != nil {
		return a, transport.Driver{}, nil, err
	}
	c, err := cfg.validate()
	if err != nil {
		return a, transport.Driver{}, nil, err
	}
	d, ok := transport.Lookup(a.Transport)
	if !ok {
		return a, d, nil, fmt.Errorf("%w: transport %s on this system", ErrUnsupported, a.Transport)
	}
	return a, d, c.options(), nil
}

func target(a Addr) string {
	if a.Transport == TCP {
		return a.Host
	}
	return a.Path
}

func (c *Config) options() *transport.Options {
	return &transport.Options{
		MaxMessageSize: c.MaxMessageSize, Perm: c.Perm, AllowUIDs: c.AllowUIDs, TLS: c.TLS,
		RingSize: c.RingSize, Spin: c.Spin, QueueDepth: c.QueueDepth, QueueMsgSize: c.QueueMsgSize,
		SetupTimeout: c.SetupTimeout, MaxPendingSetups: c.MaxPendingSetups,
	}
}

// conn wraps a transport's Conn so that its errors are *OpError.
type conn struct {
	c    transport.Conn
	addr string
}

func (c *conn) Send(ctx context.Context, msg []byte) error {
	return ipcerr.Wrap("send", c.addr, c.c.Send(ctx, msg))
}

func (c *conn) Recv(ctx context.Context, buf []byte) ([]byte, error) {
	b, err := c.c.Recv(ctx, buf)
	return b, ipcerr.Wrap("recv", c.addr, err)
}

func (c *conn) SetDeadline(t time.Time) error {
	return ipcerr.Wrap("setdeadline", c.addr, c.c.SetDeadline(t))
}

func (c *conn) Close() error { return ipcerr.Wrap("close", c.addr, c.c.Close()) }

// Unwrap returns the transport's own connection, for transport-specific
// calls (peer credentials, descriptor passing, zero-copy).
func (c *conn) Unwrap() transport.Conn { return c.c }
