//go:build linux

package posixmq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/frame"
	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport"
)

// pollSlice bounds each wait on a queue: a waiting call tests the peer's
// liveness at least this often.
const pollSlice = 100 * time.Millisecond

var longAgo = time.Unix(1, 0)

// side is one queue descriptor, registered with the runtime poller, and the
// bookkeeping of its deadline, which the waiting loop moves.
type side struct {
	f     *os.File
	raw   syscall.RawConn
	write bool

	mu     sync.Mutex // orders deadline moves of the loop, SetDeadline and cancellation
	active bool       // a waiting loop owns the descriptor's deadline
}

func newSide(fd int, name string, write bool) (*side, error) {
	f := os.NewFile(uintptr(fd), name) // non-blocking: the poller takes it
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &side{f: f, raw: raw, write: write}, nil
}

func (s *side) setDeadline(t time.Time) error {
	if s.write {
		return s.f.SetWriteDeadline(t)
	}
	return s.f.SetReadDeadline(t)
}

// do runs f through the poller: once if wait is false, else until f
// returns true or the descriptor's deadline passes.
func (s *side) do(f func(fd uintptr) bool) error {
	if s.write {
		return s.raw.Write(f)
	}
	return s.raw.Read(f)
}

// run calls try (a non-blocking queue operation) until it returns anything
// but EAGAIN, waiting for the queue with the poller. It honours ctx and the
// user deadline dl, and returns io.EOF when the queue would make it wait
// and alive reports the other end gone (after one last try, so that what
// was queued before the peer left is still delivered).
func run(ctx context.Context, s *side, dl *transport.Deadline, alive func() bool, try func(fd uintptr) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var opErr error
	once := func(fd uintptr) bool { opErr = try(fd); return true }
	if err := s.do(once); err != nil {
		return err // closed, or the user deadline has passed
	}
	if opErr != unix.EAGAIN {
		return opErr
	}

	type call struct{ cancelled, finished bool }
	c := &call{}
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() {
			s.mu.Lock()
			if !c.finished {
				c.cancelled = true
				_ = s.setDeadline(longAgo)
			}
			s.mu.Unlock()
		})
	}
	defer func() {
		stop()
		s.mu.Lock()
		c.finished = true
		s.active = false
		_ = s.setDeadline(dl.Get())
		s.mu.Unlock()
	}()
	wait := func(fd uintptr) bool { opErr = try(fd); return opErr != unix.EAGAIN }
	for {
		if !alive() {
			s.mu.Lock()
			_ = s.setDeadline(time.Time{})
			s.mu.Unlock()
			if err := s.do(once); err != nil {
				return err
			}
			if opErr != unix.EAGAIN {
				return opErr
			}
			return io.EOF
		}
		s.mu.Lock()
		if c.cancelled {
			s.mu.Unlock()
			return ctx.Err()
		}
		now := time.Now()
		user := dl.Get()
		if !user.IsZero() && !now.Before(user) {
			s.mu.Unlock()
			return ipcerr.ErrTimeout
		}
		t := now.Add(pollSlice)
		if !user.IsZero() && user.Before(t) {
			t = user
		}
		s.active = true
		_ = s.setDeadline(t)
		s.mu.Unlock()
		err := s.do(wait)
		if err == nil {
			return opErr
		}
		if !transport.IsTimeout(err) {
			return err
		}
	}
}

// Conn is a message connection over a pair of POSIX queues.
type Conn struct {
	max   int
	live  *os.File // liveness file: this side's byte is locked
	peer  int64    // the peer's byte
	r, w  *side
	rsize int // message size of the queue read
	wsize int // message size of the queue written
	dl    transport.Deadline

	rmu     sync.Mutex
	rbuf    []byte
	partial map[uint][]byte // messages being reassembled, by priority
	rerr    error           // sticky: the receiving side is lost

	wmu       sync.Mutex
	wbuf      []byte
	abort     bool // a Send stopped between the frames of a message...
	abortPrio uint // ...of this priority: the peer must drop that message
	closed    atomic.Bool
}

func newConn(r, w *side, rsize, wsize int, live *os.File, peer int64, max int) *Conn {
	return &Conn{max: max, live: live, peer: peer, r: r, w: w, rsize: rsize, wsize: wsize,
		rbuf: make([]byte, rsize), wbuf: make([]byte, wsize), partial: map[uint][]byte{}}
}

// PeerAlive reports whether the other end still holds its lock on the
// liveness file. An error of the test counts as alive.
func (c *Conn) PeerAlive() bool {
	return lockHeld(c.live, c.peer)
}

// lockHeld reports whether some open file description holds an OFD lock on
// byte off of f.
func lockHeld(f *os.File, off int64) bool {
	raw, err := f.SyscallConn()
	if err != nil {
		return true
	}
	held := true
	_ = raw.Control(func(fd uintptr) {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
		if unix.FcntlFlock(fd, unix.F_OFD_GETLK, &lk) == nil {
			held = lk.Type != unix.F_UNLCK
		}
	})
	return held
}

// Send sends msg with priority 0.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	return c.SendPriority(ctx, msg, 0)
}

// SendPriority sends msg with priority prio (0 to MaxPriority): the queue
// hands out higher-priority messages first, and messages of one priority
// in order. A message longer than the queue's message size minus 8 goes as
// several frames that all carry prio; a higher-priority message sent later
// may overtake its remaining frames, never mix with them, since the
// receiver reassembles each priority separately. If ctx or the deadline
// stops a Send between two frames, the message is dropped: the next Send
// first tells the peer to discard the frames it got.
func (c *Conn) SendPriority(ctx context.Context, msg []byte, prio uint) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	if err := frame.CheckSize(len(msg), c.max); err != nil {
		return err
	}
	if prio > MaxPriority {
		return fmt.Errorf("priority %d above %d: %w", prio, MaxPriority, syscall.EINVAL)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.abort {
		if err := c.sendFrame(ctx, frame.Header{More: true}, nil, c.abortPrio); err != nil {
			return err
		}
		c.abort = false
	}
	chunk := c.wsize - frame.HeaderSize
	for off := 0; ; {
		n := min(chunk, len(msg)-off)
		h := frame.Header{Len: n, More: off+n < len(msg)}
		if err := c.sendFrame(ctx, h, msg[off:off+n], prio); err != nil {
			if off > 0 {
				c.abort, c.abortPrio = true, prio
			}
			return err
		}
		off += n
		if !h.More {
			return nil
		}
	}
}

func (c *Conn) sendFrame(ctx context.Context, h frame.Header, payload []byte, prio uint) error {
	h.Put(c.wbuf)
	n := frame.HeaderSize + copy(c.wbuf[frame.HeaderSize:], payload)
	err := run(ctx, c.w, &c.dl, c.PeerAlive, func(fd uintptr) error {
		return mqSend(fd, c.wbuf[:n], prio)
	})
	return c.fix(err)
}

// Recv receives the next message.
func (c *Conn) Recv(ctx context.Context, buf []byte) ([]byte, error) {
	b, _, err := c.RecvPriority(ctx, buf)
	return b, err
}

// RecvPriority receives the next message, appended to buf[:0], and its
// priority.
func (c *Conn) RecvPriority(ctx context.Context, buf []byte) ([]byte, uint, error) {
	if c.closed.Load() {
		return buf[:0], 0, net.ErrClosed
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return buf[:0], 0, c.rerr
	}
	for {
		var n int
		var prio uint
		err := run(ctx, c.r, &c.dl, c.PeerAlive, func(fd uintptr) error {
			var e error
			n, prio, e = mqRecv(fd, c.rbuf)
			return e
		})
		if err != nil {
			return buf[:0], 0, c.fix(err)
		}
		p, inProgress := c.partial[prio]
		h, err := frame.Parse(c.rbuf[:n], c.max-len(p))
		if err == nil && h.Len != n-frame.HeaderSize {
			err = fmt.Errorf("%w: a %d-byte queue message holds a frame of %d bytes", ipcerr.ErrCorruptFrame, n, h.Len)
		}
		if err != nil {
			c.rerr = err
			c.partial = nil
			return buf[:0], 0, err
		}
		payload := c.rbuf[frame.HeaderSize:n]
		switch {
		case h.More && h.Len == 0: // the sender gave up on this message
			delete(c.partial, prio)
		case h.More:
			c.partial[prio] = append(p, payload...)
		case !inProgress:
			return append(buf[:0], payload...), prio, nil
		default:
			delete(c.partial, prio)
			p = append(p, payload...)
			if cap(buf) < len(p) {
				return p, prio, nil
			}
			return append(buf[:0], p...), prio, nil
		}
	}
}

func (c *Conn) fix(err error) error {
	if err == nil {
		return nil
	}
	if c.closed.Load() {
		return net.ErrClosed
	}
	if errors.Is(err, unix.EMSGSIZE) {
		return fmt.Errorf("%w: %v", ipcerr.ErrMessageTooLarge, err)
	}
	return transport.Closed(err)
}

// SetDeadline sets the deadline of both directions.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	c.dl.Set(t)
	var err error
	for _, s := range []*side{c.r, c.w} {
		s.mu.Lock()
		d := t
		if s.active {
			d = time.Now() // wake the waiting loop, which re-reads the deadline
		}
		if e := s.setDeadline(d); err == nil {
			err = e
		}
		s.mu.Unlock()
	}
	return transport.Closed(err)
}

// Close closes the queues and releases the liveness lock, which the peer
// sees as the end of the connection. Blocked calls return net.ErrClosed.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	err := c.r.f.Close()
	if e := c.w.f.Close(); err == nil {
		err = e
	}
	if e := c.live.Close(); err == nil {
		err = e
	}
	return err
}
