package ipc

import (
	"context"
	"fmt"
	"os"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport"
	"github.com/ipcgo/ipc/internal/transport/sock"
)

// Cred is the identity of the process at the other end of a connection, as
// the kernel recorded it when the connection was made (SO_PEERCRED): for
// the accepting side, the process that dialed; for the dialing side, the
// process that listened. PID is as seen from the caller's PID namespace (0
// if the peer is not visible there).
type Cred struct {
	PID int
	UID int
	GID int
}

// MaxFiles is the largest number of files one SendFiles call can pass.
const MaxFiles = sock.MaxFiles

type credConn interface {
	PeerCred() (sock.Cred, error)
}

type filesConn interface {
	SendFiles(ctx context.Context, msg []byte, files ...*os.File) error
	RecvFiles(ctx context.Context, buf []byte) ([]byte, []*os.File, error)
}

// unwrap returns the transport's connection behind c, and c's address.
func unwrap(c Conn) (any, string) {
	if w, ok := c.(*conn); ok {
		return w.c, w.addr
	}
	if w, ok := c.(interface{ Unwrap() transport.Conn }); ok {
		return w.Unwrap(), ""
	}
	return c, ""
}

// PeerCredentials returns the credentials of the process at the other end
// of c, a connection over unix or unixpacket. Other transports give
// ErrUnsupported.
func PeerCredentials(c Conn) (Cred, error) {
	tc, addr := unwrap(c)
	cc, ok := tc.(credConn)
	if !ok {
		return Cred{}, ipcerr.Wrap("peercred", addr, fmt.Errorf("%w: peer credentials on this connection", ErrUnsupported))
	}
	cr, err := cc.PeerCred()
	if err != nil {
		return Cred{}, ipcerr.Wrap("peercred", addr, err)
	}
	return Cred(cr), nil
}

// SendFiles sends msg as one message over c, a connection over unix or
// unixpacket, with the descriptors of files attached (at most MaxFiles).
// The files stay open in this process; the peer gets its own descriptors of
// the same open files with RecvFiles. Other transports give ErrUnsupported.
func SendFiles(ctx context.Context, c Conn, msg []byte, files ...*os.File) error {
	tc, addr := unwrap(c)
	fc, ok := tc.(filesConn)
	if !ok {
		return ipcerr.Wrap("send", addr, fmt.Errorf("%w: passing files on this connection", ErrUnsupported))
	}
	return ipcerr.Wrap("send", addr, fc.SendFiles(ctx, msg, files...))
}

// RecvFiles receives the next message from c, a connection over unix or
// unixpacket, and the files that came with it: none for a message sent
// with Send. The caller owns the files (they are close-on-exec). Recv, by
// contrast, closes any file that comes with the message it returns.
func RecvFiles(ctx context.Context, c Conn, buf []byte) ([]byte, []*os.File, error) {
	tc, addr := unwrap(c)
	fc, ok := tc.(filesConn)
	if !ok {
		return buf[:0], nil, ipcerr.Wrap("recv", addr, fmt.Errorf("%w: passing files on this connection", ErrUnsupported))
	}
	msg, files, err := fc.RecvFiles(ctx, buf)
	return msg, files, ipcerr.Wrap("recv", addr, err)
}
