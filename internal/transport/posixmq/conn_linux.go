//go:build linux

package posixmq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/frame"
	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/kwait"
	"github.com/ipcgo/ipc/internal/transport"
)

// How a Send or Recv waits. The queue descriptors of a connection are in
// blocking mode. A call first tries without waiting; if it would wait, it
// lets the goroutines that are ready run, then waits inside mq_timedsend
// or mq_timedreceive, as a C program would. There the kernel hands a
// message straight to a receiver waiting on an empty queue, and a receiver
// that takes a message from a full queue moves a waiting sender's message
// in (ipc/mqueue.c, pipelined_send and pipelined_receive): the waiting call
// wakes up with its work done.
//
// The price: a call waiting in the kernel holds its thread, and nothing
// but a message, room in the queue or the timeout ends the wait (the
// runtime's signals restart the call). So a wait in the kernel lasts at
// most a slice, after which the call looks at what else may end it:
// Close, its context, a deadline that SetDeadline moved, the peer's death.
// Every slice that ends is also a wake-up, of the thread and of the
// runtime's monitor that takes its processor back (about 90 µs of CPU on
// a small VM: 1.5% of a CPU for each call waiting on an idle connection).
// So a call that has waited a whole slice in the kernel goes on waiting in
// the runtime poller, where it holds no thread, and Close, its context and
// SetDeadline end it at once. On a connection with traffic, waits are far
// shorter than a slice. The descriptor enters the poller only for such a
// long wait: registered there, it would wake the poller at every message
// the queue takes or gives.
//
// slice bounds how late a call waiting in the kernel notices Close, the
// cancellation of its context, a SetDeadline made while it waits, or the
// death of the peer; deadlines known when the wait starts (SetDeadline's,
// the context's) end it on time, whatever the slice. It is also how long a
// wait stays in the kernel before the poller takes it over (two slices at
// most: the first may have begun with an earlier frame of the message).
// 5 ms keeps those delays below what a person or a network timeout
// notices, while a message that waits longer pays the poller's few system
// calls and wake-up (tens of microseconds) on a wait a hundred times
// longer.
//
// A wait begins in the kernel only on a busy queue (a wait on it ended
// less than kwait.Recent ago) and while fewer than kwait.Max calls of the
// process hold their threads so; otherwise it begins in the poller. The
// runtime makes a thread for each call that stays in the kernel while
// other goroutines are ready to run, and keeps it: many goroutines that
// begin to wait on idle queues at once would leave the process with as
// many threads.
const slice = 5 * time.Millisecond

// pollSlice bounds a wait in the poller: the call tests the peer's
// liveness at least this often.
const pollSlice = 100 * time.Millisecond

var longAgo = time.Unix(1, 0)

// errNoPoll: the queue's descriptor could not enter the poller.
var errNoPoll = errors.New("posixmq: queue descriptor not pollable")

// side is one queue of a connection, and the arguments and results of the
// system call on it. A Conn's rmu or wmu guards the fields of the side it
// reads or writes; mu guards the rest.
type side struct {
	f     *os.File // in blocking mode (os.NewFile leaves it out of the poller)
	raw   syscall.RawConn
	write bool
	call  func(fd uintptr) bool // s.sys, bound once: a call allocates nothing
	pcall func(fd uintptr) bool // s.psys

	buf   []byte        // the frame to send, or room for one to receive
	prio  uint32        // the priority to send with, or received
	n     int           // the size of the message received
	until unix.Timespec // the timeout, absolute CLOCK_REALTIME
	zero  unix.Timespec // a timeout in the past: the call does not wait
	probe bool          // use zero, not until
	errno syscall.Errno // the result

	act kwait.Activity // when a wait on the queue last ended: busy or idle

	mu     sync.Mutex // orders the moves of pf's deadline by poll, cancellation and SetDeadline
	pf     *os.File   // while a call waits in the poller: a duplicate of f's descriptor, registered there
	closed bool       // close was called: no more pf
}

func newSide(fd int, name string, write bool) (*side, error) {
	f := os.NewFile(uintptr(fd), name)
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	s := &side{f: f, raw: raw, write: write}
	s.call, s.pcall = s.sys, s.psys
	return s, nil
}

// setNonblock sets or clears O_NONBLOCK on the queue's open file
// description with mq_setattr: the system calls then fail with EAGAIN
// rather than wait.
func (s *side) setNonblock(on bool) error {
	var a attr
	if on {
		a.Flags = unix.O_NONBLOCK
	}
	var e syscall.Errno
	err := s.raw.Control(func(fd uintptr) {
		// unsafe: a is read by the kernel during the call only.
		_, _, e = unix.Syscall(unix.SYS_MQ_GETSETATTR, fd, uintptr(unsafe.Pointer(&a)), 0)
	})
	if err != nil {
		return err
	}
	if e != 0 {
		return os.NewSyscallError("mq_setattr", e)
	}
	return nil
}

// close closes the queue. It does not wait for a call in progress: one in
// the kernel holds a reference on the descriptor (see once), one in the
// poller is woken.
func (s *side) close() error {
	s.mu.Lock()
	s.closed = true
	pf := s.pf
	s.mu.Unlock()
	err := s.f.Close()
	if pf != nil {
		_ = pf.Close()
	}
	return err
}

func (s *side) sys(fd uintptr) bool {
	until := &s.until
	if s.probe {
		until = &s.zero
	}
	if s.write {
		s.errno = mqSend(fd, s.buf, uint(s.prio), until)
	} else {
		s.n, s.errno = mqRecv(fd, s.buf, &s.prio, until)
	}
	return true
}

// psys is sys for the poller: false (wait, then try again) on EAGAIN.
func (s *side) psys(fd uintptr) bool {
	s.sys(fd)
	return s.errno != unix.EAGAIN
}

// arm begins a Send or Recv on s: it returns the error of a context done
// or a deadline passed, or sets the timeout of the system calls to come to
// the end of a slice from now, or to the nearer deadline.
//
// The kernel takes an absolute time on the wall clock: now's wall reading
// plus a duration measured on the monotonic clock. A step of the wall
// clock moves only the slice under way: forward, it ends early and wait
// arms again; back, it lasts longer by the step.
func (s *side) arm(ctx context.Context, dl *transport.Deadline) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	d := slice
	if user := dl.Get(); !user.IsZero() {
		left := user.Sub(now)
		if left <= 0 {
			return ipcerr.ErrTimeout
		}
		d = min(d, left)
	}
	if cdl, ok := ctx.Deadline(); ok {
		left := cdl.Sub(now)
		if left <= 0 {
			return context.DeadlineExceeded // ahead of the context's own timer
		}
		d = min(d, left)
	}
	s.until = unix.NsecToTimespec(now.Add(d).UnixNano())
	return nil
}

// once makes the system call once, with the timeout s.until, or none if
// probe.
//
// It runs through the RawConn, whose Read and Write hold a reference on the
// descriptor while the call runs. Close marks the file closed and returns
// at once, without waiting for that reference (it waits only for
// descriptors in the poller); close(2) comes when the last reference goes,
// after the call returned. So a call waiting in the kernel never has its
// descriptor closed, or its number reused by another open, under it; the
// next once returns the error of a closed file.
func (s *side) once(probe bool) error {
	s.probe = probe
	var err error
	if s.write {
		err = s.raw.Write(s.call)
	} else {
		err = s.raw.Read(s.call)
	}
	if err != nil {
		return err
	}
	return s.result()
}

func (s *side) result() error {
	if s.errno != 0 {
		return s.errno
	}
	return nil
}

// wait makes s's system call, armed by arm, until it succeeds or fails:
// in the kernel, a slice at a time, then in the poller. All the frames of
// a message share the timeout that arm set for it: one reading of the
// clock per message, as long as no frame has to wait past it. wait honours
// ctx and the user deadline dl, and returns io.EOF when the call had to
// wait and alive reports the other end gone (after one last try, so that
// what was queued before the peer left is still delivered).
//
// The first try does not wait. If the call would, wait lets the
// goroutines that are ready run first: the system call that waits keeps
// the processor from them until the runtime takes it back (from 20 µs to
// 10 ms later), and when the peer is a goroutine of this process that
// needs that processor, the wait would last as long.
//
// Only a busy connection waits in the kernel, and only while a place is
// free (kwait): on an idle queue, or when enough calls of the process hold
// their threads already, the call goes to the poller at once.
func wait(ctx context.Context, s *side, dl *transport.Deadline, alive func() bool) error {
	switch err := s.once(true); err {
	case unix.ETIMEDOUT, unix.EINTR:
	default:
		return err
	}
	var err error
	if s.act.Begin() {
		err = s.kernelWait(ctx, dl, alive, true)
	} else if err = s.poll(ctx, dl, alive); err == errNoPoll {
		err = s.kernelWait(ctx, dl, alive, false)
	}
	if err == nil {
		s.act.Woke()
	}
	return err
}

// kernelWait is wait's wait in the kernel, a slice at a time, then in the
// poller. held: the call holds a kwait place, given back when the wait
// leaves the kernel.
func (s *side) kernelWait(ctx context.Context, dl *transport.Deadline, alive func() bool, held bool) error {
	defer func() {
		if held {
			kwait.Release()
		}
	}()
	runtime.Gosched()
	fresh := false // s.until was set during this wait
	for {
		err := s.once(false)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.ETIMEDOUT, unix.EAGAIN:
		default:
			return err
		}
		// The timeout came: the end of a slice, or a deadline.
		if !alive() {
			if err := s.once(true); err != unix.ETIMEDOUT && err != unix.EAGAIN {
				return err
			}
			return io.EOF
		}
		if err := s.arm(ctx, dl); err != nil { // SetDeadline may have moved dl
			return err
		}
		if fresh {
			if held {
				kwait.Release()
				held = false
			}
			if err := s.poll(ctx, dl, alive); err != errNoPoll {
				return err
			}
		}
		fresh = true
	}
}

// openPoll makes pf: a duplicate of the descriptor, handed to os.NewFile
// while their open file description is non-blocking, so that it enters
// the poller. The two share that description and its O_NONBLOCK flag,
// which stays set until closePoll: every system call on the queue then
// fails with EAGAIN rather than wait.
func (s *side) openPoll() (syscall.RawConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, net.ErrClosed
	}
	if err := s.setNonblock(true); err != nil {
		return nil, err
	}
	var pfd int
	var derr error
	err := s.raw.Control(func(fd uintptr) { pfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	if err == nil && derr != nil {
		err = os.NewSyscallError("fcntl", derr)
	}
	if err != nil {
		_ = s.setNonblock(false)
		return nil, err
	}
	pf := os.NewFile(uintptr(pfd), s.f.Name())
	praw, err := pf.SyscallConn()
	if err != nil || pf.SetDeadline(time.Time{}) != nil { // not in the poller
		pf.Close()
		_ = s.setNonblock(false)
		return nil, errNoPoll
	}
	s.pf = pf
	return praw, nil
}

// closePoll undoes openPoll.
func (s *side) closePoll() {
	s.mu.Lock()
	pf := s.pf
	s.pf = nil
	s.mu.Unlock()
	_ = pf.Close() // after close, a second Close: harmless
	_ = s.setNonblock(false)
}

// poll waits for the queue in the runtime poller until the system call
// goes through. It honours ctx and dl, SetDeadline included, at once, and
// tests alive every pollSlice, as wait does at the end of a slice.
func (s *side) poll(ctx context.Context, dl *transport.Deadline, alive func() bool) error {
	praw, err := s.openPoll()
	if err != nil {
		return err
	}
	defer s.closePoll()
	type call struct{ cancelled, finished bool }
	c := &call{}
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() {
			s.mu.Lock()
			if !c.finished && s.pf != nil {
				c.cancelled = true
				_ = s.pf.SetDeadline(longAgo)
			}
			s.mu.Unlock()
		})
	}
	defer func() {
		stop()
		s.mu.Lock()
		c.finished = true
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		if c.cancelled {
			s.mu.Unlock()
			return ctx.Err()
		}
		now := time.Now()
		t := now.Add(pollSlice)
		if user := dl.Get(); !user.IsZero() {
			if !now.Before(user) {
				s.mu.Unlock()
				return ipcerr.ErrTimeout
			}
			if user.Before(t) {
				t = user
			}
		}
		_ = s.pf.SetDeadline(t)
		s.mu.Unlock()
		s.probe = true
		if s.write {
			err = praw.Write(s.pcall)
		} else {
			err = praw.Read(s.pcall)
		}
		if err == nil {
			return s.result()
		}
		if !transport.IsTimeout(err) {
			return err
		}
		if !alive() {
			if err := s.once(true); err != unix.EAGAIN {
				return err
			}
			return io.EOF
		}
	}
}

// wake makes a call waiting in the poller read its deadline again.
func (s *side) wake() {
	s.mu.Lock()
	if s.pf != nil {
		_ = s.pf.SetDeadline(time.Now())
	}
	s.mu.Unlock()
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
	bufPrio uint            // during a RecvPriority: the priority assembled in the caller's buf

	wmu       sync.Mutex
	wbuf      []byte
	abort     bool // a Send stopped between the frames of a message...
	abortPrio uint // ...of this priority: the peer must drop that message
	closed    atomic.Bool
}

func newConn(r, w *side, rsize, wsize int, live *os.File, peer int64, max int) *Conn {
	c := &Conn{max: max, live: live, peer: peer, r: r, w: w, rsize: rsize, wsize: wsize,
		rbuf: make([]byte, rsize), wbuf: make([]byte, wsize), partial: map[uint][]byte{}}
	r.buf = c.rbuf
	return c
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
	if err := c.w.arm(ctx, &c.dl); err != nil {
		return err
	}
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
	c.w.buf, c.w.prio = c.wbuf[:n], uint32(prio)
	return c.fix(wait(ctx, c.w, &c.dl, c.PeerAlive))
}

// Recv receives the next message.
func (c *Conn) Recv(ctx context.Context, buf []byte) ([]byte, error) {
	b, _, err := c.RecvPriority(ctx, buf)
	return b, err
}

// RecvPriority receives the next message, appended to buf[:0], and its
// priority.
//
// A message of several frames is assembled in buf's array, while it has
// room and no other message of this call uses it; the message of another
// priority, or one whose frames came partly in an earlier call, in memory
// of the Conn's own. In buf, each frame after the first is received in
// place: over the last 8 bytes of the message so far, which are kept and
// put back over the frame's header.
func (c *Conn) RecvPriority(ctx context.Context, buf []byte) ([]byte, uint, error) {
	if c.closed.Load() {
		return buf[:0], 0, net.ErrClosed
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return buf[:0], 0, c.rerr
	}
	if err := c.r.arm(ctx, &c.dl); err != nil {
		return buf[:0], 0, err
	}
	inBuf := false // c.partial[c.bufPrio] was begun in buf
	for {
		dst, direct := c.rbuf, false
		var save [frame.HeaderSize]byte
		if inBuf {
			p := c.partial[c.bufPrio]
			if len(p) >= frame.HeaderSize && cap(p)-len(p) >= c.rsize-frame.HeaderSize && sameArray(p, buf) {
				at := len(p) - frame.HeaderSize
				dst, direct = p[at:at+c.rsize], true
				copy(save[:], dst)
			}
		}
		c.r.buf = dst
		err := wait(ctx, c.r, &c.dl, c.PeerAlive)
		if err == nil && c.closed.Load() {
			err = net.ErrClosed // the frame came after Close: the Conn is gone
		}
		if err != nil {
			if direct {
				copy(dst, save[:])
			}
			c.ownPartial(buf, &inBuf)
			return buf[:0], 0, c.fix(err)
		}
		n, prio := c.r.n, uint(c.r.prio)
		msg := dst[:n]
		p, inProgress := c.partial[prio]
		h, err := frame.Parse(msg, c.max-len(p))
		if err == nil && h.Len != n-frame.HeaderSize {
			err = fmt.Errorf("%w: a %d-byte queue message holds a frame of %d bytes", ipcerr.ErrCorruptFrame, n, h.Len)
		}
		inPlace := direct && err == nil && prio == c.bufPrio // the payload follows p
		if direct {
			if !inPlace {
				msg = c.rbuf[:copy(c.rbuf, msg)]
			}
			copy(dst, save[:])
		}
		if err != nil {
			c.rerr = err
			c.partial = nil
			return buf[:0], 0, err
		}
		payload := msg[frame.HeaderSize:]
		mine := inBuf && prio == c.bufPrio // p was begun in buf
		switch {
		case h.More && h.Len == 0: // the sender gave up on this message
			delete(c.partial, prio)
			if mine {
				inBuf = false
			}
		case h.More:
			if !inProgress && !inBuf {
				p, inBuf, c.bufPrio = buf[:0], true, prio
			}
			if inPlace {
				c.partial[prio] = p[:len(p)+h.Len]
			} else {
				c.partial[prio] = append(p, payload...)
			}
		case !inProgress:
			c.ownPartial(buf, &inBuf)
			return append(buf[:0], payload...), prio, nil
		default:
			delete(c.partial, prio)
			if inPlace {
				p = p[:len(p)+h.Len]
			} else {
				p = append(p, payload...)
			}
			if mine {
				return p, prio, nil // in buf, or where append moved it
			}
			c.ownPartial(buf, &inBuf)
			if cap(buf) < len(p) {
				return p, prio, nil
			}
			return append(buf[:0], p...), prio, nil
		}
	}
}

// ownPartial moves the message being assembled in buf's array, if any, to
// memory of the Conn's own: buf is about to hold another message, or to go
// back to the caller.
func (c *Conn) ownPartial(buf []byte, inBuf *bool) {
	if !*inBuf {
		return
	}
	*inBuf = false
	p, ok := c.partial[c.bufPrio]
	if ok && sameArray(p, buf) { // not yet moved by append
		c.partial[c.bufPrio] = append(make([]byte, 0, 2*len(p)), p...)
	}
}

// sameArray reports whether a and b begin at the same element of an array.
func sameArray(a, b []byte) bool {
	return cap(a) > 0 && cap(b) > 0 && &a[:1][0] == &b[:1][0]
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

// SetDeadline sets the deadline of both directions. A call that waits
// already takes the new deadline at once in the poller, at the end of its
// slice in the kernel.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	c.dl.Set(t)
	c.r.wake()
	c.w.wake()
	return nil
}

// Close closes the queues and releases the liveness lock, which the peer
// sees as the end of the connection. It does not wait for blocked calls:
// they return net.ErrClosed, at once from the poller, at the end of their
// slice from the kernel.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	err := c.r.close()
	if e := c.w.close(); err == nil {
		err = e
	}
	if e := c.live.Close(); err == nil {
		err = e
	}
	return err
}
