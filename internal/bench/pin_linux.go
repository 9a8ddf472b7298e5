//go:build linux

package bench

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// AllowedCPUs returns the CPUs this process may run on, in order.
func AllowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cpus []int
	for c := 0; c < 1024; c++ { // CPU_SETSIZE
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// pinProcess makes this whole process run on cpu only. A Go process has
// threads already, and a thread's CPU mask is its own; so pinProcess sets
// the calling thread's mask and re-executes the program, which then starts
// with that mask on every thread. It returns only
// on failure, or at once in the re-executed process.
func pinProcess(cpu int) error {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil && set.Count() == 1 && set.IsSet(cpu) {
		os.Unsetenv(pinnedEnv) // not for this process's children
		return nil
	}
	if os.Getenv(pinnedEnv) != "" {
		return fmt.Errorf("pinned to CPU %d, but the CPU mask did not hold across exec", cpu)
	}
	runtime.LockOSThread() // the mask and the exec must be on one thread
	set.Zero()
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("pin to CPU %d: sched_setaffinity: %w", cpu, err)
	}
	env := append(os.Environ(), pinnedEnv+"=1")
	if os.Getenv("GOMAXPROCS") == "" {
		// Keep the runtime as it would be unpinned (one P per CPU of the
		// machine) and restrict only where its threads run: with a
		// GOMAXPROCS of 1, shm's one-way rate at 1 MiB was measured to
		// halve, as the spinning waiter and the runtime's own work then
		// take turns on a single P.
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", runtime.GOMAXPROCS(0)))
	}
	err := unix.Exec("/proc/self/exe", os.Args, env)
	runtime.UnlockOSThread()
	return fmt.Errorf("pin to CPU %d: exec: %w", cpu, err)
}
