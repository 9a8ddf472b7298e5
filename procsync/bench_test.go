package procsync_test

// Benchmarks of the procsync primitives against their obvious alternatives.
// They start real processes (this test binary re-executed as a peer) and use
// real /dev/shm segments; everything they create is removed by the Cleanup
// functions of ipctest. Run them with
//
//	go test -run '^$' -bench . ./procsync/
//
// BENCHMARKS.md holds measured results and their interpretation.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

func init() {
	peers["bench-handoff"] = peerBenchHandoff
	peers["bench-hold"] = peerBenchHold
	peers["bench-wait"] = peerBenchWait
}

// ---------------------------------------------------------------------------
// Uncontended lock/unlock: procsync.Mutex in a /dev/shm segment next to
// sync.Mutex, so that their ratio comes from one run.

func BenchmarkMutexUncontended(b *testing.B) {
	seg := ipctest.CreateSegment(b, 4096, nil)
	m, err := procsync.NewMutex(seg, "m", nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.Lock(ctx); err != nil {
			b.Fatal(err)
		}
		if err := m.Unlock(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSyncMutexUncontended(b *testing.B) {
	var m sync.Mutex
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.Lock()
		m.Unlock() //nolint:staticcheck // an empty critical section is the point
	}
}

// BenchmarkSemaphoreUncontended is Acquire+Release(1) of a binary
// procsync.Semaphore: the cost of using a semaphore as a lock.
func BenchmarkSemaphoreUncontended(b *testing.B) {
	seg := ipctest.CreateSegment(b, 4096, nil)
	s, err := procsync.NewSemaphore(seg, "s", 1, 1, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Acquire(ctx); err != nil {
			b.Fatal(err)
		}
		if err := s.Release(1); err != nil {
			b.Fatal(err)
		}
	}
}

// ---------------------------------------------------------------------------
// Cross-process contended hand-off. P peer processes each loop: claim a
// ticket (a shared atomic counter), and while tickets remain, lock,
// increment a shared counter with a non-atomic read-modify-write, unlock.
// Exactly b.N tickets exist, so one b.N iteration is one lock acquisition
// system-wide and ns/op is wall time / total acquisitions. The counter must
// end at b.N: a lost increment means the lock let two processes in.

// Layout of the "bench" data region.
const (
	benchHTickets  = 0  // uint64: tickets claimed (atomic add)
	benchHCounter  = 64 // uint64: protected counter (load+store under the lock)
	benchHLast     = 72 // uint64: index+1 of the peer that last held the lock
	benchHSwitches = 80 // uint64: acquisitions by another peer than the previous one
	benchHSize     = 128
)

// benchLock is the lock under test as a peer sees it.
type benchLock struct {
	lock, unlock func() error
	close        func()
}

func openBenchLock(seg *shm.Segment, kind, path string) (benchLock, error) {
	ctx := context.Background()
	switch kind {
	case "mutex":
		m, err := procsync.NewMutex(seg, "m", nil)
		if err != nil {
			return benchLock{}, err
		}
		return benchLock{lock: func() error { return m.Lock(ctx) }, unlock: m.Unlock, close: func() {}}, nil
	case "sem":
		s, err := procsync.NewSemaphore(seg, "s", 1, 1, nil)
		if err != nil {
			return benchLock{}, err
		}
		return benchLock{lock: func() error { return s.Acquire(ctx) }, unlock: func() error { return s.Release(1) },
			close: func() {}}, nil
	case "flock":
		// Each peer opens the file itself: flock(2) locks belong to the open
		// file description, so an inherited descriptor would share the lock.
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return benchLock{}, err
		}
		fd := int(f.Fd())
		flock := func(how int) error {
			for {
				if err := unix.Flock(fd, how); err != unix.EINTR {
					return err
				}
			}
		}
		return benchLock{lock: func() error { return flock(unix.LOCK_EX) }, unlock: func() error { return flock(unix.LOCK_UN) },
			close: func() { f.Close() }}, nil
	}
	return benchLock{}, fmt.Errorf("unknown lock kind %q", kind)
}

// peerBenchHandoff args: segment, lock kind (mutex, sem, flock), flock file,
// parties, peer index, tickets. It waits at barrier "start", then takes
// tickets until none are left and prints "done <acquisitions>".
func peerBenchHandoff(args []string) int {
	if len(args) != 6 {
		return ipctest.Fail("bench-handoff: want 6 args, got %q", args)
	}
	parties, _ := strconv.Atoi(args[3])
	idx, _ := strconv.ParseUint(args[4], 10, 64)
	n, _ := strconv.ParseUint(args[5], 10, 64)
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	defer seg.Close()
	r, err := seg.Alloc("bench", benchHSize)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	l, err := openBenchLock(seg, args[1], args[2])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	defer l.close()
	start, err := procsync.NewBarrier(seg, "start", parties+1, nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	if _, err := start.WaitTimeout(time.Minute); err != nil {
		return ipctest.Fail("start barrier: %v", err)
	}
	tickets, ctr, last, sw := r.Uint64(benchHTickets), r.Uint64(benchHCounter), r.Uint64(benchHLast), r.Uint64(benchHSwitches)
	me := idx + 1
	mine := 0
	for tickets.Add(1) <= n {
		if err := l.lock(); err != nil {
			return ipctest.Fail("lock: %v", err)
		}
		ctr.Store(ctr.Load() + 1) // not atomic as a whole: only the lock protects it
		if last.Load() != me {
			last.Store(me)
			sw.Store(sw.Load() + 1)
		}
		if err := l.unlock(); err != nil {
			return ipctest.Fail("unlock: %v", err)
		}
		mine++
	}
	fmt.Printf("done %d\n", mine)
	return 0
}

func BenchmarkHandoffMutex(b *testing.B) {
	for _, p := range []int{2, 4} {
		b.Run(fmt.Sprintf("P=%d", p), func(b *testing.B) { benchHandoff(b, "mutex", p) })
	}
}

func BenchmarkHandoffFlock(b *testing.B) {
	for _, p := range []int{2, 4} {
		b.Run(fmt.Sprintf("P=%d", p), func(b *testing.B) { benchHandoff(b, "flock", p) })
	}
}

// BenchmarkHandoffSemaphore uses a binary procsync.Semaphore as the lock.
func BenchmarkHandoffSemaphore(b *testing.B) {
	b.Run("P=2", func(b *testing.B) { benchHandoff(b, "sem", 2) })
}

func benchHandoff(b *testing.B, kind string, parties int) {
	b.StopTimer()
	seg := ipctest.CreateSegment(b, 64*1024, nil)
	r, err := seg.Alloc("bench", benchHSize)
	if err != nil {
		b.Fatal(err)
	}
	path := ""
	if kind == "flock" {
		path = filepath.Join(b.TempDir(), "lock")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	l, err := openBenchLock(seg, kind, path) // create the lock before the peers start
	if err != nil {
		b.Fatal(err)
	}
	defer l.close()
	start, err := procsync.NewBarrier(seg, "start", parties+1, nil)
	if err != nil {
		b.Fatal(err)
	}
	ps := make([]*ipctest.Peer, parties)
	for i := range ps {
		ps[i] = ipctest.StartPeer(b, "bench-handoff", seg.Name(), kind, path,
			strconv.Itoa(parties), strconv.Itoa(i), strconv.Itoa(b.N))
	}
	// Wait until every peer is at the barrier, so that process start-up is
	// not timed.
	for deadline := time.Now().Add(time.Minute); start.State().Arrived < parties; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("peers did not reach the start barrier: %+v", start.State())
		}
	}
	b.ResetTimer()
	b.StartTimer()
	if _, err := start.WaitTimeout(time.Minute); err != nil {
		b.Fatalf("start barrier: %v", err)
	}
	total, maxShare := 0, 0
	for _, p := range ps {
		l := p.Line(b, 10*time.Minute)
		n, err := strconv.Atoi(strings.TrimPrefix(l, "done "))
		if err != nil {
			b.Fatalf("peer %d said %q", p.Pid(), l)
		}
		total += n
		maxShare = max(maxShare, n)
	}
	b.StopTimer()
	for _, p := range ps {
		if err := p.Wait(b, 10*time.Second); err != nil {
			b.Fatalf("peer %d: %v", p.Pid(), err)
		}
	}
	if got := r.Uint64(benchHCounter).Load(); got != uint64(b.N) || total != b.N {
		b.Fatalf("counter %d, peers counted %d acquisitions, want %d: lost increments", got, total, b.N)
	}
	el := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/el, "handoffs/s")
	// switch% is the share of acquisitions that changed the holding
	// process (the first acquisition counts as one); the rest were the
	// same process re-taking the lock it had just released. maxshare% is
	// the busiest peer's share.
	switches := r.Uint64(benchHSwitches).Load()
	b.ReportMetric(100*float64(switches)/float64(b.N), "switch%")
	b.ReportMetric(100*float64(maxShare)/float64(b.N), "maxshare%")
	if switches > 0 {
		// Wall time per change of holding process: what a real hand-off
		// costs, with the same-process re-takes in between.
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(switches), "ns/switch")
	}
}

// ---------------------------------------------------------------------------
// Dead-owner detection: a peer locks the mutex and is killed with SIGKILL;
// one iteration is the time from the kill to Lock returning ErrOwnerDead.
// Times are CLOCK_MONOTONIC readings, comparable across processes.

func benchMonoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// peerBenchHold locks mutex args[1] of segment args[0], says "locked" and
// waits to be killed.
func peerBenchHold(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	m, err := procsync.NewMutex(seg, args[1], nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	if err := m.Lock(context.Background()); err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("locked")
	time.Sleep(time.Minute)
	return 0
}

// peerBenchWait locks mutex args[1] of segment args[0] with Poll args[2],
// expecting ErrOwnerDead, prints "ownerdead <CLOCK_MONOTONIC ns when Lock
// returned>", repairs and unlocks.
func peerBenchWait(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	defer seg.Close()
	poll, err := time.ParseDuration(args[2])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	cfg := procsync.DefaultConfig()
	cfg.Poll = poll
	m, err := procsync.NewMutex(seg, args[1], cfg)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	err = m.Lock(context.Background())
	t1 := benchMonoNow()
	if !errors.Is(err, procsync.ErrOwnerDead) {
		return ipctest.Fail("Lock: %v, want ErrOwnerDead", err)
	}
	if err := m.MarkConsistent(); err != nil {
		return ipctest.Fail("%v", err)
	}
	if err := m.Unlock(); err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Printf("ownerdead %d\n", t1)
	return 0
}

// Who waits for the dead owner in BenchmarkDetectDeadOwner.
const (
	// The benchmark process calls Lock right after the kill, while the
	// owner may still be dying.
	detectLockAfterKill = "LockAfterKill"
	// The benchmark process already sleeps in Lock when the owner is
	// killed, at a random phase of its poll. It is the owner's parent, so
	// the owner's death also sends it a SIGCHLD.
	detectParentBlocked = "ParentBlocked"
	// As ParentBlocked, but the waiter is another peer process, which gets
	// no signal: only its poll finds the owner dead. The general case.
	detectOtherBlocked = "OtherBlocked"
)

func BenchmarkDetectDeadOwner(b *testing.B) {
	for _, poll := range []time.Duration{10 * time.Millisecond, time.Millisecond} {
		var cfg *procsync.Config // nil: the default, Poll 10 ms
		if poll != procsync.DefaultConfig().Poll {
			cfg = procsync.DefaultConfig()
			cfg.Poll = poll
		}
		for _, mode := range []string{detectLockAfterKill, detectParentBlocked, detectOtherBlocked} {
			b.Run(fmt.Sprintf("Poll=%v/%s", poll, mode), func(b *testing.B) { benchDetect(b, cfg, poll, mode) })
		}
	}
}

func benchDetect(b *testing.B, cfg *procsync.Config, poll time.Duration, mode string) {
	b.StopTimer()
	seg := ipctest.CreateSegment(b, 4096, nil)
	m, err := procsync.NewMutex(seg, "m", cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var sum, worst time.Duration
	for i := 0; i < b.N; i++ {
		p := ipctest.StartPeer(b, "bench-hold", seg.Name(), "m")
		p.Expect(b, "locked", 30*time.Second)
		var res chan error
		var returned atomic.Int64 // benchMonoNow when the parent's blocked Lock returned
		var w *ipctest.Peer
		switch mode {
		case detectParentBlocked:
			res = make(chan error, 1)
			go func() {
				err := m.Lock(ctx)
				returned.Store(benchMonoNow())
				res <- err
			}()
		case detectOtherBlocked:
			w = ipctest.StartPeer(b, "bench-wait", seg.Name(), "m", poll.String())
		}
		if mode != detectLockAfterKill {
			for deadline := time.Now().Add(30 * time.Second); m.State().Waiters == 0; time.Sleep(100 * time.Microsecond) {
				if time.Now().After(deadline) {
					b.Fatal("no waiter on the mutex after 30 s")
				}
			}
			// Kill at a random phase of the waiter's poll. Busy-wait:
			// time.Sleep rounds to whole milliseconds here.
			for t := time.Now().Add(time.Duration(rand.Int64N(int64(poll)))); time.Now().Before(t); {
			}
		}
		b.StartTimer()
		t0 := benchMonoNow()
		p.Kill()
		var t1 int64
		switch mode {
		case detectLockAfterKill:
			err = m.Lock(ctx)
			t1 = benchMonoNow()
		case detectParentBlocked:
			err = <-res
			t1 = returned.Load()
		case detectOtherBlocked:
			l := w.Line(b, 30*time.Second)
			t1, err = strconv.ParseInt(strings.TrimPrefix(l, "ownerdead "), 10, 64)
			if err != nil {
				b.Fatalf("waiter said %q", l)
			}
			err = procsync.ErrOwnerDead // the waiter checked it
		}
		b.StopTimer()
		if !errors.Is(err, procsync.ErrOwnerDead) {
			b.Fatalf("Lock after the owner's death: %v", err)
		}
		d := time.Duration(t1 - t0)
		sum += d
		worst = max(worst, d)
		if mode == detectOtherBlocked {
			if err := w.Wait(b, 30*time.Second); err != nil {
				b.Fatalf("waiter: %v", err)
			}
		} else {
			if err := m.MarkConsistent(); err != nil {
				b.Fatal(err)
			}
			if err := m.Unlock(); err != nil {
				b.Fatal(err)
			}
		}
		<-p.Done()
	}
	b.ReportMetric(float64(sum.Microseconds())/1e3/float64(b.N), "detect-ms")
	b.ReportMetric(float64(worst.Microseconds())/1e3, "max-detect-ms")
}

// ---------------------------------------------------------------------------
// Uncontended RLock+RUnlock of an RWMutex after it recovered from a dead
// process, next to a fresh lock in the same run: recovery must leave
// nothing behind that slows the fast path.

func BenchmarkRWMutexRLockAfterRecovery(b *testing.B) {
	seg := ipctest.CreateSegment(b, 1<<16, nil)
	cases := []struct {
		name    string
		recover func(b *testing.B, rw *procsync.RWMutex, obj string)
	}{
		{"fresh", func(*testing.B, *procsync.RWMutex, string) {}},
		// A writer killed while it waits for a reader to leave; the reader
		// leaves, reads again, and a writer takes and leaves the lock.
		{"waiting-writer-killed", func(b *testing.B, rw *procsync.RWMutex, obj string) {
			benchOK(b, rw.RLockTimeout(time.Second))
			wdPark(b, seg, "rw-lock", obj, procsync.StepRWDrain)
			benchOK(b, rw.RUnlock())
			benchOK(b, rw.RLockTimeout(time.Second))
			benchOK(b, rw.RUnlock())
			benchOK(b, rw.LockTimeout(time.Second))
			benchOK(b, rw.Unlock())
		}},
		// A writer killed holding the lock: ErrOwnerDead, MarkConsistent,
		// Unlock.
		{"holding-writer-killed", func(b *testing.B, rw *procsync.RWMutex, obj string) {
			wdPark(b, seg, "rw-lock", obj, "after")
			if err := rw.LockTimeout(5 * time.Second); !errors.Is(err, procsync.ErrOwnerDead) {
				b.Fatalf("Lock after the holder's death: %v", err)
			}
			benchOK(b, rw.MarkConsistent())
			benchOK(b, rw.Unlock())
		}},
	}
	for i, c := range cases {
		obj := "rw" + strconv.Itoa(i)
		rw, err := procsync.NewRWMutex(seg, obj, nil)
		benchOK(b, err)
		c.recover(b, rw, obj)
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := rw.RLock(ctx); err != nil {
					b.Fatal(err)
				}
				if err := rw.RUnlock(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchOK(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRWMutexUncontended is Lock+Unlock and RLock+RUnlock of a
// procsync.RWMutex in one goroutine.
func BenchmarkRWMutexUncontended(b *testing.B) {
	seg := ipctest.CreateSegment(b, 1<<16, nil)
	rw, err := procsync.NewRWMutex(seg, "rw", nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("Lock", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := rw.Lock(ctx); err != nil {
				b.Fatal(err)
			}
			if err := rw.Unlock(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("RLock", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := rw.RLock(ctx); err != nil {
				b.Fatal(err)
			}
			if err := rw.RUnlock(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
