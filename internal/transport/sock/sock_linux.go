package sock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport"
)

func init() {
	transport.Register("unix", transport.Driver{Listen: listenStream, Dial: dialStream})
	transport.Register("unixpacket", transport.Driver{Listen: listenPacket, Dial: dialPacket})
	transport.Register("tcp", transport.Driver{Listen: listenTCP, Dial: dialTCP})
}

// oobSize is a control buffer that holds MaxFiles descriptors.
var oobSize = unix.CmsgSpace(MaxFiles * 4)

// listener is the Listener of every transport of this package: Accepts run
// one at a time (each waits for its turn, its context or Close), so that one
// Accept's context moving the socket's deadline cannot disturb another.
type listener struct {
	nl    net.Listener
	setDL func(time.Time) error
	// wrap turns an accepted connection into a message connection; it
	// returns nil (having closed nc) to skip a peer that is not allowed.
	wrap func(nc net.Conn) transport.Conn
	file *sockFile // Unix sockets: the file to remove on Close

	turn   chan struct{}
	done   chan struct{}
	closed atomic.Bool
	failed atomic.Uint64 // connections wrap skipped
}

func newListener(nl net.Listener, setDL func(time.Time) error, wrap func(net.Conn) transport.Conn) *listener {
	return &listener{nl: nl, setDL: setDL, wrap: wrap, turn: make(chan struct{}, 1), done: make(chan struct{})}
}

// Accept waits for the next connection whose peer is allowed; connections
// from other peers are closed and skipped.
func (l *listener) Accept(ctx context.Context) (transport.Conn, error) {
	if l.closed.Load() {
		return nil, net.ErrClosed
	}
	select {
	case l.turn <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-l.turn }()
	var none transport.Deadline
	for {
		var nc net.Conn
		err := transport.WithContext(ctx, &none, l.setDL, func() error {
			var err error
			nc, err = l.nl.Accept()
			return err
		})
		if err != nil {
			if l.closed.Load() {
				return nil, net.ErrClosed
			}
			return nil, transport.Closed(err)
		}
		if c := l.wrap(nc); c != nil {
			return c, nil
		}
		l.failed.Add(1)
	}
}

// SetupStats counts the connections Accept closed and skipped (peers not
// allowed). The set-up needs nothing from the peer, so none is ever
// pending: it runs in Accept.
func (l *listener) SetupStats() transport.SetupStats {
	return transport.SetupStats{Failed: l.failed.Load()}
}

// Close stops listening, removes the socket file Listen created (if it is
// still the same file) and makes blocked Accepts return net.ErrClosed.
func (l *listener) Close() error {
	if l.closed.Swap(true) {
		return net.ErrClosed
	}
	close(l.done)
	var err error
	if l.file != nil {
		err = l.file.remove()
	}
	if cerr := l.nl.Close(); err == nil {
		err = transport.Closed(cerr)
	}
	return err
}

// Addr returns the listening address.
func (l *listener) Addr() net.Addr { return l.nl.Addr() }

// peerCred reads SO_PEERCRED.
func peerCred(c syscall.Conn) (Cred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	var uc *unix.Ucred
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		uc, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, err
	}
	if gerr != nil {
		return Cred{}, os.NewSyscallError("getsockopt SO_PEERCRED", gerr)
	}
	return Cred{PID: int(uc.Pid), UID: int(uc.Uid), GID: int(uc.Gid)}, nil
}

// allowed reports whether uid is in list; a nil list allows everyone.
func allowed(list []int, uid int) bool {
	if list == nil {
		return true
	}
	for _, u := range list {
		if u == uid {
			return true
		}
	}
	return false
}

// netErr strips the *net.OpError of a dial or listen: the root package
// adds its own operation and address.
func netErr(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// withFDs calls fn with the descriptors of files, which stay open (and are
// not switched to blocking mode, as File.Fd would) while fn runs.
func withFDs(files []*os.File, fds []int, fn func(fds []int) error) error {
	if len(files) == 0 {
		return fn(fds)
	}
	if files[0] == nil {
		return fmt.Errorf("%w: nil *os.File", ipcerr.ErrBadConfig)
	}
	rc, err := files[0].SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		ferr = withFDs(files[1:], append(fds, int(fd)), fn)
	}); err != nil {
		return err
	}
	return ferr
}

// checkFiles refuses more descriptors than one message can carry.
func checkFiles(files []*os.File) error {
	if len(files) > MaxFiles {
		return fmt.Errorf("%w: %d descriptors, at most %d per message", ipcerr.ErrMessageTooLarge, len(files), MaxFiles)
	}
	return nil
}

// rights returns the descriptors in a control buffer.
func rights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if msgs[i].Header.Level == unix.SOL_SOCKET && msgs[i].Header.Type == unix.SCM_RIGHTS {
			f, err := unix.ParseUnixRights(&msgs[i])
			if err == nil {
				fds = append(fds, f...)
			}
		}
	}
	return fds
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

func toFiles(fds []int) []*os.File {
	if len(fds) == 0 {
		return nil
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("ipc-fd-%d", fd))
	}
	return files
}

// sockConn is a connected Unix socket out of the runtime poller: its
// descriptor, in a transport.FD, and the addresses of the net.UnixConn it
// came from.
type sockConn struct {
	fd            *transport.FD
	local, remote net.Addr
}

// detach takes the socket of uc out of the runtime poller. A descriptor
// registered with epoll costs every write on the other end the poller's
// wake-up callback; a transport.FD waits without it (ppoll, then the
// poller only for long waits). detach duplicates the descriptor
// (F_DUPFD_CLOEXEC: the duplicate shares the open file description), then
// closes uc, which removes its descriptor from epoll (EPOLL_CTL_DEL) and
// closes it; the duplicate was never registered. uc is closed in any case.
// It serves Unix and TCP connections.
func detach(uc interface {
	net.Conn
	syscall.Conn
}) (*sockConn, error) {
	local, remote := uc.LocalAddr(), uc.RemoteAddr()
	rc, err := uc.SyscallConn()
	if err != nil {
		_ = uc.Close()
		return nil, err
	}
	dup := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		_ = uc.Close()
		return nil, err
	}
	_ = uc.Close()
	if derr != nil {
		return nil, os.NewSyscallError("fcntl", derr)
	}
	name := "unix"
	if remote != nil && remote.String() != "" {
		name = remote.String()
	} else if local != nil && local.String() != "" {
		name = local.String()
	}
	fd, err := transport.NewFD(dup, name) // closes dup on error
	if err != nil {
		return nil, err
	}
	return &sockConn{fd: fd, local: local, remote: remote}, nil
}

// rawIO does recvmsg, readv and sendmsg on a socket through its
// transport.FD, which waits as it does for reads and writes, without the
// allocations of the net package's message calls. A rawIO is used by one
// goroutine at a time for each direction.
type rawIO struct {
	fd *transport.FD

	rmsg unix.Msghdr
	riov [2]unix.Iovec

	wmsg unix.Msghdr
	wiov [2]unix.Iovec
}

func newRawIO(fd *transport.FD) *rawIO { return &rawIO{fd: fd} }

// awaitReadable polls the socket without sleeping, for at most d, until it
// is readable; the read that follows then need not wait. It is for data
// known to be on its way (the rest of a message), where a sleep would cost
// a wake-up far longer than the wait.
func (r *rawIO) awaitReadable(d time.Duration) {
	_ = r.fd.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		start := time.Now()
		for {
			// poll(2) with a zero timeout only reports readiness.
			if n, err := unix.Poll(pfd, 0); n > 0 || (err != nil && err != unix.EINTR) {
				return
			}
			if time.Since(start) >= d {
				return
			}
		}
	})
}

func setIov(iov *unix.Iovec, b []byte) {
	if len(b) == 0 {
		iov.Base, iov.Len = nil, 0
		return
	}
	iov.Base = &b[0]
	iov.SetLen(len(b))
}

func setControl(m *unix.Msghdr, oob []byte) {
	if len(oob) == 0 {
		m.Control = nil
		m.SetControllen(0)
		return
	}
	m.Control = &oob[0]
	m.SetControllen(len(oob))
}

// recv reads one recvmsg into a then b (b may be nil), with control buffer
// oob. It returns the bytes read, the control bytes and the returned flags.
func (r *rawIO) recv(a, b, oob []byte, flags int) (n, oobn, outFlags int, err error) {
	setIov(&r.riov[0], a)
	setIov(&r.riov[1], b)
	r.rmsg.Iov = &r.riov[0]
	r.rmsg.SetIovlen(2)
	setControl(&r.rmsg, oob)
	r.rmsg.Flags = 0
	// unsafe: rmsg, its iovecs and the buffers they point to (a, b, oob,
	// all the caller's) stay alive and unchanged until RawRead returns;
	// the kernel writes them during the call only.
	n, err = r.fd.RawRead(unix.SYS_RECVMSG, unsafe.Pointer(&r.rmsg), uintptr(flags), len(a)+len(b))
	oobn, outFlags = int(r.rmsg.Controllen), int(r.rmsg.Flags)
	r.riov = [2]unix.Iovec{} // keep no reference to the caller's buffers
	r.rmsg.Control = nil
	if err != nil {
		return 0, 0, 0, err
	}
	return n, oobn, outFlags, nil
}

// readv reads into a then b with one readv(2), cheaper than recvmsg(2) by
// about 200 ns here: for reads that want no descriptors (on a socket, the
// kernel closes any that come).
func (r *rawIO) readv(a, b []byte) (int, error) {
	setIov(&r.riov[0], a)
	setIov(&r.riov[1], b)
	// unsafe: the iovecs and the caller's buffers they point to stay alive
	// until RawRead returns.
	n, err := r.fd.RawRead(unix.SYS_READV, unsafe.Pointer(&r.riov[0]), 2, len(a)+len(b))
	r.riov = [2]unix.Iovec{}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// send writes a then b with one sendmsg and control bytes oob; on a stream
// socket it may write less than all. MSG_NOSIGNAL: a peer gone is EPIPE,
// not SIGPIPE.
func (r *rawIO) send(a, b, oob []byte) (int, error) {
	setIov(&r.wiov[0], a)
	setIov(&r.wiov[1], b)
	r.wmsg.Iov = &r.wiov[0]
	r.wmsg.SetIovlen(2)
	setControl(&r.wmsg, oob)
	// unsafe: wmsg, its iovecs and the caller's buffers stay alive and
	// unchanged until RawWrite returns; the kernel reads them during the
	// call only.
	n, err := r.fd.RawWrite(unix.SYS_SENDMSG, unsafe.Pointer(&r.wmsg), unix.MSG_NOSIGNAL, len(a)+len(b))
	r.wiov = [2]unix.Iovec{}
	r.wmsg.Control = nil
	return n, err
}

// fdQueue keeps received descriptors until the message they came with is
// handed out; Close closes those left.
type fdQueue struct {
	mu     sync.Mutex
	q      []fdBatch
	closed bool
}

// fdBatch holds the descriptors of one read that ended at stream offset end.
type fdBatch struct {
	end int64
	fds []int
}

func (q *fdQueue) add(end int64, fds []int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		closeFDs(fds)
		return
	}
	q.q = append(q.q, fdBatch{end, fds})
}

// take returns the descriptors of the message at stream offsets
// [start, end): those of reads that ended inside it. Batches ending before
// it (which a well-behaved peer never produces) are closed.
func (q *fdQueue) take(start, end int64) []int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) == 0 {
		return nil
	}
	var fds []int
	keep := q.q[:0]
	for _, b := range q.q {
		switch {
		case b.end <= start:
			closeFDs(b.fds)
		case b.end <= end:
			fds = append(fds, b.fds...)
		default:
			keep = append(keep, b)
		}
	}
	clear(q.q[len(keep):])
	q.q = keep
	return fds
}

func (q *fdQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, b := range q.q {
		closeFDs(b.fds)
	}
	q.q = nil
}
