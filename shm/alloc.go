package shm

import (
	"bytes"
	"fmt"
	"sync/atomic"

	"github.com/ipcgo/ipc/internal/mmap"
)

// Kind tells what an object in a segment's directory is. KindData is user
// data placed with Alloc; the procsync package defines the kinds of its
// primitives (PROTOCOL.md lists every value).
type Kind uint32

// KindData marks a region of user data.
const KindData Kind = 1

// Region is a named, 64-byte aligned span of a segment's data area.
type Region struct {
	seg  *Segment
	Name string
	Kind Kind
	Off  int // offset from the start of the segment
	Len  int
}

// Segment returns the segment the region lives in.
func (r Region) Segment() *Segment { return r.seg }

// Bytes returns the region's memory. It is shared with every process that
// maps the segment: reads and writes that race with other processes need
// the atomic views (Uint32, Uint64) or a lock. The slice must not be used
// after the segment is closed.
func (r Region) Bytes() []byte { return r.seg.view()[r.Off : r.Off+r.Len : r.Off+r.Len] }

// Uint32 returns an atomic view of the 4 bytes at byte offset off of the
// region; off must be a multiple of 4 and inside the region.
func (r Region) Uint32(off int) *atomic.Uint32 {
	r.check(off, 4)
	return mmap.Uint32(r.seg.view(), r.Off+off)
}

// Uint64 returns an atomic view of the 8 bytes at byte offset off of the
// region; off must be a multiple of 8 and inside the region.
func (r Region) Uint64(off int) *atomic.Uint64 {
	r.check(off, 8)
	return mmap.Uint64(r.seg.view(), r.Off+off)
}

func (r Region) check(off, n int) {
	if off < 0 || off+n > r.Len || off%n != 0 {
		panic(fmt.Sprintf("shm: offset %d of a %d-byte word outside region %q of %d bytes or misaligned", off, n, r.Name, r.Len))
	}
}

func (s *Segment) entry(i int) []byte {
	off := int(s.hdr.DirOff) + i*EntrySize
	return s.mem[off : off+EntrySize]
}

// readEntry decodes directory entry i if it is published.
func (s *Segment) readEntry(i int) (Region, bool) {
	e := s.entry(i)
	if mmap.Uint32(e, entState).Load() != entryReady {
		return Region{}, false
	}
	name := e[entName : entName+MaxObjectName]
	if n := bytes.IndexByte(name, 0); n >= 0 {
		name = name[:n]
	}
	off := mmap.Uint64(e, entOff).Load()
	size := mmap.Uint64(e, entSize).Load()
	if off < uint64(s.hdr.DataOff) || off > s.hdr.Size || size > s.hdr.Size-off { // no off+size: it can wrap
		return Region{}, false // a damaged entry is never handed out
	}
	return Region{seg: s, Name: string(name), Kind: Kind(mmap.Uint32(e, entKind).Load()),
		Off: int(off), Len: int(size)}, true
}

// Objects lists the objects in the segment's directory, in creation order.
func (s *Segment) Objects() ([]Region, error) {
	if s.closed.Load() {
		return nil, opErr("objects", s.name, errClosed)
	}
	if !s.pin() {
		return nil, opErr("objects", s.name, errClosed)
	}
	defer s.unpin()
	var out []Region
	for i := 0; i < int(s.hdr.Objects); i++ {
		if r, ok := s.readEntry(i); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// Lookup finds the object called name.
func (s *Segment) Lookup(name string) (Region, error) {
	if s.closed.Load() {
		return Region{}, opErr("lookup", s.name, errClosed)
	}
	if !s.pin() {
		return Region{}, opErr("lookup", s.name, errClosed)
	}
	r, _, ok := s.find(name)
	s.unpin()
	if !ok {
		return Region{}, opErr("lookup", s.name, fmt.Errorf("%w: %q", ErrObjectNotFound, name))
	}
	return r, nil
}

// find returns the object called name, or the index of the first free
// directory entry (-1 if none). The caller pins the mapping or holds the
// directory lock.
func (s *Segment) find(name string) (Region, int, bool) {
	free := -1
	for i := 0; i < int(s.hdr.Objects); i++ {
		r, ok := s.readEntry(i)
		if !ok {
			if free < 0 && mmap.Uint32(s.entry(i), entState).Load() == entryFree {
				free = i
			}
			continue
		}
		if r.Name == name {
			return r, i, true
		}
	}
	return Region{}, free, false
}

// Alloc returns the user-data region called name, creating it with size
// bytes (zeroed, 64-byte aligned) if it does not exist. An existing region
// must have the same size (ErrKindMismatch otherwise).
func (s *Segment) Alloc(name string, size int) (Region, error) {
	r, _, err := s.AllocObject(name, KindData, size, nil)
	return r, err
}

// AllocObject is Alloc for any kind: it returns the object called name,
// creating it if absent. When it creates the object, init runs on its
// zeroed bytes before the object becomes visible to other processes, so a
// primitive's initial state is never seen half-written. created tells which
// happened. Space is never reused: objects live as long as the segment.
func (s *Segment) AllocObject(name string, kind Kind, size int, init func([]byte)) (r Region, created bool, err error) {
	if err := checkName(name, MaxObjectName); err != nil {
		return Region{}, false, opErr("alloc", s.name, err)
	}
	if size <= 0 || uint64(size) > s.hdr.Size {
		return Region{}, false, opErr("alloc", s.name, fmt.Errorf("%w: object size %d", ErrBadConfig, size))
	}
	if !s.pin() {
		return Region{}, false, opErr("alloc", s.name, errClosed)
	}
	r, _, ok := s.find(name)
	s.unpin()
	if ok { // lock-free fast path for objects that exist
		return r, false, s.sameObject(r, kind, size)
	}
	if err := s.lockDir(); err != nil {
		return Region{}, false, opErr("alloc", s.name, err)
	}
	defer s.unlockDir() // Close waits for it: the mapping stays
	r, free, ok := s.find(name)
	if ok {
		return r, false, s.sameObject(r, kind, size)
	}
	if free < 0 {
		return Region{}, false, opErr("alloc", s.name, fmt.Errorf("%w: all %d directory entries used", ErrNoSpace, s.hdr.Objects))
	}
	cursor := mmap.Uint64(s.mem, offAllocNext)
	off := alignUp(cursor.Load(), Align)
	end := off + uint64(size)
	if end > s.hdr.Size || off < uint64(s.hdr.DataOff) {
		return Region{}, false, opErr("alloc", s.name, fmt.Errorf("%w: %d bytes wanted, %d free", ErrNoSpace, size, int64(s.hdr.Size)-int64(off)))
	}
	mem := s.mem[off:end:end]
	clear(mem) // space is fresh, but a crash mid-allocation may have left bytes behind
	if init != nil {
		init(mem)
	}
	cursor.Store(alignUp(end, Align))
	e := s.entry(free)
	clear(e[entName:])
	copy(e[entName:], name)
	mmap.Uint32(e, entKind).Store(uint32(kind))
	mmap.Uint64(e, entOff).Store(off)
	mmap.Uint64(e, entSize).Store(uint64(size))
	mmap.Uint32(e, entState).Store(entryReady) // publish last
	return Region{seg: s, Name: name, Kind: kind, Off: int(off), Len: size}, true, nil
}

func (s *Segment) sameObject(r Region, kind Kind, size int) error {
	if r.Kind != kind || r.Len != size {
		return opErr("alloc", s.name, fmt.Errorf("%w: %q is kind %d with %d bytes, wanted kind %d with %d",
			ErrKindMismatch, r.Name, r.Kind, r.Len, kind, size))
	}
	return nil
}
