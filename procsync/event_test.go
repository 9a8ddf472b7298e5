package procsync_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

func init() {
	peers["ev-wait"] = peerEventWait
	peers["ev-set"] = peerEventSet
}

// Counter indexes of the event tests.
const (
	evReleased = iota // waiters that returned from Wait
	evCount
)

// peerEventWait: args seg event manual counters. It says "waiting", waits
// for the event, counts itself as released, says "released" and exits.
func peerEventWait(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	manual, _ := strconv.ParseBool(args[2])
	e, err := procsync.NewEvent(seg, args[1], manual, nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	c, err := primOpenCounters(seg, args[3], evCount)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	ctx, cancel := primPeerCtx()
	defer cancel()
	fmt.Println("waiting")
	if err := e.Wait(ctx); err != nil {
		return ipctest.Fail("%v", err)
	}
	c.add(evReleased, 1)
	fmt.Println("released")
	return 0
}

// peerEventSet: args seg event manual hang. It sets the event, says "set",
// then exits, or with hang "true" waits to be killed.
func peerEventSet(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	manual, _ := strconv.ParseBool(args[2])
	e, err := procsync.NewEvent(seg, args[1], manual, nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	if err := e.Set(); err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("set")
	if args[3] == "true" {
		time.Sleep(time.Minute)
	}
	return 0
}

func TestEventManualBasics(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	e, err := procsync.NewEvent(seg, "e", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.IsSet() {
		t.Fatal("a new event is set")
	}
	if err := e.TryWait(); !errors.Is(err, procsync.ErrWouldBlock) {
		t.Fatalf("TryWait on a reset event: %v, want ErrWouldBlock", err)
	}
	primIsTimeout(t, e.WaitTimeout(20*time.Millisecond), "WaitTimeout on a reset event")
	if err := e.Set(); err != nil {
		t.Fatal(err)
	}
	// A manual-reset event stays set for every caller.
	for i := 0; i < 3; i++ {
		if !e.IsSet() {
			t.Fatalf("IsSet false after Set (%d)", i)
		}
		if err := e.TryWait(); err != nil {
			t.Fatalf("TryWait on a set event: %v", err)
		}
		if err := e.WaitTimeout(time.Second); err != nil {
			t.Fatalf("WaitTimeout on a set event: %v", err)
		}
	}
	if st := e.State(); st != (procsync.EventState{Set: true, ManualReset: true, Sets: 1}) {
		t.Fatalf("State %+v", st)
	}
	if err := e.Reset(); err != nil {
		t.Fatal(err)
	}
	if e.IsSet() {
		t.Fatal("IsSet after Reset")
	}
	if err := e.TryWait(); !errors.Is(err, procsync.ErrWouldBlock) {
		t.Fatalf("TryWait after Reset: %v, want ErrWouldBlock", err)
	}
	if _, err := procsync.NewEvent(seg, "e", false, nil); !errors.Is(err, procsync.ErrBadConfig) {
		t.Fatalf("reopen a manual-reset event as auto-reset: %v, want ErrBadConfig", err)
	}

	// Goroutines: Set releases all of them.
	var chs []<-chan error
	for i := 0; i < 3; i++ {
		chs = append(chs, primGo(t, e.Wait))
	}
	primEventually(t, primBound, "three waiting goroutines", func() bool { return e.State().Waiters == 3 })
	for _, ch := range chs {
		primNoResult(t, ch, "Wait on a reset event")
	}
	if err := e.Set(); err != nil {
		t.Fatal(err)
	}
	for _, ch := range chs {
		if err := primRecv(t, ch, primBound, "Wait after Set"); err != nil {
			t.Fatal(err)
		}
	}
	if !e.IsSet() {
		t.Fatal("the waiters reset a manual-reset event")
	}
}

func TestEventAutoBasics(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	e, err := procsync.NewEvent(seg, "e", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := procsync.NewEvent(seg, "e", true, nil); !errors.Is(err, procsync.ErrBadConfig) {
		t.Fatalf("reopen an auto-reset event as manual-reset: %v, want ErrBadConfig", err)
	}
	if err := e.Set(); err != nil {
		t.Fatal(err)
	}
	if !e.IsSet() {
		t.Fatal("IsSet false after Set")
	}
	if err := e.TryWait(); err != nil {
		t.Fatalf("TryWait on a set event: %v", err)
	}
	if e.IsSet() {
		t.Fatal("TryWait did not reset the auto-reset event")
	}
	if err := e.TryWait(); !errors.Is(err, procsync.ErrWouldBlock) {
		t.Fatalf("second TryWait: %v, want ErrWouldBlock", err)
	}
	// Sets do not accumulate.
	e.Set()
	e.Set()
	if err := e.WaitTimeout(time.Second); err != nil {
		t.Fatal(err)
	}
	primIsTimeout(t, e.WaitTimeout(20*time.Millisecond), "WaitTimeout after the one Set was consumed")
	// Reset clears a pending Set.
	e.Set()
	if err := e.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := e.TryWait(); !errors.Is(err, procsync.ErrWouldBlock) {
		t.Fatalf("TryWait after Set and Reset: %v, want ErrWouldBlock", err)
	}
	if st := e.State(); st.ManualReset || st.Set || st.Sets != 4 || st.Waiters != 0 {
		t.Fatalf("State %+v, want auto-reset, reset, 4 sets, no waiters", st)
	}

	// Cancellation of a blocked Wait.
	ch, cancel := primCancelGo(t, e.Wait)
	primEventually(t, primBound, "the waiting goroutine", func() bool { return e.State().Waiters == 1 })
	start := time.Now()
	cancel()
	if err := primRecv(t, ch, primBound, "cancelled Wait"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait: %v, want context.Canceled", err)
	}
	t.Logf("cancelled Wait returned after %v", time.Since(start))
	if e.IsSet() || e.State().Waiters != 0 {
		t.Fatalf("State %+v after a cancelled Wait", e.State())
	}

	// Goroutines: each Set releases exactly one.
	released := make(chan error, 3)
	for i := 0; i < 3; i++ {
		ch := primGo(t, e.Wait)
		go func() { released <- <-ch }()
	}
	primEventually(t, primBound, "three waiting goroutines", func() bool { return e.State().Waiters == 3 })
	for i := 1; i <= 3; i++ {
		if err := e.Set(); err != nil {
			t.Fatal(err)
		}
		if err := primRecv(t, released, primBound, "a Wait after Set"); err != nil {
			t.Fatal(err)
		}
		if e.IsSet() {
			t.Fatalf("Set %d: event still set after releasing a waiter", i)
		}
		primEventually(t, primBound, "the released waiter to leave", func() bool { return e.State().Waiters == 3-i })
		primNoResult(t, released, "a second waiter for one Set")
	}
}

func TestEventClosedSegment(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	e, err := procsync.NewEvent(seg, "e", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	seg2, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg2.Close() })
	e2, err := procsync.NewEvent(seg2, "e", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := primGo(t, e2.Wait)
	primEventually(t, primBound, "the waiting goroutine", func() bool { return e.State().Waiters == 1 })
	seg2.Close()
	if err := primRecv(t, ch, primBound, "Wait on a closing segment"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Wait when the segment closed: %v, want net.ErrClosed", err)
	}
	for op, err := range map[string]error{
		"Set": e2.Set(), "Reset": e2.Reset(), "TryWait": e2.TryWait(),
		"Wait": e2.Wait(context.Background()), "WaitTimeout": e2.WaitTimeout(time.Second),
	} {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s on a closed segment: %v, want net.ErrClosed", op, err)
		}
	}
	if e.IsSet() {
		t.Fatal("the event was set by calls on a closed handle")
	}
}

// TestEventManualProcesses: one Set of a manual-reset event releases every
// waiter, in three processes and in this one.
func TestEventManualProcesses(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	e, err := procsync.NewEvent(seg, "e", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := primMustCounters(t, seg, "cnt", evCount)
	var ps []*ipctest.Peer
	for i := 0; i < 3; i++ {
		p := primStartPeer(t, "ev-wait", seg.Name(), "e", "true", "cnt")
		p.Expect(t, "waiting", primBound)
		ps = append(ps, p)
	}
	var chs []<-chan error
	for i := 0; i < 2; i++ {
		chs = append(chs, primGo(t, e.Wait))
	}
	primEventually(t, primBound, "five waiters", func() bool { return e.State().Waiters == 5 })
	if n := c.get(evReleased); n != 0 {
		t.Fatalf("%d waiters released before Set", n)
	}
	start := time.Now()
	// The Set comes from another process.
	s := primStartPeer(t, "ev-set", seg.Name(), "e", "true", "false")
	s.Expect(t, "set", primBound)
	for _, p := range ps {
		p.Expect(t, "released", primBound)
	}
	for _, ch := range chs {
		if err := primRecv(t, ch, primBound, "Wait after Set"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("all waiters released %v after the setter started", time.Since(start))
	primExit(t, s)
	for _, p := range ps {
		primExit(t, p)
	}
	if n := c.get(evReleased); n != 3 {
		t.Fatalf("%d peers released, want 3", n)
	}
	if st := e.State(); !st.Set || st.Waiters != 0 || st.Sets != 1 {
		t.Fatalf("State %+v, want set once, still set, no waiters", st)
	}
}

// TestEventAutoProcesses: each Set of an auto-reset event releases exactly
// one of the waiting processes.
func TestEventAutoProcesses(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	e, err := procsync.NewEvent(seg, "e", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := primMustCounters(t, seg, "cnt", evCount)
	var ps []*ipctest.Peer
	for i := 0; i < 3; i++ {
		p := primStartPeer(t, "ev-wait", seg.Name(), "e", "false", "cnt")
		p.Expect(t, "waiting", primBound)
		ps = append(ps, p)
	}
	// A goroutine of this process waits too: four waiters, three Sets.
	gch := primGo(t, func(ctx context.Context) error {
		if err := e.Wait(ctx); err != nil {
			return err
		}
		c.add(evReleased, 1)
		return nil
	})
	primEventually(t, primBound, "four waiters", func() bool { return e.State().Waiters == 4 })
	for i := uint64(1); i <= 3; i++ {
		start := time.Now()
		if err := e.Set(); err != nil {
			t.Fatal(err)
		}
		primEventually(t, primBound, fmt.Sprintf("Set %d to release a waiter", i), func() bool { return c.get(evReleased) >= i })
		t.Logf("Set %d released a waiter after %v", i, time.Since(start))
		// The waiter resets the event as it consumes the Set, before it
		// counts itself: once counted, the event must be reset, and no
		// other waiter may have been counted.
		if e.IsSet() {
			t.Fatalf("Set %d: the event is still set after a waiter took it", i)
		}
		if n := c.get(evReleased); n != i {
			t.Fatalf("%d waiters released after %d Sets", n, i)
		}
		primEventually(t, primBound, "the released waiter to leave", func() bool { return e.State().Waiters == int(4-i) })
	}
	if n := c.get(evReleased); n != 3 {
		t.Fatalf("%d waiters released by 3 Sets", n)
	}
	// The fourth Set releases the last waiter.
	if err := e.Set(); err != nil {
		t.Fatal(err)
	}
	primEventually(t, primBound, "the last waiter", func() bool { return c.get(evReleased) == 4 })
	for _, p := range ps {
		p.Expect(t, "released", primBound)
		primExit(t, p)
	}
	if err := primRecv(t, gch, primBound, "Wait"); err != nil {
		t.Fatal(err)
	}
	if st := e.State(); st.Set || st.Waiters != 0 || st.Sets != 4 {
		t.Fatalf("State %+v, want reset, 4 sets, no waiters", st)
	}
}

// TestEventKilledProcesses: waiters and setters killed -9 leave the event
// working for everyone else.
func TestEventKilledProcesses(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	e, err := procsync.NewEvent(seg, "auto", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := primMustCounters(t, seg, "cnt", evCount)
	victim := primStartPeer(t, "ev-wait", seg.Name(), "auto", "false", "cnt")
	victim.Expect(t, "waiting", primBound)
	other := primStartPeer(t, "ev-wait", seg.Name(), "auto", "false", "cnt")
	other.Expect(t, "waiting", primBound)
	primEventually(t, primBound, "two waiting processes", func() bool { return e.State().Waiters == 2 })
	primKill(t, victim)
	primEventually(t, primBound, "the dead waiter to leave the waiter count", func() bool { return e.State().Waiters == 1 })

	// The one Set goes to the live waiter, not to the dead one.
	start := time.Now()
	if err := e.Set(); err != nil {
		t.Fatal(err)
	}
	other.Expect(t, "released", primBound)
	t.Logf("live waiter released %v after Set", time.Since(start))
	primExit(t, other)
	if n := c.get(evReleased); n != 1 || e.IsSet() {
		t.Fatalf("%d released, set %v: want 1 released and the event reset", n, e.IsSet())
	}

	// A goroutine waits; a process sets and exits.
	ch := primGo(t, e.Wait)
	primEventually(t, primBound, "the waiting goroutine", func() bool { return e.State().Waiters == 1 })
	s := primStartPeer(t, "ev-set", seg.Name(), "auto", "false", "false")
	s.Expect(t, "set", primBound)
	primExit(t, s)
	if err := primRecv(t, ch, primBound, "Wait after another process's Set"); err != nil {
		t.Fatal(err)
	}

	// A setter of a manual-reset event killed after its Set: the event
	// stays set and keeps working.
	m, err := procsync.NewEvent(seg, "manual", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2 := primStartPeer(t, "ev-set", seg.Name(), "manual", "true", "true")
	s2.Expect(t, "set", primBound)
	primKill(t, s2)
	if !m.IsSet() {
		t.Fatal("the event lost the Set of the killed setter")
	}
	if err := m.WaitTimeout(primBound); err != nil {
		t.Fatal(err)
	}
	if err := m.Reset(); err != nil {
		t.Fatal(err)
	}
	w := primStartPeer(t, "ev-wait", seg.Name(), "manual", "true", "cnt")
	w.Expect(t, "waiting", primBound)
	primEventually(t, primBound, "the waiting process", func() bool { return m.State().Waiters == 1 })
	if err := m.Set(); err != nil {
		t.Fatal(err)
	}
	w.Expect(t, "released", primBound)
	primExit(t, w)
}
