package procsync_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

// The chaos test SIGKILLs lock holders at random points, hundreds of times,
// and checks that every kill is recovered within a bounded time and that a
// record protected by the mutex and repaired from an intent record is
// never left inconsistent. Run longer with -chaos.kills=N.

var chaosKills = flag.Int("chaos.kills", 200, "number of lock holders TestMutexChaosKillHolders kills with SIGKILL")

func init() {
	peers["mx-chaos-worker"] = peerMxChaosWorker
}

// Layout of the record the chaos mutex protects. The counter is kept in two
// 32-bit halves that must be equal, plus a 64-bit copy; each worker counts
// the increments it committed. An update first writes an intent (the values
// before it and who makes it) and sets active; a recoverer that finds
// active set rolls the update back.
const (
	crLo              = 0  // uint32: counter, first half
	crHi              = 4  // uint32: counter, second half (== crLo when consistent)
	crCopy            = 8  // uint64: a copy of the counter
	crActive          = 16 // uint32: 1 while an update is in progress
	crWorker          = 20 // uint32: intent: the worker index making the update
	crBefore          = 24 // uint64: intent: the counter before the update
	crBeforeCommitted = 32 // uint64: intent: the worker's committed count before the update
	crStop            = 40 // uint32: set by the test to stop the workers
	crViol            = 44 // uint32: inconsistent records seen by holders
	crRollbacks       = 48 // uint32: updates rolled back
	crOwnerDead       = 52 // uint32: ErrOwnerDead seen by workers
	crOps             = 56 // uint64: updates done (counted after Unlock)
	crWorkers         = 64 // per worker index: committed uint64 at +0, holding uint32 at +8
	crWorkerSize      = 16
)

func chaosRecordSize(workers int) int { return crWorkers + crWorkerSize*workers }

// chaosCommitted is worker w's count of committed increments.
func chaosCommitted(r shm.Region, w int) *atomic.Uint64 {
	return r.Uint64(crWorkers + crWorkerSize*w)
}

// chaosBusy spins briefly: the window in which a kill leaves the record
// half updated.
func chaosBusy() {
	x := 1
	for i := 0; i < 2000; i++ {
		x = x*31 + i
	}
	runtime.KeepAlive(x)
}

// chaosUpdate increments the counter on behalf of worker w under the lock:
// intent, then the two halves and the worker's committed count with busy
// delays between, then the copy, then clear the intent.
func chaosUpdate(r shm.Region, w int) {
	lo, hi, cp, com := r.Uint32(crLo), r.Uint32(crHi), r.Uint64(crCopy), chaosCommitted(r, w)
	c, cm := lo.Load(), com.Load()
	r.Uint64(crBefore).Store(uint64(c))
	r.Uint64(crBeforeCommitted).Store(cm)
	r.Uint32(crWorker).Store(uint32(w))
	r.Uint32(crActive).Store(1)
	lo.Store(c + 1)
	chaosBusy()
	com.Store(cm + 1)
	chaosBusy()
	hi.Store(c + 1)
	cp.Store(uint64(c) + 1)
	r.Uint32(crActive).Store(0)
}

// chaosRepair is run by whoever gets ErrOwnerDead: it rolls back an update
// the dead holder left half done. It is idempotent, so a recoverer killed
// while repairing leaves the job to the next one.
func chaosRepair(r shm.Region) (rolledBack bool) {
	if r.Uint32(crActive).Load() == 0 {
		return false
	}
	c := r.Uint64(crBefore).Load()
	r.Uint32(crLo).Store(uint32(c))
	r.Uint32(crHi).Store(uint32(c))
	r.Uint64(crCopy).Store(c)
	chaosCommitted(r, int(r.Uint32(crWorker).Load())).Store(r.Uint64(crBeforeCommitted).Load())
	r.Uint32(crActive).Store(0)
	r.Uint32(crRollbacks).Add(1)
	return true
}

// chaosConsistent checks the record's halves and copy; the caller holds
// the lock.
func chaosConsistent(r shm.Region) error {
	lo, hi, cp, act := r.Uint32(crLo).Load(), r.Uint32(crHi).Load(), r.Uint64(crCopy).Load(), r.Uint32(crActive).Load()
	if lo != hi || uint64(lo) != cp || act != 0 {
		return fmt.Errorf("record inconsistent: halves %d/%d, copy %d, active %d", lo, hi, cp, act)
	}
	return nil
}

// chaosCheck also checks the counter against the sum of the committed
// counts of workers 0..workers-1.
func chaosCheck(r shm.Region, workers int) error {
	if err := chaosConsistent(r); err != nil {
		return err
	}
	var sum uint64
	for w := 0; w < workers; w++ {
		sum += chaosCommitted(r, w).Load()
	}
	if lo := r.Uint32(crLo).Load(); uint64(lo) != sum {
		return fmt.Errorf("counter %d but the workers committed %d increments", lo, sum)
	}
	return nil
}

// peerMxChaosWorker loops lock / update / unlock on mutex args[1] and
// record args[2] of segment args[0] as worker index args[3], with
// Config.Poll args[4], until the stop flag is set. On ErrOwnerDead it
// repairs the record and marks the mutex consistent. It flags, in its
// worker entry, the stretch during which it holds the lock.
func peerMxChaosWorker(args []string) int {
	if len(args) != 5 {
		return ipctest.Fail("mx-chaos-worker: want 5 args, got %q", args)
	}
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer seg.Close()
	poll, err := time.ParseDuration(args[4])
	if err != nil {
		return ipctest.Fail("poll: %v", err)
	}
	m, err := procsync.NewMutex(seg, args[1], &procsync.Config{Spin: 100, Poll: poll})
	if err != nil {
		return ipctest.Fail("new mutex: %v", err)
	}
	r, err := seg.Lookup(args[2])
	if err != nil {
		return ipctest.Fail("lookup: %v", err)
	}
	w, err := strconv.Atoi(args[3])
	if err != nil || chaosRecordSize(w+1) > r.Len {
		return ipctest.Fail("worker index %q: %v", args[3], err)
	}
	holding := r.Uint32(crWorkers + crWorkerSize*w + 8)
	fmt.Println("ready")
	// Bounded: no kill should keep the lock for long. One context for the
	// whole run keeps the loop outside the lock short.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for r.Uint32(crStop).Load() == 0 {
		err := m.Lock(ctx)
		switch {
		case err == nil:
		case errors.Is(err, procsync.ErrOwnerDead):
			r.Uint32(crOwnerDead).Add(1)
			chaosRepair(r)
			if err := m.MarkConsistent(); err != nil {
				return ipctest.Fail("MarkConsistent: %v", err)
			}
		default:
			return ipctest.Fail("worker %d (pid %d): Lock: %v", w, os.Getpid(), err)
		}
		holding.Store(1)
		if chaosConsistent(r) != nil {
			r.Uint32(crViol).Add(1)
		}
		chaosUpdate(r, w)
		holding.Store(0)
		if err := m.Unlock(); err != nil {
			return ipctest.Fail("worker %d: Unlock: %v", w, err)
		}
		r.Uint64(crOps).Add(1)
	}
	fmt.Println("stopped")
	return 0
}

// TestMutexChaosKillHolders runs three worker processes on one mutex and
// SIGKILLs whichever holds it, replacing each victim, until *chaosKills
// victims died holding the lock. After each kill the lock must be taken
// over (and the record repaired) within a bounded time; at the end the
// counter equals the increments the workers committed.
func TestMutexChaosKillHolders(t *testing.T) {
	kills := *chaosKills
	const workers = 3
	const poll = 2 * time.Millisecond
	const recoverBound = 5 * time.Second
	maxAttempts := 10*kills + 50
	capacity := workers + maxAttempts
	budget := max(90*time.Second, time.Duration(kills)*300*time.Millisecond)

	seg := ipctest.CreateSegment(t, chaosRecordSize(capacity)+8192, &shm.Config{Perm: 0o600, Slots: 64, Objects: 8})
	m, err := procsync.NewMutex(seg, "chaos", &procsync.Config{Spin: 100, Poll: poll})
	if err != nil {
		t.Fatal(err)
	}
	r, err := seg.Alloc("chaos-rec", chaosRecordSize(capacity))
	if err != nil {
		t.Fatal(err)
	}

	type worker struct {
		p   *ipctest.Peer
		idx int
	}
	live := map[int]worker{} // by pid
	next := 0
	startWorker := func() {
		idx := next
		next++
		p := ipctest.StartPeer(t, "mx-chaos-worker", seg.Name(), "chaos", "chaos-rec", strconv.Itoa(idx), poll.String())
		live[p.Pid()] = worker{p, idx}
	}
	for i := 0; i < workers; i++ {
		startWorker()
	}

	start := time.Now()
	deadline := start.Add(budget)
	var lats []time.Duration
	hits, attempts := 0, 0
	for hits < kills {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d holders killed in %v (%d kills)", hits, kills, budget, attempts)
		}
		if attempts >= maxAttempts {
			t.Fatalf("%d kills hit a lock holder only %d times", attempts, hits)
		}
		st := m.State()
		if !st.Locked || st.Owner == nil || !st.Owner.Alive {
			time.Sleep(20 * time.Microsecond)
			continue
		}
		w, ok := live[st.Owner.PID]
		if !ok {
			continue
		}
		recBefore := st.Recoveries
		// A random delay moves the kill to a random point of the holder's
		// critical section (or past it).
		if d := rand.IntN(40); d > 0 {
			time.Sleep(time.Duration(d) * time.Microsecond)
		}
		killed := time.Now()
		w.p.Kill()
		select {
		case <-w.p.Done():
		case <-time.After(recoverBound):
			t.Fatalf("worker %d not reaped %v after SIGKILL", w.p.Pid(), recoverBound)
		}
		delete(live, w.p.Pid())
		attempts++
		held := r.Uint32(crWorkers+crWorkerSize*w.idx+8).Load() == 1
		startWorker()
		// Whatever the kill hit, the lock must never stay with a dead owner.
		for {
			st := m.State()
			if !st.Locked || st.Owner.Alive {
				break
			}
			if time.Since(killed) > recoverBound {
				t.Fatalf("kill %d: lock still held by dead pid %d %v after the kill: deadlock", attempts, st.Owner.PID, recoverBound)
			}
			time.Sleep(50 * time.Microsecond)
		}
		if !held {
			continue
		}
		hits++
		for m.State().Recoveries <= recBefore {
			if time.Since(killed) > recoverBound {
				t.Fatalf("kill %d: holder killed but no takeover within %v", attempts, recoverBound)
			}
			time.Sleep(50 * time.Microsecond)
		}
		lats = append(lats, time.Since(killed))
	}
	elapsed := time.Since(start)

	// Stop the workers cleanly: each must get the lock once more and leave.
	r.Uint32(crStop).Store(1)
	for _, w := range live {
		if l := w.p.Line(t, recoverBound); l == "ready" { // not read yet: replacements start unawaited
			w.p.Expect(t, "stopped", recoverBound)
		} else if l != "stopped" {
			t.Fatalf("worker %d said %q, want stopped", w.p.Pid(), l)
		}
		if err := w.p.Wait(t, recoverBound); err != nil {
			t.Fatalf("worker %d: %v", w.p.Pid(), err)
		}
	}
	if err := m.LockTimeout(recoverBound); err != nil {
		t.Fatalf("final Lock: %v", err)
	}
	defer m.Unlock()
	st := m.State()
	if err := chaosCheck(r, next); err != nil {
		t.Fatalf("after %d holder kills: %v", hits, err)
	}
	if v := r.Uint32(crViol).Load(); v != 0 {
		t.Fatalf("workers found the record inconsistent %d times", v)
	}
	if st.Inconsistent || st.NotRecoverable {
		t.Fatalf("final state %+v", st)
	}
	// Every holder killed is taken over exactly once: at least the kills
	// that hit a flagged holder, at most one per kill. A worker may die
	// between the takeover and counting its ErrOwnerDead.
	if od := int(r.Uint32(crOwnerDead).Load()); st.Recoveries < hits || st.Recoveries > attempts || od > st.Recoveries {
		t.Fatalf("%d kills, %d of flagged holders; the mutex counts %d takeovers, the workers saw ErrOwnerDead %d times",
			attempts, hits, st.Recoveries, od)
	}
	slices.Sort(lats)
	q := func(f float64) time.Duration { return lats[int(f*float64(len(lats)-1))] }
	t.Logf("%d kills in %v, %d of them lock holders; %d updates committed, %d rolled back; %d takeovers",
		attempts, elapsed.Round(time.Millisecond), hits, r.Uint32(crLo).Load(), r.Uint32(crRollbacks).Load(), st.Recoveries)
	t.Logf("kill-to-takeover latency (Poll %v): min %v median %v p90 %v p99 %v max %v",
		poll, lats[0], q(0.5), q(0.9), q(0.99), lats[len(lats)-1])
}

// The waiter chaos test SIGKILLs processes while they wait: the test holds
// the lock itself, so every worker that calls Lock (or RLock, behind the
// test's write lock) must wait, and a random delay after it starts waiting
// moves the kill over the steps of the slow path (spinning, reserving,
// sleeping, draining readers). No holder of the write lock is ever killed,
// so nobody may ever get ErrOwnerDead, and the lock must end as a fresh one.

var chaosWaiterKills = flag.Int("chaos.waiterkills", 30, "number of waiters each TestChaosKillWaiters kind kills with SIGKILL")

func init() {
	peers["chaos-waiter"] = peerChaosWaiter
}

// Layout of the waiter chaos test's record.
const (
	cwOwnerDead = 0  // uint32: ErrOwnerDead seen by workers
	cwViol      = 4  // uint32: exclusion violations seen
	cwStop      = 8  // uint32: set by the test to stop the workers
	cwWriter    = 12 // uint32: 1 while a worker holds the write lock (or the mutex)
	cwReaders   = 16 // uint32: workers holding a read lock
	cwOps       = 24 // uint64: operations completed
	cwPhases    = 64 // per worker index, uint32: cwIdle, cwLocking, cwWriting, cwRLocking, cwReading
	cwIdle      = 0
	cwLocking   = 1
	cwWriting   = 2
	cwRLocking  = 3
	cwReading   = 4
)

// peerChaosWaiter loops on lock args[2] of kind args[1] ("rw", "mutex" or
// "sem", a semaphore of one permit)
// in segment args[0], with record args[3], as worker args[4] (Config.Poll
// args[5]), writing its phase into the record, until told to stop.
func peerChaosWaiter(args []string) int {
	if len(args) != 6 {
		return ipctest.Fail("chaos-waiter: want 6 args, got %q", args)
	}
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer seg.Close()
	poll, err := time.ParseDuration(args[5])
	if err != nil {
		return ipctest.Fail("poll: %v", err)
	}
	cfg := &procsync.Config{Spin: 100, Poll: poll}
	m, rw, sem, err := chaosWaiterLock(seg, args[1], cfg)
	if err != nil {
		return ipctest.Fail("new %s: %v", args[1], err)
	}
	r, err := seg.Lookup(args[3])
	if err != nil {
		return ipctest.Fail("lookup: %v", err)
	}
	w, _ := strconv.Atoi(args[4])
	phase := r.Uint32(cwPhases + 4*w)
	fmt.Println("ready")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	check := func(err error) bool {
		if errors.Is(err, procsync.ErrOwnerDead) {
			r.Uint32(cwOwnerDead).Add(1)
			return true
		}
		return err == nil
	}
	for r.Uint32(cwStop).Load() == 0 {
		if rw != nil && rand.IntN(2) == 0 {
			phase.Store(cwRLocking)
			if err := rw.RLock(ctx); !check(err) {
				return ipctest.Fail("worker %d: RLock: %v", w, err)
			}
			phase.Store(cwReading)
			r.Uint32(cwReaders).Add(1)
			if r.Uint32(cwWriter).Load() != 0 {
				r.Uint32(cwViol).Add(1)
			}
			chaosBusy()
			r.Uint32(cwReaders).Add(^uint32(0))
			if err := rw.RUnlock(); err != nil {
				return ipctest.Fail("worker %d: RUnlock: %v", w, err)
			}
		} else {
			phase.Store(cwLocking)
			var err error
			switch {
			case m != nil:
				err = m.Lock(ctx)
			case sem != nil:
				err = sem.Acquire(ctx)
			default:
				err = rw.Lock(ctx)
			}
			if !check(err) {
				return ipctest.Fail("worker %d: Lock: %v", w, err)
			}
			phase.Store(cwWriting)
			if r.Uint32(cwWriter).Swap(1) != 0 || r.Uint32(cwReaders).Load() != 0 {
				r.Uint32(cwViol).Add(1)
			}
			chaosBusy()
			r.Uint32(cwWriter).Store(0)
			switch {
			case m != nil:
				err = m.Unlock()
			case sem != nil:
				err = sem.Release(1)
			default:
				err = rw.Unlock()
			}
			if err != nil {
				return ipctest.Fail("worker %d: Unlock: %v", w, err)
			}
		}
		phase.Store(cwIdle)
		r.Uint64(cwOps).Add(1)
	}
	fmt.Println("stopped")
	return 0
}

// chaosWaiterLock opens the lock of the waiter chaos test: one of the three
// is not nil.
func chaosWaiterLock(seg *shm.Segment, kind string, cfg *procsync.Config) (*procsync.Mutex, *procsync.RWMutex, *procsync.Semaphore, error) {
	switch kind {
	case "mutex":
		m, err := procsync.NewMutex(seg, "lk", cfg)
		return m, nil, nil, err
	case "sem":
		s, err := procsync.NewSemaphore(seg, "lk", 1, 1, cfg)
		return nil, nil, s, err
	}
	rw, err := procsync.NewRWMutex(seg, "lk", cfg)
	return nil, rw, nil, err
}

// TestChaosKillWaiters kills waiting workers of an RWMutex, a Mutex and a
// binary Semaphore
// (see above) and checks that nobody got ErrOwnerDead, that exclusion held,
// that the workers went on after each kill, and that the lock's words are
// a fresh lock's at the end.
func TestChaosKillWaiters(t *testing.T) {
	for _, kind := range []string{"rw", "mutex", "sem"} {
		t.Run(kind, func(t *testing.T) { chaosKillWaiters(t, kind) })
	}
}

func chaosKillWaiters(t *testing.T, kind string) {
	kills := *chaosWaiterKills
	const workers = 4
	const poll = 2 * time.Millisecond
	const bound = 5 * time.Second
	capacity := workers + kills
	seg := ipctest.CreateSegment(t, 1<<16, &shm.Config{Perm: 0o600, Slots: 32, Objects: 8})
	cfg := &procsync.Config{Spin: 100, Poll: poll}
	m, rw, sem, err := chaosWaiterLock(seg, kind, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := seg.Alloc("rec", cwPhases+4*capacity)
	if err != nil {
		t.Fatal(err)
	}
	live := map[int]*ipctest.Peer{} // by worker index
	next := 0
	start := func() {
		p := ipctest.StartPeer(t, "chaos-waiter", seg.Name(), kind, "lk", "rec", strconv.Itoa(next), poll.String())
		p.Expect(t, "ready", bound)
		live[next] = p
		next++
	}
	for i := 0; i < workers; i++ {
		start()
	}
	lock := func(write bool) func() error {
		switch {
		case m != nil:
			if err := m.LockTimeout(bound); err != nil {
				t.Fatalf("test Lock: %v", err)
			}
			return m.Unlock
		case sem != nil:
			if err := sem.AcquireTimeout(bound); err != nil {
				t.Fatalf("test Acquire: %v", err)
			}
			return func() error { return sem.Release(1) }
		case write:
			if err := rw.LockTimeout(bound); err != nil {
				t.Fatalf("test Lock: %v", err)
			}
			return rw.Unlock
		default:
			if err := rw.RLockTimeout(bound); err != nil {
				t.Fatalf("test RLock: %v", err)
			}
			return rw.RUnlock
		}
	}
	waiterKills := map[uint32]int{}
	for k := 0; k < kills; k++ {
		write := rw == nil || k%2 == 0
		unlock := lock(write)
		// Behind the test's lock, Lock callers wait; so do RLock callers
		// when the test holds the write lock.
		victim := -1
		deadline := time.Now().Add(bound)
		for victim < 0 {
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: no worker waiting within %v", k, bound)
			}
			for idx := range live {
				ph := r.Uint32(cwPhases + 4*idx).Load()
				if ph == cwLocking || (write && ph == cwRLocking) {
					victim = idx
					break
				}
			}
		}
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		ph := r.Uint32(cwPhases + 4*victim).Load()
		p := live[victim]
		p.Kill()
		select {
		case <-p.Done():
		case <-time.After(bound):
			t.Fatalf("worker %d not reaped after SIGKILL", p.Pid())
		}
		delete(live, victim)
		waiterKills[ph]++
		if err := unlock(); err != nil {
			t.Fatalf("test unlock: %v", err)
		}
		// The others go on.
		ops := r.Uint64(cwOps).Load()
		start()
		mxEventually(t, bound, "workers going on after a waiter's death", func() bool {
			return r.Uint64(cwOps).Load() >= ops+4
		})
	}
	r.Uint32(cwStop).Store(1)
	for _, p := range live {
		p.Expect(t, "stopped", bound)
		if err := p.Wait(t, bound); err != nil {
			t.Fatalf("worker %d: %v", p.Pid(), err)
		}
	}
	if n := r.Uint32(cwOwnerDead).Load(); n != 0 {
		t.Fatalf("workers got ErrOwnerDead %d times, but no holder was killed", n)
	}
	if v := r.Uint32(cwViol).Load(); v != 0 {
		t.Fatalf("%d exclusion violations", v)
	}
	// Quiet now: one ordinary round trip withdraws what the last dead
	// waiters left, and then the lock must be a fresh one.
	switch {
	case sem != nil:
		wdOK(t, "Acquire", sem.AcquireTimeout(bound))
		wdOK(t, "Release", sem.Release(1))
		wdWords(t, "at the end", sem.Words(2), 1, 0)
	case m != nil:
		wdOK(t, "Lock", m.LockTimeout(bound))
		wdOK(t, "Unlock", m.Unlock())
		if st := m.State(); st.Recoveries != 0 || st.Inconsistent || st.Locked {
			t.Fatalf("state %+v", st)
		}
		wdWords(t, "at the end", m.Words(3), 0, 0, 0)
	default:
		wdOK(t, "RLock", rw.RLockTimeout(bound))
		wdOK(t, "RUnlock", rw.RUnlock())
		wdOK(t, "Lock", rw.LockTimeout(bound))
		wdOK(t, "Unlock", rw.Unlock())
		if st := rw.State(); st.Recoveries != 0 {
			t.Fatalf("state %+v", st)
		}
		wdRWFresh(t, "at the end", rw)
	}
	t.Logf("%d waiters killed (%d in Lock, %d in RLock, %d past it), %d operations, no ErrOwnerDead",
		kills, waiterKills[cwLocking], waiterKills[cwRLocking], kills-waiterKills[cwLocking]-waiterKills[cwRLocking], r.Uint64(cwOps).Load())
}
