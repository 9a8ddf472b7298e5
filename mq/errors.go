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

// Errors of the queue API; test for them with errors.Is. Most reach the
// caller inside an *OpError naming the operation and the stream.
var (
	// ErrBadURL means Open was given an address it cannot use: a scheme
	// other than file:// or nats://, or an empty path.
	ErrBadURL = errors.New("mq: invalid queue address")
	// ErrBadConfig means a StreamConfig, GroupConfig, PublishOptions or
	// Config holds a value out of range (see each field).
	ErrBadConfig = errors.New("mq: invalid configuration")
	// ErrStreamNotFound means the named stream does not exist.
	ErrStreamNotFound = errors.New("mq: stream not found")
	// ErrGroupNotFound means the named group does not exist on the stream.
	ErrGroupNotFound = errors.New("mq: group not found")
	// ErrExists means CreateStream or CreateGroup found one of that name
	// with a different configuration.
	ErrExists = errors.New("mq: exists with another configuration")
	// ErrAcked means Ack, Nak, InProgress or Term was called on a delivery
	// that was already settled (acked, nakked or terminated) by this handle.
	ErrAcked = errors.New("mq: delivery already settled")
	// ErrDeliveryLost means the delivery is no longer held by this
	// consumer: its AckWait ran out (or its owner was found dead) and it was
	// handed to another consumer or dead-lettered. Acking it is refused;
	// it will be (or was) delivered again.
	ErrDeliveryLost = errors.New("mq: delivery no longer held")
	// ErrVersion means stored data was written by an unknown layout
	// version, or is not a queue at all (foreign magic).
	ErrVersion = errors.New("mq: unknown layout version")
	// ErrUnsupported means the backend cannot do what was asked (the
	// package doc lists each case).
	ErrUnsupported = errors.New("mq: unsupported by this backend")
)

// OpError describes a failed operation on a stream (or group).
type OpError struct {
	Op     string // "open", "publish", "next", "ack", "create-stream", ...
	Stream string // stream name, "" when none
	Group  string // group name, "" when none
	Err    error
}

func (e *OpError) Error() string {
	s := "mq: " + e.Op
	if e.Stream != "" {
		s += " " + e.Stream
		if e.Group != "" {
			s += "/" + e.Group
		}
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the error is a timeout (a passed deadline).
func (e *OpError) Timeout() bool {
	t, ok := e.Err.(interface{ Timeout() bool })
	return ok && t.Timeout()
}

// Temporary is false: kept for net.Error.
func (e *OpError) Temporary() bool { return false }

// opErr wraps err once in an *OpError; nil stays nil.
func opErr(op, stream, group string, err error) error {
	if err == nil {
		return nil
	}
	var oe *OpError
	if errors.As(err, &oe) {
		return err
	}
	return &OpError{Op: op, Stream: stream, Group: group, Err: err}
}
