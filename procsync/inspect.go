package procsync

import (
	"fmt"
	"strings"

	"github.com/ipcgo/ipc/shm"
)

// ObjectState describes one object of a segment for inspection.
type ObjectState struct {
	Name    string      `json:"name"`
	Kind    string      `json:"kind"`
	Size    int         `json:"size"`
	Summary string      `json:"summary"`
	Owners  []shm.Owner `json:"owners,omitempty"`
	Waiters int         `json:"waiters"`
	// State is the kind's snapshot (MutexState, SemaphoreState, ...), nil
	// for user data and unknown kinds.
	State any `json:"state,omitempty"`
}

// KindName returns the name of a kind ("mutex", "data", ...).
func KindName(k shm.Kind) string {
	switch k {
	case shm.KindData:
		return "data"
	case KindMutex:
		return "mutex"
	case KindRWMutex:
		return "rwmutex"
	case KindSemaphore:
		return "semaphore"
	case KindOwnedSemaphore:
		return "owned-semaphore"
	case KindEvent:
		return "event"
	case KindCond:
		return "cond"
	case KindBarrier:
		return "barrier"
	}
	return fmt.Sprintf("kind-%d", uint32(k))
}

// Inspect reads the state of every object in seg without taking any lock
// or changing anything. Another process may change the state while it is
// read: each object's snapshot is taken word by word.
func Inspect(seg *shm.Segment) ([]ObjectState, error) {
	objs, err := seg.Objects()
	if err != nil {
		return nil, err
	}
	out := make([]ObjectState, 0, len(objs))
	for _, r := range objs {
		out = append(out, inspectOne(seg, r))
	}
	return out, nil
}

func inspectOne(seg *shm.Segment, r shm.Region) ObjectState {
	o := ObjectState{Name: r.Name, Kind: KindName(r.Kind), Size: r.Len}
	b := base{seg: seg, name: r.Name, mem: r.Bytes(), cfg: DefaultConfig(), tok: seg.Token()}
	fits := func(tables, extra int) bool { return r.Len >= objectSize(seg.Slots(), tables, extra) }
	if r.Kind != shm.KindData && !fits(1, 0) {
		o.Summary = "unexpected size"
		return o
	}
	if r.Kind != shm.KindData { // user data may be smaller than a waiter table
		b.waiters = b.table(0)
	}
	switch r.Kind {
	case shm.KindData:
		o.Summary = fmt.Sprintf("%d bytes of data", r.Len)
	case KindMutex:
		st := (&Mutex{b}).State()
		o.State, o.Waiters = st, st.Waiters
		o.Summary = lockSummary(st.Locked, st.Owner, st.Inconsistent, st.NotRecoverable)
		if st.Owner != nil {
			o.Owners = []shm.Owner{*st.Owner}
		}
	case KindRWMutex:
		if !fits(2, 0) {
			o.Summary = "unexpected size"
			return o
		}
		rw := &RWMutex{base: b, readers: b.table(1)}
		st := rw.State()
		o.State, o.Waiters = st, st.Waiters
		o.Summary = lockSummary(st.WriteLocked, st.Writer, st.Inconsistent, st.NotRecoverable)
		if st.Writer != nil {
			o.Owners = append(o.Owners, *st.Writer)
		}
		readers := 0
		for _, h := range st.Readers {
			o.Owners = append(o.Owners, h.Owner)
			readers += h.Count
		}
		if readers > 0 {
			o.Summary += fmt.Sprintf(", %d read locks", readers)
		}
	case KindSemaphore:
		st := (&Semaphore{b}).State()
		o.State, o.Waiters = st, st.Waiters
		o.Summary = fmt.Sprintf("%d of max %d permits available", st.Value, st.Max)
	case KindOwnedSemaphore:
		s := &OwnedSemaphore{b}
		if n := int(s.u32(oPermits).Load()); n < 1 || !fits(1, 4*n) {
			o.Summary = "unexpected size"
			return o
		}
		st := s.State()
		o.State, o.Waiters, o.Owners = st, st.Waiters, st.Holders
		o.Summary = fmt.Sprintf("%d of %d permits free, %d reclaimed from dead holders", st.Free, st.Permits, st.Reclaimed)
	case KindEvent:
		st := (&Event{b}).State()
		o.State, o.Waiters = st, st.Waiters
		mode := "auto-reset"
		if st.ManualReset {
			mode = "manual-reset"
		}
		o.Summary = fmt.Sprintf("%s, set=%v", mode, st.Set)
	case KindCond:
		st := (&Cond{b}).State()
		o.State, o.Waiters = st, st.Waiters
		o.Summary = fmt.Sprintf("%d signals sent, %d pending", st.Signals, st.Pending)
	case KindBarrier:
		if !fits(2, 0) {
			o.Summary = "unexpected size"
			return o
		}
		st := (&Barrier{base: b, inside: b.table(1)}).State()
		o.State, o.Waiters = st, st.Waiters
		o.Summary = fmt.Sprintf("%d of %d parties arrived, %d rounds", st.Arrived, st.Parties, st.Rounds)
		if st.Broken {
			o.Summary += ", BROKEN"
		}
	default:
		o.Summary = "unknown kind"
	}
	if o.Waiters > 0 {
		o.Summary += fmt.Sprintf(", %d waiting", o.Waiters)
	}
	return o
}

func lockSummary(locked bool, owner *shm.Owner, inconsistent, notRecoverable bool) string {
	var parts []string
	switch {
	case notRecoverable:
		parts = append(parts, "NOT RECOVERABLE")
	case !locked:
		parts = append(parts, "unlocked")
	default:
		alive := "alive"
		if !owner.Alive {
			alive = "DEAD"
		}
		parts = append(parts, fmt.Sprintf("locked by pid %d (%s)", owner.PID, alive))
	}
	if inconsistent {
		parts = append(parts, "inconsistent")
	}
	return strings.Join(parts, ", ")
}
