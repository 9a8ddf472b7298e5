//go:build !unix

package pipe

import (
	"os/exec"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport"
)

// Start is unsupported on this system.
func Start(cmd *exec.Cmd, o *transport.Options) (transport.Conn, error) {
	return nil, ipcerr.ErrUnsupported
}

// Child is unsupported on this system.
func Child(o *transport.Options) (transport.Conn, error) {
	return nil, ipcerr.ErrUnsupported
}
