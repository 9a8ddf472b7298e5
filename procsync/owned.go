package procsync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
	"github.com/ipcgo/ipc/internal/mmap"
	"github.com/ipcgo/ipc/shm"
)

// OwnedSemaphore words (PROTOCOL.md, "OwnedSemaphore"); after the waiter
// table come the permit words, one uint32 a permit holding the owner token
// of its holder, 0 when free.
const (
	oPermits = 0 // fixed at creation
	oSeq     = 4 // bits 0-30 bumped when a permit is freed | waitBit; waiters sleep on it
	// offset 8 is unused since layout version 2 (it counted waiters, and a
	// waiter killed while counted left it high)
	oReclaimed = 12

	// MaxOwnedPermits bounds an OwnedSemaphore's permits.
	MaxOwnedPermits = 4096
)

// OwnedSemaphore is a counting semaphore whose permits remember their
// holder: the permits held by a process that dies are returned to the pool
// (within about Config.Poll of a waiter needing them). Only a holder may
// release a permit. Acquire scans the permit words, so it suits up to a few
// thousand permits.
type OwnedSemaphore struct{ base }

// NewOwnedSemaphore returns the owned semaphore called name in seg, creating
// it with permits free permits if it does not exist; an existing one with
// another count fails with ErrBadConfig.
func NewOwnedSemaphore(seg *shm.Segment, name string, permits int, cfg *Config) (*OwnedSemaphore, error) {
	if permits < 1 || permits > MaxOwnedPermits {
		return nil, &OpError{Op: "open", Object: name,
			Err: fmt.Errorf("%w: %d permits, want 1 to %d", ErrBadConfig, permits, MaxOwnedPermits)}
	}
	b, err := open(seg, name, KindOwnedSemaphore, 1, 4*permits, cfg, func(mem []byte) { le32(mem, oPermits, uint32(permits)) })
	if err != nil {
		// The size depends on the count: another count is a size mismatch.
		if r, lerr := seg.Lookup(name); errors.Is(err, shm.ErrKindMismatch) && lerr == nil &&
			r.Kind == KindOwnedSemaphore && r.Len >= 4 {
			err = fmt.Errorf("%w: owned semaphore exists with %d permits, not %d",
				ErrBadConfig, mmap.Uint32(r.Bytes(), oPermits).Load(), permits)
		}
		return nil, &OpError{Op: "open", Object: name, Err: err}
	}
	s := &OwnedSemaphore{b}
	if got := s.u32(oPermits).Load(); got != uint32(permits) {
		return nil, &OpError{Op: "open", Object: name,
			Err: fmt.Errorf("%w: owned semaphore exists with %d permits, not %d", ErrBadConfig, got, permits)}
	}
	return s, nil
}

func (s *OwnedSemaphore) n() int { return int(s.u32(oPermits).Load()) }

func (s *OwnedSemaphore) permit(i int) []byte {
	off := s.tablesEnd(1) + 4*i
	return s.mem[off : off+4]
}

// take claims a free permit; the scan starts at a slot-dependent place so
// that processes rarely collide.
func (s *OwnedSemaphore) take() bool {
	n := s.n()
	start := s.seg.Slot() % n
	for k := 0; k < n; k++ {
		p := mmap.Uint32(s.permit((start+k)%n), 0)
		if p.Load() == 0 && p.CompareAndSwap(0, s.tok) {
			return true
		}
	}
	return false
}

// reclaim frees the permits of dead holders and reports how many.
func (s *OwnedSemaphore) reclaim() int {
	freed := 0
	alive := map[uint32]bool{} // one liveness test per holder, not per permit
	for i := 0; i < s.n(); i++ {
		p := mmap.Uint32(s.permit(i), 0)
		t := p.Load()
		if t == 0 {
			continue
		}
		a, ok := alive[t]
		if !ok {
			a = s.seg.TokenAlive(t)
			alive[t] = a
		}
		if !a && p.CompareAndSwap(t, 0) {
			freed++
		}
	}
	if freed > 0 {
		s.u32(oReclaimed).Add(uint32(freed))
		s.freed(freed)
	}
	return freed
}

// freed bumps seq after n permits were freed and wakes as many waiters, if
// one announced that it sleeps.
func (s *OwnedSemaphore) freed(n int) {
	seq := s.u32(oSeq)
	for {
		v := seq.Load()
		nv := (v+1)&^waitBit | v&waitBit
		if seq.CompareAndSwap(v, nv) {
			if v&waitBit != 0 {
				wakeAnnounced(seq, nv, n)
			}
			return
		}
	}
}

// Acquire takes a permit, waiting as long as ctx allows.
func (s *OwnedSemaphore) Acquire(ctx context.Context) error {
	if err := s.closedErr(); err != nil {
		return s.opErr("acquire", err)
	}
	if s.take() || s.spin(s.take) {
		return nil
	}
	seq := s.u32(oSeq)
	w := s.beginWait(ctx, seq)
	defer w.end()
	check := true
	for {
		v := seq.Load()
		if s.take() {
			// A handle closed while this call slept has private zero memory
			// in place of the segment: the permit taken there is not real.
			return s.opErr("acquire", s.closedErr())
		}
		if check && s.reclaim() > 0 {
			continue
		}
		// A Release after the take above moved seq from v: then the
		// announcement or the sleep fails, and the loop looks again.
		sleepOn, ok := announce(seq, v)
		if !ok {
			continue
		}
		hook(stepOwnedSleep)
		if err := w.err(); err != nil {
			if w.woken {
				futex.Wake(seq, 1)
			}
			return s.opErr("acquire", err)
		}
		check = w.sleep(seq, sleepOn)
	}
}

// AcquireTimeout is Acquire with a time limit; it returns ErrTimeout when d
// passes.
func (s *OwnedSemaphore) AcquireTimeout(d time.Duration) error { return withTimeout(d, s.Acquire) }

// TryAcquire takes a permit if one is free (or held by a dead process),
// else returns ErrWouldBlock.
func (s *OwnedSemaphore) TryAcquire() error {
	if err := s.closedErr(); err != nil {
		return s.opErr("tryacquire", err)
	}
	if s.take() || (s.reclaim() > 0 && s.take()) {
		return nil
	}
	return s.opErr("tryacquire", ErrWouldBlock)
}

// Release returns one permit held by this process; ErrNotOwner if it holds
// none.
func (s *OwnedSemaphore) Release() error {
	if err := s.closedErr(); err != nil {
		return s.opErr("release", err)
	}
	for i := 0; i < s.n(); i++ {
		p := mmap.Uint32(s.permit(i), 0)
		if p.Load() == s.tok && p.CompareAndSwap(s.tok, 0) {
			s.freed(1)
			return nil
		}
	}
	return s.opErr("release", ErrNotOwner)
}

// Held returns how many permits this process holds.
func (s *OwnedSemaphore) Held() int {
	held := 0
	for i := 0; i < s.n(); i++ {
		if mmap.Uint32(s.permit(i), 0).Load() == s.tok {
			held++
		}
	}
	return held
}

// OwnedSemaphoreState is a snapshot of an owned semaphore.
type OwnedSemaphoreState struct {
	Permits   int         `json:"permits"`
	Free      int         `json:"free"`
	Holders   []shm.Owner `json:"holders,omitempty"`
	Reclaimed int         `json:"reclaimed"`
	Waiters   int         `json:"waiters"`
}

// State reads the semaphore's state, with one entry in Holders per held
// permit.
func (s *OwnedSemaphore) State() OwnedSemaphoreState {
	st := OwnedSemaphoreState{Permits: s.n(), Reclaimed: int(s.u32(oReclaimed).Load()),
		Waiters: s.waiters.live(s.seg)}
	for i := 0; i < st.Permits; i++ {
		if t := mmap.Uint32(s.permit(i), 0).Load(); t == 0 {
			st.Free++
		} else {
			st.Holders = append(st.Holders, s.seg.TokenOwner(t))
		}
	}
	return st
}
