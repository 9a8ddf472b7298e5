package transport

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// pipeConn is a real connection over an os.Pipe, for the Backlog to hold.
func pipeConn(t *testing.T) Conn {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return NewStreamConn(r, w, 1<<10, r, w)
}

// TestBacklogLimit: at most MaxPendingSetups connections are held, pending
// or ready; beyond, Go refuses at once; Accept frees a slot; a set-up that
// ends with its context counts as timed out, one that fails as failed.
func TestBacklogLimit(t *testing.T) {
	b := NewBacklog(&Options{MaxPendingSetups: 2, SetupTimeout: 50 * time.Millisecond})
	release := make(chan struct{})
	slow := func(ctx context.Context) (Conn, error) {
		select {
		case <-release:
			return pipeConn(t), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	refused := 0
	refuse := func() { refused++ }
	// One set-up waits past its deadline, one is released and becomes ready.
	if !b.Go(func(ctx context.Context) (Conn, error) { <-ctx.Done(); return nil, ctx.Err() }, refuse) || !b.Go(slow, refuse) {
		t.Fatal("Go refused a set-up below the limit")
	}
	if b.Go(slow, refuse) || refused != 1 {
		t.Fatalf("Go beyond the limit: refused %d times, want 1", refused)
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := b.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().TimedOut != 1 || b.Stats().Pending != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want the waiting set-up timed out", b.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	// Both slots are free again: a failing set-up counts as failed.
	if !b.Do(func(bool) (Conn, error) { return nil, errors.New("bad client") }) {
		t.Fatal("Do refused with free slots")
	}
	if s := b.Stats(); s.Failed != 1 || s.Refused != 1 || s.Ready != 0 {
		t.Fatalf("stats %+v", s)
	}
	b.Stop()
	b.Drain()
}

// TestBacklogStop: Stop ends pending set-ups at once and Accept returns
// net.ErrClosed; Drain closes what was ready and not accepted.
func TestBacklogStop(t *testing.T) {
	b := NewBacklog(&Options{SetupTimeout: time.Hour})
	ended := make(chan error, 1)
	b.Go(func(ctx context.Context) (Conn, error) {
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	}, nil)
	ready := pipeConn(t)
	b.Do(func(bool) (Conn, error) { return ready, nil })
	b.Stop()
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("a pending set-up ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end a pending set-up")
	}
	if _, err := b.Accept(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Stop: %v", err)
	}
	b.Drain()
	if err := ready.Send(context.Background(), []byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a ready connection after Drain: Send gives %v, want net.ErrClosed", err)
	}
	if s := b.Stats(); s.TimedOut != 0 || s.Failed != 0 {
		t.Fatalf("set-ups ended by Stop are counted: %+v", s)
	}
	refusedCalled := false
	if b.Go(func(context.Context) (Conn, error) { return pipeConn(t), nil }, func() { refusedCalled = true }) || !refusedCalled {
		t.Fatal("Go after Stop did not refuse")
	}
}
