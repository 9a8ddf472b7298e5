package ipc

import "github.com/ipcgo/ipc/internal/ipcerr"

// Errors returned by Dial, Listen and every Conn, usually inside an
// *OpError; test for them with errors.Is. Besides these: a closed Conn or
// Listener returns net.ErrClosed, a peer that is gone gives io.EOF, a
// cancelled context gives the context's error, and a passed deadline gives
// ErrTimeout.
var (
	// ErrBadAddress means the address does not parse or names an unknown
	// transport.
	ErrBadAddress = ipcerr.ErrBadAddress
	// ErrMessageTooLarge means a message exceeds Config.MaxMessageSize (or a
	// transport's own limit): Send refuses it and sends nothing; a Recv that
	// meets one in the stream returns this error and the Conn is unusable.
	ErrMessageTooLarge = ipcerr.ErrMessageTooLarge
	// ErrCorruptFrame means bytes arrived that are not a valid frame. The
	// Conn is unusable afterwards.
	ErrCorruptFrame = ipcerr.ErrCorruptFrame
	// ErrUnsupported means the transport or call is not available on this
	// system.
	ErrUnsupported = ipcerr.ErrUnsupported
	// ErrPeerNotAllowed means the peer's credentials are not in
	// Config.AllowUIDs.
	ErrPeerNotAllowed = ipcerr.ErrPeerNotAllowed
	// ErrAddrInUse means Listen found a live listener at the address.
	ErrAddrInUse = ipcerr.ErrAddrInUse
	// ErrBadConfig means a Config field is out of range.
	ErrBadConfig = ipcerr.ErrBadConfig
	// ErrVersion means the peer speaks another version of a set-up protocol.
	ErrVersion = ipcerr.ErrVersion
	// ErrListenerBusy means the listener refused the connection because it
	// already held Config.MaxPendingSetups connections being set up or
	// waiting for Accept (shm, fifo, posixmq). Dialling again later may
	// succeed.
	ErrListenerBusy = ipcerr.ErrListenerBusy
	// ErrTimeout is returned when a deadline passes; it is
	// os.ErrDeadlineExceeded and satisfies net.Error with Timeout() true.
	ErrTimeout = ipcerr.ErrTimeout
)

// OpError describes a failed operation on an address. It satisfies
// net.Error.
type OpError = ipcerr.OpError
