package procsync

import (
	"context"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
	"github.com/ipcgo/ipc/shm"
)

// RWMutex words (PROTOCOL.md, "RWMutex"). Table 1 counts the read locks
// each process slot holds.
const (
	rwW          = 0  // writer token | waitBit; 0 free; notRecoverable
	rwFlags      = 4  // flagInconsistent (lockFlags)
	rwNwaitW     = 8  // writers in the slow path (may over-count after a waiter is killed)
	rwRecoveries = 12 // as Mutex: lockRecoveries
	rwLastDead   = 16 // as Mutex: lockLastDead
	rwRseq       = 20 // readers sleep on it; bumped when the writer leaves
	rwWseq       = 24 // a draining writer sleeps on it; bumped by a reader leaving
	rwNwaitR     = 28 // readers in the slow path
)

// RWMutex is a robust, writer-preferring reader/writer lock in shared
// memory. Read locks are counted per process, so the read locks of a
// process that dies are reclaimed by the next writer that waits for them.
//
// When a writer dies holding the lock, the lock is marked inconsistent: the
// next Lock returns ErrOwnerDead (write lock held; repair, MarkConsistent,
// Unlock), and until that writer marks it consistent every RLock also
// returns ErrOwnerDead, with the read lock held, to tell the reader the
// data may be half written. A writer that unlocks without MarkConsistent
// makes the lock not recoverable.
//
// A waiting writer keeps new readers out, except that a reader that has
// waited a full Config.Poll with no writer holding the lock goes in (this
// keeps a waiting writer that was killed from blocking readers).
type RWMutex struct {
	base
	readers slotTable
}

// NewRWMutex returns the reader/writer lock called name in seg, creating it
// unlocked if it does not exist.
func NewRWMutex(seg *shm.Segment, name string, cfg *Config) (*RWMutex, error) {
	b, err := open(seg, name, KindRWMutex, 2, 0, cfg, nil)
	if err != nil {
		return nil, &OpError{Op: "open", Object: name, Err: err}
	}
	return &RWMutex{base: b, readers: b.table(1)}, nil
}

// readerCount returns the read locks recorded for all slots, dead ones
// included until reclaimed.
func (rw *RWMutex) readerCount() int {
	n := 0
	for i := 0; i < rw.readers.n; i++ {
		n += int(uint32(rw.readers.entry(i).Load()))
	}
	return n
}

// Lock acquires the write lock, waiting as long as ctx allows. It returns
// nil, or ErrOwnerDead with the lock held, or an error without it.
func (rw *RWMutex) Lock(ctx context.Context) error {
	if err := rw.closedErr(); err != nil {
		return rw.opErr("lock", err)
	}
	have := rw.u32(rwW).CompareAndSwap(0, rw.tok)
	if have && rw.readerCount() == 0 && rw.u32(rwFlags).Load() == 0 {
		return nil
	}
	return rw.opErr("lock", rw.lockSlow(ctx, have))
}

// lockSlow completes Lock; have tells whether the fast path already took
// the writer word.
func (rw *RWMutex) lockSlow(ctx context.Context, have bool) error {
	nw := rw.u32(rwNwaitW)
	nw.Add(1)
	defer nw.Add(^uint32(0))
	if !have {
		if err := rw.acquireWriter(ctx); err != nil {
			return err
		}
	}
	// Holding the writer word keeps new readers out; wait for the others.
	wseq := rw.u32(rwWseq)
	wt := rw.beginWait(ctx, wseq)
	defer wt.end()
	for {
		v := wseq.Load()
		if rw.readerCount() == 0 {
			break
		}
		if err := wt.err(); err != nil {
			rw.releaseWriter()
			return err
		}
		if wt.sleep(wseq, v) {
			rw.readers.reclaim(rw.seg, nil) // read locks of dead processes
		}
	}
	if err := rw.closedErr(); err != nil { // closed while waiting: the memory is a private copy
		return err
	}
	if rw.u32(rwFlags).Load()&flagInconsistent != 0 {
		return ErrOwnerDead
	}
	return nil
}

// acquireWriter takes the writer word, taking it over from a dead writer.
func (rw *RWMutex) acquireWriter(ctx context.Context) error {
	w, nw := rw.u32(rwW), rw.u32(rwNwaitW)
	if rw.spin(func() bool { return w.Load() == 0 && w.CompareAndSwap(0, rw.tok) }) {
		return nil
	}
	dead, err := rw.lockWord(ctx, w, nw)
	if err == nil && dead != 0 {
		rw.ownerDied(dead)
	}
	return err
}

// releaseWriter gives up the writer word and wakes who waits for it.
func (rw *RWMutex) releaseWriter() {
	w := rw.u32(rwW)
	if w.Swap(0)&waitBit != 0 {
		futex.Wake(w, 1)
	}
	rw.wakeReaders()
}

func (rw *RWMutex) wakeReaders() {
	rseq := rw.u32(rwRseq)
	rseq.Add(1)
	if rw.u32(rwNwaitR).Load() > 0 {
		futex.Wake(rseq, 1<<30)
	}
}

// LockTimeout is Lock with a time limit; it returns ErrTimeout when d passes.
func (rw *RWMutex) LockTimeout(d time.Duration) error { return withTimeout(d, rw.Lock) }

// TryLock takes the write lock if no live process holds the lock in either
// mode (taking it over from a dead writer, with ErrOwnerDead); otherwise
// ErrWouldBlock.
func (rw *RWMutex) TryLock() error {
	if err := rw.closedErr(); err != nil {
		return rw.opErr("trylock", err)
	}
	w := rw.u32(rwW)
	if !w.CompareAndSwap(0, rw.tok) {
		s := w.Load()
		switch {
		case s == notRecoverable:
			return rw.opErr("trylock", ErrNotRecoverable)
		case s != 0 && !rw.seg.TokenAlive(s&^waitBit) && w.CompareAndSwap(s, rw.tok|waitBit):
			rw.ownerDied(s) // taken over from a dead writer, as Mutex.TryLock does
		default:
			return rw.opErr("trylock", ErrWouldBlock)
		}
	}
	if rw.readerCount() != 0 {
		rw.releaseWriter()
		return rw.opErr("trylock", ErrWouldBlock)
	}
	if rw.u32(rwFlags).Load()&flagInconsistent != 0 {
		return rw.opErr("trylock", ErrOwnerDead)
	}
	return nil
}

// Unlock releases the write lock.
func (rw *RWMutex) Unlock() error {
	if err := rw.closedErr(); err != nil {
		return rw.opErr("unlock", err)
	}
	w := rw.u32(rwW)
	s := w.Load()
	if s == notRecoverable {
		return rw.opErr("unlock", ErrNotRecoverable)
	}
	if s&^waitBit != rw.tok {
		return rw.opErr("unlock", ErrNotOwner)
	}
	if rw.u32(rwFlags).Load()&flagInconsistent != 0 {
		w.Store(notRecoverable)
		futex.Wake(w, 1<<30)
		rw.wakeReaders()
		return nil
	}
	rw.releaseWriter()
	return nil
}

// MarkConsistent declares the protected data repaired after Lock returned
// ErrOwnerDead. The caller must hold the write lock.
func (rw *RWMutex) MarkConsistent() error {
	if err := rw.closedErr(); err != nil {
		return rw.opErr("markconsistent", err)
	}
	if rw.u32(rwW).Load()&^waitBit != rw.tok {
		return rw.opErr("markconsistent", ErrNotOwner)
	}
	rw.u32(rwFlags).And(^uint32(flagInconsistent))
	return nil
}

// tryRead takes a read lock if no writer holds the word and, unless
// ignoreWaiting, none waits for it.
func (rw *RWMutex) tryRead(ignoreWaiting bool) bool {
	w := rw.u32(rwW)
	if w.Load() != 0 || (!ignoreWaiting && rw.u32(rwNwaitW).Load() != 0) {
		return false
	}
	rw.readers.add(rw.seg, 1)
	if w.Load() == 0 {
		return true
	}
	rw.readerLeft()
	return false
}

// readerLeft drops one of this process's read locks and wakes a writer
// that drains readers.
func (rw *RWMutex) readerLeft() {
	rw.readers.add(rw.seg, -1)
	if rw.u32(rwW).Load() != 0 {
		wseq := rw.u32(rwWseq)
		wseq.Add(1)
		futex.Wake(wseq, 1)
	}
}

func (rw *RWMutex) readResult() error {
	if rw.u32(rwFlags).Load()&flagInconsistent != 0 {
		return ErrOwnerDead
	}
	return nil
}

// RLock acquires a read lock, waiting as long as ctx allows. It returns
// nil, or ErrOwnerDead with the read lock held (a writer died and no writer
// has repaired the data yet), or an error without the lock.
func (rw *RWMutex) RLock(ctx context.Context) error {
	if err := rw.closedErr(); err != nil {
		return rw.opErr("rlock", err)
	}
	if rw.tryRead(false) {
		return rw.opErr("rlock", rw.readResult())
	}
	return rw.opErr("rlock", rw.rlockSlow(ctx))
}

func (rw *RWMutex) rlockSlow(ctx context.Context) error {
	if rw.spin(func() bool { return rw.tryRead(false) }) {
		return rw.readResult()
	}
	w, rseq, nr := rw.u32(rwW), rw.u32(rwRseq), rw.u32(rwNwaitR)
	nr.Add(1)
	defer nr.Add(^uint32(0))
	wt := rw.beginWait(ctx, rseq)
	defer wt.end()
	polled := false
	for {
		v := rseq.Load()
		s := w.Load()
		switch {
		case s == notRecoverable:
			return ErrNotRecoverable
		case s == 0:
			if rw.tryRead(polled) {
				if err := rw.closedErr(); err != nil { // as in lockSlow
					return err
				}
				return rw.readResult()
			}
		case polled && !rw.seg.TokenAlive(s&^waitBit):
			if w.CompareAndSwap(s, 0) { // clear the dead writer; the data stays suspect
				rw.ownerDied(s)
				futex.Wake(w, 1)
				rw.wakeReaders()
			}
			continue
		}
		if err := wt.err(); err != nil {
			return err
		}
		polled = wt.sleep(rseq, v)
	}
}

// RLockTimeout is RLock with a time limit; it returns ErrTimeout when d
// passes.
func (rw *RWMutex) RLockTimeout(d time.Duration) error { return withTimeout(d, rw.RLock) }

// TryRLock takes a read lock if no writer holds or waits for the lock,
// else returns ErrWouldBlock.
func (rw *RWMutex) TryRLock() error {
	if err := rw.closedErr(); err != nil {
		return rw.opErr("tryrlock", err)
	}
	if rw.u32(rwW).Load() == notRecoverable {
		return rw.opErr("tryrlock", ErrNotRecoverable)
	}
	if rw.tryRead(false) {
		return rw.opErr("tryrlock", rw.readResult())
	}
	return rw.opErr("tryrlock", ErrWouldBlock)
}

// RUnlock releases one read lock of this process.
func (rw *RWMutex) RUnlock() error {
	if err := rw.closedErr(); err != nil {
		return rw.opErr("runlock", err)
	}
	for {
		e := rw.readers.entry(rw.seg.Slot())
		v := e.Load()
		if v>>32 != uint64(rw.seg.SlotGen()) || uint32(v) == 0 {
			return rw.opErr("runlock", ErrNotOwner)
		}
		if e.CompareAndSwap(v, v-1) {
			break
		}
	}
	if rw.u32(rwW).Load() != 0 {
		wseq := rw.u32(rwWseq)
		wseq.Add(1)
		futex.Wake(wseq, 1)
	}
	return nil
}

// RWMutexState is a snapshot of a reader/writer lock.
type RWMutexState struct {
	WriteLocked    bool       `json:"write_locked"`
	Writer         *shm.Owner `json:"writer,omitempty"`
	Readers        []ReadHold `json:"readers,omitempty"`
	Inconsistent   bool       `json:"inconsistent"`
	NotRecoverable bool       `json:"not_recoverable"`
	Waiters        int        `json:"waiters"`
	Recoveries     int        `json:"recoveries"`
}

// ReadHold is the number of read locks one process holds.
type ReadHold struct {
	shm.Owner
	Count int `json:"count"`
}

// State reads the lock's state without taking it.
func (rw *RWMutex) State() RWMutexState {
	s := rw.u32(rwW).Load()
	st := RWMutexState{
		Inconsistent:   rw.u32(rwFlags).Load()&flagInconsistent != 0,
		NotRecoverable: s == notRecoverable,
		Waiters:        rw.waiters.live(rw.seg),
		Recoveries:     int(rw.u32(rwRecoveries).Load()),
	}
	if s != 0 && s != notRecoverable {
		st.WriteLocked = true
		o := rw.seg.TokenOwner(s &^ waitBit)
		st.Writer = &o
	}
	for i := 0; i < rw.readers.n; i++ {
		v := rw.readers.entry(i).Load()
		if uint32(v) == 0 {
			continue
		}
		gen, pid, _ := rw.seg.SlotInfo(i)
		if gen != uint32(v>>32) {
			pid = 0 // the slot was claimed again: its PID is another process's
		}
		st.Readers = append(st.Readers, ReadHold{
			Owner: shm.Owner{Slot: i, PID: pid, Alive: rw.seg.SlotAlive(i, uint32(v>>32))},
			Count: int(uint32(v)),
		})
	}
	return st
}
