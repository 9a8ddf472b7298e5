package frame

import (
	"fmt"
	"io"
	"unsafe"

	"github.com/ipcgo/ipc/internal/ipcerr"
)

// Reader reads messages from a byte stream. It buffers, so that a small
// message and the header after it usually take one read system call. It is
// not safe for concurrent use.
type Reader struct {
	r    io.Reader
	max  int
	buf  []byte
	lo   int // buf[lo:hi] holds bytes read and not consumed
	hi   int
	want int      // bytes one read asks for: about one frame, the last one's size
	err  error    // sticky: after a corrupt frame the stream is lost
	part *partial // a message interrupted by an error, resumed by the next Read
}

// NewReader returns a Reader of messages of at most max bytes.
func NewReader(r io.Reader, max int) *Reader {
	const size = 64 << 10
	return &Reader{r: r, max: max, buf: make([]byte, size), want: size}
}

// fill reads at least n buffered bytes (n <= len(buf)).
//
// Each read asks for about one frame (the size of the last one), not for
// all the buffer holds. Draining a byte stream of small messages as fast as
// possible leaves it empty most of the time, so that the sender's every
// write must wake the reader: measured across two pinned vCPUs, a pipe of
// 72-byte frames carried 1.2 M msg/s read 64 KiB at a time and 1.5 M msg/s
// read a frame at a time, with the same system calls around it.
func (r *Reader) fill(n int) error {
	if r.hi-r.lo >= n {
		return nil
	}
	if r.lo > 0 {
		r.hi = copy(r.buf, r.buf[r.lo:r.hi])
		r.lo = 0
	}
	end := min(len(r.buf), max(n, r.want))
	for r.hi < n {
		m, err := r.r.Read(r.buf[r.hi:end])
		r.hi += m
		if r.hi >= n {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Read reads the next message and appends it to buf[:0]. At a clean end of
// the stream (between messages) it returns io.EOF; a stream that ends inside
// a message gives io.ErrUnexpectedEOF. Any other error of the underlying
// reader (a deadline, say) leaves the Reader usable, also in the middle of
// a message: the Reader keeps what it received, and the next Read resumes
// the message where it stopped. Corrupt input gives ErrCorruptFrame or
// ErrMessageTooLarge, and every later call returns it too, as after the
// end of the stream inside a message.
func (r *Reader) Read(buf []byte) ([]byte, error) {
	if r.err != nil {
		return buf[:0], r.err
	}
	out := buf[:0]
	p := partial{more: true}
	started := false // a header of this message was consumed
	if r.part != nil {
		p, started = *r.part, true
		r.part = nil
		if cap(buf) >= len(p.got)+p.due {
			out = append(out, p.got...)
		} else {
			out = p.got // no copy: repeated interruptions cost nothing
		}
	}
	for {
		if p.due > 0 {
			n, err := r.payload(&out, p.due)
			p.due -= n
			if err != nil {
				return r.interrupt(buf, out, p, err)
			}
		}
		if !p.more {
			return out, nil
		}
		if err := r.fill(HeaderSize); err != nil {
			if !started && err == io.EOF && r.hi == r.lo {
				return out, io.EOF
			}
			if !started && err != io.EOF {
				return out, err // at a message boundary; a partial header stays buffered
			}
			return r.interrupt(buf, out, p, err)
		}
		h, err := Parse(r.buf[r.lo:r.hi], r.max-len(out))
		if err != nil {
			r.err = err
			return out, err
		}
		r.lo += HeaderSize
		r.want = HeaderSize + h.Len
		started = true
		p.due, p.more = h.Len, h.More
	}
}

// partial is a message that an error of the underlying reader interrupted.
type partial struct {
	got  []byte // payload received so far
	due  int    // bytes of the current frame's payload still to come
	more bool   // another frame follows the current one
}

// interrupt handles an error of the underlying reader inside a message,
// out holding what arrived of it: the end of the stream is final
// (io.ErrUnexpectedEOF); after any other error the Reader keeps the
// message for the next Read to resume, and hands the caller back buf[:0].
func (r *Reader) interrupt(buf, out []byte, p partial, err error) ([]byte, error) {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		r.err = io.ErrUnexpectedEOF
		return out, r.err
	}
	switch {
	case cap(out) == 0:
		p.got = nil
	case cap(buf) > 0 && unsafe.SliceData(out) == unsafe.SliceData(buf):
		// In the caller's buffer, which it may reuse: copy.
		p.got = append(make([]byte, 0, len(out)+p.due), out...)
	default:
		p.got = out // allocated here; the caller does not get it
	}
	r.part = &p
	return buf[:0], err
}

// payload appends up to n payload bytes to *out and returns how many it
// appended: n, or fewer with the underlying reader's error.
func (r *Reader) payload(out *[]byte, n int) (int, error) {
	start := len(*out)
	*out = grow(*out, n)
	b := (*out)[start:]
	c := copy(b, r.buf[r.lo:r.hi])
	r.lo += c
	m, err := io.ReadFull(r.r, b[c:])
	*out = (*out)[:start+c+m]
	return c + m, err
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

// Err returns the sticky error, if any.
func (r *Reader) Err() error { return r.err }

// CheckSize returns ErrMessageTooLarge if a message of n bytes exceeds max.
func CheckSize(n, max int) error {
	if n > max {
		return fmt.Errorf("%w: %d bytes, limit %d", ipcerr.ErrMessageTooLarge, n, max)
	}
	return nil
}
