package mq

import (
	"errors"
	"fmt"
)

// Errors of this package; test for them with errors.Is.
var (
	// ErrCorrupt means stored bytes are not a valid record: bad length,
	// bad checksum, or truncated. It is wrapped in a *CorruptError.
	ErrCorrupt = errors.New("mq: corrupt record")
	// ErrTooLarge means a record body exceeds MaxRecordBody.
	ErrTooLarge = errors.New("mq: record too large")
)

// CorruptError reports damaged data at an offset of a file.
type CorruptError struct {
	File   string // file name, "" when not known
	Offset int64  // offset of the record
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("mq: corrupt record in %q at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Unwrap returns ErrCorrupt.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }
