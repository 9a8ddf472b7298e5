package shm

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Layout constants of version 2; PROTOCOL.md is the reference.
const (
	// Version is the segment layout version this package writes and reads.
	// Version 2 changed how procsync waiters announce themselves in their
	// objects' words (PROTOCOL.md, "Versioning").
	Version = 2

	// HeaderSize is the size of the fixed header at offset 0.
	HeaderSize = 128
	// SlotSize is the size of one process-slot record.
	SlotSize = 64
	// EntrySize is the size of one object-directory entry.
	EntrySize = 64
	// MaxSlots bounds Config.Slots: a slot index plus one must fit the 12
	// bits an owner token gives it, and the all-ones value is reserved.
	MaxSlots = 4094
	// MaxObjectName is the longest object name, in bytes.
	MaxObjectName = 40
	// MaxNameLen is the longest segment name, in bytes.
	MaxNameLen = 200
	// Align is the alignment of every object in the data area (a cache line).
	Align = 64

	magic = "IPCGOSHM"

	offMagic     = 0
	offVersion   = 8
	offHdrSize   = 12
	offSize      = 16
	offPID       = 24
	offUID       = 28
	offCreated   = 32
	offSlotCount = 40
	offDirCount  = 44
	offSlotOff   = 48
	offDirOff    = 52
	offDataOff   = 56
	offChecksum  = 60
	offAllocNext = 64 // mutable; also the byte range of the directory lock
	checksummed  = offChecksum

	// slot record fields
	slotGen   = 0
	slotPID   = 4
	slotSince = 8
	slotUID   = 16

	// directory entry fields
	entState = 0
	entKind  = 4
	entOff   = 8
	entSize  = 16
	entName  = 24

	entryFree  = 0
	entryReady = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the decoded fixed header of a segment.
type Header struct {
	Version    uint32
	Size       uint64 // total bytes, header included
	CreatorPID uint32
	CreatorUID uint32
	Created    int64 // Unix nanoseconds
	Slots      uint32
	Objects    uint32 // capacity of the object directory
	SlotOff    uint32
	DirOff     uint32
	DataOff    uint32
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) &^ (a - 1) }

// layout fills the derived offsets of h from Slots and Objects.
func (h *Header) layout() {
	h.SlotOff = HeaderSize
	h.DirOff = h.SlotOff + h.Slots*SlotSize
	h.DataOff = uint32(alignUp(uint64(h.DirOff)+uint64(h.Objects)*EntrySize, Align))
}

// encode writes h and its checksum into b[:HeaderSize] and sets the
// allocation cursor to the start of the data area.
func (h *Header) encode(b []byte) {
	le := binary.LittleEndian
	copy(b[offMagic:], magic)
	le.PutUint32(b[offVersion:], Version)
	le.PutUint32(b[offHdrSize:], HeaderSize)
	le.PutUint64(b[offSize:], h.Size)
	le.PutUint32(b[offPID:], h.CreatorPID)
	le.PutUint32(b[offUID:], h.CreatorUID)
	le.PutUint64(b[offCreated:], uint64(h.Created))
	le.PutUint32(b[offSlotCount:], h.Slots)
	le.PutUint32(b[offDirCount:], h.Objects)
	le.PutUint32(b[offSlotOff:], h.SlotOff)
	le.PutUint32(b[offDirOff:], h.DirOff)
	le.PutUint32(b[offDataOff:], h.DataOff)
	le.PutUint32(b[offChecksum:], crc32.Checksum(b[:checksummed], castagnoli))
	le.PutUint64(b[offAllocNext:], uint64(h.DataOff))
}

// Validate decodes and checks the header at the start of b, the first bytes
// of a file whose size is fileSize. It is the one place where a segment is
// judged: the magic (ErrNotSegment), the layout version (ErrVersion), the
// checksum and the internal consistency of the offsets (ErrCorrupt), and the
// recorded size against the file's size (ErrSizeMismatch). b may be only the
// header; offsets are checked against the recorded size, never against len(b).
func Validate(b []byte, fileSize int64) (Header, error) {
	var h Header
	if len(b) < len(magic) || string(b[:len(magic)]) != magic {
		return h, ErrNotSegment
	}
	if len(b) < HeaderSize {
		return h, fmt.Errorf("%w: header is %d bytes, want %d", ErrCorrupt, len(b), HeaderSize)
	}
	le := binary.LittleEndian
	h.Version = le.Uint32(b[offVersion:])
	if h.Version != Version {
		return h, fmt.Errorf("%w: version %d, this build reads %d", ErrVersion, h.Version, Version)
	}
	if sum := crc32.Checksum(b[:checksummed], castagnoli); sum != le.Uint32(b[offChecksum:]) {
		return h, fmt.Errorf("%w: checksum %#x, header says %#x", ErrCorrupt, sum, le.Uint32(b[offChecksum:]))
	}
	h.Size = le.Uint64(b[offSize:])
	h.CreatorPID = le.Uint32(b[offPID:])
	h.CreatorUID = le.Uint32(b[offUID:])
	h.Created = int64(le.Uint64(b[offCreated:]))
	h.Slots = le.Uint32(b[offSlotCount:])
	h.Objects = le.Uint32(b[offDirCount:])
	h.SlotOff = le.Uint32(b[offSlotOff:])
	h.DirOff = le.Uint32(b[offDirOff:])
	h.DataOff = le.Uint32(b[offDataOff:])
	if le.Uint32(b[offHdrSize:]) != HeaderSize || h.Slots == 0 || h.Slots > MaxSlots ||
		h.Objects > maxObjects {
		return h, fmt.Errorf("%w: bad header size, slot or object count", ErrCorrupt)
	}
	want := Header{Slots: h.Slots, Objects: h.Objects}
	want.layout()
	if h.SlotOff != want.SlotOff || h.DirOff != want.DirOff || h.DataOff != want.DataOff ||
		h.Size < uint64(h.DataOff) || h.Size > maxSize {
		return h, fmt.Errorf("%w: inconsistent offsets", ErrCorrupt)
	}
	if uint64(fileSize) != h.Size {
		return h, fmt.Errorf("%w: header says %d bytes, file has %d", ErrSizeMismatch, h.Size, fileSize)
	}
	if len(b) >= offAllocNext+8 {
		next := le.Uint64(b[offAllocNext:])
		if next < uint64(h.DataOff) || next > h.Size {
			return h, fmt.Errorf("%w: allocation cursor %d outside the data area", ErrCorrupt, next)
		}
	}
	return h, nil
}

const (
	maxObjects = 1 << 16
	maxSize    = 1 << 44 // 16 TiB: far beyond any real segment, small enough to rule out garbage
)
