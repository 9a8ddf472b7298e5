//go:build !linux

// Package futex wraps the futex(2) wait and wake operations. On this system
// there are no futexes: Wait sleeps for its timeout, Wake does nothing, and
// nothing that needs them can be created (the shm package refuses first).
package futex

import (
	"sync/atomic"
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
