package sock

import (
	"context"
	"errors"
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

const (
	// sndbufWant is the SO_SNDBUF a packet connection asks for; the kernel
	// caps it at net.core.wmem_max and doubles it.
	sndbufWant = 4 << 20
	// minPacket is the payload below which packets do not shrink further
	// when the kernel refuses one (ENOBUFS, EMSGSIZE).
	minPacket = 4 << 10
	// sndbufSlack is what the kernel keeps of SO_SNDBUF for itself: a
	// packet may carry at most SO_SNDBUF-32 bytes (EMSGSIZE otherwise).
	sndbufSlack = 32
	// FirstPacket is the most payload the first packet of a message
	// carries (PROTOCOL.md, "Socket transports"). A receiver learns a
	// packet's length only by reading it, and a packet read into too
	// small a buffer loses its tail; with this bound it reads a message's
	// first packet with one recvmsg(2) into a buffer of this size, rather
	// than peeking at its header first. Later packets of a long message
	// are larger: the receiver peeks at those, whose system calls are few
	// next to their copying.
	FirstPacket = 64 << 10
	// midMessageSpin bounds how long a receiver that has read a packet
	// with "more" set polls for the next one before it sleeps. The sender
	// writes the packets of a message back to back, so the next one is
	// due within the time it takes to copy (about 100 µs for the 960 KiB
	// after a 1 MiB message's first packet here); sleeping instead would
	// add a wake-up across CPUs (45-90 µs on a VM) to every long message.
	midMessageSpin = 200 * time.Microsecond
)

func listenPacket(path string, o *transport.Options) (transport.Listener, error) {
	return listenConns(path, unix.SOCK_SEQPACKET, o, func(sc *sockConn, cred Cred) (transport.Conn, error) {
		return newPacketConn(sc, cred, o)
	})
}

func dialPacket(ctx context.Context, path string, o *transport.Options) (transport.Conn, error) {
	return dialConn(ctx, "unixpacket", path, o, func(sc *sockConn, cred Cred) (transport.Conn, error) {
		return newPacketConn(sc, cred, o)
	})
}

// PacketConn is a message connection over a Unix SOCK_SEQPACKET socket
// (unixpacket://). Each packet holds one frame; a message larger than a
// packet is split into frames with the "more" flag and put together again
// by Recv. Besides the transport.Conn calls it has the peer's credentials
// and descriptor passing.
type PacketConn struct {
	s    *sockConn
	fd   *transport.FD // s.fd
	raw  *rawIO
	cred Cred
	max  int

	smu  sync.Mutex // serialises senders
	shdr [frame.HeaderSize]byte
	pkt  atomic.Int64 // payload bytes per packet; shrinks if the kernel refuses
	werr error        // sticky: a message was cut after some of its packets

	rmu     sync.Mutex // serialises receivers
	rhdr    [frame.HeaderSize]byte
	oob     []byte
	first   []byte     // FirstPacket bytes, for first packets the caller's buffer may not hold
	rerr    error      // sticky: corrupt input
	pmu     sync.Mutex // guards partial and pfds against Close
	partial []byte     // a message cut by a timeout, to be continued
	pfds    []int      // and the descriptors that came with it

	dl     transport.Deadline
	closed atomic.Bool
}

func newPacketConn(s *sockConn, cred Cred, o *transport.Options) (*PacketConn, error) {
	maxSize := o.MaxMessageSize
	raw := newRawIO(s.fd)
	sndbuf, err := raiseSndbuf(raw)
	if err != nil {
		return nil, err
	}
	c := &PacketConn{s: s, fd: s.fd, raw: raw, cred: cred, max: maxSize, oob: make([]byte, oobSize)}
	c.pkt.Store(int64(max(sndbuf-sndbufSlack-frame.HeaderSize, 1)))
	return c, nil
}

// raiseSndbuf asks for an SO_SNDBUF of sndbufWant (never lowering it) and
// returns what the kernel granted.
func raiseSndbuf(raw *rawIO) (int, error) {
	var got int
	var serr error
	err := raw.fd.Control(func(fd uintptr) {
		got, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		if serr != nil || got >= 2*sndbufWant {
			return
		}
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, sndbufWant); serr != nil {
			return
		}
		got, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	if err == nil && serr != nil {
		err = os.NewSyscallError("SO_SNDBUF", serr)
	}
	return got, err
}

// PacketSize returns the payload bytes of the packets that carry a message
// longer than one packet (each packet also has an 8-byte header). It starts
// at SO_SNDBUF-40 and halves, for this connection, each time the kernel
// refuses a packet that large.
func (c *PacketConn) PacketSize() int { return int(c.pkt.Load()) }

// Send sends msg as one message, in several packets if it is larger than
// PacketSize.
func (c *PacketConn) Send(ctx context.Context, msg []byte) error {
	return c.send(ctx, msg, nil)
}

// SendFiles sends msg as one message carrying the descriptors of files (at
// most MaxFiles, attached to the message's first packet). The files stay
// open here; the peer gets its own descriptors of the same open files.
func (c *PacketConn) SendFiles(ctx context.Context, msg []byte, files ...*os.File) error {
	if err := checkFiles(files); err != nil {
		return err
	}
	return c.send(ctx, msg, files)
}

func (c *PacketConn) send(ctx context.Context, msg []byte, files []*os.File) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	if err := frame.CheckSize(len(msg), c.max); err != nil {
		return err
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	off := 0
	err := transport.WithWriteContext(ctx, &c.dl, c.fd, func() error {
		for {
			n := min(len(msg)-off, int(c.pkt.Load()))
			if off == 0 {
				n = min(n, FirstPacket)
			}
			more := off+n < len(msg)
			frame.Header{Len: n, More: more}.Put(c.shdr[:])
			var err error
			if off == 0 && len(files) > 0 {
				err = withFDs(files, nil, func(fds []int) error {
					_, err := c.raw.send(c.shdr[:], msg[:n], unix.UnixRights(fds...))
					return err
				})
			} else {
				_, err = c.raw.send(c.shdr[:], msg[off:off+n], nil)
			}
			if err != nil {
				if n > minPacket && (errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EMSGSIZE)) {
					// Too large for the kernel (its largest buffer, or
					// memory too fragmented for one): smaller packets.
					c.pkt.Store(int64(max(n/2, minPacket)))
					continue
				}
				return err
			}
			off += n
			if !more {
				return nil
			}
		}
	})
	if err == nil {
		return nil
	}
	if c.closed.Load() {
		return net.ErrClosed
	}
	err = transport.Closed(transport.PeerGone(err))
	if off > 0 && err != io.EOF && !errors.Is(err, net.ErrClosed) {
		// The peer holds the start of a message whose end will never come:
		// another message would be glued to it.
		c.werr = fmt.Errorf("%w: an earlier Send was cut after %d bytes: %v", ipcerr.ErrCorruptFrame, off, err)
	}
	return err
}

// Recv receives the next message into buf[:0]. Descriptors that came with
// it are closed.
func (c *PacketConn) Recv(ctx context.Context, buf []byte) ([]byte, error) {
	msg, fds, err := c.recv(ctx, buf, false)
	closeFDs(fds)
	return msg, err
}

// RecvFiles receives the next message and the descriptors that came with
// it (none for a message sent with Send). The caller owns the files; they
// are close-on-exec.
func (c *PacketConn) RecvFiles(ctx context.Context, buf []byte) ([]byte, []*os.File, error) {
	msg, fds, err := c.recv(ctx, buf, true)
	return msg, toFiles(fds), err
}

// recv receives a message; its descriptors only if files (else the kernel
// closes them).
func (c *PacketConn) recv(ctx context.Context, buf []byte, files bool) ([]byte, []int, error) {
	if c.closed.Load() {
		return buf[:0], nil, net.ErrClosed
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return buf[:0], nil, c.rerr
	}
	out, fds := buf[:0], []int(nil)
	c.pmu.Lock()
	mid := c.partial != nil // inside a message: packets with "more" came
	if mid {
		out, fds = c.partial, c.pfds
		c.partial, c.pfds = nil, nil
	}
	c.pmu.Unlock()
	err := transport.WithReadContext(ctx, &c.dl, c.fd, func() error {
		for {
			var more bool
			var err error
			if !mid {
				out, fds, more, err = c.recvFirst(out, fds, files)
			} else {
				c.raw.awaitReadable(midMessageSpin)
				out, fds, more, err = c.recvPacket(out, fds)
			}
			if err != nil {
				return err
			}
			if mid = more; !more {
				return nil
			}
		}
	})
	if err == nil {
		return out, fds, nil
	}
	if c.closed.Load() {
		closeFDs(fds)
		return buf[:0], nil, net.ErrClosed
	}
	err = transport.Closed(transport.PeerGone(err))
	switch {
	case errors.Is(err, ipcerr.ErrCorruptFrame), errors.Is(err, ipcerr.ErrMessageTooLarge):
		c.rerr = err
	case mid:
		if err != io.EOF && !errors.Is(err, net.ErrClosed) {
			// A deadline or the context cut the message: keep what came,
			// in memory of our own (buf is the caller's again).
			c.pmu.Lock()
			if !c.closed.Load() {
				c.partial, c.pfds, fds = append([]byte{}, out...), fds, nil
			}
			c.pmu.Unlock()
			closeFDs(fds)
			return buf[:0], nil, err
		}
	}
	closeFDs(fds)
	return buf[:0], nil, err
}

// recvFirst reads the first packet of a message with one system call
// (recvmsg(2) if files, for the descriptors, else readv(2)): into out if it
// has room for more than FirstPacket bytes, else into c.first and then out.
// A longer packet (from a sender that does not keep the bound) is reported
// as corrupt, its tail being lost; the byte past FirstPacket tells readv's
// caller, which does not learn a packet's real length.
func (c *PacketConn) recvFirst(out []byte, fds []int, files bool) ([]byte, []int, bool, error) {
	start := len(out)
	direct := cap(out)-start > FirstPacket
	var dst []byte
	if direct {
		dst = out[start : start+FirstPacket+1]
	} else {
		if c.first == nil {
			c.first = make([]byte, FirstPacket+1)
		}
		dst = c.first
	}
	var n, flags int
	var err error
	if files {
		var oobn int
		n, oobn, flags, err = c.raw.recv(c.rhdr[:], dst, c.oob, unix.MSG_CMSG_CLOEXEC|unix.MSG_TRUNC)
		if oobn > 0 {
			fds = append(fds, rights(c.oob[:oobn])...)
		}
	} else {
		n, err = c.raw.readv(c.rhdr[:], dst)
	}
	if err != nil {
		return out, fds, false, err
	}
	if n > 0 && (flags&unix.MSG_TRUNC != 0 || n > frame.HeaderSize+FirstPacket) {
		return out, fds, false, fmt.Errorf("%w: a message's first packet has %d bytes, at most %d allowed",
			ipcerr.ErrCorruptFrame, n, frame.HeaderSize+FirstPacket)
	}
	h, err := c.packetHeader(n, c.max-start)
	if err != nil {
		return out, fds, false, err
	}
	if direct {
		return out[:start+h.Len], fds, h.More, nil
	}
	return append(out, c.first[:h.Len]...), fds, h.More, nil
}

// packetHeader checks a packet of n bytes whose header is in c.rhdr, for
// a message with room for max more bytes: none means the peer is gone
// (a packet is never empty), and the header must give the packet's size.
func (c *PacketConn) packetHeader(n, max int) (frame.Header, error) {
	switch {
	case n == 0:
		return frame.Header{}, io.EOF
	case n < frame.HeaderSize:
		return frame.Header{}, fmt.Errorf("%w: %d-byte packet", ipcerr.ErrCorruptFrame, n)
	}
	h, err := frame.Parse(c.rhdr[:], max)
	if err != nil {
		return h, err
	}
	if n != frame.HeaderSize+h.Len {
		return h, fmt.Errorf("%w: %d-byte packet, its header says %d", ipcerr.ErrCorruptFrame, n, frame.HeaderSize+h.Len)
	}
	return h, nil
}

// recvPacket reads one packet, appending its payload to out and its
// descriptors to fds. It first peeks at the header with MSG_TRUNC, which
// gives the packet's real length, so the payload lands in out directly.
func (c *PacketConn) recvPacket(out []byte, fds []int) ([]byte, []int, bool, error) {
	n, _, _, err := c.raw.recv(c.rhdr[:], nil, nil, unix.MSG_PEEK|unix.MSG_TRUNC)
	if err != nil {
		return out, fds, false, err
	}
	h, err := c.packetHeader(n, c.max-len(out))
	if err != nil {
		return out, fds, false, err
	}
	start := len(out)
	out = grow(out, h.Len)
	m, oobn, flags, err := c.raw.recv(c.rhdr[:], out[start:], c.oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return out[:start], fds, false, err
	}
	if oobn > 0 {
		fds = append(fds, rights(c.oob[:oobn])...)
	}
	if m != n || flags&unix.MSG_TRUNC != 0 {
		return out[:start], fds, false, fmt.Errorf("%w: packet of %d bytes changed to %d while read", ipcerr.ErrCorruptFrame, n, m)
	}
	return out, fds, h.More, nil
}

// grow extends b by n bytes, reallocating if needed.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, max(2*cap(b), len(b)+n))
	copy(nb, b)
	return nb
}

// PeerCred returns the credentials of the peer process.
func (c *PacketConn) PeerCred() (Cred, error) { return c.cred, nil }

// SetDeadline sets the deadline of later and pending calls.
func (c *PacketConn) SetDeadline(t time.Time) error {
	c.dl.Set(t)
	return transport.Closed(c.fd.SetDeadline(t))
}

// Close closes the connection. Blocked calls return net.ErrClosed.
func (c *PacketConn) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	err := c.fd.Close()
	c.pmu.Lock()
	closeFDs(c.pfds)
	c.partial, c.pfds = nil, nil
	c.pmu.Unlock()
	return transport.Closed(err)
}

// LocalAddr returns the socket's address.
func (c *PacketConn) LocalAddr() net.Addr { return c.s.local }

// RemoteAddr returns the peer socket's address.
func (c *PacketConn) RemoteAddr() net.Addr { return c.s.remote }
