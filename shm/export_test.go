package shm

import "unsafe"

// Limits of Validate that the external tests check decoded headers against.
const (
	MaxObjectsForTest = maxObjects
	MaxSizeForTest    = maxSize
)

// IdleForTest returns how many hubs run and how many waiters they watch.
func IdleForTest() (hubs, waiters int) {
	idle.mu.Lock()
	defer idle.mu.Unlock()
	for _, h := range idle.hubs {
		waiters += len(h.waiters)
	}
	return len(idle.hubs), waiters
}

// AddrForTest returns the address of the segment's mapping without
// handing out a view of it.
func AddrForTest(s *Segment) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(s.mem))) }
