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

// Unmap releases a mapping made by Map: its address range goes back to the
// system, and any later access through b faults. The caller must know that
// no pointer into b is used any more.
func Unmap(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unix.Munmap(b)
}

// reserveFlags make a placeholder: private, anonymous, and MAP_NORESERVE,
// so that it is not charged to the commit limit (Committed_AS) in the
// kernel's default overcommit modes. Pages never touched use no memory.
const reserveFlags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_NORESERVE

// Invalidate detaches b from the file it maps. The address range is replaced,
// in one mmap call, by private zero-filled memory instead of being unmapped:
// a goroutine that still holds a pointer into b (a slice handed out before
// Close) then touches harmless private memory instead of faulting. The range
// keeps its address space (VmSize) but is not charged to the commit limit,
// and pages never written use no memory.
func Invalidate(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	// unsafe: the address of the existing mapping is needed to replace it in
	// place with MAP_FIXED; b was returned by Map and is not Go heap memory.
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	_, _, errno := unix.Syscall6(unix.SYS_MMAP, addr, uintptr(len(b)),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_FIXED|reserveFlags, ^uintptr(0), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// Placeholder returns size bytes of fresh private zero memory, made as
// Invalidate makes its replacement: what a closed handle hands out when its
// mapping is gone. It is never unmapped.
func Placeholder(size int) ([]byte, error) {
	return unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, reserveFlags)
}
