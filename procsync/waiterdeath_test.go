package procsync_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

// Tests of waiters (not holders) killed -9 at each step of a slow path: a
// peer parks itself at the step through the test hook, says "parked" and is
// killed there. The others must see no error and, once the next ordinary
// call has withdrawn what the dead waiter published, the object's words
// must be those of a fresh object, so that the fast paths apply again.

func init() {
	peers["park"] = peerPark
}

// wdPoll is the Config.Poll of every handle in these tests.
const wdPoll = 10 * time.Millisecond

// peerPark opens primitive args[2] of kind args[1] in segment args[0],
// parks at step args[3] of its slow path and, unless killed there first,
// reports the outcome of the call; step "after" parks it once the call has
// returned (a holder, for a lock). args[4:] are kind-specific.
func peerPark(args []string) int {
	if len(args) < 4 {
		return ipctest.Fail("park: want at least 4 args, got %q", args)
	}
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer seg.Close()
	kind, name, step := args[1], args[2], args[3]
	parked := false
	procsync.SetTestHook(func(s string) {
		if s == step && !parked {
			parked = true
			fmt.Println("parked")
			time.Sleep(time.Minute) // until killed
		}
	})
	cfg := &procsync.Config{Spin: 100, Poll: wdPoll}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call := func() error {
		switch kind {
		case "rw-lock", "rw-rlock":
			rw, err := procsync.NewRWMutex(seg, name, cfg)
			if err != nil {
				return err
			}
			if kind == "rw-lock" {
				return rw.Lock(ctx)
			}
			return rw.RLock(ctx)
		case "mutex":
			m, err := procsync.NewMutex(seg, name, cfg)
			if err != nil {
				return err
			}
			return m.Lock(ctx)
		case "sem":
			s, err := procsync.NewSemaphore(seg, name, 0, 0, cfg)
			if err != nil {
				return err
			}
			return s.Acquire(ctx)
		case "owned":
			s, err := procsync.NewOwnedSemaphore(seg, name, 1, cfg)
			if err != nil {
				return err
			}
			return s.Acquire(ctx)
		case "event-auto", "event-manual":
			e, err := procsync.NewEvent(seg, name, kind == "event-manual", cfg)
			if err != nil {
				return err
			}
			return e.Wait(ctx)
		case "cond":
			m, err := procsync.NewMutex(seg, name+"-m", cfg)
			if err != nil {
				return err
			}
			c, err := procsync.NewCond(seg, name, cfg)
			if err != nil {
				return err
			}
			if err := m.Lock(ctx); err != nil {
				return err
			}
			return c.Wait(ctx, m)
		case "barrier":
			n, _ := strconv.Atoi(args[4])
			b, err := procsync.NewBarrier(seg, name, n, cfg)
			if err != nil {
				return err
			}
			_, err = b.Wait(ctx)
			return err
		}
		return fmt.Errorf("park: kind %q", kind)
	}
	err = call()
	if step == "after" {
		fmt.Println("parked")
		time.Sleep(time.Minute) // until killed
	}
	fmt.Println("done", mxCode(err))
	return 0
}

// wdPark starts a peer that calls kind on object name and parks at step,
// and kills it there. The caller has made sure the call must wait.
func wdPark(t testing.TB, seg *shm.Segment, kind, name, step string, extra ...string) {
	t.Helper()
	p := ipctest.StartPeer(t, "park", append([]string{seg.Name(), kind, name, step}, extra...)...)
	if l := p.Line(t, mxWait); l != "parked" {
		t.Fatalf("peer said %q, want parked at %s", l, step)
	}
	p.Kill()
	select {
	case <-p.Done():
	case <-time.After(mxWait):
		t.Fatalf("peer %d not reaped %v after SIGKILL", p.Pid(), mxWait)
	}
}

func wdCfg() *procsync.Config { return &procsync.Config{Spin: 100, Poll: wdPoll} }

// wdOK fails t unless err is nil.
func wdOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wdWords fails t unless the object's first words are want.
func wdWords(t *testing.T, what string, got []uint32, want ...uint32) {
	t.Helper()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: words %#x, want %#x", what, got, want)
		}
	}
}

// Offsets (in words) of the RWMutex words the tests look at.
const (
	wdRwW, wdRwFlags, wdRwRes, wdRwRseq = 0, 1, 2, 5
)

// wdRWFresh checks that rw is free, consistent, with no reservation and no
// announced sleeper, and that both modes take and leave it at once.
func wdRWFresh(t *testing.T, what string, rw *procsync.RWMutex) {
	t.Helper()
	w := rw.Words(8)
	if w[wdRwW] != 0 || w[wdRwFlags] != 0 || w[wdRwRes] != 0 || w[wdRwRseq]&(1<<31) != 0 {
		t.Fatalf("%s: words %#x: writer, flags, reservation or reader announcement left", what, w)
	}
	wdOK(t, what+": TryRLock", rw.TryRLock())
	wdOK(t, what+": RUnlock", rw.RUnlock())
	wdOK(t, what+": TryLock", rw.TryLock())
	wdOK(t, what+": Unlock", rw.Unlock())
	if st := rw.State(); st.WriteLocked || st.Inconsistent || st.NotRecoverable || st.Waiters != 0 || len(st.Readers) != 0 {
		t.Fatalf("%s: state %+v, want a free lock", what, st)
	}
}

// TestRWMutexWaitingWriterKilled: a writer killed -9 while it waits for a
// reader to leave never held the lock, so it leaves no owner-dead state:
// the reader goes on at full speed and nobody gets ErrOwnerDead.
func TestRWMutexWaitingWriterKilled(t *testing.T) {
	seg := ipctest.CreateSegment(t, 1<<16, nil)
	rw, err := procsync.NewRWMutex(seg, "ww", nil) // default Config, as a new user has it
	if err != nil {
		t.Fatal(err)
	}
	wdOK(t, "RLock", rw.RLockTimeout(time.Second))
	b := mxStartCtl(t, seg, "rw", "ww", 10*time.Millisecond, nil)
	b.send(t, "lock")
	mxEventually(t, mxWait, "writer waiting", func() bool {
		st := rw.State()
		return st.WriteLocked && st.Writer != nil && st.Writer.Slot == b.slot
	})
	b.kill(t)
	wdOK(t, "RUnlock", rw.RUnlock())
	for i := 0; i < 5; i++ {
		wdOK(t, fmt.Sprintf("RLock %d after the waiting writer died", i), rw.RLockTimeout(time.Second))
		if i == 0 {
			if w := rw.Words(8); w[wdRwW] != 0 || w[wdRwFlags] != 0 {
				t.Fatalf("after the first RLock: words %#x, want the dead writer cleared and no flag", w)
			}
		}
		wdOK(t, "RUnlock", rw.RUnlock())
	}
	wdOK(t, "LockTimeout", rw.LockTimeout(time.Second))
	wdOK(t, "Unlock", rw.Unlock())
	if st := rw.State(); st.Recoveries != 0 {
		t.Fatalf("state %+v: a waiter's death counted as a recovery", st)
	}
	wdRWFresh(t, "after recovery", rw)
}

// TestRWMutexWaiterKilledAtEachStep kills RWMutex waiters at each step of
// their slow paths.
func TestRWMutexWaiterKilledAtEachStep(t *testing.T) {
	seg := ipctest.CreateSegment(t, 1<<16, nil)
	open := func(name string) *procsync.RWMutex {
		rw, err := procsync.NewRWMutex(seg, name, wdCfg())
		if err != nil {
			t.Fatal(err)
		}
		return rw
	}
	t.Run("writer-draining", func(t *testing.T) {
		rw := open("drain")
		wdOK(t, "RLock", rw.RLockTimeout(time.Second))
		wdPark(t, seg, "rw-lock", "drain", procsync.StepRWDrain)
		wdOK(t, "RUnlock", rw.RUnlock())
		wdOK(t, "TryRLock", rw.TryRLock()) // clears the dead writer word at once
		wdOK(t, "RUnlock", rw.RUnlock())
		wdRWFresh(t, "after", rw)
	})
	t.Run("writer-reserved", func(t *testing.T) {
		rw := open("res")
		wdOK(t, "Lock", rw.LockTimeout(time.Second))
		wdPark(t, seg, "rw-lock", "res", procsync.StepRWReserved)
		if w := rw.Words(8); w[wdRwRes] == 0 {
			t.Fatalf("words %#x: the parked writer published no reservation", w)
		}
		wdOK(t, "Unlock", rw.Unlock())
		wdOK(t, "RLock", rw.RLockTimeout(time.Second)) // withdraws the reservation
		wdOK(t, "RUnlock", rw.RUnlock())
		wdRWFresh(t, "after", rw)
	})
	t.Run("writer-sleeping", func(t *testing.T) {
		rw := open("wsleep")
		wdOK(t, "Lock", rw.LockTimeout(time.Second))
		wdPark(t, seg, "rw-lock", "wsleep", procsync.StepLockSleep)
		if w := rw.Words(8); w[wdRwW]&(1<<31) == 0 || w[wdRwRes] == 0 {
			t.Fatalf("words %#x: the parked writer published no wait bit or reservation", w)
		}
		wdOK(t, "Unlock", rw.Unlock())
		wdOK(t, "TryRLock", rw.TryRLock()) // withdraws the reservation at once
		wdOK(t, "RUnlock", rw.RUnlock())
		wdRWFresh(t, "after", rw)
	})
	t.Run("reader-sleeping", func(t *testing.T) {
		rw := open("rsleep")
		wdOK(t, "Lock", rw.LockTimeout(time.Second))
		wdPark(t, seg, "rw-rlock", "rsleep", procsync.StepRWReaderSleep)
		if w := rw.Words(8); w[wdRwRseq]&(1<<31) == 0 {
			t.Fatalf("words %#x: the parked reader announced nothing", w)
		}
		wdOK(t, "Unlock", rw.Unlock())
		wdRWFresh(t, "after", rw)
	})
	t.Run("reader-counted", func(t *testing.T) {
		// A reader killed between counting itself and re-checking the
		// writer word leaves a read lock: a dead reader's, reclaimed by the
		// next writer within about one poll, never ErrOwnerDead.
		rw := open("rin")
		wdPark(t, seg, "rw-rlock", "rin", procsync.StepRWReaderIn)
		wdOK(t, "RLock beside the dead reader", rw.RLockTimeout(time.Second))
		wdOK(t, "RUnlock", rw.RUnlock())
		wdOK(t, "Lock", rw.LockTimeout(mxDeadBound))
		wdOK(t, "Unlock", rw.Unlock())
		wdRWFresh(t, "after", rw)
	})
	t.Run("reader-clearing-dead-holder", func(t *testing.T) {
		// A reader killed while it clears a dead writer that held the lock
		// must not lose the verdict: the next writer gets ErrOwnerDead, once.
		rw := open("clr")
		h := mxStartCtl(t, seg, "rw", "clr", wdPoll, nil)
		h.want(t, "lock", "ok")
		h.kill(t)
		wdPark(t, seg, "rw-rlock", "clr", procsync.StepRWClearing)
		mxWantErr(t, rw.LockTimeout(mxDeadBound), procsync.ErrOwnerDead, "lock", "clr")
		wdOK(t, "MarkConsistent", rw.MarkConsistent())
		wdOK(t, "Unlock", rw.Unlock())
		if st := rw.State(); st.Recoveries != 1 {
			t.Fatalf("state %+v, want exactly one recovery", st)
		}
		wdRWFresh(t, "after", rw)
	})
}

// TestWaiterKilledAtEachStep kills the waiters of the other primitives at
// each step where they have published something.
func TestWaiterKilledAtEachStep(t *testing.T) {
	seg := ipctest.CreateSegment(t, 1<<16, nil)
	const bit = 1 << 31
	t.Run("mutex", func(t *testing.T) {
		m, err := procsync.NewMutex(seg, "mx", wdCfg())
		wdOK(t, "NewMutex", err)
		wdOK(t, "Lock", m.LockTimeout(time.Second))
		wdPark(t, seg, "mutex", "mx", procsync.StepLockSleep)
		if w := m.Words(1); w[0]&bit == 0 {
			t.Fatalf("words %#x: no wait bit", w)
		}
		wdOK(t, "Unlock", m.Unlock())
		wdWords(t, "after Unlock", m.Words(3), 0, 0, 0)
		wdOK(t, "TryLock", m.TryLock())
		wdOK(t, "Unlock", m.Unlock())
	})
	t.Run("semaphore", func(t *testing.T) {
		s, err := procsync.NewSemaphore(seg, "sem", 0, 0, wdCfg())
		wdOK(t, "NewSemaphore", err)
		wdPark(t, seg, "sem", "sem", procsync.StepSemSleep)
		if w := s.Words(1); w[0] != bit {
			t.Fatalf("words %#x: no waiter bit", w)
		}
		wdOK(t, "Release", s.Release(1))
		wdWords(t, "after Release", s.Words(2), 1, 0)
		wdOK(t, "TryAcquire", s.TryAcquire())
		wdOK(t, "Release", s.Release(1))
		wdWords(t, "after the second Release", s.Words(2), 1, 0)
		if st := s.State(); st.Value != 1 || st.Waiters != 0 {
			t.Fatalf("state %+v", st)
		}
	})
	t.Run("owned-semaphore", func(t *testing.T) {
		s, err := procsync.NewOwnedSemaphore(seg, "own", 1, wdCfg())
		wdOK(t, "NewOwnedSemaphore", err)
		wdOK(t, "TryAcquire", s.TryAcquire())
		wdPark(t, seg, "owned", "own", procsync.StepOwnedSleep)
		if w := s.Words(2); w[1]&bit == 0 {
			t.Fatalf("words %#x: no waiter bit", w)
		}
		wdOK(t, "Release", s.Release())
		if w := s.Words(3); w[1]&bit != 0 || w[2] != 0 {
			t.Fatalf("after Release: words %#x, want no waiter bit", w)
		}
		if st := s.State(); st.Free != 1 || st.Waiters != 0 || st.Reclaimed != 0 {
			t.Fatalf("state %+v", st)
		}
	})
	for _, manual := range []bool{false, true} {
		kind := map[bool]string{false: "event-auto", true: "event-manual"}[manual]
		t.Run(kind, func(t *testing.T) {
			e, err := procsync.NewEvent(seg, kind, manual, wdCfg())
			wdOK(t, "NewEvent", err)
			wdPark(t, seg, kind, kind, procsync.StepEventSleep)
			if w := e.Words(1); w[0] != bit {
				t.Fatalf("words %#x: no waiter bit", w)
			}
			wdOK(t, "Set", e.Set())
			wdWords(t, "after Set", e.Words(3), 1, uint32(map[bool]int{false: 0, true: 1}[manual]), 0)
			wdOK(t, "TryWait", e.TryWait())
			wdOK(t, "Reset", e.Reset())
			wdWords(t, "after Reset", e.Words(1), 0)
		})
	}
	t.Run("cond", func(t *testing.T) {
		m, err := procsync.NewMutex(seg, "cv-m", wdCfg())
		wdOK(t, "NewMutex", err)
		c, err := procsync.NewCond(seg, "cv", wdCfg())
		wdOK(t, "NewCond", err)
		condFresh := func(what string) {
			t.Helper()
			if w := c.Words(3); w[0]&bit != 0 || w[2] != 0 {
				t.Fatalf("%s: words %#x, want no waiter bit and no pending wake-up", what, w)
			}
			if st := c.State(); st.Waiters != 0 || st.Pending != 0 {
				t.Fatalf("%s: state %+v", what, st)
			}
		}
		// Killed asleep: the next Signal finds nobody asleep, reclaims the
		// dead waiter's count and withdraws its announcement.
		wdPark(t, seg, "cond", "cv", procsync.StepCondSleep)
		if w := c.Words(1); w[0]&bit == 0 {
			t.Fatalf("words %#x: no waiter bit", w)
		}
		wdOK(t, "Lock", m.LockTimeout(time.Second))
		wdOK(t, "Signal", c.Signal())
		wdOK(t, "Unlock", m.Unlock())
		condFresh("after a dead sleeper")

		// Killed after it took a wake-up: the same.
		g := mxNewGoroutines(t, 15*time.Second)
		done := g.goErr(func(ctx context.Context) error {
			wdPark(t, seg, "cond", "cv", procsync.StepCondTaken)
			return nil
		})
		mxEventually(t, mxWait, "waiter counted", func() bool { return c.State().Waiters == 1 })
		for len(done) == 0 {
			wdOK(t, "Signal", c.Signal())
			time.Sleep(time.Millisecond)
		}
		wdOK(t, "park", <-done)
		wdOK(t, "Lock", m.LockTimeout(time.Second))
		wdOK(t, "Signal", c.Signal())
		wdOK(t, "Unlock", m.Unlock())
		condFresh("after a dead waiter that took a wake-up")

		// Killed while it still held the mutex: a holder's death for the
		// mutex (ErrOwnerDead, as it must), nothing left in the Cond.
		wdPark(t, seg, "cond", "cv", procsync.StepCondAnnounced)
		mxWantErr(t, m.LockTimeout(mxDeadBound), procsync.ErrOwnerDead, "lock", "cv-m")
		wdOK(t, "MarkConsistent", m.MarkConsistent())
		wdOK(t, "Broadcast", c.Broadcast())
		wdOK(t, "Unlock", m.Unlock())
		condFresh("after a dead waiter that held the mutex")

		// A live waiter is still woken.
		woke := g.goErr(func(ctx context.Context) error {
			if err := m.Lock(ctx); err != nil {
				return err
			}
			defer m.Unlock()
			return c.Wait(ctx, m)
		})
		mxEventually(t, mxWait, "live waiter counted", func() bool { return c.State().Waiters == 1 })
		wdOK(t, "Lock", m.LockTimeout(time.Second))
		wdOK(t, "Signal", c.Signal())
		wdOK(t, "Unlock", m.Unlock())
		wdOK(t, "live waiter", mxWaitErr(t, woke, mxWait, "live waiter"))
		// The announcement outlives the waiter until a Signal finds
		// nobody, as after any use.
		wdOK(t, "Signal", c.Signal())
		condFresh("after the live waiter and one more Signal")
	})
	t.Run("barrier", func(t *testing.T) {
		b, err := procsync.NewBarrier(seg, "bar", 2, wdCfg())
		wdOK(t, "NewBarrier", err)
		g := mxNewGoroutines(t, 15*time.Second)
		// A party killed after its round tripped must not break a later
		// round, however long that round waits (several polls here).
		done := g.goErr(func(ctx context.Context) error {
			wdPark(t, seg, "barrier", "bar", procsync.StepBarrierReleased, "2")
			return nil
		})
		_, err = b.WaitTimeout(mxWait)
		wdOK(t, "Wait with the peer", err)
		wdOK(t, "park", mxWaitErr(t, done, mxWait, "park"))
		second := g.goErr(func(ctx context.Context) error { _, err := b.Wait(ctx); return err })
		time.Sleep(5 * wdPoll) // the first party polls and looks for dead parties
		_, err = b.WaitTimeout(mxWait)
		wdOK(t, "Wait of the next round", err)
		wdOK(t, "the other party of the next round", mxWaitErr(t, second, mxWait, "party"))
		if st := b.State(); st.Broken || st.Rounds != 2 || st.Arrived != 0 {
			t.Fatalf("state %+v", st)
		}
		// A party killed inside its round, before the round trips, breaks
		// it (the others would wait for it forever); after Reset the
		// barrier is as good as new.
		for _, step := range []string{procsync.StepBarrierIn, procsync.StepBarrierSleep} {
			wdPark(t, seg, "barrier", "bar", step, "2")
			_, err := b.WaitTimeout(mxWait)
			if step == procsync.StepBarrierSleep {
				wdOK(t, "Wait as the last party of a dead one's round", err)
			} else if !errors.Is(err, procsync.ErrBrokenBarrier) {
				t.Fatalf("%s: Wait = %v, want ErrBrokenBarrier", step, err)
			}
			wdOK(t, "Reset", b.Reset())
			second := g.goErr(func(ctx context.Context) error { _, err := b.Wait(ctx); return err })
			time.Sleep(3 * wdPoll)
			_, err = b.WaitTimeout(mxWait)
			wdOK(t, step+": Wait after Reset", err)
			wdOK(t, step+": the other party", mxWaitErr(t, second, mxWait, "party"))
		}
	})
}
