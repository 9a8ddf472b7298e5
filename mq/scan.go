package mq

import (
	"encoding/binary"
	"errors"
)

// ScanRecords walks the records in b, the contents of file, and returns
// how many whole, valid records it holds and where the last of them ends.
// A damaged last record is a torn tail (an append cut short by a crash):
// it is not counted and end stops before it, so recovery truncates the
// file to end. A damaged record followed by more bytes is corruption, not
// a torn write: ScanRecords returns a *CorruptError naming file and offset
// (end and n then describe the valid records before it).
func ScanRecords(b []byte, file string) (n int, end int64, err error) {
	off := 0
	for off < len(b) {
		_, size, err := DecodeRecord(b[off:], int64(off))
		if err != nil {
			if tornTail(b[off:]) {
				return n, int64(off), nil
			}
			var ce *CorruptError
			if errors.As(err, &ce) {
				ce.File = file
			}
			return n, int64(off), err
		}
		off += size
		n++
	}
	return n, int64(off), nil
}

// tornTail reports whether the damaged record at the start of b is the last
// thing in the file: its header is cut, or its body reaches or passes the
// end of the file.
func tornTail(b []byte) bool {
	if len(b) < RecordHeaderSize {
		return true
	}
	l := uint64(binary.LittleEndian.Uint32(b))
	return l <= MaxRecordBody && uint64(len(b)) <= RecordHeaderSize+l
}
