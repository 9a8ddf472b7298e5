// Package transport holds what the transports behind ipc.Dial and
// ipc.Listen share: their options, the Conn and Listener shapes, the
// framed connection over byte streams, and the glue between contexts and
// file-descriptor deadlines.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Options are a validated, complete ipc.Config.
type Options struct {
	MaxMessageSize int
	Perm           os.FileMode
	AllowUIDs      []int
	TLS            *tls.Config
	RingSize       int
	Spin           time.Duration
	QueueDepth     int
	QueueMsgSize   int
	// SetupTimeout and MaxPendingSetups bound the set-ups of a listener
	// (Backlog); zero means the default.
	SetupTimeout     time.Duration
	MaxPendingSetups int
}

// Conn is a message connection (ipc.Conn).
type Conn interface {
	Send(ctx context.Context, msg []byte) error
	Recv(ctx context.Context, buf []byte) ([]byte, error)
	SetDeadline(t time.Time) error
	Close() error
}

// Listener accepts message connections.
type Listener interface {
	Accept(ctx context.Context) (Conn, error)
	Close() error
}

// Deadliner is what the context glue needs of a descriptor: net.Conn and
// *os.File both have it.
type Deadliner interface {
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
}

// Deadline is a user-set deadline, kept so it can be restored after a
// context cancelled an operation by moving the descriptor's deadline.
type Deadline struct {
	mu sync.Mutex
	t  time.Time
}

// Set records t.
func (d *Deadline) Set(t time.Time) {
	d.mu.Lock()
	d.t = t
	d.mu.Unlock()
}

// Get returns the recorded deadline.
func (d *Deadline) Get() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.t
}

var longAgo = time.Unix(1, 0)

// WithContext runs op, a blocking read or write on a descriptor whose
// deadline set() moves, so that the end of ctx interrupts it. user is the
// deadline the caller set with SetDeadline, restored afterwards. An
// operation interrupted by ctx returns ctx.Err().
func WithContext(ctx context.Context, user *Deadline, set func(time.Time) error, op func() error) error {
	if ctx.Done() == nil {
		return op()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	moved := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { _ = set(longAgo); close(moved) })
	err := op()
	if !stop() { // the context ended during op: undo the deadline move
		<-moved // once it is done, or it could land after the restore
		_ = set(user.Get())
		if err != nil && IsTimeout(err) {
			return ctx.Err()
		}
	}
	return err
}

// WithReadContext is WithContext for a read on d: without a context that
// can end, it calls op and nothing else (no allocation).
func WithReadContext(ctx context.Context, user *Deadline, d Deadliner, op func() error) error {
	if ctx.Done() == nil {
		return op()
	}
	return WithContext(ctx, user, d.SetReadDeadline, op)
}

// WithWriteContext is WithContext for a write on d.
func WithWriteContext(ctx context.Context, user *Deadline, d Deadliner, op func() error) error {
	if ctx.Done() == nil {
		return op()
	}
	return WithContext(ctx, user, d.SetWriteDeadline, op)
}

// IsTimeout reports whether err is a deadline error.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// PeerGone maps the errors of a peer that went away (reset, broken pipe,
// closed stream) to io.EOF, and returns other errors unchanged.
func PeerGone(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ENOTCONN):
		return io.EOF
	}
	return err
}

// Closed maps the "use of closed file/connection" errors of the standard
// library to net.ErrClosed.
func Closed(err error) error {
	if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
		return net.ErrClosed
	}
	return err
}
