package ipc

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// streamChunk is the largest message a stream's Write sends; larger writes
// are split. A Conn that refuses a chunk with ErrMessageTooLarge (a small
// Config.MaxMessageSize, a transport's own limit) makes the stream halve its
// chunk size and retry.
const streamChunk = 64 << 10

// keepRecvBuf is the largest receive buffer a stream keeps between reads.
const keepRecvBuf = 256 << 10

// NewStream returns a byte-stream view of c: Write sends its bytes as
// messages, Read returns the bytes of the messages received, without their
// boundaries. local and remote are what LocalAddr and RemoteAddr report
// (a zero Addr for nil).
//
// Write splits its bytes into messages of at most 64 KiB (fewer if c
// refuses that size with ErrMessageTooLarge). Read keeps what does not fit
// in its buffer for the next Read and skips empty messages, so the peer may
// be a stream or send messages of any size.
//
// SetReadDeadline and SetWriteDeadline are independent and interrupt a Read
// or Write already blocked; a passed deadline gives an error that is
// ErrTimeout (os.ErrDeadlineExceeded) with Timeout() true. The view does not
// use c's own deadline. Close closes c; later calls return net.ErrClosed.
// Read returns io.EOF when the peer is gone. Other errors are *OpError.
// All methods are safe for concurrent use; concurrent Reads (or Writes) are
// serialised.
//
// A Write cut short by its deadline returns the number of bytes of the
// messages it sent whole; the message it was sending when the deadline
// passed is, depending on the transport, dropped or delivered whole before
// the next Write's bytes (see the package documentation).
func NewStream(c Conn, local, remote net.Addr) net.Conn {
	if local == nil {
		local = Addr{}
	}
	if remote == nil {
		remote = Addr{}
	}
	return &stream{
		c: c, local: local, remote: remote,
		rd: newDeadline(), wd: newDeadline(),
		rsem: make(chan struct{}, 1), wsem: make(chan struct{}, 1),
		done: make(chan struct{}), chunk: streamChunk,
	}
}

// DialStream dials addr and returns the byte-stream view of the connection
// (NewStream), as a net.Conn for code that wants one: an http.Transport's
// DialContext, a gRPC dialer.
func DialStream(ctx context.Context, addr string, cfg *Config) (net.Conn, error) {
	c, err := Dial(ctx, addr, cfg)
	if err != nil {
		return nil, err
	}
	remote, _ := ParseAddr(addr) // Dial parsed it already
	return NewStream(c, Addr{Transport: remote.Transport}, remote), nil
}

type stream struct {
	c             Conn
	local, remote net.Addr
	rd, wd        *deadline

	// rsem and wsem serialise Reads and Writes; a waiter gives up when its
	// deadline passes or the stream closes.
	rsem, wsem chan struct{}
	done       chan struct{}
	closeOnce  sync.Once
	closed     atomic.Bool

	// Under rsem.
	rbuf    []byte
	pending []byte // received and not yet read

	// Under wsem.
	chunk int
}

func (s *stream) Read(p []byte) (int, error) {
	ctx := s.rd.context()
	if err := s.acquire(ctx, s.rsem); err != nil {
		return 0, s.fail("read", ctx, err)
	}
	defer func() { <-s.rsem }()
	if err := ctx.Err(); err != nil { // a passed deadline wins over buffered bytes, as in package net
		return 0, s.fail("read", ctx, err)
	}
	if len(p) == 0 {
		return 0, nil
	}
	for len(s.pending) == 0 {
		msg, err := s.c.Recv(ctx, s.rbuf[:0])
		if cap(msg) <= keepRecvBuf && cap(msg) > cap(s.rbuf) {
			s.rbuf = msg[:0]
		}
		if err != nil {
			return 0, s.fail("read", ctx, err)
		}
		s.pending = msg
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	if len(s.pending) == 0 {
		s.pending = nil
		if cap(s.rbuf) > keepRecvBuf {
			s.rbuf = nil
		}
	}
	return n, nil
}

func (s *stream) Write(p []byte) (int, error) {
	ctx := s.wd.context()
	if err := s.acquire(ctx, s.wsem); err != nil {
		return 0, s.fail("write", ctx, err)
	}
	defer func() { <-s.wsem }()
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, s.fail("write", ctx, err)
		}
		if n == len(p) {
			return n, nil
		}
		k := min(s.chunk, len(p)-n)
		if err := s.c.Send(ctx, p[n:n+k]); err != nil {
			if errors.Is(err, ErrMessageTooLarge) && k > 1 && !s.closed.Load() {
				s.chunk = k / 2
				continue
			}
			return n, s.fail("write", ctx, err)
		}
		n += k
	}
}

// acquire takes sem unless ctx ends or the stream closes first.
func (s *stream) acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return net.ErrClosed
	}
}

// fail turns the error of a Read or Write into what a net.Conn returns:
// net.ErrClosed once closed, ErrTimeout when a deadline passed, a bare
// io.EOF from Read when the peer is gone, an *OpError otherwise.
func (s *stream) fail(op string, ctx context.Context, err error) error {
	switch {
	case s.closed.Load() || errors.Is(err, net.ErrClosed):
		err = net.ErrClosed
	case ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrTimeout),
		errors.Is(err, ErrTimeout):
		err = ErrTimeout
	case op == "read" && errors.Is(err, io.EOF):
		return io.EOF
	default:
		var oe *OpError
		if errors.As(err, &oe) {
			return err
		}
	}
	return &OpError{Op: op, Addr: s.remote.String(), Err: err}
}

func (s *stream) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.closed.Store(true)
		close(s.done)
	})
	if !first {
		return &OpError{Op: "close", Addr: s.remote.String(), Err: net.ErrClosed}
	}
	err := s.c.Close()
	s.rd.close()
	s.wd.close()
	return err
}

func (s *stream) LocalAddr() net.Addr  { return s.local }
func (s *stream) RemoteAddr() net.Addr { return s.remote }

func (s *stream) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

func (s *stream) SetReadDeadline(t time.Time) error {
	if !s.rd.set(t) {
		return &OpError{Op: "setdeadline", Addr: s.remote.String(), Err: net.ErrClosed}
	}
	return nil
}

func (s *stream) SetWriteDeadline(t time.Time) error {
	if !s.wd.set(t) {
		return &OpError{Op: "setdeadline", Addr: s.remote.String(), Err: net.ErrClosed}
	}
	return nil
}

// deadline is one direction's deadline as a context: the operations of
// that direction run under ctx, which a timer cancels (cause ErrTimeout)
// when the deadline passes. Moving the deadline re-arms the timer of the
// same context, so an operation already blocked sees the change; once the
// context is cancelled, a deadline moved into the future gets a new one.
type deadline struct {
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	closed bool
}

func newDeadline() *deadline {
	d := &deadline{}
	d.ctx, d.cancel = context.WithCancelCause(context.Background())
	return d
}

// context returns the context of operations starting now.
func (d *deadline) context() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ctx
}

// set moves the deadline to t (zero: none). It returns false once closed.
func (d *deadline) set(t time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	if d.timer != nil && !d.timer.Stop() {
		<-d.ctx.Done() // the timer fired: wait until it has cancelled ctx
	}
	d.timer = nil
	expired := d.ctx.Err() != nil
	if t.IsZero() {
		if expired {
			d.ctx, d.cancel = context.WithCancelCause(context.Background())
		}
		return true
	}
	if dur := time.Until(t); dur > 0 {
		if expired {
			d.ctx, d.cancel = context.WithCancelCause(context.Background())
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { cancel(ErrTimeout) })
		return true
	}
	d.cancel(ErrTimeout)
	return true
}

// close ends the context for good: blocked operations return.
func (d *deadline) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.cancel(net.ErrClosed)
}
