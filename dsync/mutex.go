package dsync

import (
	"context"
	"errors"
	"sync"
)

// Mutex is a lock across machines. Lock and TryLock return the Lease that
// holds it; Unlock releases the lease this Mutex value took last. A Mutex
// value is one holder: a second Lock on it waits like any other holder
// until the first lease ends.
type Mutex struct {
	c    *Client
	name string
	key  string

	last lastLease
}

// Mutex returns the lock of the given name (letters, digits, '-', '_',
// '=', '/', and '.' between them). Nothing is sent to the server.
func (c *Client) Mutex(name string) (*Mutex, error) {
	if err := checkName(name); err != nil {
		return nil, opErr("mutex", name, err)
	}
	return &Mutex{c: c, name: name, key: mutexKey(name)}, nil
}

func mutexKey(name string) string { return "mutex." + name }

func (m *Mutex) claim(op string) claim {
	return claim{op: op, name: m.name, keys: []string{m.key}, filter: m.key,
		rec: record{Kind: KindMutex, TTL: m.c.cfg.TTL, Holder: m.c.cfg.ID}}
}

// Lock waits until it holds the lock or ctx ends.
func (m *Mutex) Lock(ctx context.Context) (*Lease, error) {
	return m.take(ctx, "lock", true)
}

// TryLock takes the lock if it is free, or returns ErrWouldBlock.
func (m *Mutex) TryLock(ctx context.Context) (*Lease, error) {
	return m.take(ctx, "trylock", false)
}

func (m *Mutex) take(ctx context.Context, op string, wait bool) (*Lease, error) {
	l, err := m.c.acquire(ctx, m.claim(op), wait)
	if err != nil {
		return nil, err
	}
	m.last.set(l)
	return l, nil
}

// Unlock releases the lease this Mutex took last (Lease.Release). It
// returns ErrNotHeld if there is none or it had already ended.
func (m *Mutex) Unlock(ctx context.Context) error {
	return m.last.release(ctx, "unlock", m.name)
}

// lastLease is the lease a Mutex or Election value took last.
type lastLease struct {
	mu sync.Mutex
	l  *Lease
}

func (h *lastLease) set(l *Lease) {
	h.mu.Lock()
	h.l = l
	h.mu.Unlock()
}

// release releases the lease taken last, reporting failures as op.
func (h *lastLease) release(ctx context.Context, op, name string) error {
	h.mu.Lock()
	l := h.l
	h.l = nil
	h.mu.Unlock()
	if l == nil {
		return opErr(op, name, ErrNotHeld)
	}
	err := l.Release(ctx)
	var oe *OpError
	if errors.As(err, &oe) {
		oe.Op = op
	}
	return err
}

// Name is the lock's name.
func (m *Mutex) Name() string { return m.name }
