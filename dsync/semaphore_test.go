package dsync

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/natstest"
)

func init() {
	peers["sem-hold"] = peerSemHold
	peers["campaign"] = peerCampaign
}

// peerOpen opens a Client for a peer process: args are the server URL and
// the namespace; the TTL is 1 s as in testConfig.
func peerOpen(args []string) (*Client, error) {
	if len(args) < 2 {
		return nil, errors.New("want URL NAMESPACE")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return Open(ctx, args[0], testConfig(args[1]))
}

// peerSemHold takes a permit of semaphore args[2] of size args[3], says
// "held PERMIT TOKEN" and waits to be killed.
func peerSemHold(args []string) int {
	c, err := peerOpen(args)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	n, _ := strconv.Atoi(args[3])
	s, err := c.Semaphore(args[2], n)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := s.Acquire(ctx)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Printf("held %d %d\n", l.Permit(), l.Token())
	time.Sleep(time.Minute)
	return 0
}

// must returns a function that fails t on an error and returns the value.
func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func mustSem(t testing.TB, c *Client, name string, n int) *Semaphore {
	t.Helper()
	return must[*Semaphore](t)(c.Semaphore(name, n))
}

func TestSemaphore(t *testing.T) {
	s := natstest.Start(t, nil)
	a := open(t, s.URL(), testConfig("t"))
	b := open(t, s.URL(), testConfig("t"))
	ctx := ctxT(t, 30*time.Second)
	sa, sb := mustSem(t, a, "pool", 2), mustSem(t, b, "pool", 2)

	l1, err := sa.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := sb.TryAcquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l1.Permit() == l2.Permit() || l1.Permit() < 0 || l2.Permit() < 0 || l1.Permit() > 1 || l2.Permit() > 1 {
		t.Fatalf("permits %d and %d", l1.Permit(), l2.Permit())
	}
	if _, err := sa.TryAcquire(ctx); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("third TryAcquire of 2 permits: %v, want ErrWouldBlock", err)
	}
	// A waiter is woken by the release of either permit.
	got := make(chan *Lease, 1)
	errc := make(chan error, 1)
	go func() {
		l, err := sa.Acquire(ctx)
		errc <- err
		got <- l
	}()
	if err := sb.Release(ctx, l2); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	l3 := <-got
	if l3.Permit() != l2.Permit() || l3.Token() <= l2.Token() {
		t.Fatalf("after permit %d (token %d): permit %d, token %d", l2.Permit(), l2.Token(), l3.Permit(), l3.Token())
	}
	if err := sb.Release(ctx, l2); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second Release: %v, want ErrNotHeld", err)
	}
	if err := sb.Release(ctx, l1); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Release of another client's permit: %v, want ErrNotHeld", err)
	}
	// A user with another size is told, not admitted.
	s3 := mustSem(t, b, "pool", 3)
	short, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s3.Acquire(short); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Acquire with size 3 of a semaphore of 2: %v, want ErrMismatch", err)
	}
	for _, l := range []*Lease{l1, l3} {
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Semaphore("pool", 0); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("Semaphore of 0 permits: %v", err)
	}
	if _, err := a.Semaphore("a b", 1); !errors.Is(err, ErrBadName) {
		t.Fatalf("bad name: %v", err)
	}
}

// At most n holders at once among goroutines of several clients.
func TestSemaphoreExclusion(t *testing.T) {
	s := natstest.Start(t, nil)
	ctx := ctxT(t, 60*time.Second)
	const n = 2
	var mu sync.Mutex
	inside, most, total := 0, 0, 0
	last := map[int]uint64{}
	var wg sync.WaitGroup
	for i := range 4 {
		sem := mustSem(t, open(t, s.URL(), testConfig("t")), "ex", n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 6 {
				l, err := sem.Acquire(ctx)
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				mu.Lock()
				inside++
				most = max(most, inside)
				if l.Token() <= last[l.Permit()] {
					t.Errorf("permit %d: token %d after %d", l.Permit(), l.Token(), last[l.Permit()])
				}
				last[l.Permit()] = l.Token()
				total++
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				inside--
				mu.Unlock()
				if err := sem.Release(ctx, l); err != nil {
					t.Errorf("release: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if total != 24 || most > n {
		t.Fatalf("%d acquisitions (want 24), at most %d inside (limit %d)", total, most, n)
	}
}

// A permit holder killed with SIGKILL: its permit returns once the TTL has
// passed since its last renewal, to a waiter, with a larger token.
func TestSemaphoreHolderKilled(t *testing.T) {
	s := natstest.Start(t, nil)
	c := open(t, s.URL(), testConfig("t"))
	ctx := ctxT(t, 60*time.Second)
	p := ipctest.StartPeer(t, "sem-hold", s.URL(), "t", "kill", "1")
	f := strings.Fields(p.Line(t, 30*time.Second))
	if len(f) != 3 || f[0] != "held" {
		t.Fatalf("peer said %q", f)
	}
	peerTok, _ := strconv.ParseUint(f[2], 10, 64)
	sem := mustSem(t, c, "kill", 1)
	if _, err := sem.TryAcquire(ctx); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("TryAcquire while the peer holds the permit: %v", err)
	}
	p.Kill()
	killed := time.Now()
	l, err := sem.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(killed)
	cfg := c.Config()
	if took < cfg.TTL-cfg.Renew-100*time.Millisecond {
		t.Fatalf("permit back %v after the kill, before TTL %v minus a renewal period", took, cfg.TTL)
	}
	if took > cfg.TTL+10*time.Second {
		t.Fatalf("permit back only %v after the kill (TTL %v)", took, cfg.TTL)
	}
	if l.Token() <= peerTok {
		t.Fatalf("token %d after the dead holder's %d", l.Token(), peerTok)
	}
	t.Logf("permit back %v after the holder was killed (TTL %v)", took, cfg.TTL)
	_ = l.Release(ctx)
}
