package procsync

import (
	"context"
	"errors"
	"net"
)

// Errors returned by the primitives, usually inside an *OpError; test for
// them with errors.Is. A call on a primitive whose segment is closed returns
// net.ErrClosed; a cancelled context returns the context's error.
var (
	// ErrOwnerDead is returned, with the lock held, by the call that takes
	// over a lock whose holder died. The protected data may be half
	// updated: repair it, then call MarkConsistent before unlocking.
	ErrOwnerDead = errors.New("procsync: previous owner died")
	// ErrNotRecoverable means a holder that got ErrOwnerDead unlocked without
	// MarkConsistent: the lock is permanently unusable.
	ErrNotRecoverable = errors.New("procsync: lock not recoverable")
	// ErrNotOwner means Unlock or MarkConsistent was called by a process
	// that does not hold the lock.
	ErrNotOwner = errors.New("procsync: lock not held by this process")
	// ErrWouldBlock is returned by the Try forms when they would have to wait.
	ErrWouldBlock = errors.New("procsync: would block")
	// ErrBrokenBarrier means a party of the barrier died, gave up (context or
	// timeout) or reset it while others waited.
	ErrBrokenBarrier = errors.New("procsync: broken barrier")
	// ErrOverflow means a release would exceed the primitive's limit.
	ErrOverflow = errors.New("procsync: count overflow")
	// ErrBadConfig means a Config field or a parameter is out of range.
	ErrBadConfig = errors.New("procsync: invalid configuration")
	// ErrTimeout is returned by the timeout forms (LockTimeout, ...). It
	// satisfies net.Error with Timeout() true and matches
	// context.DeadlineExceeded under errors.Is.
	ErrTimeout error = timeoutError{}
)

type timeoutError struct{}

func (timeoutError) Error() string        { return "procsync: timeout" }
func (timeoutError) Timeout() bool        { return true }
func (timeoutError) Temporary() bool      { return true }
func (timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

var _ net.Error = timeoutError{}

// OpError describes a failed operation on a named primitive.
type OpError struct {
	Op     string // "lock", "acquire", "wait", ...
	Object string // the primitive's name in its segment
	Err    error
}

func (e *OpError) Error() string { return "procsync: " + e.Op + " " + e.Object + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the error is a timeout.
func (e *OpError) Timeout() bool {
	t, ok := e.Err.(interface{ Timeout() bool })
	return ok && t.Timeout()
}
