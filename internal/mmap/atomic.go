package mmap

import (
	"sync/atomic"
	"unsafe"
)

// Uint32 returns an atomic view of the four bytes of b at off.
// off must be 4-byte aligned and b must be mapped memory (see the package
// comment); the caller checks bounds and alignment once, at layout time.
func Uint32(b []byte, off int) *atomic.Uint32 {
	_ = b[off+3] // bounds check
	// unsafe: mapped memory is reinterpreted as an atomic word; the offset is
	// aligned by construction and the memory is outside the Go heap.
	return (*atomic.Uint32)(unsafe.Pointer(&b[off]))
}

// Uint64 returns an atomic view of the eight bytes of b at off, which must
// be 8-byte aligned.
func Uint64(b []byte, off int) *atomic.Uint64 {
	_ = b[off+7]
	// unsafe: as in Uint32.
	return (*atomic.Uint64)(unsafe.Pointer(&b[off]))
}

// Int64 returns an atomic view of the eight bytes of b at off, which must be
// 8-byte aligned.
func Int64(b []byte, off int) *atomic.Int64 {
	_ = b[off+7]
	// unsafe: as in Uint32.
	return (*atomic.Int64)(unsafe.Pointer(&b[off]))
}

// PlainUint64 returns an ordinary (non-atomic) pointer to the eight bytes of
// b at off. It exists for code that demonstrates unsynchronised access.
func PlainUint64(b []byte, off int) *uint64 {
	_ = b[off+7]
	// unsafe: as in Uint32; plain loads and stores are the point of it.
	return (*uint64)(unsafe.Pointer(&b[off]))
}

// Aligned reports whether the first byte of b sits at an address that is a
// multiple of a (a power of two). An empty b is not aligned.
func Aligned(b []byte, a uintptr) bool {
	if len(b) == 0 {
		return false
	}
	// unsafe: only the address is inspected, nothing is dereferenced.
	return uintptr(unsafe.Pointer(&b[0]))&(a-1) == 0
}
