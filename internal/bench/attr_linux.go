//go:build linux

package bench

import "syscall"

// peerAttr puts a peer in its own process group, so that a terminal's
// Ctrl-C reaches only the parent (which then stops the peer and removes
// what the pair used), and has the kernel kill the peer if the parent dies.
func peerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// processAlive reports whether a process with this pid exists (or might:
// any answer but "no such process" counts as alive).
func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) != syscall.ESRCH
}
