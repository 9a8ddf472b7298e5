package dsync

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"regexp"
	"time"
)

// The value of every key dsync writes (PROTOCOL.md, "dsync"): a fixed
// header, three strings, and a CRC-32C of everything before it.
const (
	recordMagic   = "DSYN"
	recordVersion = 1
	recordHeader  = 36
	maxString     = 1 << 15
	// MaxValue is the largest value a candidate may campaign with.
	MaxValue = 64 << 10
)

// Kind is the kind of primitive a key belongs to.
type Kind uint8

// The kinds of keys.
const (
	KindMutex     Kind = 1
	KindSemaphore Kind = 2
	KindElection  Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindMutex:
		return "mutex"
	case KindSemaphore:
		return "semaphore"
	case KindElection:
		return "election"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// record is a decoded value.
type record struct {
	Kind   Kind
	Token  uint64        // fencing token; 0 in the write that acquired (its revision is the token)
	TTL    time.Duration // lease TTL the holder keeps
	N      uint32        // semaphore size (0 otherwise)
	Holder string        // the holding Client's ID
	Lease  string        // unique per acquisition attempt
	Value  []byte        // election candidates' value
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func (r *record) encode() []byte {
	b := make([]byte, recordHeader, recordHeader+len(r.Holder)+len(r.Lease)+len(r.Value)+4)
	copy(b, recordMagic)
	b[4] = recordVersion
	b[5] = byte(r.Kind)
	binary.LittleEndian.PutUint64(b[8:], r.Token)
	binary.LittleEndian.PutUint64(b[16:], uint64(r.TTL/time.Millisecond))
	binary.LittleEndian.PutUint32(b[24:], r.N)
	binary.LittleEndian.PutUint16(b[28:], uint16(len(r.Holder)))
	binary.LittleEndian.PutUint16(b[30:], uint16(len(r.Lease)))
	binary.LittleEndian.PutUint32(b[32:], uint32(len(r.Value)))
	b = append(b, r.Holder...)
	b = append(b, r.Lease...)
	b = append(b, r.Value...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// decodeRecord validates b (magic, version, sizes, checksum) and decodes it.
func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) < recordHeader+4 {
		return r, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(b))
	}
	if string(b[:4]) != recordMagic {
		return r, fmt.Errorf("%w: bad magic %q", ErrCorrupt, b[:4])
	}
	if b[4] != recordVersion {
		return r, fmt.Errorf("%w: version %d, want %d", ErrCorrupt, b[4], recordVersion)
	}
	if b[6] != 0 || b[7] != 0 {
		return r, fmt.Errorf("%w: reserved bytes set", ErrCorrupt)
	}
	hl := int(binary.LittleEndian.Uint16(b[28:]))
	ll := int(binary.LittleEndian.Uint16(b[30:]))
	vl := int(binary.LittleEndian.Uint32(b[32:]))
	if vl > MaxValue || recordHeader+hl+ll+vl+4 != len(b) {
		return r, fmt.Errorf("%w: sizes do not add up to %d bytes", ErrCorrupt, len(b))
	}
	end := len(b) - 4
	if crc32.Checksum(b[:end], crcTable) != binary.LittleEndian.Uint32(b[end:]) {
		return r, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	r.Kind = Kind(b[5])
	r.Token = binary.LittleEndian.Uint64(b[8:])
	r.TTL = time.Duration(binary.LittleEndian.Uint64(b[16:])) * time.Millisecond
	r.N = binary.LittleEndian.Uint32(b[24:])
	p := recordHeader
	r.Holder = string(b[p : p+hl])
	p += hl
	r.Lease = string(b[p : p+ll])
	p += ll
	if vl > 0 {
		r.Value = append([]byte(nil), b[p:p+vl]...)
	}
	return r, nil
}

var (
	nameRE      = regexp.MustCompile(`^[-_=/A-Za-z0-9]+(\.[-_=/A-Za-z0-9]+)*$`)
	namespaceRE = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)
)

const maxName = 200

func checkName(name string) error {
	if len(name) > maxName || !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %q", ErrBadName, name)
	}
	return nil
}
