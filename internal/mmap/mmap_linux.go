//go:build linux

package mmap

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Map maps size bytes of fd, shared and read-write.
func Map(fd int, size int) ([]byte, error) {
	return unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

// Invalidate detaches b from the file it maps. The address range is replaced,
// in one mmap call, by private zero-filled memory instead of being unmapped:
// a goroutine that still holds a pointer into b (a racing call on a handle
// that is being closed) then touches harmless private memory instead of
// faulting. The range costs address space only; pages never written use no
// memory.
func Invalidate(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	// unsafe: the address of the existing mapping is needed to replace it in
	// place with MAP_FIXED; b was returned by Map and is not Go heap memory.
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	_, _, errno := unix.Syscall6(unix.SYS_MMAP, addr, uintptr(len(b)),
		unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_FIXED|unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uintptr(0), 0)
	if errno != 0 {
		return errno
	}
	return nil
}
