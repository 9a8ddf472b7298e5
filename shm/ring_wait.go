package shm

import (
	"context"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
	"github.com/ipcgo/ipc/internal/kwait"
	"github.com/ipcgo/ipc/internal/mmap"
)

// DefaultRingPoll bounds each futex sleep of WaitReadable and WaitWritable
// when WaitOptions.Poll is zero.
const DefaultRingPoll = 10 * time.Millisecond

// WaitOptions configures WaitReadable and WaitWritable.
type WaitOptions struct {
	// Spin is how long the waiter re-checks the ring before it sleeps in
	// the kernel; 0 sleeps at once.
	Spin time.Duration
	// Poll bounds each futex sleep (DefaultRingPoll if zero): a condition
	// that nobody wakes the waiter for is noticed within Poll.
	Poll time.Duration
	// Stop, if not nil, is called before each sleep. A non-nil error ends
	// the wait with that error; a non-zero deadline ends it with
	// os.ErrDeadlineExceeded once passed. Whoever changes Stop's answer
	// should call WakeReader or WakeWriter so that a sleeper notices at
	// once rather than after Poll.
	Stop func() (deadline time.Time, err error)
}

// WaitReadable blocks until Peek has something to return: a record, io.EOF
// (the producer closed) or an error. It spins for o.Spin, then announces
// itself in the ring's "reader waiting" word and sleeps on it, so that the
// producer makes the wake-up system call only for a sleeping consumer. It
// returns ctx's error when ctx ends, and what o.Stop decides.
func (r *Ring) WaitReadable(ctx context.Context, o *WaitOptions) error {
	return r.wait(ctx, o, true)
}

// WaitWritable blocks until the Reserve that last returned ErrRingFull can
// succeed, or the consumer has closed. Its options are those of
// WaitReadable.
func (r *Ring) WaitWritable(ctx context.Context, o *WaitOptions) error {
	return r.wait(ctx, o, false)
}

// WakeReader wakes a consumer sleeping in WaitReadable, in any process,
// so that it re-checks the ring and its Stop function. Call it after
// changing what Stop returns. It makes a system call only if the consumer
// announced that it sleeps: the exchange that clears the flag orders the
// caller's change before the sleeper's next checks.
func (r *Ring) WakeReader() {
	if r.rwait.Swap(0) != 0 {
		wake(r.rwait)
	}
}

// WakeWriter wakes a producer sleeping in WaitWritable.
func (r *Ring) WakeWriter() {
	if r.wwait.Swap(0) != 0 {
		wake(r.wwait)
	}
}

func wake(w *atomic.Uint32) { futex.Wake(w, 1<<30) }

// ready reports whether the waiter may stop waiting. The consumer watches
// the next record's header word; with full it also reads the producer's
// index, which a valid producer never moves past a zero header word: one
// that did is corrupt, and the consumer's Peek says so.
func (r *Ring) ready(reader, full bool) bool {
	if reader {
		// Touch the line after the next record's header too: a small
		// record spans two lines, and the producer's write of the second
		// then travels while the first does, not after it.
		_ = mmap.Uint64(r.data, int((r.chead+64)&r.mask)).Load()
		if mmap.Uint64(r.data, int(r.chead&r.mask)).Load() != 0 {
			r.seen = true // Peek need not ask the producer's index
			return true
		}
		if int64(r.ctail-r.chead) > 0 || r.closed.Load()&closedProducer != 0 {
			return true
		}
		if full {
			t := r.tail.Load()
			d := int64(t - r.chead)
			return d > 0 || d < -int64(r.cap) || t%8 != 0
		}
		return false
	}
	return int64(r.head.Load()-r.wantHead) >= 0 || r.closed.Load()&closedConsumer != 0
}

// Spin-loop pacing: the clock is read every spinCheck iterations, and the
// goroutine yields its P every spinYield, so that a goroutine it waits for
// in the same process runs even with GOMAXPROCS=1.
const (
	spinCheck = 128
	spinYield = 2048
	spinFull  = 64 // a waiting consumer reads the producer's index every spinFull turns
)

func (r *Ring) wait(ctx context.Context, o *WaitOptions, reader bool) error {
	if r.ready(reader, true) {
		return nil
	}
	if o.Spin > 0 {
		var start time.Time
		for i := 1; ; i++ {
			if r.ready(reader, i%spinFull == 0) {
				return nil
			}
			if i%spinCheck == 0 {
				now := time.Now()
				if i == spinCheck {
					start = now
				} else if now.Sub(start) >= o.Spin {
					break
				}
				if i%spinYield == 0 {
					runtime.Gosched()
				}
			}
		}
	}
	flag := r.rwait
	if !reader {
		flag = r.wwait
	}
	if ctx.Done() != nil {
		wakeFn := r.WakeReader
		if !reader {
			wakeFn = r.WakeWriter
		}
		// The wake-up touches the ring: once wait returns, it must have run
		// to its end or never run, so that the caller may close and unmap
		// the ring's memory.
		woke := make(chan struct{})
		stop := context.AfterFunc(ctx, func() { wakeFn(); close(woke) })
		defer func() {
			if !stop() {
				<-woke
			}
		}()
	}
	poll := o.Poll
	if poll <= 0 {
		poll = DefaultRingPoll
	}
	defer flag.Store(0)
	// A busy ring's waiter sleeps in its thread, for kwait.Recent at
	// most, while kwait has a place for it; any other on a hub (see
	// ring_idle.go), holding no thread of its own.
	act := &r.cact
	if !reader {
		act = &r.pact
	}
	var inThread time.Time // while the waiter sleeps in its thread: since when
	if act.Begin() {
		inThread = time.Now()
		defer func() {
			if !inThread.IsZero() {
				kwait.Release()
			}
		}()
	}
	var iw *idleWaiter
	var timer *time.Timer
	defer func() {
		if iw != nil {
			iw.leave()
			timer.Stop()
		}
	}()
	for {
		// Announce, then re-check everything: a waker changes its
		// condition first and then clears the flag and wakes, so either
		// the checks below see the change or the futex wait returns at once.
		flag.Store(1)
		if r.ready(reader, true) {
			act.Woke()
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		d := poll
		if o.Stop != nil {
			dl, err := o.Stop()
			if err != nil {
				return err
			}
			if !dl.IsZero() {
				left := time.Until(dl)
				if left <= 0 {
					return os.ErrDeadlineExceeded
				}
				d = min(d, left)
			}
		}
		if !inThread.IsZero() {
			if left := kwait.Recent - time.Since(inThread); left > 0 {
				futex.Wait(flag, 1, min(d, left))
				continue
			}
			kwait.Release()
			inThread = time.Time{}
		}
		if iw == nil {
			iw = newIdleWaiter(flag)
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		if !iw.join() { // no hubs on this system
			futex.Wait(flag, 1, d)
			continue
		}
		select {
		case <-iw.woke:
		case <-timer.C:
		case <-ctx.Done():
		}
	}
}
