//go:build linux

package ipc_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/shm"
)

// usage is what a process holds of the system: address space, mappings,
// descriptors, goroutines and threads.
type usage struct {
	VmSize     int64 `json:"vm_size"`      // bytes of address space (VmSize of /proc/self/status)
	Maps       int   `json:"maps"`         // lines of /proc/self/maps
	FDs        int   `json:"fds"`          // entries of /proc/self/fd
	Goroutines int   `json:"goroutines"`   // runtime.NumGoroutine
	Threads    int   `json:"threads"`      // Threads of /proc/self/status
	Committed  int64 `json:"committed_as"` // system-wide Committed_AS of /proc/meminfo, bytes (other processes move it too)
}

func (u usage) String() string {
	return fmt.Sprintf("VmSize %.1f MiB, %d maps, %d fds, %d goroutines, %d threads, Committed_AS %.1f MiB",
		float64(u.VmSize)/(1<<20), u.Maps, u.FDs, u.Goroutines, u.Threads, float64(u.Committed)/(1<<20))
}

// measure reads this process's usage.
func measure(t testing.TB) usage {
	t.Helper()
	var u usage
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	u.VmSize = procField(status, "VmSize:") << 10
	u.Threads = int(procField(status, "Threads:"))
	meminfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	u.Committed = procField(meminfo, "Committed_AS:") << 10
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	u.Maps = bytes.Count(maps, []byte{'\n'})
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	u.FDs = len(fds) - 1 // the descriptor ReadDir itself used
	u.Goroutines = runtime.NumGoroutine()
	return u
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

// Slack of the leak check: what N cycles may leave above the baseline. The
// runtime may grow its heap or stacks a little; a leak of one mapping,
// descriptor or goroutine per cycle exceeds these by far.
const (
	slackVm         = 48 << 20
	slackFDs        = 2
	slackGoroutines = 2
	slackMaps       = 16
)

// leakCase is one kind of resource a long-running process opens and
// closes again and again.
type leakCase struct {
	name string
	n    int // cycles
	// open returns a cycle: it opens the resource, uses it, closes it.
	open func(t *testing.T) func(t *testing.T)
}

// connCycle connects over tp to a listener in this process, exchanges a
// message both ways and closes both ends.
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
				t.Fatalf("Dial: %v", err)
			}
			r := <-acc
			if r.err != nil {
				c.Close()
				t.Fatalf("Accept: %v", r.err)
			}
			buf := make([]byte, 0, 16)
			if err := c.Send(ctx, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			if buf, err = r.c.Recv(ctx, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("server Recv = %q, %v", buf, err)
			}
			if err := r.c.Send(ctx, []byte("pong")); err != nil {
				t.Fatal(err)
			}
			if buf, err = c.Recv(ctx, buf); err != nil || string(buf) != "pong" {
				t.Fatalf("client Recv = %q, %v", buf, err)
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

// leakSegSize is the data size of the segments of the leak test: large
// enough that a mapping kept per closed segment shows far above slackVm.
const leakSegSize = 4 << 20

func segCycle(anonymous bool) func(t *testing.T) func(t *testing.T) {
	return func(t *testing.T) func(t *testing.T) {
		cfg := &shm.Config{Perm: 0o600, Slots: 4, Objects: 4}
		return func(t *testing.T) {
			var seg *shm.Segment
			var err error
			if anonymous {
				seg, err = shm.CreateAnonymous(leakSegSize, cfg)
			} else {
				name := ipctest.SegName(t)
				seg, err = shm.Create(name, leakSegSize, cfg)
				if err == nil {
					var other *shm.Segment
					if other, err = shm.Open(name); err == nil {
						err = other.Close()
					}
					if uerr := shm.Unlink(name); err == nil {
						err = uerr
					}
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := seg.Alloc("data", 4096); err != nil {
				t.Fatal(err)
			}
			if _, err := seg.Lookup("data"); err != nil {
				t.Fatal(err)
			}
			if err := seg.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestNoLeakAfterClose opens and closes connections of every transport
// with a resource per connection, and shared-memory segments, many times
// over, and checks that the process's address space, mappings,
// descriptors and goroutines come back to where they were. It is not
// parallel: descriptors and goroutines are counted for the whole process.
func TestNoLeakAfterClose(t *testing.T) {
	cases := []leakCase{
		{name: ipc.SHM, n: 64, open: connCycle(ipc.SHM)},
		{name: ipc.PosixMQ, n: 64, open: connCycle(ipc.PosixMQ)},
		{name: ipc.FIFO, n: 64, open: connCycle(ipc.FIFO)},
		{name: ipc.Unix, n: 64, open: connCycle(ipc.Unix)},
		{name: "segment-named", n: 64, open: segCycle(false)},
		{name: "segment-anonymous", n: 64, open: segCycle(true)},
	}
	for _, lc := range cases {
		t.Run(lc.name, func(t *testing.T) {
			cycle := lc.open(t)
			for range 3 { // warm up: first-use allocations of the runtime and the packages
				cycle(t)
			}
			base := settle(t, nil)
			for range lc.n {
				cycle(t)
			}
			after := settle(t, &base)
			t.Logf("%d cycles\nbefore: %v\nafter:  %v", lc.n, base, after)
			if d := after.VmSize - base.VmSize; d > slackVm {
				t.Errorf("address space grew by %.1f MiB over %d cycles (%.0f KiB a cycle)", float64(d)/(1<<20), lc.n, float64(d)/1024/float64(lc.n))
			}
			if d := after.Maps - base.Maps; d > slackMaps {
				t.Errorf("%d more mappings after %d cycles", d, lc.n)
			}
			if d := after.FDs - base.FDs; d > slackFDs {
				t.Errorf("%d more descriptors after %d cycles", d, lc.n)
			}
			if d := after.Goroutines - base.Goroutines; d > slackGoroutines {
				t.Errorf("%d more goroutines after %d cycles", d, lc.n)
			}
		})
	}
}

// settle measures once what is released asynchronously (goroutines that
// end after Close returns) has had time to go: with a baseline, it waits
// until the counts are back within the slack or a generous bound passes.
func settle(t *testing.T, base *usage) usage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		u := measure(t)
		if base == nil || time.Now().After(deadline) ||
			(u.FDs-base.FDs <= slackFDs && u.Goroutines-base.Goroutines <= slackGoroutines &&
				u.VmSize-base.VmSize <= slackVm && u.Maps-base.Maps <= slackMaps) {
			return u
		}
		time.Sleep(20 * time.Millisecond)
	}
}
