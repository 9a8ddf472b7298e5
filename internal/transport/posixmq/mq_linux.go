//go:build linux

package posixmq

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport"
)

// Protocol constants (PROTOCOL.md, "POSIX message queue transport").
const (
	// ReqSize is the size of a connection request, and the message size of
	// the control queue.
	ReqSize = 64
	// AckSize is the size of the listener's answer on <name>.<id>.s2c.
	AckSize = 8
	// Version is the version of the connection protocol.
	Version = 1

	reqMagic = "IPCQ"
	ackMagic = "IPCK"
	reqConn  = 1

	ackOK         = transport.AnswerOK
	ackBadVersion = transport.AnswerBadVersion
	ackBusy       = transport.AnswerBusy

	idLen = 16

	// lockDir holds the listeners' lock files and the connections'
	// liveness files.
	lockDir = "/dev/shm"

	clientByte = 0 // the byte of the liveness file the client locks
	serverByte = 1 // the listener's byte; also the byte of a listener's lock file
)

func init() {
	transport.Register("posixmq", transport.Driver{Listen: Listen, Dial: Dial})
}

// lockPath is the lock file of the listener of queue name.
func lockPath(name string) string { return lockDir + "/.ipc-mq-" + name[1:] + ".lock" }

// livePath is the liveness file of connection id to queue name.
func livePath(name, id string) string { return lockDir + "/.ipc-mq-" + name[1:] + "." + id + ".live" }

// connQueue is the name of a connection's queue; dir is "c2s" or "s2c".
func connQueue(name, id, dir string) string { return name + "." + id + "." + dir }

func checkName(name string) error {
	if len(name) < 2 || name[0] != '/' || strings.ContainsAny(name[1:], "/\x00") {
		return fmt.Errorf("%w: POSIX queue name %q: want /name", ipcerr.ErrBadAddress, name)
	}
	if n := len(connQueue(name, strings.Repeat("0", 2*idLen), "c2s")) - 1; n > nameMax {
		return fmt.Errorf("%w: POSIX queue name %q too long: connection queues would have %d bytes, limit %d",
			ipcerr.ErrBadAddress, name, n, nameMax)
	}
	return nil
}

// Listen creates the control queue name and accepts connections on it.
func Listen(name string, o *transport.Options) (transport.Listener, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := checkAttr(name, o.QueueDepth, o.QueueMsgSize); err != nil {
		return nil, err
	}
	lock, err := takeListenerLock(name, o.Perm)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (transport.Listener, error) {
		_ = os.Remove(lock.Name())
		lock.Close()
		return nil, err
	}
	a := attr{MaxMsg: o.QueueDepth, MsgSize: ReqSize}
	fd, err := mqOpen(name, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NONBLOCK, uint32(o.Perm), &a)
	if err == unix.EEXIST { // left by a dead listener: this one holds the lock
		_ = mqUnlink(name)
		fd, err = mqOpen(name, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NONBLOCK, uint32(o.Perm), &a)
	}
	if err != nil {
		return fail(openErr(name, err, o.QueueDepth, ReqSize))
	}
	if err := unix.Fchmod(fd, uint32(o.Perm)); err != nil { // mq_open applied the umask
		unix.Close(fd)
		_ = mqUnlink(name)
		return fail(&os.PathError{Op: "chmod", Path: name, Err: err})
	}
	ctl, err := newPollQueue(fd, name)
	if err != nil {
		_ = mqUnlink(name)
		return fail(err)
	}
	removeLeftovers(name)
	l := &listener{name: name, o: o, ctl: ctl, lock: lock,
		backlog: transport.NewBacklog(o)}
	l.wg.Add(1)
	go l.loop()
	return l, nil
}

// takeListenerLock opens (creating it if needed) the listener's lock file
// and takes an OFD write lock on its byte, which it keeps while it listens.
func takeListenerLock(name string, perm os.FileMode) (*os.File, error) {
	path := lockPath(name)
	for range 5 {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, uint32(perm))
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: serverByte, Len: 1}
		if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk); err != nil {
			unix.Close(fd)
			if err == unix.EAGAIN || err == unix.EACCES {
				return nil, fmt.Errorf("%w: a listener holds POSIX queue %s", ipcerr.ErrAddrInUse, name)
			}
			return nil, &os.PathError{Op: "lock", Path: path, Err: err}
		}
		// The previous listener may have removed the file between our open
		// and our lock: the lock counts only on the file at path.
		var a, b unix.Stat_t
		if unix.Fstat(fd, &a) != nil || unix.Stat(path, &b) != nil || a.Ino != b.Ino || a.Dev != b.Dev {
			unix.Close(fd)
			continue
		}
		_ = unix.Fchmod(fd, uint32(perm))
		return os.NewFile(uintptr(fd), path), nil
	}
	return nil, fmt.Errorf("%w: the lock file of POSIX queue %s keeps changing", ipcerr.ErrAddrInUse, name)
}

// listenerAlive reports whether a listener holds the lock file f (opened
// by Dial).
func listenerAlive(f *os.File) func() bool {
	return func() bool { return lockHeld(f, serverByte) }
}

// removeLeftovers removes the liveness files and queues of clients of name
// that died before the listener answered them.
func removeLeftovers(name string) {
	ents, err := os.ReadDir(lockDir)
	if err != nil {
		return
	}
	prefix := ".ipc-mq-" + name[1:] + "."
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		id, ok := strings.CutSuffix(rest, ".live")
		if !ok || !isHexID(id) {
			continue
		}
		path := lockDir + "/" + e.Name()
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		dead := !lockHeld(f, clientByte)
		f.Close()
		if dead {
			_ = mqUnlink(connQueue(name, id, "c2s"))
			_ = mqUnlink(connQueue(name, id, "s2c"))
			_ = os.Remove(path)
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

// pollQueue is the listener's control queue: a non-blocking descriptor
// waited on with the runtime poller (a queue descriptor is pollable), so
// that a listener holds no thread while no one dials, and Close ends its
// wait at once.
type pollQueue struct {
	f   *os.File
	raw syscall.RawConn
}

func newPollQueue(fd int, name string) (*pollQueue, error) {
	f := os.NewFile(uintptr(fd), name) // non-blocking: the poller takes it
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &pollQueue{f: f, raw: raw}, nil
}

// recv receives a message into buf, waiting in the poller while the queue
// is empty, until the file's read deadline. It returns the error of the
// wait (the file closed, its deadline passed) or of mq_timedreceive.
func (q *pollQueue) recv(buf []byte) (int, error) {
	var n int
	var prio uint32
	var e syscall.Errno
	err := q.raw.Read(func(fd uintptr) bool {
		n, e = mqRecv(fd, buf, &prio, nil)
		return e != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	if e != 0 {
		return 0, e
	}
	return n, nil
}

type listener struct {
	name    string
	o       *transport.Options
	ctl     *pollQueue
	lock    *os.File
	backlog *transport.Backlog
	wg      sync.WaitGroup
	once    sync.Once
}

// loop reads connection requests until Close.
func (l *listener) loop() {
	defer l.wg.Done()
	buf := make([]byte, ReqSize)
	for {
		n, err := l.ctl.recv(buf)
		if err != nil && err != unix.EMSGSIZE {
			return // closed
		}
		if err == nil && n == ReqSize {
			l.handle(buf)
		}
	}
}

// handle answers one request and queues its connection, unless the
// listener holds MaxPendingSetups connections already: then it answers
// "busy". Whatever happens, the connection's names are gone afterwards.
// Nothing here waits for the client.
func (l *listener) handle(req []byte) {
	if string(req[:4]) != reqMagic || req[5] != reqConn {
		return
	}
	id := hex.EncodeToString(req[8 : 8+idLen])
	l.backlog.Do(func(busy bool) (transport.Conn, error) {
		return l.answer(id, transport.AnswerStatus(req[4], Version, busy))
	})
}

// errRefused is the set-up error of a client answered with a refusal.
var errRefused = errors.New("posixmq: client refused")

// answer opens the listener's ends of connection id, answers status and
// unlinks the connection's names; it returns the connection if status is
// ackOK.
func (l *listener) answer(id string, status byte) (transport.Conn, error) {
	live := livePath(l.name, id)
	c2s, s2c := connQueue(l.name, id, "c2s"), connQueue(l.name, id, "s2c")
	unlink := func() {
		_ = mqUnlink(c2s)
		_ = mqUnlink(s2c)
		_ = os.Remove(live)
	}
	a, err := openServerEnds(live, c2s, s2c)
	if err != nil {
		unlink()
		return nil, err
	}
	ack := make([]byte, AckSize)
	copy(ack, ackMagic)
	ack[4], ack[5] = Version, status
	// A timeout in the past: the queue is new and empty, and if the client
	// filled it, the listener must not wait for it.
	a.w.buf, a.w.prio = ack, MaxPriority
	err = a.w.once(true)
	unlink() // after the answer: the client takes names gone without an answer for a refusal
	if err == nil && status != ackOK {
		err = errRefused
	}
	if err != nil {
		a.close()
		return nil, err
	}
	return newConn(a.r, a.w, a.rsize, a.wsize, a.live, clientByte, l.o.MaxMessageSize), nil
}

type ends struct {
	live         *os.File
	r, w         *side
	rsize, wsize int
}

func (e *ends) close() {
	for _, s := range []*side{e.r, e.w} {
		if s != nil {
			s.close()
		}
	}
	if e.live != nil {
		e.live.Close()
	}
}

// openServerEnds opens and locks the liveness file and opens the queues
// of a connection.
func openServerEnds(live, c2s, s2c string) (_ *ends, err error) {
	e := &ends{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	e.live, err = os.OpenFile(live, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	if st, err := e.live.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, unix.EINVAL
	}
	if err := lockByte(e.live, serverByte); err != nil {
		return nil, err
	}
	if !lockHeld(e.live, clientByte) {
		return nil, io.EOF // the client is gone
	}
	rfd, err := mqOpen(c2s, unix.O_RDONLY, 0, nil)
	if err != nil {
		return nil, err
	}
	if e.r, err = newSide(rfd, c2s, false); err != nil {
		return nil, err
	}
	wfd, err := mqOpen(s2c, unix.O_WRONLY, 0, nil)
	if err != nil {
		return nil, err
	}
	if e.w, err = newSide(wfd, s2c, true); err != nil {
		return nil, err
	}
	ra, err := mqGetAttr(uintptr(rfd))
	if err != nil {
		return nil, err
	}
	wa, err := mqGetAttr(uintptr(wfd))
	if err != nil {
		return nil, err
	}
	if ra.MsgSize < 64 || wa.MsgSize < 64 {
		return nil, unix.EINVAL
	}
	e.rsize, e.wsize = ra.MsgSize, wa.MsgSize
	return e, nil
}

// lockByte takes a non-blocking OFD write lock on byte off of f.
func lockByte(f *os.File, off int64) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	cerr := raw.Control(func(fd uintptr) {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
		err = unix.FcntlFlock(fd, unix.F_OFD_SETLK, &lk)
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// Accept returns the next connection whose handshake is complete.
func (l *listener) Accept(ctx context.Context) (transport.Conn, error) {
	return l.backlog.Accept(ctx)
}

// SetupStats returns the counts of the listener's set-ups.
func (l *listener) SetupStats() transport.SetupStats { return l.backlog.Stats() }

// Close unlinks the control queue, releases the lock file, closes the
// connections not yet accepted and removes what dead clients left.
func (l *listener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		err = mqUnlink(l.name)
		if err != nil {
			err = &os.PathError{Op: "mq_unlink", Path: l.name, Err: err}
		}
		l.backlog.Stop()
		l.ctl.f.Close()
		l.wg.Wait()
		l.backlog.Drain()
		removeLeftovers(l.name)
		_ = os.Remove(l.lock.Name()) // still locked: no listener can be using it
		l.lock.Close()
	})
	return err
}

// Dial connects to the listener of queue name.
func Dial(ctx context.Context, name string, o *transport.Options) (transport.Conn, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	refused := func(why string) error {
		return fmt.Errorf("POSIX queue %s: %s: %w", name, why, syscall.ECONNREFUSED)
	}
	lock, err := os.Open(lockPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, refused("no listener")
	}
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	alive := listenerAlive(lock)
	if !alive() {
		return nil, refused("no listener")
	}
	cfd, err := mqOpen(name, unix.O_WRONLY, 0, nil)
	if err == unix.ENOENT {
		return nil, refused("no listener")
	}
	if err != nil {
		return nil, openErr(name, err, 0, 0)
	}
	ctl, err := newSide(cfd, name, true)
	if err != nil {
		return nil, err
	}
	defer ctl.close()

	var idb [idLen]byte
	_, _ = rand.Read(idb[:])
	d := &dialer{name: name, id: hex.EncodeToString(idb[:])}
	ok := false
	defer func() {
		if !ok {
			d.cleanup()
		}
	}()
	if err := d.create(o); err != nil {
		return nil, err
	}

	req := make([]byte, ReqSize)
	copy(req, reqMagic)
	req[4], req[5] = Version, reqConn
	copy(req[8:], idb[:])
	binary.LittleEndian.PutUint32(req[24:], uint32(os.Getpid()))
	var none transport.Deadline
	ctl.buf = req
	err = ctl.arm(ctx, &none)
	if err == nil {
		err = wait(ctx, ctl, &none, alive)
	}
	if err == io.EOF {
		return nil, refused("the listener is gone")
	}
	if err != nil {
		return nil, transport.Closed(err)
	}

	// Wait for the answer. The listener sends it before it unlinks the
	// names, so names gone and no answer means it dropped the request.
	s2c := connQueue(name, d.id, "s2c")
	answered := func() bool { return alive() && queueExists(s2c) }
	buf := make([]byte, o.QueueMsgSize)
	d.r.buf = buf
	err = d.r.arm(ctx, &none)
	if err == nil {
		err = wait(ctx, d.r, &none, answered)
	}
	n, prio := d.r.n, uint(d.r.prio)
	switch {
	case err == io.EOF && !alive():
		return nil, refused("the listener is gone")
	case err == io.EOF:
		return nil, refused("the listener dropped the request (can it open the connection's queues and " + lockDir + " file? see Perm)")
	case err != nil:
		return nil, transport.Closed(err)
	case n != AckSize || prio != MaxPriority || string(buf[:4]) != ackMagic:
		return nil, fmt.Errorf("%w: bad answer %x from the POSIX queue listener", ipcerr.ErrCorruptFrame, buf[:n])
	case buf[5] == ackBadVersion || buf[4] != Version:
		return nil, fmt.Errorf("%w: the POSIX queue listener speaks version %d, this client %d", ipcerr.ErrVersion, buf[4], Version)
	case buf[5] == ackBusy:
		return nil, fmt.Errorf("%w: the POSIX queue listener has as many connections pending as it allows", ipcerr.ErrListenerBusy)
	case buf[5] != ackOK:
		return nil, fmt.Errorf("%w: POSIX queue listener answered status %d", ipcerr.ErrCorruptFrame, buf[5])
	}
	ok = true
	return newConn(d.r, d.w, o.QueueMsgSize, o.QueueMsgSize, d.live, serverByte, o.MaxMessageSize), nil
}

func queueExists(name string) bool {
	fd, err := mqOpen(name, unix.O_RDONLY|unix.O_NONBLOCK, 0, nil)
	if err == nil {
		unix.Close(fd)
	}
	return err != unix.ENOENT
}

// dialer holds a client's resources until the connection is up.
type dialer struct {
	name, id string
	live     *os.File
	r, w     *side
	made     []string // queues created
	linked   bool     // the liveness file has its name
}

// create makes the liveness file (named only once this side's byte is
// locked, so a named file without a lock is always a dead client's) and
// the two queues.
func (d *dialer) create(o *transport.Options) error {
	live := livePath(d.name, d.id)
	f, err := createLocked(live, o.Perm)
	if err != nil {
		return err
	}
	d.live, d.linked = f, true
	a := attr{MaxMsg: o.QueueDepth, MsgSize: o.QueueMsgSize}
	for _, q := range []struct {
		dir   string
		flag  int
		write bool
		to    **side
	}{{"c2s", unix.O_WRONLY, true, &d.w}, {"s2c", unix.O_RDONLY, false, &d.r}} {
		name := connQueue(d.name, d.id, q.dir)
		fd, err := mqOpen(name, q.flag|unix.O_CREAT|unix.O_EXCL, uint32(o.Perm), &a)
		if err != nil {
			return openErr(name, err, o.QueueDepth, o.QueueMsgSize)
		}
		d.made = append(d.made, name)
		if err := unix.Fchmod(fd, uint32(o.Perm)); err != nil {
			unix.Close(fd)
			return &os.PathError{Op: "chmod", Path: name, Err: err}
		}
		if *q.to, err = newSide(fd, name, q.write); err != nil {
			return err
		}
	}
	return nil
}

// createLocked creates the file path with perm, holding an OFD lock on its
// client byte before the name appears: it is made unnamed (O_TMPFILE),
// locked, then linked. Where that fails (no O_TMPFILE, no /proc), the name
// is created directly, and for a moment names an unlocked file.
func createLocked(path string, perm os.FileMode) (*os.File, error) {
	if f, err := tmpLocked(path, perm); err == nil || errors.Is(err, os.ErrExist) {
		return f, err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, uint32(perm))
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	if err := lockNew(f, fd, perm); err != nil {
		f.Close()
		_ = os.Remove(path)
		return nil, &os.PathError{Op: "create", Path: path, Err: err}
	}
	return f, nil
}

// tmpLocked is createLocked with O_TMPFILE and linkat(2).
func tmpLocked(path string, perm os.FileMode) (*os.File, error) {
	fd, err := unix.Open(lockDir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, uint32(perm))
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	if err := lockNew(f, fd, perm); err != nil {
		f.Close()
		return nil, err
	}
	if err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "link", Path: path, Err: err}
	}
	return f, nil
}

// lockNew sets the mode of a new file exactly and locks its client byte.
func lockNew(f *os.File, fd int, perm os.FileMode) error {
	if err := unix.Fchmod(fd, uint32(perm)); err != nil {
		return err
	}
	return lockByte(f, clientByte)
}

// cleanup undoes create after a failed Dial.
func (d *dialer) cleanup() {
	for _, q := range d.made {
		_ = mqUnlink(q)
	}
	for _, s := range []*side{d.r, d.w} {
		if s != nil {
			s.close()
		}
	}
	if d.live != nil {
		if d.linked {
			_ = os.Remove(livePath(d.name, d.id))
		}
		d.live.Close()
	}
}
