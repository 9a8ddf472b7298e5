package dsync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A Lease is a held lock, semaphore permit or candidacy. It carries the
// fencing token of its acquisition and ends — Done is closed, Context is
// cancelled, Err says why — the moment the holder can no longer be sure it
// holds it: released, renewal refused by the server (ErrLeaseLost), or not
// renewed before the local deadline (ErrLeaseExpired), which comes Margin
// before the earliest moment the server could expire the key.
type Lease struct {
	c     *Client
	name  string // the primitive's name
	key   string
	kind  Kind
	token uint64
	rec   record // what the renewals write (Token set)

	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   chan struct{} // closed by Release: the renewer returns
	exited chan struct{} // closed when the renewer has returned

	mu       sync.Mutex
	rev      uint64    // the key's latest revision written for this lease
	deadline time.Time // local, conservative
	released bool
	renewing bool // a renewal is in flight (rev may change)
}

// Token is the lease's fencing token: the revision of the write that
// acquired it. Tokens of one primitive strictly increase from one
// acquisition to the next (they are sequence numbers of the bucket's
// stream) and stay the same while the lease is renewed.
func (l *Lease) Token() uint64 { return l.token }

// Name is the name of the primitive the lease belongs to.
func (l *Lease) Name() string { return l.name }

// Key is the bucket key that holds the lease.
func (l *Lease) Key() string { return l.key }

// Done is closed when the lease ends.
func (l *Lease) Done() <-chan struct{} { return l.ctx.Done() }

// Context is cancelled when the lease ends; context.Cause gives the reason.
// Pass it to the work done under the lease.
func (l *Lease) Context() context.Context { return l.ctx }

// Err is nil while the lease is held and then the reason it ended
// (ErrReleased, ErrLeaseLost, ErrLeaseExpired, net.ErrClosed).
func (l *Lease) Err() error {
	if l.ctx.Err() == nil {
		if time.Now().Before(l.Deadline()) {
			return nil
		}
		return ErrLeaseExpired
	}
	return context.Cause(l.ctx)
}

// Valid reports whether the lease is still held: not ended and its local
// deadline not passed (also true of a process that was paused and has not
// yet run the code that ends the lease).
func (l *Lease) Valid() bool { return l.Err() == nil }

// Deadline is the moment the lease ends unless renewed first.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// Release gives the lease up: it ends at once, then its key is deleted so
// that the next holder need not wait for the TTL. It returns ErrNotHeld
// wrapped around the cause if the lease had already ended otherwise.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return opErr("release", l.name, ErrNotHeld)
	}
	l.released = true
	renewing := l.renewing
	l.mu.Unlock()
	prior := l.Err()
	l.cancel(ErrReleased)
	close(l.stop)
	// The renewer starts no renewal once released is set; only one already
	// in flight must land (or fail) before the revision to delete is known.
	if renewing {
		<-l.exited
	}
	defer func() { <-l.exited }()
	l.c.forget(l)
	if prior != nil {
		return opErr("release", l.name, fmt.Errorf("%w: %w", ErrNotHeld, prior))
	}
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	if l.c.nc.IsClosed() {
		return opErr("release", l.name, net.ErrClosed)
	}
	rctx, cancel := l.c.reqCtx()
	defer cancel()
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < l.c.cfg.RequestTimeout {
		rctx, cancel = context.WithDeadline(rctx, dl)
		defer cancel()
	}
	err := l.c.deleteKey(rctx, l.key, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return opErr("release", l.name, ErrLeaseLost)
	}
	return opErr("release", l.name, err)
}

// newLease starts the renewal of a key acquired at revision rev by a
// request sent at sent.
func (c *Client) newLease(name, key string, rec record, rev uint64, sent time.Time) (*Lease, error) {
	ctx, cancel := context.WithCancelCause(context.Background())
	rec.Token = rev
	l := &Lease{
		c: c, name: name, key: key, kind: rec.Kind, token: rev, rec: rec,
		ctx: ctx, cancel: cancel, stop: make(chan struct{}), exited: make(chan struct{}),
		rev: rev, deadline: sent.Add(c.cfg.TTL - c.cfg.Margin),
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cancel(net.ErrClosed)
		return nil, net.ErrClosed
	}
	c.leases[l] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	go l.renew()
	return l, nil
}

func (c *Client) forget(l *Lease) {
	c.mu.Lock()
	delete(c.leases, l)
	c.mu.Unlock()
}

// renew keeps the lease alive: every Renew it rewrites the key,
// conditional on the revision it last wrote, with a fresh TTL; the local
// deadline moves to the send time of the last acknowledged renewal plus
// TTL minus Margin.
func (l *Lease) renew() {
	defer l.c.wg.Done()
	defer close(l.exited)
	cfg := l.c.cfg
	value := l.rec.encode()
	next := time.Now().Add(cfg.Renew)
	timer := time.NewTimer(cfg.Renew)
	defer timer.Stop()
	for {
		dl := l.Deadline()
		wait := min(time.Until(next), time.Until(dl))
		timer.Reset(max(wait, 0))
		select {
		case <-l.stop:
			return
		case <-l.c.closing:
			l.cancel(net.ErrClosed)
			return
		case <-timer.C:
		}
		if !time.Now().Before(dl) {
			l.cancel(ErrLeaseExpired)
			return
		}
		sent := time.Now()
		rctx, cancel := context.WithDeadline(context.Background(), dl)
		rctx, cancel2 := context.WithTimeout(rctx, cfg.RequestTimeout)
		l.mu.Lock()
		if l.released {
			l.mu.Unlock()
			cancel2()
			cancel()
			return
		}
		l.renewing = true
		rev := l.rev
		l.mu.Unlock()
		ack, err := l.c.js.PublishMsg(rctx, &nats.Msg{Subject: l.c.subject(l.key), Data: value},
			jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(cfg.TTL))
		if err != nil && isWrongLastSeq(err) {
			// The last renewal may have landed unacknowledged: the key is
			// still ours if it carries this lease's identity.
			if e, gerr := l.c.kv.Get(rctx, l.key); gerr == nil && l.owns(e) {
				l.mu.Lock()
				l.rev = e.Revision()
				l.mu.Unlock()
				err = nil
				ack = nil
			} else if gerr == nil || errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted) {
				cancel2()
				cancel()
				l.cancel(ErrLeaseLost)
				return
			}
		}
		cancel2()
		cancel()
		l.mu.Lock()
		l.renewing = false
		if err == nil && ack != nil {
			l.rev = ack.Sequence
			l.deadline = sent.Add(cfg.TTL - cfg.Margin)
		}
		l.mu.Unlock()
		if err != nil {
			next = time.Now().Add(min(cfg.Renew/4, 100*time.Millisecond)) // try again soon
			continue
		}
		next = sent.Add(cfg.Renew)
	}
}

// owns reports whether entry e is a live write of this lease.
func (l *Lease) owns(e jetstream.KeyValueEntry) bool {
	if e.Operation() != jetstream.KeyValuePut {
		return false
	}
	r, err := decodeRecord(e.Value())
	return err == nil && r.Lease == l.rec.Lease
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}
