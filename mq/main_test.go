package mq

import (
	"testing"

	"github.com/ipcgo/ipc/internal/ipctest"
)

// peers are the bodies this test binary runs as when re-executed as a
// peer process (ipctest.StartPeer); test files add theirs in init.
var peers = ipctest.Peers{}

func TestMain(m *testing.M) { ipctest.Main(m, peers) }
