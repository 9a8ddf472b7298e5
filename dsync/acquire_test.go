package dsync

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipcgo/ipc/internal/natstest"
)

// cuttableKV is the real bucket, with its creates counted and its watches
// handed to the test, which can end one as the client library does when it
// cannot recreate the consumer behind it.
type cuttableKV struct {
	jetstream.KeyValue
	creates atomic.Int64
	watches chan *cuttableWatch
	// drop makes the next Watch wait for its context, as a request the
	// server never answers does.
	drop atomic.Bool
	// slow delays the answer of the next Create by that many nanoseconds;
	// slowRev is the revision it got.
	slow    atomic.Int64
	slowRev atomic.Uint64
}

func (kv *cuttableKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	kv.creates.Add(1)
	rev, err := kv.KeyValue.Create(ctx, key, value, opts...)
	if d := time.Duration(kv.slow.Swap(0)); d > 0 {
		kv.slowRev.Store(rev)
		time.Sleep(d)
	}
	return rev, err
}

func (kv *cuttableKV) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	if kv.drop.Swap(false) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	w, err := kv.KeyValue.Watch(ctx, keys, opts...)
	if err != nil {
		return nil, err
	}
	cw := &cuttableWatch{KeyWatcher: w, ch: make(chan jetstream.KeyValueEntry), end: make(chan struct{})}
	go cw.forward()
	kv.watches <- cw
	return cw, nil
}

type cuttableWatch struct {
	jetstream.KeyWatcher
	ch   chan jetstream.KeyValueEntry
	end  chan struct{}
	once sync.Once
}

func (w *cuttableWatch) forward() {
	defer close(w.ch)
	for {
		select {
		case e, ok := <-w.KeyWatcher.Updates():
			if !ok {
				return
			}
			select {
			case w.ch <- e:
			case <-w.end:
				return
			}
		case <-w.end:
			return
		}
	}
}

func (w *cuttableWatch) Updates() <-chan jetstream.KeyValueEntry { return w.ch }

// cut closes the updates channel, as the end of the subscription does.
func (w *cuttableWatch) cut() { w.once.Do(func() { close(w.end) }) }

func (w *cuttableWatch) Stop() error {
	w.cut()
	return w.KeyWatcher.Stop()
}

// A waiter whose watch ends watches anew, instead of retrying its create
// in a busy loop, and is still woken by the release.
func TestWaiterWatchEnds(t *testing.T) {
	s := natstest.Start(t, nil)
	cfg := testConfig("t")
	cfg.TTL = 10 * time.Second
	a := open(t, s.URL(), cfg)
	b := open(t, s.URL(), cfg)
	kv := &cuttableKV{KeyValue: b.kv, watches: make(chan *cuttableWatch, 16)}
	b.kv = kv
	ctx := ctxT(t, 30*time.Second)
	ma, mb := mustMutex(t, a, "w"), mustMutex(t, b, "w")
	if _, err := ma.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		l, err := mb.Lock(ctx)
		if err == nil {
			err = l.Release(ctx)
		}
		got <- err
	}()
	var first *cuttableWatch
	select {
	case first = <-kv.watches:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter never watched")
	}
	before := kv.creates.Load()
	first.cut()
	var second *cuttableWatch
	select {
	case second = <-kv.watches:
	case <-time.After(5 * time.Second):
		t.Fatalf("the waiter did not watch again after its watch ended (%d creates)", kv.creates.Load()-before)
	}
	time.Sleep(300 * time.Millisecond) // a busy loop would create thousands of times meanwhile
	if n := kv.creates.Load() - before; n > 5 {
		t.Fatalf("%d creates in 300 ms after the watch ended: a busy loop", n)
	}
	released := time.Now()
	if err := ma.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(cfg.TTL / 2):
		t.Fatal("the waiter was not woken by the release through its new watch")
	}
	t.Logf("woken %v after the release, by watch %p", time.Since(released), second)
}

// A waiter whose request to set up its watch goes unanswered tries again
// after RequestTimeout instead of waiting on it for as long as its context
// lasts.
func TestWaiterWatchUnanswered(t *testing.T) {
	s := natstest.Start(t, nil)
	cfg := testConfig("t")
	cfg.TTL = 10 * time.Second
	cfg.RequestTimeout = time.Second
	a := open(t, s.URL(), cfg)
	b := open(t, s.URL(), cfg)
	kv := &cuttableKV{KeyValue: b.kv, watches: make(chan *cuttableWatch, 16)}
	kv.drop.Store(true)
	b.kv = kv
	ctx := ctxT(t, 30*time.Second)
	ma, mb := mustMutex(t, a, "u"), mustMutex(t, b, "u")
	if _, err := ma.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		l, err := mb.Lock(lctx)
		if err == nil {
			err = l.Release(ctx)
		}
		got <- err
	}()
	select {
	case <-kv.watches: // the second attempt
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not try to watch again while its first watch request went unanswered")
	}
	if err := ma.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(cfg.TTL / 2):
		t.Fatal("the waiter was not woken by the release")
	}
}

// A lock acquired by a create acknowledged after the lease's deadline is
// given back and taken again, not returned already ended.
func TestLockAcknowledgedTooLate(t *testing.T) {
	s := natstest.Start(t, nil)
	cfg := testConfig("t")
	b := open(t, s.URL(), cfg)
	kv := &cuttableKV{KeyValue: b.kv, watches: make(chan *cuttableWatch, 16)}
	kv.slow.Store(int64(cfg.TTL))
	b.kv = kv
	ctx := ctxT(t, 30*time.Second)
	mb := mustMutex(t, b, "late")
	l, err := mb.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	if !l.Valid() {
		t.Fatalf("Lock returned an ended lease: %v", l.Err())
	}
	if late := kv.slowRev.Load(); late == 0 || l.Token() <= late {
		t.Fatalf("token %d, the late create's %d: the late acquisition was returned", l.Token(), late)
	}
	if _, err := mustMutex(t, b, "late-try").TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	kv.slow.Store(int64(cfg.TTL))
	if _, err := mustMutex(t, b, "late-try2").TryLock(ctx); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("TryLock acknowledged too late: %v, want ErrLeaseExpired", err)
	}
}
