package procsync

import (
	"context"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
	"github.com/ipcgo/ipc/shm"
)

// Cond words (PROTOCOL.md, "Cond").
const (
	cSeq     = 0 // bumped by every Signal and Broadcast; waiters sleep on it
	cNwait   = 4 // goroutines inside Wait (may over-count after a waiter is killed)
	cPending = 8 // wake-ups granted by Signal/Broadcast and not yet taken
)

// Cond is a condition variable in shared memory, used with a Mutex.
//
// Wait atomically unlocks the mutex and sleeps until Signal or Broadcast,
// then locks it again before returning. As with pthread_cond_wait, Wait may
// also return without a signal (for example when a waiter process was
// killed and left an unused wake-up): always re-check the condition in a
// loop.
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
	seq, nw, pend := c.u32(cSeq), c.u32(cNwait), c.u32(cPending)
	start := seq.Load()
	nw.Add(1)
	if err := m.Unlock(); err != nil {
		nw.Add(^uint32(0))
		return c.opErr("wait", err)
	}
	w := c.beginWait(ctx, seq)
	var werr error
	for cur := start; ; {
		// Only a signal sent after this waiter arrived (seq moved) lets it
		// take a pending wake-up.
		if cur != start {
			if p := pend.Load(); p > 0 && pend.CompareAndSwap(p, p-1) {
				break
			}
		}
		if werr = w.err(); werr != nil {
			break
		}
		w.sleep(seq, cur)
		cur = seq.Load()
	}
	w.end()
	nw.Add(^uint32(0))
	// Relock without the caller's context: Wait returns with m held, as a
	// condition variable must. The mutex is robust, so a dead holder cannot
	// keep this forever.
	if err := m.Lock(context.Background()); err != nil {
		return err
	}
	return c.opErr("wait", werr)
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
	waiting := c.u32(cNwait).Load()
	if waiting == 0 {
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
	seq := c.u32(cSeq)
	seq.Add(1)
	futex.Wake(seq, int(n))
	return nil
}

// CondState is a snapshot of a condition variable.
type CondState struct {
	Waiters int `json:"waiters"`
	Pending int `json:"pending"`
	Signals int `json:"signals"`
}

// State reads the condition variable's state.
func (c *Cond) State() CondState {
	return CondState{Waiters: c.waiters.live(c.seg), Pending: int(c.u32(cPending).Load()),
		Signals: int(c.u32(cSeq).Load())}
}
