package dsync

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/natstest"
)

func testConfig(ns string) *Config {
	return &Config{Namespace: ns, TTL: time.Second, RequestTimeout: 5 * time.Second}
}

func open(t testing.TB, url string, cfg *Config) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Open(ctx, url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustMutex(t testing.TB, c *Client, name string) *Mutex {
	t.Helper()
	m, err := c.Mutex(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMutexLockUnlock(t *testing.T) {
	s := natstest.Start(t, nil)
	a := open(t, s.URL(), testConfig("t"))
	b := open(t, s.URL(), testConfig("t"))
	ctx := ctxT(t, 30*time.Second)
	ma, mb := mustMutex(t, a, "orders"), mustMutex(t, b, "orders")

	l1, err := ma.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !l1.Valid() || l1.Err() != nil {
		t.Fatalf("fresh lease not valid: %v", l1.Err())
	}
	if _, err := mb.TryLock(ctx); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("TryLock on a held lock: %v, want ErrWouldBlock", err)
	}
	// Held across several renewals.
	time.Sleep(1500 * time.Millisecond)
	if err := l1.Err(); err != nil {
		t.Fatalf("lease ended while renewed: %v", err)
	}
	if _, err := mb.TryLock(ctx); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("TryLock after renewals: %v, want ErrWouldBlock", err)
	}
	if err := ma.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l1.Done():
	default:
		t.Fatal("Done not closed after Unlock")
	}
	if !errors.Is(l1.Err(), ErrReleased) {
		t.Fatalf("Err after Unlock = %v", l1.Err())
	}
	if err := ma.Unlock(ctx); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second Unlock: %v, want ErrNotHeld", err)
	}
	l2, err := mb.TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Token() <= l1.Token() {
		t.Fatalf("token %d after %d: not increasing", l2.Token(), l1.Token())
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// A waiter is woken by the watch when the holder unlocks, long before a
// TTL passes.
func TestMutexWaiterWokenByWatch(t *testing.T) {
	s := natstest.Start(t, nil)
	cfg := testConfig("t")
	cfg.TTL = 5 * time.Second
	a := open(t, s.URL(), cfg)
	b := open(t, s.URL(), cfg)
	ctx := ctxT(t, 30*time.Second)
	ma, mb := mustMutex(t, a, "x"), mustMutex(t, b, "x")
	l1, err := ma.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Lease, 1)
	errc := make(chan error, 1)
	go func() {
		l, err := mb.Lock(ctx)
		errc <- err
		got <- l
	}()
	time.Sleep(300 * time.Millisecond) // let it wait (not needed for correctness)
	released := time.Now()
	if err := ma.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	l2 := <-got
	if d := time.Since(released); d > 2500*time.Millisecond {
		t.Fatalf("waiter took %v after unlock (TTL 5 s): not woken by the watch", d)
	}
	if l2.Token() <= l1.Token() {
		t.Fatalf("token %d after %d", l2.Token(), l1.Token())
	}
	_ = l2.Release(ctx)
}

// A holder that vanishes without unlocking (its connection gone) loses the
// lease locally before the server expires the key; a waiter then gets the
// lock with a larger token.
func TestMutexExpiry(t *testing.T) {
	s := natstest.Start(t, nil)
	a := open(t, s.URL(), testConfig("t"))
	b := open(t, s.URL(), testConfig("t"))
	ctx := ctxT(t, 30*time.Second)
	l1, err := mustMutex(t, a, "x").Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a.nc.Close() // no more renewals, no delete
	lost := make(chan time.Time, 1)
	go func() { <-l1.Done(); lost <- time.Now() }()
	start := time.Now()
	l2, err := mustMutex(t, b, "x").Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acquired := time.Now()
	var lostAt time.Time
	select {
	case lostAt = <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("abandoned lease never ended")
	}
	if !lostAt.Before(acquired) {
		t.Fatalf("old lease ended %v after the new one began", lostAt.Sub(acquired))
	}
	if !errors.Is(l1.Err(), ErrLeaseExpired) {
		t.Fatalf("abandoned lease: %v, want ErrLeaseExpired", l1.Err())
	}
	if l2.Token() <= l1.Token() {
		t.Fatalf("token %d after %d", l2.Token(), l1.Token())
	}
	t.Logf("taken over %v after the holder vanished (TTL 1 s)", acquired.Sub(start))
	_ = l2.Release(ctx)
}

// Mutual exclusion among goroutines of several clients, each checking that
// nobody else is inside.
func TestMutexExclusion(t *testing.T) {
	s := natstest.Start(t, nil)
	ctx := ctxT(t, 60*time.Second)
	var inside, total int
	var mu sync.Mutex
	var wg sync.WaitGroup
	var last uint64
	for i := range 3 {
		c := open(t, s.URL(), testConfig("t"))
		m := mustMutex(t, c, "ex")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				l, err := m.Lock(ctx)
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				mu.Lock()
				inside++
				if inside != 1 {
					t.Errorf("%d holders at once", inside)
				}
				if l.Token() <= last {
					t.Errorf("token %d after %d", l.Token(), last)
				}
				last = l.Token()
				total++
				inside--
				mu.Unlock()
				if err := m.Unlock(ctx); err != nil {
					t.Errorf("unlock: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if total != 30 {
		t.Fatalf("%d acquisitions, want 30", total)
	}
}

func TestLockContextAndClose(t *testing.T) {
	s := natstest.Start(t, nil)
	a := open(t, s.URL(), testConfig("t"))
	b := open(t, s.URL(), testConfig("t"))
	ctx := ctxT(t, 30*time.Second)
	l, err := mustMutex(t, a, "c").Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := mustMutex(t, b, "c").Lock(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock past its context: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(l.Err(), ErrReleased) && !errors.Is(l.Err(), net.ErrClosed) {
		t.Fatalf("lease after Close: %v", l.Err())
	}
	if err := a.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := mustMutex(t, a, "c").Lock(ctx); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Lock on closed client: %v", err)
	}
	// Close deleted the key: b gets it at once.
	l2, err := mustMutex(t, b, "c").TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = l2.Release(ctx)
}

// Stopping the only server: the holder's lease ends by its local deadline.
func TestLeaseEndsWhenServerStops(t *testing.T) {
	s := natstest.Start(t, nil)
	a := open(t, s.URL(), testConfig("t"))
	ctx := ctxT(t, 30*time.Second)
	l, err := mustMutex(t, a, "s").Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dl := l.Deadline()
	s.Stop()
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("lease still held 5 s after its server stopped (TTL 1 s)")
	}
	if !errors.Is(l.Err(), ErrLeaseExpired) {
		t.Fatalf("lease: %v, want ErrLeaseExpired", l.Err())
	}
	if time.Now().After(dl.Add(time.Second)) {
		t.Fatalf("ended %v after a deadline that was never renewed", time.Since(dl))
	}
}

func TestBadConfigAndNames(t *testing.T) {
	ctx := ctxT(t, 10*time.Second)
	for _, cfg := range []*Config{{TTL: 1500 * time.Millisecond}, {TTL: 500 * time.Millisecond}, {Namespace: "a.b"}, {Replicas: 9}, {TTL: time.Second, Margin: time.Second}} {
		if _, err := Open(ctx, "nats://127.0.0.1:1", cfg); !errors.Is(err, ErrBadConfig) && !errors.Is(err, ErrBadName) {
			t.Errorf("Open(%+v): %v, want ErrBadConfig or ErrBadName", cfg, err)
		}
	}
	if _, err := Open(ctx, "nats://127.0.0.1:1", nil); err == nil {
		t.Error("Open of a closed port succeeded")
	}
	c := &Client{}
	for _, n := range []string{"", "a..b", ".a", "a b", "a*", "a>"} {
		if _, err := c.Mutex(n); !errors.Is(err, ErrBadName) {
			t.Errorf("Mutex(%q): %v, want ErrBadName", n, err)
		}
	}
}
