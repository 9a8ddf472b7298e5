//go:build !linux

// Package futex wraps the futex(2) wait and wake operations. On this system
// there are no futexes: Wait sleeps for its timeout, Wake does nothing, and
// nothing that needs them can be created (the shm package refuses first).
package futex

import (
	"sync/atomic"
	"syscall"
	"time"
)

// Supported reports whether futexes work on this system.
const Supported = false

// Wait sleeps for timeout and reports false.
func Wait(addr *atomic.Uint32, val uint32, timeout time.Duration) bool {
	time.Sleep(timeout)
	return false
}

// Wake does nothing.
func Wake(addr *atomic.Uint32, n int) int { return 0 }

// MaxMany is the most words one WaitMany waits on.
const MaxMany = 128

// Vec is a set of words for WaitMany; here WaitMany always fails.
type Vec struct{ n int }

// Reset empties v.
func (v *Vec) Reset() { v.n = 0 }

// Len returns how many words v holds.
func (v *Vec) Len() int { return v.n }

// Add counts the word.
func (v *Vec) Add(addr *atomic.Uint32, val uint32, private bool) bool {
	if v.n == MaxMany {
		return false
	}
	v.n++
	return true
}

// WaitMany returns ENOSYS: there are no futexes.
func (v *Vec) WaitMany(timeout time.Duration) (int, syscall.Errno) { return -1, syscall.ENOSYS }

// WakePrivate does nothing.
func WakePrivate(addr *atomic.Uint32) {}
