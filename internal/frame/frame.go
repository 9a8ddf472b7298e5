// Package frame encodes messages as frames for transports that carry bytes
// or bounded packets (PROTOCOL.md, "Frames").
//
// A frame is an 8-byte header followed by its payload:
//
//	0  magic   0xC1
//	1  version 1
//	2  flags   bit 0 "more": the message continues in the next frame
//	3  zero
//	4  length  uint32, little-endian: payload bytes in this frame
//
// A message is one frame, or several whose flags have "more" set on all but
// the last (packet transports split messages larger than a packet). A
// byte-stream transport sends each message as one frame.
package frame

import (
	"encoding/binary"
	"fmt"

	"github.com/ipcgo/ipc/internal/ipcerr"
)

const (
	// HeaderSize is the size of a frame header.
	HeaderSize = 8
	// Magic is the first byte of every frame.
	Magic = 0xC1
	// Version is the frame format version.
	Version = 1

	flagMore = 1
)

// Header is a decoded frame header.
type Header struct {
	Len  int  // payload bytes
	More bool // the message continues in the next frame
}

// Put encodes h into b[:HeaderSize].
func (h Header) Put(b []byte) {
	b[0], b[1], b[3] = Magic, Version, 0
	b[2] = 0
	if h.More {
		b[2] = flagMore
	}
	binary.LittleEndian.PutUint32(b[4:8], uint32(h.Len))
}

// Parse decodes the header in b[:HeaderSize]. It returns ErrCorruptFrame for
// a wrong magic, version, flags or reserved byte, and ErrMessageTooLarge for
// a length above max.
func Parse(b []byte, max int) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d-byte header", ipcerr.ErrCorruptFrame, len(b))
	}
	if b[0] != Magic {
		return Header{}, fmt.Errorf("%w: magic %#x", ipcerr.ErrCorruptFrame, b[0])
	}
	if b[1] != Version {
		return Header{}, fmt.Errorf("%w: frame version %d, want %d", ipcerr.ErrCorruptFrame, b[1], Version)
	}
	if b[2]&^flagMore != 0 || b[3] != 0 {
		return Header{}, fmt.Errorf("%w: flags %#x %#x", ipcerr.ErrCorruptFrame, b[2], b[3])
	}
	n := binary.LittleEndian.Uint32(b[4:8])
	if max < 0 || uint64(n) > uint64(max) { // a negative max leaves no room
		return Header{}, fmt.Errorf("%w: frame of %d bytes, limit %d", ipcerr.ErrMessageTooLarge, n, max)
	}
	return Header{Len: int(n), More: b[2]&flagMore != 0}, nil
}
