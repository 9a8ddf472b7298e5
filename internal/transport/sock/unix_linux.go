package sock

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/frame"
	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport"
)

func listenStream(path string, o *transport.Options) (transport.Listener, error) {
	return listenConns(path, unix.SOCK_STREAM, o, func(sc *sockConn, cred Cred) (transport.Conn, error) {
		return newUnixConn(sc, cred, o), nil
	})
}

func dialStream(ctx context.Context, path string, o *transport.Options) (transport.Conn, error) {
	return dialConn(ctx, "unix", path, o, func(sc *sockConn, cred Cred) (transport.Conn, error) {
		return newUnixConn(sc, cred, o), nil
	})
}

// listenConns listens at path with a socket of type sotype and makes each
// connection from an allowed peer a message connection with mk, its
// socket out of the runtime poller (detach).
func listenConns(path string, sotype int, o *transport.Options, mk func(*sockConn, Cred) (transport.Conn, error)) (transport.Listener, error) {
	nl, sf, err := listenUnix(path, sotype, o.Perm)
	if err != nil {
		return nil, err
	}
	ul := nl.(*net.UnixListener)
	allow := o.AllowUIDs
	l := newListener(ul, ul.SetDeadline, func(nc net.Conn) transport.Conn {
		uc := nc.(*net.UnixConn)
		cred, err := peerCred(uc)
		if err != nil || !allowed(allow, cred.UID) {
			_ = uc.Close()
			return nil
		}
		sc, err := detach(uc)
		if err != nil {
			return nil
		}
		c, err := mk(sc, cred)
		if err != nil {
			_ = sc.fd.Close()
			return nil
		}
		return c
	})
	l.file = sf
	return l, nil
}

// dialConn dials path, checks the listener's uid and makes the connection
// a message connection with mk, its socket out of the runtime poller
// (detach).
func dialConn(ctx context.Context, network, path string, o *transport.Options, mk func(*sockConn, Cred) (transport.Conn, error)) (transport.Conn, error) {
	uc, cred, err := dialUnix(ctx, network, path, o)
	if err != nil {
		return nil, err
	}
	sc, err := detach(uc)
	if err != nil {
		return nil, err
	}
	c, err := mk(sc, cred)
	if err != nil {
		_ = sc.fd.Close()
		return nil, err
	}
	return c, nil
}

// dialUnix connects to path and checks the listener's uid.
func dialUnix(ctx context.Context, network, path string, o *transport.Options) (*net.UnixConn, Cred, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, path)
	if err != nil {
		return nil, Cred{}, netErr(err)
	}
	uc := nc.(*net.UnixConn)
	cred, err := peerCred(uc)
	if err != nil {
		_ = uc.Close()
		return nil, Cred{}, err
	}
	if !allowed(o.AllowUIDs, cred.UID) {
		_ = uc.Close()
		return nil, Cred{}, fmt.Errorf("%w: the listener at %s runs as uid %d", ipcerr.ErrPeerNotAllowed, path, cred.UID)
	}
	return uc, cred, nil
}

// UnixConn is a message connection over a Unix stream socket (unix://):
// each message is one frame on the stream. Besides the transport.Conn
// calls it has the peer's credentials and descriptor passing.
type UnixConn struct {
	s    *sockConn
	fd   *transport.FD // s.fd
	sc   *transport.StreamConn
	rd   *fdReader
	cred Cred
	max  int

	smu  sync.Mutex // serialises Send and SendFiles
	raw  *rawIO     // SendFiles' first write, under smu
	tail []byte     // the unwritten rest of a frame an interrupted SendFiles began, under smu

	rmu  sync.Mutex // serialises Recv and RecvFiles
	next int64      // stream offset of the next message, under rmu

	dl     transport.Deadline
	closed atomic.Bool
}

func newUnixConn(s *sockConn, cred Cred, o *transport.Options) *UnixConn {
	max := o.MaxMessageSize
	raw := newRawIO(s.fd)
	c := &UnixConn{s: s, fd: s.fd, cred: cred, max: max, raw: raw}
	c.rd = &fdReader{fd: s.fd, raw: raw, oob: make([]byte, oobSize)}
	// Writes go to the FD itself: one writev(2) per frame.
	c.sc = transport.NewStreamConn(c.rd, s.fd, max, s.fd)
	return c
}

// Send sends msg as one message.
func (c *UnixConn) Send(ctx context.Context, msg []byte) error {
	c.smu.Lock()
	defer c.smu.Unlock()
	if len(c.tail) > 0 {
		if c.closed.Load() {
			return net.ErrClosed
		}
		if err := frame.CheckSize(len(msg), c.max); err != nil {
			return err
		}
		if err := c.fix(transport.WithWriteContext(ctx, &c.dl, c.fd, c.flush)); err != nil {
			return err
		}
	}
	return c.sc.Send(ctx, msg)
}

// flush writes c.tail, keeping what it could not write; under smu.
func (c *UnixConn) flush() error {
	if len(c.tail) == 0 {
		return nil
	}
	n, err := c.fd.Write(c.tail)
	if err != nil {
		c.tail = c.tail[n:]
		return err
	}
	c.tail = nil
	return nil
}

// fix maps a send error as Send does.
func (c *UnixConn) fix(err error) error {
	if err == nil {
		return nil
	}
	if c.closed.Load() {
		return net.ErrClosed
	}
	return transport.Closed(transport.PeerGone(err))
}

// Recv receives the next message into buf[:0]. Descriptors that came with
// it are closed.
func (c *UnixConn) Recv(ctx context.Context, buf []byte) ([]byte, error) {
	msg, fds, err := c.recv(ctx, buf)
	closeFDs(fds)
	return msg, err
}

func (c *UnixConn) recv(ctx context.Context, buf []byte) ([]byte, []int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	msg, err := c.sc.Recv(ctx, buf)
	if err != nil {
		return msg, nil, err
	}
	start := c.next
	c.next += int64(frame.HeaderSize + len(msg))
	return msg, c.rd.fds.take(start, c.next), nil
}

// SendFiles sends msg as one message carrying the descriptors of files
// (at most MaxFiles) to the peer, which gets them with RecvFiles. The files
// stay open here; the peer gets its own descriptors of the same open files.
//
// Like Send, a SendFiles that its context or deadline interrupts after it
// began the frame keeps the rest (the descriptors went with its first
// bytes): the next Send or SendFiles writes it first, so the peer never
// sees a torn frame.
func (c *UnixConn) SendFiles(ctx context.Context, msg []byte, files ...*os.File) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	if len(files) == 0 {
		return c.Send(ctx, msg)
	}
	if err := frame.CheckSize(len(msg), c.max); err != nil {
		return err
	}
	if err := checkFiles(files); err != nil {
		return err
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	// The rest of a frame that an interrupted Send began goes first.
	if err := c.sc.Flush(ctx); err != nil {
		return err
	}
	var hdr [frame.HeaderSize]byte
	frame.Header{Len: len(msg)}.Put(hdr[:])
	err := transport.WithWriteContext(ctx, &c.dl, c.fd, func() error {
		if err := c.flush(); err != nil {
			return err
		}
		// The descriptors ride on the write that starts the frame, so the
		// receiver can tell which message they belong to.
		var n int
		err := withFDs(files, nil, func(fds []int) error {
			var err error
			n, err = c.raw.send(hdr[:], msg, unix.UnixRights(fds...))
			return err
		})
		if err != nil {
			return err
		}
		var rest net.Buffers
		if n < len(hdr) {
			rest = net.Buffers{hdr[n:], msg}
		} else {
			rest = net.Buffers{msg[n-len(hdr):]}
		}
		written, err := rest.WriteTo(c.fd)
		if err != nil { // keep the rest of the frame for the next send
			if off := n + int(written); off < len(hdr) {
				c.tail = append(append([]byte{}, hdr[off:]...), msg...)
			} else {
				c.tail = append([]byte{}, msg[off-len(hdr):]...)
			}
		}
		return err
	})
	return c.fix(err)
}

// RecvFiles receives the next message and the descriptors that came with
// it (none for a message sent with Send). The caller owns the files; they
// are close-on-exec.
func (c *UnixConn) RecvFiles(ctx context.Context, buf []byte) ([]byte, []*os.File, error) {
	msg, fds, err := c.recv(ctx, buf)
	return msg, toFiles(fds), err
}

// PeerCred returns the credentials of the peer process.
func (c *UnixConn) PeerCred() (Cred, error) { return c.cred, nil }

// SetDeadline sets the deadline of later and pending calls.
func (c *UnixConn) SetDeadline(t time.Time) error {
	c.dl.Set(t)
	return c.sc.SetDeadline(t)
}

// Close closes the connection and the descriptors received and not yet
// handed out.
func (c *UnixConn) Close() error {
	c.closed.Store(true)
	err := c.sc.Close()
	c.rd.fds.close()
	return err
}

// LocalAddr returns the socket's address.
func (c *UnixConn) LocalAddr() net.Addr { return c.s.local }

// RemoteAddr returns the peer socket's address.
func (c *UnixConn) RemoteAddr() net.Addr { return c.s.remote }

// fdReader reads the stream with recvmsg and a control buffer, keeping the
// descriptors that arrive with the offset in the stream where the read that
// brought them ended. The kernel ends a read right after the data sent with
// descriptors (it never joins two such writes), and the sender attaches them
// to a frame's first bytes, so they belong to the message whose frame holds
// that offset.
type fdReader struct {
	fd  *transport.FD
	raw *rawIO
	oob []byte
	off int64 // bytes read so far
	fds fdQueue
}

func (r *fdReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, oobn, _, err := r.raw.recv(b, nil, r.oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return 0, err
	}
	if oobn > 0 {
		if fds := rights(r.oob[:oobn]); len(fds) > 0 {
			r.fds.add(r.off+int64(n), fds)
		}
	}
	r.off += int64(n)
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (r *fdReader) Write(b []byte) (int, error)        { return r.fd.Write(b) }
func (r *fdReader) SetReadDeadline(t time.Time) error  { return r.fd.SetReadDeadline(t) }
func (r *fdReader) SetWriteDeadline(t time.Time) error { return r.fd.SetWriteDeadline(t) }
