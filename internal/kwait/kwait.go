// Package kwait decides whether a call that must wait may hold its thread
// in a blocking system call (ppoll, mq_timedreceive, futex) or should wait
// where no thread is held (the runtime's poller, a channel).
//
// Waiting in the thread is what makes a hand-off fast: the kernel wakes
// the very thread that waits, with no trip through the runtime's poller.
// But Go's runtime makes a new thread whenever a goroutine stays in a
// system call while others are ready to run, and it never ends a thread it
// made: goroutines that all begin to wait in the kernel at the same moment
// on many connections leave the process with as many threads for good
// (4,000 idle Unix connections: about 190 threads, against 5 for as many
// net.Conn). So a wait holds its thread only when both
//
//   - the connection was busy a moment ago (a wait on it ended less than
//     Recent ago): then the next message is likely close, and
//   - fewer than Max calls of the process hold a thread waiting already
//     (TryAcquire); the others wait without one.
//
// An idle connection thus waits in the poller from the start, and however
// many connections turn busy at once, at most Max threads wait in the
// kernel.
package kwait

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Max is how many calls of the process may wait in their thread at once:
// as many as the CPUs, and at least 4 (the two directions of the two ends
// of a connection inside one process).
var Max = int32(max(4, runtime.NumCPU()))

// Recent is how soon after the end of its last wait a connection counts as
// busy: the length of the in-thread wait a busy connection may make
// (transport.FD's two 5 ms slices), so that a connection whose messages
// come more often than that keeps waiting in its thread.
const Recent = 10 * time.Millisecond

var held atomic.Int32

// TryAcquire takes one of the Max places to wait in a thread, and reports
// whether it got one. Release gives it back.
func TryAcquire() bool {
	for {
		n := held.Load()
		if n >= Max {
			return false
		}
		if held.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release gives back a place taken by TryAcquire.
func Release() { held.Add(-1) }

// Held returns how many places are taken (for tests).
func Held() int { return int(held.Load()) }

var epoch = time.Now()

// now returns the monotonic time since epoch, in nanoseconds.
func now() int64 { return int64(time.Since(epoch)) + 1 } // never 0

// Activity records when the waits of a connection end. The zero value is a
// connection that has never waited: idle.
type Activity struct{ last atomic.Int64 }

// Woke records that a wait ended with the call done: the connection is
// busy now.
func (a *Activity) Woke() { a.last.Store(now()) }

// Busy reports whether a wait ended less than Recent ago.
func (a *Activity) Busy() bool {
	l := a.last.Load()
	return l != 0 && now()-l < int64(Recent)
}

// Begin decides how a call on a connection with activity a waits: it
// reports true, having taken a place (Release it when the wait in the
// thread ends), when the connection is busy and a place is free.
func (a *Activity) Begin() bool { return a.Busy() && TryAcquire() }

// BusyFor makes the connection count as busy for d from now, as if a wait
// had ended then (for tests of the waits in a thread).
func (a *Activity) BusyFor(d time.Duration) { a.last.Store(now() + int64(d-Recent)) }
