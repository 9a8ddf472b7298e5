//go:build !linux

package race

import "syscall"

// workerAttr puts a worker in its own process group. (Without Linux there
// are no segments to race on: Run fails before starting a worker.)
func workerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
