package dsync

import "errors"

// Errors returned by the package, usually inside an *OpError; test for them
// with errors.Is. A call on a closed Client returns net.ErrClosed; a
// cancelled context returns the context's error.
var (
	// ErrWouldBlock is returned by the Try forms when they would have to wait.
	ErrWouldBlock = errors.New("dsync: would block")
	// ErrNotHeld is returned by Unlock, Release and Resign when the handle
	// holds nothing to give back.
	ErrNotHeld = errors.New("dsync: not held")
	// ErrLeaseExpired ends a lease whose keep-alive did not reach the server
	// before the holder's conservative local deadline (connection lost, a
	// server or the cluster unavailable, the process paused).
	ErrLeaseExpired = errors.New("dsync: lease expired")
	// ErrLeaseLost ends a lease whose key the server no longer holds for it:
	// it expired there or was removed by someone else.
	ErrLeaseLost = errors.New("dsync: lease lost")
	// ErrReleased is the cause of a lease's end after Release, Unlock or
	// Resign.
	ErrReleased = errors.New("dsync: lease released")
	// ErrStaleToken is returned by a Fence for a token older than the newest
	// it has accepted.
	ErrStaleToken = errors.New("dsync: stale fencing token")
	// ErrNoLeader is returned by Election.Leader when nobody campaigns.
	ErrNoLeader = errors.New("dsync: no leader")
	// ErrBadConfig means a Config field or a parameter is out of range.
	ErrBadConfig = errors.New("dsync: invalid configuration")
	// ErrBadName means a namespace or primitive name is not allowed (see
	// the package doc for the allowed characters).
	ErrBadName = errors.New("dsync: invalid name")
	// ErrCorrupt means a stored record failed validation (magic, version,
	// checksum, size).
	ErrCorrupt = errors.New("dsync: corrupt record")
	// ErrMismatch means users of one primitive disagree on its shape (a
	// semaphore opened with different sizes, a name used for two kinds).
	ErrMismatch = errors.New("dsync: primitive mismatch")
)

// OpError describes a failed operation on a named primitive.
type OpError struct {
	Op   string // "open", "lock", "unlock", "acquire", "campaign", ...
	Name string // the primitive's name (the server address for "open")
	Err  error
}

func (e *OpError) Error() string { return "dsync: " + e.Op + " " + e.Name + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the error is a timeout.
func (e *OpError) Timeout() bool {
	t, ok := e.Err.(interface{ Timeout() bool })
	return ok && t.Timeout()
}

func opErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var oe *OpError
	if errors.As(err, &oe) {
		return err
	}
	return &OpError{Op: op, Name: name, Err: err}
}
