//go:build linux

package transport

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PipeBuffer is the capacity GrowPipe asks for: twice the kernel's usual
// 64 KiB, so that a 64 KiB message and its frame header fit in the pipe at
// once (with 64 KiB, its last 8 bytes would cost the writer a second
// wake-up, and the reader a third). Larger pipes would count against the
// user's pipe-user-pages-soft allowance (64 MiB), beyond which the kernel
// gives every new pipe of the user, in any program, only two pages.
const PipeBuffer = 128 << 10

// GrowPipe raises the capacity of the pipe or FIFO f to PipeBuffer if it is
// smaller. It is best effort: a kernel that refuses leaves the pipe as it
// was, and the transport works the same, a little slower for messages near
// 64 KiB.
func GrowPipe(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if n, err := unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0); err == nil && n < PipeBuffer {
			_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, PipeBuffer)
		}
	})
}

// PollSyscall makes system call trap(fd, p, a3) for a syscall.RawConn Read
// or Write callback, whose result it is: it retries on EINTR, returns false
// on EAGAIN (the runtime's poller then waits for the descriptor), and
// otherwise stores the result in *n and *err (an *os.SyscallError named
// name) and returns true. p is the call's buffer or message header; the
// conversion to uintptr happens in the call itself, as unsafe.Pointer's
// rules for system calls require.
func PollSyscall(name string, trap, fd uintptr, p unsafe.Pointer, a3 uintptr, n *int, err *error) bool {
	for {
		r, _, e := unix.Syscall(trap, fd, uintptr(p), a3)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case 0:
			*n, *err = int(r), nil
		default:
			*n, *err = 0, os.NewSyscallError(name, e)
		}
		return true
	}
}
