package dsync

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// MaxPermits is the largest semaphore size.
const MaxPermits = 1024

// Semaphore is a counting semaphore across machines: at most n leases on it
// are held at once. Each permit is a lease of its own, with its own key,
// renewal and fencing token, exactly as a Mutex's; the tokens of one permit
// strictly increase from one holder to the next (a Fence per permit, or per
// resource slot the permit stands for, refuses a stale holder's writes).
// One Semaphore value may hold several permits at once.
type Semaphore struct {
	c    *Client
	name string
	n    int
	keys []string

	checked atomic.Bool // the size was checked against the permits held
}

// Semaphore returns the semaphore of the given name (as for Mutex) with n
// permits (1 to MaxPermits). Nothing is sent to the server. Every user of
// a semaphore must give the same n: the first Acquire or TryAcquire on a
// Semaphore value reads the permits held and fails with ErrMismatch if one
// was taken with another size, and so does a waiter that sees one. (Two
// users of different sizes that both start on a semaphore nobody holds
// can go unnoticed until one of them waits.)
func (c *Client) Semaphore(name string, n int) (*Semaphore, error) {
	if err := checkName(name); err != nil {
		return nil, opErr("semaphore", name, err)
	}
	if n < 1 || n > MaxPermits {
		return nil, opErr("semaphore", name, fmt.Errorf("%w: %d permits (1 to %d)", ErrBadConfig, n, MaxPermits))
	}
	s := &Semaphore{c: c, name: name, n: n, keys: make([]string, n)}
	for i := range s.keys {
		s.keys[i] = semPrefix(name) + strconv.Itoa(i)
	}
	return s, nil
}

func semPrefix(name string) string { return "sem." + name + "." }

func (s *Semaphore) claim(op string) claim {
	n := uint32(s.n)
	return claim{op: op, name: s.name, keys: s.keys, filter: semPrefix(s.name) + "*",
		rec: record{Kind: KindSemaphore, TTL: s.c.cfg.TTL, N: n, Holder: s.c.cfg.ID},
		check: func(r record) error {
			if r.Kind != KindSemaphore || r.N != n {
				return fmt.Errorf("%w: a permit held as %v of %d, this semaphore has %d", ErrMismatch, r.Kind, r.N, n)
			}
			return nil
		}}
}

// Acquire waits until it holds a permit or ctx ends, and returns the
// permit's lease.
func (s *Semaphore) Acquire(ctx context.Context) (*Lease, error) {
	return s.take(ctx, "acquire", true)
}

// TryAcquire takes a permit if one is free, or returns ErrWouldBlock.
func (s *Semaphore) TryAcquire(ctx context.Context) (*Lease, error) {
	return s.take(ctx, "tryacquire", false)
}

func (s *Semaphore) take(ctx context.Context, op string, wait bool) (*Lease, error) {
	cl := s.claim(op)
	if !s.checked.Load() && !s.c.isClosed() {
		ents, err := snapshot(ctx, s.c.kv, cl.filter)
		if err != nil {
			return nil, opErr(op, s.name, err)
		}
		for _, en := range ents {
			if r, err := decodeRecord(en.Value()); err == nil {
				if err := cl.check(r); err != nil {
					return nil, opErr(op, s.name, err)
				}
			}
		}
		s.checked.Store(true)
	}
	return s.c.acquire(ctx, cl, wait)
}

// Release gives back the permit held by l (Lease.Release). It returns
// ErrNotHeld if l is not a permit of this semaphore or has already ended.
func (s *Semaphore) Release(ctx context.Context, l *Lease) error {
	if l == nil || l.c != s.c || l.kind != KindSemaphore || l.name != s.name {
		return opErr("release", s.name, ErrNotHeld)
	}
	return l.Release(ctx)
}

// Name is the semaphore's name.
func (s *Semaphore) Name() string { return s.name }

// Size is the number of permits.
func (s *Semaphore) Size() int { return s.n }

// Permit is the index (0 to n-1) of the semaphore permit l holds, or -1
// if l is not a semaphore permit.
func (l *Lease) Permit() int {
	if l.kind != KindSemaphore {
		return -1
	}
	i, err := strconv.Atoi(l.key[strings.LastIndexByte(l.key, '.')+1:])
	if err != nil {
		return -1
	}
	return i
}
