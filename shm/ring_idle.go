package shm

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
)

// Idle waits. A ring's waiter that sleeps in futex(2) holds its thread
// for the whole sleep, and Go's runtime makes a thread for each goroutine
// that stays in a system call while others are ready to run, and keeps it:
// 1,000 goroutines in Recv on 1,000 idle shm connections left a process
// with 370 threads. So only a busy ring's waiter sleeps in its own thread
// (kwait); the others join an idle hub: a goroutine that sleeps in one
// futex_waitv(2) on the waiting words of up to 127 of them, plus a private
// word of its own that it is woken on when they come and go. When a word
// no longer reads 1 (the peer cleared it to wake its waiter), the hub
// tells that waiter through a channel. The waker does not change: it
// wakes the word, and futex_waitv waits on the same futex as FUTEX_WAIT.
// A hub holds one thread for up to 127 waiters.

// hubSize is how many waiters one hub watches: futex_waitv's limit, less
// the hub's own word.
const hubSize = futex.MaxMany - 1

// idleWaiter is a waiter that sleeps on a hub instead of in its thread.
type idleWaiter struct {
	word *atomic.Uint32 // the ring's waiting word: 1 while it sleeps
	woke chan struct{}  // a value when the word read other than 1 (capacity 1)
	h    *idleHub       // the hub that watches it; nil while none does (idle.mu)
}

// idleHub is a goroutine that waits for the words of its waiters.
type idleHub struct {
	ctl     atomic.Uint32 // changed and woken when its waiters change
	vec     futex.Vec     // the words of the wait (the hub's goroutine only)
	waiters []*idleWaiter // idle.mu
}

var idle struct {
	mu   sync.Mutex
	hubs []*idleHub // those with waiters
	off  bool       // futex_waitv is missing here: sleep in the thread
}

func newIdleWaiter(word *atomic.Uint32) *idleWaiter {
	return &idleWaiter{word: word, woke: make(chan struct{}, 1)}
}

// tell wakes w, which the hub no longer watches. It never blocks: a value
// still unread (the waiter's last sleep ended on its timer or context, and
// it joined again) wakes it as well. idle.mu is held.
func (w *idleWaiter) tell() {
	select {
	case w.woke <- struct{}{}:
	default:
	}
}

// join puts w on a hub, unless one watches it already. It reports false
// when there are no hubs on this system: then sleep in the thread.
func (w *idleWaiter) join() bool {
	idle.mu.Lock()
	defer idle.mu.Unlock()
	if idle.off {
		return false
	}
	if w.h != nil {
		return true
	}
	var h *idleHub
	for _, x := range idle.hubs {
		if len(x.waiters) < hubSize {
			h = x
			break
		}
	}
	if h == nil {
		h = &idleHub{}
		idle.hubs = append(idle.hubs, h)
		go h.run()
	}
	h.waiters = append(h.waiters, w)
	w.h = h
	h.changed()
	return true
}

// leave takes w off its hub, if one still watches it.
func (w *idleWaiter) leave() {
	idle.mu.Lock()
	defer idle.mu.Unlock()
	h := w.h
	if h == nil {
		return
	}
	w.h = nil
	for i, x := range h.waiters {
		if x == w {
			last := len(h.waiters) - 1
			h.waiters[i] = h.waiters[last]
			h.waiters[last] = nil
			h.waiters = h.waiters[:last]
			break
		}
	}
	h.changed()
}

// changed makes the hub look at its waiters again. idle.mu is held.
func (h *idleHub) changed() {
	h.ctl.Add(1)
	futex.WakePrivate(&h.ctl)
}

// run is the hub's goroutine: it tells each waiter whose word no longer
// reads 1, sleeps until one of the words changes, and ends once it has no
// waiters. It reads the words only under idle.mu, while their waiters,
// still in Ring.wait, keep the rings mapped.
func (h *idleHub) run() {
	for {
		idle.mu.Lock()
		h.vec.Reset()
		h.vec.Add(&h.ctl, h.ctl.Load(), true)
		keep := h.waiters[:0]
		for _, w := range h.waiters {
			if w.word.Load() != 1 {
				w.h = nil
				w.tell()
				continue
			}
			h.vec.Add(w.word, 1, false)
			keep = append(keep, w)
		}
		clear(h.waiters[len(keep):])
		h.waiters = keep
		if len(keep) == 0 {
			h.retire()
			idle.mu.Unlock()
			return
		}
		idle.mu.Unlock()
		// The bound only limits how long a word the kernel found unmapped
		// or a lost wake-up could go unnoticed; waiters keep their own
		// time (WaitOptions.Poll).
		_, e := h.vec.WaitMany(time.Second)
		if e == syscall.ENOSYS || e == syscall.EINVAL {
			idle.mu.Lock()
			idle.off = true
			for _, w := range h.waiters {
				w.h = nil
				w.tell() // they look again, and sleep in their threads
			}
			clear(h.waiters)
			h.waiters = nil
			h.retire()
			idle.mu.Unlock()
			return
		}
	}
}

// retire takes h out of the hubs. idle.mu is held.
func (h *idleHub) retire() {
	for i, x := range idle.hubs {
		if x == h {
			idle.hubs = append(idle.hubs[:i], idle.hubs[i+1:]...)
			return
		}
	}
}
