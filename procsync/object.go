package procsync

import (
	"context"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
	"github.com/ipcgo/ipc/internal/mmap"
	"github.com/ipcgo/ipc/shm"
)

// Kinds of the primitives in a segment's object directory (PROTOCOL.md).
const (
	KindMutex          shm.Kind = 16
	KindRWMutex        shm.Kind = 17
	KindSemaphore      shm.Kind = 18
	KindOwnedSemaphore shm.Kind = 19
	KindEvent          shm.Kind = 20
	KindCond           shm.Kind = 21
	KindBarrier        shm.Kind = 22
)

const (
	wordsSize = 64      // every primitive starts with one cache line of words
	waitBit   = 1 << 31 // in lock words: some waiter may sleep on this word
	// notRecoverable is the lock word of a mutex that can never be taken
	// again: its slot field is all ones, which no process slot uses.
	notRecoverable = 0xfff
)

// base is what every primitive handle holds: where its words live and how
// it waits.
type base struct {
	seg     *shm.Segment
	name    string
	mem     []byte
	cfg     *Config
	tok     uint32
	waiters slotTable // per-slot count of sleeping waiters, for inspection
}

// open finds or creates the object called name of the given kind. Its size
// is one cache line of words plus tables per-slot tables of 8 bytes a slot
// (the waiter table first) plus extra bytes.
func open(seg *shm.Segment, name string, kind shm.Kind, tables, extra int, cfg *Config, init func([]byte)) (base, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return base{}, err
	}
	if !futex.Supported {
		return base{}, shm.ErrUnsupported
	}
	if seg.Closed() {
		return base{}, net.ErrClosed
	}
	size := objectSize(seg.Slots(), tables, extra)
	r, _, err := seg.AllocObject(name, kind, size, init)
	if err != nil {
		return base{}, err
	}
	b := base{seg: seg, name: name, mem: r.Bytes(), cfg: cfg, tok: seg.Token()}
	b.waiters = b.table(0)
	return b, nil
}

func objectSize(slots, tables, extra int) int { return wordsSize + tables*8*slots + extra }

// table returns the i-th per-slot table of the object.
func (b *base) table(i int) slotTable {
	n := b.seg.Slots()
	off := wordsSize + i*8*n
	return slotTable{b: b.mem[off : off+8*n], n: n}
}

// tablesEnd is the offset of the first byte after tables per-slot tables.
func (b *base) tablesEnd(tables int) int { return wordsSize + tables*8*b.seg.Slots() }

func (b *base) u32(off int) *atomic.Uint32 { return mmap.Uint32(b.mem, off) }

func (b *base) opErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return &OpError{Op: op, Object: b.name, Err: err}
}

// closedErr returns net.ErrClosed once the segment is closed.
func (b *base) closedErr() error {
	if b.seg.Closed() {
		return net.ErrClosed
	}
	return nil
}

// spin re-checks cond up to cfg.Spin times before the caller sleeps.
func (b *base) spin(cond func() bool) bool {
	for i := 0; i < b.cfg.Spin; i++ {
		if cond() {
			return true
		}
		if i%32 == 31 {
			runtime.Gosched()
		}
	}
	return false
}

// waiter is one blocking call's stay in the slow path: it is counted in the
// waiter table, and a cancelled context wakes it at once.
type waiter struct {
	b    *base
	ctx  context.Context
	stop func() bool
	// woken is whether the last sleep ended by a wake-up (not a timeout).
	woken bool
}

// beginWait enters the slow path for a call that sleeps on word.
func (b *base) beginWait(ctx context.Context, word *atomic.Uint32) *waiter {
	b.waiters.add(b.seg, 1)
	w := &waiter{b: b, ctx: ctx}
	if ctx.Done() != nil {
		w.stop = context.AfterFunc(ctx, func() { futex.Wake(word, 1<<30) })
	}
	return w
}

// end leaves the slow path.
func (w *waiter) end() {
	if w.stop != nil {
		w.stop()
	}
	w.b.waiters.add(w.b.seg, -1)
}

// err reports why the call must stop waiting: a done context or a closed
// segment.
func (w *waiter) err() error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	return w.b.closedErr()
}

// sleep waits while *word == val, at most one poll interval (less if the
// context's deadline is nearer). It reports whether the full poll interval
// passed without a wake-up: then the caller checks the holder's liveness.
func (w *waiter) sleep(word *atomic.Uint32, val uint32) (polled bool) {
	d := w.b.cfg.Poll
	if dl, ok := w.ctx.Deadline(); ok {
		if left := time.Until(dl); left < d {
			d = left
			if d <= 0 {
				return false
			}
		}
	}
	w.woken = futex.Wait(word, val, d)
	return !w.woken && d == w.b.cfg.Poll
}

// lockWord acquires the robust lock word st (0 free; holder token, with
// waitBit when a waiter may sleep; notRecoverable) for this handle, waiting
// as long as ctx allows. A dead holder's word is taken over: dead is then
// the word's previous value. Mutex and the RWMutex writer share it.
//
// A waiter publishes nothing but waitBit, which the next release clears
// (one needless FUTEX_WAKE if the waiter died). A call that has slept takes
// a free word with waitBit set, since others may still sleep: the classic
// futex-mutex rule, which needs no count of waiters.
func (b *base) lockWord(ctx context.Context, st *atomic.Uint32) (dead uint32, err error) {
	w := b.beginWait(ctx, st)
	defer w.end()
	check := true      // test the holder's liveness on entry and after each full poll
	contended := false // this call has set or seen waitBit
	for {
		s := st.Load()
		switch {
		case s == notRecoverable:
			return 0, ErrNotRecoverable
		case s == 0:
			ns := b.tok
			if contended {
				ns |= waitBit
			}
			if st.CompareAndSwap(0, ns) {
				// A handle closed while this call slept has private zero
				// memory in place of the segment: the CAS took nothing.
				return 0, b.closedErr()
			}
			continue
		case check:
			check = false
			if !b.seg.TokenAlive(s &^ waitBit) {
				// waitBit makes the taker's Unlock take the slow path, which
				// looks at the inconsistent flag.
				if st.CompareAndSwap(s, b.tok|waitBit) {
					return s, b.closedErr()
				}
				continue
			}
		}
		if s&waitBit == 0 && !st.CompareAndSwap(s, s|waitBit) {
			continue
		}
		contended = true
		hook(stepLockSleep)
		if err := w.err(); err != nil {
			if w.woken { // pass on a wake-up this call will not use
				futex.Wake(st, 1)
			}
			return 0, err
		}
		check = w.sleep(st, s|waitBit)
	}
}

// announce sets the waiter bit (waitBit) of word, whose value was v, so that
// the next waker knows someone may sleep on it. It returns the value to
// sleep on, or ok false when the word changed meanwhile (look again).
func announce(word *atomic.Uint32, v uint32) (sleepOn uint32, ok bool) {
	if v&waitBit != 0 {
		return v, true
	}
	return v | waitBit, word.CompareAndSwap(v, v|waitBit)
}

// wakeAnnounced wakes up to n sleepers of word after the waker changed it to
// nv, keeping the waiter bit. If fewer than n were asleep, nobody else is
// (a waiter about to sleep sees nv and does not), so the bit is withdrawn,
// unless the word moved on since (a CAS from nv). A waiter killed while it
// slept thus costs one needless FUTEX_WAKE, never more.
func wakeAnnounced(word *atomic.Uint32, nv uint32, n int) {
	if futex.Wake(word, n) < n {
		word.CompareAndSwap(nv, nv&^waitBit)
	}
}

// Words at the same offsets in Mutex and RWMutex, the two robust locks.
const (
	lockFlags      = 4  // flagInconsistent
	lockRecoveries = 12 // takeovers from dead owners
	lockLastDead   = 16 // PID of the last dead owner taken over

	flagInconsistent = 1
)

// ownerDied records, after a robust lock's word was taken over from the
// dead holder token dead, that the protected data is suspect.
func (b *base) ownerDied(dead uint32) {
	b.u32(lockFlags).Or(flagInconsistent)
	b.countDeath(dead)
}

// countDeath counts a takeover from the dead holder token dead.
func (b *base) countDeath(dead uint32) {
	b.u32(lockRecoveries).Add(1)
	b.u32(lockLastDead).Store(uint32(b.seg.TokenOwner(dead &^ waitBit).PID))
}

// withTimeout runs f with a context that expires after d and turns its
// expiry into ErrTimeout.
func withTimeout(d time.Duration, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := f(ctx)
	if oe, ok := err.(*OpError); ok && oe.Err == context.DeadlineExceeded {
		oe.Err = ErrTimeout
	}
	return err
}

// slotTable is an array with one 64-bit entry per process slot: the slot's
// generation in the high 32 bits, a count in the low 32. An entry whose
// generation differs from the slot's current one belongs to a handle that is
// gone and counts as zero.
type slotTable struct {
	b []byte
	n int
}

func (t slotTable) entry(i int) *atomic.Uint64 { return mmap.Uint64(t.b, 8*i) }

// add adds delta to this handle's entry.
func (t slotTable) add(seg *shm.Segment, delta int32) uint32 {
	e := t.entry(seg.Slot())
	gen := uint64(seg.SlotGen())
	for {
		old := e.Load()
		c := uint32(old)
		if old>>32 != gen {
			c = 0
		}
		c += uint32(delta)
		if e.CompareAndSwap(old, gen<<32|uint64(c)) {
			return c
		}
	}
}

// get returns this handle's count.
func (t slotTable) get(seg *shm.Segment) uint32 {
	v := t.entry(seg.Slot()).Load()
	if v>>32 != uint64(seg.SlotGen()) {
		return 0
	}
	return uint32(v)
}

// sum sums the counts of all entries, those of dead handles included until
// they are reclaimed; it makes no system call.
func (t slotTable) sum() int {
	n := 0
	for i := 0; i < t.n; i++ {
		n += int(uint32(t.entry(i).Load()))
	}
	return n
}

// live sums the counts of the entries whose handle is alive.
func (t slotTable) live(seg *shm.Segment) int {
	sum := 0
	for i := 0; i < t.n; i++ {
		v := t.entry(i).Load()
		if uint32(v) != 0 && seg.SlotAlive(i, uint32(v>>32)) {
			sum += int(uint32(v))
		}
	}
	return sum
}

// reclaim zeroes every non-zero entry whose handle is dead and calls fn with
// what it held. Each dead entry is reclaimed by exactly one caller (CAS).
func (t slotTable) reclaim(seg *shm.Segment, fn func(slot int, count uint32)) {
	for i := 0; i < t.n; i++ {
		v := t.entry(i).Load()
		if uint32(v) == 0 || seg.SlotAlive(i, uint32(v>>32)) {
			continue
		}
		if t.entry(i).CompareAndSwap(v, v&^0xffffffff) && fn != nil {
			fn(i, uint32(v))
		}
	}
}

// le32 stores v at off of an object's memory during initialisation, before
// the object is published.
func le32(mem []byte, off int, v uint32) { mmap.Uint32(mem, off).Store(v) }
