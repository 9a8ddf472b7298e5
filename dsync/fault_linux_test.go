//go:build linux

package dsync

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/natstest"
	"github.com/ipcgo/ipc/shm"
)

var (
	faultHandoffs = flag.Int("dsync.handoffs", 500, "lock hand-offs between processes TestFaults waits for (the long run: 5000)")
	faultRounds   = flag.Int("dsync.faults", 3, "rounds of faults of TestFaults (one kill -9, one SIGSTOP past the TTL, one server stop each; the long run: 9)")
)

// The history the holder processes write into a shared segment. Each
// record is 8 words; the words "next", "stop" and "writes" are in "ctl".
// Times are CLOCK_MONOTONIC nanoseconds, the same clock in every process
// of the machine.
const (
	histRecords = 1 << 18
	recWords    = 8

	evAcquire = 1 // token, Lock called, Lock returned, deadline (recorded under the fence)
	evWrite   = 2 // token, time, -, deadline, valid (accepted, under the fence)
	evReject  = 3 // token, time (refused by the fence)
	evRelease = 4 // token, Release called, Release returned
	evLost    = 5 // token, when the holder saw the lease end, -, its last deadline
	evKill    = 6 // -, when the test sent SIGKILL (written by the test)

	// ctl words
	ctlNext   = 0
	ctlStop   = 1
	ctlWrites = 2 // the counter the fenced writes increment
)

type histEvent struct {
	kind, client, token uint64
	t1, t2, deadline    int64
	valid               bool
}

type history struct {
	ctl, recs shm.Region
	fence     *SharedFence
}

func openHistory(seg *shm.Segment) (*history, error) {
	ctl, err := seg.Alloc("ctl", 64)
	if err != nil {
		return nil, err
	}
	recs, err := seg.Alloc("hist", histRecords*recWords*8)
	if err != nil {
		return nil, err
	}
	f, err := NewSharedFence(seg, "fence")
	if err != nil {
		return nil, err
	}
	return &history{ctl: ctl, recs: recs, fence: f}, nil
}

func (h *history) add(e histEvent) {
	i := int(h.ctl.Uint64(ctlNext*8).Add(1) - 1)
	if i >= histRecords {
		return
	}
	w := func(j int, v uint64) { h.recs.Uint64((i*recWords + j) * 8).Store(v) }
	w(1, e.client)
	w(2, e.token)
	w(3, uint64(e.t1))
	w(4, uint64(e.t2))
	w(5, uint64(e.deadline))
	if e.valid {
		w(6, 1)
	}
	w(0, e.kind) // last: a reader skips records whose kind is still 0
}

func (h *history) overflowed() bool { return h.ctl.Uint64(ctlNext*8).Load() > histRecords }

func (h *history) events() []histEvent {
	n := min(int(h.ctl.Uint64(ctlNext*8).Load()), histRecords)
	out := make([]histEvent, 0, n)
	for i := range n {
		r := func(j int) uint64 { return h.recs.Uint64((i*recWords + j) * 8).Load() }
		if r(0) == 0 {
			continue
		}
		out = append(out, histEvent{kind: r(0), client: r(1), token: r(2), t1: int64(r(3)), t2: int64(r(4)), deadline: int64(r(5)), valid: r(6) == 1})
	}
	return out
}

// mono is CLOCK_MONOTONIC in nanoseconds: unlike time.Time's monotonic
// reading (relative to the process's start), it compares across processes.
func mono() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// monoOf converts a time of this process (with its monotonic reading) to
// mono's clock.
func monoOf(t time.Time) int64 { return mono() + int64(time.Until(t)) }

// The holders run only here (CLOCK_MONOTONIC, SIGSTOP).
func init() { peers["holder"] = holderPeer }

// faultConfig is the holders' configuration: TTL 1 s, and a Margin of
// 200 ms rather than 100 ms, for the timer that ends a lease at its
// deadline to fire in time on a loaded machine.
func faultConfig() *Config {
	cfg := testConfig("fault")
	cfg.Replicas = 3
	cfg.Margin = 200 * time.Millisecond
	return cfg
}

// holderPeer: URL SEGMENT CLIENT WRITES INTERVAL [single]. It takes the
// lock "fault" again and again, announces each token to the fence (the
// first thing a new holder does), makes WRITES fenced writes INTERVAL
// apart (without checking its lease first, as a writer paused between its
// check and its write would), releases, and records everything in the
// segment's history; it prints "acq TOKEN", "rejected TOKEN" and "lost
// TOKEN MONO DEADLINE" lines. "single" connects to the first server of URL
// only and ignores the servers the cluster announces.
func holderPeer(args []string) int {
	if len(args) < 5 {
		return ipctest.Fail("holder: want URL SEGMENT CLIENT WRITES INTERVAL [single]")
	}
	client, _ := strconv.ParseUint(args[2], 10, 64)
	writes, _ := strconv.Atoi(args[3])
	interval, _ := time.ParseDuration(args[4])
	seg, err := shm.Open(args[1])
	if err != nil {
		return ipctest.Fail("holder: %v", err)
	}
	defer seg.Close()
	h, err := openHistory(seg)
	if err != nil {
		return ipctest.Fail("holder: %v", err)
	}
	cfg := faultConfig()
	url := args[0]
	if len(args) > 5 && args[5] == "single" {
		url = strings.Split(url, ",")[0]
		cfg.NATSOptions = []nats.Option{nats.IgnoreDiscoveredServers()}
	}
	ctx := context.Background()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := Open(octx, url, cfg)
	cancel()
	if err != nil {
		return ipctest.Fail("holder: %v", err)
	}
	defer c.Close()
	m, _ := c.Mutex("fault")
	for h.ctl.Uint64(ctlStop*8).Load() == 0 {
		// A waiter that hangs shows as a failed holder.
		lctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		call := mono()
		l, err := m.Lock(lctx)
		cancel()
		if err != nil {
			return ipctest.Fail("holder %d: lock: %v", client, err)
		}
		ret := mono()
		tok := l.Token()
		err = h.fence.Do(ctx, tok, func() error {
			h.add(histEvent{kind: evAcquire, client: client, token: tok, t1: call, t2: ret, deadline: monoOf(l.Deadline())})
			return nil
		})
		rejected := errors.Is(err, ErrStaleToken)
		if rejected {
			// Paused for longer than its lease between Lock and here: a
			// newer holder has announced itself. Still an acquisition.
			h.add(histEvent{kind: evAcquire, client: client, token: tok, t1: call, t2: ret, deadline: monoOf(l.Deadline())})
			h.add(histEvent{kind: evReject, client: client, token: tok, t1: mono()})
		} else if err != nil {
			return ipctest.Fail("holder %d: announce token %d: %v", client, tok, err)
		}
		fmt.Printf("acq %d\n", tok)
		for i := 0; i < writes && !rejected; i++ {
			valid, dl := l.Valid(), monoOf(l.Deadline())
			err := h.fence.Do(ctx, tok, func() error {
				h.ctl.Uint64(ctlWrites * 8).Add(1)
				h.add(histEvent{kind: evWrite, client: client, token: tok, t1: mono(), deadline: dl, valid: valid})
				return nil
			})
			if errors.Is(err, ErrStaleToken) {
				h.add(histEvent{kind: evReject, client: client, token: tok, t1: mono()})
				fmt.Printf("rejected %d\n", tok)
				rejected = true
				break
			}
			if err != nil {
				return ipctest.Fail("holder %d: write: %v", client, err)
			}
			if !valid {
				break
			}
			time.Sleep(interval)
		}
		if l.Valid() && !rejected {
			call := mono()
			if err := l.Release(ctx); err == nil {
				h.add(histEvent{kind: evRelease, client: client, token: tok, t1: call, t2: mono()})
				continue
			}
		}
		<-l.Done()
		at := mono()
		dl := monoOf(l.Deadline())
		h.add(histEvent{kind: evLost, client: client, token: tok, t1: at, deadline: dl})
		fmt.Printf("lost %d %d %d\n", tok, at, dl)
	}
	return 0
}

// TestFaults runs lock holders in separate processes against a 3-node
// cluster (bucket with 3 replicas, TTL 1 s) while holders are killed -9,
// frozen past their TTL and cut off by stopping their server, and checks
// the recorded history: linearizable as a lock whose tokens increase, no
// stale write accepted, no two valid leases at once, the counter equal to
// the accepted writes, every waiter served in the end.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	began := time.Now()
	cl := natstest.StartCluster(t, 3)
	url := cl.URL()
	cfg := faultConfig()
	open(t, url, cfg) // creates the bucket with three replicas
	ttl := cfg.TTL
	seg := ipctest.CreateSegment(t, histRecords*recWords*8+1<<20, nil)
	h, err := openHistory(seg)
	if err != nil {
		t.Fatal(err)
	}
	var clients atomic.Uint64
	start := func(url string, writes int, interval string, single bool) (*ipctest.Peer, uint64) {
		id := clients.Add(1)
		args := []string{url, seg.Name(), strconv.FormatUint(id, 10), strconv.Itoa(writes), interval}
		if single {
			args = append(args, "single")
		}
		return ipctest.StartPeer(t, "holder", args...), id
	}
	var all []*ipctest.Peer
	for range 3 {
		p, _ := start(url, 2, "1ms", false)
		all = append(all, p)
	}
	// awaitAcquire waits up to d for an acquisition with a token above tok.
	awaitAcquire := func(tok uint64, d time.Duration) (histEvent, bool) {
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			for _, e := range h.events() {
				if e.kind == evAcquire && e.token > tok {
					return e, true
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		return histEvent{}, false
	}
	newerAcquire := func(tok uint64) histEvent {
		e, ok := awaitAcquire(tok, 30*time.Second)
		if !ok {
			t.Fatalf("nobody acquired after token %d within 30 s", tok)
		}
		return e
	}
	expect := func(p *ipctest.Peer, prefix string) string {
		for {
			l := p.Line(t, 60*time.Second)
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
	}
	acqToken := func(p *ipctest.Peer) uint64 {
		n, _ := strconv.ParseUint(strings.TrimPrefix(expect(p, "acq "), "acq "), 10, 64)
		return n
	}
	handoffs := func() int {
		n, prev := 0, uint64(0)
		for _, e := range h.events() {
			if e.kind == evAcquire {
				if prev != 0 && e.client != prev {
					n++
				}
				prev = e.client
			}
		}
		return n
	}
	waitHandoffs := func(n int) {
		deadline := time.Now().Add(120 * time.Second)
		for handoffs() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d hand-offs in 120 s, want %d", handoffs(), n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var f faultFigures
	faults := 3 * *faultRounds
	share := *faultHandoffs / (faults + 1)
	for round := range *faultRounds {
		// kill -9 of a holder in the middle of its writes.
		p, id := start(url, 400, "5ms", false)
		tok := acqToken(p)
		killed := mono()
		h.add(histEvent{kind: evKill, client: id, t1: killed})
		p.Kill()
		e := newerAcquire(tok)
		f.takeover = append(f.takeover, time.Duration(e.t2-killed))
		if e.token <= tok {
			t.Errorf("token %d after the killed holder's %d", e.token, tok)
		}
		// The killed holder's key was written after its Lock was called:
		// the server may expire it only a TTL later.
		for _, k := range h.events() {
			if k.kind == evAcquire && k.token == tok && e.t2-k.t1 < int64(ttl) {
				t.Errorf("token %d acquired %v after the killed holder called Lock, before the TTL %v", e.token, time.Duration(e.t2-k.t1), ttl)
			}
		}
		waitHandoffs(share * (3*round + 1))

		// SIGSTOP past the TTL, then SIGCONT: the late write is refused.
		p, fid := start(url, 400, "5ms", false)
		tok = acqToken(p)
		if err := p.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		// A holder stopped inside the fence's critical section keeps the
		// next holder from announcing itself: resume it after a while
		// anyway (its write then lands before the newer holder's, and its
		// next one is refused).
		if _, ok := awaitAcquire(tok, 5*ttl); ok {
			time.Sleep(ttl / 2)
		}
		if err := p.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		f.frozen = append(f.frozen, time.Since(stopped))
		expect(p, fmt.Sprintf("rejected %d", tok))
		f.lateRefused++
		expect(p, fmt.Sprintf("lost %d ", tok))
		h.add(histEvent{kind: evKill, client: fid, t1: mono()}) // in case it acquired again
		p.Kill()
		waitHandoffs(share * (3*round + 2))

		// Stop the server a holder is connected to: its lease ends before
		// anyone else acquires.
		// The stream's leader in even rounds, a follower in odd ones.
		k := streamLeader(t, cl)
		if round%2 == 1 {
			k = (k + 1) % len(cl.Servers)
		}
		sp, sid := start(cl.Servers[k].URL(), 1000, "5ms", true)
		tok = acqToken(sp)
		stop := mono()
		cl.Stop(k)
		lost := strings.Fields(expect(sp, fmt.Sprintf("lost %d ", tok)))
		lostAt, _ := strconv.ParseInt(lost[2], 10, 64)
		dl, _ := strconv.ParseInt(lost[3], 10, 64)
		e = newerAcquire(tok)
		f.stops = append(f.stops, stopFigure{leader: round%2 == 0, lease: time.Duration(lostAt - stop), deadline: time.Duration(dl - stop), next: time.Duration(e.t2 - stop)})
		if lostAt >= e.t2 || dl >= e.t2 {
			t.Errorf("holder cut off from its server: lease ended %v (deadline %v) after server stop, token %d acquired %v after it",
				time.Duration(lostAt-stop), time.Duration(dl-stop), e.token, time.Duration(e.t2-stop))
		}
		h.add(histEvent{kind: evKill, client: sid, t1: mono()})
		sp.Kill()
		cl.Restart(k)
		cl.WaitLeader(t, 30*time.Second)
		waitHandoffs(share * (3*round + 3))
	}
	waitHandoffs(*faultHandoffs)
	h.ctl.Uint64(ctlStop * 8).Store(1)
	for _, p := range all { // no waiter left hanging: each takes the lock once more, then exits
		select {
		case <-p.Done():
			if err := p.Wait(t, time.Second); err != nil {
				t.Errorf("holder %d: %v", p.Pid(), err)
			}
		case <-time.After(30 * time.Second):
			_ = p.Cmd.Process.Signal(syscall.SIGQUIT) // its goroutines go to the log
			<-p.Done()
			t.Errorf("holder %d still running 30 s after the stop", p.Pid())
		}
	}
	if h.overflowed() {
		t.Fatal("history overflowed")
	}
	a := analyzeHistory(h.events())
	for _, err := range a.errs {
		t.Error(err)
	}
	if got := h.ctl.Uint64(ctlWrites * 8).Load(); got != uint64(a.accepted) {
		t.Errorf("counter %d, accepted writes %d", got, a.accepted)
	}
	if a.refused < f.lateRefused {
		t.Errorf("%d writes refused, %d frozen holders' late writes seen refused", a.refused, f.lateRefused)
	}
	res := checkLinearizable(a.ops, 2*time.Minute)
	if res != porcupine.Ok {
		t.Errorf("acquire/release history of %d operations: %v", len(a.ops), res)
	}
	t.Logf("TTL %v, %d rounds of faults: %d acquisitions (%d hand-offs between processes, tokens %d..%d), %d fenced writes accepted, %d refused (%d late writes of frozen holders), %d stale accepted, %d overlapping leases, linearizability (%d operations): %v; %v in all",
		ttl, *faultRounds, a.acquisitions, a.handoffs, a.first, a.last, a.accepted, a.refused, f.lateRefused, a.stale, a.overlaps, len(a.ops), res, time.Since(began).Round(time.Second))
	t.Log(f.String(ttl))
}

type stopFigure struct {
	leader                bool // the server stopped led the bucket's stream
	lease, deadline, next time.Duration
}

// streamLeader is the index of the server that leads the bucket's stream.
func streamLeader(t *testing.T, cl *natstest.Cluster) int {
	t.Helper()
	nc, err := nats.Connect(cl.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := js.Stream(ctx, "KV_"+BucketPrefix+"fault")
		cancel()
		if err == nil && st.CachedInfo().Cluster != nil {
			for i, s := range cl.Servers {
				if s.Running() && s.Name() == st.CachedInfo().Cluster.Leader {
					return i
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the bucket's stream has no leader")
	return 0
}

// faultFigures are the measured outcomes of the injected faults.
type faultFigures struct {
	takeover    []time.Duration // kill -9 to the next acquisition
	frozen      []time.Duration // how long frozen holders were stopped
	lateRefused int
	stops       []stopFigure // after the server stop: lease end, its deadline, next acquisition
}

func (f *faultFigures) String(ttl time.Duration) string {
	pct := func(d []time.Duration) string {
		if len(d) == 0 {
			return "-"
		}
		d = slices.Sorted(slices.Values(d))
		return fmt.Sprintf("p50 %v, max %v", d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kill -9 to the next acquisition (TTL %v): %s over %d kills; ", ttl, pct(f.takeover), len(f.takeover))
	fmt.Fprintf(&b, "%d holders frozen (%s), each late write refused; ", len(f.frozen), pct(f.frozen))
	for _, s := range f.stops {
		what := "follower"
		if s.leader {
			what = "stream leader"
		}
		fmt.Fprintf(&b, "%s stopped: the cut-off lease ended after %v (deadline %v), next acquisition after %v; ",
			what, s.lease.Round(time.Millisecond), s.deadline.Round(time.Millisecond), s.next.Round(time.Millisecond))
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// historyAnalysis is what analyzeHistory finds in a recorded history.
type historyAnalysis struct {
	acquisitions, handoffs int
	first, last            uint64 // tokens
	accepted, refused      int
	stale                  int // writes accepted with a token older than one announced before
	overlaps               int // leases believed valid while a newer one was held
	ops                    []porcupine.Operation
	errs                   []error
}

// never is the return time of an operation that never returned (a lease
// of a killed holder ends at some moment after the kill).
const never = int64(1) << 62

// analyzeHistory checks a history recorded in fence order (acquisitions
// and accepted writes are recorded under the fence): no write accepted
// with a token older than one announced before it, no two leases believed
// valid at once (a lease is believed valid from the return of Lock to
// the call of Release, or to its local deadline, or to the holder's kill),
// tokens strictly increasing in the order of acquisition; and it builds
// the acquire/release operations for the linearizability check.
func analyzeHistory(evs []histEvent) historyAnalysis {
	var a historyAnalysis
	type lease struct {
		client    uint64
		call, ret int64
		end, done int64 // belief ended at end; the holder knew it by done
		ended     bool
	}
	leases := map[uint64]*lease{}
	byClient := map[uint64]uint64{} // the client's latest token
	killed := map[uint64]int64{}
	var tokens []uint64
	newest := uint64(0)
	var prevClient uint64
	for _, e := range evs {
		l := leases[e.token]
		switch e.kind {
		case evAcquire:
			if l != nil {
				a.errs = append(a.errs, fmt.Errorf("token %d acquired twice", e.token))
				continue
			}
			leases[e.token] = &lease{client: e.client, call: e.t1, ret: e.t2, end: e.deadline}
			byClient[e.client] = e.token
			tokens = append(tokens, e.token)
			newest = max(newest, e.token)
			if a.acquisitions > 0 && e.client != prevClient {
				a.handoffs++
			}
			a.acquisitions++
			prevClient = e.client
		case evWrite:
			a.accepted++
			if e.token < newest {
				a.stale++
				a.errs = append(a.errs, fmt.Errorf("write with token %d accepted after token %d", e.token, newest))
			}
			if l != nil && e.valid {
				l.end = max(l.end, e.deadline)
			}
		case evReject:
			a.refused++
		case evRelease:
			if l == nil {
				a.errs = append(a.errs, fmt.Errorf("release of token %d never acquired", e.token))
				continue
			}
			l.end, l.done, l.ended = e.t1, e.t2, true
		case evLost:
			if l == nil {
				a.errs = append(a.errs, fmt.Errorf("loss of token %d never acquired", e.token))
				continue
			}
			l.end, l.done, l.ended = min(max(l.end, e.deadline), e.t1), e.t1, true
		case evKill:
			killed[e.client] = e.t1
		}
	}
	for c, k := range killed {
		if l := leases[byClient[c]]; l != nil && !l.ended {
			// Its deadline may have moved after its last write: a killed
			// holder is taken to have believed its lease until the kill.
			l.end, l.done, l.ended = k, never, true
		}
	}
	// Acquisition order is token order (among leases believed valid at
	// all: a holder that got its lease back from Lock after the lease's
	// deadline never believed it).
	var held []uint64
	for _, tok := range tokens {
		if l := leases[tok]; l.end > l.ret {
			held = append(held, tok)
		}
	}
	slices.SortFunc(held, func(x, y uint64) int { return cmp.Compare(leases[x].ret, leases[y].ret) })
	for i := 1; i < len(held); i++ {
		if held[i] <= held[i-1] {
			a.errs = append(a.errs, fmt.Errorf("token %d acquired after token %d", held[i], held[i-1]))
		}
	}
	slices.Sort(tokens)
	if len(tokens) > 0 {
		a.first, a.last = tokens[0], tokens[len(tokens)-1]
	}
	for i := 1; i < len(tokens); i++ {
		prev, next := leases[tokens[i-1]], leases[tokens[i]]
		if prev.end > next.ret {
			a.overlaps++
			a.errs = append(a.errs, fmt.Errorf("lease %d believed valid %v after lease %d began", tokens[i-1], time.Duration(prev.end-next.ret), tokens[i]))
		}
	}
	for tok, l := range leases {
		a.ops = append(a.ops, porcupine.Operation{ClientId: int(l.client), Input: lockOp{acquire: true, client: l.client}, Call: l.call, Output: tok, Return: l.ret})
		end, done := l.end, l.done
		if !l.ended { // still held when the history was read
			end, done = l.ret, never
		}
		a.ops = append(a.ops, porcupine.Operation{ClientId: int(l.client), Input: lockOp{client: l.client, token: tok}, Call: max(end, l.ret), Return: max(done, end, l.ret)})
	}
	return a
}

// checkLinearizable checks acquire/release operations against lockModel.
func checkLinearizable(ops []porcupine.Operation, timeout time.Duration) porcupine.CheckResult {
	return porcupine.CheckOperationsTimeout(lockModel, ops, timeout)
}

// lockOp is an acquisition (its output the token) or the end of a lease.
type lockOp struct {
	acquire bool
	client  uint64
	token   uint64 // of an end
}

type lockState struct {
	holder uint64 // 0: free
	token  uint64 // last token granted
}

// lockModel is a lock whose acquisitions carry increasing tokens: an
// acquisition needs the lock free and a token above every earlier one; a
// lease ends only if it is the one held.
var lockModel = porcupine.Model{
	Init: func() any { return lockState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in := state.(lockState), input.(lockOp)
		if in.acquire {
			tok := output.(uint64)
			if s.holder != 0 || tok <= s.token {
				return false, s
			}
			return true, lockState{holder: in.client, token: tok}
		}
		if s.holder != in.client || s.token != in.token {
			return false, s
		}
		return true, lockState{token: s.token}
	},
	DescribeOperation: func(input, output any) string {
		in := input.(lockOp)
		if in.acquire {
			return fmt.Sprintf("client %d acquires token %v", in.client, output)
		}
		return fmt.Sprintf("client %d ends token %d", in.client, in.token)
	},
}

// The checks find what they look for: overlapping leases, a token that
// goes back, a stale write accepted, a history that is not a lock's.
func TestHistoryChecks(t *testing.T) {
	ms := int64(time.Millisecond)
	good := []histEvent{
		{kind: evAcquire, client: 1, token: 10, t1: 0, t2: 1 * ms, deadline: 900 * ms},
		{kind: evWrite, client: 1, token: 10, t1: 2 * ms, deadline: 900 * ms, valid: true},
		{kind: evRelease, client: 1, token: 10, t1: 3 * ms, t2: 4 * ms},
		{kind: evAcquire, client: 2, token: 12, t1: 2 * ms, t2: 5 * ms, deadline: 900 * ms},
		{kind: evKill, client: 2, t1: 6 * ms},
		{kind: evAcquire, client: 3, token: 15, t1: 3 * ms, t2: 1500 * ms, deadline: 2400 * ms},
		{kind: evWrite, client: 3, token: 15, t1: 1501 * ms, deadline: 2400 * ms, valid: true},
		{kind: evReject, client: 4, token: 14, t1: 1502 * ms},
		{kind: evLost, client: 3, token: 15, t1: 2500 * ms, deadline: 2400 * ms},
	}
	a := analyzeHistory(good)
	if len(a.errs) != 0 || a.acquisitions != 3 || a.handoffs != 2 || a.accepted != 2 || a.refused != 1 {
		t.Fatalf("good history: %+v", a)
	}
	if res := checkLinearizable(a.ops, 10*time.Second); res != porcupine.Ok {
		t.Fatalf("good history: %v", res)
	}
	bad := map[string][]histEvent{
		// Client 2 gets the lock while client 1's lease runs to 900 ms.
		"overlap": {
			{kind: evAcquire, client: 1, token: 10, t1: 0, t2: 1 * ms, deadline: 900 * ms},
			{kind: evAcquire, client: 2, token: 12, t1: 2 * ms, t2: 5 * ms, deadline: 900 * ms},
			{kind: evLost, client: 1, token: 10, t1: 950 * ms, deadline: 900 * ms},
			{kind: evRelease, client: 2, token: 12, t1: 6 * ms, t2: 7 * ms},
		},
		// A token lower than the one before.
		"token back": {
			{kind: evAcquire, client: 1, token: 10, t1: 0, t2: 1 * ms, deadline: 900 * ms},
			{kind: evRelease, client: 1, token: 10, t1: 2 * ms, t2: 3 * ms},
			{kind: evAcquire, client: 2, token: 8, t1: 4 * ms, t2: 5 * ms, deadline: 900 * ms},
			{kind: evRelease, client: 2, token: 8, t1: 6 * ms, t2: 7 * ms},
		},
		// A write of token 10 accepted after token 12 was announced.
		"stale write": {
			{kind: evAcquire, client: 1, token: 10, t1: 0, t2: 1 * ms, deadline: 900 * ms},
			{kind: evLost, client: 1, token: 10, t1: 901 * ms, deadline: 900 * ms},
			{kind: evAcquire, client: 2, token: 12, t1: 2 * ms, t2: 1000 * ms, deadline: 1900 * ms},
			{kind: evWrite, client: 1, token: 10, t1: 1001 * ms},
			{kind: evRelease, client: 2, token: 12, t1: 1002 * ms, t2: 1003 * ms},
		},
	}
	for name, evs := range bad {
		a := analyzeHistory(evs)
		if len(a.errs) == 0 {
			t.Errorf("%s: no error found", name)
		}
		if name != "stale write" {
			if res := checkLinearizable(a.ops, 10*time.Second); res != porcupine.Illegal {
				t.Errorf("%s: linearizability %v, want Illegal", name, res)
			}
		}
	}
}
