package procsync

import (
	"context"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
	"github.com/ipcgo/ipc/shm"
)

// Mutex words (PROTOCOL.md, "Mutex").
const (
	mState = 0 // owner token | waitBit; 0 unlocked; notRecoverable
	mFlags = 4 // flagInconsistent (lockFlags)
	// offset 8 is unused since layout version 2 (it counted waiters, and a
	// waiter killed while counted left it high)
	mRecoveries = 12 // lockRecoveries
	mLastDead   = 16 // lockLastDead
)

// Mutex is a robust mutual-exclusion lock in shared memory. It is held by a
// process (more exactly by a Segment handle): any goroutine of the holding
// process may unlock it, as with sync.Mutex.
//
// When the holder dies, the next locker takes the lock over within about
// Config.Poll and gets ErrOwnerDead with the lock held. It repairs the data
// and calls MarkConsistent; unlocking without doing so makes the mutex not
// recoverable (ErrNotRecoverable for every later call). This is the POSIX
// robust-mutex contract.
type Mutex struct{ base }

// NewMutex returns the mutex called name in seg, creating it unlocked if it
// does not exist.
func NewMutex(seg *shm.Segment, name string, cfg *Config) (*Mutex, error) {
	b, err := open(seg, name, KindMutex, 1, 0, cfg, nil)
	if err != nil {
		return nil, &OpError{Op: "open", Object: name, Err: err}
	}
	return &Mutex{b}, nil
}

// Lock acquires the mutex, waiting as long as ctx allows. It returns nil, or
// ErrOwnerDead with the lock held, or an error without it.
func (m *Mutex) Lock(ctx context.Context) error {
	if !m.seg.Closed() && m.u32(mState).CompareAndSwap(0, m.tok) {
		return nil
	}
	return m.opErr("lock", m.lockSlow(ctx))
}

// LockTimeout is Lock with a time limit; it returns ErrTimeout when d passes.
func (m *Mutex) LockTimeout(d time.Duration) error {
	return withTimeout(d, m.Lock)
}

// TryLock acquires the mutex if that needs no waiting. It returns nil,
// ErrOwnerDead (lock held: the holder was dead), ErrWouldBlock, or another
// error.
func (m *Mutex) TryLock() error {
	if err := m.closedErr(); err != nil {
		return m.opErr("trylock", err)
	}
	st := m.u32(mState)
	if st.CompareAndSwap(0, m.tok) {
		return nil
	}
	s := st.Load()
	switch {
	case s == notRecoverable:
		return m.opErr("trylock", ErrNotRecoverable)
	case s == 0:
		if st.CompareAndSwap(0, m.tok) {
			return nil
		}
	case !m.seg.TokenAlive(s &^ waitBit):
		if st.CompareAndSwap(s, m.tok|waitBit) {
			m.ownerDied(s)
			return m.opErr("trylock", ErrOwnerDead)
		}
	}
	return m.opErr("trylock", ErrWouldBlock)
}

func (m *Mutex) lockSlow(ctx context.Context) error {
	if err := m.closedErr(); err != nil {
		return err
	}
	st := m.u32(mState)
	if m.spin(func() bool { return st.Load() == 0 && st.CompareAndSwap(0, m.tok) }) {
		return nil
	}
	dead, err := m.lockWord(ctx, st)
	if err == nil && dead != 0 {
		m.ownerDied(dead)
		return ErrOwnerDead
	}
	return err
}

// MarkConsistent declares the data protected by the mutex repaired after
// Lock returned ErrOwnerDead. The caller must hold the lock.
func (m *Mutex) MarkConsistent() error {
	if err := m.closedErr(); err != nil {
		return m.opErr("markconsistent", err)
	}
	if m.u32(mState).Load()&^waitBit != m.tok {
		return m.opErr("markconsistent", ErrNotOwner)
	}
	m.u32(mFlags).And(^uint32(flagInconsistent))
	return nil
}

// Unlock releases the mutex. If the holder got ErrOwnerDead and did not
// call MarkConsistent, the mutex becomes not recoverable.
func (m *Mutex) Unlock() error {
	if !m.seg.Closed() && m.u32(mState).CompareAndSwap(m.tok, 0) {
		return nil
	}
	return m.opErr("unlock", m.unlockSlow())
}

func (m *Mutex) unlockSlow() error {
	if err := m.closedErr(); err != nil {
		return err
	}
	st := m.u32(mState)
	s := st.Load()
	if s == notRecoverable {
		return ErrNotRecoverable
	}
	if s&^waitBit != m.tok {
		return ErrNotOwner
	}
	if m.u32(mFlags).Load()&flagInconsistent != 0 {
		st.Store(notRecoverable)
		futex.Wake(st, 1<<30)
		return nil
	}
	if st.Swap(0)&waitBit != 0 {
		futex.Wake(st, 1)
	}
	return nil
}

// MutexState is a snapshot of a mutex, read without taking it.
type MutexState struct {
	Locked         bool       `json:"locked"`
	Owner          *shm.Owner `json:"owner,omitempty"`
	Inconsistent   bool       `json:"inconsistent"`
	NotRecoverable bool       `json:"not_recoverable"`
	Waiters        int        `json:"waiters"`
	Recoveries     int        `json:"recoveries"`
	LastDeadPID    int        `json:"last_dead_pid,omitempty"`
}

// State reads the mutex's state without taking it.
func (m *Mutex) State() MutexState {
	s := m.u32(mState).Load()
	st := MutexState{
		Inconsistent:   m.u32(mFlags).Load()&flagInconsistent != 0,
		NotRecoverable: s == notRecoverable,
		Waiters:        m.waiters.live(m.seg),
		Recoveries:     int(m.u32(mRecoveries).Load()),
		LastDeadPID:    int(m.u32(mLastDead).Load()),
	}
	if s != 0 && s != notRecoverable {
		st.Locked = true
		o := m.seg.TokenOwner(s &^ waitBit)
		st.Owner = &o
	}
	return st
}
