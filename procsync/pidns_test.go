//go:build linux

package procsync_test

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

// PID reuse must not make a dead owner look alive. The owner check asks
// the kernel whether the slot's OFD lock is held and compares the slot's
// generation with the token's; the PID a slot records is informational.
// These tests build the situations where a PID-based check goes wrong:
// the dead owner's slot claimed again by another process, and processes
// that all have PID 1 in their own PID namespaces.

func init() {
	peers["mx-nop"] = func([]string) int { return 0 }
}

// TestMutexDeadOwnerSlotReclaimed: the holder dies and another process
// claims its very slot (new generation, live OFD lock on the same byte).
// The dead holder's token stays dead, and the lock is taken over.
func TestMutexDeadOwnerSlotReclaimed(t *testing.T) {
	seg := ipctest.CreateSegment(t, 1<<14, &shm.Config{Perm: 0o600, Slots: 4, Objects: 8})
	for _, kind := range []string{"mutex", "rw"} {
		var l mxLocker
		var err error
		obj := "reuse-" + kind
		if kind == "mutex" {
			l, err = procsync.NewMutex(seg, obj, nil)
		} else {
			l, err = procsync.NewRWMutex(seg, obj, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		owner := func() *shm.Owner {
			if m, ok := l.(*procsync.Mutex); ok {
				return m.State().Owner
			}
			return l.(*procsync.RWMutex).State().Writer
		}
		a := mxStartCtl(t, seg, kind, obj, 10*time.Millisecond, nil)
		a.want(t, "lock", "ok")
		a.kill(t)
		// Slots are claimed lowest first: the next process gets a's slot.
		b := mxStartCtl(t, seg, kind, obj, 10*time.Millisecond, nil)
		if b.slot != a.slot || b.gen != a.gen+1 {
			t.Fatalf("%s: second process in slot %d gen %d, first was in slot %d gen %d", kind, b.slot, b.gen, a.slot, a.gen)
		}
		if _, pid, alive := seg.SlotInfo(a.slot); !alive || pid != b.Pid() {
			t.Fatalf("%s: slot %d: pid %d alive %t, want the live second process %d", kind, a.slot, pid, alive, b.Pid())
		}
		o := owner()
		if o == nil || o.Slot != a.slot || o.Alive {
			t.Fatalf("%s: owner %+v, want the dead holder of slot %d", kind, o, a.slot)
		}
		if o.PID == b.Pid() { // the slot's PID field now names b
			t.Fatalf("%s: owner %+v: the live process that reclaimed the slot is reported as the dead owner", kind, *o)
		}
		t.Logf("%s: owner reported as %+v", kind, *o)
		start := time.Now()
		err = l.LockTimeout(mxDeadBound)
		t.Logf("%s: taken over after %v", kind, time.Since(start))
		mxWantErr(t, err, procsync.ErrOwnerDead, "lock", obj)
		b.want(t, "trylock", "wouldblock")
		if err := l.MarkConsistent(); err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		b.want(t, "lock", "ok")
		b.want(t, "unlock", "ok")
	}
}

// TestMutexPIDNamespaces: two processes each in a new PID namespace, both
// PID 1 there. The first holds the mutex and is killed; the second, also
// PID 1 and alive, and a third that then claims the dead one's slot (PID 1
// again), must not make the dead holder look alive: the waiter gets
// ErrOwnerDead. A PID-based check would be fooled: the slot records PID 1,
// and a process with PID 1 exists in every one of these namespaces.
func TestMutexPIDNamespaces(t *testing.T) {
	sys := func() *syscall.SysProcAttr { return &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID} }
	probe := ipctest.Command("mx-nop")
	probe.SysProcAttr = sys()
	if err := probe.Run(); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("cannot create a PID namespace: %v", err)
		}
		t.Fatalf("probe in a new PID namespace: %v", err)
	}

	seg := ipctest.CreateSegment(t, 4096, &shm.Config{Perm: 0o600, Slots: 8, Objects: 8})
	m, err := procsync.NewMutex(seg, "ns", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := mxStartCtl(t, seg, "mutex", "ns", 10*time.Millisecond, sys())
	b := mxStartCtl(t, seg, "mutex", "ns", 10*time.Millisecond, sys())
	if a.pid != 1 || b.pid != 1 {
		t.Fatalf("getpid() in the new namespaces: %d and %d, want 1 and 1", a.pid, b.pid)
	}
	t.Logf("peers %d and %d (here) are both pid 1 in their namespaces", a.Pid(), b.Pid())
	a.want(t, "lock", "ok")
	st := m.State()
	if !st.Locked || st.Owner.PID != 1 || !st.Owner.Alive || st.Owner.Slot != a.slot {
		t.Fatalf("state %+v, want held by live pid 1 in slot %d", st, a.slot)
	}
	a.kill(t)

	// PID 1 is alive here, and in b's namespace.
	if err := syscall.Kill(1, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		t.Logf("kill(1, 0): %v", err)
	} else {
		t.Log("kill(1, 0) succeeds: a PID-based check would call the dead owner alive")
	}
	if _, pid, alive := seg.SlotInfo(b.slot); pid != 1 || !alive {
		t.Fatalf("b's slot: pid %d alive %t, want 1 and alive", pid, alive)
	}
	st = m.State()
	if !st.Locked || st.Owner.PID != 1 || st.Owner.Alive {
		t.Fatalf("state %+v, want held by dead pid 1", st)
	}
	// A third process, pid 1 in its namespace too, claims the dead slot.
	c := mxStartCtl(t, seg, "mutex", "ns", 10*time.Millisecond, sys())
	if c.pid != 1 || c.slot != a.slot {
		t.Fatalf("third process: pid %d slot %d, want pid 1 in slot %d", c.pid, c.slot, a.slot)
	}
	// The owner's PID is now unknown (0) or the recorded 1; never alive.
	if st := m.State(); !st.Locked || st.Owner.Slot != a.slot || st.Owner.Alive || (st.Owner.PID != 1 && st.Owner.PID != 0) {
		t.Fatalf("state %+v owner %+v: want the dead owner of slot %d once its slot and pid are taken again", st, st.Owner, a.slot)
	}
	start := time.Now()
	err = m.LockTimeout(mxDeadBound)
	t.Logf("taken over after %v", time.Since(start))
	mxWantErr(t, err, procsync.ErrOwnerDead, "lock", "ns")
	if st := m.State(); (st.LastDeadPID != 1 && st.LastDeadPID != 0) || st.Owner.PID != os.Getpid() || !st.Inconsistent {
		t.Fatalf("state %+v, want ours, inconsistent, last dead pid 1 (or 0: unknown)", st)
	}
	b.want(t, "trylock", "wouldblock")
	if err := m.MarkConsistent(); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	// The processes in the namespaces use the lock normally.
	b.want(t, "lock", "ok")
	c.want(t, "trylock", "wouldblock")
	b.want(t, "unlock", "ok")
	c.want(t, "lock", "ok")
	c.want(t, "unlock", "ok")
}
