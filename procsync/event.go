package procsync

import (
	"context"
	"fmt"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
	"github.com/ipcgo/ipc/shm"
)

// Event words (PROTOCOL.md, "Event").
const (
	eState  = 0 // bit 0: set; waitBit: a waiter sleeps; waiters sleep on it while bit 0 is clear
	eManual = 4 // 1 manual reset, 0 auto reset; fixed at creation
	// offset 8 is unused since layout version 2 (it counted waiters, and a
	// waiter killed while counted left it high)
	eSets = 12

	eSet = 1
)

// Event is a flag that processes wait for. A manual-reset event stays set,
// releasing every waiter, until Reset; an auto-reset event releases one
// waiter per Set and resets itself as that waiter returns. An event has no
// owner, so the death of a process never leaves it held; a setter that dies
// before calling Set is, like any missing signal, bounded only by the
// waiter's context.
type Event struct{ base }

// NewEvent returns the event called name in seg, creating it reset if it
// does not exist; an existing event of the other reset mode fails with
// ErrBadConfig.
func NewEvent(seg *shm.Segment, name string, manualReset bool, cfg *Config) (*Event, error) {
	manual := uint32(0)
	if manualReset {
		manual = 1
	}
	b, err := open(seg, name, KindEvent, 1, 0, cfg, func(mem []byte) { le32(mem, eManual, manual) })
	if err != nil {
		return nil, &OpError{Op: "open", Object: name, Err: err}
	}
	e := &Event{b}
	if e.u32(eManual).Load() != manual {
		return nil, &OpError{Op: "open", Object: name,
			Err: fmt.Errorf("%w: event exists with manual reset %v", ErrBadConfig, !manualReset)}
	}
	return e, nil
}

func (e *Event) manual() bool { return e.u32(eManual).Load() == 1 }

// consume reports whether the event is set, resetting an auto-reset event.
func (e *Event) consume() bool {
	st := e.u32(eState)
	if e.manual() {
		return st.Load()&eSet != 0
	}
	for {
		v := st.Load()
		if v&eSet == 0 {
			return false
		}
		if st.CompareAndSwap(v, v&^eSet) { // keeps waitBit for the others
			return true
		}
	}
}

// Wait returns when the event is set, waiting as long as ctx allows.
func (e *Event) Wait(ctx context.Context) error {
	if err := e.closedErr(); err != nil {
		return e.opErr("wait", err)
	}
	if e.consume() || e.spin(e.consume) {
		return nil
	}
	st := e.u32(eState)
	w := e.beginWait(ctx, st)
	defer w.end()
	for !e.consume() {
		v := st.Load()
		if v&eSet != 0 {
			continue
		}
		sleepOn, ok := announce(st, v)
		if !ok {
			continue
		}
		hook(stepEventSleep)
		if err := w.err(); err != nil {
			if w.woken && !e.manual() {
				futex.Wake(st, 1)
			}
			return e.opErr("wait", err)
		}
		w.sleep(st, sleepOn)
	}
	return nil
}

// WaitTimeout is Wait with a time limit; it returns ErrTimeout when d passes.
func (e *Event) WaitTimeout(d time.Duration) error { return withTimeout(d, e.Wait) }

// TryWait returns nil if the event is set (resetting an auto-reset event),
// else ErrWouldBlock.
func (e *Event) TryWait() error {
	if err := e.closedErr(); err != nil {
		return e.opErr("trywait", err)
	}
	if e.consume() {
		return nil
	}
	return e.opErr("trywait", ErrWouldBlock)
}

// Set sets the event: it releases every waiter of a manual-reset event, or
// one waiter of an auto-reset event.
func (e *Event) Set() error {
	if err := e.closedErr(); err != nil {
		return e.opErr("set", err)
	}
	st := e.u32(eState)
	v := st.Or(eSet)
	e.u32(eSets).Add(1)
	if v&waitBit != 0 {
		n := 1
		if e.manual() {
			n = 1 << 30
		}
		wakeAnnounced(st, v|eSet, n)
	}
	return nil
}

// Reset clears the event.
func (e *Event) Reset() error {
	if err := e.closedErr(); err != nil {
		return e.opErr("reset", err)
	}
	e.u32(eState).And(^uint32(eSet)) // keeps waitBit: waiters still sleep
	return nil
}

// IsSet reports whether the event is set.
func (e *Event) IsSet() bool { return e.u32(eState).Load()&eSet != 0 }

// EventState is a snapshot of an event.
type EventState struct {
	Set         bool `json:"set"`
	ManualReset bool `json:"manual_reset"`
	Sets        int  `json:"sets"`
	Waiters     int  `json:"waiters"`
}

// State reads the event's state.
func (e *Event) State() EventState {
	return EventState{Set: e.IsSet(), ManualReset: e.manual(), Sets: int(e.u32(eSets).Load()),
		Waiters: e.waiters.live(e.seg)}
}
