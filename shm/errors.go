package shm

import (
	"errors"
	"net"
)

// Errors returned (wrapped in an *OpError) by this package. Test for them
// with errors.Is. Operating-system errors such as permission denied are
// wrapped unchanged, so errors.Is(err, fs.ErrPermission) works too, and a
// closed Segment returns net.ErrClosed.
var (
	// ErrNotFound means no segment has the given name.
	ErrNotFound = errors.New("shm: segment not found")
	// ErrExists means Create found a file of that name already.
	ErrExists = errors.New("shm: segment already exists")
	// ErrNotSegment means the file does not start with this package's magic:
	// it was not created by this package (or is too short to tell).
	ErrNotSegment = errors.New("shm: not an ipc segment")
	// ErrVersion means the segment uses a layout version this build does not
	// read.
	ErrVersion = errors.New("shm: unsupported segment version")
	// ErrCorrupt means the header's checksum or structure is wrong.
	ErrCorrupt = errors.New("shm: corrupt segment header")
	// ErrSizeMismatch means the file's size differs from the size recorded
	// in its header (for example it was truncated), or from the size the
	// caller asked for.
	ErrSizeMismatch = errors.New("shm: segment size mismatch")
	// ErrBadName means a segment or object name is empty, too long, or holds
	// characters outside [A-Za-z0-9._-] (so never '/' or "..").
	ErrBadName = errors.New("shm: invalid name")
	// ErrBadConfig means a Config field or size is out of range.
	ErrBadConfig = errors.New("shm: invalid configuration")
	// ErrNoSpace means the segment's data area or object directory is full.
	ErrNoSpace = errors.New("shm: no space left in segment")
	// ErrNoSlot means every process slot of the segment is held by a live
	// handle (see Config.Slots).
	ErrNoSlot = errors.New("shm: no free process slot")
	// ErrKindMismatch means an object of that name exists with another kind
	// or size.
	ErrKindMismatch = errors.New("shm: object exists with another kind or size")
	// ErrObjectNotFound means the segment holds no object of that name.
	ErrObjectNotFound = errors.New("shm: object not found")
	// ErrUnsupported means shared-memory segments are not available on this
	// operating system.
	ErrUnsupported = errors.New("shm: unsupported on this system")
)

// errClosed is returned by every call on a closed Segment.
var errClosed = net.ErrClosed

// OpError describes a failed operation on a segment.
type OpError struct {
	Op   string // "create", "open", "unlink", "alloc", ...
	Name string // segment name; "" for anonymous segments
	Err  error
}

func (e *OpError) Error() string {
	if e.Name == "" {
		return "shm: " + e.Op + ": " + e.Err.Error()
	}
	return "shm: " + e.Op + " " + e.Name + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *OpError) Unwrap() error { return e.Err }

func opErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	return &OpError{Op: op, Name: name, Err: err}
}
