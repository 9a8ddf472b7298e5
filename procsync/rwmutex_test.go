package procsync_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

// Tests of the robust, writer-preferring RWMutex across processes. As for
// Mutex, the invariants are checked in shared memory: a writer never finds
// anyone inside, a reader never finds a writer inside nor a torn record.

func init() {
	peers["rw-work"] = peerRwWork
	peers["rw-reader-meet"] = peerRwReaderMeet
}

// Layout of the RWMutex tests' data region.
const (
	rwGo      = 0  // uint32: set by the test to start everyone at once
	rwWInside = 4  // uint32: 1 while a writer is inside
	rwRInside = 8  // uint32: readers inside
	rwViol    = 12 // uint32: exclusion violations seen
	rwTorn    = 16 // uint32: torn records seen by readers
	rwReads   = 20 // uint32: read sections completed
	rwCur     = 24 // uint32: readers holding the lock in the meeting test
	rwMaxIn   = 28 // uint32: most readers seen inside at once
	rwRelease = 32 // uint32: set by the test to let the meeting readers go
	rwWords   = 64 // rwNWords uint64 words a writer sets to the same value
	rwNWords  = 8
	rwDataLen = rwWords + 8*rwNWords
)

// rwWrite takes the write lock and sets every word of the record to one
// more than the first, with a pause in the middle, checking that nobody
// else is inside.
func rwWrite(ctx context.Context, rw *procsync.RWMutex, r shm.Region, i int) error {
	if err := rw.Lock(ctx); err != nil {
		return fmt.Errorf("lock %d: %w", i, err)
	}
	viol := r.Uint32(rwViol)
	if r.Uint32(rwWInside).Swap(1) != 0 || r.Uint32(rwRInside).Load() != 0 {
		viol.Add(1)
	}
	v := r.Uint64(rwWords).Load()
	for k := 0; k < rwNWords; k++ {
		r.Uint64(rwWords + 8*k).Store(v + 1)
		if k == rwNWords/2 {
			mxBusy(i)
		}
	}
	if r.Uint32(rwRInside).Load() != 0 {
		viol.Add(1)
	}
	if r.Uint32(rwWInside).Swap(0) != 1 {
		viol.Add(1)
	}
	if err := rw.Unlock(); err != nil {
		return fmt.Errorf("unlock %d: %w", i, err)
	}
	mxBusy(i + 1) // work outside the lock: contenders also meet on a free lock
	return nil
}

// rwRead takes a read lock and reads the record, with a pause in the
// middle, counting a torn record and a writer inside as violations.
func rwRead(ctx context.Context, rw *procsync.RWMutex, r shm.Region, i int) error {
	if err := rw.RLock(ctx); err != nil {
		return fmt.Errorf("rlock %d: %w", i, err)
	}
	in := r.Uint32(rwRInside).Add(1)
	for mx := r.Uint32(rwMaxIn); ; {
		old := mx.Load()
		if in <= old || mx.CompareAndSwap(old, in) {
			break
		}
	}
	if r.Uint32(rwWInside).Load() != 0 {
		r.Uint32(rwViol).Add(1)
	}
	v := r.Uint64(rwWords).Load()
	torn := false
	for k := 1; k < rwNWords; k++ {
		if k == rwNWords/2 {
			mxBusy(i)
		}
		if r.Uint64(rwWords+8*k).Load() != v {
			torn = true
		}
	}
	if torn {
		r.Uint32(rwTorn).Add(1)
	}
	r.Uint32(rwReads).Add(1)
	r.Uint32(rwRInside).Add(^uint32(0))
	if err := rw.RUnlock(); err != nil {
		return fmt.Errorf("runlock %d: %w", i, err)
	}
	mxBusy(i + 1)
	return nil
}

// rwOpen opens segment name, RWMutex obj and region rec, for peers.
func rwOpen(name, obj, rec string) (*shm.Segment, *procsync.RWMutex, shm.Region, error) {
	seg, err := shm.Open(name)
	if err != nil {
		return nil, nil, shm.Region{}, err
	}
	rw, err := procsync.NewRWMutex(seg, obj, nil)
	if err != nil {
		seg.Close()
		return nil, nil, shm.Region{}, err
	}
	r, err := seg.Lookup(rec)
	if err != nil {
		seg.Close()
		return nil, nil, shm.Region{}, err
	}
	return seg, rw, r, nil
}

// peerRwWork runs args[3] ("w" or "r") sections args[4] times on RWMutex
// args[1] and region args[2] of segment args[0], once the go flag is set.
func peerRwWork(args []string) int {
	seg, rw, r, err := rwOpen(args[0], args[1], args[2])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	defer seg.Close()
	iters, err := strconv.Atoi(args[4])
	if err != nil {
		return ipctest.Fail("iters: %v", err)
	}
	fmt.Println("ready")
	deadline := time.Now().Add(mxWait)
	for r.Uint32(rwGo).Load() == 0 {
		if time.Now().After(deadline) {
			return ipctest.Fail("no go signal")
		}
		time.Sleep(100 * time.Microsecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < iters; i++ {
		f := rwRead
		if args[3] == "w" {
			f = rwWrite
		}
		if err := f(ctx, rw, r, i); err != nil {
			return ipctest.Fail("%s: %v", args[3], err)
		}
	}
	fmt.Println("done")
	return 0
}

// peerRwReaderMeet takes a read lock on RWMutex args[1] (segment args[0],
// region args[2]), counts itself in, and waits until args[3] readers are in
// at once; it leaves when the test sets the release flag.
func peerRwReaderMeet(args []string) int {
	seg, rw, r, err := rwOpen(args[0], args[1], args[2])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	defer seg.Close()
	n, err := strconv.Atoi(args[3])
	if err != nil {
		return ipctest.Fail("n: %v", err)
	}
	if err := rw.RLockTimeout(mxWait); err != nil {
		return ipctest.Fail("RLock: %v", err)
	}
	cur := r.Uint32(rwCur)
	cur.Add(1)
	fmt.Println("holding")
	deadline := time.Now().Add(mxWait)
	for int(cur.Load()) < n {
		if time.Now().After(deadline) {
			return ipctest.Fail("only %d readers inside at once, want %d", cur.Load(), n)
		}
		time.Sleep(100 * time.Microsecond)
	}
	fmt.Printf("saw %d\n", n)
	for r.Uint32(rwRelease).Load() == 0 {
		if time.Now().After(deadline) {
			return ipctest.Fail("not released")
		}
		time.Sleep(100 * time.Microsecond)
	}
	cur.Add(^uint32(0))
	if err := rw.RUnlock(); err != nil {
		return ipctest.Fail("RUnlock: %v", err)
	}
	fmt.Println("released")
	return 0
}

// rwSetup creates a segment with RWMutex obj and a data region.
func rwSetup(t *testing.T, obj string) (*shm.Segment, *procsync.RWMutex, shm.Region) {
	t.Helper()
	seg := ipctest.CreateSegment(t, 1<<16, nil)
	rw, err := procsync.NewRWMutex(seg, obj, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := seg.Alloc(obj+"-data", rwDataLen)
	if err != nil {
		t.Fatal(err)
	}
	return seg, rw, r
}

// rwReaderPIDs returns the live and the dead read holds by PID.
func rwReaderPIDs(st procsync.RWMutexState) (live, dead map[int]int) {
	live, dead = map[int]int{}, map[int]int{}
	for _, h := range st.Readers {
		if h.Alive {
			live[h.PID] += h.Count
		} else {
			dead[h.PID] += h.Count
		}
	}
	return live, dead
}

// TestRWMutexReadersShareAcrossProcesses: three processes hold read locks
// at the same time, proven by a counter in shared memory that each
// increments while holding and that reaches 3 before anyone leaves. While
// they hold, a writer cannot get in; afterwards it can.
func TestRWMutexReadersShareAcrossProcesses(t *testing.T) {
	const n = 3
	seg, rw, r := rwSetup(t, "share")
	var ps []*ipctest.Peer
	for i := 0; i < n; i++ {
		ps = append(ps, ipctest.StartPeer(t, "rw-reader-meet", seg.Name(), "share", "share-data", strconv.Itoa(n)))
	}
	for _, p := range ps {
		p.Expect(t, "holding", mxWait)
	}
	for _, p := range ps {
		p.Expect(t, "saw 3", mxWait)
	}
	if c := r.Uint32(rwCur).Load(); c != n {
		t.Fatalf("%d readers inside, want %d", c, n)
	}
	st := rw.State()
	live, dead := rwReaderPIDs(st)
	if st.WriteLocked || len(dead) != 0 || len(live) != n {
		t.Fatalf("state %+v, want %d live readers", st, n)
	}
	for _, p := range ps {
		if live[p.Pid()] != 1 {
			t.Fatalf("state %+v does not list reader %d once", st, p.Pid())
		}
	}
	mxWantErr(t, rw.TryLock(), procsync.ErrWouldBlock, "trylock", "share")
	mxWantErr(t, rw.LockTimeout(30*time.Millisecond), procsync.ErrTimeout, "lock", "share")
	// The writer gave up: readers still get in.
	if err := rw.TryRLock(); err != nil {
		t.Fatalf("TryRLock among readers: %v", err)
	}
	if err := rw.RUnlock(); err != nil {
		t.Fatal(err)
	}
	r.Uint32(rwRelease).Store(1)
	for _, p := range ps {
		p.Expect(t, "released", mxWait)
		if err := p.Wait(t, mxWait); err != nil {
			t.Fatalf("reader %d: %v", p.Pid(), err)
		}
	}
	if err := rw.LockTimeout(mxWait); err != nil {
		t.Fatalf("Lock after the readers left: %v", err)
	}
	if st := rw.State(); !st.WriteLocked || len(st.Readers) != 0 || st.Writer.PID != os.Getpid() {
		t.Fatalf("state %+v, want write-locked by us with no reader", st)
	}
	if err := rw.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestRWMutexWriterExclusion: writer and reader processes and goroutines
// work on a multi-word record: no writer ever finds anyone inside, no
// reader finds a writer inside or a torn record, and no write is lost.
func TestRWMutexWriterExclusion(t *testing.T) {
	const wIters, rIters = 2000, 4000
	seg, rw, r := rwSetup(t, "excl")
	var ps []*ipctest.Peer
	for _, role := range []string{"w", "w", "r", "r"} {
		iters := wIters
		if role == "r" {
			iters = rIters
		}
		p := ipctest.StartPeer(t, "rw-work", seg.Name(), "excl", "excl-data", role, strconv.Itoa(iters))
		p.Expect(t, "ready", mxWait)
		ps = append(ps, p)
	}
	g := mxNewGoroutines(t, 30*time.Second)
	loop := func(f func(context.Context, *procsync.RWMutex, shm.Region, int) error, iters int) func(context.Context) error {
		return func(ctx context.Context) error {
			for i := 0; i < iters; i++ {
				if err := f(ctx, rw, r, i); err != nil {
					return err
				}
			}
			return nil
		}
	}
	start := time.Now()
	r.Uint32(rwGo).Store(1)
	chs := []<-chan error{g.goErr(loop(rwWrite, wIters)), g.goErr(loop(rwRead, rIters))}
	for _, ch := range chs {
		if err := mxWaitErr(t, ch, 30*time.Second, "goroutine"); err != nil {
			t.Error(err)
		}
	}
	for _, p := range ps {
		p.Expect(t, "done", 30*time.Second)
		if err := p.Wait(t, mxWait); err != nil {
			t.Errorf("peer %d: %v", p.Pid(), err)
		}
	}
	t.Logf("%d writes, %d reads in %v; at most %d readers inside at once",
		3*wIters, r.Uint32(rwReads).Load(), time.Since(start), r.Uint32(rwMaxIn).Load())
	if v := r.Uint32(rwViol).Load(); v != 0 {
		t.Errorf("%d exclusion violations", v)
	}
	if v := r.Uint32(rwTorn).Load(); v != 0 {
		t.Errorf("readers saw %d torn records", v)
	}
	if n := r.Uint32(rwReads).Load(); n != 3*rIters {
		t.Errorf("%d reads, want %d", n, 3*rIters)
	}
	for k := 0; k < rwNWords; k++ {
		if v := r.Uint64(rwWords + 8*k).Load(); v != 3*wIters {
			t.Errorf("word %d = %d, want %d", k, v, 3*wIters)
		}
	}
	if st := rw.State(); st.WriteLocked || len(st.Readers) != 0 || st.Inconsistent {
		t.Errorf("final state %+v", st)
	}
}

// TestRWMutexWriterPreference: while a writer waits for a reader to leave,
// new readers (in any process) are kept out; the writer gets the lock as
// soon as the reader leaves.
func TestRWMutexWriterPreference(t *testing.T) {
	seg, rw, _ := rwSetup(t, "pref")
	reader := mxStartCtl(t, seg, "rw", "pref", 10*time.Millisecond, nil)
	other := mxStartCtl(t, seg, "rw", "pref", 10*time.Millisecond, nil)
	reader.want(t, "rlock", "ok")
	g := mxNewGoroutines(t, 15*time.Second)
	writer := g.goErr(func(ctx context.Context) error { return rw.Lock(ctx) })
	mxEventually(t, mxWait, "writer waiting", func() bool {
		st := rw.State()
		return st.WriteLocked && st.Writer.Slot == seg.Slot() && st.Waiters == 1
	})
	other.want(t, "tryrlock", "wouldblock")
	other.want(t, "rlockt 100ms", "timeout") // longer than Poll: the writer is alive
	reader.want(t, "tryrlock", "wouldblock") // even a process that already reads
	seg2, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer seg2.Close()
	rw2, err := procsync.NewRWMutex(seg2, "pref", nil)
	if err != nil {
		t.Fatal(err)
	}
	mxWantErr(t, rw2.TryRLock(), procsync.ErrWouldBlock, "tryrlock", "pref")
	select {
	case err := <-writer:
		t.Fatalf("writer got in while a reader holds the lock: %v", err)
	default:
	}
	start := time.Now()
	reader.want(t, "runlock", "ok")
	if err := mxWaitErr(t, writer, mxWait, "writer"); err != nil {
		t.Fatalf("writer: %v", err)
	}
	t.Logf("writer in %v after the reader left", time.Since(start))
	other.want(t, "tryrlock", "wouldblock")
	if err := rw.Unlock(); err != nil {
		t.Fatal(err)
	}
	other.want(t, "tryrlock", "ok")
	other.want(t, "runlock", "ok")
}

// TestRWMutexDeadReaderReclaimed: the read locks of processes killed -9
// are reclaimed by a waiting writer within a bounded time, and State stops
// listing them; a live reader still keeps the writer out until it leaves.
func TestRWMutexDeadReaderReclaimed(t *testing.T) {
	seg, rw, _ := rwSetup(t, "dr")
	inspector := mxStartCtl(t, seg, "rw", "dr", 10*time.Millisecond, nil)
	r1 := mxStartCtl(t, seg, "rw", "dr", 10*time.Millisecond, nil)
	r1.want(t, "rlock", "ok")
	r1.want(t, "rlock", "ok") // two read locks in one process
	r1.kill(t)
	var st procsync.RWMutexState
	inspector.inspect(t, &st)
	if live, dead := rwReaderPIDs(st); len(live) != 0 || dead[r1.Pid()] != 2 {
		t.Fatalf("inspected %+v, want the dead reader %d with 2 read locks", st, r1.Pid())
	}
	start := time.Now()
	if err := rw.LockTimeout(mxDeadBound); err != nil {
		t.Fatalf("Lock with only a dead reader: %v", err)
	}
	t.Logf("dead reader's read locks reclaimed after %v", time.Since(start))
	if st := rw.State(); len(st.Readers) != 0 || st.Inconsistent {
		t.Fatalf("state %+v, want no reader listed and consistent", st)
	}
	if err := rw.Unlock(); err != nil {
		t.Fatal(err)
	}

	// A live reader and a dead one: the writer waits for the live one only.
	live := mxStartCtl(t, seg, "rw", "dr", 10*time.Millisecond, nil)
	r2 := mxStartCtl(t, seg, "rw", "dr", 10*time.Millisecond, nil)
	live.want(t, "rlock", "ok")
	r2.want(t, "rlock", "ok")
	r2.kill(t)
	g := mxNewGoroutines(t, 15*time.Second)
	writer := g.goErr(func(ctx context.Context) error { return rw.Lock(ctx) })
	mxEventually(t, mxDeadBound, "dead reader reclaimed by the waiting writer", func() bool {
		_, dead := rwReaderPIDs(rw.State())
		return len(dead) == 0
	})
	if st := rw.State(); len(st.Readers) != 1 || st.Readers[0].PID != live.Pid() || !st.Readers[0].Alive {
		t.Fatalf("state %+v, want only the live reader %d", st, live.Pid())
	}
	select {
	case err := <-writer:
		t.Fatalf("writer got in while a live reader holds the lock: %v", err)
	default:
	}
	live.want(t, "runlock", "ok")
	if err := mxWaitErr(t, writer, mxWait, "writer"); err != nil {
		t.Fatalf("writer: %v", err)
	}
	if st := rw.State(); len(st.Readers) != 0 || st.Writer.Slot != seg.Slot() {
		t.Fatalf("state %+v", st)
	}
	if err := rw.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestRWMutexDeadWriter: a writer killed -9 is reported dead by a third
// process; the next Lock gets ErrOwnerDead with the write lock held, and
// MarkConsistent restores normal service.
func TestRWMutexDeadWriter(t *testing.T) {
	seg, rw, _ := rwSetup(t, "dw")
	inspector := mxStartCtl(t, seg, "rw", "dw", 10*time.Millisecond, nil)
	other := mxStartCtl(t, seg, "rw", "dw", 10*time.Millisecond, nil)
	w := mxStartCtl(t, seg, "rw", "dw", 10*time.Millisecond, nil)
	w.want(t, "lock", "ok")
	var st procsync.RWMutexState
	inspector.inspect(t, &st)
	if !st.WriteLocked || st.Writer == nil || st.Writer.PID != w.Pid() || !st.Writer.Alive {
		t.Fatalf("inspected %+v, want write-locked by live %d", st, w.Pid())
	}
	w.kill(t)
	inspector.inspect(t, &st)
	if !st.WriteLocked || st.Writer == nil || st.Writer.PID != w.Pid() || st.Writer.Alive {
		t.Fatalf("inspected %+v, want write-locked by dead %d", st, w.Pid())
	}
	start := time.Now()
	err := rw.LockTimeout(mxDeadBound)
	t.Logf("dead writer taken over after %v", time.Since(start))
	mxWantErr(t, err, procsync.ErrOwnerDead, "lock", "dw")
	st = rw.State()
	if !st.WriteLocked || st.Writer.Slot != seg.Slot() || st.Writer.PID != os.Getpid() || !st.Inconsistent || st.Recoveries != 1 {
		t.Fatalf("state %+v, want write-locked by us, inconsistent, 1 recovery", st)
	}
	other.want(t, "tryrlock", "wouldblock")
	other.want(t, "trylock", "wouldblock")
	other.want(t, "mark", "notowner")
	if err := rw.MarkConsistent(); err != nil {
		t.Fatal(err)
	}
	if err := rw.Unlock(); err != nil {
		t.Fatal(err)
	}
	other.want(t, "rlock", "ok")
	other.want(t, "runlock", "ok")
	other.want(t, "lock", "ok")
	other.want(t, "unlock", "ok")
	if err := rw.LockTimeout(time.Second); err != nil {
		t.Fatalf("Lock after recovery: %v", err)
	}
	if err := rw.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestRWMutexRLockWhileInconsistent: after a writer died, RLock returns
// ErrOwnerDead with the read lock held, in every process, until a writer
// marks the data consistent; a reader cannot mark it.
func TestRWMutexRLockWhileInconsistent(t *testing.T) {
	seg, rw, _ := rwSetup(t, "ri")
	other := mxStartCtl(t, seg, "rw", "ri", 10*time.Millisecond, nil)
	w := mxStartCtl(t, seg, "rw", "ri", 10*time.Millisecond, nil)
	w.want(t, "lock", "ok")
	w.kill(t)
	start := time.Now()
	err := rw.RLockTimeout(mxDeadBound)
	t.Logf("reader cleared the dead writer after %v", time.Since(start))
	mxWantErr(t, err, procsync.ErrOwnerDead, "rlock", "ri")
	st := rw.State()
	if st.WriteLocked || !st.Inconsistent || st.Recoveries != 1 {
		t.Fatalf("state %+v, want read-locked, inconsistent, 1 recovery", st)
	}
	if live, _ := rwReaderPIDs(st); live[os.Getpid()] != 1 {
		t.Fatalf("state %+v, want our read lock listed", st)
	}
	other.want(t, "rlock", "ownerdead")
	other.want(t, "tryrlock", "ownerdead")
	if live, _ := rwReaderPIDs(rw.State()); live[other.Pid()] != 2 {
		t.Fatalf("state %+v, want the other process's 2 read locks", rw.State())
	}
	mxWantErr(t, rw.MarkConsistent(), procsync.ErrNotOwner, "markconsistent", "ri")
	mxWantErr(t, rw.TryLock(), procsync.ErrWouldBlock, "trylock", "ri")
	if err := rw.RUnlock(); err != nil {
		t.Fatal(err)
	}
	other.want(t, "runlock", "ok")
	other.want(t, "runlock", "ok")
	other.want(t, "runlock", "notowner")
	err = rw.LockTimeout(time.Second)
	mxWantErr(t, err, procsync.ErrOwnerDead, "lock", "ri") // still to be repaired
	if err := rw.MarkConsistent(); err != nil {
		t.Fatal(err)
	}
	if err := rw.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := rw.RLockTimeout(time.Second); err != nil {
		t.Fatalf("RLock after MarkConsistent: %v", err)
	}
	if err := rw.RUnlock(); err != nil {
		t.Fatal(err)
	}
	other.want(t, "rlock", "ok")
	other.want(t, "runlock", "ok")
	if st := rw.State(); st.Inconsistent || st.Recoveries != 1 || len(st.Readers) != 0 {
		t.Fatalf("final state %+v", st)
	}
}

// TestRWMutexNotRecoverable: a writer that unlocks after ErrOwnerDead
// without MarkConsistent makes the lock unusable for every mode and every
// process, and wakes those that wait.
func TestRWMutexNotRecoverable(t *testing.T) {
	seg, rw, _ := rwSetup(t, "nr")
	other := mxStartCtl(t, seg, "rw", "nr", 10*time.Millisecond, nil)
	w := mxStartCtl(t, seg, "rw", "nr", 10*time.Millisecond, nil)
	w.want(t, "lock", "ok")
	w.kill(t)
	mxWantErr(t, rw.LockTimeout(mxDeadBound), procsync.ErrOwnerDead, "lock", "nr")
	other.send(t, "rlock")
	mxEventually(t, mxWait, "reader waiting", func() bool { return rw.State().Waiters == 1 })
	if err := rw.Unlock(); err != nil {
		t.Fatalf("Unlock without MarkConsistent: %v", err)
	}
	if got := other.Line(t, mxWait); got != "notrecoverable" {
		t.Fatalf("waiting reader got %q, want notrecoverable", got)
	}
	if st := rw.State(); !st.NotRecoverable || st.WriteLocked {
		t.Fatalf("state %+v", st)
	}
	mxWantErr(t, rw.Lock(context.Background()), procsync.ErrNotRecoverable, "lock", "nr")
	mxWantErr(t, rw.LockTimeout(time.Second), procsync.ErrNotRecoverable, "lock", "nr")
	mxWantErr(t, rw.TryLock(), procsync.ErrNotRecoverable, "trylock", "nr")
	mxWantErr(t, rw.RLock(context.Background()), procsync.ErrNotRecoverable, "rlock", "nr")
	mxWantErr(t, rw.RLockTimeout(time.Second), procsync.ErrNotRecoverable, "rlock", "nr")
	mxWantErr(t, rw.TryRLock(), procsync.ErrNotRecoverable, "tryrlock", "nr")
	mxWantErr(t, rw.Unlock(), procsync.ErrNotRecoverable, "unlock", "nr")
	for _, cmd := range []string{"lock", "trylock", "rlock", "tryrlock", "lockt 1s", "rlockt 1s"} {
		other.want(t, cmd, "notrecoverable")
	}
}

// TestRWMutexTimeoutsAndCancel: LockTimeout and RLockTimeout give ErrTimeout
// (a net.Error timeout matching context.DeadlineExceeded); a cancelled
// context ends a blocked Lock or RLock promptly with context.Canceled; a
// writer that gives up while draining readers lets readers in again.
func TestRWMutexTimeoutsAndCancel(t *testing.T) {
	seg, rw, _ := rwSetup(t, "to")
	w := mxStartCtl(t, seg, "rw", "to", 10*time.Millisecond, nil)
	w.want(t, "lock", "ok")
	const d = 50 * time.Millisecond
	for _, c := range []struct {
		op string
		f  func(time.Duration) error
	}{{"lock", rw.LockTimeout}, {"rlock", rw.RLockTimeout}} {
		start := time.Now()
		err := c.f(d)
		el := time.Since(start)
		mxWantErr(t, err, procsync.ErrTimeout, c.op, "to")
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v is not a timeout net.Error matching DeadlineExceeded", c.op, err)
		}
		if el < d || el > d+mxDeadBound {
			t.Errorf("%s: timeout %v took %v", c.op, d, el)
		}
	}
	cancelled := func(op string, f func(context.Context) error) {
		t.Helper()
		g := mxNewGoroutines(t, mxWait)
		ctx, cancel := context.WithCancel(g.ctx)
		ch := g.goErr(func(context.Context) error { return f(ctx) })
		mxEventually(t, mxWait, op+" waiting", func() bool { return rw.State().Waiters == 1 })
		time.Sleep(5 * time.Millisecond)
		start := time.Now()
		cancel()
		err := mxWaitErr(t, ch, mxWait, "cancelled "+op)
		el := time.Since(start)
		t.Logf("cancelled %s returned after %v", op, el)
		mxWantErr(t, err, context.Canceled, op, "to")
		if el > 500*time.Millisecond {
			t.Errorf("cancelled %s took %v", op, el)
		}
		mxEventually(t, mxWait, "no waiter left", func() bool { return rw.State().Waiters == 0 })
	}
	cancelled("lock", rw.Lock)
	cancelled("rlock", rw.RLock)
	if st := rw.State(); st.Writer == nil || st.Writer.PID != w.Pid() {
		t.Fatalf("state %+v, want still write-locked by %d", st, w.Pid())
	}
	w.want(t, "unlock", "ok")

	// A writer draining readers holds the writer word; giving up must
	// release it, or readers would stay locked out.
	w.want(t, "rlock", "ok")
	other := mxStartCtl(t, seg, "rw", "to", 10*time.Millisecond, nil)
	cancelled("lock", rw.Lock)
	if st := rw.State(); st.WriteLocked {
		t.Fatalf("state %+v: a cancelled writer kept the writer word", st)
	}
	other.want(t, "tryrlock", "ok")
	mxWantErr(t, rw.LockTimeout(d), procsync.ErrTimeout, "lock", "to")
	if st := rw.State(); st.WriteLocked {
		t.Fatalf("state %+v: a timed-out writer kept the writer word", st)
	}
	other.want(t, "tryrlock", "ok")
	other.want(t, "runlock", "ok")
	other.want(t, "runlock", "ok")
	w.want(t, "runlock", "ok")
	if err := rw.LockTimeout(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := rw.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestRWMutexOwnershipErrors: RUnlock without a read lock, Unlock without
// the write lock (also when another process holds it) and MarkConsistent
// by a non-writer are ErrNotOwner; read locks are counted per process;
// a closed segment gives net.ErrClosed, also to calls blocked at Close.
func TestRWMutexOwnershipErrors(t *testing.T) {
	seg, rw, _ := rwSetup(t, "own")
	mxWantErr(t, rw.RUnlock(), procsync.ErrNotOwner, "runlock", "own")
	mxWantErr(t, rw.Unlock(), procsync.ErrNotOwner, "unlock", "own")
	mxWantErr(t, rw.MarkConsistent(), procsync.ErrNotOwner, "markconsistent", "own")
	p := mxStartCtl(t, seg, "rw", "own", 10*time.Millisecond, nil)
	p.want(t, "runlock", "notowner")
	p.want(t, "lock", "ok")
	mxWantErr(t, rw.Unlock(), procsync.ErrNotOwner, "unlock", "own")
	mxWantErr(t, rw.RUnlock(), procsync.ErrNotOwner, "runlock", "own")
	p.want(t, "runlock", "notowner") // holds the write lock, not a read lock
	if st := rw.State(); st.Writer == nil || st.Writer.PID != p.Pid() {
		t.Fatalf("state %+v, want still write-locked by %d", st, p.Pid())
	}
	p.want(t, "unlock", "ok")
	p.want(t, "unlock", "notowner")
	p.want(t, "rlock", "ok")
	mxWantErr(t, rw.RUnlock(), procsync.ErrNotOwner, "runlock", "own") // the read lock is the peer's
	for i := 0; i < 2; i++ {
		if err := rw.RLockTimeout(time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if live, _ := rwReaderPIDs(rw.State()); live[os.Getpid()] != 2 || live[p.Pid()] != 1 {
		t.Fatalf("readers %+v", rw.State().Readers)
	}
	for i := 0; i < 2; i++ {
		if err := rw.RUnlock(); err != nil {
			t.Fatal(err)
		}
	}
	mxWantErr(t, rw.RUnlock(), procsync.ErrNotOwner, "runlock", "own")
	p.want(t, "runlock", "ok")

	// Closed handles, with a writer and a reader blocked at Close.
	seg2, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	rw2, err := procsync.NewRWMutex(seg2, "own", nil)
	if err != nil {
		t.Fatal(err)
	}
	seg3, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	rw3, err := procsync.NewRWMutex(seg3, "own", nil)
	if err != nil {
		t.Fatal(err)
	}
	p.want(t, "lock", "ok")
	g := mxNewGoroutines(t, mxWait)
	blockedW := g.goErr(func(ctx context.Context) error { return rw2.Lock(ctx) })
	blockedR := g.goErr(func(ctx context.Context) error { return rw3.RLock(ctx) })
	mxEventually(t, mxWait, "2 waiters", func() bool { return rw.State().Waiters == 2 })
	seg2.Close()
	seg3.Close()
	mxWantErr(t, mxWaitErr(t, blockedW, mxWait, "Lock blocked at Close"), net.ErrClosed, "lock", "own")
	mxWantErr(t, mxWaitErr(t, blockedR, mxWait, "RLock blocked at Close"), net.ErrClosed, "rlock", "own")
	p.want(t, "unlock", "ok")
	mxWantErr(t, rw2.Lock(context.Background()), net.ErrClosed, "lock", "own")
	mxWantErr(t, rw2.TryLock(), net.ErrClosed, "trylock", "own")
	mxWantErr(t, rw2.Unlock(), net.ErrClosed, "unlock", "own")
	mxWantErr(t, rw2.RLock(context.Background()), net.ErrClosed, "rlock", "own")
	mxWantErr(t, rw2.RLockTimeout(time.Second), net.ErrClosed, "rlock", "own")
	mxWantErr(t, rw2.TryRLock(), net.ErrClosed, "tryrlock", "own")
	mxWantErr(t, rw2.RUnlock(), net.ErrClosed, "runlock", "own")
	mxWantErr(t, rw2.MarkConsistent(), net.ErrClosed, "markconsistent", "own")
	if _, err := procsync.NewRWMutex(seg2, "own", nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("NewRWMutex on a closed segment: %v", err)
	}
	if st := rw.State(); st.WriteLocked || len(st.Readers) != 0 || st.Waiters != 0 {
		t.Fatalf("state %+v: closed handles left something behind", st)
	}
	if err := rw.TryLock(); err != nil {
		t.Fatal(err)
	}
	if err := rw.Unlock(); err != nil {
		t.Fatal(err)
	}
}
