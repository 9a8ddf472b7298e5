//go:build linux

package race

import "syscall"

// workerAttr puts a worker in its own process group, so that a terminal's
// Ctrl-C reaches only the supervisor (which then stops the workers and
// removes the segment), and has the kernel send the worker SIGTERM if the
// supervisor dies without cleaning up (SIGKILL): the worker then removes
// the segment and exits.
func workerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
