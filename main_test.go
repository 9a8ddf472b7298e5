package ipc_test

import (
	"testing"

	"github.com/ipcgo/ipc/internal/ipctest"
)

// TestMain runs the named peer when the test binary is re-executed as one
// (ipctest), and otherwise runs the tests and checks for leaked goroutines.
func TestMain(m *testing.M) {
	ipctest.Main(m, peers)
}

// peers are the bodies of the processes the tests of this package start.
// Test files add theirs from init functions.
var peers = ipctest.Peers{}

// addPeers adds ps to peers; a name defined twice is a programming error.
func addPeers(ps ipctest.Peers) {
	for name, f := range ps {
		if _, dup := peers[name]; dup {
			panic("ipc_test: peer " + name + " defined twice")
		}
		peers[name] = f
	}
}
