package shm_test

import (
	"context"
	"testing"
	"time"

	"github.com/ipcgo/ipc/shm"
)

// TestRingIdleHub: waiters on idle rings sleep on hubs (more than one hub
// when there are more waiters than one futex_waitv takes), not in their
// threads; the producer's usual wake-up reaches each of them, and the hubs
// end with their last waiter.
func TestRingIdleHub(t *testing.T) {
	const n = 200 // two hubs
	rings := make([]*shm.Ring, n)
	for i := range rings {
		_, rings[i], _ = newRing(t, 256)
	}
	done := make(chan error, n)
	for _, r := range rings {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			done <- r.WaitReadable(ctx, &shm.WaitOptions{Spin: 10 * time.Microsecond, Poll: 5 * time.Second})
		}()
	}
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		hubs, waiters := shm.IdleForTest()
		if waiters == n {
			if hubs != 2 {
				t.Errorf("%d waiters on %d hubs, want 2", waiters, hubs)
			}
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%d of %d waiters on hubs after 20 s", waiters, n)
		}
	}
	for _, r := range rings {
		p, err := r.Reserve(8)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Commit(len(p)); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a waiter was not woken")
		}
	}
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		if hubs, waiters := shm.IdleForTest(); hubs == 0 && waiters == 0 {
			break
		} else if time.Now().After(end) {
			t.Fatalf("%d hubs with %d waiters left", hubs, waiters)
		}
	}
}
