package main

import (
	"fmt"
	"strings"

	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

// inspectFunc is procsync.Inspect; tests replace it.
var inspectFunc = procsync.Inspect

// inspectObjects is procsync.Inspect, guarded: a panic inside it (a bug, or
// a damaged segment it does not expect) must not crash an inspection tool.
// It then describes the objects itself, with less detail: data regions by
// size, mutexes by their State, other kinds by name only; warn tells why.
func inspectObjects(seg *shm.Segment) (objs []procsync.ObjectState, warn string, err error) {
	func() {
		defer func() {
			if p := recover(); p != nil {
				warn = fmt.Sprintf("procsync.Inspect failed (%v); showing a reduced view", p)
			}
		}()
		objs, err = inspectFunc(seg)
	}()
	if warn == "" {
		if err == nil {
			fixDeadOwners(seg, objs)
		}
		return objs, "", err
	}
	regions, err := seg.Objects()
	if err != nil {
		return nil, warn, err
	}
	objs = objs[:0]
	for _, r := range regions {
		o := procsync.ObjectState{Name: r.Name, Kind: procsync.KindName(r.Kind), Size: r.Len}
		switch r.Kind {
		case shm.KindData:
			o.Summary = fmt.Sprintf("%d bytes of data", r.Len)
		case procsync.KindMutex:
			// Opening an existing mutex only finds it; State reads it.
			m, err := procsync.NewMutex(seg, r.Name, nil)
			if err != nil {
				o.Summary = "state unavailable: " + err.Error()
				break
			}
			st := m.State()
			o.State, o.Waiters = st, st.Waiters
			switch {
			case st.NotRecoverable:
				o.Summary = "NOT RECOVERABLE"
			case !st.Locked:
				o.Summary = "unlocked"
			default:
				o.Owners = []shm.Owner{*st.Owner}
				o.Summary = fmt.Sprintf("locked by pid %d (%s)", st.Owner.PID, map[bool]string{true: "alive", false: "DEAD"}[st.Owner.Alive])
			}
			if st.Inconsistent {
				o.Summary += ", inconsistent"
			}
		default:
			o.Summary = "state unavailable"
		}
		objs = append(objs, o)
	}
	fixDeadOwners(seg, objs)
	return objs, warn, nil
}

// fixDeadOwners words the owners that are dead and whose process slot has
// been claimed again since (by another process, or by this inspection
// itself: an attach takes the first free slot, often the dead owner's). The
// segment keeps one PID per slot, that of its latest occupant, so such an
// owner's PID is unknown: shm reports it as 0 (older versions reported the
// new occupant's PID, which is corrected to 0 here), and the summary says
// so instead of "pid 0".
func fixDeadOwners(seg *shm.Segment, objs []procsync.ObjectState) {
	for i := range objs {
		o := &objs[i]
		for j := range o.Owners {
			ow := &o.Owners[j]
			if ow.Alive || ow.Slot < 0 || ow.Slot >= seg.Slots() {
				continue
			}
			if ow.PID != 0 {
				_, pid, alive := seg.SlotInfo(ow.Slot)
				if !alive || pid != ow.PID {
					continue // the slot still names the dead owner: its PID is right
				}
			}
			o.Summary = strings.ReplaceAll(o.Summary, fmt.Sprintf("pid %d (DEAD)", ow.PID),
				fmt.Sprintf("a dead process (DEAD; pid unknown, its slot %d was reused)", ow.Slot))
			if st, ok := o.State.(procsync.MutexState); ok && st.Owner != nil && st.Owner.Slot == ow.Slot {
				fixed := *st.Owner
				fixed.PID = 0
				st.Owner = &fixed
				o.State = st
			}
			ow.PID = 0
		}
	}
}
