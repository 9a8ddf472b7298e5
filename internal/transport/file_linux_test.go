//go:build linux

package transport

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// setPipeSize sets the capacity of the pipe of f (tests only).
func setPipeSize(f *os.File, n int) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, n) })
}

func pipeSize(t *testing.T, f *os.File) int {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ferr error
	if err := rc.Control(func(fd uintptr) { n, ferr = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0) }); err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
	return n
}

// TestGrowPipe checks that GrowPipe raises a pipe to PipeBuffer and never
// shrinks one.
func TestGrowPipe(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/fs/pipe-max-size")
	if err != nil {
		t.Skip(err)
	}
	var max int
	for _, c := range b {
		if c >= '0' && c <= '9' {
			max = max*10 + int(c-'0')
		}
	}
	if max < PipeBuffer {
		t.Skipf("pipe-max-size %d is below %d", max, PipeBuffer)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	GrowPipe(w)
	if n := pipeSize(t, r); n != PipeBuffer {
		t.Errorf("after GrowPipe: %d bytes, want %d", n, PipeBuffer)
	}
	setPipeSize(w, 2*PipeBuffer)
	GrowPipe(r)
	if n := pipeSize(t, r); n != 2*PipeBuffer {
		t.Errorf("GrowPipe changed a %d-byte pipe to %d", 2*PipeBuffer, n)
	}
}
