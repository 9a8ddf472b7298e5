// Package segown lets a package of this module that controls every use of
// a shared-memory segment's memory close the segment with its mapping
// removed.
//
// shm.Segment.Close keeps the address range of a segment whose memory it
// handed out as slices or atomic views (rings included) reserved as zero
// memory, so that a late use cannot fault. An owner that knows no such
// use can happen any more, such as an shm connection whose calls all hold
// the connection open while they touch its rings, returns the range to
// the system instead: a process that opens and closes connections for
// ever then keeps a constant address space.
package segown

// Unmap closes seg, a *shm.Segment, as its Close method does, except that
// the mapping is always unmapped: any later use of memory obtained from
// the segment faults. Package shm sets it.
var Unmap func(seg any) error
