//go:build linux

// Package futex wraps the futex(2) wait and wake operations on words in
// shared (MAP_SHARED) memory. The shared, not private, variants are used on
// purpose: the kernel then keys a waiter by the backing file and offset, so a
// waiter and a waker in different processes meet on the same word.
package futex

import (
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	opWait = 0 // FUTEX_WAIT, shared
	opWake = 1 // FUTEX_WAKE, shared

	opPrivate = 128 // FUTEX_PRIVATE_FLAG: a word of this process only
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

// MaxMany is the most words one WaitMany waits on (the kernel's
// FUTEX_WAITV_MAX).
const MaxMany = 128

// waitv is the kernel's struct futex_waitv.
type waitv struct {
	val      uint64
	uaddr    uint64
	flags    uint32
	reserved uint32
}

const (
	futex2SizeU32 = 0x02 // FUTEX2_SIZE_U32
	futex2Private = 128  // FUTEX2_PRIVATE: a word only this process waits on and wakes
)

// Vec is a set of words for WaitMany, futex_waitv(2)'s argument. Keep it
// where it does not move (a heap object, not a goroutine's stack) and
// keep the words it names mapped while it waits.
type Vec struct {
	v [MaxMany]waitv
	n int
}

// Reset empties v.
func (v *Vec) Reset() { v.n = 0 }

// Len returns how many words v holds.
func (v *Vec) Len() int { return v.n }

// Add adds the word at addr, to be waited on while it holds val; private:
// a word of this process's memory (not shared memory), woken by
// WakePrivate. It reports false, adding nothing, when v is full.
func (v *Vec) Add(addr *atomic.Uint32, val uint32, private bool) bool {
	if v.n == MaxMany {
		return false
	}
	fl := uint32(futex2SizeU32)
	if private {
		fl |= futex2Private
	}
	// unsafe: the kernel reads the word at this address during WaitMany;
	// the caller keeps it mapped until then (and its memory does not move:
	// shared mappings and heap objects stay where they are).
	v.v[v.n] = waitv{val: uint64(val), uaddr: uint64(uintptr(unsafe.Pointer(addr))), flags: fl}
	v.n++
	return true
}

// WaitMany blocks, for at most timeout, while every word of v holds its
// value (futex_waitv(2), Linux 5.16). It returns the index of a word that
// was woken; or -1 with EAGAIN (a word held another value already),
// ETIMEDOUT, EINTR, or ENOSYS when the kernel lacks futex_waitv. Callers
// re-check all their words either way: one wake-up reports one word.
func (v *Vec) WaitMany(timeout time.Duration) (int, syscall.Errno) {
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		return -1, unix.EINVAL
	}
	ts := unix.NsecToTimespec(now.Nano() + int64(timeout))
	// unsafe: v.v is read by the kernel during the call only, and the
	// words it names are the caller's (see Add); ts lives on this stack
	// for the call.
	r, _, e := unix.Syscall6(unix.SYS_FUTEX_WAITV, uintptr(unsafe.Pointer(&v.v[0])), uintptr(v.n), 0,
		uintptr(unsafe.Pointer(&ts)), unix.CLOCK_MONOTONIC, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), 0
}

// WakePrivate wakes the waiters of a private word of this process
// (a Vec.Add with private set).
func WakePrivate(addr *atomic.Uint32) {
	// unsafe: as in Wait.
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWake|opPrivate,
		1<<30, 0, 0, 0)
}
