// Package shm implements shared-memory segments for processes on one Linux
// machine: a fixed-size block of memory that every attached process maps,
// with a validated header, a table of process slots that tells which
// processes are attached and alive, and a directory of named objects placed
// in the segment's data area.
//
// # Named and anonymous segments
//
// A named segment is a file in /dev/shm (Dir). Create makes it, Open attaches
// to it by name from any process allowed by the file's permissions, Stat reads
// its header without attaching, List finds the segments in /dev/shm, and
// Unlink removes the name. A named segment outlives the processes that use
// it: it lasts until Unlink (or a reboot), so a crashed program leaves it
// behind. Create writes the whole header into a temporary file and links it
// under its name only when complete, so Open never sees a half-initialised
// segment; it fails with ErrExists if the name is taken. Unlink refuses
// (ErrNotSegment) to remove a file this package did not create; handles
// already attached keep working after Unlink, and the memory is freed when the
// last one closes. Names are 1 to MaxNameLen bytes of [A-Za-z0-9._-], not
// starting with '.' and without "..", so a name always stays inside /dev/shm
// (ValidateName; ErrBadName otherwise).
//
// An anonymous segment (CreateAnonymous) is backed by a memfd: it has no name,
// nothing to clean up, and lives as long as some process holds its file or
// mapping. It is shared by passing File() to another process, usually a child
// through exec.Cmd.ExtraFiles (or over a Unix socket with SCM_RIGHTS); the
// receiver attaches with OpenFile. Use a named segment for processes that find
// each other by name or for inspection by tools; use an anonymous segment for
// a parent and the children it starts.
//
// OpenFile opens the file afresh (through /proc/self/fd) so that the new
// handle has its own open file description, and closes the file it was
// given. Never pass it the File() of a handle that is still in use: that
// handle would lose its descriptor.
//
// # Layout and validation
//
// A segment starts with a 128-byte header (HeaderSize), followed by the slot
// table (Config.Slots records of SlotSize bytes), the object directory
// (Config.Objects entries of EntrySize bytes) and the data area, which starts
// at a multiple of Align; the total size is rounded up to a whole page. The
// header records a magic string, the layout Version, the total size, the
// creator's PID and UID, the creation time, the slot and directory counts and
// the offsets derived from them, and a CRC-32C checksum of those fields. It
// is written once, at creation, and never changes, except for the allocation
// cursor after the checksum, which Alloc advances.
//
// Open, OpenFile and Stat check the header with Validate before using
// anything in it: a file without the magic is ErrNotSegment, another layout
// version is ErrVersion, a wrong checksum or inconsistent offsets are
// ErrCorrupt, and a file whose size differs from the recorded size (a
// truncated file, say) is ErrSizeMismatch. A damaged directory entry is
// skipped, never returned as a region outside the data area.
//
// # Process slots and owner tokens
//
// Every handle, whether from Create, CreateAnonymous, Open or OpenFile,
// claims one process slot, so one process may hold several. The handle claims
// a free slot by taking an open-file-description (OFD) write lock on one byte
// of the slot's record, increments the slot's generation and records its PID,
// UID and the time. The kernel drops the lock when the file description is
// closed, by Close or by the death of the process, however it dies: whether a
// slot's owner is alive is whether its lock is still held (SlotInfo,
// SlotAlive), and a dead owner's slot is free for the next handle.
//
// A handle's owner token (Token) packs its slot index and the low 19 bits of
// the slot's generation into a non-zero 31-bit value, which coordination
// primitives (package procsync) store in shared words to name a holder.
// TokenOwner and TokenAlive tell whether the holder named by a token still
// holds its slot. Once the slot has been claimed again, the token is dead even
// if the new holder reuses the old PID, because the generation differs.
//
// # Placing data
//
// Alloc returns the region of the data area called name, creating it zeroed
// if it does not exist; AllocObject does the same for any Kind and can
// initialise the bytes before other processes can see the object. Every
// process that allocates or looks up (Lookup, Objects) the same name gets the
// same Region: the same offset (Off) and length, 64-byte aligned. Creating an
// object is serialised across handles and processes by an OFD lock, so
// concurrent Allocs of one name yield one region; an existing object of
// another kind or size is ErrKindMismatch.
//
// The segment is mapped at a different address in every process. Data in it
// must therefore be plain bytes: integers, and offsets instead of pointers. Go
// pointers are never stored in shared memory, neither by this package nor,
// correctly, by its users: the garbage collector does not scan the mapping,
// and a pointer would mean nothing in another process. Region.Bytes, Mem, and
// the atomic views Region.Uint32 and Region.Uint64 point into the mapping,
// which is outside the Go heap.
//
// # Concurrency
//
// The methods of Segment are safe for concurrent use by multiple goroutines.
// The bytes of a region are not synchronised in any way: other goroutines and
// other processes read and write them at the same time, so access that can
// race must use the atomic views (Region.Uint32, Region.Uint64) or a lock such
// as procsync.Mutex. The race detector only tracks Go-managed memory, so it
// does not report races on a segment's bytes.
//
// # Close
//
// Close releases the handle's slot, its file and its mapping. Later calls on
// the handle return an error satisfying errors.Is(err, net.ErrClosed), and a
// second Close does too. What becomes of the mapping depends on whether
// its memory was handed out:
//
//   - If no slice or atomic view was ever taken (Mem, Region.Bytes,
//     Region.Uint32, Region.Uint64, rings, procsync primitives), Close
//     unmaps it: the process gets back its address space, its commit charge
//     and its memory. The calls of this package that read the mapping
//     (Lookup, Objects, TokenOwner, ...) hold it while they run, and Close
//     waits for them; afterwards they return net.ErrClosed, and a view asked
//     for after Close is zero memory apart from any segment.
//   - Otherwise Close cannot know whether a goroutine still holds a view, so
//     it replaces the mapping in place by a placeholder: private zero memory,
//     made with MAP_NORESERVE. A stale view then never faults: it reads
//     zeros, and its writes reach no segment (and no other process). The
//     placeholder keeps the address range (VmSize, one mapping; adjacent
//     ones merge) for the life of the process, but uses no memory until
//     written and is not charged to the commit limit (Committed_AS) in the
//     kernel's default overcommit modes 0 and 1 (mode 2 ignores
//     MAP_NORESERVE and charges it). A process that opens and closes
//     segments for ever and takes views of each therefore grows its
//     address space by their sizes; nothing else.
//
// The shm transport (ipc.Dial with shm://) knows when its own rings are no
// longer used, and unmaps them outright once the last call on a closed
// connection returns. Closing one handle does not affect others, in this
// process or any other.
//
// # Errors
//
// Every error is an *OpError naming the operation and the segment; test for
// the sentinel errors of this package (ErrNotFound, ErrNoSlot, ...) with
// errors.Is. Operating-system errors are wrapped unchanged, so for example
// errors.Is(err, fs.ErrPermission) reports a segment whose file mode denies
// access.
//
// # Configuration
//
// A nil *Config means DefaultConfig(): mode 0600, 64 slots, 128 directory
// entries. In a non-nil Config a zero field takes its default. The mode is
// applied exactly, whatever the process's umask.
//
// # Caveats
//
//   - A child that inherits a handle's file descriptor (through ExtraFiles,
//     or any descriptor without close-on-exec) shares the handle's open file
//     description and therefore its slot lock: the handle's slot stays alive
//     until the child closes it or exits, even after the handle is closed or
//     its process dies. Children should attach with OpenFile, which closes the
//     inherited descriptor.
//   - At most Config.Slots handles can be attached at once, across all
//     processes; beyond that, Open and OpenFile fail with ErrNoSlot until a
//     handle is closed or its process dies.
//   - Space is never reused: objects cannot be freed, and once the data area
//     or the directory is full, Alloc fails with ErrNoSpace. Size a segment
//     for everything it will hold; the size is fixed at creation.
//   - A token keeps 19 bits of the generation, so a token could look alive
//     again only after its slot has been claimed 2^19 more times.
//   - Segments are available on Linux only; elsewhere every constructor fails
//     with ErrUnsupported.
package shm
