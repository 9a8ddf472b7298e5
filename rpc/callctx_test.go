package rpc

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

func newCallCtx(timeout time.Duration, md metadata.MD) *callCtx {
	st := &sstream{m: &method{full: "/s/m"}}
	st.cctx.st, st.cctx.md = st, md
	if timeout > 0 {
		st.cctx.deadline = time.Now().Add(timeout)
	}
	return &st.cctx
}

func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	default:
	}
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func TestCallCtxValues(t *testing.T) {
	if streamKey == nil || mdKey == nil {
		t.Fatalf("grpc's context keys not found: stream %v, metadata %v", streamKey, mdKey)
	}
	md := metadata.Pairs("k", "v")
	c := newCallCtx(0, md)
	if ts := grpc.ServerTransportStreamFromContext(c); ts == nil || ts.Method() != "/s/m" {
		t.Fatalf("transport stream %v", ts)
	}
	if got, ok := metadata.FromIncomingContext(c); !ok || got["k"][0] != "v" {
		t.Fatalf("incoming metadata %v %v", got, ok)
	}
	if _, ok := metadata.FromIncomingContext(newCallCtx(0, nil)); ok {
		t.Fatal("metadata without any sent")
	}
	type other struct{}
	if v := c.Value(other{}); v != nil {
		t.Fatalf("unknown key gave %v", v)
	}
	if _, ok := c.Deadline(); ok {
		t.Fatal("deadline without a timeout")
	}
}

func TestCallCtxCancel(t *testing.T) {
	c := newCallCtx(0, nil)
	child, stop := context.WithCancel(c)
	defer stop()
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })
	stopped := context.AfterFunc(c, func() { t.Error("stopped AfterFunc ran") })
	if !stopped() || stopped() {
		t.Fatal("stop did not report once that it stopped the function")
	}
	for range 100 { // derived and released: nothing stays behind
		_, cancel := context.WithTimeout(c, time.Hour)
		cancel()
	}
	c.mu.Lock()
	left := len(c.afters)
	c.mu.Unlock()
	if left != 2 { // the AfterFunc that runs below and child's
		t.Fatalf("%d functions registered, want 2", left)
	}
	if c.Err() != nil || child.Err() != nil {
		t.Fatal("ended before cancel")
	}
	done := c.Done()
	c.cancel(context.Canceled)
	c.cancel(context.DeadlineExceeded) // the first end stays
	if !closedWithin(done, time.Second) || !closedWithin(child.Done(), 5*time.Second) || !closedWithin(ran, 5*time.Second) {
		t.Fatal("Done, a derived context or an AfterFunc did not end")
	}
	if !errors.Is(c.Err(), context.Canceled) || !errors.Is(child.Err(), context.Canceled) {
		t.Fatalf("errors %v %v", c.Err(), child.Err())
	}
	// Asked for only after the end: closed at once, and AfterFunc runs.
	c2 := newCallCtx(0, nil)
	c2.cancel(context.Canceled)
	if !closedWithin(c2.Done(), 0) {
		t.Fatal("Done after the end not closed")
	}
	ran2 := make(chan struct{})
	c2.AfterFunc(func() { close(ran2) })
	if !closedWithin(ran2, 5*time.Second) {
		t.Fatal("AfterFunc after the end did not run")
	}
}

func TestCallCtxDeadline(t *testing.T) {
	// Err alone (nobody asked for Done) sees the deadline pass.
	c := newCallCtx(20*time.Millisecond, nil)
	if dl, ok := c.Deadline(); !ok || time.Until(dl) > 20*time.Millisecond {
		t.Fatalf("deadline %v %v", dl, ok)
	}
	if c.Err() != nil {
		t.Fatal("ended early")
	}
	for c.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) || !closedWithin(c.Done(), 0) {
		t.Fatalf("after the deadline: %v", c.Err())
	}
	// Done alone closes when the deadline passes, and so does a derived context.
	c = newCallCtx(20*time.Millisecond, nil)
	child, stop := context.WithTimeout(c, time.Hour)
	defer stop()
	if !closedWithin(c.Done(), 5*time.Second) || !closedWithin(child.Done(), 5*time.Second) {
		t.Fatal("Done did not close at the deadline")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Fatalf("errors %v %v", c.Err(), child.Err())
	}
	// A cancel before the deadline stops the timer and wins.
	c = newCallCtx(time.Hour, nil)
	done := c.Done()
	c.cancel(context.Canceled)
	if !closedWithin(done, 0) || !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("cancel before the deadline: %v", c.Err())
	}
}
