package procsync

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
	"github.com/ipcgo/ipc/shm"
)

// Semaphore words (PROTOCOL.md, "Semaphore").
const (
	sCount = 0 // available permits (bits 0-30) | waitBit; waiters sleep on it while no permit is free
	// offset 4 is unused since layout version 2 (it counted waiters, and a
	// waiter killed while counted left it high)
	sMax = 8 // the most permits Release may make available (at most 2^31-1)
)

// Semaphore is a counting semaphore in shared memory. Permits are not owned:
// any process may release, and the permits held by a process that dies are
// not returned (OwnedSemaphore returns them).
type Semaphore struct{ base }

// NewSemaphore returns the semaphore called name in seg, creating it with
// initial permits if it does not exist. max bounds the count (0 means
// math.MaxInt32); opening an existing semaphore with another max fails with
// ErrBadConfig.
func NewSemaphore(seg *shm.Segment, name string, initial, max int, cfg *Config) (*Semaphore, error) {
	if max == 0 {
		max = math.MaxInt32
	}
	if initial < 0 || max < 1 || max > math.MaxInt32 || initial > max {
		return nil, &OpError{Op: "open", Object: name,
			Err: fmt.Errorf("%w: semaphore initial %d, max %d", ErrBadConfig, initial, max)}
	}
	b, err := open(seg, name, KindSemaphore, 1, 0, cfg, func(mem []byte) {
		le32(mem, sCount, uint32(initial))
		le32(mem, sMax, uint32(max))
	})
	if err != nil {
		return nil, &OpError{Op: "open", Object: name, Err: err}
	}
	s := &Semaphore{b}
	if got := s.u32(sMax).Load(); got != uint32(max) {
		return nil, &OpError{Op: "open", Object: name,
			Err: fmt.Errorf("%w: semaphore exists with max %d, not %d", ErrBadConfig, got, max)}
	}
	return s, nil
}

// Acquire takes one permit, waiting as long as ctx allows.
func (s *Semaphore) Acquire(ctx context.Context) error {
	if err := s.closedErr(); err != nil {
		return s.opErr("acquire", err)
	}
	if s.take() || s.spin(s.take) {
		return nil
	}
	c := s.u32(sCount)
	w := s.beginWait(ctx, c)
	defer w.end()
	for {
		v := c.Load()
		if v&^waitBit != 0 {
			if c.CompareAndSwap(v, v-1) { // keeps waitBit for the others
				return nil
			}
			continue
		}
		sleepOn, ok := announce(c, v)
		if !ok {
			continue
		}
		hook(stepSemSleep)
		if err := w.err(); err != nil {
			if w.woken {
				futex.Wake(c, 1)
			}
			return s.opErr("acquire", err)
		}
		w.sleep(c, sleepOn)
	}
}

// take takes a permit if one is available.
func (s *Semaphore) take() bool {
	c := s.u32(sCount)
	for {
		v := c.Load()
		if v&^waitBit == 0 {
			return false
		}
		if c.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

// AcquireTimeout is Acquire with a time limit; it returns ErrTimeout when d
// passes.
func (s *Semaphore) AcquireTimeout(d time.Duration) error { return withTimeout(d, s.Acquire) }

// TryAcquire takes a permit if one is available, else returns ErrWouldBlock.
func (s *Semaphore) TryAcquire() error {
	if err := s.closedErr(); err != nil {
		return s.opErr("tryacquire", err)
	}
	if s.take() {
		return nil
	}
	return s.opErr("tryacquire", ErrWouldBlock)
}

// Release returns n permits. It fails with ErrOverflow, releasing none, if
// that would exceed the semaphore's max.
func (s *Semaphore) Release(n int) error {
	if err := s.closedErr(); err != nil {
		return s.opErr("release", err)
	}
	if n < 1 {
		return s.opErr("release", fmt.Errorf("%w: release %d permits", ErrBadConfig, n))
	}
	c, max := s.u32(sCount), s.u32(sMax).Load()
	for {
		v := c.Load()
		if uint64(v&^waitBit)+uint64(n) > uint64(max) {
			return s.opErr("release", ErrOverflow)
		}
		nv := v + uint32(n) // keeps waitBit: the count stays below 2^31
		if c.CompareAndSwap(v, nv) {
			if v&waitBit != 0 {
				wakeAnnounced(c, nv, n)
			}
			return nil
		}
	}
}

// Value returns the number of available permits.
func (s *Semaphore) Value() int { return int(s.u32(sCount).Load() &^ waitBit) }

// SemaphoreState is a snapshot of a semaphore.
type SemaphoreState struct {
	Value   int `json:"value"`
	Max     int `json:"max"`
	Waiters int `json:"waiters"`
}

// State reads the semaphore's state.
func (s *Semaphore) State() SemaphoreState {
	return SemaphoreState{Value: s.Value(), Max: int(s.u32(sMax).Load()), Waiters: s.waiters.live(s.seg)}
}
