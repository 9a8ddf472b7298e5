package rpc_test

import (
	"testing"

	"github.com/ipcgo/ipc/internal/ipctest"
)

// TestMain runs the named peer when the test binary is re-executed as one
// (ipctest), and otherwise runs the tests and checks for leaked goroutines.
func TestMain(m *testing.M) {
	ipctest.Main(m, ipctest.Peers{
		"rpc-server":      serverPeer,
		"rpc-pipe-server": pipeServerPeer,
		"rpc-client":      clientPeer,
		"rpc-echo":        echoPeer,
		grpcgoPeer:        grpcgoServerPeer,
	})
}
