package mq

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// RecordHeaderSize is the size of a record's header: the body length and
// the CRC-32C (Castagnoli) of the body, both little-endian uint32.
const RecordHeaderSize = 8

// MaxRecordBody bounds a record's body (64 MiB).
const MaxRecordBody = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// AppendRecord appends the record holding body to dst.
func AppendRecord(dst, body []byte) ([]byte, error) {
	if len(body) > MaxRecordBody {
		return dst, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(body), MaxRecordBody)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(body)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(body, castagnoli))
	return append(dst, body...), nil
}

// DecodeRecord decodes the record at the start of b, which was read from
// offset off of a file. It returns the body (aliasing b) and the record's
// total size, or a *CorruptError when b holds no whole, valid record.
func DecodeRecord(b []byte, off int64) (body []byte, size int, err error) {
	if len(b) < RecordHeaderSize {
		return nil, 0, &CorruptError{Offset: off, Reason: fmt.Sprintf("truncated header (%d bytes)", len(b))}
	}
	n := binary.LittleEndian.Uint32(b)
	if n > MaxRecordBody {
		return nil, 0, &CorruptError{Offset: off, Reason: fmt.Sprintf("length %d over %d", n, MaxRecordBody)}
	}
	if uint64(len(b)-RecordHeaderSize) < uint64(n) {
		return nil, 0, &CorruptError{Offset: off, Reason: fmt.Sprintf("truncated body (%d of %d bytes)", len(b)-RecordHeaderSize, n)}
	}
	body = b[RecordHeaderSize : RecordHeaderSize+int(n)]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return nil, 0, &CorruptError{Offset: off, Reason: "checksum mismatch"}
	}
	return body, RecordHeaderSize + int(n), nil
}
