package procsync_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

func init() {
	peers["insp-hold"] = peerInspectHold
	peers["insp-dump"] = peerInspectDump
}

// peerInspectHold: args seg. It takes the mutex "mu", a read lock of "rw"
// and a permit of "osem", says "held" and waits to be killed.
func peerInspectHold(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	ctx, cancel := primPeerCtx()
	defer cancel()
	m, err := procsync.NewMutex(seg, "mu", nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	if err := m.Lock(ctx); err != nil {
		return ipctest.Fail("%v", err)
	}
	rw, err := procsync.NewRWMutex(seg, "rw", nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	if err := rw.RLock(ctx); err != nil {
		return ipctest.Fail("%v", err)
	}
	osem, err := procsync.NewOwnedSemaphore(seg, "osem", 2, nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	if err := osem.Acquire(ctx); err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("held")
	time.Sleep(time.Minute)
	return 0
}

// peerInspectDump: args seg [serve]. It prints the segment's Inspect as one
// line of JSON. With "serve" it first prints "slot N" (its process slot),
// then dumps once for every line read from stdin, until EOF.
func peerInspectDump(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	defer seg.Close()
	dump := func() int {
		objs, err := procsync.Inspect(seg)
		if err != nil {
			return ipctest.Fail("%v", err)
		}
		b, err := json.Marshal(objs)
		if err != nil {
			return ipctest.Fail("%v", err)
		}
		fmt.Println(string(b))
		return 0
	}
	if len(args) < 2 || args[1] != "serve" {
		return dump()
	}
	fmt.Println("slot", seg.Slot())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if code := dump(); code != 0 {
			return code
		}
	}
	return 0
}

// inspector is a process that stays attached to a segment and runs Inspect
// on request.
type inspector struct {
	p    *ipctest.Peer
	in   io.WriteCloser
	slot int
}

func startInspector(t *testing.T, seg *shm.Segment) *inspector {
	t.Helper()
	cmd := primCommand("insp-dump", seg.Name(), "serve")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := ipctest.Start(t, cmd)
	t.Cleanup(func() { in.Close() })
	ins := &inspector{p: p, in: in}
	if _, err := fmt.Sscanf(p.Line(t, primBound), "slot %d", &ins.slot); err != nil {
		t.Fatalf("inspector: %v", err)
	}
	return ins
}

// dump runs Inspect in the inspector process.
func (ins *inspector) dump(t *testing.T) map[string]inspected {
	t.Helper()
	if _, err := io.WriteString(ins.in, "dump\n"); err != nil {
		t.Fatal(err)
	}
	line := ins.p.Line(t, primBound)
	var objs []inspected
	if err := json.Unmarshal([]byte(line), &objs); err != nil {
		t.Fatalf("inspector's output %q: %v", line, err)
	}
	return checkInspectKinds(t, objs)
}

// inspected is an ObjectState decoded from JSON, its State kept raw.
type inspected struct {
	Name    string          `json:"name"`
	Kind    string          `json:"kind"`
	Size    int             `json:"size"`
	Summary string          `json:"summary"`
	Owners  []shm.Owner     `json:"owners"`
	Waiters int             `json:"waiters"`
	State   json.RawMessage `json:"state"`
}

// inspectKinds lists the objects of the Inspect test in creation order.
var inspectKinds = []struct{ name, kind string }{
	{"mu", "mutex"}, {"rw", "rwmutex"}, {"sem", "semaphore"}, {"osem", "owned-semaphore"},
	{"ev", "event"}, {"cond", "cond"}, {"bar", "barrier"}, {"data", "data"},
}

func checkInspectKinds(t *testing.T, objs []inspected) map[string]inspected {
	t.Helper()
	if len(objs) != len(inspectKinds) {
		t.Fatalf("Inspect found %d objects, want %d: %+v", len(objs), len(inspectKinds), objs)
	}
	byName := map[string]inspected{}
	for i, o := range objs {
		if want := inspectKinds[i]; o.Name != want.name || o.Kind != want.kind {
			t.Fatalf("object %d is %s %q, want %s %q", i, o.Kind, o.Name, want.kind, want.name)
		}
		if o.Kind != "data" && len(o.State) == 0 {
			t.Fatalf("object %q has no state", o.Name)
		}
		byName[o.Name] = o
	}
	return byName
}

func decodeState(t *testing.T, o inspected, v any) {
	t.Helper()
	if err := json.Unmarshal(o.State, v); err != nil {
		t.Fatalf("state of %q: %v", o.Name, err)
	}
}

func wantSummary(t *testing.T, objs map[string]inspected, name, want string) {
	t.Helper()
	if got := objs[name].Summary; got != want {
		t.Errorf("summary of %q: %q, want %q", name, got, want)
	}
}

func wantOwners(t *testing.T, objs map[string]inspected, name string, want ...shm.Owner) {
	t.Helper()
	got := objs[name].Owners
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("owners of %q: %+v, want %+v", name, got, want)
	}
}

// TestInspect inspects, from another process, a segment holding one of each
// primitive and a data region: kinds, summaries, states, owners (alive
// while the holder lives, dead after it is killed and before a takeover)
// and waiters.
func TestInspect(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	mu, err := procsync.NewMutex(seg, "mu", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := procsync.NewRWMutex(seg, "rw", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := procsync.NewSemaphore(seg, "sem", 3, 5, nil); err != nil {
		t.Fatal(err)
	}
	osem, err := procsync.NewOwnedSemaphore(seg, "osem", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := procsync.NewEvent(seg, "ev", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev.Set()
	if _, err := procsync.NewCond(seg, "cond", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := procsync.NewBarrier(seg, "bar", 3, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := seg.Alloc("data", 100); err != nil {
		t.Fatal(err)
	}

	h := primStartPeer(t, "insp-hold", seg.Name())
	h.Expect(t, "held", primBound)
	// The inspector attaches once, so that it does not claim the holder's
	// slot after the holder dies.
	ins := startInspector(t, seg)
	// A goroutine of this process waits for the mutex.
	ch, cancel := primCancelGo(t, mu.Lock)
	primEventually(t, primBound, "the Lock goroutine to wait", func() bool { return mu.State().Waiters == 1 })

	st := mu.State()
	if st.Owner == nil {
		t.Fatalf("mutex %+v, want held", st)
	}
	live := shm.Owner{Slot: st.Owner.Slot, PID: h.Pid(), Alive: true}
	objs := ins.dump(t)
	wantSummary(t, objs, "mu", fmt.Sprintf("locked by pid %d (alive), 1 waiting", h.Pid()))
	wantOwners(t, objs, "mu", live)
	if w := objs["mu"].Waiters; w != 1 {
		t.Errorf("mutex waiters %d, want 1", w)
	}
	var ms procsync.MutexState
	decodeState(t, objs["mu"], &ms)
	if !ms.Locked || ms.Owner == nil || *ms.Owner != live || ms.Waiters != 1 || ms.Inconsistent {
		t.Errorf("mutex state %+v", ms)
	}
	wantSummary(t, objs, "rw", "unlocked, 1 read locks")
	wantOwners(t, objs, "rw", live)
	var rws procsync.RWMutexState
	decodeState(t, objs["rw"], &rws)
	if rws.WriteLocked || len(rws.Readers) != 1 || rws.Readers[0].Count != 1 || rws.Readers[0].Owner != live {
		t.Errorf("rwmutex state %+v", rws)
	}
	wantSummary(t, objs, "sem", "3 of max 5 permits available")
	var ss procsync.SemaphoreState
	decodeState(t, objs["sem"], &ss)
	if ss != (procsync.SemaphoreState{Value: 3, Max: 5}) {
		t.Errorf("semaphore state %+v", ss)
	}
	wantSummary(t, objs, "osem", "1 of 2 permits free, 0 reclaimed from dead holders")
	wantOwners(t, objs, "osem", live)
	wantSummary(t, objs, "ev", "manual-reset, set=true")
	var es procsync.EventState
	decodeState(t, objs["ev"], &es)
	if es != (procsync.EventState{Set: true, ManualReset: true, Sets: 1}) {
		t.Errorf("event state %+v", es)
	}
	wantSummary(t, objs, "cond", "0 signals sent, 0 pending")
	wantSummary(t, objs, "bar", "0 of 3 parties arrived, 0 rounds")
	var bs procsync.BarrierState
	decodeState(t, objs["bar"], &bs)
	if bs != (procsync.BarrierState{Parties: 3}) {
		t.Errorf("barrier state %+v", bs)
	}
	wantSummary(t, objs, "data", "100 bytes of data")
	if d := objs["data"]; d.Size != 100 || d.State != nil || d.Owners != nil {
		t.Errorf("data region %+v", d)
	}
	if t.Failed() {
		t.FailNow()
	}

	// The waiter gives up; then the holder is killed. Until someone takes
	// over, Inspect shows the dead holder.
	cancel()
	if err := primRecv(t, ch, primBound, "cancelled Lock"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Lock: %v, want context.Canceled", err)
	}
	primKill(t, h)
	dead := live
	dead.Alive = false
	objs = ins.dump(t)
	wantSummary(t, objs, "mu", fmt.Sprintf("locked by pid %d (DEAD)", h.Pid()))
	wantOwners(t, objs, "mu", dead)
	if w := objs["mu"].Waiters; w != 0 {
		t.Errorf("mutex waiters %d after the waiter left, want 0", w)
	}
	wantOwners(t, objs, "rw", dead)
	wantOwners(t, objs, "osem", dead)
	wantSummary(t, objs, "osem", "1 of 2 permits free, 0 reclaimed from dead holders")
	if t.Failed() {
		t.FailNow()
	}
	// Inspect changed nothing: the lock and the permit are still the dead
	// holder's.
	if st := mu.State(); !st.Locked || st.Owner == nil || *st.Owner != dead || st.Recoveries != 0 {
		t.Fatalf("mutex %+v after Inspect", st)
	}
	if st := osem.State(); st.Free != 1 || st.Reclaimed != 0 {
		t.Fatalf("owned semaphore %+v after Inspect", st)
	}

	// Take over, and inspect in this process: the owner is this process,
	// alive, and the data inconsistent until MarkConsistent.
	if err := mu.LockTimeout(primBound); !errors.Is(err, procsync.ErrOwnerDead) {
		t.Fatalf("Lock after the holder died: %v, want ErrOwnerDead", err)
	}
	mine, err := procsync.Inspect(seg)
	if err != nil {
		t.Fatal(err)
	}
	objs = checkInspectKinds(t, toInspected(t, mine))
	wantSummary(t, objs, "mu", fmt.Sprintf("locked by pid %d (alive), inconsistent", os.Getpid()))
	wantOwners(t, objs, "mu", shm.Owner{Slot: seg.Slot(), PID: os.Getpid(), Alive: true})
	if err := mu.MarkConsistent(); err != nil {
		t.Fatal(err)
	}
	if err := mu.Unlock(); err != nil {
		t.Fatal(err)
	}
	objs = ins.dump(t)
	wantSummary(t, objs, "mu", "unlocked")
	wantOwners(t, objs, "mu")
	ms = procsync.MutexState{}
	decodeState(t, objs["mu"], &ms)
	if ms.Locked || ms.Recoveries != 1 || ms.LastDeadPID != h.Pid() {
		t.Errorf("mutex state %+v, want unlocked after 1 recovery from %d", ms, h.Pid())
	}

	// Another process claims the dead holder's slot: the read lock and the
	// permit the dead holder left must not be blamed on the newcomer.
	ins2 := startInspector(t, seg)
	if ins2.slot != dead.Slot {
		t.Fatalf("the new process took slot %d, want the dead holder's free slot %d", ins2.slot, dead.Slot)
	}
	unknown := shm.Owner{Slot: dead.Slot, PID: 0, Alive: false}
	objs = ins2.dump(t)
	wantOwners(t, objs, "rw", unknown)
	wantOwners(t, objs, "osem", unknown)
	if st := osem.State(); len(st.Holders) != 1 || st.Holders[0] != unknown {
		t.Errorf("owned semaphore holders %+v after the slot was claimed again, want %+v", st.Holders, unknown)
	}

	// A closed segment cannot be inspected.
	seg2, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	seg2.Close()
	if _, err := procsync.Inspect(seg2); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Inspect of a closed segment: %v, want net.ErrClosed", err)
	}
}

// toInspected converts ObjectStates through JSON, as a peer reports them.
func toInspected(t *testing.T, objs []procsync.ObjectState) []inspected {
	t.Helper()
	b, err := json.Marshal(objs)
	if err != nil {
		t.Fatal(err)
	}
	var out []inspected
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInspectWaiters: waiters of the other kinds show up in Inspect, from
// this process and from another.
func TestInspectWaiters(t *testing.T) {
	seg := ipctest.CreateSegment(t, primSegSize, nil)
	s, err := procsync.NewSemaphore(seg, "s", 0, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := procsync.NewEvent(seg, "e", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := primMustCounters(t, seg, "cnt", evCount)
	p := primStartPeer(t, "ev-wait", seg.Name(), "e", "false", "cnt")
	p.Expect(t, "waiting", primBound)
	ch := primGo(t, s.Acquire)
	primEventually(t, primBound, "the semaphore waiter", func() bool { return s.State().Waiters == 1 })
	primEventually(t, primBound, "the event waiter", func() bool { return e.State().Waiters == 1 })
	d := primStartPeer(t, "insp-dump", seg.Name())
	line := d.Line(t, primBound)
	primExit(t, d)
	var objs []inspected
	if err := json.Unmarshal([]byte(line), &objs); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"s":   "0 of max 1 permits available, 1 waiting",
		"e":   "auto-reset, set=false, 1 waiting",
		"cnt": fmt.Sprintf("%d bytes of data", 8*evCount),
	}
	if len(objs) != len(want) {
		t.Fatalf("Inspect found %+v", objs)
	}
	for _, o := range objs {
		if o.Summary != want[o.Name] {
			t.Errorf("summary of %q: %q, want %q", o.Name, o.Summary, want[o.Name])
		}
		if o.Name != "cnt" && o.Waiters != 1 {
			t.Errorf("waiters of %q: %d, want 1", o.Name, o.Waiters)
		}
	}
	if err := s.Release(1); err != nil {
		t.Fatal(err)
	}
	if err := primRecv(t, ch, primBound, "Acquire"); err != nil {
		t.Fatal(err)
	}
	if err := e.Set(); err != nil {
		t.Fatal(err)
	}
	p.Expect(t, "released", primBound)
	primExit(t, p)
	if n := c.get(evReleased); n != 1 {
		t.Fatalf("%d released", n)
	}
}
