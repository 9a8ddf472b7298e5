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

func init() {
	peers["cond-consume"] = peerCondConsume
	peers["cond-wait-flag"] = peerCondWaitFlag
	peers["cond-wait-ticket"] = peerCondWaitTicket
	peers["cond-hold-broadcast"] = peerCondHoldBroadcast
}

// condQueue is a bounded FIFO of uint64 items in shared memory, protected
// by a Mutex, with a Cond for "not empty" and one for "not full". Every
// word is accessed atomically so that the test is clean under the race
// detector, but the invariants only hold because of the mutex: the
// consumers check them.
type condQueue struct {
	seg               *shm.Segment
	m                 *procsync.Mutex
	notEmpty, notFull *procsync.Cond
	c                 primCounters
}

const (
	qCap = 4 // ring capacity: small, so that producers wait too
	// counter indexes
	qHead     = 0 // items popped
	qTail     = 1 // items pushed
	qDone     = 2 // set when the producer has finished
	qBad      = 3 // invariant violations
	qConsumed = 4 // items consumed
	qSum      = 5 // sum of the consumed items
	qRing     = 8 // qCap items
	qSeen     = qRing + qCap
)

func openCondQueue(seg *shm.Segment, items int) (*condQueue, error) {
	q := &condQueue{seg: seg}
	var err error
	if q.m, err = procsync.NewMutex(seg, "qm", nil); err != nil {
		return nil, err
	}
	if q.notEmpty, err = procsync.NewCond(seg, "qne", nil); err != nil {
		return nil, err
	}
	if q.notFull, err = procsync.NewCond(seg, "qnf", nil); err != nil {
		return nil, err
	}
	// One "seen" counter per item value 1..items.
	if q.c, err = primOpenCounters(seg, "q", qSeen+items+1); err != nil {
		return nil, err
	}
	return q, nil
}

func (q *condQueue) len() uint64 { return q.c.get(qTail) - q.c.get(qHead) }

// push adds v, waiting while the queue is full. It checks the capacity
// invariant under the lock.
func (q *condQueue) push(ctx context.Context, v uint64) error {
	if err := q.m.Lock(ctx); err != nil {
		return err
	}
	defer q.m.Unlock()
	for q.len() >= qCap {
		if err := q.notFull.Wait(ctx, q.m); err != nil {
			return err
		}
	}
	if q.len() >= qCap {
		q.c.add(qBad, 1)
	}
	tail := q.c.get(qTail)
	q.c.set(qRing+int(tail%qCap), v)
	q.c.set(qTail, tail+1)
	return q.notEmpty.Signal()
}

// pop takes the oldest item, waiting while the queue is empty; ok is false
// once the queue is empty and done.
func (q *condQueue) pop(ctx context.Context) (v uint64, ok bool, err error) {
	if err := q.m.Lock(ctx); err != nil {
		return 0, false, err
	}
	defer q.m.Unlock()
	for q.len() == 0 && q.c.get(qDone) == 0 {
		if err := q.notEmpty.Wait(ctx, q.m); err != nil {
			return 0, false, err
		}
	}
	if q.len() == 0 {
		return 0, false, nil
	}
	if q.len() > qCap {
		q.c.add(qBad, 1)
	}
	head := q.c.get(qHead)
	v = q.c.get(qRing + int(head%qCap))
	q.c.set(qHead, head+1)
	q.c.add(qSeen+int(v), 1)
	q.c.add(qConsumed, 1)
	q.c.add(qSum, v)
	return v, true, q.notFull.Signal()
}

// consume pops until the queue is done and returns how many items it got.
// The items of one consumer must come in increasing order (FIFO).
func (q *condQueue) consume(ctx context.Context) (int, error) {
	n, last := 0, uint64(0)
	for {
		v, ok, err := q.pop(ctx)
		if err != nil || !ok {
			return n, err
		}
		if v <= last {
			q.c.add(qBad, 1)
		}
		last = v
		n++
	}
}

// finish marks the queue done and wakes every consumer.
func (q *condQueue) finish(ctx context.Context) error {
	if err := q.m.Lock(ctx); err != nil {
		return err
	}
	q.c.set(qDone, 1)
	err := q.notEmpty.Broadcast()
	if uerr := q.m.Unlock(); err == nil {
		err = uerr
	}
	return err
}

// peerCondConsume: args seg items. It consumes from the queue until done
// and prints how many items it got.
func peerCondConsume(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	items, _ := strconv.Atoi(args[1])
	q, err := openCondQueue(seg, items)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	ctx, cancel := primPeerCtx()
	defer cancel()
	fmt.Println("ready")
	n, err := q.consume(ctx)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("consumed", n)
	return 0
}

// Counter indexes of the flag and ticket tests (region "cc").
const (
	ccFlag      = iota // the condition of peerCondWaitFlag
	ccWoke             // waiters that saw the flag
	ccTickets          // the condition of peerCondWaitTicket
	ccTook             // tickets taken
	ccOwnerDead        // Waits that returned ErrOwnerDead
	ccCount
)

// condWaitFlag waits on c (with m) until the flag is set and counts itself.
// A Wait that returns ErrOwnerDead repairs (nothing to repair here) and
// goes on.
func condWaitFlag(ctx context.Context, m *procsync.Mutex, c *procsync.Cond, cc primCounters) error {
	if err := m.Lock(ctx); err != nil {
		return err
	}
	for cc.get(ccFlag) == 0 {
		err := c.Wait(ctx, m)
		if errors.Is(err, procsync.ErrOwnerDead) {
			cc.add(ccOwnerDead, 1)
			if err := m.MarkConsistent(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
	}
	cc.add(ccWoke, 1)
	return m.Unlock()
}

// condWaitTicket waits on c (with m) for a ticket and takes it.
func condWaitTicket(ctx context.Context, m *procsync.Mutex, c *procsync.Cond, cc primCounters) error {
	if err := m.Lock(ctx); err != nil {
		return err
	}
	for cc.get(ccTickets) == 0 {
		if err := c.Wait(ctx, m); err != nil {
			return err
		}
	}
	cc.add(ccTickets, ^uint64(0))
	cc.add(ccTook, 1)
	return m.Unlock()
}

func openCondPeer(args []string) (*procsync.Mutex, *procsync.Cond, primCounters, error) {
	seg, err := shm.Open(args[0])
	if err != nil {
		return nil, nil, primCounters{}, err
	}
	m, err := procsync.NewMutex(seg, args[1], nil)
	if err != nil {
		return nil, nil, primCounters{}, err
	}
	c, err := procsync.NewCond(seg, args[2], nil)
	if err != nil {
		return nil, nil, primCounters{}, err
	}
	cc, err := primOpenCounters(seg, "cc", ccCount)
	return m, c, cc, err
}

// peerCondWaitFlag: args seg mutex cond. It says "waiting", waits for the
// flag, says "woke" and exits.
func peerCondWaitFlag(args []string) int {
	m, c, cc, err := openCondPeer(args)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	ctx, cancel := primPeerCtx()
	defer cancel()
	fmt.Println("waiting")
	if err := condWaitFlag(ctx, m, c, cc); err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("woke")
	return 0
}

// peerCondWaitTicket: args seg mutex cond. It says "waiting", waits for a
// ticket, says "took" and exits.
func peerCondWaitTicket(args []string) int {
	m, c, cc, err := openCondPeer(args)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	ctx, cancel := primPeerCtx()
	defer cancel()
	fmt.Println("waiting")
	if err := condWaitTicket(ctx, m, c, cc); err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("took")
	return 0
}

// peerCondHoldBroadcast: args seg mutex cond. It locks the mutex, sets the
// flag, broadcasts, says "broadcast" and waits to be killed, mutex held.
func peerCondHoldBroadcast(args []string) int {
	m, c, cc, err := openCondPeer(args)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	ctx, cancel := primPeerCtx()
	defer cancel()
	if err := m.Lock(ctx); err != nil {
		return ipctest.Fail("%v", err)
	}
	cc.set(ccFlag, 1)
	if err := c.Broadcast(); err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("broadcast")
	time.Sleep(time.Minute)
	return 0
}

func newCondPair(t *testing.T, seg *shm.Segment) (*procsync.Mutex, *procsync.Cond, primCounters) {
	t.Helper()
	m, err := procsync.NewMutex(seg, "m", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := procsync.NewCond(seg, "c", nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, c, primMustCounters(t, seg, "cc", ccCount)
}

// primHeldErr returns an error unless m is held by this handle of seg.
func primHeldErr(seg *shm.Segment, m *procsync.Mutex) error {
	st := m.State()
	me := shm.Owner{Slot: seg.Slot(), PID: os.Getpid(), Alive: true}
	if !st.Locked || st.Owner == nil || *st.Owner != me {
		return fmt.Errorf("mutex state %+v, want held by %+v", st, me)
	}
	return nil
}

// primHeldHere fails t unless m is held by this handle of seg.
func primHeldHere(t *testing.T, seg *shm.Segment, m *procsync.Mutex, what string) {
	t.Helper()
	if err := primHeldErr(seg, m); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestCondBasics(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	m, c, cc := newCondPair(t, seg)
	seg2, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg2.Close() })
	m2, err := procsync.NewMutex(seg2, "m", nil)
	if err != nil {
		t.Fatal(err)
	}

	// Signal and Broadcast without waiters do nothing.
	if err := c.Signal(); err != nil {
		t.Fatal(err)
	}
	if err := c.Broadcast(); err != nil {
		t.Fatal(err)
	}
	if st := c.State(); st.Pending != 0 || st.Waiters != 0 {
		t.Fatalf("State %+v after signals without waiters", st)
	}

	// Wait without holding the mutex fails and leaves nothing behind.
	if err := c.Wait(context.Background(), m); !errors.Is(err, procsync.ErrNotOwner) {
		t.Fatalf("Wait without the mutex: %v, want ErrNotOwner", err)
	}

	// WaitTimeout returns ErrTimeout with the mutex held.
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	const d = 30 * time.Millisecond
	start := time.Now()
	err = c.WaitTimeout(d, m)
	t.Logf("WaitTimeout(%v) returned after %v", d, time.Since(start))
	primIsTimeout(t, err, "WaitTimeout without a signal")
	if el := time.Since(start); el < d {
		t.Fatalf("WaitTimeout(%v) gave up after %v", d, el)
	}
	primHeldHere(t, seg, m, "after WaitTimeout")
	if err := m2.TryLock(); !errors.Is(err, procsync.ErrWouldBlock) {
		t.Fatalf("TryLock by another handle after WaitTimeout: %v, want ErrWouldBlock", err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatalf("Unlock after WaitTimeout: %v", err)
	}

	// A cancelled Wait returns the context's error with the mutex held.
	ch, cancel := primCancelGo(t, func(ctx context.Context) error {
		if err := m.Lock(ctx); err != nil {
			return err
		}
		err := c.Wait(ctx, m)
		if herr := primHeldErr(seg, m); herr != nil {
			return herr
		}
		if uerr := m.Unlock(); uerr != nil {
			return fmt.Errorf("unlock after Wait: %w", uerr)
		}
		return err
	})
	primEventually(t, primBound, "the waiting goroutine", func() bool { return c.State().Waiters == 1 })
	if st := m.State(); st.Locked {
		t.Fatalf("mutex %+v while its only user waits on the cond", st)
	}
	start = time.Now()
	cancel()
	if err := primRecv(t, ch, primBound, "cancelled Wait"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait: %v, want context.Canceled", err)
	}
	t.Logf("cancelled Wait returned after %v", time.Since(start))

	// Goroutines: Broadcast wakes all, Signal at least one.
	var chs []<-chan error
	for i := 0; i < 3; i++ {
		chs = append(chs, primGo(t, func(ctx context.Context) error { return condWaitFlag(ctx, m, c, cc) }))
	}
	primEventually(t, primBound, "three waiting goroutines", func() bool { return c.State().Waiters == 3 })
	tch := primGo(t, func(ctx context.Context) error { return condWaitTicket(ctx, m, c, cc) })
	primEventually(t, primBound, "four waiting goroutines", func() bool { return c.State().Waiters == 4 })
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	cc.set(ccTickets, 1)
	if err := c.Signal(); err != nil {
		t.Fatal(err)
	}
	m.Unlock()
	// The woken waiter may be a flag waiter, which waits again; the
	// ticket waiter is woken by a later signal. So signal until taken:
	// each Signal must wake someone, and a flag waiter never leaves.
	primEventually(t, primBound, "a Signal to reach the ticket waiter", func() bool {
		if cc.get(ccTook) == 1 {
			return true
		}
		if err := c.Signal(); err != nil {
			t.Error(err)
		}
		time.Sleep(5 * time.Millisecond)
		return false
	})
	if err := primRecv(t, tch, primBound, "ticket waiter"); err != nil {
		t.Fatal(err)
	}
	if n := cc.get(ccWoke); n != 0 {
		t.Fatalf("%d flag waiters left before the flag was set", n)
	}
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	cc.set(ccFlag, 1)
	if err := c.Broadcast(); err != nil {
		t.Fatal(err)
	}
	m.Unlock()
	for _, ch := range chs {
		if err := primRecv(t, ch, primBound, "flag waiter after Broadcast"); err != nil {
			t.Fatal(err)
		}
	}
	if n := cc.get(ccWoke); n != 3 {
		t.Fatalf("%d flag waiters woke, want 3", n)
	}

	// A closed segment.
	c2, err := procsync.NewCond(seg2, "c", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	wch := primGo(t, func(ctx context.Context) error { return c2.Wait(ctx, m2) })
	// A waiter is counted as it arrives, before it releases the mutex.
	primEventually(t, primBound, "the waiter on the handle to close", func() bool {
		return c.State().Waiters == 1 && !m.State().Locked
	})
	seg2.Close()
	if err := primRecv(t, wch, primBound, "Wait on a closing segment"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Wait when the segment closed: %v, want net.ErrClosed", err)
	}
	for op, err := range map[string]error{
		"Signal": c2.Signal(), "Broadcast": c2.Broadcast(),
		"Wait": c2.Wait(context.Background(), m2), "WaitTimeout": c2.WaitTimeout(time.Second, m2),
	} {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s on a closed segment: %v, want net.ErrClosed", op, err)
		}
	}
	// The mutex was released when Wait began; the closed handle no longer
	// holds it, so this handle can take it.
	if err := m.LockTimeout(primBound); err != nil {
		t.Fatal(err)
	}
	m.Unlock()
}

// TestCondProducerConsumer runs a bounded queue in shared memory between
// a producer goroutine and consumers in three processes and this one.
func TestCondProducerConsumer(t *testing.T) {
	const items, consumers = 3000, 3
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	q, err := openCondQueue(seg, items)
	if err != nil {
		t.Fatal(err)
	}
	var ps []*ipctest.Peer
	for i := 0; i < consumers; i++ {
		p := primStartPeer(t, "cond-consume", seg.Name(), strconv.Itoa(items))
		p.Expect(t, "ready", primBound)
		ps = append(ps, p)
	}
	var mine int
	cch := primGo(t, func(ctx context.Context) error {
		n, err := q.consume(ctx)
		mine = n
		return err
	})
	start := time.Now()
	pch := primGo(t, func(ctx context.Context) error {
		for v := uint64(1); v <= items; v++ {
			if err := q.push(ctx, v); err != nil {
				return err
			}
		}
		return q.finish(ctx)
	})
	if err := primRecv(t, pch, primBound, "producer"); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, p := range ps {
		line := p.Line(t, primBound)
		var n int
		if _, err := fmt.Sscanf(line, "consumed %d", &n); err != nil {
			t.Fatalf("peer %d said %q", p.Pid(), line)
		}
		total += n
	}
	if err := primRecv(t, cch, primBound, "consumer goroutine"); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		primExit(t, p)
	}
	total += mine
	t.Logf("%d items in %v; %d consumed here, the rest by %d processes", items, time.Since(start), mine, consumers)
	if total != items || q.c.get(qConsumed) != items {
		t.Fatalf("consumers report %d items, the queue %d, want %d", total, q.c.get(qConsumed), items)
	}
	if want := uint64(items * (items + 1) / 2); q.c.get(qSum) != want {
		t.Fatalf("sum of consumed items %d, want %d", q.c.get(qSum), want)
	}
	for v := 1; v <= items; v++ {
		if n := q.c.get(qSeen + v); n != 1 {
			t.Fatalf("item %d consumed %d times", v, n)
		}
	}
	if bad := q.c.get(qBad); bad != 0 {
		t.Fatalf("%d queue invariant violations", bad)
	}
	if st := q.m.State(); st.Locked || st.Recoveries != 0 {
		t.Fatalf("mutex %+v at the end", st)
	}
}

// TestCondBroadcastProcesses: Broadcast wakes waiters in every process.
func TestCondBroadcastProcesses(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	m, c, cc := newCondPair(t, seg)
	var ps []*ipctest.Peer
	for i := 0; i < 3; i++ {
		p := primStartPeer(t, "cond-wait-flag", seg.Name(), "m", "c")
		p.Expect(t, "waiting", primBound)
		ps = append(ps, p)
	}
	ch := primGo(t, func(ctx context.Context) error { return condWaitFlag(ctx, m, c, cc) })
	primEventually(t, primBound, "four waiters", func() bool { return c.State().Waiters == 4 })
	start := time.Now()
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	cc.set(ccFlag, 1)
	if err := c.Broadcast(); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		p.Expect(t, "woke", primBound)
	}
	if err := primRecv(t, ch, primBound, "waiting goroutine"); err != nil {
		t.Fatal(err)
	}
	t.Logf("all woke %v after Broadcast", time.Since(start))
	for _, p := range ps {
		primExit(t, p)
	}
	if n := cc.get(ccWoke); n != 4 {
		t.Fatalf("%d waiters woke, want 4", n)
	}
	if st := c.State(); st.Waiters != 0 {
		t.Fatalf("cond %+v after everyone left", st)
	}
}

// TestCondSignalProcesses: each Signal with a new ticket wakes a waiter
// that takes it.
func TestCondSignalProcesses(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	m, c, cc := newCondPair(t, seg)
	var ps []*ipctest.Peer
	for i := 0; i < 3; i++ {
		p := primStartPeer(t, "cond-wait-ticket", seg.Name(), "m", "c")
		p.Expect(t, "waiting", primBound)
		ps = append(ps, p)
	}
	primEventually(t, primBound, "three waiting processes", func() bool { return c.State().Waiters == 3 })
	for i := uint64(1); i <= 3; i++ {
		start := time.Now()
		if err := m.Lock(context.Background()); err != nil {
			t.Fatal(err)
		}
		cc.add(ccTickets, 1)
		if err := c.Signal(); err != nil {
			t.Fatal(err)
		}
		m.Unlock()
		primEventually(t, primBound, fmt.Sprintf("Signal %d to wake a waiter", i), func() bool { return cc.get(ccTook) == i })
		t.Logf("Signal %d: ticket taken after %v; cond %+v", i, time.Since(start), c.State())
		primEventually(t, primBound, "the waiter to leave", func() bool { return c.State().Waiters == int(3-i) })
	}
	for _, p := range ps {
		p.Expect(t, "took", primBound)
		primExit(t, p)
	}
	if n := cc.get(ccTickets); n != 0 {
		t.Fatalf("%d tickets left", n)
	}
}

// TestCondMutexHolderKilled: the holder of the cond's mutex broadcasts and
// is killed -9 while the waiters relock: one waiter takes the mutex over
// with ErrOwnerDead, and all of them finish.
func TestCondMutexHolderKilled(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	m, c, cc := newCondPair(t, seg)
	var ps []*ipctest.Peer
	for i := 0; i < 2; i++ {
		p := primStartPeer(t, "cond-wait-flag", seg.Name(), "m", "c")
		p.Expect(t, "waiting", primBound)
		ps = append(ps, p)
	}
	ch := primGo(t, func(ctx context.Context) error { return condWaitFlag(ctx, m, c, cc) })
	primEventually(t, primBound, "three waiters", func() bool { return c.State().Waiters == 3 })
	h := primStartPeer(t, "cond-hold-broadcast", seg.Name(), "m", "c")
	h.Expect(t, "broadcast", primBound)
	// The waiters leave the cond and queue on the mutex held by h.
	primEventually(t, primBound, "the woken waiters to block on the mutex", func() bool { return m.State().Waiters == 3 })
	if st := m.State(); !st.Locked || st.Owner == nil || st.Owner.PID != h.Pid() || !st.Owner.Alive {
		t.Fatalf("mutex %+v, want held by the live holder %d", st, h.Pid())
	}
	if n := cc.get(ccWoke); n != 0 {
		t.Fatalf("%d waiters returned while the mutex was held", n)
	}
	start := time.Now()
	primKill(t, h)
	for _, p := range ps {
		p.Expect(t, "woke", primBound)
	}
	if err := primRecv(t, ch, primBound, "waiting goroutine"); err != nil {
		t.Fatal(err)
	}
	t.Logf("all waiters done %v after the holder was killed", time.Since(start))
	for _, p := range ps {
		primExit(t, p)
	}
	if n := cc.get(ccOwnerDead); n != 1 {
		t.Fatalf("%d waiters got ErrOwnerDead, want exactly 1", n)
	}
	if n := cc.get(ccWoke); n != 3 {
		t.Fatalf("%d waiters finished, want 3", n)
	}
	st := m.State()
	if st.Locked || st.Inconsistent || st.NotRecoverable || st.Recoveries != 1 || st.LastDeadPID != h.Pid() {
		t.Fatalf("mutex %+v, want unlocked, consistent, 1 recovery from %d", st, h.Pid())
	}
}

// TestCondWaiterKilled: a waiter killed -9 inside Wait does not swallow
// the signals meant for the live waiters.
func TestCondWaiterKilled(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	m, c, cc := newCondPair(t, seg)
	victim := primStartPeer(t, "cond-wait-ticket", seg.Name(), "m", "c")
	victim.Expect(t, "waiting", primBound)
	primEventually(t, primBound, "the victim to wait", func() bool { return c.State().Waiters == 1 })
	primKill(t, victim)
	primEventually(t, primBound, "the dead waiter to leave the count", func() bool { return c.State().Waiters == 0 })
	if st := m.State(); st.Locked {
		t.Fatalf("mutex %+v: the victim died inside Wait, without the mutex", st)
	}

	p := primStartPeer(t, "cond-wait-ticket", seg.Name(), "m", "c")
	p.Expect(t, "waiting", primBound)
	ch := primGo(t, func(ctx context.Context) error { return condWaitTicket(ctx, m, c, cc) })
	primEventually(t, primBound, "two live waiters", func() bool { return c.State().Waiters == 2 })
	for i := uint64(1); i <= 2; i++ {
		start := time.Now()
		if err := m.Lock(context.Background()); err != nil {
			t.Fatal(err)
		}
		cc.add(ccTickets, 1)
		if err := c.Signal(); err != nil {
			t.Fatal(err)
		}
		m.Unlock()
		primEventually(t, primBound, fmt.Sprintf("Signal %d to reach a live waiter", i), func() bool { return cc.get(ccTook) == i })
		t.Logf("Signal %d: ticket taken after %v", i, time.Since(start))
	}
	p.Expect(t, "took", primBound)
	primExit(t, p)
	if err := primRecv(t, ch, primBound, "waiting goroutine"); err != nil {
		t.Fatal(err)
	}
}
