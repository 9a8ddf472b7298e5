package ipc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/kwait"
	"github.com/ipcgo/ipc/internal/transport"
)

// Threads held by idle waiters. A goroutine blocked in Recv on a
// connection nobody writes to should hold no thread, as one blocked in a
// net.Conn's Read holds none: Go's runtime keeps every thread it ever
// made, so a process whose waiters each took a thread for a moment keeps
// those threads. The measurement runs in a process of its own (peer
// "idle-threads"), so that the threads of other tests do not count: it
// first blocks n goroutines in Read on n idle net.Conn (Unix socket pairs),
// the baseline, then n goroutines in Recv on n idle connections of the
// transport, and reports the process's thread count after each, and
// again a while later. Then it sends one message on every connection and
// checks that every waiter got it.

func init() {
	addPeers(ipctest.Peers{"idle-threads": peerIdleThreads})
}

// idleThreads is what peer "idle-threads" reports.
type idleThreads struct {
	Transport string `json:"transport"`
	N         int    `json:"n"`
	Busy      bool   `json:"busy"`   // each waiter got a message a moment before it began to wait
	Start     int    `json:"start"`  // threads before anything
	Base      int    `json:"base"`   // with n goroutines in net.Conn Read
	Ready     int    `json:"ready"`  // with the n connections made, before the waiters
	Peak      int    `json:"peak"`   // with n goroutines in Recv on the transport, once settled
	Later     int    `json:"later"`  // the same, hold later
	SetUp     string `json:"set_up"` // time to make the n connections
	Woken     string `json:"woken"`  // time for a message to reach every waiter
	Error     string `json:"error,omitempty"`
}

// threadCount returns the number of threads of this process.
func threadCount() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// settleThreads waits until all n waiters have started and the thread
// count has not changed for a while (a waiter that holds a thread does so
// for at most a few 10 ms slices), and returns it.
func settleThreads(started *atomic.Int64, n int) int {
	for started.Load() < int64(n) {
		time.Sleep(time.Millisecond)
	}
	last, since := threadCount(), time.Now()
	for time.Since(since) < 100*time.Millisecond {
		time.Sleep(5 * time.Millisecond)
		if c := threadCount(); c != last {
			last, since = c, time.Now()
		}
	}
	return last
}

// peerIdleThreads: args transport n hold busy. It prints one idleThreads
// in JSON.
func peerIdleThreads(args []string) int {
	n, _ := strconv.Atoi(args[1])
	hold, _ := time.ParseDuration(args[2])
	r := idleThreads{Transport: args[0], N: n, Busy: args[3] == "busy", Start: threadCount()}
	if err := measureIdle(&r, hold); err != nil {
		r.Error = err.Error()
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	return 0
}

func measureIdle(r *idleThreads, hold time.Duration) error {
	base, err := idleBaseline(r.N)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	r.Base = base
	t0 := time.Now()
	pairs, cleanup, err := idlePairs(r.Transport, r.N)
	defer cleanup()
	if err != nil {
		return err
	}
	r.SetUp = time.Since(t0).Round(time.Millisecond).String()
	r.Ready = threadCount()
	var started, first atomic.Int64
	errs := make(chan error, r.N)
	for _, p := range pairs {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if r.Busy {
				first.Add(1)
				if m, err := p[0].Recv(ctx, nil); err != nil || string(m) != "go" {
					errs <- fmt.Errorf("first message: %q, %v", m, err)
					started.Add(1)
					return
				}
			}
			started.Add(1)
			m, err := p[0].Recv(ctx, nil)
			if err == nil && string(m) != "wake" {
				err = fmt.Errorf("got %q", m)
			}
			errs <- err
		}()
	}
	if r.Busy {
		// All wait for a first message, then get it at about the same
		// time, and begin to wait again at once: many busy connections.
		settleThreads(&first, r.N)
		for _, p := range pairs {
			if err := p[1].Send(context.Background(), []byte("go")); err != nil {
				return fmt.Errorf("send: %w", err)
			}
		}
	}
	r.Peak = settleThreads(&started, r.N)
	time.Sleep(hold)
	r.Later = threadCount()
	t1 := time.Now()
	for _, p := range pairs {
		if err := p[1].Send(context.Background(), []byte("wake")); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	for range pairs {
		if err := <-errs; err != nil {
			return fmt.Errorf("recv: %w", err)
		}
	}
	r.Woken = time.Since(t1).Round(time.Millisecond).String()
	return nil
}

// idleBaseline blocks n goroutines in Read on n idle Unix socket pairs of
// the standard library and returns the thread count then.
func idleBaseline(n int) (int, error) {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, err
		}
		for _, fd := range fds {
			f := os.NewFile(uintptr(fd), "socketpair")
			c, err := net.FileConn(f)
			f.Close()
			if err != nil {
				return 0, err
			}
			conns = append(conns, c)
		}
	}
	var started atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < len(conns); i += 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Add(1)
			var b [1]byte
			_, _ = conns[i].Read(b[:])
		}()
	}
	th := settleThreads(&started, n)
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	conns = nil
	return th, nil
}

// idlePairs makes n connections of the transport: in each pair, [0] is the
// end that waits in Recv, [1] the end that sends.
func idlePairs(name string, n int) (pairs [][2]ipc.Conn, cleanup func(), err error) {
	var closers []func()
	cleanup = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if name == ipc.Pipe {
		// The pipe transport connects a parent and its child; its
		// descriptors wait as a FIFO's do. A pipe to itself stands in.
		for range n {
			r, w, err := transport.Pipe()
			if err != nil {
				return pairs, cleanup, err
			}
			c := transport.NewStreamConn(r, w, 1<<20, r, w)
			closers = append(closers, func() { c.Close() })
			pairs = append(pairs, [2]ipc.Conn{c, c})
		}
		return pairs, cleanup, nil
	}
	cfg := configFor(name, 0)
	switch name {
	case ipc.PosixMQ:
		cfg.QueueMsgSize, cfg.QueueDepth = 256, 2
	case ipc.SHM:
		cfg.RingSize = 4096
	}
	var addr string
	switch name {
	case ipc.TCP:
		addr = "tcp://127.0.0.1:0"
	case ipc.PosixMQ:
		addr = fmt.Sprintf("posixmq:///ipctest-idle-%d", os.Getpid())
	default:
		dir, err := os.MkdirTemp("", "ipci")
		if err != nil {
			return pairs, cleanup, err
		}
		closers = append(closers, func() { os.RemoveAll(dir) })
		addr = name + "://" + filepath.Join(dir, "l")
	}
	l, err := ipc.Listen(addr, cfg)
	if err != nil {
		return pairs, cleanup, err
	}
	closers = append(closers, func() { l.Close() })
	if name == ipc.TCP {
		addr = l.Addr().String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	accepted := make(chan ipc.Conn, n)
	acceptErr := make(chan error, 1)
	go func() {
		for range n {
			c, err := l.AcceptConn(ctx)
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
		acceptErr <- nil
	}()
	for range n {
		c, err := ipc.Dial(ctx, addr, cfg)
		if err != nil {
			cancel()
			<-acceptErr
			return pairs, cleanup, fmt.Errorf("dial: %w", err)
		}
		closers = append(closers, func() { c.Close() })
		pairs = append(pairs, [2]ipc.Conn{c, nil})
	}
	if err := <-acceptErr; err != nil {
		return pairs, cleanup, fmt.Errorf("accept: %w", err)
	}
	// Match the ends by a first message from the server side, so that
	// the waiters' connections have had traffic once, as a server's have.
	byID := map[string]int{}
	for i := range n {
		c := <-accepted
		closers = append(closers, func() { c.Close() })
		id := strconv.Itoa(i)
		if err := c.Send(ctx, []byte(id)); err != nil {
			return pairs, cleanup, err
		}
		byID[id] = i
		pairs[i][1] = c
	}
	var buf []byte
	sorted := make([][2]ipc.Conn, n)
	for _, p := range pairs {
		m, err := p[0].Recv(ctx, buf)
		if err != nil {
			return pairs, cleanup, err
		}
		i, ok := byID[string(m)]
		if !ok {
			return pairs, cleanup, fmt.Errorf("unknown id %q", m)
		}
		sorted[i] = [2]ipc.Conn{p[0], pairs[i][1]}
		buf = m[:0]
	}
	return sorted, cleanup, nil
}

// runIdleThreads runs peer "idle-threads" and returns its report.
func runIdleThreads(t testing.TB, name string, n int, hold time.Duration, busy bool) idleThreads {
	t.Helper()
	mode := "idle"
	if busy {
		mode = "busy"
	}
	p := ipctest.StartPeer(t, "idle-threads", name, strconv.Itoa(n), hold.String(), mode)
	line := p.Line(t, 2*time.Minute)
	var r idleThreads
	if err := json.NewDecoder(bytes.NewReader([]byte(line))).Decode(&r); err != nil {
		t.Fatalf("peer said %q: %v", line, err)
	}
	if r.Error != "" {
		t.Fatalf("%s: %s", name, r.Error)
	}
	return r
}

// idleSlack is how many threads over the baseline n idle waiters may
// add: the few that in-thread waits may hold at once (kwait.Max), and a
// few for the runtime.
var idleSlack = int(kwait.Max) + 4

// TestIdleThreads: goroutines blocked in Recv on idle connections hold no
// more threads than as many blocked in a net.Conn's Read, give or take a
// few; also when each connection had a message a moment before (busy), as
// many as kwait allows wait in their threads, and no more.
func TestIdleThreads(t *testing.T) {
	cases := []struct {
		name string
		n    int
		busy bool
	}{
		{ipc.Unix, 500, false},
		{ipc.Unix, 300, true},
		{ipc.UnixPacket, 300, false},
		{ipc.TCP, 300, false},
		{ipc.FIFO, 300, false},
		{ipc.Pipe, 300, true},
		// Few: POSIX queues are limited to 256 on the system (queues_max).
		{ipc.PosixMQ, 24, false},
		{ipc.PosixMQ, 24, true},
		{ipc.SHM, 100, false},
		{ipc.SHM, 100, true},
	}
	for _, c := range cases {
		name := c.name
		if c.busy {
			name += "/busy"
		}
		t.Run(name, func(t *testing.T) {
			transportByName(c.name).need(t)
			r := runIdleThreads(t, c.name, c.n, 0, c.busy)
			t.Logf("%d waiters: threads %d at start, %d with net.Conn, %d with the connections made, %d with %s", r.N, r.Start, r.Base, r.Ready, r.Peak, name)
			// Making the connections may take threads of its own (shm's
			// set-up does): the waits are measured from there.
			if from := max(r.Base, r.Ready); r.Peak > from+idleSlack {
				t.Errorf("%d goroutines in Recv on idle %s connections: %d threads, %d with net.Conn, %d before the waits (want at most %d more)",
					r.N, name, r.Peak, r.Base, r.Ready, idleSlack)
			}
		})
	}
}

// BenchmarkIdleThreads reports the threads of a process with 4,000
// goroutines blocked in Recv on as many idle connections (fewer where the
// system's limits say so), against as many in net.Conn's Read; busy: each
// had a message a moment before. Run it alone:
//
//	go test -run '^$' -bench IdleThreads -benchtime 1x .
func BenchmarkIdleThreads(b *testing.B) {
	for _, c := range []struct {
		name string
		n    int
		busy bool
	}{
		{ipc.Unix, 4000, false}, {ipc.Unix, 4000, true}, {ipc.UnixPacket, 4000, false},
		{ipc.TCP, 4000, false}, {ipc.FIFO, 2000, false}, {ipc.Pipe, 4000, false},
		{ipc.PosixMQ, 100, false}, {ipc.PosixMQ, 100, true}, {ipc.SHM, 1000, false}, {ipc.SHM, 1000, true},
	} {
		name := c.name
		if c.busy {
			name += "/busy"
		}
		b.Run(name, func(b *testing.B) {
			var r idleThreads
			for b.Loop() {
				r = runIdleThreads(b, c.name, c.n, time.Second, c.busy)
			}
			b.ReportMetric(float64(r.N), "waiters")
			b.ReportMetric(float64(r.Start), "threads-start")
			b.ReportMetric(float64(r.Base), "threads-netconn")
			b.ReportMetric(float64(r.Ready), "threads-conns")
			b.ReportMetric(float64(r.Peak), "threads")
			b.ReportMetric(float64(r.Later), "threads-1s")
			b.Logf("%+v", r)
		})
	}
}
