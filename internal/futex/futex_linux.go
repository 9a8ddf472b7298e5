//go:build linux

// Package futex wraps the futex(2) wait and wake operations on words in
// shared (MAP_SHARED) memory. The shared, not private, variants are used on
// purpose: the kernel then keys a waiter by the backing file and offset, so a
// waiter and a waker in different processes meet on the same word.
package futex

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	opWait = 0 // FUTEX_WAIT, shared
	opWake = 1 // FUTEX_WAKE, shared
)

// Supported reports whether futexes work on this system.
const Supported = true

// Wait blocks while *addr == val, for at most timeout (which must be > 0: a
// wait without a bound is never made). It returns early on a wake-up, on a
// signal, or at once when *addr != val. It reports whether it returned
// because of a wake (or a changed value); a timeout or a signal (EINTR)
// reports false. Callers re-check their condition either way.
func Wait(addr *atomic.Uint32, val uint32, timeout time.Duration) bool {
	if timeout <= 0 {
		return false
	}
	ts := unix.NsecToTimespec(int64(timeout))
	// unsafe: futex(2) takes the address of the word and of the timespec;
	// addr points into mapped memory, ts lives on this stack for the call.
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWait,
		uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
	// A signal is not a wake-up: Go's handlers turn an interrupted
	// FUTEX_WAIT into EINTR, and a SIGCHLD from a dying lock holder (when
	// the waiter is its parent) would otherwise be taken for one, making
	// the waiter sleep a whole extra poll before testing the holder.
	return errno != unix.ETIMEDOUT && errno != unix.EINTR
}

// Wake wakes at most n waiters blocked on addr and returns how many woke.
func Wake(addr *atomic.Uint32, n int) int {
	// unsafe: as in Wait.
	r, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWake,
		uintptr(n), 0, 0, 0)
	if errno != 0 {
		return 0
	}
	return int(r)
}
