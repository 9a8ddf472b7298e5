//go:build linux

package ipc_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/shm"
)

// The leak checks: a long-running process that opens and closes
// connections and segments for ever must keep a constant footprint. They
// count what the process holds of the system (/proc/self), so they are not
// parallel.

var (
	leakSoak           = flag.Int("leak.soak", 0, "connections TestLeakSoak accepts from client processes and closes (0 skips it)")
	leakSoakTransports = flag.String("leak.soak.transports", "shm,posixmq,fifo,unix",
		"comma-separated transports of TestLeakSoak")
)

func init() {
	addPeers(ipctest.Peers{"leak-client": peerLeakClient})
}

// usage is what a process holds of the system: address space, mappings,
// commit charge, descriptors, goroutines and threads.
type usage struct {
	VmSize     int64 `json:"vm_size"`    // bytes of address space (VmSize of /proc/self/status)
	Maps       int   `json:"maps"`       // mappings (lines of /proc/self/maps)
	Commit     int64 `json:"commit"`     // bytes of this process's mappings charged to the commit limit ("ac" in /proc/self/smaps)
	RSS        int64 `json:"rss"`        // bytes resident (VmRSS)
	FDs        int   `json:"fds"`        // open descriptors (/proc/self/fd)
	Goroutines int   `json:"goroutines"` // runtime.NumGoroutine
	Threads    int   `json:"threads"`    // Threads of /proc/self/status (the runtime never ends one)
}

func (u usage) String() string {
	return fmt.Sprintf("VmSize %.1f MiB, %d mappings, commit %.1f MiB, RSS %.1f MiB, %d fds, %d goroutines, %d threads",
		mib(u.VmSize), u.Maps, mib(u.Commit), mib(u.RSS), u.FDs, u.Goroutines, u.Threads)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// measure reads this process's usage.
func measure(t testing.TB) usage {
	t.Helper()
	var u usage
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	u.VmSize = procField(status, "VmSize:") << 10
	u.RSS = procField(status, "VmRSS:") << 10
	u.Threads = int(procField(status, "Threads:"))
	if u.Maps, u.Commit, err = smaps(); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	u.FDs = len(fds) - 1 // the descriptor ReadDir itself used
	u.Goroutines = runtime.NumGoroutine()
	return u
}

// smaps counts this process's mappings and adds up the size of those the
// kernel charges to the commit limit (Committed_AS): the ones whose VmFlags
// show "ac" (accountable: private, writable, and not MAP_NORESERVE).
func smaps() (maps int, commit int64, err error) {
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, 0, err
	}
	var size int64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("Size:")):
			size = procField(line, "Size:") << 10
		case bytes.HasPrefix(line, []byte("VmFlags:")):
			maps++
			for _, f := range bytes.Fields(line[len("VmFlags:"):]) {
				if string(f) == "ac" {
					commit += size
				}
			}
		}
	}
	return maps, commit, sc.Err()
}

// procField returns the first number after key in a /proc file of
// "Key: value" lines, or -1.
func procField(b []byte, key string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(key)) {
			continue
		}
		f := bytes.Fields(line[len(key):])
		if len(f) == 0 {
			return -1
		}
		v, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return -1
		}
		return v
	}
	return -1
}

// slack is what many cycles may leave above the baseline. The Go runtime
// reserves its heap in 64 MiB arenas and never gives back a thread (8 MiB
// of stack each under the race detector), so address space and commit
// charge may step up by one arena or a few stacks; a cycle that keeps one
// segment (megabytes) or one descriptor or goroutine exceeds it by far
// after a few hundred cycles.
type slack struct {
	vm, commit int64
	maps, fds  int
	goroutines int
}

var leakSlack = slack{vm: 160 << 20, commit: 160 << 20, maps: 24, fds: 2, goroutines: 2}

// exceeded describes what of after is more than s above base; keepVM
// leaves address space and mappings out.
func (s slack) exceeded(base, after usage, n int, keepVM bool) []string {
	var out []string
	if d := after.VmSize - base.VmSize; d > s.vm && !keepVM {
		out = append(out, fmt.Sprintf("address space grew by %.1f MiB over %d cycles (%.0f KiB a cycle)", mib(d), n, float64(d)/1024/float64(n)))
	}
	if d := after.Maps - base.Maps; d > s.maps && !keepVM {
		out = append(out, fmt.Sprintf("%d more mappings after %d cycles", d, n))
	}
	if d := after.Commit - base.Commit; d > s.commit {
		out = append(out, fmt.Sprintf("commit charge grew by %.1f MiB over %d cycles (%.0f KiB a cycle)", mib(d), n, float64(d)/1024/float64(n)))
	}
	if d := after.FDs - base.FDs; d > s.fds {
		out = append(out, fmt.Sprintf("%d more descriptors after %d cycles", d, n))
	}
	if d := after.Goroutines - base.Goroutines; d > s.goroutines {
		out = append(out, fmt.Sprintf("%d more goroutines after %d cycles", d, n))
	}
	return out
}

// settle measures once what is released asynchronously (goroutines that
// end after Close returns) has had time to go: with a baseline, it polls
// until usage is back within the slack or a generous bound passes.
func settle(t testing.TB, base *usage, n int, keepVM bool) usage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		u := measure(t)
		if base == nil || time.Now().After(deadline) || len(leakSlack.exceeded(*base, u, n, keepVM)) == 0 {
			return u
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leakCase is one kind of resource a long-running process opens and
// closes again and again.
type leakCase struct {
	name string
	n    int // cycles
	// keepVM: closing leaves the address range behind by design (a
	// segment whose memory was handed out, see shm.Segment.Close); all
	// the rest must still come back.
	keepVM bool
	// setup returns a cycle: it opens the resource, uses it, closes it.
	setup func(t *testing.T) func(t *testing.T)
}

// connCycle connects over the transport to a listener in this process,
// exchanges a message both ways and closes both ends.
func connCycle(name string) func(t *testing.T) func(t *testing.T) {
	return func(t *testing.T) func(t *testing.T) {
		tp := transportByName(name)
		tp.need(t)
		cfg := tp.config(0)
		l, addr := tp.listen(t, cfg)
		return func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
			defer cancel()
			type res struct {
				c   ipc.Conn
				err error
			}
			acc := make(chan res, 1)
			go func() {
				c, err := l.AcceptConn(ctx)
				acc <- res{c, err}
			}()
			c, err := ipc.Dial(ctx, addr, cfg)
			if err != nil {
				<-acc
				t.Fatalf("Dial: %v", err)
			}
			r := <-acc
			if r.err != nil {
				c.Close()
				t.Fatalf("Accept: %v", r.err)
			}
			defer r.c.Close()
			defer c.Close()
			if err := pingPong(ctx, c, r.c); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("client Close: %v", err)
			}
			if err := r.c.Close(); err != nil {
				t.Fatalf("server Close: %v", err)
			}
		}
	}
}

// pingPong sends a message from a to b and one back.
func pingPong(ctx context.Context, a, b ipc.Conn) error {
	buf := make([]byte, 0, 16)
	if err := a.Send(ctx, []byte("ping")); err != nil {
		return err
	}
	buf, err := b.Recv(ctx, buf)
	if err != nil || string(buf) != "ping" {
		return fmt.Errorf("Recv = %q, %v", buf, err)
	}
	if err := b.Send(ctx, []byte("pong")); err != nil {
		return err
	}
	if buf, err = a.Recv(ctx, buf); err != nil || string(buf) != "pong" {
		return fmt.Errorf("Recv = %q, %v", buf, err)
	}
	return nil
}

// leakSegSize is the data size of the segments of the leak test: large
// enough that a mapping kept per closed segment shows far above the slack.
const leakSegSize = 4 << 20

// segCycle creates a segment, attaches a second handle to it (Open, or
// OpenFile of the anonymous segment's file), allocates and looks up an
// object and closes both handles. With views it also writes through a
// slice and an atomic view of the object, as users of the memory do.
func segCycle(anonymous, views bool) func(t *testing.T) func(t *testing.T) {
	return func(t *testing.T) func(t *testing.T) {
		cfg := &shm.Config{Perm: 0o600, Slots: 4, Objects: 4}
		return func(t *testing.T) {
			var seg, other *shm.Segment
			var err error
			if anonymous {
				if seg, err = shm.CreateAnonymous(leakSegSize, cfg); err == nil {
					var fd int
					if fd, err = unix.Dup(int(seg.File().Fd())); err == nil {
						other, err = shm.OpenFile(os.NewFile(uintptr(fd), "segment"))
					}
				}
			} else {
				name := ipctest.SegName(t)
				if seg, err = shm.Create(name, leakSegSize, cfg); err == nil {
					other, err = shm.Open(name)
					if uerr := shm.Unlink(name); err == nil {
						err = uerr
					}
				}
			}
			if err != nil {
				if seg != nil {
					seg.Close()
				}
				t.Fatal(err)
			}
			r, err := seg.Alloc("data", 1<<20)
			if err == nil {
				_, err = other.Lookup("data")
			}
			if err == nil && views {
				b := r.Bytes()
				clear(b[:64<<10]) // touch some pages
				r.Uint64(64).Add(1)
				var o shm.Region
				if o, err = other.Lookup("data"); err == nil && o.Uint64(64).Load() != 1 {
					err = errors.New("the second handle does not see the first one's write")
				}
			}
			cerr := other.Close()
			if err2 := seg.Close(); cerr == nil {
				cerr = err2
			}
			if err != nil {
				t.Fatal(err)
			}
			if cerr != nil {
				t.Fatalf("Close: %v", cerr)
			}
		}
	}
}

// TestNoLeakAfterClose opens and closes connections of every transport
// with a resource per connection, and shared-memory segments, hundreds of
// times, and checks that the process's address space, mappings, commit
// charge, descriptors and goroutines come back to the baseline within a
// constant (leakSlack). A segment whose memory was handed out as slices or
// views keeps its address range by design (a stale view must not fault),
// so for it only the rest is checked.
func TestNoLeakAfterClose(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 60
	}
	cases := []leakCase{
		{name: ipc.SHM, n: n, setup: connCycle(ipc.SHM)},
		{name: ipc.PosixMQ, n: n, setup: connCycle(ipc.PosixMQ)},
		{name: ipc.FIFO, n: n, setup: connCycle(ipc.FIFO)},
		{name: ipc.Unix, n: n, setup: connCycle(ipc.Unix)},
		{name: "segment-named", n: n, setup: segCycle(false, false)},
		{name: "segment-anonymous", n: n, setup: segCycle(true, false)},
		{name: "segment-views", n: n, keepVM: true, setup: segCycle(true, true)},
	}
	for _, lc := range cases {
		t.Run(lc.name, func(t *testing.T) {
			cycle := lc.setup(t)
			for range 20 { // warm up: first-use allocations of the runtime and the packages
				cycle(t)
			}
			base := settle(t, nil, 0, false)
			for range lc.n {
				cycle(t)
			}
			after := settle(t, &base, lc.n, lc.keepVM)
			t.Logf("%d cycles\nbefore: %v\nafter:  %v", lc.n, base, after)
			for _, e := range leakSlack.exceeded(base, after, lc.n, lc.keepVM) {
				t.Error(e)
			}
		})
	}
}

// soakReport is what TestLeakSoak logs, one JSON line per transport.
type soakReport struct {
	Transport string        `json:"transport"`
	Conns     int           `json:"conns"`
	Clients   int           `json:"clients"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	Before    usage         `json:"before"`
	After     usage         `json:"after"`
	Peak      usage         `json:"peak"` // the largest VmSize seen while it ran
}

// TestLeakSoak is the long run of the leak check, behind -leak.soak=N: a
// server in this process accepts N connections per transport from client
// processes (this test binary re-executed, one per CPU), which each
// exchange a message and close; the server closes its end when the client
// is gone. It logs the usage before, during and after, and checks it as
// TestNoLeakAfterClose does.
//
//	go test -run TestLeakSoak -leak.soak=100000 -timeout 1h -v .
func TestLeakSoak(t *testing.T) {
	if *leakSoak <= 0 {
		t.Skip("soak off: -leak.soak=N runs it with N connections per transport")
	}
	for _, name := range bytes.Split([]byte(*leakSoakTransports), []byte(",")) {
		t.Run(string(name), func(t *testing.T) { soak(t, string(name), *leakSoak) })
	}
}

func soak(t *testing.T, name string, n int) {
	tp := transportByName(name)
	tp.need(t)
	cfg := tp.config(0)
	l, addr := tp.listen(t, cfg)
	clients := max(2, runtime.NumCPU())
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, 1)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
		cancel()
	}
	// serve accepts m connections and serves each in a goroutine: it
	// answers the ping and closes once the client has gone.
	serve := func(m int) {
		for range m {
			c, err := l.AcceptConn(ctx)
			if err != nil {
				report(fmt.Errorf("AcceptConn: %w", err))
				return
			}
			wg.Go(func() {
				defer c.Close()
				buf, err := c.Recv(ctx, nil)
				if err == nil {
					err = c.Send(ctx, buf)
				}
				if err == nil {
					if _, err = c.Recv(ctx, buf); errors.Is(err, io.EOF) {
						err = nil
					}
				}
				if err != nil {
					report(fmt.Errorf("server side: %w", err))
				}
			})
		}
	}
	start := func(m int) []*ipctest.Peer {
		var ps []*ipctest.Peer
		for i := range clients {
			k := m / clients
			if i < m%clients {
				k++
			}
			ps = append(ps, ipctest.StartPeer(t, "leak-client", name, addr, strconv.Itoa(k)))
		}
		return ps
	}
	finish := func(ps []*ipctest.Peer) {
		for _, p := range ps {
			if err := p.Wait(t, time.Hour); err != nil {
				report(fmt.Errorf("client %d: %w", p.Pid(), err))
			}
		}
		wg.Wait()
	}

	warm := min(n, 200)
	ps := start(warm)
	serve(warm)
	finish(ps)
	base := settle(t, nil, 0, false)

	rep := soakReport{Transport: name, Conns: n, Clients: clients, Before: base, Peak: base}
	t0 := time.Now()
	ps = start(n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(n)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			if u := measure(t); u.VmSize > rep.Peak.VmSize {
				rep.Peak = u
			}
		}
	}
	finish(ps)
	rep.Elapsed = time.Since(t0)
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	rep.After = settle(t, &base, n, false)
	js, _ := json.Marshal(rep)
	t.Logf("%d connections in %v (%.0f/s), %d client processes\nbefore: %v\npeak:   %v\nafter:  %v\n%s",
		n, rep.Elapsed.Round(time.Millisecond), float64(n)/rep.Elapsed.Seconds(), clients, base, rep.Peak, rep.After, js)
	for _, e := range leakSlack.exceeded(base, rep.After, n, false) {
		t.Error(e)
	}
}

// peerLeakClient is peer "leak-client": it makes args[2] connections one
// after another to the listener at args[1] over transport args[0], each
// sending a ping, reading the answer and closing.
func peerLeakClient(args []string) int {
	if len(args) != 3 {
		return ipctest.Fail("leak-client: want transport address count, got %q", args)
	}
	n, err := strconv.Atoi(args[2])
	if err != nil {
		return ipctest.Fail("leak-client: %v", err)
	}
	cfg := configFor(args[0], 0)
	ctx := context.Background()
	buf := make([]byte, 0, 16)
	for i := range n {
		cctx, cancel := context.WithTimeout(ctx, peerTimeout)
		c, err := ipc.Dial(cctx, args[1], cfg)
		if err == nil {
			if err = c.Send(cctx, []byte("ping")); err == nil {
				buf, err = c.Recv(cctx, buf)
			}
			if cerr := c.Close(); err == nil {
				err = cerr
			}
		}
		cancel()
		if err != nil {
			return ipctest.Fail("leak-client: connection %d of %d: %v", i, n, err)
		}
	}
	return 0
}
