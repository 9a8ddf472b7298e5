// Package procsync provides coordination primitives that live in a shared
// memory segment (package shm) and work across processes as well as across
// goroutines: Mutex, RWMutex, Semaphore, OwnedSemaphore, Event, Cond and
// Barrier.
//
// # When to use it
//
// Use procsync when several processes share memory (or any resource) on one
// machine and must coordinate without a broker. Within a single process,
// package sync is simpler and faster.
//
// # Crash safety
//
// Every primitive stays usable when a process is killed -9 at any point:
//
//   - Mutex follows the POSIX robust-mutex contract: when the holder dies,
//     the next locker takes the lock over (within about Config.Poll) and
//     gets ErrOwnerDead with the lock held; it repairs the data and calls
//     MarkConsistent, or the lock becomes not recoverable (ErrNotRecoverable
//     for everyone).
//   - RWMutex does the same for writers and reclaims the read locks of dead
//     readers.
//   - OwnedSemaphore returns the permits of a dead holder; Semaphore is the
//     plain, unowned counting semaphore.
//   - Barrier breaks (ErrBrokenBarrier) when a waiting party dies or gives up.
//   - Event and Cond hold nothing a dead process could keep.
//
// A process killed while it only waits (in Lock, RLock, Acquire, Wait, at
// any step) holds nothing, and the others see no error from its death:
// everything a waiter publishes in shared memory (a bit in the word it
// sleeps on, its token in a word it waits for, its count in a per-process
// table) is withdrawn by the next process that finds it stale, at the cost
// of at most one needless wake-up or one liveness test, and the fast paths
// are then as fast as on a fresh object. Two exceptions follow from what
// the primitives mean: a Barrier party killed inside Wait before its round
// trips breaks the round (the others would wait for it forever), and a
// Cond waiter killed after it took a wake-up takes that wake-up with it. A
// waiter killed while it still holds the Mutex passed to Cond.Wait is a
// holder of that Mutex.
//
// A holder is identified by its segment handle's process slot, guarded by an
// OFD lock the kernel drops when the process dies; PIDs are never trusted,
// so PID reuse and PID namespaces do not fool the check. PROTOCOL.md in the
// module root documents every word and its limits (a stopped process is
// alive; a descriptor inherited by a child keeps its parent alive).
//
// # Blocking
//
// Every blocking call takes a context (Lock, Acquire, Wait, ...) and has a
// Try form that never blocks and a Timeout form that returns ErrTimeout
// (a net.Error whose Timeout() is true). Uncontended acquire and release are
// a single atomic instruction each, without a system call. A contended call
// spins briefly (Config.Spin), then sleeps on a futex for at most
// Config.Poll at a time, so a missed wake-up or a dead peer can never hang a
// waiter. A cancelled context wakes the waiter at once.
//
// # Concurrency contract
//
// Handles are safe for concurrent use by many goroutines. Locks are owned
// by a process (exactly: by the shm.Segment handle they were opened
// through), not by a goroutine: any goroutine of the holding process may
// unlock, as with sync.Mutex. Opening the same name again returns a handle
// on the same object; parameters such as a semaphore's max or a barrier's
// parties must match. A handle must not be used after its segment is
// closed: calls then return net.ErrClosed.
package procsync
