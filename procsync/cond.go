package procsync

import (
	"context"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
	"github.com/ipcgo/ipc/shm"
)

// Cond words (PROTOCOL.md, "Cond"). Table 0 counts, per slot, the
// goroutines inside Wait: a dead process's entry is reclaimed by its
// liveness, so no count in the words can be left high by a killed waiter.
const (
	cSeq = 0 // bits 0-23 bumped by Signal/Broadcast, bits 24-30 bumped by each arrival, waitBit; waiters sleep on it
	// offset 4 is unused since layout version 2 (it counted waiters, and a
	// waiter killed while counted left it high)
	cPending = 8 // wake-ups granted by Signal/Broadcast and not yet taken

	cSigMask    = 1<<24 - 1
	cArriveOne  = 1 << 24
	cArriveMask = 0x7f << 24
)

// Cond is a condition variable in shared memory, used with a Mutex.
//
// Wait atomically unlocks the mutex and sleeps until Signal or Broadcast,
// then locks it again before returning. As with pthread_cond_wait, Wait may
// also return without a signal (for example when a waiter process was
// killed and left an unused wake-up): always re-check the condition in a
// loop. A waiter killed after it took a wake-up takes that wake-up with it,
// as if it had returned and then died.
type Cond struct{ base }

// NewCond returns the condition variable called name in seg, creating it if
// it does not exist.
func NewCond(seg *shm.Segment, name string, cfg *Config) (*Cond, error) {
	b, err := open(seg, name, KindCond, 1, 0, cfg, nil)
	if err != nil {
		return nil, &OpError{Op: "open", Object: name, Err: err}
	}
	return &Cond{b}, nil
}

// Wait unlocks m, waits for a signal as long as ctx allows, and locks m
// again. It returns with m held unless relocking failed: nil, the context's
// error (m held), ErrOwnerDead from relocking (m held: repair and
// MarkConsistent), or another error from m.
func (c *Cond) Wait(ctx context.Context, m *Mutex) error {
	if err := c.closedErr(); err != nil {
		return c.opErr("wait", err)
	}
	seq, pend := c.u32(cSeq), c.u32(cPending)
	w := c.beginWait(ctx, seq) // counted in table 0 first, then announced
	start := c.arrive() & cSigMask
	hook(stepCondAnnounced)
	if err := m.Unlock(); err != nil {
		w.end()
		return c.opErr("wait", err)
	}
	var werr error
	for {
		cur := seq.Load()
		// Only a signal sent after this waiter arrived (seq moved) lets it
		// take a pending wake-up.
		if cur&cSigMask != start {
			if p := pend.Load(); p > 0 && pend.CompareAndSwap(p, p-1) {
				hook(stepCondTaken)
				break
			}
		}
		sleepOn, ok := announce(seq, cur)
		if !ok {
			continue
		}
		hook(stepCondSleep)
		if werr = w.err(); werr != nil {
			break
		}
		w.sleep(seq, sleepOn)
	}
	w.end()
	// Relock without the caller's context: Wait returns with m held, as a
	// condition variable must. The mutex is robust, so a dead holder cannot
	// keep this forever.
	if err := m.Lock(context.Background()); err != nil {
		return err
	}
	return c.opErr("wait", werr)
}

// arrive announces a new waiter: it sets waitBit and bumps the arrival
// bits, so that a Signal withdrawing the announcement at the same moment
// fails its CAS. It returns seq as it was.
func (c *Cond) arrive() uint32 {
	seq := c.u32(cSeq)
	for {
		v := seq.Load()
		nv := v&^cArriveMask | (v+cArriveOne)&cArriveMask | waitBit
		if seq.CompareAndSwap(v, nv) {
			return v
		}
	}
}

// WaitTimeout is Wait with a time limit; it returns ErrTimeout (m held) when
// d passes.
func (c *Cond) WaitTimeout(d time.Duration, m *Mutex) error {
	return withTimeout(d, func(ctx context.Context) error { return c.Wait(ctx, m) })
}

// Signal wakes one waiter, if any.
func (c *Cond) Signal() error { return c.wake("signal", 1) }

// Broadcast wakes every waiter.
func (c *Cond) Broadcast() error { return c.wake("broadcast", 1<<30) }

func (c *Cond) wake(op string, n uint32) error {
	if err := c.closedErr(); err != nil {
		return c.opErr(op, err)
	}
	seq := c.u32(cSeq)
	v := seq.Load()
	if v&waitBit == 0 { // nobody announced: nothing to do
		return nil
	}
	waiting := c.waiters.sum()
	if waiting == 0 {
		c.withdraw(v)
		return nil
	}
	pend := c.u32(cPending)
	for { // grant n wake-ups, never more than there are waiters
		p := pend.Load()
		np := min(uint64(p)+uint64(n), uint64(waiting))
		if np <= uint64(p) || pend.CompareAndSwap(p, uint32(np)) {
			break
		}
	}
	for {
		v = seq.Load()
		nv := v&^cSigMask | (v+1)&cSigMask
		if seq.CompareAndSwap(v, nv) {
			if futex.Wake(seq, int(n)) == 0 { // nobody asleep: maybe only dead waiters are counted
				c.withdraw(nv)
			}
			return nil
		}
	}
}

// withdraw reclaims the table entries of dead waiters and, if no waiter is
// left, clears waitBit (a CAS from v, the value the caller saw: a waiter
// arriving meanwhile changed it) and the wake-ups nobody will take.
func (c *Cond) withdraw(v uint32) {
	pend := c.u32(cPending)
	p := pend.Load()
	c.waiters.reclaim(c.seg, nil)
	if c.waiters.sum() == 0 && c.u32(cSeq).CompareAndSwap(v, v&^waitBit) {
		pend.CompareAndSwap(p, 0)
	}
}

// CondState is a snapshot of a condition variable. Waiters counts a
// waiter from the moment it arrives in Wait, just before it releases the
// mutex.
type CondState struct {
	Waiters int `json:"waiters"`
	Pending int `json:"pending"`
	Signals int `json:"signals"`
}

// State reads the condition variable's state.
func (c *Cond) State() CondState {
	return CondState{Waiters: c.waiters.live(c.seg), Pending: int(c.u32(cPending).Load()),
		Signals: int(c.u32(cSeq).Load() & cSigMask)}
}
