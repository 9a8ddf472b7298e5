package procsync_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

func init() {
	peers["bar-rounds"] = peerBarrierRounds
}

// Barrier counters (region "bc"): per round, the parties that arrived, and
// per round and arrival index how many parties got that index; then a
// violation count.
type barrierCounters struct {
	primCounters
	parties, rounds int
}

func openBarrierCounters(seg *shm.Segment, parties, rounds int) (barrierCounters, error) {
	c, err := primOpenCounters(seg, "bc", 1+rounds*(1+parties))
	return barrierCounters{c, parties, rounds}, err
}

func (c barrierCounters) arrived(round int) int { return 1 + round }
func (c barrierCounters) index(round, idx int) int {
	return 1 + c.rounds + round*c.parties + idx
}

const barBad = 0

// round makes one party's round r: it counts its arrival, waits, checks
// that every party had arrived before it was released, and records its
// arrival index.
func (c barrierCounters) round(ctx context.Context, b *procsync.Barrier, r int) (int, error) {
	c.add(c.arrived(r), 1)
	idx, err := b.Wait(ctx)
	if err != nil {
		return idx, err
	}
	if n := c.get(c.arrived(r)); n != uint64(c.parties) {
		c.add(barBad, 1) // released before every party arrived
	}
	if idx < 0 || idx >= c.parties {
		c.add(barBad, 1)
		return idx, fmt.Errorf("arrival index %d out of range", idx)
	}
	c.add(c.index(r, idx), 1)
	return idx, nil
}

// peerBarrierRounds: args seg barrier parties rounds. It says "ready",
// then runs the rounds, printing "ok" after each round, or "broken" or
// "error ..." and exiting 0 when a Wait fails.
func peerBarrierRounds(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	parties, _ := strconv.Atoi(args[2])
	rounds, _ := strconv.Atoi(args[3])
	b, err := procsync.NewBarrier(seg, args[1], parties, nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	c, err := openBarrierCounters(seg, parties, rounds)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	ctx, cancel := primPeerCtx()
	defer cancel()
	fmt.Println("ready")
	for r := 0; r < rounds; r++ {
		if _, err := c.round(ctx, b, r); err != nil {
			if errors.Is(err, procsync.ErrBrokenBarrier) {
				fmt.Println("broken")
			} else {
				fmt.Println("error", err)
			}
			return 0
		}
		fmt.Println("ok")
	}
	return 0
}

// checkBarrierRounds fails t unless every round gave each arrival index to
// exactly one party and nobody was released early.
func checkBarrierRounds(t *testing.T, c barrierCounters, rounds int) {
	t.Helper()
	if bad := c.get(barBad); bad != 0 {
		t.Fatalf("%d parties released before every party arrived", bad)
	}
	for r := 0; r < rounds; r++ {
		var got []uint64
		for i := 0; i < c.parties; i++ {
			got = append(got, c.get(c.index(r, i)))
		}
		for i, n := range got {
			if n != 1 {
				t.Fatalf("round %d: arrival index counts %v, want each of 0..%d once (index %d)", r, got, c.parties-1, i)
			}
		}
	}
}

func TestBarrierBasics(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	for _, n := range []int{0, -1, 1 << 31} {
		if _, err := procsync.NewBarrier(seg, "bad", n, nil); !errors.Is(err, procsync.ErrBadConfig) {
			t.Errorf("NewBarrier(%d parties): %v, want ErrBadConfig", n, err)
		}
	}
	b, err := procsync.NewBarrier(seg, "b", 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{2, 4} {
		if _, err := procsync.NewBarrier(seg, "b", n, nil); !errors.Is(err, procsync.ErrBadConfig) {
			t.Errorf("reopen with %d parties instead of 3: %v, want ErrBadConfig", n, err)
		}
	}
	if _, err := procsync.NewBarrier(seg, "b", 3, nil); err != nil {
		t.Fatalf("reopen with the same parties: %v", err)
	}
	// One party never waits.
	one, err := procsync.NewBarrier(seg, "one", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if idx, err := one.WaitTimeout(primBound); err != nil || idx != 0 {
			t.Fatalf("Wait on a one-party barrier: %d, %v", idx, err)
		}
	}

	// Goroutines: three parties, several rounds.
	const rounds = 5
	c, err := openBarrierCounters(seg, 3, rounds)
	if err != nil {
		t.Fatal(err)
	}
	var chs []<-chan error
	for i := 0; i < 3; i++ {
		chs = append(chs, primGo(t, func(ctx context.Context) error {
			for r := 0; r < rounds; r++ {
				if _, err := c.round(ctx, b, r); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	for _, ch := range chs {
		if err := primRecv(t, ch, primBound, "party"); err != nil {
			t.Fatal(err)
		}
	}
	checkBarrierRounds(t, c, rounds)
	if st := b.State(); st != (procsync.BarrierState{Parties: 3, Rounds: rounds}) {
		t.Fatalf("State %+v, want 3 parties, %d rounds, nothing pending", st, rounds)
	}

	// A cancelled party breaks the round for the others.
	ch1, cancel := primCancelGo(t, func(ctx context.Context) error { _, err := b.Wait(ctx); return err })
	ch2 := primGo(t, func(ctx context.Context) error { _, err := b.Wait(ctx); return err })
	primEventually(t, primBound, "two parties to arrive", func() bool { return b.State().Arrived == 2 })
	cancel()
	if err := primRecv(t, ch1, primBound, "cancelled party"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait: %v, want context.Canceled", err)
	}
	if err := primRecv(t, ch2, primBound, "other party"); !errors.Is(err, procsync.ErrBrokenBarrier) {
		t.Fatalf("party of a round broken by a cancel: %v, want ErrBrokenBarrier", err)
	}
	if _, err := b.Wait(context.Background()); !errors.Is(err, procsync.ErrBrokenBarrier) {
		t.Fatalf("Wait on a broken barrier: %v, want ErrBrokenBarrier", err)
	}
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	if st := b.State(); st.Broken || st.Arrived != 0 {
		t.Fatalf("State %+v after Reset", st)
	}

	// Reset while parties wait releases them with ErrBrokenBarrier, and
	// the barrier works right after.
	ch3 := primGo(t, func(ctx context.Context) error { _, err := b.Wait(ctx); return err })
	primEventually(t, primBound, "a party to arrive", func() bool { return b.State().Arrived == 1 })
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := primRecv(t, ch3, primBound, "party waiting across Reset"); !errors.Is(err, procsync.ErrBrokenBarrier) {
		t.Fatalf("Wait across Reset: %v, want ErrBrokenBarrier", err)
	}
	if st := b.State(); st.Broken || st.Arrived != 0 {
		t.Fatalf("State %+v after a Reset with a waiter", st)
	}
	idxs := make(chan int, 3)
	chs = chs[:0]
	for i := 0; i < 3; i++ {
		chs = append(chs, primGo(t, func(ctx context.Context) error {
			idx, err := b.Wait(ctx)
			idxs <- idx
			return err
		}))
	}
	for _, ch := range chs {
		if err := primRecv(t, ch, primBound, "party after Reset"); err != nil {
			t.Fatal(err)
		}
	}
	got := []int{<-idxs, <-idxs, <-idxs}
	sort.Ints(got)
	if fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("arrival indices %v after Reset, want 0, 1, 2", got)
	}

	// A closed segment.
	seg2, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	b2, err := procsync.NewBarrier(seg2, "b", 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	seg2.Close()
	if _, err := b2.Wait(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Wait on a closed segment: %v, want net.ErrClosed", err)
	}
	if err := b2.Reset(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Reset on a closed segment: %v, want net.ErrClosed", err)
	}
}

// TestBarrierProcesses: four parties, in three processes and this one,
// complete several rounds.
func TestBarrierProcesses(t *testing.T) {
	const parties, rounds = 4, 6
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	b, err := procsync.NewBarrier(seg, "b", parties, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := openBarrierCounters(seg, parties, rounds)
	if err != nil {
		t.Fatal(err)
	}
	var ps []*ipctest.Peer
	for i := 0; i < parties-1; i++ {
		p := primStartPeer(t, "bar-rounds", seg.Name(), "b", strconv.Itoa(parties), strconv.Itoa(rounds))
		p.Expect(t, "ready", primBound)
		ps = append(ps, p)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), primBound)
	defer cancel()
	var mine []int
	for r := 0; r < rounds; r++ {
		idx, err := c.round(ctx, b, r)
		if err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		mine = append(mine, idx)
	}
	for _, p := range ps {
		for r := 0; r < rounds; r++ {
			p.Expect(t, "ok", primBound)
		}
	}
	t.Logf("%d rounds in %v; this process arrived %v", rounds, time.Since(start), mine)
	for _, p := range ps {
		primExit(t, p)
	}
	checkBarrierRounds(t, c, rounds)
	if st := b.State(); st != (procsync.BarrierState{Parties: parties, Rounds: rounds}) {
		t.Fatalf("State %+v, want %d rounds, nothing pending", st, rounds)
	}
}

// TestBarrierPartyKilled: a party killed -9 while waiting breaks the
// barrier for the others, and later Waits, until Reset.
func TestBarrierPartyKilled(t *testing.T) {
	const parties = 4
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	b, err := procsync.NewBarrier(seg, "b", parties, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openBarrierCounters(seg, parties, 1); err != nil {
		t.Fatal(err)
	}
	var ps []*ipctest.Peer
	for i := 0; i < 3; i++ {
		p := primStartPeer(t, "bar-rounds", seg.Name(), "b", strconv.Itoa(parties), "1")
		p.Expect(t, "ready", primBound)
		ps = append(ps, p)
	}
	primEventually(t, primBound, "three parties to arrive", func() bool { return b.State().Arrived == 3 })
	primEventually(t, primBound, "three parties to sleep", func() bool { return b.State().Waiters == 3 })
	start := time.Now()
	primKill(t, ps[0])
	for _, p := range ps[1:] {
		if l := p.Line(t, primBound); l != "broken" {
			t.Fatalf("party %d said %q after another party was killed, want broken", p.Pid(), l)
		}
	}
	t.Logf("barrier broken %v after the kill", time.Since(start))
	for _, p := range ps[1:] {
		primExit(t, p)
	}
	if st := b.State(); !st.Broken || st.Rounds != 0 {
		t.Fatalf("State %+v, want broken, no round completed", st)
	}
	// Later Waits fail at once until Reset.
	if _, err := b.WaitTimeout(primBound); !errors.Is(err, procsync.ErrBrokenBarrier) {
		t.Fatalf("Wait on the broken barrier: %v, want ErrBrokenBarrier", err)
	}
	if _, err := b.Wait(context.Background()); !errors.Is(err, procsync.ErrBrokenBarrier) {
		t.Fatalf("second Wait on the broken barrier: %v, want ErrBrokenBarrier", err)
	}
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	if st := b.State(); st.Broken || st.Arrived != 0 {
		t.Fatalf("State %+v after Reset", st)
	}

	// Works again: two processes and two goroutines.
	c, err := procsync.NewBarrier(seg, "b", parties, nil)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := openBarrierCounters(seg, parties, 1)
	if err != nil {
		t.Fatal(err)
	}
	bc.set(bc.arrived(0), 0)
	for i := 0; i < parties; i++ {
		bc.set(bc.index(0, i), 0)
	}
	var again []*ipctest.Peer
	for i := 0; i < 2; i++ {
		p := primStartPeer(t, "bar-rounds", seg.Name(), "b", strconv.Itoa(parties), "1")
		p.Expect(t, "ready", primBound)
		again = append(again, p)
	}
	var chs []<-chan error
	for i := 0; i < 2; i++ {
		chs = append(chs, primGo(t, func(ctx context.Context) error { _, err := bc.round(ctx, c, 0); return err }))
	}
	for _, ch := range chs {
		if err := primRecv(t, ch, primBound, "party after Reset"); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range again {
		p.Expect(t, "ok", primBound)
		primExit(t, p)
	}
	checkBarrierRounds(t, bc, 1)
	if st := b.State(); st.Broken || st.Rounds != 1 {
		t.Fatalf("State %+v, want one round completed after Reset", st)
	}
}

// TestBarrierTimeoutBreaks: a party whose WaitTimeout expires gets
// ErrTimeout and breaks the round for the others.
func TestBarrierTimeoutBreaks(t *testing.T) {
	const parties = 3
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	b, err := procsync.NewBarrier(seg, "b", parties, nil)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := openBarrierCounters(seg, parties, 1)
	if err != nil {
		t.Fatal(err)
	}
	p := primStartPeer(t, "bar-rounds", seg.Name(), "b", strconv.Itoa(parties), "1")
	p.Expect(t, "ready", primBound)
	primEventually(t, primBound, "the peer to arrive", func() bool { return b.State().Arrived == 1 })
	const d = 50 * time.Millisecond
	start := time.Now()
	_, err = b.WaitTimeout(d)
	t.Logf("WaitTimeout(%v) returned after %v", d, time.Since(start))
	primIsTimeout(t, err, "WaitTimeout of a party left alone")
	if l := p.Line(t, primBound); l != "broken" {
		t.Fatalf("the other party said %q, want broken", l)
	}
	primExit(t, p)
	if st := b.State(); !st.Broken {
		t.Fatalf("State %+v, want broken", st)
	}
	if _, err := b.WaitTimeout(primBound); !errors.Is(err, procsync.ErrBrokenBarrier) {
		t.Fatalf("Wait after the timeout: %v, want ErrBrokenBarrier", err)
	}
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	bc.set(bc.arrived(0), 0)
	p2 := primStartPeer(t, "bar-rounds", seg.Name(), "b", strconv.Itoa(parties), "1")
	p2.Expect(t, "ready", primBound)
	var chs []<-chan error
	for i := 0; i < 2; i++ {
		chs = append(chs, primGo(t, func(ctx context.Context) error { _, err := bc.round(ctx, b, 0); return err }))
	}
	for _, ch := range chs {
		if err := primRecv(t, ch, primBound, "party after Reset"); err != nil {
			t.Fatal(err)
		}
	}
	p2.Expect(t, "ok", primBound)
	primExit(t, p2)
	checkBarrierRounds(t, bc, 1)
}

// primStop stops a peer with SIGSTOP and waits until every thread of it
// has stopped (the signal is delivered asynchronously). The peer is
// continued when t ends.
func primStop(t *testing.T, p *ipctest.Peer) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Cmd.Process.Signal(syscall.SIGCONT) })
	dir := fmt.Sprintf("/proc/%d/task", p.Pid())
	primEventually(t, primBound, "the peer to stop", func() bool {
		tasks, err := os.ReadDir(dir)
		if err != nil || len(tasks) == 0 {
			return false
		}
		for _, task := range tasks {
			b, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
			if err != nil {
				return false
			}
			// The state follows the command name, which is in parentheses.
			i := strings.LastIndexByte(string(b), ')')
			if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
				return false
			}
		}
		return true
	})
}

// TestBarrierLateParty: a party that was released by a round's trip but
// only looks after the next round broke (here it was stopped with SIGSTOP
// meanwhile) still gets the outcome of its own round: success, as the
// other party got.
func TestBarrierLateParty(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	b, err := procsync.NewBarrier(seg, "b", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openBarrierCounters(seg, 2, 1); err != nil {
		t.Fatal(err)
	}
	p := primStartPeer(t, "bar-rounds", seg.Name(), "b", "2", "1")
	p.Expect(t, "ready", primBound)
	primEventually(t, primBound, "the peer to sleep in Wait", func() bool { return b.State().Waiters == 1 })
	primStop(t, p)
	// This party trips round 0 with the stopped peer...
	if idx, err := b.WaitTimeout(primBound); err != nil || idx != 1 {
		t.Fatalf("round 0: index %d, %v; want 1, nil", idx, err)
	}
	// ... and breaks round 1, which the peer will never join.
	if _, err := b.WaitTimeout(20 * time.Millisecond); !errors.Is(err, procsync.ErrTimeout) {
		t.Fatalf("round 1 alone: %v, want ErrTimeout", err)
	}
	if err := p.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if l := p.Line(t, primBound); l != "ok" {
		t.Fatalf("the late party of round 0 said %q, want ok: round 0 tripped", l)
	}
	primExit(t, p)

	// The other way round: the late party's round broke, and the barrier
	// was Reset since. It must not take the Reset for a trip.
	seg2 := ipctest.CreateSegment(t, primSegSize, nil)
	b2, err := procsync.NewBarrier(seg2, "b", 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openBarrierCounters(seg2, 3, 1); err != nil {
		t.Fatal(err)
	}
	p2 := primStartPeer(t, "bar-rounds", seg2.Name(), "b", "3", "1")
	p2.Expect(t, "ready", primBound)
	primEventually(t, primBound, "the peer to sleep in Wait", func() bool { return b2.State().Waiters == 1 })
	primStop(t, p2)
	if _, err := b2.WaitTimeout(20 * time.Millisecond); !errors.Is(err, procsync.ErrTimeout) {
		t.Fatalf("round 0 without the third party: %v, want ErrTimeout", err)
	}
	if err := b2.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := p2.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if l := p2.Line(t, primBound); l != "broken" {
		t.Fatalf("the late party of a broken round said %q, want broken", l)
	}
	primExit(t, p2)
	if st := b2.State(); st.Broken || st.Rounds != 0 {
		t.Fatalf("State %+v, want reset and no round completed", st)
	}
}
