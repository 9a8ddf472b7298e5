package rpc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"google.golang.org/grpc/metadata"
)

// Frame types. Every frame is one ipc.Conn message: type, flags, stream id
// (uvarint), then a body that depends on the type and flags. PROTOCOL.md
// ("rpc") documents the layout.
const (
	frameHello  byte = 1 // both ways, first frame: magic, version, window, crc
	frameData   byte = 2 // request head, header, message, half-close, status
	frameCancel byte = 3 // client to server: abandon the stream (RST)
	frameWindow byte = 4 // either way: more messages the sender may send
	frameGoAway byte = 5 // server to client: no new streams on this connection
)

// Flags of a data frame; the sections they announce follow in this order.
const (
	flagHead   byte = 1 << 0 // client: request head (method, timeout, subtype, metadata); opens the stream
	flagHeader byte = 1 << 1 // server: header metadata
	flagStatus byte = 1 << 2 // server: status and trailer; ends the stream
	flagEnd    byte = 1 << 3 // client: half-close after this frame
	flagMsg    byte = 1 << 4 // a message: the rest of the frame

	flagsKnown = flagHead | flagHeader | flagStatus | flagEnd | flagMsg
)

const (
	// protocolVersion is the version this package speaks.
	protocolVersion = 1
	helloMagic      = "iRPC"
	helloLen        = 3 + len(helloMagic) + 1 + 4 + 4 // header, magic, version, window, crc
	// defaultWindow is the number of messages a stream's receiver lets the
	// sender have in flight before it grants more.
	defaultWindow = 32
	maxMDPairs    = 1 << 14
)

// errFrame is the cause of a corrupt frame; decode errors wrap it.
var errFrame = errors.New("corrupt frame")

// frame is a decoded frame. Its byte slices and strings alias the buffer it
// was decoded from, except metadata, which is copied.
type frame struct {
	typ, flags byte
	id         uint64

	// hello
	version uint32
	window  uint32

	// head (flagHead)
	method  []byte
	timeout int64 // nanoseconds left; 0: no deadline
	subtype []byte
	md      metadata.MD // request metadata, or header metadata (flagHeader)

	// status (flagStatus)
	code    uint32
	msg     []byte
	details []byte // a marshalled google.rpc.Status when the status has details
	trailer metadata.MD

	// window frame: the credit granted
	credit uint32

	payload []byte // flagMsg
}

// appendFrameHeader appends type, flags and stream id.
func appendFrameHeader(b []byte, typ, flags byte, id uint64) []byte {
	b = append(b, typ, flags)
	return binary.AppendUvarint(b, id)
}

func appendHello(b []byte, version uint32, window uint32) []byte {
	b = append(b, frameHello, 0, 0)
	b = append(b, helloMagic...)
	b = append(b, byte(version))
	b = binary.BigEndian.AppendUint32(b, window)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendMD appends metadata as a count of pairs and the pairs.
func appendMD(b []byte, md metadata.MD) []byte {
	n := 0
	for _, vs := range md {
		n += len(vs)
	}
	b = binary.AppendUvarint(b, uint64(n))
	for k, vs := range md {
		for _, v := range vs {
			b = appendString(b, k)
			b = appendString(b, v)
		}
	}
	return b
}

// appendHead appends the request head of a stream's first frame.
func appendHead(b []byte, method string, timeout int64, subtype string, md metadata.MD) []byte {
	b = appendString(b, method)
	b = binary.AppendUvarint(b, uint64(timeout))
	b = appendString(b, subtype)
	return appendMD(b, md)
}

// appendStatus appends code, message, details and the trailer.
func appendStatus(b []byte, code uint32, msg string, details []byte, trailer metadata.MD) []byte {
	b = binary.AppendUvarint(b, uint64(code))
	b = appendString(b, msg)
	b = appendBytes(b, details)
	return appendMD(b, trailer)
}

// decoder reads the fields of a frame; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errFrame, what)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) md(what string) metadata.MD {
	n := d.uvarint(what)
	if d.err != nil || n == 0 {
		return nil
	}
	// Every pair takes at least two bytes: a count larger than that is a lie.
	if n > maxMDPairs || n > uint64(len(d.b))/2 {
		d.fail(what)
		return nil
	}
	md := make(metadata.MD, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		k := d.bytes(what)
		v := d.bytes(what)
		if d.err != nil {
			return nil
		}
		key := string(k)
		md[key] = append(md[key], string(v))
	}
	return md
}

// decodeFrame decodes b into f. It is the one validation of every frame
// this package receives: any error means the peer is broken or foreign.
func decodeFrame(b []byte, f *frame) error {
	*f = frame{}
	if len(b) < 3 {
		return fmt.Errorf("%w: %d bytes", errFrame, len(b))
	}
	f.typ, f.flags = b[0], b[1]
	d := decoder{b: b[2:]}
	f.id = d.uvarint("stream id")
	if d.err != nil {
		return d.err
	}
	switch f.typ {
	case frameHello:
		if len(b) != helloLen || f.flags != 0 || f.id != 0 {
			return fmt.Errorf("%w: bad hello", errFrame)
		}
		if string(b[3:3+len(helloMagic)]) != helloMagic {
			return fmt.Errorf("%w: bad hello magic", errFrame)
		}
		if crc32.ChecksumIEEE(b[:helloLen-4]) != binary.BigEndian.Uint32(b[helloLen-4:]) {
			return fmt.Errorf("%w: bad hello checksum", errFrame)
		}
		f.version = uint32(b[3+len(helloMagic)])
		f.window = binary.BigEndian.Uint32(b[4+len(helloMagic):])
		if f.window == 0 {
			return fmt.Errorf("%w: hello with window 0", errFrame)
		}
		return nil
	case frameData:
		if f.flags&^flagsKnown != 0 || f.id == 0 {
			return fmt.Errorf("%w: data flags %#x id %d", errFrame, f.flags, f.id)
		}
		if f.flags&flagHead != 0 {
			f.method = d.bytes("method")
			t := d.uvarint("timeout")
			if t > math.MaxInt64 {
				d.fail("timeout")
			}
			f.timeout = int64(t)
			f.subtype = d.bytes("content subtype")
			f.md = d.md("metadata")
		}
		if f.flags&flagHeader != 0 {
			f.md = d.md("header")
		}
		if f.flags&flagStatus != 0 {
			c := d.uvarint("status code")
			if c > math.MaxUint32 {
				d.fail("status code")
			}
			f.code = uint32(c)
			f.msg = d.bytes("status message")
			f.details = d.bytes("status details")
			f.trailer = d.md("trailer")
		}
		if d.err != nil {
			return d.err
		}
		if f.flags&flagMsg != 0 {
			f.payload = d.b
		} else if len(d.b) != 0 {
			return fmt.Errorf("%w: %d trailing bytes", errFrame, len(d.b))
		}
		return nil
	case frameCancel, frameGoAway:
		if f.flags != 0 || len(d.b) != 0 || (f.typ == frameCancel && f.id == 0) {
			return fmt.Errorf("%w: bad control frame %d", errFrame, f.typ)
		}
		return nil
	case frameWindow:
		c := d.uvarint("credit")
		if d.err != nil || f.flags != 0 || len(d.b) != 0 || c == 0 || c > math.MaxUint32 || f.id == 0 {
			return fmt.Errorf("%w: bad window frame", errFrame)
		}
		f.credit = uint32(c)
		return nil
	}
	return fmt.Errorf("%w: unknown type %d", errFrame, f.typ)
}
