//go:build linux

package transport

import (
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/kwait"
)

// How an FD waits. A descriptor registered with the runtime poller (epoll)
// costs every write on its pipe the poller's wake-up callback, whether or
// not anyone waits: a third of the throughput of small messages. So the
// pipe, FIFO and Unix socket descriptors of a connection stay out of the
// poller. They are in non-blocking mode; a read or write that would block
// waits in the calling thread, in ppoll(2) on the descriptor and on an
// eventfd(2), the kick, that Close and the deadline setters write so that
// the wait ends at once and the call looks again at what changed. A wait
// in the kernel holds a thread, so it lasts at most kernelWait in all for
// a call (and never past the deadline); then the call goes on waiting in
// the runtime poller through a duplicate of the descriptor, registered for
// that wait only, where an idle connection holds no thread. On a
// connection with traffic, waits are far shorter than kernelWait. A socket
// carries both directions on one descriptor: a call in one direction takes
// a wait of the other out of the poller, back to ppoll (leavePoll).
//
// Only a busy connection waits in ppoll, though: one where a wait ended
// less than kwait.Recent ago, and only while fewer than kwait.Max calls of
// the process wait in their threads. Any other wait goes to the poller at
// once. The runtime makes a thread for each goroutine that stays in a
// system call while others are ready to run, and keeps it: 4,000
// goroutines that began to wait on 4,000 idle connections at once left a
// process with 190 threads when every wait began in ppoll, and leave it
// with about as many as net.Conn's (5) now. The first wait of a connection
// after a pause pays the poller's set-up (tens of microseconds); the waits
// that follow, while messages keep coming, are in ppoll.
//
// kernelWait: two 5 ms slices, as the posixmq transport waits in the
// kernel. A message that waits longer pays the poller's few system calls
// (dup, epoll_ctl twice, close: tens of microseconds) on a wait hundreds
// of times longer.
var kernelWait = 10 * time.Millisecond // a variable for tests

// maxSpins is how many times in a row a call goes on waiting in ppoll
// after it found the descriptor ready and the call would still block.
const maxSpins = 4

// rawMax is the largest transfer made with RawSyscall (see attempt).
const rawMax = 16 << 10

// FD is a pipe, FIFO or socket descriptor kept out of the runtime poller: a
// ReadWriteDeadliner and io.Closer like the *os.File it replaces, with
// os.File's errors (*os.PathError with os.ErrDeadlineExceeded, io.EOF,
// os.ErrClosed). One Read and one Write may run at a time (StreamConn's
// locks see to it).
type FD struct {
	f    *os.File // not pollable: made while the descriptor was blocking
	raw  syscall.RawConn
	name string

	closed atomic.Bool
	rd, wr fdOp

	act kwait.Activity // when a call's wait last ended: busy or idle

	mu      sync.Mutex // guards kick, waiting, and the ops' pf
	kick    int        // eventfd that ends a wait in ppoll, or -1 (made at the first wait)
	waiting int        // calls in ppoll on kick
	noPoll  bool       // a duplicate could not enter the poller: wait in ppoll only
}

// NewFD returns an FD for fd, a pipe, FIFO or connected socket descriptor
// it owns from now.
// The descriptor's open file description is left in non-blocking mode.
func NewFD(fd int, name string) (*FD, error) {
	// os.NewFile registers a non-blocking descriptor with the poller, a
	// blocking one not: clear O_NONBLOCK first, set it again once the
	// os.File exists (it does not look again). The flag belongs to the open
	// file description, which no one else uses yet.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if err := unix.SetNonblock(fd, true); err != nil {
		f.Close()
		return nil, os.NewSyscallError("fcntl", err)
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	d := &FD{f: f, raw: raw, name: name, kick: -1}
	d.rd.init(d, false)
	d.wr.init(d, true)
	return d, nil
}

// Pipe returns the ends of a new pipe, as os.Pipe does, out of the poller.
func Pipe() (r, w *FD, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	if r, err = NewFD(p[0], "|0"); err != nil {
		unix.Close(p[1])
		return nil, nil, err
	}
	if w, err = NewFD(p[1], "|1"); err != nil {
		r.Close()
		return nil, nil, err
	}
	return r, w, nil
}

// File returns the underlying file, for Control calls (GrowPipe) or to
// hand the descriptor to a child (exec.Cmd.ExtraFiles; the child's copy is
// in non-blocking mode too).
func (d *FD) File() *os.File { return d.f }

// Name returns the name given to NewFD.
func (d *FD) Name() string { return d.name }

// Read reads from the pipe, waiting until at least a byte, the end of the
// stream, Close or the read deadline.
func (d *FD) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	o := &d.rd
	o.iov[0].Base = &p[0]
	o.iov[0].SetLen(len(p))
	o.cnt = 1
	n, err := o.do()
	o.iov[0] = unix.Iovec{} // keep no reference to the caller's buffer
	if err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

// Write writes all of b, or fewer bytes with an error.
func (d *FD) Write(b []byte) (int, error) { return d.writev2(b, nil) }

// Control calls fn with the descriptor, which stays open while fn runs
// (socket options).
func (d *FD) Control(fn func(fd uintptr)) error { return d.raw.Control(fn) }

// RawRead makes one system call that reads, trap(fd, arg, a3) (recvmsg(2),
// readv(2)), with the waiting rules of Read: while it would block it waits
// for the descriptor to be readable, Close, the read deadline. size is the
// most it may copy (RawSyscall or Syscall, see attempt). It returns the
// call's result, 0 included (no io.EOF): a single call, never repeated
// after a short transfer. The caller keeps arg and the memory it points to
// alive, unchanged, until RawRead returns; one RawRead or Read at a time.
func (d *FD) RawRead(trap uintptr, arg unsafe.Pointer, a3 uintptr, size int) (int, error) {
	return d.rd.rawDo(trap, arg, a3, size)
}

// RawWrite is RawRead for a call that writes (sendmsg(2)), waiting for the
// descriptor to be writable; one RawWrite or Write at a time.
func (d *FD) RawWrite(trap uintptr, arg unsafe.Pointer, a3 uintptr, size int) (int, error) {
	return d.wr.rawDo(trap, arg, a3, size)
}

// writev2 writes a then b with as few writev(2) calls as the pipe allows
// (StreamConn: a frame's header and payload in one call). It returns the
// bytes written: all of them, or fewer with an error.
func (d *FD) writev2(a, b []byte) (int, error) {
	o := &d.wr
	o.cnt = 0
	for _, p := range [2][]byte{a, b} {
		if len(p) > 0 {
			o.iov[o.cnt].Base = &p[0]
			o.iov[o.cnt].SetLen(len(p))
			o.cnt++
		}
	}
	if o.cnt == 0 {
		return 0, nil
	}
	n, err := o.do()
	o.iov = [2]unix.Iovec{}
	return n, err
}

// SetReadDeadline sets the read deadline; a Read waiting looks at it at
// once.
func (d *FD) SetReadDeadline(t time.Time) error { return d.rd.setDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (d *FD) SetWriteDeadline(t time.Time) error { return d.wr.setDeadline(t) }

// SetDeadline sets both deadlines.
func (d *FD) SetDeadline(t time.Time) error {
	if err := d.rd.setDeadline(t); err != nil {
		return err
	}
	return d.wr.setDeadline(t)
}

// Close closes the descriptor. A call waiting returns os.ErrClosed at
// once: Close kicks one in ppoll and closes the duplicate one in the
// poller waits on. Close does not wait for it: the os.File is not
// pollable, so its Close only marks it closed, and close(2) comes when the
// call's reference (RawConn Read or Write) goes, so the descriptor number
// is never reused under a call.
func (d *FD) Close() error {
	if d.closed.Swap(true) {
		return d.f.Close() // the os.File's error for a second Close
	}
	d.mu.Lock()
	if d.kick >= 0 {
		if d.waiting > 0 {
			d.kickLocked() // the last waiter closes it
		} else {
			unix.Close(d.kick)
			d.kick = -1
		}
	}
	rpf, wpf := d.rd.pf, d.wr.pf
	for _, t := range []*time.Timer{d.rd.timer, d.wr.timer} {
		if t != nil {
			t.Stop()
		}
	}
	d.mu.Unlock()
	// Outside mu: closing a pollable file waits for the call using it,
	// which takes mu on its way out.
	for _, pf := range []*os.File{rpf, wpf} {
		if pf != nil {
			_ = pf.Close()
		}
	}
	return d.f.Close()
}

// kickLocked makes a wait in ppoll return. d.mu is held.
func (d *FD) kickLocked() {
	if d.kick < 0 {
		return
	}
	one := uint64(1)
	// unsafe: the kernel reads the 8 bytes of one during the call.
	// EAGAIN (counter full) still leaves the eventfd readable.
	_, _, _ = unix.Syscall(unix.SYS_WRITE, uintptr(d.kick), uintptr(unsafe.Pointer(&one)), 8)
}

// fdOp is the state of a Read or of a Write on an FD, kept so that a call
// allocates nothing: the callbacks are bound once.
type fdOp struct {
	d     *FD
	write bool
	dl    atomic.Int64 // deadline, Unix nanoseconds; 0: none
	// past is set once the deadline has passed, by setDeadline or by
	// timer, so that a call that need not wait does not read the clock.
	past  atomic.Bool
	timer *time.Timer // calls o.expire at the deadline (d.mu)
	fire  func()      // o.expire, bound once

	iov [2]unix.Iovec // what is left to read into or write
	cnt int
	// A RawRead or RawWrite: trap(fd, arg, a3), moving at most size
	// bytes, instead of read, write or writev on iov.
	trap uintptr
	arg  unsafe.Pointer
	a3   uintptr
	size int
	n    int
	err  error
	fds  [2]unix.PollFd
	ts   unix.Timespec
	run  func(fd uintptr) bool // o.loop, for the RawConn
	try  func(fd uintptr) bool // o.attempt, for the poller's RawConn
	pf   *os.File              // while waiting in the poller: a duplicate, registered there (d.mu)
	// inPoll is set while pf is; leave asks the wait in the poller to go
	// back to ppoll (see leavePoll).
	inPoll, leave atomic.Bool
	waitd         time.Duration // time waited in the kernel during this call
	ready         bool          // the last ppoll found the descriptor ready
	waited        bool          // this call waited, in ppoll or the poller
}

func (o *fdOp) init(d *FD, write bool) {
	o.d, o.write = d, write
	o.run, o.try, o.fire = o.loop, o.attempt, o.expire
}

// other returns the op of the other direction.
func (o *fdOp) other() *fdOp {
	if o.write {
		return &o.d.rd
	}
	return &o.d.wr
}

// leavePoll takes a call waiting in the poller back to ppoll, because the
// other direction has traffic. On a socket, one descriptor carries both
// directions, and the poller registers a duplicate for both: while a Recv
// waits there, each message the peer reads makes room here, an event that
// wakes the poller's thread for nothing (a fifth of the 64 B message rate
// of the other direction, measured). A wait in ppoll asks for one
// direction only, and the other's events do not wake it.
func (o *fdOp) leavePoll() {
	o.d.mu.Lock()
	if o.pf != nil {
		o.leave.Store(true)
		_ = o.pf.SetDeadline(time.Now())
	}
	o.d.mu.Unlock()
}

// expire runs at the deadline: it sets past if the deadline (which may
// have moved since the timer was set) has come, and ends a wait in ppoll.
func (o *fdOp) expire() {
	o.d.mu.Lock()
	if o.expired() {
		o.past.Store(true)
		if o.d.waiting > 0 {
			o.d.kickLocked()
		}
	}
	o.d.mu.Unlock()
}

func (o *fdOp) opName() string {
	if o.write {
		return "write"
	}
	return "read"
}

func (o *fdOp) setDeadline(t time.Time) error {
	if o.d.closed.Load() {
		return o.pathErr(os.ErrClosed)
	}
	var ns int64
	if !t.IsZero() {
		ns = max(t.UnixNano(), 1)
	}
	o.d.mu.Lock()
	o.dl.Store(ns)
	if o.timer != nil {
		o.timer.Stop() // if it fires anyway, expire looks at dl
	}
	left := time.Until(t)
	o.past.Store(ns != 0 && left <= 0)
	if ns != 0 && left > 0 {
		if o.timer == nil {
			o.timer = time.AfterFunc(left, o.fire)
		} else {
			o.timer.Reset(left)
		}
	}
	if o.pf != nil {
		_ = o.pf.SetDeadline(time.Now()) // the wait in the poller ends and re-arms
	}
	if o.d.waiting > 0 {
		o.d.kickLocked()
	}
	o.d.mu.Unlock()
	return nil
}

func (o *fdOp) pathErr(err error) error {
	return &os.PathError{Op: o.opName(), Path: o.d.name, Err: err}
}

// expired reports whether the deadline has passed.
func (o *fdOp) expired() bool {
	dl := o.dl.Load()
	return dl != 0 && time.Now().UnixNano() >= dl
}

// rawDo runs trap(fd, arg, a3) as do runs a read or write.
func (o *fdOp) rawDo(trap uintptr, arg unsafe.Pointer, a3 uintptr, size int) (int, error) {
	o.trap, o.arg, o.a3, o.size = trap, arg, a3, size
	n, err := o.do()
	o.trap, o.arg = 0, nil // keep no reference to the caller's memory
	return n, err
}

// do runs the call. The RawConn's Read or Write holds a reference on the
// descriptor for the whole call, waits included (see Close).
func (o *fdOp) do() (int, error) {
	if o.past.Load() && o.expired() {
		return 0, o.pathErr(os.ErrDeadlineExceeded)
	}
	o.n, o.err, o.waitd = 0, nil, 0
	if p := o.other(); p.inPoll.Load() {
		p.leavePoll()
	}
	var err error
	if o.write {
		err = o.d.raw.Write(o.run)
	} else {
		err = o.d.raw.Read(o.run)
	}
	if err != nil { // closed before the call began
		return 0, o.pathErr(os.ErrClosed)
	}
	if o.waited && o.err == nil {
		o.d.act.Woke()
	}
	return o.n, o.err
}

// attempt makes the system call until it is done (true, result in o.n and
// o.err) or would block (false). A write goes on after a partial write
// until all is written.
func (o *fdOp) attempt(fd uintptr) bool {
	for {
		// unsafe: the iovecs point into the caller's buffers, which Read
		// and writev2 keep alive until the call returns; the kernel reads
		// them during the call only.
		//
		// The descriptor is non-blocking, so the call never sleeps: for a
		// small transfer RawSyscall spares the runtime's bookkeeping of a
		// system call that may block (entersyscall, exitsyscall), a tenth
		// of the cost of a small message. A large one may take tens of
		// microseconds copying, during which the runtime should be free
		// to hand the processor over: Syscall.
		sys := unix.RawSyscall
		if o.iov[0].Len+o.iov[1].Len > rawMax || o.size > rawMax {
			sys = unix.Syscall
		}
		var r uintptr
		var e syscall.Errno
		if o.trap != 0 {
			// unsafe: arg is the caller's (a msghdr or iovecs), kept
			// alive and unchanged by RawRead or RawWrite's caller until
			// it returns. The socket is non-blocking, as above.
			r, _, e = sys(o.trap, fd, uintptr(o.arg), o.a3)
		} else if o.cnt == 1 { // read(2) or write(2): no iovec to copy in
			trap := uintptr(unix.SYS_READ)
			if o.write {
				trap = unix.SYS_WRITE
			}
			r, _, e = sys(trap, fd, uintptr(unsafe.Pointer(o.iov[0].Base)), uintptr(o.iov[0].Len))
		} else {
			r, _, e = sys(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&o.iov[0])), uintptr(o.cnt))
		}
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			o.err = o.pathErr(e)
			return true
		}
		n := int(r)
		o.n += n
		if !o.write || o.trap != 0 || o.advance(n) {
			return true
		}
	}
}

// advance drops n written bytes from the iovecs and reports whether none
// are left.
func (o *fdOp) advance(n int) bool {
	for n > 0 && o.cnt > 0 {
		l := int(o.iov[0].Len)
		if n < l {
			o.iov[0].Base = (*byte)(unsafe.Add(unsafe.Pointer(o.iov[0].Base), n)) // still inside the caller's buffer
			o.iov[0].SetLen(l - n)
			return false
		}
		n -= l
		o.iov[0], o.iov[1] = o.iov[1], unix.Iovec{}
		o.cnt--
	}
	return o.cnt == 0
}

// loop is the RawConn callback: it makes the call, waiting while it would
// block, first in ppoll if the connection is busy and the process has a
// thread to spare for it (kwait), then in the poller.
func (o *fdOp) loop(fd uintptr) bool {
	gosched := true
	o.ready, o.waited = false, false
	spins := 0
	held := false // a kwait place, while this call waits in ppoll
	defer func() {
		if held {
			kwait.Release()
		}
	}()
	for !o.attempt(fd) {
		if !o.waited {
			o.waited = true
			if held = o.d.act.Begin(); !held {
				o.waitd = kernelWait // idle, or threads enough wait: the poller
			}
		}
		if o.ready {
			// ppoll said ready, the call still would block: a socket
			// may poll writable with less room than a packet needs. Do
			// not spin on it: after a few, the poller, which waits for
			// the next change, is the better place.
			spins++
			o.ready = false
		}
		if o.waitd >= kernelWait || spins > maxSpins {
			if held {
				kwait.Release()
				held = false
			}
			if o.pollWait(fd) {
				return true
			}
			// Not pollable, or traffic the other way (leavePoll): go
			// on in ppoll, a slice at a time. Such a wait holds its
			// thread whether or not a place is free; it counts if one is.
			o.waitd, spins = 0, 0
			held = kwait.TryAcquire()
		}
		if gosched {
			// With a single P, let the goroutines that are ready run
			// first: ppoll keeps the P from them until the runtime takes
			// it back (20 µs to 10 ms later), and one of them may be the
			// peer. With more, an idle P runs them, and Gosched would
			// only cost this call a trip through the scheduler (a few
			// per cent of a small message's rate, measured).
			gosched = false
			if runtime.GOMAXPROCS(0) == 1 {
				runtime.Gosched()
			}
		}
		// Then ppoll, not another try: it returns at once if the pipe
		// is ready, and unlike a read or write it does not take the
		// pipe's lock, which the peer's call may hold.
		if err := o.kernelWaitOnce(fd); err != nil {
			o.err = err
			return true
		}
	}
	return true
}

// kernelWaitOnce waits in ppoll(2) until the descriptor is ready, a kick,
// the deadline, or the end of what is left of kernelWait.
func (o *fdOp) kernelWaitOnce(fd uintptr) error {
	d := o.d
	d.mu.Lock()
	if d.closed.Load() {
		d.mu.Unlock()
		return o.pathErr(os.ErrClosed)
	}
	if d.kick < 0 {
		k, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			d.mu.Unlock()
			o.waitd = kernelWait // no kick: wait in the poller
			return nil
		}
		d.kick = k
	}
	d.waiting++
	kick := d.kick
	d.mu.Unlock()

	wait := kernelWait - o.waitd
	if dl := o.dl.Load(); dl != 0 {
		left := time.Duration(dl - time.Now().UnixNano())
		if left <= 0 {
			d.doneWaiting()
			return o.pathErr(os.ErrDeadlineExceeded)
		}
		wait = min(wait, left)
	}
	ev := int16(unix.POLLIN)
	if o.write {
		ev = unix.POLLOUT
	}
	o.fds[0] = unix.PollFd{Fd: int32(fd), Events: ev}
	o.fds[1] = unix.PollFd{Fd: int32(kick), Events: unix.POLLIN}
	o.ts = unix.NsecToTimespec(int64(wait))
	// unsafe: fds and ts are read (fds written) by the kernel during the
	// call only. The descriptor is held by the RawConn call; kick stays
	// open while waiting > 0.
	_, _, e := unix.Syscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&o.fds[0])), 2,
		uintptr(unsafe.Pointer(&o.ts)), 0, 0, 0)
	if e == 0 && o.fds[1].Revents&unix.POLLIN != 0 {
		var b [8]byte
		// unsafe: the kernel writes b during the call. Drain the kick.
		_, _, _ = unix.Syscall(unix.SYS_READ, uintptr(kick), uintptr(unsafe.Pointer(&b[0])), 8)
	} else if e == 0 && o.fds[0].Revents == 0 {
		o.waitd += wait // timed out: the slice counts
	} else if e == 0 {
		o.ready = true
	}
	d.doneWaiting()
	if e != 0 && e != unix.EINTR {
		return o.pathErr(e)
	}
	if d.closed.Load() {
		return o.pathErr(os.ErrClosed)
	}
	return nil
}

// doneWaiting ends a wait on the kick; the last waiter after Close closes
// it.
func (d *FD) doneWaiting() {
	d.mu.Lock()
	d.waiting--
	if d.waiting == 0 && d.closed.Load() && d.kick >= 0 {
		unix.Close(d.kick)
		d.kick = -1
	}
	d.mu.Unlock()
}

// pollWait waits in the runtime poller until the call is done, through a
// duplicate of the descriptor registered there for this wait only: it
// shares the open file description, which is non-blocking, so os.NewFile
// registers it; its Close removes it from epoll before close(2). Close
// closes it to end the wait, SetDeadline moves its deadline. It returns
// false, having done nothing, if the descriptor cannot enter the poller
// (pipes, FIFOs and sockets can), or once a call in the other direction
// asks it to leave (leavePoll).
func (o *fdOp) pollWait(fd uintptr) bool {
	d := o.d
	d.mu.Lock()
	if d.closed.Load() {
		d.mu.Unlock()
		o.err = o.pathErr(os.ErrClosed)
		return true
	}
	if d.noPoll {
		d.mu.Unlock()
		return false
	}
	pfd, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		d.mu.Unlock()
		o.err = o.pathErr(err)
		return true
	}
	pf := os.NewFile(uintptr(pfd), d.name)
	praw, err := pf.SyscallConn()
	if err != nil || pf.SetDeadline(time.Time{}) != nil { // not in the poller
		d.noPoll = true
		d.mu.Unlock()
		pf.Close()
		return false
	}
	o.pf = pf
	o.inPoll.Store(true)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		o.pf = nil
		o.inPoll.Store(false)
		o.leave.Store(false)
		d.mu.Unlock()
		_ = pf.Close() // a second Close after FD.Close: harmless
	}()
	for {
		d.mu.Lock()
		if d.closed.Load() {
			d.mu.Unlock()
			o.err = o.pathErr(os.ErrClosed)
			return true
		}
		if o.leave.Load() { // traffic the other way: back to ppoll
			d.mu.Unlock()
			return false
		}
		var t time.Time
		if dl := o.dl.Load(); dl != 0 {
			t = time.Unix(0, dl)
			if !time.Now().Before(t) {
				d.mu.Unlock()
				o.err = o.pathErr(os.ErrDeadlineExceeded)
				return true
			}
		}
		_ = pf.SetDeadline(t)
		d.mu.Unlock()
		if o.write {
			err = praw.Write(o.try)
		} else {
			err = praw.Read(o.try)
		}
		if err == nil {
			return true // o.n, o.err
		}
		// A deadline the setter moved to now, or Close: look again.
		if d.closed.Load() {
			o.err = o.pathErr(os.ErrClosed)
			return true
		}
		if !IsTimeout(err) {
			o.err = o.pathErr(err)
			return true
		}
	}
}
