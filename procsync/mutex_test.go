package procsync_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

// Tests of the robust Mutex across processes. The race detector sees none
// of the other processes, so every cross-process invariant is checked
// explicitly in shared memory: an "inside" flag that must be clear on
// entry, a counter updated with a non-atomic read-modify-write, violation
// counters that the test asserts to be zero.

func init() {
	peers["mx-ctl"] = peerMxCtl
	peers["mx-contend"] = peerMxContend
}

// mxWait bounds every wait for a peer's answer. Peers answer in
// milliseconds; the bound only limits how long a broken test takes to fail.
const mxWait = 10 * time.Second

// mxDeadBound bounds the time to notice a dead holder. With Poll at 10 ms
// the expected latency is one or two poll intervals; the bound is generous
// so that a loaded machine does not fail the test, and the latency is
// logged.
const mxDeadBound = 5 * time.Second

// mxCode names the outcome of a call for comparisons and for peers' output.
// Every error must be an *procsync.OpError.
func mxCode(err error) string {
	if err == nil {
		return "ok"
	}
	var oe *procsync.OpError
	if !errors.As(err, &oe) {
		return "not-an-OpError: " + err.Error()
	}
	switch {
	case errors.Is(err, procsync.ErrOwnerDead):
		return "ownerdead"
	case errors.Is(err, procsync.ErrNotRecoverable):
		return "notrecoverable"
	case errors.Is(err, procsync.ErrNotOwner):
		return "notowner"
	case errors.Is(err, procsync.ErrWouldBlock):
		return "wouldblock"
	case errors.Is(err, procsync.ErrTimeout):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	}
	return "other: " + err.Error()
}

// mxLocker is what Mutex and RWMutex share.
type mxLocker interface {
	Lock(context.Context) error
	LockTimeout(time.Duration) error
	TryLock() error
	Unlock() error
	MarkConsistent() error
}

// peerMxCtl is a remote-controlled holder of the lock called args[2] of
// kind args[1] ("mutex" or "rw") in segment args[0], with Config.Poll
// args[3]. It prints "ready PID SLOT GEN" (PID as getpid() returns it, so
// 1 in a new PID namespace), then runs one command per line of stdin and
// prints one line per command: the outcome code (see mxCode) or the JSON
// of a state. It exits on EOF or "exit".
func peerMxCtl(args []string) int {
	if len(args) != 4 {
		return ipctest.Fail("mx-ctl: want 4 args, got %q", args)
	}
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer seg.Close()
	poll, err := time.ParseDuration(args[3])
	if err != nil {
		return ipctest.Fail("poll: %v", err)
	}
	cfg := &procsync.Config{Spin: 100, Poll: poll}
	var (
		l  mxLocker
		m  *procsync.Mutex
		rw *procsync.RWMutex
	)
	switch args[1] {
	case "mutex":
		m, err = procsync.NewMutex(seg, args[2], cfg)
		l = m
	case "rw":
		rw, err = procsync.NewRWMutex(seg, args[2], cfg)
		l = rw
	default:
		return ipctest.Fail("mx-ctl: kind %q", args[1])
	}
	if err != nil {
		return ipctest.Fail("new %s: %v", args[1], err)
	}
	fmt.Printf("ready %d %d %d\n", os.Getpid(), seg.Slot(), seg.SlotGen())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		dur := func() time.Duration {
			if len(f) < 2 {
				return 0
			}
			d, _ := time.ParseDuration(f[1])
			return d
		}
		var out string
		switch f[0] {
		case "lock":
			out = mxCode(l.Lock(context.Background()))
		case "lockt":
			out = mxCode(l.LockTimeout(dur()))
		case "trylock":
			out = mxCode(l.TryLock())
		case "unlock":
			out = mxCode(l.Unlock())
		case "mark":
			out = mxCode(l.MarkConsistent())
		case "lockrel": // lock, repair if needed, unlock; report the lock's outcome
			err := l.Lock(context.Background())
			out = mxCode(err)
			if err == nil || errors.Is(err, procsync.ErrOwnerDead) {
				if errors.Is(err, procsync.ErrOwnerDead) {
					if e := l.MarkConsistent(); e != nil {
						out += " mark:" + mxCode(e)
					}
				}
				if e := l.Unlock(); e != nil {
					out += " unlock:" + mxCode(e)
				}
			}
		case "rlock", "rlockt", "tryrlock", "runlock":
			if rw == nil {
				out = "not an rwmutex"
				break
			}
			switch f[0] {
			case "rlock":
				out = mxCode(rw.RLock(context.Background()))
			case "rlockt":
				out = mxCode(rw.RLockTimeout(dur()))
			case "tryrlock":
				out = mxCode(rw.TryRLock())
			case "runlock":
				out = mxCode(rw.RUnlock())
			}
		case "state":
			var b []byte
			if m != nil {
				b, _ = json.Marshal(m.State())
			} else {
				b, _ = json.Marshal(rw.State())
			}
			out = string(b)
		case "inspect": // the view of a process that neither holds nor waits
			objs, err := procsync.Inspect(seg)
			if err != nil {
				out = "inspect: " + err.Error()
				break
			}
			out = "no object " + args[2]
			for _, o := range objs {
				if o.Name == args[2] {
					b, _ := json.Marshal(o)
					out = string(b)
				}
			}
		case "exit":
			return 0
		default:
			out = "unknown command " + f[0]
		}
		fmt.Println(out)
	}
	return 0
}

// mxCtl is the test's side of an mx-ctl peer.
type mxCtl struct {
	*ipctest.Peer
	in   io.WriteCloser
	pid  int // as the peer sees itself (1 in a new PID namespace)
	slot int
	gen  uint32
}

// mxStartCtl starts an mx-ctl peer on lock obj of kind "mutex" or "rw".
// sys, if not nil, is the peer's SysProcAttr.
func mxStartCtl(t *testing.T, seg *shm.Segment, kind, obj string, poll time.Duration, sys *syscall.SysProcAttr) *mxCtl {
	t.Helper()
	cmd := ipctest.Command("mx-ctl", seg.Name(), kind, obj, poll.String())
	cmd.SysProcAttr = sys
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &mxCtl{Peer: ipctest.Start(t, cmd), in: in}
	line := c.Line(t, mxWait)
	if _, err := fmt.Sscanf(line, "ready %d %d %d", &c.pid, &c.slot, &c.gen); err != nil {
		t.Fatalf("mx-ctl peer said %q: %v", line, err)
	}
	return c
}

// send sends a command without waiting for its answer.
func (c *mxCtl) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		t.Fatalf("peer %d: send %q: %v", c.Pid(), cmd, err)
	}
}

// do sends a command and returns its answer.
func (c *mxCtl) do(t *testing.T, cmd string) string {
	t.Helper()
	c.send(t, cmd)
	return c.Line(t, mxWait)
}

// want runs cmd and fails t unless the answer is want.
func (c *mxCtl) want(t *testing.T, cmd, want string) {
	t.Helper()
	if got := c.do(t, cmd); got != want {
		t.Fatalf("peer %d: %s = %q, want %q", c.Pid(), cmd, got, want)
	}
}

// kill SIGKILLs the peer and waits until it is reaped: from then on the
// kernel has dropped its slot lock.
func (c *mxCtl) kill(t *testing.T) {
	t.Helper()
	c.Kill()
	select {
	case <-c.Done():
	case <-time.After(mxWait):
		t.Fatalf("peer %d not reaped %v after SIGKILL", c.Pid(), mxWait)
	}
}

// mxInspected is an object as another process's Inspect reports it.
type mxInspected struct {
	Summary string          `json:"summary"`
	Waiters int             `json:"waiters"`
	Owners  []shm.Owner     `json:"owners"`
	State   json.RawMessage `json:"state"`
}

// inspect asks the peer for procsync.Inspect's view of its object; st
// receives the kind's state.
func (c *mxCtl) inspect(t *testing.T, st any) mxInspected {
	t.Helper()
	line := c.do(t, "inspect")
	var o mxInspected
	if err := json.Unmarshal([]byte(line), &o); err != nil {
		t.Fatalf("peer %d: inspect said %q: %v", c.Pid(), line, err)
	}
	if err := json.Unmarshal(o.State, st); err != nil {
		t.Fatalf("peer %d: inspect state %s: %v", c.Pid(), o.State, err)
	}
	return o
}

// mxEventually polls cond every millisecond until it holds, failing t with
// what after d. It returns how long it took.
func mxEventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// mxWantErr fails t unless err is an *OpError of operation op on object
// obj that matches target.
func mxWantErr(t *testing.T, err error, target error, op, obj string) {
	t.Helper()
	var oe *procsync.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("%s: got %v (%T), want an *OpError wrapping %v", op, err, err, target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want %v", op, err, target)
	}
	if oe.Op != op || oe.Object != obj {
		t.Fatalf("%v: Op %q Object %q, want %q %q", err, oe.Op, oe.Object, op, obj)
	}
}

// mxWaitErr receives one result from ch within d.
func mxWaitErr(t *testing.T, ch <-chan error, d time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatalf("%s: no result within %v", what, d)
	}
	return nil
}

// mxGoroutines runs goroutines the test must not leak: Cleanup cancels
// their context and waits for them, before the segment is closed.
type mxGoroutines struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func mxNewGoroutines(t *testing.T, d time.Duration) *mxGoroutines {
	g := &mxGoroutines{}
	g.ctx, g.cancel = context.WithTimeout(context.Background(), d)
	t.Cleanup(func() { g.cancel(); g.wg.Wait() })
	return g
}

func (g *mxGoroutines) goErr(f func(ctx context.Context) error) <-chan error {
	ch := make(chan error, 1)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		ch <- f(g.ctx)
	}()
	return ch
}

// Layout of the contention test's data region.
const (
	mxGo      = 0  // uint32: set by the test to start every contender at once
	mxInside  = 4  // uint32: 1 while a holder is inside the critical section
	mxViol    = 8  // uint32: mutual-exclusion violations seen
	mxCounter = 16 // uint64: incremented with a non-atomic read-modify-write
	mxDataLen = 64
)

// mxBusy keeps a holder inside its critical section a little, and now and
// then gives up the CPU there, to widen the window for a violation.
func mxBusy(i int) {
	x := i
	for j := 0; j < 200; j++ {
		x = x*31 + j
	}
	runtime.KeepAlive(x)
	if i%8 == 0 {
		runtime.Gosched()
	}
}

// mxContend takes the mutex iters times and, inside, checks and sets the
// inside flag and increments the counter non-atomically.
func mxContend(ctx context.Context, m *procsync.Mutex, r shm.Region, iters int) error {
	inside, viol, counter := r.Uint32(mxInside), r.Uint32(mxViol), r.Uint64(mxCounter)
	for i := 0; i < iters; i++ {
		if err := m.Lock(ctx); err != nil {
			return fmt.Errorf("lock %d: %w", i, err)
		}
		if inside.Swap(1) != 0 { // someone else is inside
			viol.Add(1)
		}
		v := counter.Load()
		mxBusy(i)
		counter.Store(v + 1)
		if inside.Swap(0) != 1 { // someone else left meanwhile
			viol.Add(1)
		}
		if err := m.Unlock(); err != nil {
			return fmt.Errorf("unlock %d: %w", i, err)
		}
		// Work outside the lock, so that contenders also meet on a free
		// lock (the fast path), not only in the slow path's queue.
		mxBusy(i + 1)
	}
	return nil
}

// peerMxContend runs mxContend on mutex args[1] and region args[2] of
// segment args[0] for args[3] iterations, once the test sets the go flag.
func peerMxContend(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer seg.Close()
	m, err := procsync.NewMutex(seg, args[1], nil)
	if err != nil {
		return ipctest.Fail("new mutex: %v", err)
	}
	r, err := seg.Lookup(args[2])
	if err != nil {
		return ipctest.Fail("lookup: %v", err)
	}
	iters, err := strconv.Atoi(args[3])
	if err != nil {
		return ipctest.Fail("iters: %v", err)
	}
	fmt.Println("ready")
	deadline := time.Now().Add(mxWait)
	for r.Uint32(mxGo).Load() == 0 {
		if time.Now().After(deadline) {
			return ipctest.Fail("no go signal")
		}
		time.Sleep(100 * time.Microsecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := mxContend(ctx, m, r, iters); err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("done")
	return 0
}

// TestMutexMutualExclusionAcrossProcesses: four processes and three
// goroutines (two on the test's handle, one on a second handle of the same
// process) contend; no holder ever finds another inside, and no increment
// of the non-atomically updated counter is lost.
func TestMutexMutualExclusionAcrossProcesses(t *testing.T) {
	const procs, iters = 4, 3000
	seg := ipctest.CreateSegment(t, 1<<16, nil)
	m, err := procsync.NewMutex(seg, "mx", nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := seg.Alloc("mx-data", mxDataLen)
	if err != nil {
		t.Fatal(err)
	}
	seg2, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg2.Close() })
	m2, err := procsync.NewMutex(seg2, "mx", nil)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := seg2.Lookup("mx-data")
	if err != nil {
		t.Fatal(err)
	}
	var ps []*ipctest.Peer
	for i := 0; i < procs; i++ {
		p := ipctest.StartPeer(t, "mx-contend", seg.Name(), "mx", "mx-data", strconv.Itoa(iters))
		p.Expect(t, "ready", mxWait)
		ps = append(ps, p)
	}
	t.Cleanup(func() { // runs before the segment is closed
		if t.Failed() {
			t.Logf("violations %d, counter %d", r.Uint32(mxViol).Load(), r.Uint64(mxCounter).Load())
		}
	})
	g := mxNewGoroutines(t, 30*time.Second)
	start := time.Now()
	r.Uint32(mxGo).Store(1)
	chs := []<-chan error{
		g.goErr(func(ctx context.Context) error { return mxContend(ctx, m, r, iters) }),
		g.goErr(func(ctx context.Context) error { return mxContend(ctx, m, r, iters) }),
		g.goErr(func(ctx context.Context) error { return mxContend(ctx, m2, r2, iters) }),
	}
	for i, ch := range chs {
		if err := mxWaitErr(t, ch, 30*time.Second, "contending goroutine"); err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
	for _, p := range ps {
		p.Expect(t, "done", 30*time.Second)
		if err := p.Wait(t, mxWait); err != nil {
			t.Errorf("peer %d: %v", p.Pid(), err)
		}
	}
	t.Logf("%d lock/unlock pairs by %d processes and 3 goroutines in %v", (procs+3)*iters, procs, time.Since(start))
	if v := r.Uint32(mxViol).Load(); v != 0 {
		t.Errorf("%d mutual-exclusion violations", v)
	}
	if got, want := r.Uint64(mxCounter).Load(), uint64((procs+3)*iters); got != want {
		t.Errorf("counter = %d, want %d: %d increments lost", got, want, int64(want)-int64(got))
	}
	if st := m.State(); st.Locked || st.Inconsistent || st.NotRecoverable || st.Recoveries != 0 {
		t.Errorf("final state %+v, want unlocked and clean", st)
	}
}

// TestMutexTryLockAndOwnership: TryLock says ErrWouldBlock while another
// process (or this one) holds the lock; only the holding process may
// unlock or mark consistent; unlocking an unlocked mutex is ErrNotOwner;
// the errors are *OpErrors naming the operation and the object.
func TestMutexTryLockAndOwnership(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	m, err := procsync.NewMutex(seg, "own", nil)
	if err != nil {
		t.Fatal(err)
	}
	mxWantErr(t, m.Unlock(), procsync.ErrNotOwner, "unlock", "own")
	mxWantErr(t, m.MarkConsistent(), procsync.ErrNotOwner, "markconsistent", "own")

	p := mxStartCtl(t, seg, "mutex", "own", 10*time.Millisecond, nil)
	p.want(t, "unlock", "notowner") // unlocked: nobody may unlock
	p.want(t, "trylock", "ok")
	mxWantErr(t, m.TryLock(), procsync.ErrWouldBlock, "trylock", "own")
	mxWantErr(t, m.Unlock(), procsync.ErrNotOwner, "unlock", "own")
	mxWantErr(t, m.MarkConsistent(), procsync.ErrNotOwner, "markconsistent", "own")
	if st := m.State(); !st.Locked || st.Owner == nil || st.Owner.PID != p.Pid() || !st.Owner.Alive || st.Owner.Slot != p.slot {
		t.Fatalf("after a foreign Unlock: state %+v, want still held by live peer %d in slot %d", st, p.Pid(), p.slot)
	}
	p.want(t, "trylock", "wouldblock") // not reentrant, even for the holder
	p.want(t, "unlock", "ok")
	p.want(t, "unlock", "notowner")

	if err := m.TryLock(); err != nil {
		t.Fatalf("TryLock of a free mutex: %v", err)
	}
	mxWantErr(t, m.TryLock(), procsync.ErrWouldBlock, "trylock", "own")
	p.want(t, "trylock", "wouldblock")
	p.want(t, "unlock", "notowner")
	p.want(t, "mark", "notowner")
	if st := m.State(); !st.Locked || st.Owner == nil || st.Owner.Slot != seg.Slot() || st.Owner.PID != os.Getpid() {
		t.Fatalf("state %+v, want held by this process", st)
	}
	// Another goroutine of the holding process may unlock (as sync.Mutex).
	done := make(chan error, 1)
	go func() { done <- m.Unlock() }()
	if err := mxWaitErr(t, done, mxWait, "unlock from another goroutine"); err != nil {
		t.Fatal(err)
	}
	mxWantErr(t, m.Unlock(), procsync.ErrNotOwner, "unlock", "own")
	p.want(t, "trylock", "ok")
	p.want(t, "unlock", "ok")
}

// TestMutexLockTimeout: LockTimeout on a lock another process holds
// returns ErrTimeout, which is a net.Error with Timeout() true, matches
// context.DeadlineExceeded, and comes in an *OpError; a context deadline
// gives context.DeadlineExceeded. No waiter is left counted afterwards.
func TestMutexLockTimeout(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	m, err := procsync.NewMutex(seg, "to", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := mxStartCtl(t, seg, "mutex", "to", 10*time.Millisecond, nil)
	p.want(t, "lock", "ok")

	const d = 50 * time.Millisecond
	start := time.Now()
	err = m.LockTimeout(d)
	el := time.Since(start)
	t.Logf("LockTimeout(%v) returned after %v", d, el)
	mxWantErr(t, err, procsync.ErrTimeout, "lock", "to")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%v does not match context.DeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%v is not a net.Error with Timeout() true", err)
	}
	if el < d || el > d+mxDeadBound {
		t.Errorf("LockTimeout(%v) took %v", d, el)
	}

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err = m.Lock(ctx)
	mxWantErr(t, err, context.DeadlineExceeded, "lock", "to")

	// The peer's own timeout, and ours while the peer keeps it.
	p2 := mxStartCtl(t, seg, "mutex", "to", 10*time.Millisecond, nil)
	p2.want(t, "lockt 30ms", "timeout")
	if st := m.State(); !st.Locked || st.Owner.PID != p.Pid() || st.Waiters != 0 {
		t.Fatalf("state %+v, want held by %d with no waiter left", st, p.Pid())
	}
	p.want(t, "unlock", "ok")
	if err := m.LockTimeout(d); err != nil {
		t.Fatalf("LockTimeout of a free mutex: %v", err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestMutexContextCancel: cancelling the context of a blocked Lock makes it
// return context.Canceled at once (well under a second, whatever Poll); a
// context cancelled beforehand fails a contended Lock without waiting.
func TestMutexContextCancel(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	m, err := procsync.NewMutex(seg, "cc", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := mxStartCtl(t, seg, "mutex", "cc", 10*time.Millisecond, nil)
	p.want(t, "lock", "ok")
	slow, err := procsync.NewMutex(seg, "cc", &procsync.Config{Spin: 0, Poll: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []struct {
		name string
		m    *procsync.Mutex
	}{{"Poll 10ms", m}, {"Poll 10s", slow}} {
		g := mxNewGoroutines(t, mxWait)
		ctx, cancel := context.WithCancel(g.ctx)
		ch := g.goErr(func(context.Context) error { return h.m.Lock(ctx) })
		mxEventually(t, mxWait, "waiter counted", func() bool { return m.State().Waiters == 1 })
		time.Sleep(5 * time.Millisecond) // let it fall asleep in the kernel
		start := time.Now()
		cancel()
		err := mxWaitErr(t, ch, mxWait, "cancelled Lock")
		el := time.Since(start)
		t.Logf("%s: cancelled Lock returned %v after %v", h.name, err, el)
		mxWantErr(t, err, context.Canceled, "lock", "cc")
		if el > 500*time.Millisecond {
			t.Errorf("%s: cancelled Lock took %v to return", h.name, el)
		}
		mxEventually(t, mxWait, "waiter gone", func() bool { return m.State().Waiters == 0 })
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	mxWantErr(t, m.Lock(ctx), context.Canceled, "lock", "cc")
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("Lock with a cancelled context took %v", el)
	}
	if st := m.State(); !st.Locked || st.Owner.PID != p.Pid() {
		t.Fatalf("state %+v, want still held by %d", st, p.Pid())
	}
	p.want(t, "unlock", "ok")
}

// TestMutexClosedSegment: every call on a mutex whose segment handle is
// closed returns net.ErrClosed, also a Lock that was blocked when the
// handle was closed (it must not report a lock it does not hold).
func TestMutexClosedSegment(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	m, err := procsync.NewMutex(seg, "cl", nil)
	if err != nil {
		t.Fatal(err)
	}
	seg2, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	m2, err := procsync.NewMutex(seg2, "cl", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	g := mxNewGoroutines(t, mxWait)
	blocked := g.goErr(func(ctx context.Context) error { return m2.Lock(ctx) })
	mxEventually(t, mxWait, "waiter counted", func() bool { return m.State().Waiters == 1 })
	if err := seg2.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = mxWaitErr(t, blocked, mxWait, "Lock blocked across Close")
	t.Logf("Lock blocked across Close returned %v after %v", err, time.Since(start))
	mxWantErr(t, err, net.ErrClosed, "lock", "cl")
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	mxWantErr(t, m2.Lock(context.Background()), net.ErrClosed, "lock", "cl")
	mxWantErr(t, m2.LockTimeout(time.Second), net.ErrClosed, "lock", "cl")
	mxWantErr(t, m2.TryLock(), net.ErrClosed, "trylock", "cl")
	mxWantErr(t, m2.Unlock(), net.ErrClosed, "unlock", "cl")
	mxWantErr(t, m2.MarkConsistent(), net.ErrClosed, "markconsistent", "cl")
	if _, err := procsync.NewMutex(seg2, "cl", nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("NewMutex on a closed segment: %v, want net.ErrClosed", err)
	}
	// The live handle is untouched: the closed one left nothing behind.
	if st := m.State(); st.Locked || st.Waiters != 0 {
		t.Fatalf("state %+v, want unlocked with no waiter", st)
	}
	if err := m.TryLock(); err != nil {
		t.Fatalf("TryLock on the live handle: %v", err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestMutexOwnerDeadRecover: a holder killed -9 is taken over by the next
// Lock, which gets ErrOwnerDead with the lock held by itself; after
// MarkConsistent and Unlock the mutex works normally again, for other
// processes too.
func TestMutexOwnerDeadRecover(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	m, err := procsync.NewMutex(seg, "od", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := mxStartCtl(t, seg, "mutex", "od", 10*time.Millisecond, nil)
	p.want(t, "lock", "ok")
	other := mxStartCtl(t, seg, "mutex", "od", 10*time.Millisecond, nil)
	p.kill(t)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), mxDeadBound)
	defer cancel()
	err = m.Lock(ctx)
	t.Logf("dead holder taken over after %v", time.Since(start))
	mxWantErr(t, err, procsync.ErrOwnerDead, "lock", "od")
	st := m.State()
	if !st.Locked || st.Owner == nil || st.Owner.Slot != seg.Slot() || st.Owner.PID != os.Getpid() || !st.Owner.Alive {
		t.Fatalf("after takeover: state %+v, want held by this process (pid %d slot %d)", st, os.Getpid(), seg.Slot())
	}
	if !st.Inconsistent || st.Recoveries != 1 || st.LastDeadPID != p.Pid() {
		t.Fatalf("after takeover: state %+v, want inconsistent, 1 recovery, last dead pid %d", st, p.Pid())
	}
	other.want(t, "trylock", "wouldblock") // the takeover holds the lock
	other.want(t, "mark", "notowner")
	if err := m.MarkConsistent(); err != nil {
		t.Fatal(err)
	}
	if st := m.State(); st.Inconsistent {
		t.Fatalf("after MarkConsistent: %+v", st)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	other.want(t, "lock", "ok")
	mxWantErr(t, m.TryLock(), procsync.ErrWouldBlock, "trylock", "od")
	other.want(t, "unlock", "ok")
	if err := m.Lock(context.Background()); err != nil {
		t.Fatalf("Lock after recovery: %v", err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	if st := m.State(); st.Locked || st.Inconsistent || st.NotRecoverable || st.Recoveries != 1 {
		t.Fatalf("final state %+v", st)
	}
}

// TestMutexNotRecoverable: unlocking after ErrOwnerDead without
// MarkConsistent makes every later Lock, TryLock and LockTimeout fail with
// ErrNotRecoverable, in this process and in others, and wakes those that
// wait.
func TestMutexNotRecoverable(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	m, err := procsync.NewMutex(seg, "nr", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := mxStartCtl(t, seg, "mutex", "nr", 10*time.Millisecond, nil)
	p.want(t, "lock", "ok")
	other := mxStartCtl(t, seg, "mutex", "nr", 10*time.Millisecond, nil)
	p.kill(t)
	mxWantErr(t, m.LockTimeout(mxDeadBound), procsync.ErrOwnerDead, "lock", "nr")
	other.send(t, "lock") // waits behind us
	mxEventually(t, mxWait, "other process waiting", func() bool { return m.State().Waiters == 1 })
	if err := m.Unlock(); err != nil { // without MarkConsistent
		t.Fatalf("Unlock after ErrOwnerDead: %v", err)
	}
	if got := other.Line(t, mxWait); got != "notrecoverable" {
		t.Fatalf("the waiting process got %q, want notrecoverable", got)
	}
	if st := m.State(); !st.NotRecoverable || st.Locked {
		t.Fatalf("state %+v, want not recoverable", st)
	}
	mxWantErr(t, m.Lock(context.Background()), procsync.ErrNotRecoverable, "lock", "nr")
	mxWantErr(t, m.LockTimeout(time.Second), procsync.ErrNotRecoverable, "lock", "nr")
	mxWantErr(t, m.TryLock(), procsync.ErrNotRecoverable, "trylock", "nr")
	mxWantErr(t, m.Unlock(), procsync.ErrNotRecoverable, "unlock", "nr")
	mxWantErr(t, m.MarkConsistent(), procsync.ErrNotOwner, "markconsistent", "nr")
	other.want(t, "lock", "notrecoverable")
	other.want(t, "trylock", "notrecoverable")
	other.want(t, "lockt 1s", "notrecoverable")
	// A process that attaches later finds it unusable too.
	late := mxStartCtl(t, seg, "mutex", "nr", 10*time.Millisecond, nil)
	late.want(t, "trylock", "notrecoverable")
	late.want(t, "lock", "notrecoverable")
}

// TestMutexOwnerDeadTwice: a process that got ErrOwnerDead and dies before
// MarkConsistent passes ErrOwnerDead on to the next locker.
func TestMutexOwnerDeadTwice(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	m, err := procsync.NewMutex(seg, "od2", nil)
	if err != nil {
		t.Fatal(err)
	}
	p1 := mxStartCtl(t, seg, "mutex", "od2", 10*time.Millisecond, nil)
	p1.want(t, "lock", "ok")
	p2 := mxStartCtl(t, seg, "mutex", "od2", 10*time.Millisecond, nil)
	p1.kill(t)
	p2.want(t, "lock", "ownerdead")
	if st := m.State(); !st.Inconsistent || st.Owner == nil || st.Owner.PID != p2.Pid() || st.Recoveries != 1 {
		t.Fatalf("state %+v, want held by %d, inconsistent, 1 recovery", st, p2.Pid())
	}
	p2.kill(t) // before MarkConsistent
	err = m.LockTimeout(mxDeadBound)
	mxWantErr(t, err, procsync.ErrOwnerDead, "lock", "od2")
	if st := m.State(); !st.Inconsistent || st.Recoveries != 2 || st.LastDeadPID != p2.Pid() || st.Owner.Slot != seg.Slot() {
		t.Fatalf("state %+v, want ours, inconsistent, 2 recoveries, last dead %d", st, p2.Pid())
	}
	if err := m.MarkConsistent(); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := m.TryLock(); err != nil {
		t.Fatalf("TryLock after recovery: %v", err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestMutexKillAtWorstMoment kills a peer that loops lock / two-phase
// update under an intent record / unlock at random points, several times.
// Each time the test then takes the lock, repairs the record from the
// intent if the peer died inside the update, and checks the invariant. No
// kill ever leaves the lock stuck or the data inconsistent after repair.
func TestMutexKillAtWorstMoment(t *testing.T) {
	const rounds = 10
	seg := ipctest.CreateSegment(t, 1<<16, nil)
	m, err := procsync.NewMutex(seg, "worst", nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := seg.Alloc("worst-rec", chaosRecordSize(rounds))
	if err != nil {
		t.Fatal(err)
	}
	ownerDead, rollbacks := 0, 0
	for round := 0; round < rounds; round++ {
		p := ipctest.StartPeer(t, "mx-chaos-worker", seg.Name(), "worst", "worst-rec", strconv.Itoa(round), "10ms")
		p.Expect(t, "ready", mxWait)
		ops := r.Uint64(crOps).Load()
		mxEventually(t, mxWait, "worker making progress", func() bool { return r.Uint64(crOps).Load() > ops+5 })
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		p.Kill()
		<-p.Done()
		held := r.Uint32(crWorkers+16*round+8).Load() == 1
		start := time.Now()
		err := m.LockTimeout(mxDeadBound)
		lat := time.Since(start)
		switch {
		case errors.Is(err, procsync.ErrOwnerDead):
			ownerDead++
			if chaosRepair(r) {
				rollbacks++
			}
			if err := m.MarkConsistent(); err != nil {
				t.Fatal(err)
			}
			t.Logf("round %d: took over after %v", round, lat)
		case err == nil:
			if held {
				t.Fatalf("round %d: the worker died inside the critical section but Lock returned nil", round)
			}
			if r.Uint32(crActive).Load() != 0 {
				t.Fatalf("round %d: Lock returned nil but an update is half done", round)
			}
		default:
			t.Fatalf("round %d: Lock after the kill: %v", round, err)
		}
		if err := chaosCheck(r, round+1); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if v := r.Uint32(crViol).Load(); v != 0 {
			t.Fatalf("round %d: the worker saw %d inconsistent records", round, v)
		}
		if err := m.Unlock(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d kills: %d hit the lock holder, %d inside the update (rolled back); counter %d",
		rounds, ownerDead, rollbacks, r.Uint32(crLo).Load())
	if ownerDead == 0 {
		t.Fatalf("none of %d kills hit the holder of a lock held almost all the time", rounds)
	}
	if st := m.State(); st.Recoveries != ownerDead || st.Locked || st.Inconsistent {
		t.Fatalf("state %+v, want %d recoveries and clean", st, ownerDead)
	}
}

// TestMutexOneOfManyWaitersGetsOwnerDead: goroutines on two handles of
// this process and two other processes wait when the holder is killed;
// exactly one of them gets ErrOwnerDead, all the others then get the lock
// normally.
func TestMutexOneOfManyWaitersGetsOwnerDead(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	m, err := procsync.NewMutex(seg, "many", nil)
	if err != nil {
		t.Fatal(err)
	}
	seg2, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg2.Close() })
	m2, err := procsync.NewMutex(seg2, "many", nil)
	if err != nil {
		t.Fatal(err)
	}
	holder := mxStartCtl(t, seg, "mutex", "many", 10*time.Millisecond, nil)
	holder.want(t, "lock", "ok")
	w1 := mxStartCtl(t, seg, "mutex", "many", 10*time.Millisecond, nil)
	w2 := mxStartCtl(t, seg, "mutex", "many", 10*time.Millisecond, nil)
	g := mxNewGoroutines(t, 15*time.Second)
	lockrel := func(m *procsync.Mutex) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			err := m.Lock(ctx)
			if errors.Is(err, procsync.ErrOwnerDead) {
				if e := m.MarkConsistent(); e != nil {
					return e
				}
			} else if err != nil {
				return err
			}
			if e := m.Unlock(); e != nil {
				return fmt.Errorf("unlock: %w", e)
			}
			return err
		}
	}
	chs := []<-chan error{g.goErr(lockrel(m)), g.goErr(lockrel(m)), g.goErr(lockrel(m2))}
	w1.send(t, "lockrel")
	w2.send(t, "lockrel")
	mxEventually(t, mxWait, "5 waiters", func() bool { return m.State().Waiters == 5 })
	holder.kill(t)
	start := time.Now()
	var codes []string
	for _, ch := range chs {
		codes = append(codes, mxCode(mxWaitErr(t, ch, 15*time.Second, "waiting goroutine")))
	}
	codes = append(codes, w1.Line(t, mxWait), w2.Line(t, mxWait))
	t.Logf("all 5 waiters done %v after the kill: %q", time.Since(start), codes)
	dead, ok := 0, 0
	for _, c := range codes {
		switch c {
		case "ownerdead":
			dead++
		case "ok":
			ok++
		}
	}
	if dead != 1 || ok != 4 {
		t.Fatalf("outcomes %q: want exactly one ownerdead and four ok", codes)
	}
	if st := m.State(); st.Locked || st.Inconsistent || st.Recoveries != 1 || st.Waiters != 0 {
		t.Fatalf("final state %+v, want unlocked, consistent, 1 recovery, no waiter", st)
	}
}

// TestMutexInspectFromThirdProcess: a process that neither holds nor waits
// sees, through procsync.Inspect, the holder's PID and liveness and the
// number of waiters; after the holder is killed (and before anyone takes
// over) it sees the holder dead, then the takeover.
func TestMutexInspectFromThirdProcess(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	m, err := procsync.NewMutex(seg, "insp", nil)
	if err != nil {
		t.Fatal(err)
	}
	inspector := mxStartCtl(t, seg, "mutex", "insp", 10*time.Millisecond, nil)
	var st procsync.MutexState
	if o := inspector.inspect(t, &st); st.Locked || o.Waiters != 0 || !strings.Contains(o.Summary, "unlocked") {
		t.Fatalf("inspected %+v %+v, want unlocked", o, st)
	}

	holder := mxStartCtl(t, seg, "mutex", "insp", 10*time.Millisecond, nil)
	holder.want(t, "lock", "ok")
	o := inspector.inspect(t, &st)
	if !st.Locked || st.Owner == nil || st.Owner.PID != holder.Pid() || !st.Owner.Alive || st.Owner.Slot != holder.slot || o.Waiters != 0 {
		t.Fatalf("inspected %+v %+v, want locked by live %d", o, st, holder.Pid())
	}
	if len(o.Owners) != 1 || o.Owners[0].PID != holder.Pid() {
		t.Fatalf("inspected owners %+v", o.Owners)
	}

	// Three waiters: two goroutines of this process and one other process.
	waiter := mxStartCtl(t, seg, "mutex", "insp", 10*time.Millisecond, nil)
	g := mxNewGoroutines(t, 15*time.Second)
	lockUnlock := func(ctx context.Context) error {
		if err := m.Lock(ctx); err != nil {
			return err
		}
		return m.Unlock()
	}
	chs := []<-chan error{g.goErr(lockUnlock), g.goErr(lockUnlock)}
	waiter.send(t, "lockrel")
	mxEventually(t, mxWait, "the third process sees 3 waiters", func() bool {
		o = inspector.inspect(t, &st)
		return o.Waiters == 3
	})
	if !st.Locked || st.Owner.PID != holder.Pid() || !st.Owner.Alive || st.Waiters != 3 {
		t.Fatalf("inspected %+v, want locked by live %d with 3 waiters", st, holder.Pid())
	}
	t.Logf("third process sees: %s", o.Summary)
	holder.want(t, "unlock", "ok")
	for _, ch := range chs {
		if err := mxWaitErr(t, ch, mxWait, "waiter"); err != nil {
			t.Fatal(err)
		}
	}
	if got := waiter.Line(t, mxWait); got != "ok" {
		t.Fatalf("waiting process got %q", got)
	}
	if o = inspector.inspect(t, &st); st.Locked || o.Waiters != 0 {
		t.Fatalf("inspected %+v, want unlocked with no waiter", st)
	}

	// The holder dies; nobody waits, so the dead owner stays visible.
	holder.want(t, "lock", "ok")
	holder.kill(t)
	o = inspector.inspect(t, &st)
	if !st.Locked || st.Owner == nil || st.Owner.PID != holder.Pid() || st.Owner.Alive || !strings.Contains(o.Summary, "DEAD") {
		t.Fatalf("inspected %+v %+v, want locked by dead %d", o, st, holder.Pid())
	}
	if own := m.State(); !own.Locked || own.Owner.Alive || own.Owner.PID != holder.Pid() {
		t.Fatalf("own state %+v, want locked by dead %d", own, holder.Pid())
	}
	t.Logf("third process sees: %s", o.Summary)
	mxWantErr(t, m.TryLock(), procsync.ErrOwnerDead, "trylock", "insp")
	inspector.inspect(t, &st)
	if !st.Locked || st.Owner.PID != os.Getpid() || !st.Owner.Alive || !st.Inconsistent || st.Recoveries != 1 || st.LastDeadPID != holder.Pid() {
		t.Fatalf("inspected after takeover %+v, want held by live %d, inconsistent, last dead %d", st, os.Getpid(), holder.Pid())
	}
	if err := m.MarkConsistent(); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	if inspector.inspect(t, &st); st.Locked || st.Inconsistent {
		t.Fatalf("inspected at the end %+v", st)
	}
}

// TestMutexCloseRaceNoSteal closes a handle while a goroutine hammers
// TryLock on it, with the mutex held by a live process: a call racing with
// Close must never take the live holder's lock over in the segment.
func TestMutexCloseRaceNoSteal(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	m, err := procsync.NewMutex(seg, "steal", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := mxStartCtl(t, seg, "mutex", "steal", 10*time.Millisecond, nil)
	p.want(t, "lock", "ok")
	const rounds = 200
	var codes = map[string]int{}
	for i := 0; i < rounds; i++ {
		seg2, err := shm.Open(seg.Name())
		if err != nil {
			t.Fatal(err)
		}
		m2, err := procsync.NewMutex(seg2, "steal", nil)
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{})
		done := make(chan string, 1)
		go func() {
			close(started)
			code := "wouldblock"
			for code == "wouldblock" {
				code = mxCode(m2.TryLock())
			}
			done <- code
		}()
		<-started
		seg2.Close()
		code := <-done
		codes[code]++
		// "ok" is possible: a call racing with Close may complete on the
		// private memory that replaces the segment (shm.Segment.Close).
		if code != "closed" && code != "ok" {
			t.Fatalf("round %d: TryLock racing with Close returned %q", i, code)
		}
		if st := m.State(); !st.Locked || st.Owner == nil || st.Owner.PID != p.Pid() || !st.Owner.Alive || st.Inconsistent || st.Recoveries != 0 {
			t.Fatalf("round %d: state %+v: the live holder's lock was taken over by a closing handle", i, st)
		}
	}
	t.Logf("outcomes: %v", codes)
	p.want(t, "unlock", "ok")
}
