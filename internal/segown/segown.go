// Package segown lets a package of this module that controls every use of
// a shared-memory segment's memory give the segment's address range back
// to the system.
//
// shm.Segment.Close keeps the address range of a segment whose memory it
// handed out as slices or atomic views (rings included) as a placeholder
// of zero memory, so that a late use cannot fault. An owner that knows no
// such use can happen any more, such as an shm connection whose calls all
// hold the connection open while they touch its rings, unmaps it instead:
// a process that opens and closes connections for ever then keeps a
// constant address space.
package segown

// Unmap unmaps the memory of seg, a *shm.Segment: an open segment is closed
// as its Close method does but unmapped outright, and a segment closed
// already loses the placeholder its Close left. Any later use of memory
// obtained from the segment faults. Package shm sets it.
var Unmap func(seg any) error
