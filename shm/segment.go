package shm

import (
	"encoding/binary"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipcgo/ipc/internal/mmap"
)

// Segment is a handle on a mapped shared-memory segment. Its methods are safe
// for concurrent use. Each handle holds one process slot of the segment,
// which identifies it as an owner of locks and is released by Close or by
// the death of the process.
type Segment struct {
	name   string // "" for an anonymous segment
	f      *os.File
	mem    []byte
	hdr    Header
	slot   int
	gen    uint32
	token  uint32
	closed atomic.Bool
	dirMu  sync.Mutex // serialises this handle's directory changes and Close; the OFD lock serialises handles

	// The mapping's lifetime. Close unmaps the mapping when no slice or
	// atomic view of it was ever handed out (exposed false), and otherwise
	// replaces it by a placeholder of zero memory that costs address space
	// only (see Close). mu is held shared by the calls of this package that
	// read the mapping (pin) and exclusively by Close while it replaces or
	// unmaps it; gone (guarded by mu) is set once it is unmapped.
	mu      sync.RWMutex
	gone    bool
	exposed atomic.Bool
	// dead is the zero memory handed out for views asked for after the
	// mapping is gone; made once, on demand.
	deadOnce sync.Once
	dead     []byte
}

// pin holds the mapping for a call of this package that reads it. It
// reports false once the mapping is gone: the call then acts as on a
// closed handle. A pinned call must not pin again (a waiting Close would
// block the second pin).
func (s *Segment) pin() bool {
	s.mu.RLock()
	if s.gone {
		s.mu.RUnlock()
		return false
	}
	return true
}

func (s *Segment) unpin() { s.mu.RUnlock() }

// view returns the memory behind a slice or atomic view handed out to the
// caller (Mem, Region.Bytes, Region.Uint32, Region.Uint64, rings and the
// primitives built on them). Such memory may be used at any time, also
// after Close, so the first view marks the handle exposed: its Close then
// leaves a placeholder instead of unmapping. Once the mapping is gone, a
// view is private zero memory of the same size that reaches no segment.
func (s *Segment) view() []byte {
	if s.exposed.Load() {
		return s.mem
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.gone {
		s.deadOnce.Do(func() {
			var err error
			if s.dead, err = mmap.Placeholder(len(s.mem)); err != nil {
				s.dead = make([]byte, len(s.mem))
			}
		})
		return s.dead
	}
	s.exposed.Store(true)
	return s.mem
}

// Info describes a segment, as Stat and List report it.
type Info struct {
	Name       string    `json:"name"`
	Size       int64     `json:"size"`
	Version    uint32    `json:"version"`
	CreatorPID int       `json:"creator_pid"`
	CreatorUID int       `json:"creator_uid"`
	Created    time.Time `json:"created"`
	Slots      int       `json:"slots"`
	Objects    int       `json:"objects"`
	// Err is set by List for a file that carries the magic but fails
	// validation.
	Err error `json:"-"`
}

func infoOf(name string, h Header) Info {
	return Info{Name: name, Size: int64(h.Size), Version: h.Version, CreatorPID: int(h.CreatorPID),
		CreatorUID: int(h.CreatorUID), Created: time.Unix(0, h.Created), Slots: int(h.Slots),
		Objects: int(h.Objects)}
}

// Name returns the segment's name, or "" for an anonymous segment.
func (s *Segment) Name() string { return s.name }

// Info returns the segment's header fields.
func (s *Segment) Info() Info { return infoOf(s.name, s.hdr) }

// Size returns the total mapped size in bytes, header included.
func (s *Segment) Size() int { return len(s.mem) }

// File returns the file that backs the segment, for handing an anonymous
// segment to another process (os/exec ExtraFiles, or SCM_RIGHTS). The
// receiver opens it with OpenFile. The file belongs to the segment: do not
// close it.
func (s *Segment) File() *os.File { return s.f }

// Closed reports whether Close has been called.
func (s *Segment) Closed() bool { return s.closed.Load() }

// Mem returns the whole mapping. It is valid until Close; after Close it
// is private zero memory that no longer reaches the segment (see Close:
// asking for it makes Close keep the address range reserved).
func (s *Segment) Mem() []byte { return s.view() }

// Token returns this handle's owner token: the value the coordination
// primitives store in a lock word to name their holder. It is non-zero and
// uses the low 31 bits: bits 0-11 hold the slot index plus one, bits 12-30
// the low 19 bits of the slot's generation.
func (s *Segment) Token() uint32 { return s.token }

// Slot returns the index of this handle's process slot.
func (s *Segment) Slot() int { return s.slot }

// SlotGen returns this handle's slot generation.
func (s *Segment) SlotGen() uint32 { return s.gen }

// Slots returns the number of process slots.
func (s *Segment) Slots() int { return int(s.hdr.Slots) }

const (
	tokenSlotBits = 12
	tokenGenBits  = 19
	tokenSlotMask = 1<<tokenSlotBits - 1
	tokenGenMask  = 1<<tokenGenBits - 1
)

// MakeToken returns the owner token of slot with generation gen.
func MakeToken(slot int, gen uint32) uint32 {
	return uint32(slot+1) | (gen&tokenGenMask)<<tokenSlotBits
}

// TokenSlot returns the slot index a token names, or -1 for the zero token.
func TokenSlot(tok uint32) int { return int(tok&tokenSlotMask) - 1 }

func (s *Segment) slotRec(i int) []byte {
	off := int(s.hdr.SlotOff) + i*SlotSize
	return s.mem[off : off+SlotSize]
}

// Owner describes the process behind an owner token or slot.
type Owner struct {
	Slot  int  `json:"slot"`
	PID   int  `json:"pid"`
	Alive bool `json:"alive"`
}

// TokenOwner tells which process a token names and whether that process
// still holds its slot. A token whose slot has been claimed again since
// (another generation) is dead even if its PID has been reused; its PID is
// then unknown and reported as 0, since the slot names another process.
func (s *Segment) TokenOwner(tok uint32) Owner {
	slot := TokenSlot(tok)
	if slot < 0 || slot >= int(s.hdr.Slots) {
		return Owner{Slot: slot, PID: 0, Alive: false}
	}
	o := Owner{Slot: slot}
	if !s.pin() {
		return o // closed, the mapping gone: as if the slot read zero
	}
	rec := s.slotRec(slot)
	gen := mmap.Uint32(rec, slotGen).Load()
	pid := int(mmap.Uint32(rec, slotPID).Load())
	again := gen&tokenGenMask != (tok>>tokenSlotBits)&tokenGenMask || mmap.Uint32(rec, slotGen).Load() != gen
	s.unpin()
	if again {
		return o // the slot was claimed again: its PID is another process's, the token's is unknown
	}
	o.PID = pid
	if tok == s.token { // F_OFD_GETLK never reports this handle's own lock as a conflict
		o.Alive = !s.closed.Load()
		return o
	}
	o.Alive = s.slotHeld(slot)
	return o
}

// TokenAlive reports whether the process named by tok is alive (see
// TokenOwner). For this handle's own token it makes no system call.
func (s *Segment) TokenAlive(tok uint32) bool {
	if tok == s.token {
		return !s.closed.Load()
	}
	return s.TokenOwner(tok).Alive
}

// SlotAlive reports whether slot is held by a live handle whose generation
// is gen (a full 32-bit generation, as per-slot records store it).
func (s *Segment) SlotAlive(slot int, gen uint32) bool {
	if slot == s.slot && gen == s.gen {
		return !s.closed.Load()
	}
	if slot < 0 || slot >= int(s.hdr.Slots) {
		return false
	}
	if !s.pin() {
		return false
	}
	same := mmap.Uint32(s.slotRec(slot), slotGen).Load() == gen
	s.unpin()
	return same && s.slotHeld(slot)
}

// SlotInfo returns the current generation and PID of a slot and whether a
// live handle holds it.
func (s *Segment) SlotInfo(slot int) (gen uint32, pid int, alive bool) {
	if !s.pin() {
		return 0, 0, false
	}
	rec := s.slotRec(slot)
	gen = mmap.Uint32(rec, slotGen).Load()
	pid = int(mmap.Uint32(rec, slotPID).Load())
	s.unpin()
	return gen, pid, s.SlotAlive(slot, gen)
}

func putUint64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }
