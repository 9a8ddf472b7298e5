package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/ipcgo/ipc/internal/kwait"
	"github.com/ipcgo/ipc/internal/mmap"
)

// KindRing marks a single-producer single-consumer byte ring (AllocRing).
const KindRing Kind = 2

// Ring layout constants; PROTOCOL.md ("Ring") is the reference.
const (
	// RingVersion is the version of the ring layout this package writes and
	// reads.
	RingVersion = 1
	// RingHeaderSize is the size of a ring's header; the data area follows.
	RingHeaderSize = 640
	// RecordHeaderSize is the size of the header in front of every record.
	RecordHeaderSize = 8
	// MinRingCapacity and MaxRingCapacity bound a ring's data area, whose
	// size is a power of two.
	MinRingCapacity = 64
	MaxRingCapacity = 1 << 40

	ringMagic = "IPCGRING"

	rOffMagic   = 0
	rOffVersion = 8
	rOffHdrSize = 12
	rOffCap     = 16
	rOffClosed  = 24
	rOffTail    = 128 // producer index, alone in its 128-byte block
	rOffHead    = 256 // consumer index
	rOffRWait   = 384 // "reader waiting" futex word
	rOffWWait   = 512 // "writer waiting" futex word

	closedProducer = 1 // bit of the closed word: no more records will come
	closedConsumer = 2 // the consumer will read no more

	recMagic = 0xA5C3 // bytes 6..7 of every record header
	recData  = 1
	recPad   = 2
)

// Errors of ring operations. For speed they are returned as they are, not
// inside an *OpError; the corrupt-ring error carries details and wraps
// ErrRingCorrupt.
var (
	// ErrRingCorrupt means the ring's header, indices or a record header
	// are not valid. The ring (that side of it) is unusable afterwards.
	ErrRingCorrupt = errors.New("shm: corrupt ring")
	// ErrRingFull means Reserve found too little free space; WaitWritable
	// waits for more.
	ErrRingFull = errors.New("shm: ring full")
	// ErrRingEmpty means Peek found no record; WaitReadable waits for one.
	ErrRingEmpty = errors.New("shm: ring empty")
	// ErrRecordTooLarge means a record would not fit in the ring even when
	// it is empty (see Ring.MaxRecord).
	ErrRecordTooLarge = errors.New("shm: record larger than the ring")
	// ErrRingState means Commit without Reserve, or Release without Peek.
	ErrRingState = errors.New("shm: commit without reserve or release without peek")
)

// Ring is one process's view of a single-producer single-consumer byte
// ring in shared memory. One goroutine (in one process) produces, with
// Reserve and Commit; one goroutine (in the same or another process)
// consumes, with Peek and Release. The producer and the consumer may share
// one *Ring or use one each (each process attaches its own); the producer
// calls and the consumer calls must each be serialised by the caller.
//
// Records are written and read in place: Reserve returns the record's
// payload as a slice of the ring, Commit publishes it; Peek returns the next
// record's payload as a slice of the ring, Release frees its space. The
// slices are valid until Commit or Release, and they are shared memory:
// after Release the producer overwrites the bytes.
//
// A Ring never trusts the shared memory: every index and record header it
// reads is checked before use, so a corrupt or hostile peer yields
// ErrRingCorrupt, never a panic or an access outside the ring.
//
// # Protocol
//
// The producer's index (tail) and the consumer's index (head) grow without
// bound and are masked by capacity-1; they sit in 128-byte blocks of their
// own, as do the two waiting flags, so that the two sides never share a
// cache line (or an adjacent-line prefetch pair) they write. A record is an
// 8-byte header (payload length, type, flags, magic) and its payload,
// padded to 8 bytes, contiguous in the data area: a record that does not
// fit before the end is preceded by a padding record that fills the end.
// Commit writes a zero word where the next record's header will go, then
// the header, then the index. The consumer knows a record is there either
// from the index (when it is behind, one read of the index covers many
// records) or, when it has caught up and waits, from the header word
// itself turning non-zero: a round trip then costs the transfer of the
// record's own cache lines, not that of the index line besides.
//
// Waiting (WaitReadable, WaitWritable) spins, then sets the side's waiting
// flag and sleeps on it: with futex(2) in its own thread when the ring was
// busy a moment ago, otherwise on an idle hub (ring_idle.go). The other side, after publishing,
// makes the wake-up system call only if the flag is set; a sequentially
// consistent store of the index before the flag is read, and of the flag
// before the waiter's last check, rule out a lost wake-up.
type Ring struct {
	data   []byte // the data area, capacity bytes
	mask   uint64
	cap    uint64
	closed *atomic.Uint32
	tail   *atomic.Uint64
	head   *atomic.Uint64
	rwait  *atomic.Uint32
	wwait  *atomic.Uint32

	_ [64]byte // producer and consumer state on separate cache lines

	ptail    uint64 // producer: the tail it has written up to
	phead    uint64 // producer: last head read
	pres     int    // producer: payload bytes reserved, -1 for none
	wantHead uint64 // producer: head needed by the last failed Reserve
	perr     error
	pact     kwait.Activity // producer: when its waits end (ring_wait.go)

	_ [64]byte

	chead uint64 // consumer: the head it has read up to
	ctail uint64 // consumer: last tail read; records before it are certainly there
	seen  bool   // consumer: WaitReadable saw the header at chead
	cpeek uint64 // consumer: total size of the peeked record, 0 for none
	cerr  error
	cact  kwait.Activity // consumer: when its waits end

	_ [64]byte
}

// recSize is the space a record of n payload bytes takes: its header and
// the payload, padded to a multiple of 8 bytes.
func recSize(n uint64) uint64 { return (RecordHeaderSize + n + 7) &^ 7 }

// RingSize returns the bytes a ring of the given capacity occupies: the
// header and the data area.
func RingSize(capacity int) int { return RingHeaderSize + capacity }

func checkCapacity(c uint64) error {
	if c < MinRingCapacity || c > MaxRingCapacity || c&(c-1) != 0 {
		return fmt.Errorf("%w: ring capacity %d must be a power of two in [%d, %d]",
			ErrBadConfig, c, MinRingCapacity, uint64(MaxRingCapacity))
	}
	return nil
}

// InitRing formats b as an empty ring whose data area is the rest of b
// after the header: len(b)-RingHeaderSize must be a power of two in
// [MinRingCapacity, MaxRingCapacity]. b must be 64-byte aligned (every
// Region is) and not in use by anyone yet.
func InitRing(b []byte) error {
	if len(b) < RingHeaderSize {
		return fmt.Errorf("%w: %d bytes cannot hold a ring", ErrBadConfig, len(b))
	}
	c := uint64(len(b) - RingHeaderSize)
	if err := checkCapacity(c); err != nil {
		return err
	}
	if !mmap.Aligned(b, Align) {
		return fmt.Errorf("%w: ring memory not 64-byte aligned", ErrBadConfig)
	}
	clear(b[:RingHeaderSize])
	copy(b[rOffMagic:], ringMagic)
	le := binary.LittleEndian
	le.PutUint32(b[rOffVersion:], RingVersion)
	le.PutUint32(b[rOffHdrSize:], RingHeaderSize)
	le.PutUint64(b[rOffCap:], c)
	clear(b[RingHeaderSize : RingHeaderSize+RecordHeaderSize]) // no record at index 0 yet
	return nil
}

// AttachRing returns a view of the ring in b, after checking its header:
// magic, version, header size, capacity (a power of two equal to
// len(b)-RingHeaderSize), and indices (multiples of 8, tail-head at most
// the capacity). It fails with ErrRingCorrupt (or ErrBadConfig for memory
// that is not 8-byte aligned). The view starts at the ring's current
// indices, so a process may attach while the ring is in use.
func AttachRing(b []byte) (*Ring, error) {
	if len(b) < RingHeaderSize || string(b[:len(ringMagic)]) != ringMagic {
		return nil, fmt.Errorf("%w: no ring magic", ErrRingCorrupt)
	}
	if !mmap.Aligned(b, 8) {
		return nil, fmt.Errorf("%w: ring memory not 8-byte aligned", ErrBadConfig)
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[rOffVersion:]); v != RingVersion {
		return nil, fmt.Errorf("%w: ring version %d, this build reads %d", ErrVersion, v, RingVersion)
	}
	if hs := le.Uint32(b[rOffHdrSize:]); hs != RingHeaderSize {
		return nil, fmt.Errorf("%w: header size %d", ErrRingCorrupt, hs)
	}
	c := le.Uint64(b[rOffCap:])
	if checkCapacity(c) != nil || c != uint64(len(b)-RingHeaderSize) {
		return nil, fmt.Errorf("%w: capacity %d in a %d-byte ring", ErrRingCorrupt, c, len(b))
	}
	r := &Ring{
		data:   b[RingHeaderSize:len(b):len(b)],
		mask:   c - 1,
		cap:    c,
		closed: mmap.Uint32(b, rOffClosed),
		tail:   mmap.Uint64(b, rOffTail),
		head:   mmap.Uint64(b, rOffHead),
		rwait:  mmap.Uint32(b, rOffRWait),
		wwait:  mmap.Uint32(b, rOffWWait),
		pres:   -1,
	}
	t, h := r.tail.Load(), r.head.Load()
	// The consumer may be one record ahead of the producer's index (see
	// PeekFlags), never more than the ring.
	if d := int64(t - h); d > int64(c) || d < -int64(c) || t%8 != 0 || h%8 != 0 {
		return nil, fmt.Errorf("%w: indices head %d tail %d, capacity %d", ErrRingCorrupt, h, t, c)
	}
	r.ptail, r.phead, r.chead, r.ctail = max(t, h), h, h, h
	return r, nil
}

// AllocRing returns the ring called name in the segment, creating it with
// a data area of capacity bytes (a power of two) if it does not exist.
func (s *Segment) AllocRing(name string, capacity int) (*Ring, error) {
	if err := checkCapacity(uint64(capacity)); err != nil || capacity > int(s.hdr.Size) {
		if err == nil {
			err = fmt.Errorf("%w: ring capacity %d larger than the segment", ErrBadConfig, capacity)
		}
		return nil, opErr("alloc", s.name, err)
	}
	reg, _, err := s.AllocObject(name, KindRing, RingSize(capacity), func(b []byte) { _ = InitRing(b) })
	if err != nil {
		return nil, err
	}
	r, err := AttachRing(reg.Bytes())
	return r, opErr("alloc", s.name, err)
}

// Ring attaches to the existing ring called name.
func (s *Segment) Ring(name string) (*Ring, error) {
	reg, err := s.Lookup(name)
	if err != nil {
		return nil, err
	}
	if reg.Kind != KindRing {
		return nil, opErr("ring", s.name, fmt.Errorf("%w: %q is kind %d, not a ring", ErrKindMismatch, name, reg.Kind))
	}
	r, err := AttachRing(reg.Bytes())
	return r, opErr("ring", s.name, err)
}

// Capacity returns the size of the data area in bytes.
func (r *Ring) Capacity() int { return int(r.cap) }

// MaxRecord returns the largest payload one record can carry: the
// capacity less two record headers (its own, and the zero word after it).
func (r *Ring) MaxRecord() int { return int(r.maxRecord()) }

// maxRecord is the largest n with recSize(n) plus the zero word after it
// at most the capacity.
func (r *Ring) maxRecord() uint64 { return r.cap - 2*RecordHeaderSize }

// Len returns the bytes (records with their headers and padding) between
// the consumer's and the producer's index, as last published: 0 while the
// consumer is ahead of a producer's index not yet stored, -1 if the indices
// are corrupt.
func (r *Ring) Len() int {
	t := r.tail.Load()
	d := int64(t - r.head.Load())
	switch {
	case d < -int64(r.cap) || d > int64(r.cap):
		return -1
	case d < 0:
		return 0
	}
	return int(d)
}

func (r *Ring) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRingCorrupt}, args...)...)
}

// ---- producer ----

// Reserve reserves a record of n payload bytes and returns the payload, a
// slice of the ring to write in place; Commit publishes it. It does not
// block: with too little free space it returns ErrRingFull (see
// WaitWritable). Once the consumer has closed its side it returns io.EOF.
// Calling Reserve again before Commit replaces the reservation.
//
// A record is contiguous in the ring. When it does not fit between the
// producer's position and the end of the data area, Reserve first
// publishes a padding record that fills that end, so it may return
// ErrRingFull after having moved the producer's index.
func (r *Ring) Reserve(n int) ([]byte, error) { return r.ReserveUpTo(n, n) }

// ReserveUpTo reserves a record of at least min and at most max payload
// bytes, as many as the free contiguous space allows, so that a producer of
// a stream of chunks fills the ring without waiting for room for a whole
// chunk. It returns ErrRingFull when fewer than min bytes fit.
func (r *Ring) ReserveUpTo(min, max int) ([]byte, error) {
	if r.perr != nil {
		return nil, r.perr
	}
	if min < 0 || max < min || uint64(min) > r.maxRecord() {
		return nil, ErrRecordTooLarge
	}
	if r.closed.Load()&closedConsumer != 0 {
		return nil, io.EOF
	}
	// A record of size s at index t also needs the 8 bytes at t+s, where
	// Commit writes a zero word: the next record's header, not yet valid.
	need := recSize(uint64(min)) + RecordHeaderSize
	for {
		pos := r.ptail & r.mask
		end := r.cap - pos
		if need-RecordHeaderSize > end { // pad to the end of the data area, then start over at 0
			if !r.space(end + RecordHeaderSize) {
				return nil, r.full(end + RecordHeaderSize)
			}
			r.publish(pos, end, recHeader(end-RecordHeaderSize, recPad, 0))
			continue
		}
		if !r.space(need) {
			return nil, r.full(need)
		}
		n := uint64(max)
		if lim := min64(r.cap-(r.ptail-r.phead)-RecordHeaderSize, end) - RecordHeaderSize; n > lim {
			n = lim // at least min: recSize(min) fits both limits
		}
		r.pres = int(n)
		p := pos + RecordHeaderSize
		return r.data[p : p+n : p+n], nil
	}
}

func min64(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return b
}

// space reports whether need bytes are free at the producer's index,
// reading the consumer's index only when the last value read is not enough.
func (r *Ring) space(need uint64) bool {
	if r.ptail+need-r.phead <= r.cap {
		return true
	}
	h := r.head.Load()
	if r.ptail-h > r.cap || h%8 != 0 {
		r.perr = r.corrupt("head %d, producer at %d, capacity %d", h, r.ptail, r.cap)
		return false
	}
	r.phead = h
	return r.ptail+need-h <= r.cap
}

func (r *Ring) full(need uint64) error {
	if r.perr != nil {
		return r.perr
	}
	r.wantHead = r.ptail + need - r.cap
	return ErrRingFull
}

// Commit publishes the reserved record with n payload bytes (n at most the
// reserved length) and wakes the consumer if it sleeps.
func (r *Ring) Commit(n int) error { return r.CommitFlags(n, 0) }

// CommitFlags is Commit with 8 bits of caller-defined flags stored in the
// record header and returned by PeekFlags.
func (r *Ring) CommitFlags(n int, flags uint8) error {
	if r.pres < 0 || n < 0 || n > r.pres {
		return ErrRingState
	}
	r.pres = -1
	r.publish(r.ptail&r.mask, recSize(uint64(n)), recHeader(uint64(n), recData, flags))
	return nil
}

func recHeader(n uint64, typ, flags uint8) uint64 {
	return n | uint64(typ)<<32 | uint64(flags)<<40 | recMagic<<48
}

// publish publishes the record of size bytes at pos whose header is h: it
// zeroes the word after the record (the consumer reads a zero header as
// "nothing yet"), stores the header (a release store: the payload is
// visible first), then the producer's index, and wakes the consumer only if
// it announced that it sleeps. The index store is sequentially consistent,
// so the load of the waiting flag passes neither it nor the header store.
func (r *Ring) publish(pos, size, h uint64) {
	r.ptail += size
	binary.LittleEndian.PutUint64(r.data[(pos+size)&r.mask:], 0)
	storeRelease(mmap.Uint64(r.data, int(pos)), h)
	r.tail.Store(r.ptail)
	if r.rwait.Load() != 0 && r.rwait.Swap(0) != 0 {
		wake(r.rwait)
	}
}

// CloseWrite marks the ring as finished by the producer: once the consumer
// has read every record, Peek returns io.EOF. It wakes the consumer.
func (r *Ring) CloseWrite() {
	r.closed.Or(closedProducer)
	r.WakeReader()
}

// CloseRead marks the ring as abandoned by the consumer: Reserve returns
// io.EOF. It wakes the producer.
func (r *Ring) CloseRead() {
	r.closed.Or(closedConsumer)
	r.WakeWriter()
}

// ---- consumer ----

// Peek returns the payload of the next record, in place; Release frees it.
// It does not block: without a record it returns ErrRingEmpty (see
// WaitReadable), or io.EOF once the producer has closed its side. Peek
// again before Release returns the same record.
func (r *Ring) Peek() ([]byte, error) {
	p, _, err := r.PeekFlags()
	return p, err
}

// PeekFlags is Peek that also returns the flags given to CommitFlags.
//
// The producer stores a record's header word last but one, then its index
// (tail); a zero header word means "nothing yet". A consumer that is
// behind learns from one load of the producer's index that a batch of
// records is there and reads them without touching the producer's index
// again; a consumer that has caught up (it waited, and saw the header
// arrive) reads the record as soon as its header is there, without waiting
// for the index to travel too.
func (r *Ring) PeekFlags() ([]byte, uint8, error) {
	if r.cerr != nil {
		return nil, 0, r.cerr
	}
	for {
		pos := r.chead & r.mask
		hp := mmap.Uint64(r.data, int(pos))
		known := int64(r.ctail-r.chead) > 0 // the index said a record is here
		if !known && !r.seen {
			d, err := r.loadTail()
			if err != nil {
				return nil, 0, err
			}
			known = d > 0
		}
		r.seen = false
		h := hp.Load()
		if h == 0 {
			if known { // the header is stored before the index
				r.cerr = r.corrupt("no record at index %d, tail %d", r.chead, r.ctail)
				return nil, 0, r.cerr
			}
			// The producer closes after its last record's header: a header
			// still zero after the close is final.
			if r.closed.Load()&closedProducer == 0 {
				return nil, 0, ErrRingEmpty
			}
			if h = hp.Load(); h == 0 {
				return nil, 0, io.EOF
			}
		}
		n := h & 0xffffffff
		typ, flags := uint8(h>>32), uint8(h>>40)
		size := recSize(n)
		if h>>48 != recMagic {
			r.cerr = r.corrupt("record header %#016x at index %d", h, r.chead)
			return nil, 0, r.cerr
		}
		switch {
		case typ == recData && size+RecordHeaderSize <= r.cap && size <= r.cap-pos:
			r.cpeek = size
			return r.data[pos+RecordHeaderSize : pos+RecordHeaderSize+n : pos+RecordHeaderSize+n], flags, nil
		case typ == recPad && size == r.cap-pos && pos != 0 && flags == 0: // never two pads in a row
			r.chead += size
			r.cpeek = 0
			r.publishHead()
		default:
			r.cerr = r.corrupt("record header %#016x at index %d (type %d, %d bytes)", h, r.chead, typ, n)
			return nil, 0, r.cerr
		}
	}
}

// loadTail reads the producer's index, checks it and remembers it when it
// is ahead of the consumer; it returns how far ahead.
func (r *Ring) loadTail() (int64, error) {
	t := r.tail.Load()
	// The index may lag the consumer by the record just published (header
	// first, index next), never by more than the ring.
	d := int64(t - r.chead)
	if t%8 != 0 || d > int64(r.cap) || d < -int64(r.cap) {
		r.cerr = r.corrupt("tail %d, consumer at %d, capacity %d", t, r.chead, r.cap)
		return 0, r.cerr
	}
	if d > 0 {
		r.ctail = t
	}
	return d, nil
}

// Release frees the record returned by the last Peek and wakes the
// producer if it sleeps for space.
func (r *Ring) Release() error {
	if r.cpeek == 0 {
		return ErrRingState
	}
	r.chead += r.cpeek
	r.cpeek = 0
	r.publishHead()
	return nil
}

func (r *Ring) publishHead() {
	r.head.Store(r.chead)
	if r.wwait.Load() != 0 && r.wwait.Swap(0) != 0 {
		wake(r.wwait)
	}
}
