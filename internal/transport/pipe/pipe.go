package pipe

import (
	"context"
	"fmt"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport"
)

// EnvVar is the environment variable that tells a child its descriptors.
const EnvVar = "IPC_PIPE_FDS"

func init() {
	transport.Register("pipe", transport.Driver{
		Listen: func(string, *transport.Options) (transport.Listener, error) {
			return nil, fmt.Errorf("%w: pipe: has no Listen; the parent calls ipc.StartChild", ipcerr.ErrUnsupported)
		},
		Dial: func(context.Context, string, *transport.Options) (transport.Conn, error) {
			return nil, fmt.Errorf("%w: pipe: has no Dial; the child calls ipc.ChildConn", ipcerr.ErrUnsupported)
		},
	})
}
