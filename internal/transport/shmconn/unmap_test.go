//go:build linux

package shmconn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// mapped reports whether addr lies in a mapping of this process.
func mapped(t *testing.T, addr uintptr) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var lo, hi uintptr
		if _, err := fmt.Sscanf(string(bytes.Fields(sc.Bytes())[0]), "%x-%x", &lo, &hi); err != nil {
			t.Fatalf("parsing %q: %v", sc.Text(), err)
		}
		if lo <= addr && addr < hi {
			return true
		}
	}
	return false
}

func segAddr(c *Conn) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(c.seg.Mem()))) }

// TestCloseUnmaps checks that Close gives the segment's address range back
// at once when no call runs, and that a connection reads nothing and
// faults nowhere afterwards.
func TestCloseUnmaps(t *testing.T) {
	srv, cli := pair(t, opts(4096))
	if err := cli.Send(bg, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Recv(bg, nil); err != nil {
		t.Fatal(err)
	}
	as, ac := segAddr(srv), segAddr(cli)
	if !mapped(t, as) || !mapped(t, ac) {
		t.Fatal("the segments of a live connection are not mapped")
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if mapped(t, as) || mapped(t, ac) {
		t.Error("a segment is still mapped after Close")
	}
	// Every call on the closed connection returns net.ErrClosed without
	// touching the rings (it would fault).
	if err := srv.Send(bg, []byte("x")); err != net.ErrClosed {
		t.Errorf("Send: %v", err)
	}
	if _, err := srv.Recv(bg, nil); err != net.ErrClosed {
		t.Errorf("Recv: %v", err)
	}
	if _, err := srv.Reserve(bg, 8); err != net.ErrClosed {
		t.Errorf("Reserve: %v", err)
	}
	if _, err := srv.RecvInPlace(bg); err != net.ErrClosed {
		t.Errorf("RecvInPlace: %v", err)
	}
	if err := srv.SetDeadline(time.Now()); err != net.ErrClosed {
		t.Errorf("SetDeadline: %v", err)
	}
	srv.wakeAll() // what a deadline timer that fires late does
}

// TestCloseWhileZeroCopyHeld closes connections whose zero-copy memory is
// held: until Commit or Release that memory reads as zeros and takes
// writes without faulting, and Commit or Release then unmaps it.
func TestCloseWhileZeroCopyHeld(t *testing.T) {
	srv, cli := pair(t, opts(4096))
	if err := cli.Send(bg, []byte("held")); err != nil {
		t.Fatal(err)
	}
	m, err := srv.RecvInPlace(bg)
	if err != nil || string(m) != "held" {
		t.Fatalf("RecvInPlace: %q %v", m, err)
	}
	p, err := cli.Reserve(bg, 64)
	if err != nil {
		t.Fatal(err)
	}
	as, ac := segAddr(srv), segAddr(cli)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m, make([]byte, 4)) {
		t.Errorf("a held message reads %q after Close, want zeros", m)
	}
	copy(p, "late write") // never faults, reaches no segment
	if !mapped(t, as) || !mapped(t, ac) {
		t.Fatal("the memory of a held message or reservation is unmapped before Release and Commit")
	}
	if err := srv.Release(); err != net.ErrClosed {
		t.Errorf("Release after Close: %v", err)
	}
	if err := cli.Commit(10); err != net.ErrClosed {
		t.Errorf("Commit after Close: %v", err)
	}
	if !srv.unmapped.Load() || !cli.unmapped.Load() {
		t.Error("Release and Commit after Close did not unmap the segment")
	}
	if mapped(t, as) || mapped(t, ac) {
		t.Error("a segment is still mapped after Release and Commit")
	}
}

// TestCloseRacingCalls closes both ends of connections at random moments
// while senders, receivers with contexts that end and deadline changes run
// on them: no call may fault, and once all calls have returned every
// segment must be unmapped.
func TestCloseRacingCalls(t *testing.T) {
	rounds := 60
	if testing.Short() {
		rounds = 15
	}
	for i := range rounds {
		srv, cli := pair(t, opts(4096))
		ctx, cancel := context.WithCancel(bg)
		var wg sync.WaitGroup
		wg.Go(func() { // fills the ring: Send waits for room
			msg := make([]byte, 300)
			for cli.Send(ctx, msg) == nil {
			}
		})
		wg.Go(func() { // reads slowly, in place and not
			for j := 0; ; j++ {
				var err error
				if j%2 == 0 {
					_, err = srv.Recv(ctx, nil)
				} else if _, err = srv.RecvInPlace(ctx); err == nil {
					err = srv.Release()
				}
				if err != nil {
					return
				}
				if j%8 == 0 {
					time.Sleep(50 * time.Microsecond)
				}
			}
		})
		wg.Go(func() { // waits on the other ring, which stays empty
			for {
				if _, err := cli.Recv(ctx, nil); errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) {
					return
				}
			}
		})
		wg.Go(func() { // moves the deadline: its timer wakes the waiters
			for srv.SetDeadline(time.Now().Add(time.Duration(rand.IntN(300))*time.Microsecond)) == nil &&
				cli.SetDeadline(time.Now().Add(time.Duration(rand.IntN(300))*time.Microsecond)) == nil {
				time.Sleep(100 * time.Microsecond)
			}
		})
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // some moment of the exchange
		var cw sync.WaitGroup
		if i%3 == 0 {
			cw.Go(cancel) // contexts end as the connections close
		}
		cw.Go(func() { srv.Close() })
		cw.Go(func() { cli.Close() })
		cw.Wait()
		cancel()
		wg.Wait()
		// A deadline timer that fired as Close ran may still be waking
		// the waiters; it unmaps when it is done.
		for end := time.Now().Add(5 * time.Second); !srv.unmapped.Load() || !cli.unmapped.Load(); time.Sleep(time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("round %d: a segment is still mapped once every call has returned (use %d and %d)",
					i, srv.use.Load(), cli.use.Load())
			}
		}
	}
}
