//go:build linux

package transport

import (
	"io"
	"os"
	"syscall"
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

// fileWriter writes a frame's header and payload to a pipe or FIFO with one
// writev(2) through the runtime poller, so that deadlines apply. net.Buffers
// does that for sockets only: on an *os.File it makes one write(2) per
// buffer, and the reader may wake for a header alone.
type fileWriter struct {
	rc  syscall.RawConn
	iov [2]unix.Iovec
	cnt int
	n   int
	err error
	fn  func(fd uintptr) bool
}

// newFileWriter returns a fileWriter for w if it is an *os.File, else nil.
func newFileWriter(w io.Writer) *fileWriter {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	fw := &fileWriter{rc: rc}
	fw.fn = fw.do
	return fw
}

func (w *fileWriter) do(fd uintptr) bool {
	// The iovecs point into the caller's buffers, which writev2 keeps alive
	// and unmoved until this call returns.
	return PollSyscall("writev", unix.SYS_WRITEV, fd, unsafe.Pointer(&w.iov[0]), uintptr(w.cnt), &w.n, &w.err)
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

// writev2 writes a then b, with as few writev(2) calls as the pipe allows.
// It returns the bytes written: all of them, or fewer with an error.
func (w *fileWriter) writev2(a, b []byte) (int, error) {
	defer func() { w.iov = [2]unix.Iovec{} }() // keep no reference to the caller's buffers
	total := 0
	for len(a)+len(b) > 0 {
		w.cnt = 0
		for _, p := range [2][]byte{a, b} {
			if len(p) > 0 {
				w.iov[w.cnt].Base = &p[0]
				w.iov[w.cnt].SetLen(len(p))
				w.cnt++
			}
		}
		w.n, w.err = 0, nil
		err := w.rc.Write(w.fn)
		if err == nil {
			err = w.err
		}
		n := w.n
		total += n
		if err != nil {
			return total, err
		}
		if n >= len(a) {
			b, a = b[n-len(a):], nil
		} else {
			a = a[n:]
		}
	}
	return total, nil
}
