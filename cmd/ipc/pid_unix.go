//go:build unix

package main

import (
	"errors"

	"golang.org/x/sys/unix"
)

// pidAlive reports whether a process with that pid exists (it may be
// another process that reused the pid: a hint, not proof).
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
