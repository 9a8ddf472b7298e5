package sock

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ipcgo/ipc/internal/frame"
	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport"
)

func listenTCP(addr string, o *transport.Options) (transport.Listener, error) {
	if o.TLS != nil && len(o.TLS.Certificates) == 0 && o.TLS.GetCertificate == nil && o.TLS.GetConfigForClient == nil {
		return nil, fmt.Errorf("%w: the TLS config of a listener needs a certificate", ipcerr.ErrBadConfig)
	}
	var lc net.ListenConfig
	nl, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: %w", ipcerr.ErrAddrInUse, netErr(err))
		}
		return nil, netErr(err)
	}
	tl := nl.(*net.TCPListener)
	max, cfg := o.MaxMessageSize, o.TLS
	return newListener(tl, tl.SetDeadline, func(nc net.Conn) transport.Conn {
		tc := nc.(*net.TCPConn)
		if err := tc.SetNoDelay(true); err != nil {
			_ = tc.Close()
			return nil
		}
		if cfg == nil {
			c, err := newPlainTCPConn(tc, max)
			if err != nil {
				return nil
			}
			return c
		}
		c := newTCPConn(tc, tls.Server(tc, cfg), max)
		c.hs = &handshake{done: make(chan struct{}), changed: make(chan struct{})}
		go c.serverHandshake()
		return c
	}), nil
}

// HandshakeTimeout bounds the server side of a TLS handshake.
const HandshakeTimeout = 10 * time.Second

func dialTCP(ctx context.Context, addr string, o *transport.Options) (transport.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, netErr(err)
	}
	tc := nc.(*net.TCPConn)
	if err := tc.SetNoDelay(true); err != nil {
		_ = tc.Close()
		return nil, err
	}
	if o.TLS == nil {
		return newPlainTCPConn(tc, o.MaxMessageSize)
	}
	cfg := o.TLS
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			_ = tc.Close()
			return nil, err
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tlc := tls.Client(tc, cfg)
	if err := tlc.HandshakeContext(ctx); err != nil {
		_ = tc.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return newTCPConn(tc, tlc, o.MaxMessageSize), nil
}

// TCPConn is a message connection over TCP (tcp://), each message one frame
// on the stream, optionally inside TLS. TCP_NODELAY is set.
//
// Dial runs the client side of the TLS handshake under its context. Accept
// returns a TLS connection at once and its handshake runs in the
// background, for at most HandshakeTimeout, so that a slow client never
// holds up Accept; Send and Recv wait for it (within their own context and
// deadline, which never cut the handshake short), and a failed handshake is
// their error. A deadline set while the handshake runs applies to the
// calls after it.
//
// crypto/tls cannot resume a write that a deadline or context cut short:
// after a Send interrupted that way once it has begun writing, every later
// Send fails at once with ErrCorruptFrame (and the peer gets no part of the
// interrupted message). A Send whose context has ended or whose deadline
// has passed before it starts writes nothing and leaves the connection
// usable, as does an interrupted Recv.
type TCPConn struct {
	*transport.StreamConn
	tcp *net.TCPConn // with TLS
	sc  *sockConn    // without TLS: the socket, out of the runtime poller
	tls *tls.Conn
	hs  *handshake // the handshake of an accepted TLS connection, else nil
	max int

	smu    sync.Mutex                // TLS: serialises Send with the check that follows a failure
	broken atomic.Pointer[brokenErr] // TLS: the writing side is unusable
	dl     transport.Deadline        // the deadline the user set
	closed atomic.Bool
}

// brokenErr holds the error of every Send once a TLS write was interrupted.
type brokenErr struct{ err error }

// handshake is the background server handshake of an accepted TLS
// connection.
type handshake struct {
	done chan struct{} // closed when the handshake has ended
	err  error         // its error, set before done is closed

	mu       sync.Mutex
	finished bool          // done is closed
	changed  chan struct{} // closed (and replaced) when the deadline changes
}

// newTCPConn makes a TLS connection over tc.
func newTCPConn(tc *net.TCPConn, tlc *tls.Conn, max int) *TCPConn {
	c := &TCPConn{tcp: tc, tls: tlc, max: max}
	c.StreamConn = transport.NewStreamConn(tlc, tlc, max, closerFunc(c.closeTLS))
	return c
}

// newPlainTCPConn makes a connection without TLS over tc, whose socket it
// takes out of the runtime poller as the Unix transports do (tc is closed).
func newPlainTCPConn(tc *net.TCPConn, max int) (*TCPConn, error) {
	sc, err := detach(tc)
	if err != nil {
		return nil, err
	}
	c := &TCPConn{sc: sc, max: max}
	c.StreamConn = transport.NewStreamConn(sc.fd, sc.fd, max, sc.fd)
	return c, nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// serverHandshake runs the server handshake, then applies the deadline set
// meanwhile: until it ends, SetDeadline leaves the socket alone, so that the
// handshake runs under HandshakeTimeout only.
func (c *TCPConn) serverHandshake() {
	ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
	err := c.tls.HandshakeContext(ctx) // closes the socket when ctx ends
	cancel()
	h := c.hs
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		_ = c.StreamConn.SetDeadline(c.dl.Get())
	}
	h.err = err
	h.finished = true
	close(h.done)
}

// waitHandshake waits for the handshake of an accepted TLS connection,
// within ctx and the deadline.
func (c *TCPConn) waitHandshake(ctx context.Context) error {
	h := c.hs
	if h == nil {
		return nil
	}
	select {
	case <-h.done:
		return c.handshakeErr()
	default:
	}
	if c.closed.Load() {
		return net.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for {
		h.mu.Lock()
		changed := h.changed // before reading the deadline: SetDeadline sets it first
		h.mu.Unlock()
		var timer *time.Timer
		var expired <-chan time.Time
		if dl := c.dl.Get(); !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(d)
			expired = timer.C
		}
		var err error
		again := false
		select {
		case <-h.done:
			err = c.handshakeErr()
		case <-ctx.Done():
			err = ctx.Err()
		case <-expired:
			err = os.ErrDeadlineExceeded
		case <-changed:
			again = true
		}
		if timer != nil {
			timer.Stop()
		}
		if !again {
			return err
		}
	}
}

// handshakeErr is the error of an ended server handshake for Send and Recv.
func (c *TCPConn) handshakeErr() error {
	err := c.hs.err
	switch {
	case c.closed.Load():
		return net.ErrClosed
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("TLS handshake: not done within %v", HandshakeTimeout)
	}
	return fmt.Errorf("TLS handshake: %w", transport.PeerGone(err))
}

// Send sends msg as one message.
func (c *TCPConn) Send(ctx context.Context, msg []byte) error {
	if c.tls == nil {
		return c.StreamConn.Send(ctx, msg)
	}
	if c.closed.Load() {
		return net.ErrClosed
	}
	if err := frame.CheckSize(len(msg), c.max); err != nil {
		return err
	}
	if err := c.waitHandshake(ctx); err != nil {
		return err
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	if b := c.broken.Load(); b != nil {
		if c.closed.Load() {
			return net.ErrClosed
		}
		return b.err
	}
	// A write that fails, even before it wrote anything, breaks the TLS
	// connection: refuse what would time out at once.
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl := c.dl.Get(); !dl.IsZero() && !time.Now().Before(dl) {
		return os.ErrDeadlineExceeded
	}
	err := c.StreamConn.Send(ctx, msg)
	if err != nil && !c.closed.Load() {
		// crypto/tls keeps the error of a failed write for every later
		// one; an empty Write returns it and writes nothing.
		if _, werr := c.tls.Write(nil); werr != nil && transport.IsTimeout(werr) {
			c.broken.Store(&brokenErr{fmt.Errorf("%w: TLS cannot send after a write that a deadline or context interrupted (%v)", ipcerr.ErrCorruptFrame, werr)})
		}
	}
	return err
}

// Recv receives the next message into buf[:0].
func (c *TCPConn) Recv(ctx context.Context, buf []byte) ([]byte, error) {
	if c.hs != nil {
		if c.closed.Load() {
			return buf[:0], net.ErrClosed
		}
		if err := c.waitHandshake(ctx); err != nil {
			return buf[:0], err
		}
	}
	return c.StreamConn.Recv(ctx, buf)
}

// SetDeadline sets the deadline of later and pending calls. While the
// handshake of an accepted TLS connection runs, it applies to the calls
// waiting for it, and to the connection once the handshake is done.
func (c *TCPConn) SetDeadline(t time.Time) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	c.dl.Set(t)
	if h := c.hs; h != nil {
		h.mu.Lock()
		if !h.finished {
			close(h.changed)
			h.changed = make(chan struct{})
			h.mu.Unlock()
			return nil
		}
		h.mu.Unlock()
	}
	return c.StreamConn.SetDeadline(t)
}

// Close closes the connection. With TLS it first sends the peer a
// close_notify alert; Close does not report the failure to send it to a
// peer that is gone.
func (c *TCPConn) Close() error {
	c.closed.Store(true)
	return c.StreamConn.Close()
}

// closeTLS closes a TLS connection.
func (c *TCPConn) closeTLS() error {
	if c.broken.Load() != nil {
		// A record was cut short: an alert after it would be garbage to
		// the peer, and could wait for a peer that does not read.
		return c.tcp.Close()
	}
	err := c.tls.Close()
	switch {
	case err == nil:
	case errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET):
		// Only the close_notify alert can fail so (closing a socket
		// cannot), to a peer that is gone; the socket is closed.
		return nil
	case c.hs != nil && errors.Is(err, net.ErrClosed):
		select {
		case <-c.hs.done: // a failed handshake closed the socket already
			if c.hs.err != nil {
				return nil
			}
		default:
		}
	}
	return err
}

// Control calls fn with the socket's descriptor, for socket options
// (reading or writing it breaks the framing).
func (c *TCPConn) Control(fn func(fd uintptr)) error {
	if c.sc != nil {
		return c.sc.fd.Control(fn)
	}
	rc, err := c.tcp.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(fn)
}

// TLSState returns the state of the TLS connection, and false if the
// connection does not use TLS.
func (c *TCPConn) TLSState() (tls.ConnectionState, bool) {
	if c.tls == nil {
		return tls.ConnectionState{}, false
	}
	return c.tls.ConnectionState(), true
}

// LocalAddr returns the local address.
func (c *TCPConn) LocalAddr() net.Addr {
	if c.sc != nil {
		return c.sc.local
	}
	return c.tcp.LocalAddr()
}

// RemoteAddr returns the peer's address.
func (c *TCPConn) RemoteAddr() net.Addr {
	if c.sc != nil {
		return c.sc.remote
	}
	return c.tcp.RemoteAddr()
}
