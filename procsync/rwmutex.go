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
	rwFlags      = 4  // flagInconsistent (lockFlags) | flagHeld
	rwRes        = 8  // token of a writer waiting for the writer word (the reservation); 0 none
	rwRecoveries = 12 // as Mutex: lockRecoveries
	rwLastDead   = 16 // as Mutex: lockLastDead
	rwRseq       = 20 // readers sleep on it, waitBit set; bumped when the writer leaves
	rwWseq       = 24 // a draining writer sleeps on it; bumped by a reader leaving
	// offset 28 is unused since layout version 2 (it counted sleeping
	// readers, and a reader killed while counted left it high)

	// flagHeld: the holder of the writer word has drained the readers and
	// holds the write lock. A dead writer word without it belonged to a
	// writer that was only waiting: it is cleared, and nothing is suspect.
	flagHeld = 2
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
// A writer that dies while it only waits (for the writer word or for
// readers to leave) never held the lock: whoever notices withdraws what it
// published, and nobody gets ErrOwnerDead. A waiting writer keeps new
// readers out, except that a reader that has waited a full Config.Poll
// with no writer holding the lock goes in.
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
func (rw *RWMutex) readerCount() int { return rw.readers.sum() }

// Lock acquires the write lock, waiting as long as ctx allows. It returns
// nil, or ErrOwnerDead with the lock held, or an error without it.
func (rw *RWMutex) Lock(ctx context.Context) error {
	if err := rw.closedErr(); err != nil {
		return rw.opErr("lock", err)
	}
	have := rw.u32(rwW).CompareAndSwap(0, rw.tok)
	if have && rw.readerCount() == 0 && rw.u32(rwFlags).CompareAndSwap(0, flagHeld) {
		return nil
	}
	return rw.opErr("lock", rw.lockSlow(ctx, have))
}

// lockSlow completes Lock; have tells whether the fast path already took
// the writer word.
func (rw *RWMutex) lockSlow(ctx context.Context, have bool) error {
	if !have {
		reserved := rw.reserve()
		hook(stepRWReserved)
		err := rw.acquireWriter(ctx)
		if reserved {
			// Holding the writer word keeps readers out by itself.
			rw.u32(rwRes).CompareAndSwap(rw.tok, 0)
			if err != nil {
				rw.wakeReaders()
			}
		}
		if err != nil {
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
		hook(stepRWDrain)
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
	if rw.u32(rwFlags).Or(flagHeld)&flagInconsistent != 0 {
		return ErrOwnerDead
	}
	return nil
}

// reserve publishes this handle as a waiting writer, which keeps new
// readers out while the writer word is free, and reports whether it did. A
// dead writer's reservation is taken over.
func (rw *RWMutex) reserve() bool {
	res := rw.u32(rwRes)
	v := res.Load()
	if v == 0 {
		return res.CompareAndSwap(0, rw.tok)
	}
	return v != rw.tok && !rw.seg.TokenAlive(v) && res.CompareAndSwap(v, rw.tok)
}

// clearDeadReservation withdraws the reservation of a dead writer and
// reports whether the word now holds none.
func (rw *RWMutex) clearDeadReservation() bool {
	res := rw.u32(rwRes)
	v := res.Load()
	if v != 0 && v != rw.tok && !rw.seg.TokenAlive(v) {
		res.CompareAndSwap(v, 0)
	}
	return res.Load() == 0
}

// acquireWriter takes the writer word, taking it over from a dead writer.
func (rw *RWMutex) acquireWriter(ctx context.Context) error {
	w := rw.u32(rwW)
	if rw.spin(func() bool { return w.Load() == 0 && w.CompareAndSwap(0, rw.tok) }) {
		return nil
	}
	dead, err := rw.lockWord(ctx, w)
	if err == nil && dead != 0 {
		rw.tookOver(dead)
	}
	return err
}

// tookOver is called by whoever took the writer word over from the dead
// token dead: if the dead writer held the lock the data is suspect, else it
// was only waiting and left nothing to repair. flagHeld becomes
// flagInconsistent in one CAS, so a kill cannot lose the verdict.
func (rw *RWMutex) tookOver(dead uint32) {
	flags := rw.u32(rwFlags)
	for {
		f := flags.Load()
		if f&flagHeld == 0 {
			return
		}
		if flags.CompareAndSwap(f, (f|flagInconsistent)&^flagHeld) {
			rw.countDeath(dead)
			return
		}
	}
}

// releaseWriter gives up the writer word and wakes who waits for it.
func (rw *RWMutex) releaseWriter() {
	w := rw.u32(rwW)
	if w.Swap(0)&waitBit != 0 {
		futex.Wake(w, 1)
	}
	rw.wakeReaders()
}

// wakeReaders bumps rseq and, if a reader announced that it sleeps, clears
// the announcement and wakes every sleeper.
func (rw *RWMutex) wakeReaders() {
	rseq := rw.u32(rwRseq)
	for {
		v := rseq.Load()
		if rseq.CompareAndSwap(v, (v+1)&^waitBit) {
			if v&waitBit != 0 {
				futex.Wake(rseq, 1<<30)
			}
			return
		}
	}
}

// LockTimeout is Lock with a time limit; it returns ErrTimeout when d passes.
func (rw *RWMutex) LockTimeout(d time.Duration) error { return withTimeout(d, rw.Lock) }

// TryLock takes the write lock if no live process holds the lock in either
// mode (taking it over from a dead writer, with ErrOwnerDead if that one
// held it); otherwise ErrWouldBlock.
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
			rw.tookOver(s)
		default:
			return rw.opErr("trylock", ErrWouldBlock)
		}
	}
	if rw.readerCount() != 0 {
		rw.releaseWriter()
		return rw.opErr("trylock", ErrWouldBlock)
	}
	if rw.u32(rwFlags).Or(flagHeld)&flagInconsistent != 0 {
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
	flags := rw.u32(rwFlags)
	if s&^waitBit != rw.tok {
		return rw.opErr("unlock", ErrNotOwner)
	}
	// flagHeld goes first: a writer killed from here on was done with
	// the data.
	if flags.CompareAndSwap(flagHeld, 0) {
		rw.releaseWriter()
		return nil
	}
	f := flags.Load()
	if f&flagHeld == 0 { // the word is this process's, but a Lock of it is still waiting for readers
		return rw.opErr("unlock", ErrNotOwner)
	}
	if f&flagInconsistent != 0 {
		w.Store(notRecoverable)
		flags.And(^uint32(flagHeld))
		futex.Wake(w, 1<<30)
		rw.wakeReaders()
		return nil
	}
	flags.And(^uint32(flagHeld))
	rw.releaseWriter()
	return nil
}

// MarkConsistent declares the protected data repaired after Lock returned
// ErrOwnerDead. The caller must hold the write lock.
func (rw *RWMutex) MarkConsistent() error {
	if err := rw.closedErr(); err != nil {
		return rw.opErr("markconsistent", err)
	}
	if rw.u32(rwW).Load()&^waitBit != rw.tok || rw.u32(rwFlags).Load()&flagHeld == 0 {
		return rw.opErr("markconsistent", ErrNotOwner)
	}
	rw.u32(rwFlags).And(^uint32(flagInconsistent))
	return nil
}

// tryRead takes a read lock if no writer holds the word and, unless
// ignoreWaiting, none has reserved it.
func (rw *RWMutex) tryRead(ignoreWaiting bool) bool {
	w := rw.u32(rwW)
	if w.Load() != 0 || (!ignoreWaiting && rw.u32(rwRes).Load() != 0) {
		return false
	}
	rw.readers.add(rw.seg, 1)
	hook(stepRWReaderIn)
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
	rw.wakeDrainer()
}

// wakeDrainer wakes a writer that waits for readers to leave, if the
// writer word is held.
func (rw *RWMutex) wakeDrainer() {
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
	w, rseq := rw.u32(rwW), rw.u32(rwRseq)
	wt := rw.beginWait(ctx, rseq)
	defer wt.end()
	// check: test the liveness of the writer word's holder on entry and
	// after each full poll; a reservation is tested on every wake-up, since
	// only the reserving writer itself would withdraw it.
	check, polled := true, false
	for {
		v := rseq.Load()
		s := w.Load()
		switch {
		case s == notRecoverable:
			return ErrNotRecoverable
		case s == 0:
			if rw.tryRead(polled) || rw.clearDeadReservation() && rw.tryRead(false) {
				if err := rw.closedErr(); err != nil { // as in lockSlow
					return err
				}
				return rw.readResult()
			}
		case check:
			check = false
			if rw.clearDeadWriter(s) {
				continue
			}
		}
		sleepOn, ok := announce(rseq, v)
		if !ok {
			continue
		}
		hook(stepRWReaderSleep)
		if err := wt.err(); err != nil {
			return err
		}
		polled = wt.sleep(rseq, sleepOn)
		check = polled
	}
}

// clearDeadWriter clears the writer word s if its holder is dead, and
// reports whether it is no longer s. The reader takes the word over, as a
// writer would, to judge flagHeld while nobody can change it, then
// releases it.
func (rw *RWMutex) clearDeadWriter(s uint32) bool {
	w := rw.u32(rwW)
	if rw.seg.TokenAlive(s &^ waitBit) {
		return false
	}
	if w.CompareAndSwap(s, rw.tok|s&waitBit) {
		hook(stepRWClearing)
		rw.tookOver(s)
		rw.releaseWriter()
	}
	return true
}

// RLockTimeout is RLock with a time limit; it returns ErrTimeout when d
// passes.
func (rw *RWMutex) RLockTimeout(d time.Duration) error { return withTimeout(d, rw.RLock) }

// TryRLock takes a read lock if no live writer holds or waits for the
// lock (withdrawing what a dead one left), else returns ErrWouldBlock.
func (rw *RWMutex) TryRLock() error {
	if err := rw.closedErr(); err != nil {
		return rw.opErr("tryrlock", err)
	}
	s := rw.u32(rwW).Load()
	if s == notRecoverable {
		return rw.opErr("tryrlock", ErrNotRecoverable)
	}
	if rw.tryRead(false) {
		return rw.opErr("tryrlock", rw.readResult())
	}
	if (s == 0 || rw.clearDeadWriter(s)) && rw.clearDeadReservation() && rw.tryRead(false) {
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
	rw.wakeDrainer()
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
