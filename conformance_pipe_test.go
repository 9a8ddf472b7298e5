package ipc_test

import (
	"os/exec"
	"testing"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
)

// startPipePeer starts cmd, a peer, as a child connected by pipes
// (ipc.StartChild) and returns the parent's end, closed when t ends.
func startPipePeer(t *testing.T, cfg *ipc.Config, cmd *exec.Cmd) (ipc.Conn, *ipctest.Peer) {
	t.Helper()
	var c ipc.Conn
	p := ipctest.StartFunc(t, cmd, func() error {
		var err error
		c, err = ipc.StartChild(cmd, cfg)
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c, p
}

// childConn picks up the child's end of the pipe connection.
func childConn(cfg *ipc.Config) (ipc.Conn, error) {
	return ipc.ChildConn(cfg)
}
