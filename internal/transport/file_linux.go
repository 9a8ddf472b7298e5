//go:build linux

package transport

import (
	"os"

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
