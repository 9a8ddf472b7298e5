package dsync

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// claim describes what an acquisition creates: one of keys (a mutex has
// one, a semaphore one per permit), watched through filter.
type claim struct {
	op     string
	name   string
	keys   []string
	filter string
	rec    record
	// check, if set, is run on every record the waiter sees on the keys
	// (a semaphore's size must agree); its error ends the wait.
	check func(record) error
}

// acquire creates one of the claim's keys; with wait it watches them and
// tries again each time one is deleted or expires.
//
// A key is taken with a Create (a publish that expects no live message on
// the key's subject) carrying a per-key TTL; the revision it gets is the
// fencing token. When every key is taken and wait is set, the waiter
// watches the keys (updates only, from before its next attempt, so no
// deletion between a failed attempt and the wait is missed) and tries
// again on every deletion or expiry marker, and at the latest after one
// TTL (a watch can miss updates across a reconnection).
func (c *Client) acquire(ctx context.Context, cl claim, wait bool) (*Lease, error) {
	if c.isClosed() {
		return nil, opErr(cl.op, cl.name, net.ErrClosed)
	}
	var w jetstream.KeyWatcher
	defer func() {
		if w != nil {
			c.stopWatch(w)
		}
	}()
	pending := map[string]time.Time{} // attempts whose outcome is unknown
	var lastErr error
	for {
		if err := ctx.Err(); err != nil {
			return nil, opErr(cl.op, cl.name, err)
		}
		if c.isClosed() {
			return nil, opErr(cl.op, cl.name, net.ErrClosed)
		}
		busy := 0
		start := 0
		if len(cl.keys) > 1 {
			start = rand.IntN(len(cl.keys))
		}
		for i := range cl.keys {
			key := cl.keys[(start+i)%len(cl.keys)]
			rec := cl.rec
			rec.Lease = randomID(8)
			sent := time.Now()
			rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
			rev, err := c.create(rctx, key, rec.encode())
			cancel()
			if err == nil {
				if c.tooLate(sent) {
					c.giveBack(key, rev)
					lastErr = fmt.Errorf("%w: acknowledged after the lease's deadline", ErrLeaseExpired)
					continue
				}
				l, err := c.newLease(cl.name, key, rec, rev, sent)
				return l, opErr(cl.op, cl.name, err)
			}
			if errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSeq(err) {
				busy++
				continue
			}
			if ctx.Err() != nil {
				return nil, opErr(cl.op, cl.name, ctx.Err())
			}
			if !transient(err) {
				return nil, opErr(cl.op, cl.name, err)
			}
			pending[rec.Lease] = sent
			lastErr = err
		}
		if !wait {
			if busy == len(cl.keys) {
				return nil, opErr(cl.op, cl.name, ErrWouldBlock)
			}
			return nil, opErr(cl.op, cl.name, lastErr)
		}
		if w == nil {
			var err error
			w, err = c.watch(ctx, cl.filter)
			if err != nil {
				if ctx.Err() != nil {
					return nil, opErr(cl.op, cl.name, ctx.Err())
				}
				w = nil
				if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
					return nil, opErr(cl.op, cl.name, err)
				}
			}
			// Try again at once: a deletion before the watch began would
			// otherwise be missed.
			continue
		}
		l, err := c.awaitFree(ctx, cl, w, pending, busy < len(cl.keys))
		if errors.Is(err, errWatchEnded) {
			// Its subscription is gone for good (the client could not
			// recreate the consumer behind it, as in a stream leader
			// election): watch anew rather than retry in a busy loop.
			_ = w.Stop()
			w = nil
			continue
		}
		if l != nil || err != nil {
			return l, opErr(cl.op, cl.name, err)
		}
	}
}

// tooLate reports whether a lease acquired by a request sent at sent is
// already past its local deadline: a holder paused, or a server slow to
// answer, for longer than TTL minus Margin. Such a lease is given back
// rather than returned already ended.
func (c *Client) tooLate(sent time.Time) bool {
	return !time.Now().Before(sent.Add(c.cfg.TTL - c.cfg.Margin))
}

// giveBack deletes key if it still holds revision rev (best effort: else
// it expires).
func (c *Client) giveBack(key string, rev uint64) {
	rctx, cancel := c.reqCtx()
	defer cancel()
	_ = c.kv.Delete(rctx, key, jetstream.LastRevision(rev))
}

// errWatchEnded is awaitFree's report that the watch's updates channel was
// closed: no more updates will come on it.
var errWatchEnded = errors.New("dsync: watch ended")

// awaitFree waits until a key of the claim is deleted or expires (nil,
// nil: try again), or one of the pending attempts turns out to have
// landed (its lease), or the watch ends (errWatchEnded).
func (c *Client) awaitFree(ctx context.Context, cl claim, w jetstream.KeyWatcher, pending map[string]time.Time, failing bool) (*Lease, error) {
	limit := c.cfg.TTL
	if failing {
		limit = 100 * time.Millisecond
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.closing:
			return nil, net.ErrClosed
		case <-t.C:
			return nil, nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errWatchEnded
			}
			if e == nil {
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				c.noteMarker(e.Key(), e.Revision())
				return nil, nil
			}
			r, err := decodeRecord(e.Value())
			if err != nil {
				continue
			}
			if cl.check != nil {
				if err := cl.check(r); err != nil {
					return nil, err
				}
			}
			if len(pending) == 0 || r.Token != 0 {
				continue
			}
			if sent, ok := pending[r.Lease]; ok {
				delete(pending, r.Lease)
				if c.tooLate(sent) {
					c.giveBack(e.Key(), e.Revision())
					return nil, nil
				}
				r.Token = 0
				l, err := c.newLease(cl.name, e.Key(), r, e.Revision(), sent)
				return l, err
			}
		}
	}
}

// watch watches the keys of filter, updates only, until the watcher is
// stopped or ctx ends. The request that sets the watch up is bounded by
// RequestTimeout: a JetStream API request that goes unanswered (a cluster
// between stream leaders) would otherwise be waited for as long as ctx
// lasts, and the waiter would hang there instead of trying again.
func (c *Client) watch(ctx context.Context, filter string) (jetstream.KeyWatcher, error) {
	wctx, cancel := context.WithCancel(ctx) // ends the subscription too
	t := time.AfterFunc(c.cfg.RequestTimeout, cancel)
	w, err := c.kv.Watch(wctx, filter, jetstream.UpdatesOnly())
	if !t.Stop() && err == nil {
		_ = w.Stop() // set up just as the timer fired: already cancelled
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return &boundWatch{KeyWatcher: w, cancel: cancel}, nil
}

// boundWatch is a watch whose Stop also releases its context.
type boundWatch struct {
	jetstream.KeyWatcher
	cancel context.CancelFunc
}

func (w *boundWatch) Stop() error {
	err := w.KeyWatcher.Stop()
	w.cancel()
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
