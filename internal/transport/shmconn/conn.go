//go:build linux

package shmconn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipcgo/ipc/internal/frame"
	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/segown"
	"github.com/ipcgo/ipc/internal/transport/sock"
	"github.com/ipcgo/ipc/shm"
)

// Record flags (the ring's caller-defined byte; PROTOCOL.md, "shm transport").
const (
	flagMore  = 1 // the message continues in the next record
	flagHead  = 2 // first record of a multi-record message: payload starts with the total length (uint64)
	flagAbort = 4 // empty record: discard the partial multi-record message
)

// errDead is what the receive side's wait returns when the socket reports
// the peer gone; Recv then drains the ring before it returns io.EOF.
var errDead = errors.New("shmconn: peer gone")

// Conn is an shm connection. Besides Send and Recv it offers zero-copy
// calls (Reserve and Commit, RecvInPlace and Release) and the peer's
// credentials (PeerCred).
type Conn struct {
	sock  setupConn
	seg   *shm.Segment
	tx    *shm.Ring // this side produces
	rx    *shm.Ring // this side consumes
	max   int       // MaxMessageSize
	chunk int       // largest record payload a Send writes (MaxReserve)
	cred  sock.Cred

	_     [64]byte   // the send and the receive state on cache lines of their own
	smu   sync.Mutex // one sender at a time; held from Reserve to Commit
	sopt  shm.WaitOptions
	abort bool // a multi-record message was cut short: an abort record is owed
	zres  int  // payload bytes of the zero-copy reservation, -1 for none

	_     [64]byte
	rmu   sync.Mutex // one receiver at a time; held from RecvInPlace to Release
	ropt  shm.WaitOptions
	rerr  error  // sticky: corrupt input or an oversized message
	part  []byte // prefix of a multi-record message whose Recv was cut short
	ptot  int    // its total length
	inMsg bool   // part is valid
	held  int    // what RecvInPlace handed out: 0 nothing, 1 a record in the ring, 2 ibuf
	ibuf  []byte // reassembly buffer of RecvInPlace

	_        [64]byte
	deadline atomic.Int64 // Unix ns, 0 for none
	// expired is set once the deadline has passed, by SetDeadline or its
	// timer, so that the entry check of every call is one load instead of a
	// clock read (as Go's own poller does).
	expired atomic.Bool
	dmu     sync.Mutex // guards dtimer and dgen
	dtimer  *time.Timer
	dgen    uint64
	dead    atomic.Bool // the socket reported the peer gone
	closed  atomic.Bool
	done    chan struct{} // closed when the watcher has returned

	// use guards the segment's mapping: twice the number of calls that
	// touch the rings (a reservation of Reserve and a message held by
	// RecvInPlace count until Commit and Release), plus 1 once Close has
	// begun. Close unmaps the segment outright when it is the only use;
	// otherwise it closes the segment, which leaves a placeholder of zero
	// memory in the range (the calls still running then see zeros and
	// return net.ErrClosed), and whoever brings use to exactly 1, the last
	// call, unmaps the placeholder (segown.Unmap). So a closed connection
	// gives back its address space, and nothing of it can touch the rings
	// once they are unmapped.
	use      atomic.Int64
	unmapped atomic.Bool
}

// acquire counts a call that touches the rings; it reports false once
// Close has begun.
func (c *Conn) acquire() bool {
	if c.use.Add(2)&1 != 0 {
		c.release()
		return false
	}
	return true
}

// release ends what acquire counted, and unmaps the segment if the
// connection is closed and this was the last use.
func (c *Conn) release() error {
	if c.use.Add(-2) == 1 && !c.unmapped.Swap(true) {
		return segown.Unmap(c.seg)
	}
	return nil
}

const (
	heldNone = iota
	heldRing
	heldBuf
)

func newConn(sc setupConn, seg *shm.Segment, tx, rx *shm.Ring, cred sock.Cred, o optsLike) *Conn {
	c := &Conn{sock: sc, seg: seg, tx: tx, rx: rx, max: o.max, cred: cred, zres: -1,
		done: make(chan struct{})}
	c.chunk = tx.Capacity()/4 - shm.RecordHeaderSize
	c.sopt = shm.WaitOptions{Spin: o.spin, Stop: c.stopSend}
	c.ropt = shm.WaitOptions{Spin: o.spin, Stop: c.stopRecv}
	go c.watch()
	return c
}

// optsLike is the part of transport.Options a Conn uses.
type optsLike struct {
	max  int
	spin time.Duration
}

// watch blocks reading the socket, which carries nothing after the hello,
// until the peer closes it or dies; then it marks the peer dead and wakes
// this side's waiters. It needs no acquire: Close holds the rings until the
// watcher has returned.
func (c *Conn) watch() {
	defer close(c.done)
	var b []byte
	for {
		var err error
		if b, err = c.sock.Recv(context.Background(), b); err != nil {
			break
		}
	}
	c.dead.Store(true)
	c.rx.WakeReader()
	c.tx.WakeWriter()
}

func (c *Conn) stopSend() (time.Time, error) {
	if c.closed.Load() {
		return time.Time{}, net.ErrClosed
	}
	if c.dead.Load() {
		return time.Time{}, io.EOF
	}
	return c.dl(), nil
}

func (c *Conn) stopRecv() (time.Time, error) {
	if c.closed.Load() {
		return time.Time{}, net.ErrClosed
	}
	if c.dead.Load() {
		return time.Time{}, errDead
	}
	return c.dl(), nil
}

func (c *Conn) dl() time.Time {
	if d := c.deadline.Load(); d != 0 {
		return time.Unix(0, d)
	}
	return time.Time{}
}

// check is the entry test of every call: context, deadline.
func (c *Conn) check(ctx context.Context) error {
	if ctx.Done() != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if c.expired.Load() {
		return ipcerr.ErrTimeout
	}
	return nil
}

// fix maps an error to what the Conn API promises.
func (c *Conn) fix(err error) error {
	switch {
	case err == nil:
		return nil
	case c.closed.Load():
		return net.ErrClosed
	case errors.Is(err, shm.ErrRingCorrupt):
		return fmt.Errorf("%w: %v", ipcerr.ErrCorruptFrame, err)
	}
	return err
}

// MaxReserve returns the largest message that travels as one record: the
// limit of Reserve, and the size up to which RecvInPlace reads in place.
func (c *Conn) MaxReserve() int { return min(c.chunk, c.max) }

// PeerCred returns the credentials of the peer process, as the kernel
// recorded them when the connection was made (SO_PEERCRED).
func (c *Conn) PeerCred() (sock.Cred, error) { return c.cred, nil }

// Send sends msg as one message, copying it into the ring. A message larger
// than MaxReserve streams through the ring in several records. When the
// ring is full Send waits, as long as ctx and the deadline allow.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	if err := frame.CheckSize(len(msg), c.max); err != nil {
		if c.closed.Load() {
			return net.ErrClosed
		}
		return err
	}
	if !c.acquire() {
		return net.ErrClosed
	}
	defer c.release()
	c.smu.Lock()
	err := c.send(ctx, msg)
	c.smu.Unlock()
	if c.closed.Load() { // closed under the copy: the message may not have gone
		return net.ErrClosed
	}
	return c.fix(err)
}

func (c *Conn) send(ctx context.Context, msg []byte) error {
	if err := c.enter(ctx); err != nil {
		return err
	}
	if len(msg) <= c.chunk {
		p, err := c.reserve(ctx, len(msg), len(msg))
		if err != nil {
			return err
		}
		copy(p, msg)
		return c.tx.CommitFlags(len(msg), 0)
	}
	// Stream: records of at most chunk bytes, at least minChunk unless the
	// rest is smaller, the first one led by the total length.
	minChunk := max(c.chunk/4, 1)
	for sent := 0; sent < len(msg); {
		hdr := 0
		if sent == 0 {
			hdr = 8
		}
		rest := len(msg) - sent
		p, err := c.reserve(ctx, hdr+min(rest, minChunk), hdr+min(rest, c.chunk-hdr))
		if err != nil {
			if sent > 0 {
				c.abort = true
			}
			return err
		}
		if hdr > 0 {
			binary.LittleEndian.PutUint64(p, uint64(len(msg)))
		}
		n := copy(p[hdr:], msg[sent:])
		sent += n
		var fl uint8
		if hdr > 0 {
			fl |= flagHead
		}
		if sent < len(msg) {
			fl |= flagMore
		}
		if err := c.tx.CommitFlags(hdr+n, fl); err != nil {
			return err
		}
	}
	return nil
}

// enter runs the entry checks of a send under smu and writes an owed abort
// record.
func (c *Conn) enter(ctx context.Context) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	if c.dead.Load() {
		return io.EOF
	}
	if c.abort {
		if _, err := c.reserve(ctx, 0, 0); err != nil {
			return err
		}
		if err := c.tx.CommitFlags(0, flagAbort); err != nil {
			return err
		}
		c.abort = false
	}
	return nil
}

// reserve reserves lo to hi payload bytes in the send ring, waiting for
// room.
func (c *Conn) reserve(ctx context.Context, lo, hi int) ([]byte, error) {
	for {
		p, err := c.tx.ReserveUpTo(lo, hi)
		if err != shm.ErrRingFull {
			return p, err
		}
		if err := c.tx.WaitWritable(ctx, &c.sopt); err != nil {
			return nil, err
		}
	}
}

// Recv receives the next message into buf[:0], growing it if needed.
func (c *Conn) Recv(ctx context.Context, buf []byte) ([]byte, error) {
	if !c.acquire() {
		return buf[:0], net.ErrClosed
	}
	defer c.release()
	c.rmu.Lock()
	out, _, err := c.recv(ctx, buf[:0], false)
	c.rmu.Unlock()
	if c.closed.Load() {
		return buf[:0], net.ErrClosed
	}
	return out, c.fix(err)
}

// recv reads the next message, appending it to out. With inPlace, a
// message of one record is returned as the ring's own bytes, not released
// (held reports it).
func (c *Conn) recv(ctx context.Context, out []byte, inPlace bool) (msg []byte, held bool, err error) {
	if c.rerr != nil {
		return out, false, c.rerr
	}
	if err := c.check(ctx); err != nil {
		return out, false, err
	}
	total := 0
	inMsg := c.inMsg
	if inMsg { // resume a message cut short
		out = append(out, c.part...)
		total = c.ptot
		c.inMsg, c.part = false, c.part[:0]
	}
	dead := false
	for {
		p, fl, err := c.rx.PeekFlags()
		if err != nil {
			if err == shm.ErrRingEmpty && !dead {
				err = c.rx.WaitReadable(ctx, &c.ropt)
				if err == nil {
					continue
				}
				if err == errDead { // look once more: records written before death count
					dead = true
					continue
				}
			}
			if err == shm.ErrRingEmpty || err == io.EOF {
				return out, false, io.EOF // the peer is gone (mid-message too)
			}
			if inMsg && !errors.Is(err, shm.ErrRingCorrupt) {
				c.part = append(c.part[:0], out...)
				c.ptot, c.inMsg = total, true
			}
			return out, false, c.sticky(err)
		}
		switch {
		case !inMsg && fl == 0:
			if len(p) > c.max {
				return out, false, c.sticky(fmt.Errorf("%w: %d-byte message, limit %d", ipcerr.ErrMessageTooLarge, len(p), c.max))
			}
			if inPlace {
				return p, true, nil
			}
			out = append(out, p...)
			return out, false, c.sticky(c.rx.Release())
		case !inMsg && fl == flagHead|flagMore:
			if len(p) < 8 {
				return out, false, c.sticky(fmt.Errorf("%w: %d-byte head record", shm.ErrRingCorrupt, len(p)))
			}
			t := binary.LittleEndian.Uint64(p)
			if t > uint64(c.max) {
				return out, false, c.sticky(fmt.Errorf("%w: %d-byte message, limit %d", ipcerr.ErrMessageTooLarge, t, c.max))
			}
			total = int(t)
			if uint64(len(p)-8) >= t {
				return out, false, c.sticky(fmt.Errorf("%w: head record of %d bytes for a %d-byte message", shm.ErrRingCorrupt, len(p), t))
			}
			if cap(out)-len(out) < total {
				nb := make([]byte, len(out), len(out)+total)
				copy(nb, out)
				out = nb
			}
			out = append(out, p[8:]...)
			inMsg = true
		case inMsg && fl&^flagMore == 0:
			if len(p) > total-len(out) || (fl == 0 && len(p) != total-len(out)) {
				return out, false, c.sticky(fmt.Errorf("%w: records do not add up to the %d-byte message", shm.ErrRingCorrupt, total))
			}
			out = append(out, p...)
			if fl == 0 {
				return out, false, c.sticky(c.rx.Release())
			}
		case inMsg && fl == flagAbort && len(p) == 0:
			out, inMsg, total = out[:0], false, 0
		default:
			return out, false, c.sticky(fmt.Errorf("%w: record flags %#x (inside a message: %v)", shm.ErrRingCorrupt, fl, inMsg))
		}
		if err := c.rx.Release(); err != nil {
			return out, false, c.sticky(err)
		}
	}
}

// sticky records data errors, after which the receive side is unusable.
func (c *Conn) sticky(err error) error {
	if err != nil && (errors.Is(err, shm.ErrRingCorrupt) || errors.Is(err, ipcerr.ErrMessageTooLarge)) {
		if errors.Is(err, shm.ErrRingCorrupt) {
			err = fmt.Errorf("%w: %v", ipcerr.ErrCorruptFrame, err)
		}
		c.rerr = err
	}
	return err
}

// Reserve reserves room for a message of n bytes (at most MaxReserve) in
// the ring and returns it, to be written in place and sent with Commit. It
// waits for room as Send does. Until Commit the send side is held: other
// Sends wait, and the calling goroutine must not Send.
func (c *Conn) Reserve(ctx context.Context, n int) ([]byte, error) {
	if c.closed.Load() {
		return nil, net.ErrClosed
	}
	if n < 0 || n > c.MaxReserve() {
		return nil, fmt.Errorf("%w: reservation of %d bytes, limit %d", ipcerr.ErrMessageTooLarge, n, c.MaxReserve())
	}
	if !c.acquire() { // held until Commit: the reservation is ring memory
		return nil, net.ErrClosed
	}
	c.smu.Lock()
	err := c.enter(ctx)
	var p []byte
	if err == nil {
		p, err = c.reserve(ctx, n, n)
	}
	if err != nil {
		c.smu.Unlock()
		err = c.fix(err)
		c.release()
		return nil, err
	}
	c.zres = n
	return p, nil
}

// Commit sends the first n bytes of the reservation made by Reserve as one
// message, and releases the send side.
func (c *Conn) Commit(n int) error {
	if c.zres < 0 {
		return fmt.Errorf("shmconn: Commit without Reserve")
	}
	if n < 0 || n > c.zres {
		return fmt.Errorf("shmconn: Commit of %d bytes, %d reserved", n, c.zres)
	}
	err := c.tx.CommitFlags(n, 0)
	c.zres = -1
	c.smu.Unlock()
	defer c.release()
	if c.closed.Load() {
		return net.ErrClosed
	}
	return c.fix(err)
}

// RecvInPlace receives the next message and returns it without copying
// when it is one record (at most MaxReserve bytes): the slice is the
// ring's memory, valid until Release. A larger message is reassembled in a
// buffer of the connection, also valid until Release. Until Release the
// receive side is held: other Recvs wait, and the calling goroutine must
// not Recv.
func (c *Conn) RecvInPlace(ctx context.Context) ([]byte, error) {
	if !c.acquire() { // held until Release: the message may be ring memory
		return nil, net.ErrClosed
	}
	c.rmu.Lock()
	msg, inRing, err := c.recv(ctx, c.ibuf[:0], true)
	if err != nil {
		c.rmu.Unlock()
		err = c.fix(err)
		c.release()
		return nil, err
	}
	if inRing {
		c.held = heldRing
	} else {
		c.ibuf, c.held = msg, heldBuf
	}
	return msg, nil
}

// Release frees the message returned by RecvInPlace and releases the
// receive side.
func (c *Conn) Release() error {
	var err error
	switch c.held {
	case heldNone:
		return fmt.Errorf("shmconn: Release without RecvInPlace")
	case heldRing:
		err = c.sticky(c.rx.Release())
	}
	c.held = heldNone
	c.rmu.Unlock()
	defer c.release()
	if c.closed.Load() {
		return net.ErrClosed
	}
	return c.fix(err)
}

// SetDeadline sets the deadline of later and pending calls and wakes the
// pending ones so that they see it.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	var d int64
	if !t.IsZero() {
		d = t.UnixNano()
		if d <= 0 || t.After(time.Unix(0, math.MaxInt64)) { // outside UnixNano's range
			if t.Before(time.Unix(0, 0)) {
				d = 1
			} else {
				d = math.MaxInt64
			}
		}
	}
	c.dmu.Lock()
	if c.dtimer != nil {
		c.dtimer.Stop()
		c.dtimer = nil
	}
	c.dgen++
	c.deadline.Store(d)
	left := time.Until(t)
	c.expired.Store(d != 0 && left <= 0)
	if d != 0 && left > 0 {
		gen := c.dgen
		c.dtimer = time.AfterFunc(left, func() {
			c.dmu.Lock()
			if c.dgen == gen {
				c.expired.Store(true)
			}
			c.dmu.Unlock()
			c.wakeAll()
		})
	}
	c.dmu.Unlock()
	c.wakeAll()
	return nil
}

// wakeAll wakes this side's waiters so that they look at the deadline and
// the closed flag again.
func (c *Conn) wakeAll() {
	if !c.acquire() {
		return
	}
	c.rx.WakeReader()
	c.tx.WakeWriter()
	c.release()
}

// Close closes the connection: both rings are marked closed for the peer,
// pending calls return net.ErrClosed, the socket and the segment are
// closed, and the segment's memory is unmapped as soon as no call is still
// running on it. Memory returned by Reserve or RecvInPlace must not be used
// after Close: until Commit or Release it reads as zeros and its writes go
// nowhere (it never faults), and Commit or Release then unmap it.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	c.use.Add(2) // Close touches the rings itself
	c.use.Or(1)
	c.dmu.Lock()
	if c.dtimer != nil {
		c.dtimer.Stop()
	}
	c.dmu.Unlock()
	c.tx.CloseWrite() // the peer's Recv: io.EOF once it has read everything
	c.rx.CloseRead()  // the peer's Send: io.EOF
	c.rx.WakeReader() // this side's waiters see closed
	c.tx.WakeWriter()
	err := c.sock.Close()
	<-c.done // the watcher is done with the rings
	var serr error
	if c.use.Load() == 3 { // Close alone: no call can begin any more
		c.unmapped.Store(true)
		serr = segown.Unmap(c.seg)
	} else {
		serr = c.seg.Close()
	}
	if rerr := c.release(); serr == nil {
		serr = rerr
	}
	if err == nil {
		err = serr
	}
	return err
}
