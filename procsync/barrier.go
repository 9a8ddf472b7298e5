package procsync

import (
	"context"
	"fmt"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
	"github.com/ipcgo/ipc/internal/mmap"
	"github.com/ipcgo/ipc/shm"
)

// Barrier words (PROTOCOL.md, "Barrier"). The round state is one 64-bit
// word so that arriving, tripping and breaking are single CAS steps: the low
// half holds the broken bit (31) and the number of parties arrived, the
// high half the round number. Waiters sleep on the high half (bytes 4-7 on
// the little-endian systems this runs on). Table 1 records, per process
// slot, the parties inside Wait and their round (bInside*).
//
// A trip advances the round number by 1, a break or a Reset by 2. After a
// round g tripped, no later round can trip before all of g's parties have
// left Wait (each is needed), only break or reset; so a party of round g,
// however late it looks, knows that g tripped exactly when the round number
// has moved on from g by an odd amount.
const (
	bState   = 0
	bGen     = 4
	bParties = 8 // fixed at creation
	bTrips   = 12

	bBrokenBit = 1 << 31

	// A table 1 entry is round<<32 | gen<<13 | count: the parties of the
	// slot's handle of generation gen (mod 2^19) inside Wait in that round.
	// An entry of a round that has ended counts as zero, so a party killed
	// after its round tripped or broke leaves nothing that a later round
	// could take for a dead party of its own.
	bInsideCountBits = 13
	bInsideCountMask = 1<<bInsideCountBits - 1
	bInsideGenMask   = 1<<19 - 1
)

// Barrier makes a fixed number of parties, in any processes, wait for each
// other. When a waiting party's process dies, or a party gives up (its
// context ends), the barrier breaks: every waiter, and every later Wait,
// gets ErrBrokenBarrier until Reset. A party that dies before it arrives
// cannot be told from a late one: bound the Wait with a context or timeout.
// A party that dies after its round tripped (or broke) breaks nothing.
// Use exactly parties participants per round.
type Barrier struct {
	base
	inside slotTable
}

// NewBarrier returns the barrier called name in seg, creating it for parties
// parties if it does not exist; an existing barrier with another count fails
// with ErrBadConfig.
func NewBarrier(seg *shm.Segment, name string, parties int, cfg *Config) (*Barrier, error) {
	if parties < 1 || parties >= bBrokenBit {
		return nil, &OpError{Op: "open", Object: name, Err: fmt.Errorf("%w: %d parties", ErrBadConfig, parties)}
	}
	b, err := open(seg, name, KindBarrier, 2, 0, cfg, func(mem []byte) { le32(mem, bParties, uint32(parties)) })
	if err != nil {
		return nil, &OpError{Op: "open", Object: name, Err: err}
	}
	br := &Barrier{base: b, inside: b.table(1)}
	if got := br.u32(bParties).Load(); got != uint32(parties) {
		return nil, &OpError{Op: "open", Object: name,
			Err: fmt.Errorf("%w: barrier exists for %d parties, not %d", ErrBadConfig, got, parties)}
	}
	return br, nil
}

func barrierWord(gen uint32, broken bool, count uint32) uint64 {
	v := uint64(gen)<<32 | uint64(count)
	if broken {
		v |= bBrokenBit
	}
	return v
}

func splitBarrier(v uint64) (gen uint32, broken bool, count uint32) {
	return uint32(v >> 32), v&bBrokenBit != 0, uint32(v) &^ bBrokenBit
}

// Wait arrives at the barrier and waits until all parties have. It returns
// the arrival index, from 0 (first) to parties-1 (the last, which releases
// the others).
func (b *Barrier) Wait(ctx context.Context) (int, error) {
	if err := b.closedErr(); err != nil {
		return 0, b.opErr("wait", err)
	}
	st := mmap.Uint64(b.mem, bState)
	parties := b.u32(bParties).Load()
	in := false // counted in table 1 for round reg
	var reg uint32
	defer func() {
		if in {
			b.leave(reg)
		}
	}()
	var g, idx uint32
	for {
		v := st.Load()
		gen, broken, count := splitBarrier(v)
		if broken {
			return 0, b.opErr("wait", ErrBrokenBarrier)
		}
		if !in || reg != gen {
			if in {
				b.leave(reg)
			}
			in, reg = b.enter(gen), gen
			hook(stepBarrierIn)
		}
		if count+1 == parties { // the last party trips the round
			if st.CompareAndSwap(v, barrierWord(gen+1, false, 0)) {
				b.u32(bTrips).Add(1)
				futex.Wake(b.u32(bGen), 1<<30)
				hook(stepBarrierReleased)
				return int(count), nil
			}
			continue
		}
		if st.CompareAndSwap(v, barrierWord(gen, false, count+1)) {
			g, idx = gen, count
			break
		}
	}
	gw := b.u32(bGen)
	if !b.spin(func() bool { return gw.Load() != g }) {
		w := b.beginWait(ctx, gw)
		defer w.end()
		for gw.Load() == g {
			hook(stepBarrierSleep)
			if err := w.err(); err != nil {
				b.breakRound(g)
				if gen, _, _ := splitBarrier(st.Load()); (gen-g)%2 == 1 {
					return int(idx), nil // the round tripped before it could break
				}
				return int(idx), b.opErr("wait", err)
			}
			if w.sleep(gw, g) && b.deadParty(g) {
				b.breakRound(g)
			}
		}
	}
	// The round ended: it tripped if the round number moved on by an odd
	// amount (see above), even if later rounds broke since.
	if gen, _, _ := splitBarrier(st.Load()); (gen-g)%2 == 0 {
		return int(idx), b.opErr("wait", ErrBrokenBarrier)
	}
	hook(stepBarrierReleased)
	return int(idx), nil
}

// enter counts a party of this handle inside Wait in round g and reports
// whether it did (a slot's count is bounded: the rest go uncounted).
func (b *Barrier) enter(g uint32) bool {
	e := b.inside.entry(b.seg.Slot())
	mine := uint64(b.seg.SlotGen() & bInsideGenMask)
	for {
		old := e.Load()
		c := old & bInsideCountMask
		if uint32(old>>32) != g || (old>>bInsideCountBits)&bInsideGenMask != mine {
			c = 0 // an ended round's entry, or another handle's
		}
		if c == bInsideCountMask {
			return false
		}
		if e.CompareAndSwap(old, uint64(g)<<32|mine<<bInsideCountBits|(c+1)) {
			return true
		}
	}
}

// leave undoes enter(g), unless the entry has moved on to another round.
func (b *Barrier) leave(g uint32) {
	e := b.inside.entry(b.seg.Slot())
	mine := uint64(b.seg.SlotGen() & bInsideGenMask)
	for {
		old := e.Load()
		if uint32(old>>32) != g || (old>>bInsideCountBits)&bInsideGenMask != mine || old&bInsideCountMask == 0 {
			return
		}
		if e.CompareAndSwap(old, old-1) {
			return
		}
	}
}

// WaitTimeout is Wait with a time limit; when d passes the barrier breaks
// and it returns ErrTimeout.
func (b *Barrier) WaitTimeout(d time.Duration) (int, error) {
	var idx int
	err := withTimeout(d, func(ctx context.Context) error {
		var err error
		idx, err = b.Wait(ctx)
		return err
	})
	return idx, err
}

// deadParty reports whether a process with a party inside Wait in round g
// has died, clearing the dead entries of that round (each is found by one
// caller).
func (b *Barrier) deadParty(g uint32) bool {
	dead := false
	for i := 0; i < b.inside.n; i++ {
		e := b.inside.entry(i)
		v := e.Load()
		if uint32(v>>32) != g || v&bInsideCountMask == 0 {
			continue
		}
		gen := uint32(v>>bInsideCountBits) & bInsideGenMask
		if !b.seg.TokenAlive(shm.MakeToken(i, gen)) && e.CompareAndSwap(v, v&^bInsideCountMask) {
			dead = true
		}
	}
	return dead
}

// breakRound breaks round g if it is still the current one and wakes its
// waiters.
func (b *Barrier) breakRound(g uint32) {
	st := mmap.Uint64(b.mem, bState)
	for {
		v := st.Load()
		gen, broken, _ := splitBarrier(v)
		if gen != g || broken {
			return
		}
		if st.CompareAndSwap(v, barrierWord(g+2, true, 0)) {
			futex.Wake(b.u32(bGen), 1<<30)
			return
		}
	}
}

// Reset returns the barrier to its initial, unbroken state. Parties waiting
// in the current round get ErrBrokenBarrier.
func (b *Barrier) Reset() error {
	if err := b.closedErr(); err != nil {
		return b.opErr("reset", err)
	}
	st := mmap.Uint64(b.mem, bState)
	for {
		v := st.Load()
		gen, _, _ := splitBarrier(v)
		if st.CompareAndSwap(v, barrierWord(gen+2, false, 0)) { // current waiters see a break
			futex.Wake(b.u32(bGen), 1<<30)
			return nil
		}
	}
}

// BarrierState is a snapshot of a barrier.
type BarrierState struct {
	Parties int  `json:"parties"`
	Arrived int  `json:"arrived"`
	Broken  bool `json:"broken"`
	Rounds  int  `json:"rounds"`
	Waiters int  `json:"waiters"`
}

// State reads the barrier's state.
func (b *Barrier) State() BarrierState {
	_, broken, count := splitBarrier(mmap.Uint64(b.mem, bState).Load())
	return BarrierState{
		Parties: int(b.u32(bParties).Load()),
		Arrived: int(count),
		Broken:  broken,
		Rounds:  int(b.u32(bTrips).Load()),
		Waiters: b.waiters.live(b.seg),
	}
}
