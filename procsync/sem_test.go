package procsync_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

// Helpers shared by the tests of Semaphore, OwnedSemaphore, Event, Cond,
// Barrier and Inspect. Their names start with "prim" to keep clear of the
// helpers of the other test files of this package.

// primBound bounds anything that must happen in a test: a peer starting, a
// waiter being released, a dead process being noticed. It is far above the
// expected latency (about Config.Poll) so that a loaded machine does not
// make the tests flaky; the measured latencies are logged.
const primBound = 10 * time.Second

// primPeerLife bounds the blocking calls of a peer, so that a peer left
// behind by a broken test ends on its own too.
const primPeerLife = 30 * time.Second

// primSegSize is the data size of the segments of these tests.
const primSegSize = 1 << 16

func init() {
	peers["sem-hammer"] = peerSemHammer
	peers["sem-acquire"] = peerSemAcquire
	peers["sem-release"] = peerSemRelease
	peers["sem-own-hold"] = peerOwnedHold
	peers["sem-own-hammer"] = peerOwnedHammer
}

// primCommand is ipctest.Command for a peer of these tests. Under the race
// detector a process sleeps a second at exit (GORACE atexit_sleep_ms);
// the peers skip that sleep so that waiting for their exit is quick. Any
// GORACE options of the test run are kept.
func primCommand(name string, args ...string) *exec.Cmd {
	cmd := ipctest.Command(name, args...)
	cmd.Env = append(cmd.Env, strings.TrimSpace("GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return cmd
}

// primStartPeer is ipctest.StartPeer with primCommand.
func primStartPeer(t testing.TB, name string, args ...string) *ipctest.Peer {
	t.Helper()
	return ipctest.Start(t, primCommand(name, args...))
}

// primEventually polls cond until it holds, failing t if it does not within
// d.
func primEventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}

// primGo runs f in a goroutine with a context that ends after primBound or
// when t ends, and waits for the goroutine when t ends. The result arrives
// on the returned channel.
func primGo(t testing.TB, f func(ctx context.Context) error) <-chan error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), primBound)
	ch := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ch <- f(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(primBound):
			t.Errorf("goroutine still running %v after its test", primBound)
		}
	})
	return ch
}

// primCancelGo is primGo with a cancel function for the goroutine's context.
func primCancelGo(t testing.TB, f func(ctx context.Context) error) (<-chan error, context.CancelFunc) {
	t.Helper()
	var once sync.Once
	cancelled := make(chan struct{})
	cancel := func() { once.Do(func() { close(cancelled) }) }
	ch := primGo(t, func(ctx context.Context) error {
		ctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			select {
			case <-cancelled:
				stop()
			case <-ctx.Done():
			}
		}()
		return f(ctx)
	})
	t.Cleanup(cancel)
	return ch, cancel
}

// primRecv returns the result of a primGo goroutine, failing t if none comes
// within d.
func primRecv(t testing.TB, ch <-chan error, d time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatalf("%s: no result within %v", what, d)
	}
	return nil
}

// primNoResult fails t if the goroutine behind ch has already returned.
func primNoResult(t testing.TB, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned early: %v", what, err)
	default:
	}
}

// primExit waits for a peer to exit and fails t unless it exited with 0.
func primExit(t testing.TB, p *ipctest.Peer) {
	t.Helper()
	if err := p.Wait(t, primBound); err != nil {
		t.Errorf("peer %d: %v", p.Pid(), err)
	}
}

// primKill kills a peer with SIGKILL and waits until it is reaped.
func primKill(t testing.TB, p *ipctest.Peer) {
	t.Helper()
	p.Kill()
	select {
	case <-p.Done():
	case <-time.After(primBound):
		t.Fatalf("peer %d not reaped within %v of SIGKILL", p.Pid(), primBound)
	}
}

// primIsTimeout checks that err is ErrTimeout as the package documents it:
// errors.Is matches ErrTimeout and context.DeadlineExceeded, and it is a
// net.Error whose Timeout() is true.
func primIsTimeout(t testing.TB, err error, what string) {
	t.Helper()
	var ne net.Error
	if !errors.Is(err, procsync.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) ||
		!errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: %v, want ErrTimeout (a net.Error with Timeout())", what, err)
	}
}

// primCounters is a region of n 64-bit counters in seg, shared with peers
// that call it with the same name and n.
type primCounters struct{ r shm.Region }

func primOpenCounters(seg *shm.Segment, name string, n int) (primCounters, error) {
	r, err := seg.Alloc(name, 8*n)
	return primCounters{r}, err
}

func primMustCounters(t testing.TB, seg *shm.Segment, name string, n int) primCounters {
	t.Helper()
	c, err := primOpenCounters(seg, name, n)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c primCounters) add(i int, d uint64) uint64 { return c.r.Uint64(8 * i).Add(d) }
func (c primCounters) get(i int) uint64           { return c.r.Uint64(8 * i).Load() }
func (c primCounters) set(i int, v uint64)        { c.r.Uint64(8 * i).Store(v) }

// Counter indexes of the holder-counting tests.
const (
	cntHolders = iota // current holders
	cntMax            // most holders seen at once
	cntTotal          // acquisitions
	cntBad            // violations seen by a holder
	cntStart          // set to 1 to start the peers together
	cntCount
)

// enter records one more holder, at most limit allowed.
func (c primCounters) enter(limit uint64) {
	cur := c.add(cntHolders, 1)
	for {
		m := c.get(cntMax)
		if cur <= m || c.r.Uint64(8*cntMax).CompareAndSwap(m, cur) {
			break
		}
	}
	if cur > limit {
		c.add(cntBad, 1)
	}
	c.add(cntTotal, 1)
	// Stay a while, re-checking the invariant, so that holders overlap.
	for i := 0; i < 20; i++ {
		if c.get(cntHolders) > limit {
			c.add(cntBad, 1)
		}
	}
}

func (c primCounters) leave() { c.add(cntHolders, ^uint64(0)) }

// waitStart waits for the test to set the start counter.
func (c primCounters) waitStart() error {
	deadline := time.Now().Add(primPeerLife)
	for c.get(cntStart) == 0 {
		if time.Now().After(deadline) {
			return errors.New("never started")
		}
		time.Sleep(100 * time.Microsecond)
	}
	return nil
}

func primPeerCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), primPeerLife)
}

// peerSemHammer: args seg sem counters iters limit. It acquires and
// releases the semaphore iters times, counting holders.
func peerSemHammer(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	iters, _ := strconv.Atoi(args[3])
	limit, _ := strconv.Atoi(args[4])
	s, err := procsync.NewSemaphore(seg, args[1], limit, limit, nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	c, err := primOpenCounters(seg, args[2], cntCount)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("ready")
	if err := c.waitStart(); err != nil {
		return ipctest.Fail("%v", err)
	}
	ctx, cancel := primPeerCtx()
	defer cancel()
	if err := semHammer(ctx, s, c, iters, uint64(limit)); err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("done")
	return 0
}

func semHammer(ctx context.Context, s *procsync.Semaphore, c primCounters, iters int, limit uint64) error {
	for i := 0; i < iters; i++ {
		if err := s.Acquire(ctx); err != nil {
			return err
		}
		c.enter(limit)
		c.leave()
		if err := s.Release(1); err != nil {
			return err
		}
	}
	return nil
}

// peerSemAcquire: args seg sem initial max. It says "waiting", acquires one
// permit, says "acquired" and exits.
func peerSemAcquire(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	initial, _ := strconv.Atoi(args[2])
	max, _ := strconv.Atoi(args[3])
	s, err := procsync.NewSemaphore(seg, args[1], initial, max, nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	ctx, cancel := primPeerCtx()
	defer cancel()
	fmt.Println("waiting")
	if err := s.Acquire(ctx); err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("acquired")
	return 0
}

// peerSemRelease: args seg sem initial max n. It releases n permits.
func peerSemRelease(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	initial, _ := strconv.Atoi(args[2])
	max, _ := strconv.Atoi(args[3])
	n, _ := strconv.Atoi(args[4])
	s, err := procsync.NewSemaphore(seg, args[1], initial, max, nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	if err := s.Release(n); err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("released")
	return 0
}

func TestSemaphoreCounting(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	s, err := procsync.NewSemaphore(seg, "s", 2, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := s.Value(); v != 2 {
		t.Fatalf("Value %d, want the initial 2", v)
	}
	for i := 0; i < 2; i++ {
		if err := s.TryAcquire(); err != nil {
			t.Fatalf("TryAcquire %d: %v", i, err)
		}
	}
	if err := s.TryAcquire(); !errors.Is(err, procsync.ErrWouldBlock) {
		t.Fatalf("TryAcquire with no permit: %v, want ErrWouldBlock", err)
	}
	if err := s.Release(1); err != nil {
		t.Fatal(err)
	}
	if v := s.Value(); v != 1 {
		t.Fatalf("Value %d after Release(1), want 1", v)
	}
	// Release(3) would make 4 > max 3: none is released.
	err = s.Release(3)
	if !errors.Is(err, procsync.ErrOverflow) {
		t.Fatalf("Release beyond max: %v, want ErrOverflow", err)
	}
	var oe *procsync.OpError
	if !errors.As(err, &oe) || oe.Op != "release" || oe.Object != "s" {
		t.Fatalf("Release error %#v, want an *OpError for release of s", err)
	}
	if v := s.Value(); v != 1 {
		t.Fatalf("Value %d after a failed Release, want 1 unchanged", v)
	}
	if err := s.Release(2); err != nil {
		t.Fatalf("Release up to max: %v", err)
	}
	if err := s.Release(1); !errors.Is(err, procsync.ErrOverflow) {
		t.Fatalf("Release at max: %v, want ErrOverflow", err)
	}
	for _, n := range []int{0, -1} {
		if err := s.Release(n); !errors.Is(err, procsync.ErrBadConfig) {
			t.Fatalf("Release(%d): %v, want ErrBadConfig", n, err)
		}
	}
	if st := s.State(); st != (procsync.SemaphoreState{Value: 3, Max: 3}) {
		t.Fatalf("State %+v, want value 3 of max 3, no waiters", st)
	}

	// A second handle (another process slot) shares the count.
	seg2, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer seg2.Close()
	s2, err := procsync.NewSemaphore(seg2, "s", 0, 3, nil) // initial is ignored for an existing semaphore
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.TryAcquire(); err != nil {
		t.Fatal(err)
	}
	if v := s.Value(); v != 2 {
		t.Fatalf("Value %d after another handle acquired, want 2", v)
	}
	if err := s.Release(1); err != nil { // unowned: anyone may release
		t.Fatal(err)
	}

	// max 0 means math.MaxInt32.
	big, err := procsync.NewSemaphore(seg, "big", 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := big.Release(math.MaxInt32); err != nil {
		t.Fatalf("Release(MaxInt32) with max 0: %v", err)
	}
	if err := big.Release(1); !errors.Is(err, procsync.ErrOverflow) {
		t.Fatalf("Release past MaxInt32: %v, want ErrOverflow", err)
	}
	if st := big.State(); st.Value != math.MaxInt32 || st.Max != math.MaxInt32 {
		t.Fatalf("State %+v, want value and max MaxInt32", st)
	}
}

func TestSemaphoreBadConfig(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	for _, c := range []struct{ initial, max int }{
		{-1, 3}, {4, 3}, {0, -1}, {1, -5}, {0, math.MaxInt32 + 1},
	} {
		_, err := procsync.NewSemaphore(seg, "bad", c.initial, c.max, nil)
		if !errors.Is(err, procsync.ErrBadConfig) {
			t.Errorf("NewSemaphore(initial %d, max %d): %v, want ErrBadConfig", c.initial, c.max, err)
		}
	}
	if _, err := procsync.NewSemaphore(seg, "bad", 1, 1, &procsync.Config{Poll: time.Microsecond}); !errors.Is(err, procsync.ErrBadConfig) {
		t.Errorf("NewSemaphore with Poll 1µs: %v, want ErrBadConfig", err)
	}
	if _, err := seg.Lookup("bad"); !errors.Is(err, shm.ErrObjectNotFound) {
		t.Errorf("a rejected semaphore was created: %v", err)
	}
	if _, err := procsync.NewSemaphore(seg, "s", 1, 3, nil); err != nil {
		t.Fatal(err)
	}
	for _, max := range []int{2, 4, 0} {
		if _, err := procsync.NewSemaphore(seg, "s", 1, max, nil); !errors.Is(err, procsync.ErrBadConfig) {
			t.Errorf("reopen with max %d instead of 3: %v, want ErrBadConfig", max, err)
		}
	}
	if _, err := procsync.NewSemaphore(seg, "s", 0, 3, nil); err != nil {
		t.Errorf("reopen with the same max and another initial: %v", err)
	}
	if _, err := procsync.NewMutex(seg, "s", nil); !errors.Is(err, shm.ErrKindMismatch) {
		t.Errorf("NewMutex on a semaphore: %v, want shm.ErrKindMismatch", err)
	}
	if _, err := procsync.NewOwnedSemaphore(seg, "s", 1, nil); !errors.Is(err, shm.ErrKindMismatch) {
		t.Errorf("NewOwnedSemaphore on a semaphore: %v, want shm.ErrKindMismatch", err)
	}
}

func TestSemaphoreTimeoutAndCancel(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	s, err := procsync.NewSemaphore(seg, "s", 0, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	const d = 50 * time.Millisecond
	start := time.Now()
	err = s.AcquireTimeout(d)
	el := time.Since(start)
	t.Logf("AcquireTimeout(%v) returned after %v", d, el)
	primIsTimeout(t, err, "AcquireTimeout on an empty semaphore")
	if el < d {
		t.Fatalf("AcquireTimeout(%v) gave up after %v", d, el)
	}

	// A cancelled context ends a blocked Acquire promptly.
	ch, cancel := primCancelGo(t, s.Acquire)
	primEventually(t, primBound, "the Acquire goroutine to sleep", func() bool { return s.State().Waiters == 1 })
	primNoResult(t, ch, "Acquire on an empty semaphore")
	start = time.Now()
	cancel()
	err = primRecv(t, ch, primBound, "cancelled Acquire")
	t.Logf("cancelled Acquire returned after %v", time.Since(start))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire: %v, want context.Canceled", err)
	}
	if st := s.State(); st.Value != 0 || st.Waiters != 0 {
		t.Fatalf("State %+v after the cancelled Acquire, want value 0 and no waiters", st)
	}
	// An already cancelled context with no permit returns at once.
	ctx, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := s.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a cancelled context: %v", err)
	}
	// The permit released later is still there for the next one.
	if err := s.Release(1); err != nil {
		t.Fatal(err)
	}
	if err := s.AcquireTimeout(primBound); err != nil {
		t.Fatal(err)
	}
}

func TestSemaphoreClosedSegment(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	s, err := procsync.NewSemaphore(seg, "s", 0, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	seg2, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg2.Close() })
	s2, err := procsync.NewSemaphore(seg2, "s", 0, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := primGo(t, s2.Acquire)
	primEventually(t, primBound, "the Acquire goroutine to sleep", func() bool { return s.State().Waiters == 1 })
	start := time.Now()
	if err := seg2.Close(); err != nil {
		t.Fatal(err)
	}
	err = primRecv(t, ch, primBound, "Acquire on a segment being closed")
	t.Logf("blocked Acquire returned %v after %v", err, time.Since(start))
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Acquire when the segment closed: %v, want net.ErrClosed", err)
	}
	checks := map[string]error{
		"TryAcquire":     s2.TryAcquire(),
		"Acquire":        s2.Acquire(context.Background()),
		"AcquireTimeout": s2.AcquireTimeout(time.Second),
		"Release":        s2.Release(1),
	}
	for op, err := range checks {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s on a closed segment: %v, want net.ErrClosed", op, err)
		}
	}
	if _, err := procsync.NewSemaphore(seg2, "s", 0, 2, nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("NewSemaphore on a closed segment: %v, want net.ErrClosed", err)
	}
	// The other handle is unaffected and the count was not touched.
	if st := s.State(); st.Value != 0 || st.Waiters != 0 {
		t.Fatalf("State %+v, want value 0 and no waiters", st)
	}
	if err := s.Release(2); err != nil {
		t.Fatal(err)
	}
	if v := s.Value(); v != 2 {
		t.Fatalf("Value %d, want 2", v)
	}
}

// TestSemaphoreProcesses checks that k permits are never held by more than
// k holders at once, with four processes and two goroutines contending.
func TestSemaphoreProcesses(t *testing.T) {
	const k, procs, gors, iters = 2, 4, 2, 1000
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	s, err := procsync.NewSemaphore(seg, "s", k, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := primMustCounters(t, seg, "cnt", cntCount)
	var ps []*ipctest.Peer
	for i := 0; i < procs; i++ {
		p := primStartPeer(t, "sem-hammer", seg.Name(), "s", "cnt", strconv.Itoa(iters), strconv.Itoa(k))
		p.Expect(t, "ready", primBound)
		ps = append(ps, p)
	}
	start := time.Now()
	c.set(cntStart, 1)
	var chs []<-chan error
	for i := 0; i < gors; i++ {
		chs = append(chs, primGo(t, func(ctx context.Context) error { return semHammer(ctx, s, c, iters, k) }))
	}
	for _, p := range ps {
		p.Expect(t, "done", primBound)
	}
	for _, ch := range chs {
		if err := primRecv(t, ch, primBound, "hammer goroutine"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d acquisitions in %v, at most %d holders at once", c.get(cntTotal), time.Since(start), c.get(cntMax))
	for _, p := range ps {
		primExit(t, p)
	}
	if m := c.get(cntMax); m > k || m < 1 {
		t.Errorf("%d holders at once, want 1 to %d", m, k)
	}
	if bad := c.get(cntBad); bad != 0 {
		t.Errorf("holders saw more than %d holders %d times", k, bad)
	}
	if got, want := c.get(cntTotal), uint64((procs+gors)*iters); got != want {
		t.Errorf("%d acquisitions, want %d", got, want)
	}
	if h := c.get(cntHolders); h != 0 {
		t.Errorf("%d holders left", h)
	}
	if st := s.State(); st.Value != k || st.Waiters != 0 {
		t.Errorf("State %+v at the end, want all %d permits back and no waiters", st, k)
	}
}

// TestSemaphoreKilledWaiter kills a process blocked in Acquire: no permit
// is lost or created, and the semaphore keeps working for processes and
// goroutines.
func TestSemaphoreKilledWaiter(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	s, err := procsync.NewSemaphore(seg, "s", 0, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := primStartPeer(t, "sem-acquire", seg.Name(), "s", "0", "5")
	p.Expect(t, "waiting", primBound)
	primEventually(t, primBound, "the peer to sleep in Acquire", func() bool { return s.State().Waiters == 1 })
	primKill(t, p)
	primEventually(t, primBound, "the dead waiter to leave the waiter count", func() bool { return s.State().Waiters == 0 })
	if v := s.Value(); v != 0 {
		t.Fatalf("Value %d after the waiter died, want 0", v)
	}
	if err := s.Release(1); err != nil {
		t.Fatal(err)
	}
	if v := s.Value(); v != 1 {
		t.Fatalf("Value %d after Release(1), want 1: a permit was lost or made", v)
	}
	if err := s.TryAcquire(); err != nil {
		t.Fatal(err)
	}

	// A new waiting process and a waiting goroutine both get the permits
	// another process releases.
	p2 := primStartPeer(t, "sem-acquire", seg.Name(), "s", "0", "5")
	p2.Expect(t, "waiting", primBound)
	ch := primGo(t, s.Acquire)
	primEventually(t, primBound, "two live waiters", func() bool { return s.State().Waiters == 2 })
	start := time.Now()
	r := primStartPeer(t, "sem-release", seg.Name(), "s", "0", "5", "2")
	r.Expect(t, "released", primBound)
	p2.Expect(t, "acquired", primBound)
	if err := primRecv(t, ch, primBound, "Acquire"); err != nil {
		t.Fatal(err)
	}
	t.Logf("both waiters released %v after the releaser started", time.Since(start))
	primExit(t, r)
	primExit(t, p2)
	if st := s.State(); st.Value != 0 || st.Waiters != 0 {
		t.Fatalf("State %+v, want value 0 and no waiters", st)
	}
	if err := s.Release(5); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(1); !errors.Is(err, procsync.ErrOverflow) {
		t.Fatalf("Release past max after the kill: %v, want ErrOverflow", err)
	}
}

// peerOwnedHold: args seg osem permits n. It acquires n permits, says
// "held" and waits to be killed.
func peerOwnedHold(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	permits, _ := strconv.Atoi(args[2])
	n, _ := strconv.Atoi(args[3])
	s, err := procsync.NewOwnedSemaphore(seg, args[1], permits, nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	ctx, cancel := primPeerCtx()
	defer cancel()
	for i := 0; i < n; i++ {
		if err := s.Acquire(ctx); err != nil {
			return ipctest.Fail("%v", err)
		}
	}
	if h := s.Held(); h != n {
		return ipctest.Fail("Held %d, want %d", h, n)
	}
	fmt.Println("held")
	time.Sleep(time.Minute)
	return 0
}

// peerOwnedHammer: args seg osem counters iters permits. Like
// peerSemHammer, for an owned semaphore; it also checks Held.
func peerOwnedHammer(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	iters, _ := strconv.Atoi(args[3])
	permits, _ := strconv.Atoi(args[4])
	s, err := procsync.NewOwnedSemaphore(seg, args[1], permits, nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	c, err := primOpenCounters(seg, args[2], cntCount)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("ready")
	if err := c.waitStart(); err != nil {
		return ipctest.Fail("%v", err)
	}
	ctx, cancel := primPeerCtx()
	defer cancel()
	for i := 0; i < iters; i++ {
		if err := s.Acquire(ctx); err != nil {
			return ipctest.Fail("%v", err)
		}
		if h := s.Held(); h != 1 { // this process has one goroutine
			c.add(cntBad, 1)
		}
		c.enter(uint64(permits))
		c.leave()
		if err := s.Release(); err != nil {
			return ipctest.Fail("%v", err)
		}
	}
	if err := s.Release(); !errors.Is(err, procsync.ErrNotOwner) {
		return ipctest.Fail("Release with no permit held: %v", err)
	}
	fmt.Println("done")
	return 0
}

func TestOwnedSemaphoreBasics(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	for _, n := range []int{0, -1, procsync.MaxOwnedPermits + 1} {
		if _, err := procsync.NewOwnedSemaphore(seg, "bad", n, nil); !errors.Is(err, procsync.ErrBadConfig) {
			t.Errorf("NewOwnedSemaphore(%d permits): %v, want ErrBadConfig", n, err)
		}
	}
	s, err := procsync.NewOwnedSemaphore(seg, "o", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := procsync.NewOwnedSemaphore(seg, "o", 3, nil); !errors.Is(err, procsync.ErrBadConfig) {
		t.Errorf("reopen with 3 permits instead of 2: %v, want ErrBadConfig", err)
	}
	if err := s.Release(); !errors.Is(err, procsync.ErrNotOwner) {
		t.Fatalf("Release without a permit: %v, want ErrNotOwner", err)
	}
	for i := 0; i < 2; i++ {
		if err := s.TryAcquire(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.TryAcquire(); !errors.Is(err, procsync.ErrWouldBlock) {
		t.Fatalf("TryAcquire with every permit held: %v, want ErrWouldBlock", err)
	}
	if h := s.Held(); h != 2 {
		t.Fatalf("Held %d, want 2", h)
	}
	st := s.State()
	if st.Permits != 2 || st.Free != 0 || len(st.Holders) != 2 || st.Reclaimed != 0 {
		t.Fatalf("State %+v, want 2 permits held by this process", st)
	}
	me := shm.Owner{Slot: seg.Slot(), PID: os.Getpid(), Alive: true}
	for _, h := range st.Holders {
		if h != me {
			t.Fatalf("holder %+v, want %+v", h, me)
		}
	}

	// Another handle holds none of them and cannot release them.
	seg2, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg2.Close() })
	s2, err := procsync.NewOwnedSemaphore(seg2, "o", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Release(); !errors.Is(err, procsync.ErrNotOwner) {
		t.Fatalf("Release by a handle holding nothing: %v, want ErrNotOwner", err)
	}
	if h := s2.Held(); h != 0 {
		t.Fatalf("Held %d for the other handle, want 0", h)
	}
	primIsTimeout(t, s2.AcquireTimeout(20*time.Millisecond), "AcquireTimeout with every permit held")

	// Release returns one permit; the other handle takes it, then its
	// handle closes while holding it: the permit is reclaimed.
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	if err := s2.TryAcquire(); err != nil {
		t.Fatal(err)
	}
	if err := s.TryAcquire(); !errors.Is(err, procsync.ErrWouldBlock) {
		t.Fatalf("TryAcquire while a live handle holds the permit: %v, want ErrWouldBlock", err)
	}
	if err := seg2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Release(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Release on a closed segment: %v, want net.ErrClosed", err)
	}
	if err := s2.TryAcquire(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("TryAcquire on a closed segment: %v, want net.ErrClosed", err)
	}
	if err := s.TryAcquire(); err != nil {
		t.Fatalf("TryAcquire of a permit whose holder closed: %v", err)
	}
	if st := s.State(); st.Reclaimed != 1 || st.Free != 0 || s.Held() != 2 {
		t.Fatalf("State %+v, Held %d: want 1 reclaimed and both permits held here", st, s.Held())
	}
	for i := 0; i < 2; i++ {
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Release(); !errors.Is(err, procsync.ErrNotOwner) {
		t.Fatalf("third Release: %v, want ErrNotOwner", err)
	}

	// Cancellation of a blocked Acquire.
	for i := 0; i < 2; i++ {
		if err := s.TryAcquire(); err != nil {
			t.Fatal(err)
		}
	}
	ch, cancel := primCancelGo(t, s.Acquire)
	primEventually(t, primBound, "the Acquire goroutine to sleep", func() bool { return s.State().Waiters == 1 })
	start := time.Now()
	cancel()
	if err := primRecv(t, ch, primBound, "cancelled Acquire"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire: %v, want context.Canceled", err)
	}
	t.Logf("cancelled Acquire returned after %v", time.Since(start))
	if h := s.Held(); h != 2 {
		t.Fatalf("Held %d after a cancelled Acquire, want 2", h)
	}
}

// TestOwnedSemaphoreHolderKilled kills a process holding both permits while
// a process and a goroutine wait: each waiter gets a permit.
func TestOwnedSemaphoreHolderKilled(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	s, err := procsync.NewOwnedSemaphore(seg, "o", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := primStartPeer(t, "sem-own-hold", seg.Name(), "o", "2", "2")
	h.Expect(t, "held", primBound)
	st := s.State()
	if st.Free != 0 || len(st.Holders) != 2 {
		t.Fatalf("State %+v, want both permits held", st)
	}
	for _, o := range st.Holders {
		if o.PID != h.Pid() || !o.Alive {
			t.Fatalf("holder %+v, want live pid %d", o, h.Pid())
		}
	}
	if err := s.TryAcquire(); !errors.Is(err, procsync.ErrWouldBlock) {
		t.Fatalf("TryAcquire while a live process holds every permit: %v", err)
	}
	before := st.Reclaimed

	// Waiters: a goroutine here and another process.
	ch := primGo(t, s.Acquire)
	w := primStartPeer(t, "sem-own-hold", seg.Name(), "o", "2", "1")
	primEventually(t, primBound, "two waiters", func() bool { return s.State().Waiters == 2 })
	primNoResult(t, ch, "Acquire while a live process holds every permit")

	start := time.Now()
	primKill(t, h)
	if err := primRecv(t, ch, primBound, "Acquire after the holder died"); err != nil {
		t.Fatal(err)
	}
	w.Expect(t, "held", primBound)
	t.Logf("both waiters got a permit %v after the kill", time.Since(start))
	if n := s.Held(); n != 1 {
		t.Fatalf("Held %d, want 1", n)
	}
	st = s.State()
	if st.Reclaimed != before+2 {
		t.Fatalf("Reclaimed %d, want %d: both permits of the dead holder", st.Reclaimed, before+2)
	}
	if st.Free != 0 || len(st.Holders) != 2 {
		t.Fatalf("State %+v, want both permits held", st)
	}
	pids := map[int]bool{}
	for _, o := range st.Holders {
		if !o.Alive {
			t.Fatalf("dead holder %+v after the reclaim", o)
		}
		pids[o.PID] = true
	}
	if !pids[os.Getpid()] || !pids[w.Pid()] || pids[h.Pid()] {
		t.Fatalf("holders %+v, want this process (%d) and %d", st.Holders, os.Getpid(), w.Pid())
	}
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(); !errors.Is(err, procsync.ErrNotOwner) {
		t.Fatalf("second Release: %v, want ErrNotOwner", err)
	}
}

// TestOwnedSemaphoreProcesses checks that the permits never have more
// holders than their count, with four processes and two goroutines.
func TestOwnedSemaphoreProcesses(t *testing.T) {
	const permits, procs, gors, iters = 3, 4, 2, 1000
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	s, err := procsync.NewOwnedSemaphore(seg, "o", permits, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := primMustCounters(t, seg, "cnt", cntCount)
	var ps []*ipctest.Peer
	for i := 0; i < procs; i++ {
		p := primStartPeer(t, "sem-own-hammer", seg.Name(), "o", "cnt", strconv.Itoa(iters), strconv.Itoa(permits))
		p.Expect(t, "ready", primBound)
		ps = append(ps, p)
	}
	c.set(cntStart, 1)
	var chs []<-chan error
	for i := 0; i < gors; i++ {
		chs = append(chs, primGo(t, func(ctx context.Context) error {
			for j := 0; j < iters; j++ {
				if err := s.Acquire(ctx); err != nil {
					return err
				}
				// No Held check here: Held scans the permits one by one, so
				// while the other goroutine of this handle releases and
				// re-acquires it may count a permit twice. The peers, with
				// one goroutine each, check it.
				c.enter(permits)
				c.leave()
				if err := s.Release(); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	for _, p := range ps {
		p.Expect(t, "done", primBound)
		primExit(t, p)
	}
	for _, ch := range chs {
		if err := primRecv(t, ch, primBound, "hammer goroutine"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d acquisitions, at most %d holders at once", c.get(cntTotal), c.get(cntMax))
	if m := c.get(cntMax); m > permits || m < 1 {
		t.Errorf("%d holders at once, want 1 to %d", m, permits)
	}
	if bad := c.get(cntBad); bad != 0 {
		t.Errorf("%d violations seen by holders", bad)
	}
	if got, want := c.get(cntTotal), uint64((procs+gors)*iters); got != want {
		t.Errorf("%d acquisitions, want %d", got, want)
	}
	if st := s.State(); st.Free != permits || len(st.Holders) != 0 || st.Reclaimed != 0 {
		t.Errorf("State %+v at the end, want every permit free and none reclaimed", st)
	}
}
