// Package ipcerr holds the error values shared by package ipc and its
// transports, so that every transport returns the very values package ipc
// exports (ipc re-exports each one; compare with errors.Is against those).
package ipcerr

import (
	"errors"
	"os"
)

var (
	ErrBadAddress      = errors.New("ipc: invalid address")
	ErrMessageTooLarge = errors.New("ipc: message too large")
	ErrCorruptFrame    = errors.New("ipc: corrupt frame")
	ErrUnsupported     = errors.New("ipc: unsupported")
	ErrPeerNotAllowed  = errors.New("ipc: peer not allowed")
	ErrAddrInUse       = errors.New("ipc: address in use by a live listener")
	ErrBadConfig       = errors.New("ipc: invalid configuration")
	ErrVersion         = errors.New("ipc: protocol version mismatch")
	ErrListenerBusy    = errors.New("ipc: listener busy")
)

// ErrTimeout is the error of a passed deadline: os.ErrDeadlineExceeded,
// which satisfies net.Error with Timeout() true, as net.Conn deadlines do.
var ErrTimeout = os.ErrDeadlineExceeded

// OpError describes a failed operation on an address.
type OpError struct {
	Op   string // "dial", "listen", "accept", "send", "recv", "close"
	Addr string // the address as given, e.g. "unix:///run/app.sock"
	Err  error
}

func (e *OpError) Error() string {
	if e.Addr == "" {
		return "ipc: " + e.Op + ": " + e.Err.Error()
	}
	return "ipc: " + e.Op + " " + e.Addr + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the error is a timeout.
func (e *OpError) Timeout() bool {
	t, ok := e.Err.(interface{ Timeout() bool })
	return ok && t.Timeout()
}

// Temporary is false: kept for net.Error.
func (e *OpError) Temporary() bool { return false }

// Wrap returns err as an *OpError, or nil for nil. An error that already is
// an *OpError is returned as it is (wrap once).
func Wrap(op, addr string, err error) error {
	if err == nil {
		return nil
	}
	var oe *OpError
	if errors.As(err, &oe) {
		return err
	}
	return &OpError{Op: op, Addr: addr, Err: err}
}
