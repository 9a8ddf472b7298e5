package transport

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipcgo/ipc/internal/frame"
)

// ReadWriteDeadliner is a byte stream with deadlines, such as a net.Conn or
// an *os.File on a pipe.
type ReadWriteDeadliner interface {
	io.Reader
	io.Writer
	Deadliner
}

// StreamConn carries messages as frames over a byte stream (or over one
// stream each way, as with pipes and FIFOs). Send and Recv are each safe for
// concurrent use: concurrent Sends never interleave their frames.
type StreamConn struct {
	r, w    ReadWriteDeadliner
	closers []io.Closer
	max     int

	rmu  sync.Mutex
	rd   *frame.Reader
	wmu  sync.Mutex
	hdr  [frame.HeaderSize]byte
	sbuf []byte // header and small payload, sent with one write
	bufs net.Buffers
	fw   vectorWriter // pipes and FIFOs: one writev(2) per frame
	tail []byte       // the unwritten rest of a frame an interrupted Send began

	dl     Deadline
	closed atomic.Bool
}

// vectorWriter writes two buffers with as few system calls as it can,
// returning the bytes written: all, or fewer with an error.
type vectorWriter interface {
	writev2(a, b []byte) (int, error)
}

// vectorOf returns w's vectorWriter, if it has one (an FD does).
func vectorOf(w io.Writer) vectorWriter {
	vw, _ := w.(vectorWriter)
	return vw
}

// NewStreamConn returns a conn that reads frames from r and writes them to
// w (often the same stream); Close closes closers.
func NewStreamConn(r, w ReadWriteDeadliner, max int, closers ...io.Closer) *StreamConn {
	return &StreamConn{r: r, w: w, closers: closers, max: max, rd: frame.NewReader(r, max), fw: vectorOf(w)}
}

// Send writes msg as one frame, header and payload in one system call.
//
// A Send that its context or deadline interrupts after part of the frame
// was written returns the error and keeps the rest of the frame: the next
// Send writes it first, so the peer never sees a torn frame and gets that
// message whole once a later Send (or Flush) completes it.
func (c *StreamConn) Send(ctx context.Context, msg []byte) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	if err := frame.CheckSize(len(msg), c.max); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	frame.Header{Len: len(msg)}.Put(c.hdr[:])
	err := WithWriteContext(ctx, &c.dl, c.w, func() error {
		if err := c.flush(); err != nil {
			return err
		}
		var n int
		var err error
		if len(msg) <= 512 { // small: one copy beats a two-element writev
			c.sbuf = append(append(c.sbuf[:0], c.hdr[:]...), msg...)
			n, err = c.w.Write(c.sbuf)
		} else if c.fw != nil {
			n, err = c.fw.writev2(c.hdr[:], msg)
		} else {
			c.bufs = net.Buffers{c.hdr[:], msg}
			var n64 int64
			n64, err = c.bufs.WriteTo(c.w)
			n, c.bufs = int(n64), nil
		}
		if err != nil && n > 0 { // keep the rest of the frame for the next Send
			if n < frame.HeaderSize {
				c.tail = append(append([]byte{}, c.hdr[n:]...), msg...)
			} else {
				c.tail = append([]byte{}, msg[n-frame.HeaderSize:]...)
			}
		}
		return err
	})
	return c.fix(err)
}

// Flush writes the rest of a frame that an interrupted Send left, if any.
// Code that writes frames on the stream besides Send (descriptor passing)
// calls it first, while no Send runs.
func (c *StreamConn) Flush(ctx context.Context) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.tail) == 0 {
		return nil
	}
	return c.fix(WithWriteContext(ctx, &c.dl, c.w, c.flush))
}

// flush writes c.tail, keeping what it could not write.
func (c *StreamConn) flush() error {
	if len(c.tail) == 0 {
		return nil
	}
	n, err := c.w.Write(c.tail)
	if err != nil {
		c.tail = c.tail[n:]
		return err
	}
	c.tail = nil
	return nil
}

// Recv reads the next message, appending it to buf[:0].
func (c *StreamConn) Recv(ctx context.Context, buf []byte) ([]byte, error) {
	if c.closed.Load() {
		return buf[:0], net.ErrClosed
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	var out []byte
	err := WithReadContext(ctx, &c.dl, c.r, func() error {
		var err error
		out, err = c.rd.Read(buf)
		return err
	})
	return out, c.fix(err)
}

func (c *StreamConn) fix(err error) error {
	if err == nil {
		return nil
	}
	if c.closed.Load() {
		return net.ErrClosed
	}
	if err == io.ErrUnexpectedEOF {
		return io.EOF // the peer went away mid-message
	}
	return Closed(PeerGone(err))
}

// SetDeadline sets the deadline of both directions.
func (c *StreamConn) SetDeadline(t time.Time) error {
	if c.closed.Load() { // an *os.File says "use of closed file", not os.ErrClosed
		return net.ErrClosed
	}
	c.dl.Set(t)
	err := c.r.SetReadDeadline(t)
	if werr := c.w.SetWriteDeadline(t); err == nil {
		err = werr
	}
	return Closed(err)
}

// Close closes the streams. Blocked calls return net.ErrClosed.
func (c *StreamConn) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	var err error
	for _, cl := range c.closers {
		if cerr := cl.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
