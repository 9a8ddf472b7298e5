//go:build linux

package fifo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport"
)

// Protocol constants (PROTOCOL.md, "FIFO transport").
const (
	// ReqSize is the size of a connection request. Requests of several
	// clients share the control FIFO, so it must not exceed PIPE_BUF.
	ReqSize = 64
	// AckSize is the size of the listener's answer on path.<id>.s2c.
	AckSize = 8
	// Version is the version of the connection protocol.
	Version = 1

	reqMagic = "IPCF"
	ackMagic = "IPCA"
	reqConn  = 1 // request type: connect

	ackOK         = transport.AnswerOK
	ackBadVersion = transport.AnswerBadVersion
	ackBusy       = transport.AnswerBusy

	idLen = 16 // random bytes of a connection id

	pollSlice = 50 * time.Millisecond // Dial re-checks ctx and the listener this often
	resend    = time.Second           // Dial repeats its request this often
)

// PIPE_BUF on Linux: a write of at most this many bytes to a pipe is atomic.
const pipeBuf = 4096

var _ [pipeBuf - ReqSize]struct{} // ReqSize <= PIPE_BUF, checked at compile time

func init() {
	transport.Register("fifo", transport.Driver{Listen: Listen, Dial: Dial})
}

// Listen creates the control FIFO at path and accepts connections on it.
func Listen(path string, o *transport.Options) (transport.Listener, error) {
	var st unix.Stat_t
	ctl, err := createControl(path, o.Perm, &st)
	if err != nil {
		return nil, err
	}
	l := &listener{path: path, o: o, ctl: ctl, ino: st.Ino, dev: st.Dev,
		backlog: transport.NewBacklog(o)}
	l.wg.Add(1)
	go l.loop()
	return l, nil
}

// createControl publishes a new FIFO at path, open for reading and writing.
// The FIFO is created under a temporary name, opened, then linked to path,
// so that it never appears at path without its reader.
func createControl(path string, perm os.FileMode, st *unix.Stat_t) (*os.File, error) {
	tmp := filepath.Join(filepath.Dir(path), ".ipc-fifo-"+randomHex(8))
	if err := unix.Mkfifo(tmp, uint32(perm)); err != nil {
		return nil, &os.PathError{Op: "mkfifo", Path: tmp, Err: err}
	}
	defer os.Remove(tmp)
	fd, err := unix.Open(tmp, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: tmp, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	if err := unix.Fchmod(fd, uint32(perm)); err != nil { // the umask narrowed it
		f.Close()
		return nil, &os.PathError{Op: "chmod", Path: tmp, Err: err}
	}
	if err := unix.Fstat(fd, st); err != nil {
		f.Close()
		return nil, err
	}
	for range 5 {
		err := unix.Link(tmp, path)
		if err == nil {
			return f, nil
		}
		if err != unix.EEXIST {
			f.Close()
			return nil, &os.PathError{Op: "link", Path: path, Err: err}
		}
		if err := removeStale(path); err != nil {
			f.Close()
			return nil, err
		}
	}
	f.Close()
	return nil, fmt.Errorf("%w: %s keeps being recreated", ipcerr.ErrAddrInUse, path)
}

// removeStale removes the FIFO at path if no listener reads it, and
// returns ErrAddrInUse if one does or if path is not a FIFO. A FIFO without
// a reader stays without one (listeners only read FIFOs they created), and
// the flock serialises processes that found the same stale FIFO, so none
// removes the FIFO another has just put in its place.
func removeStale(path string) error {
	if live, err := hasReader(path); err != nil || live {
		if err == nil {
			err = fmt.Errorf("%w: %s has a listener", ipcerr.ErrAddrInUse, path)
		}
		return err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		return &os.PathError{Op: "flock", Path: path, Err: err}
	}
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Lstat(path, &b) != nil || a.Ino != b.Ino || a.Dev != b.Dev {
		return nil // replaced meanwhile: look again
	}
	if err := unix.Unlink(path); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "remove stale", Path: path, Err: err}
	}
	return nil
}

// hasReader reports whether the FIFO at path is open for reading, by
// opening it for writing without blocking. It fails with ErrAddrInUse if
// path is not a FIFO.
func hasReader(path string) (bool, error) {
	notFIFO := fmt.Errorf("%w: %s exists and is not a FIFO", ipcerr.ErrAddrInUse, path)
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err == nil {
		defer unix.Close(fd)
		if !isFIFO(fd) {
			return false, notFIFO
		}
		return true, nil
	}
	var st unix.Stat_t
	if lerr := unix.Lstat(path, &st); lerr == unix.ENOENT {
		return false, nil // gone meanwhile
	} else if lerr == nil && st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return false, notFIFO // a socket gives ENXIO too
	}
	if err == unix.ENXIO {
		return false, nil
	}
	return false, &os.PathError{Op: "open", Path: path, Err: err}
}

// removeFIFO removes name if it is a FIFO.
func removeFIFO(name string) {
	var st unix.Stat_t
	if unix.Lstat(name, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO {
		_ = unix.Unlink(name)
	}
}

func isFIFO(fd int) bool {
	var st unix.Stat_t
	return unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO
}

type listener struct {
	path     string
	o        *transport.Options
	ctl      *os.File
	ino      uint64
	dev      uint64
	backlog  *transport.Backlog
	wg       sync.WaitGroup
	closeErr error
	once     sync.Once
}

// loop reads connection requests from the control FIFO until Close.
func (l *listener) loop() {
	defer l.wg.Done()
	buf := make([]byte, 64*ReqSize)
	have := 0
	for {
		n, err := l.ctl.Read(buf[have:])
		if err != nil {
			return // closed (the listener holds a writer, so never EOF)
		}
		have += n
		off := nextRequest(buf[:have], l.handle)
		have = copy(buf, buf[off:have])
	}
}

// nextRequest hands each request in b to handle and returns how many bytes
// of b it has used up; the rest is the start of a request still to come.
// Requests are written whole (PIPE_BUF), but anyone who may write the
// control FIFO can write other bytes between them, or the head of a request
// and no more. The reader skips to the next magic, and takes 64 bytes from
// a magic for a request only if they look like one: no other magic begins
// inside, and for version 1 its zero bytes are zero. Otherwise they are a cut-off request followed by the start of
// another, and it skips to the next magic after the first.
func nextRequest(b []byte, handle func(req []byte)) int {
	magic := []byte(reqMagic)
	off := 0
	for {
		i := bytes.Index(b[off:], magic)
		if i < 0 {
			// Keep what could be the start of a magic.
			return max(off, len(b)-(len(magic)-1))
		}
		off += i
		if len(b)-off < ReqSize {
			return off
		}
		req := b[off : off+ReqSize]
		// Cut off if another magic begins inside, which may need bytes
		// still to come; a request of another version (answered "version
		// not supported") may have another layout.
		end := off + ReqSize + len(magic) - 1
		if bytes.Contains(b[off+1:min(end, len(b))], magic) || (req[4] == Version && !zeroesZero(req)) {
			off++
			continue
		}
		if end > len(b) && bytes.HasPrefix(magic, b[off+ReqSize:]) && magicTail(req) {
			return off
		}
		handle(req)
		off += ReqSize
	}
}

// zeroesZero reports whether the bytes of a version-1 request that must be
// zero are.
func zeroesZero(req []byte) bool {
	return req[6] == 0 && req[7] == 0 && !slices.ContainsFunc(req[28:], func(c byte) bool { return c != 0 })
}

// magicTail reports whether req ends with the start of a magic.
func magicTail(req []byte) bool {
	for n := 1; n < len(reqMagic); n++ {
		if bytes.HasSuffix(req, []byte(reqMagic[:n])) {
			return true
		}
	}
	return false
}

// handle answers one request and queues its connection, unless the
// listener holds MaxPendingSetups connections already: then it answers
// "busy". Whatever happens, the connection's names are gone afterwards.
// Nothing here waits for the client: the answer goes into a FIFO that is
// new (a client that filled it is dropped).
func (l *listener) handle(req []byte) {
	if req[5] != reqConn {
		return
	}
	base := l.path + "." + hex.EncodeToString(req[8:8+idLen])
	l.backlog.Do(func(busy bool) (transport.Conn, error) {
		return l.answer(base, transport.AnswerStatus(req[4], Version, busy))
	})
}

// errRefused is the set-up error of a client answered with a refusal.
var errRefused = errors.New("fifo: client refused")

// answer opens the listener's ends of the pair at base, answers status and
// removes the names; it returns the connection if status is ackOK.
func (l *listener) answer(base string, status byte) (transport.Conn, error) {
	// The names go once the answer is written: a client that finds them
	// gone without an answer knows its request was dropped.
	defer func() {
		removeFIFO(base + ".c2s")
		removeFIFO(base + ".s2c")
	}()
	r, w, err := openServerEnds(base, ack(status))
	if err != nil {
		return nil, err // the client is gone, filled its FIFO, or the names were not what they should be
	}
	if status != ackOK {
		r.Close()
		w.Close()
		return nil, errRefused
	}
	return transport.NewStreamConn(r, w, l.o.MaxMessageSize, r, w), nil
}

// openServerEnds opens the listener's ends of the pair at base, the read
// end of .c2s and the write end of .s2c, and writes answer on .s2c
// without waiting: the FIFO is new, so only a client that filled it
// itself makes the write fail.
func openServerEnds(base string, answer []byte) (r, w *transport.FD, err error) {
	rfd, err := unix.Open(base+".c2s", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, nil, err
	}
	if !isFIFO(rfd) {
		unix.Close(rfd)
		return nil, nil, unix.EINVAL
	}
	// The client holds the read end of .s2c, so this open does not block;
	// ENXIO means the client is gone.
	wfd, err := unix.Open(base+".s2c", unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		unix.Close(rfd)
		return nil, nil, err
	}
	if !isFIFO(wfd) {
		unix.Close(rfd)
		unix.Close(wfd)
		return nil, nil, unix.EINVAL
	}
	if n, err := unix.Write(wfd, answer); n != len(answer) || err != nil {
		unix.Close(rfd)
		unix.Close(wfd)
		if err == nil {
			err = io.ErrShortWrite
		}
		return nil, nil, err
	}
	// Out of the runtime poller (transport.FD).
	if r, err = transport.NewFD(rfd, base+".c2s"); err != nil {
		unix.Close(wfd)
		return nil, nil, err
	}
	if w, err = transport.NewFD(wfd, base+".s2c"); err != nil {
		r.Close()
		return nil, nil, err
	}
	return r, w, nil
}

func ack(status byte) []byte {
	b := make([]byte, AckSize)
	copy(b, ackMagic)
	b[4], b[5] = Version, status
	return b
}

// Accept returns the next connection whose handshake the listener has
// completed.
func (l *listener) Accept(ctx context.Context) (transport.Conn, error) {
	return l.backlog.Accept(ctx)
}

// SetupStats returns the counts of the listener's set-ups.
func (l *listener) SetupStats() transport.SetupStats { return l.backlog.Stats() }

// Close stops accepting, closes the connections not yet accepted and
// removes the control FIFO and the connection FIFOs that clients left.
func (l *listener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		err = nil
		// Remove the name first: while the FIFO is open no one replaced it.
		var st unix.Stat_t
		if unix.Lstat(l.path, &st) == nil && st.Ino == l.ino && st.Dev == l.dev {
			if rerr := unix.Unlink(l.path); rerr != nil {
				err = &os.PathError{Op: "remove", Path: l.path, Err: rerr}
			}
		}
		l.backlog.Stop()
		l.ctl.Close()
		l.wg.Wait()
		l.backlog.Drain()
		removeLeftovers(l.path)
	})
	return err
}

// removeLeftovers removes path.<id>.c2s and path.<id>.s2c FIFOs of clients
// that died before their request was answered.
func removeLeftovers(path string) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok || e.Type()&os.ModeNamedPipe == 0 {
			continue
		}
		id, dirn, ok := strings.Cut(rest, ".")
		if ok && (dirn == "c2s" || dirn == "s2c") && isHexID(id) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func isHexID(s string) bool {
	if len(s) != 2*idLen {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// Dial connects to the listener whose control FIFO is at path.
func Dial(ctx context.Context, path string, o *transport.Options) (transport.Conn, error) {
	cfd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	switch {
	case err == unix.ENXIO:
		return nil, fmt.Errorf("no listener reads %s: %w", path, syscall.ECONNREFUSED)
	case err != nil:
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	case !isFIFO(cfd):
		unix.Close(cfd)
		return nil, fmt.Errorf("%s is not a FIFO: %w", path, syscall.ECONNREFUSED)
	}
	ctl := os.NewFile(uintptr(cfd), path)
	defer ctl.Close()

	var id [idLen]byte
	_, _ = rand.Read(id[:])
	base := path + "." + hex.EncodeToString(id[:])
	d := &dialer{base: base}
	defer d.cleanup()
	if err := d.create(o.Perm); err != nil {
		return nil, err
	}

	req := make([]byte, ReqSize)
	copy(req, reqMagic)
	req[4], req[5] = Version, reqConn
	copy(req[8:], id[:])
	binary.LittleEndian.PutUint32(req[24:], uint32(os.Getpid()))
	if err := writeRequest(ctx, ctl, req); err != nil {
		return nil, err
	}
	if err := d.awaitAck(ctx, ctl, cfd, req); err != nil {
		return nil, err
	}
	// The listener has its read end of .c2s: drop the placeholder reader.
	unix.Close(d.w0)
	d.w0 = -1
	// Out of the runtime poller (transport.FD).
	r, err := transport.NewFD(d.r, base+".s2c")
	d.r = -1
	if err != nil {
		return nil, err
	}
	w, err := transport.NewFD(d.w, base+".c2s")
	d.w = -1
	if err != nil {
		r.Close()
		return nil, err
	}
	transport.GrowPipe(r.File())
	transport.GrowPipe(w.File())
	return transport.NewStreamConn(r, w, o.MaxMessageSize, r, w), nil
}

// dialer holds a client's descriptors until the connection is up.
type dialer struct {
	base     string
	created  int
	r, w, w0 int // read end of .s2c, write end of .c2s, placeholder reader of .c2s
}

// create makes the pair and opens the client's ends. The placeholder w0
// (.c2s opened for reading and writing) lets the write end open without
// blocking, and keeps a reader on .c2s until the listener has its own.
func (d *dialer) create(perm os.FileMode) error {
	d.r, d.w, d.w0 = -1, -1, -1
	for _, name := range []string{d.base + ".c2s", d.base + ".s2c"} {
		if err := unix.Mkfifo(name, uint32(perm)); err != nil {
			return &os.PathError{Op: "mkfifo", Path: name, Err: err}
		}
		d.created++
	}
	open := func(name string, flag int) (int, error) {
		fd, err := unix.Open(name, flag|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: name, Err: err}
		}
		if !isFIFO(fd) {
			unix.Close(fd)
			return -1, &os.PathError{Op: "open", Path: name, Err: unix.EINVAL}
		}
		return fd, nil
	}
	var err error
	if d.r, err = open(d.base+".s2c", unix.O_RDONLY); err != nil {
		return err
	}
	if d.w0, err = open(d.base+".c2s", unix.O_RDWR); err != nil {
		return err
	}
	if d.w, err = open(d.base+".c2s", unix.O_WRONLY); err != nil {
		return err
	}
	for _, fd := range []int{d.r, d.w0} { // exactly perm: mkfifo applied the umask
		if err := unix.Fchmod(fd, uint32(perm)); err != nil {
			return &os.PathError{Op: "chmod", Path: d.base, Err: err}
		}
	}
	return nil
}

// cleanup removes the names (the listener normally has) and closes what
// Dial did not hand over.
func (d *dialer) cleanup() {
	if d.created > 0 {
		_ = unix.Unlink(d.base + ".c2s")
	}
	if d.created > 1 {
		_ = unix.Unlink(d.base + ".s2c")
	}
	for _, fd := range []int{d.r, d.w, d.w0} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// writeRequest writes req to the control FIFO in one write, waiting while
// the FIFO is full.
func writeRequest(ctx context.Context, ctl *os.File, req []byte) error {
	var none transport.Deadline
	err := transport.WithContext(ctx, &none, ctl.SetWriteDeadline, func() error {
		_, err := ctl.Write(req)
		return err
	})
	if errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("the listener at %s is gone: %w", ctl.Name(), syscall.ECONNREFUSED)
	}
	return err
}

// awaitAck waits for the listener's answer on .s2c, as long as ctx allows
// and the listener lives, repeating the request now and then (a listener
// drops requests it finds among garbage).
func (d *dialer) awaitAck(ctx context.Context, ctl *os.File, cfd int, req []byte) error {
	last := time.Now()
	var got []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		wait := pollSlice
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			wait = max(time.Until(dl), time.Millisecond)
		}
		fds := []unix.PollFd{{Fd: int32(d.r), Events: unix.POLLIN}, {Fd: int32(cfd)}}
		if _, err := unix.Poll(fds, int(wait/time.Millisecond)); err != nil && err != unix.EINTR {
			return err
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			var b [AckSize]byte
			n, err := unix.Read(d.r, b[:AckSize-len(got)])
			if err != nil && err != unix.EAGAIN {
				return err
			}
			if n > 0 {
				got = append(got, b[:n]...)
			}
			if len(got) == AckSize {
				return checkAck(got)
			}
			if n == 0 && err == nil {
				return fmt.Errorf("the listener at %s closed the connection: %w", ctl.Name(), syscall.ECONNREFUSED)
			}
		} else if fds[0].Revents&unix.POLLHUP != 0 {
			return fmt.Errorf("the listener at %s closed the connection: %w", ctl.Name(), syscall.ECONNREFUSED)
		}
		if fds[1].Revents&unix.POLLERR != 0 { // no reader on the control FIFO
			return fmt.Errorf("the listener at %s is gone: %w", ctl.Name(), syscall.ECONNREFUSED)
		}
		if fds[0].Revents == 0 && d.dropped() {
			return fmt.Errorf("the listener at %s dropped the request (can it open %s.*? see Perm): %w",
				ctl.Name(), d.base, syscall.ECONNREFUSED)
		}
		if time.Since(last) >= resend {
			last = time.Now()
			if _, err := unix.Write(cfd, req); err == unix.EPIPE {
				return fmt.Errorf("the listener at %s is gone: %w", ctl.Name(), syscall.ECONNREFUSED)
			}
		}
	}
}

// dropped reports whether the listener removed the pair without answering:
// it answers before it removes the names, so with the names gone the
// answer, if any, is already readable.
func (d *dialer) dropped() bool {
	var st unix.Stat_t
	if unix.Lstat(d.base+".s2c", &st) != unix.ENOENT {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(d.r), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n == 0
}

func checkAck(b []byte) error {
	if string(b[:4]) != ackMagic {
		return fmt.Errorf("%w: bad answer %x from the FIFO listener", ipcerr.ErrCorruptFrame, b)
	}
	if b[5] == ackBadVersion || b[4] != Version {
		return fmt.Errorf("%w: the FIFO listener speaks version %d, this client %d", ipcerr.ErrVersion, b[4], Version)
	}
	if b[5] == ackBusy {
		return fmt.Errorf("%w: the FIFO listener has as many connections pending as it allows", ipcerr.ErrListenerBusy)
	}
	if b[5] != ackOK {
		return fmt.Errorf("%w: FIFO listener answered status %d", ipcerr.ErrCorruptFrame, b[5])
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
