//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The raw baselines move the same fixed-size messages as the framed
// transports over the same kinds of descriptors, with plain blocking
// read(2)/write(2) loops (mq_timedsend(2)/mq_timedreceive(2) for queues)
// and no framing. Packet kinds (SOCK_SEQPACKET, queues) send a message
// larger than one packet as several packets: SOCK_SEQPACKET sockets ask for
// the SO_SNDBUF the unixpacket transport asks for, and a packet carries at
// most what the kernel then allows (SO_SNDBUF-32 bytes); a queue message
// carries at most queueChunk bytes.
const (
	packetSndbuf = 4 << 20
	queueChunk   = 8192 // the default Config.QueueMsgSize
	queueDepth   = 10   // the default Config.QueueDepth
)

// packetChunk raises fd's SO_SNDBUF as the unixpacket transport does and
// returns the largest packet the kernel then takes.
func packetChunk(fd int) (int, error) {
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		return 0, err
	}
	if got < packetSndbuf {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, packetSndbuf); err != nil {
			return 0, err
		}
		if got, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF); err != nil {
			return 0, err
		}
	}
	return got - 32, nil
}

func newRawSetup(m *measurement) (setup, error) {
	switch m.name {
	case "raw-pipe":
		return &rawPipeSetup{m: m}, nil
	case "raw-unix":
		return &rawSockSetup{m: m, domain: unix.AF_UNIX, typ: unix.SOCK_STREAM}, nil
	case "raw-unixpacket":
		return &rawSockSetup{m: m, domain: unix.AF_UNIX, typ: unix.SOCK_SEQPACKET}, nil
	case "raw-tcp":
		return &rawSockSetup{m: m, domain: unix.AF_INET, typ: unix.SOCK_STREAM}, nil
	case "raw-fifo":
		return &rawFIFOSetup{m: m}, nil
	case "raw-posixmq":
		return &rawMQSetup{m: m}, nil
	case SpinBaseline:
		return &spinSetup{m: m}, nil
	}
	return nil, fmt.Errorf("unknown baseline %q", m.name)
}

func rawPeer(a peerArgs) error {
	switch a.transport {
	case "raw-pipe":
		return rawPipePeer(a)
	case "raw-unix", "raw-unixpacket", "raw-tcp":
		return rawSockPeer(a)
	case "raw-fifo":
		return rawFIFOPeer(a)
	case "raw-posixmq":
		return rawMQPeer(a)
	case SpinBaseline:
		return spinPeer(a)
	}
	return fmt.Errorf("unknown baseline %q", a.transport)
}

// fdEndpoint is an endpoint over descriptors in blocking mode.
type fdEndpoint struct {
	r, w  int
	chunk int // > 0: a packet kind, one system call per chunk
	fds   []int
	files []*os.File // kept open (and alive) until close
}

// errno maps the errors of a peer that went away to io.EOF.
func errno(err error) error {
	switch {
	case errors.Is(err, unix.EPIPE), errors.Is(err, unix.ECONNRESET), errors.Is(err, unix.ENOTCONN):
		return io.EOF
	}
	return err
}

func (e *fdEndpoint) send(b []byte) error {
	if e.chunk > 0 {
		for off := 0; off < len(b); off += e.chunk {
			c := b[off:min(off+e.chunk, len(b))]
			n, err := unix.Write(e.w, c)
			for err == unix.EINTR {
				n, err = unix.Write(e.w, c)
			}
			if err != nil {
				return errno(err)
			}
			if n != len(c) {
				return fmt.Errorf("short packet write: %d of %d bytes", n, len(c))
			}
		}
		return nil
	}
	for len(b) > 0 {
		n, err := unix.Write(e.w, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return errno(err)
		}
		b = b[n:]
	}
	return nil
}

func (e *fdEndpoint) recv(b []byte) ([]byte, error) {
	if e.chunk > 0 { // one packet per read, however the sender cut the message
		for off := 0; off < len(b); {
			n, err := unix.Read(e.r, b[off:])
			for err == unix.EINTR {
				n, err = unix.Read(e.r, b[off:])
			}
			switch {
			case err != nil:
				return nil, errno(err)
			case n == 0:
				return nil, io.EOF
			}
			off += n
		}
		return b, nil
	}
	for off := 0; off < len(b); {
		n, err := unix.Read(e.r, b[off:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, errno(err)
		}
		if n == 0 {
			if off > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, io.EOF
		}
		off += n
	}
	return b, nil
}

func (e *fdEndpoint) setDeadline(time.Time) {} // the watchdog kills a stuck peer: reads see EOF

func (e *fdEndpoint) close() error {
	for _, fd := range e.fds {
		_ = unix.Close(fd)
	}
	closeAll(e.files)
	return nil
}

// blocking puts fds in blocking mode.
func blocking(fds ...int) error {
	for _, fd := range fds {
		if err := unix.SetNonblock(fd, false); err != nil {
			return err
		}
	}
	return nil
}

// rawPipeSetup: two pipes, inherited by the peer as descriptors 3 (its
// read end) and 4 (its write end).
type rawPipeSetup struct {
	m     *measurement
	files []*os.File // the parent's ends: read, write
}

func (s *rawPipeSetup) prepare() ([]string, []*os.File, error) {
	// pipe2(2) rather than os.Pipe: an os.Pipe is registered with the
	// runtime's poller (epoll), and a registered pipe costs every write
	// the poller's wake-up callback, about a third of the 64 B message
	// rate here. The raw baselines use no poller; their descriptors are
	// blocking from the start and wrapped in files only to be closed.
	var up, down [2]int
	if err := unix.Pipe2(up[:], unix.O_CLOEXEC); err != nil { // peer -> parent
		return nil, nil, err
	}
	if err := unix.Pipe2(down[:], unix.O_CLOEXEC); err != nil { // parent -> peer
		unix.Close(up[0])
		unix.Close(up[1])
		return nil, nil, err
	}
	pr, cw := os.NewFile(uintptr(up[0]), "raw-pipe-r"), os.NewFile(uintptr(up[1]), "raw-pipe-cw")
	cr, pw := os.NewFile(uintptr(down[0]), "raw-pipe-cr"), os.NewFile(uintptr(down[1]), "raw-pipe-w")
	s.files = []*os.File{pr, pw}
	return nil, []*os.File{cr, cw}, nil
}

func (s *rawPipeSetup) start(cmd *exec.Cmd) error { return cmd.Start() }

func (s *rawPipeSetup) connect(context.Context) (session, error) {
	r, w := int(s.files[0].Fd()), int(s.files[1].Fd())
	files := s.files
	s.files = nil
	return &msgSession{ep: &fdEndpoint{r: r, w: w, files: files}, size: s.m.size}, nil
}

func (s *rawPipeSetup) cleanup() { closeAll(s.files) }

func rawPipePeer(a peerArgs) error {
	if err := blocking(3, 4); err != nil {
		return err
	}
	return serve(&fdEndpoint{r: 3, w: 4, fds: []int{3, 4}}, a.size)
}

// rawSockSetup: a socket the parent listens on and the peer connects to.
type rawSockSetup struct {
	m           *measurement
	domain, typ int
	lfd         int
	path        string
}

func (s *rawSockSetup) prepare() ([]string, []*os.File, error) {
	s.lfd = -1
	fd, err := unix.Socket(s.domain, s.typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	s.lfd = fd
	var addr string
	if s.domain == unix.AF_UNIX {
		s.path = filepath.Join(s.m.dir, fmt.Sprintf("%s-%d.sock", s.m.name, s.m.seq))
		if err := unix.Bind(fd, &unix.SockaddrUnix{Name: s.path}); err != nil {
			return nil, nil, fmt.Errorf("bind %s: %w", s.path, err)
		}
		addr = s.path
	} else {
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return nil, nil, fmt.Errorf("bind: %w", err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return nil, nil, err
		}
		addr = "127.0.0.1:" + strconv.Itoa(sa.(*unix.SockaddrInet4).Port)
	}
	if err := unix.Listen(fd, 1); err != nil {
		return nil, nil, err
	}
	return []string{"--addr", addr}, nil, nil
}

func (s *rawSockSetup) start(cmd *exec.Cmd) error { return cmd.Start() }

func (s *rawSockSetup) connect(ctx context.Context) (session, error) {
	if err := waitReadable(ctx, s.lfd); err != nil {
		return nil, err
	}
	fd, _, err := unix.Accept4(s.lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	chunk, err := sockOpts(fd, s.domain, s.typ)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	s.cleanup() // the listener is no longer needed
	return &msgSession{ep: &fdEndpoint{r: fd, w: fd, chunk: chunk, fds: []int{fd}}, size: s.m.size}, nil
}

// sockOpts sets TCP_NODELAY on TCP sockets and the send buffer of packet
// sockets; it returns the packet size of the latter (0 for streams).
func sockOpts(fd, domain, typ int) (int, error) {
	if domain == unix.AF_INET {
		return 0, unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	if typ == unix.SOCK_SEQPACKET {
		return packetChunk(fd)
	}
	return 0, nil
}

// waitReadable waits until fd is readable, as long as ctx allows.
func waitReadable(ctx context.Context, fd int) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 20)
		if err != nil && err != unix.EINTR {
			return err
		}
		if n > 0 {
			return nil
		}
	}
}

func (s *rawSockSetup) cleanup() {
	if s.lfd >= 0 {
		_ = unix.Close(s.lfd)
		s.lfd = -1
	}
	if s.path != "" {
		_ = os.Remove(s.path)
	}
}

func rawSockPeer(a peerArgs) error {
	var domain, typ int
	var sa unix.Sockaddr
	switch a.transport {
	case "raw-unix":
		domain, typ, sa = unix.AF_UNIX, unix.SOCK_STREAM, &unix.SockaddrUnix{Name: a.addr}
	case "raw-unixpacket":
		domain, typ, sa = unix.AF_UNIX, unix.SOCK_SEQPACKET, &unix.SockaddrUnix{Name: a.addr}
	case "raw-tcp":
		host, port, err := net.SplitHostPort(a.addr)
		if err != nil {
			return err
		}
		ip := net.ParseIP(host).To4()
		p, err := strconv.Atoi(port)
		if ip == nil || err != nil {
			return fmt.Errorf("bad address %q", a.addr)
		}
		in := &unix.SockaddrInet4{Port: p}
		copy(in.Addr[:], ip)
		domain, typ, sa = unix.AF_INET, unix.SOCK_STREAM, in
	}
	fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(fd, sa); err != nil {
		return fmt.Errorf("connect %s: %w", a.addr, err)
	}
	chunk, err := sockOpts(fd, domain, typ)
	if err != nil {
		return err
	}
	return serve(&fdEndpoint{r: fd, w: fd, chunk: chunk, fds: []int{fd}}, a.size)
}

// rawFIFOSetup: two FIFOs, parent to peer and peer to parent. Opening is
// ordered so that neither side blocks on a peer that never comes: the
// parent opens its reading end without blocking first, the peer then opens
// its writing end and (blocking) its reading end, and the parent opens its
// writing end, retrying until the peer's reader is there.
type rawFIFOSetup struct {
	m        *measurement
	p2c, c2p string
	rfd, wfd int
}

func (s *rawFIFOSetup) prepare() ([]string, []*os.File, error) {
	s.rfd, s.wfd = -1, -1
	base := filepath.Join(s.m.dir, fmt.Sprintf("%s-%d", s.m.name, s.m.seq))
	s.p2c, s.c2p = base+".p2c", base+".c2p"
	for _, p := range []string{s.p2c, s.c2p} {
		if err := unix.Mkfifo(p, 0o600); err != nil {
			return nil, nil, fmt.Errorf("mkfifo %s: %w", p, err)
		}
	}
	fd, err := unix.Open(s.c2p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	s.rfd = fd
	return []string{"--addr", s.p2c, "--addr2", s.c2p}, nil, nil
}

func (s *rawFIFOSetup) start(cmd *exec.Cmd) error { return cmd.Start() }

func (s *rawFIFOSetup) connect(ctx context.Context) (session, error) {
	for {
		fd, err := unix.Open(s.p2c, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == nil {
			s.wfd = fd
			break
		}
		if err != unix.ENXIO && err != unix.EINTR {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	if err := blocking(s.rfd, s.wfd); err != nil {
		return nil, err
	}
	ep := &fdEndpoint{r: s.rfd, w: s.wfd, fds: []int{s.rfd, s.wfd}}
	s.rfd, s.wfd = -1, -1
	return &msgSession{ep: ep, size: s.m.size}, nil
}

func (s *rawFIFOSetup) cleanup() {
	for _, fd := range []int{s.rfd, s.wfd} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
	s.rfd, s.wfd = -1, -1
	for _, p := range []string{s.p2c, s.c2p} {
		if p != "" {
			_ = os.Remove(p)
		}
	}
}

func rawFIFOPeer(a peerArgs) error {
	w, err := unix.Open(a.addr2, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	r, err := unix.Open(a.addr, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	return serve(&fdEndpoint{r: r, w: w, fds: []int{r, w}}, a.size)
}

// POSIX message queues, through the system calls.

type mqAttr struct {
	Flags, Maxmsg, Msgsize, Curmsgs int64
	_                               [4]int64
}

// mqName returns name without its leading slash, as the system calls want
// it, NUL-terminated.
func mqName(name string) (*byte, error) {
	if len(name) < 2 || name[0] != '/' {
		return nil, fmt.Errorf("bad queue name %q", name)
	}
	return unix.BytePtrFromString(name[1:])
}

func mqOpen(name string, flags int, attr *mqAttr) (int, error) {
	p, err := mqName(name)
	if err != nil {
		return -1, err
	}
	// unsafe: the name and attributes are passed to the kernel for the
	// duration of the call.
	fd, _, e := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(p)), uintptr(flags), 0o600,
		uintptr(unsafe.Pointer(attr)), 0, 0)
	if e != 0 {
		return -1, fmt.Errorf("mq_open %s: %w", name, e)
	}
	return int(fd), nil
}

func mqUnlink(name string) error {
	p, err := mqName(name)
	if err != nil {
		return err
	}
	// unsafe: as in mqOpen.
	if _, _, e := unix.Syscall(unix.SYS_MQ_UNLINK, uintptr(unsafe.Pointer(p)), 0, 0); e != 0 {
		return e
	}
	return nil
}

// mqEndpoint is an endpoint over two queues; a message larger than a queue
// message goes as several. The system calls time out after at most
// mqPoll, so that a peer that died (the queues do not tell) is noticed.
type mqEndpoint struct {
	r, w     int
	chunk    int
	scratch  []byte
	deadline time.Time
	until    unix.Timespec // CLOCK_REALTIME, as the system calls want it
	gone     func() bool   // reports that the peer has exited; may be nil
}

// mqPoll bounds each wait on a queue.
const mqPoll = 250 * time.Millisecond

func (e *mqEndpoint) setDeadline(t time.Time) {
	e.deadline = t
	e.refresh()
}

// refresh sets the timeout of the next system calls: mqPoll from now, or
// the deadline if sooner.
func (e *mqEndpoint) refresh() {
	t := time.Now().Add(mqPoll)
	if !e.deadline.IsZero() && e.deadline.Before(t) {
		t = e.deadline
	}
	e.until = unix.NsecToTimespec(t.UnixNano())
}

// timedOut decides what a timed-out system call means: retry (nil), the
// peer is gone (io.EOF), or the deadline passed.
func (e *mqEndpoint) timedOut() error {
	if e.gone != nil && e.gone() {
		return io.EOF
	}
	if !e.deadline.IsZero() && !time.Now().Before(e.deadline) {
		return os.ErrDeadlineExceeded
	}
	e.refresh()
	return nil
}

func (e *mqEndpoint) send(b []byte) error {
	for off := 0; off < len(b); off += e.chunk {
		c := b[off:min(off+e.chunk, len(b))]
		for {
			// unsafe: c and the timeout are passed to the kernel for the
			// duration of the call.
			_, _, en := unix.Syscall6(unix.SYS_MQ_TIMEDSEND, uintptr(e.w), uintptr(unsafe.Pointer(&c[0])),
				uintptr(len(c)), 0, uintptr(unsafe.Pointer(&e.until)), 0)
			if en == 0 {
				break
			}
			if en == unix.ETIMEDOUT {
				if err := e.timedOut(); err != nil {
					return err
				}
				continue
			}
			if en != unix.EINTR {
				return en
			}
		}
	}
	return nil
}

func (e *mqEndpoint) recv(b []byte) ([]byte, error) {
	for off := 0; off < len(b); off += e.chunk {
		c := b[off:min(off+e.chunk, len(b))]
		dst := c
		if len(c) < e.chunk { // the receive buffer must hold a whole queue message
			dst = e.scratch
		}
		var n uintptr
		for {
			var en syscall.Errno
			// unsafe: as in send.
			n, _, en = unix.Syscall6(unix.SYS_MQ_TIMEDRECEIVE, uintptr(e.r), uintptr(unsafe.Pointer(&dst[0])),
				uintptr(len(dst)), 0, uintptr(unsafe.Pointer(&e.until)), 0)
			if en == 0 {
				break
			}
			if en == unix.ETIMEDOUT {
				if err := e.timedOut(); err != nil {
					return nil, err
				}
				continue
			}
			if en != unix.EINTR {
				return nil, en
			}
		}
		if int(n) != len(c) {
			return nil, fmt.Errorf("queue message of %d bytes, want %d", n, len(c))
		}
		if len(c) < e.chunk {
			copy(c, dst)
		}
	}
	return b, nil
}

func (e *mqEndpoint) close() error {
	unix.Close(e.r)
	unix.Close(e.w)
	return nil
}

func newMQEndpoint(r, w, size int, deadline time.Time, gone func() bool) *mqEndpoint {
	chunk := min(size, queueChunk)
	e := &mqEndpoint{r: r, w: w, chunk: chunk, scratch: make([]byte, chunk), gone: gone}
	e.setDeadline(deadline)
	return e
}

// rawMQSetup: two queues, created by the parent.
type rawMQSetup struct {
	m        *measurement
	p2c, c2p string
	fds      []int
}

func (s *rawMQSetup) prepare() ([]string, []*os.File, error) {
	base := fmt.Sprintf("/ipcbench-%d-%d-raw", s.m.owner, s.m.seq)
	names := []string{base + ".p2c", base + ".c2p"}
	attr := mqAttr{Maxmsg: queueDepth, Msgsize: int64(min(s.m.size, queueChunk))}
	for _, n := range names {
		fd, err := mqOpen(n, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, &attr)
		if err != nil {
			if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EACCES) ||
				errors.Is(err, unix.EPERM) {
				err = fmt.Errorf("%w: %w", errSkip, err)
			}
			return nil, nil, err
		}
		s.fds = append(s.fds, fd)
		if s.p2c == "" {
			s.p2c = n
		} else {
			s.c2p = n
		}
	}
	return []string{"--addr", s.p2c, "--addr2", s.c2p}, nil, nil
}

func (s *rawMQSetup) start(cmd *exec.Cmd) error { return cmd.Start() }

func (s *rawMQSetup) connect(context.Context) (session, error) {
	// The peer opens the queues by name; the parent uses its own
	// descriptors.
	ep := newMQEndpoint(s.fds[1], s.fds[0], s.m.size, time.Now().Add(connectTimeout), s.m.peerExited)
	s.fds = nil
	return &msgSession{ep: ep, size: s.m.size}, nil
}

func (s *rawMQSetup) cleanup() {
	for _, fd := range s.fds {
		_ = unix.Close(fd)
	}
	s.fds = nil
	for _, n := range []string{s.p2c, s.c2p} {
		if n != "" {
			_ = mqUnlink(n)
		}
	}
}

func rawMQPeer(a peerArgs) error {
	r, err := mqOpen(a.addr, unix.O_RDONLY|unix.O_CLOEXEC, nil)
	if err != nil {
		return err
	}
	w, err := mqOpen(a.addr2, unix.O_WRONLY|unix.O_CLOEXEC, nil)
	if err != nil {
		return err
	}
	return serve(newMQEndpoint(r, w, a.size, time.Now().Add(a.limit), nil), a.size)
}
