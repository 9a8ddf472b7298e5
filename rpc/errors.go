package rpc

import (
	"errors"
	"fmt"
	"net"

	"github.com/ipcgo/ipc"
)

// Errors of the rpc layer itself. Calls (Invoke, streams) return gRPC
// status errors instead (google.golang.org/grpc/status): codes.Unavailable
// when the connection cannot be made or dies, codes.Internal for a broken
// peer, codes.ResourceExhausted for an oversized message, and so on; the
// status message then names one of these errors where one applies. Test
// with errors.Is.
var (
	// ErrVersion means the peer speaks another version of the rpc protocol
	// (a hello frame with a version this package does not know). It wraps
	// ipc.ErrVersion.
	ErrVersion = fmt.Errorf("rpc: protocol version mismatch: %w", ipc.ErrVersion)
	// ErrProtocol means the peer sent a frame that is not valid rpc: bytes
	// of another protocol, a corrupt frame, or a frame out of place. The
	// connection is closed. It wraps ipc.ErrCorruptFrame.
	ErrProtocol = fmt.Errorf("rpc: protocol error: %w", ipc.ErrCorruptFrame)
	// ErrServerClosed is returned by Serve and ServeConn after Shutdown or
	// Close. It wraps net.ErrClosed.
	ErrServerClosed = fmt.Errorf("rpc: server closed: %w", net.ErrClosed)
	// ErrClientClosed is the cause of the Canceled status of calls made on
	// a ClientConn after Close. It wraps net.ErrClosed.
	ErrClientClosed = fmt.Errorf("rpc: client closed: %w", net.ErrClosed)
)

// protoErr wraps a decode error of frame as ErrProtocol.
func protoErr(err error) error {
	if errors.Is(err, ErrProtocol) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrProtocol, err)
}

var errWindow = errors.New("stream overran its window")
