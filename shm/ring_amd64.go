package shm

import (
	"sync/atomic"
	"unsafe"
)

// storeRelease stores v in *p with release ordering: earlier stores are
// visible before it. On amd64 every store is a release store (TSO), so a
// plain store does, without the full fence of an atomic store (XCHG).
func storeRelease(p *atomic.Uint64, v uint64) {
	// unsafe: p points into mapped memory (see internal/mmap); the plain
	// store is an aligned 8-byte MOV, which readers see whole.
	*(*uint64)(unsafe.Pointer(p)) = v
}
