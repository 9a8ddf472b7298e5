package ipc

import (
	"context"
	"fmt"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport"
)

// MaxPriority is the highest priority of a POSIX queue message; 0 is the
// lowest and the priority of Conn.Send.
const MaxPriority = 32767

type prioritySender interface {
	SendPriority(ctx context.Context, msg []byte, prio uint) error
}

type priorityReceiver interface {
	RecvPriority(ctx context.Context, buf []byte) ([]byte, uint, error)
}

// SendPriority sends msg on c, a posixmq connection, with priority prio
// (0 to MaxPriority). The receiver gets queued messages of higher priority
// first, and messages of equal priority in order. A message larger than the
// queue's message size (Config.QueueMsgSize, less an 8-byte frame header)
// travels as several queue messages, all with its priority: a
// higher-priority message sent later can be received before it, but
// messages are never mixed, and messages of one priority keep their order.
// If the context or the deadline stops SendPriority between two of those
// queue messages, the receiver never gets the part that went out. Other
// transports return ErrUnsupported.
func SendPriority(ctx context.Context, c Conn, msg []byte, prio uint) error {
	tc, addr := mqUnwrap(c)
	ps, ok := tc.(prioritySender)
	if !ok {
		return ipcerr.Wrap("send", addr, fmt.Errorf("%w: SendPriority needs a posixmq Conn", ErrUnsupported))
	}
	return ipcerr.Wrap("send", addr, ps.SendPriority(ctx, msg, prio))
}

// RecvPriority receives the next message on c, a posixmq connection, into
// buf[:0] and returns it with its priority. Other transports return
// ErrUnsupported.
func RecvPriority(ctx context.Context, c Conn, buf []byte) ([]byte, uint, error) {
	tc, addr := mqUnwrap(c)
	pr, ok := tc.(priorityReceiver)
	if !ok {
		return buf[:0], 0, ipcerr.Wrap("recv", addr, fmt.Errorf("%w: RecvPriority needs a posixmq Conn", ErrUnsupported))
	}
	b, prio, err := pr.RecvPriority(ctx, buf)
	return b, prio, ipcerr.Wrap("recv", addr, err)
}

// mqUnwrap returns the transport's conn behind c and c's address.
func mqUnwrap(c Conn) (transport.Conn, string) {
	var addr string
	if w, ok := c.(*conn); ok {
		addr = w.addr
	}
	if u, ok := c.(interface{ Unwrap() transport.Conn }); ok {
		return u.Unwrap(), addr
	}
	return c, addr
}
