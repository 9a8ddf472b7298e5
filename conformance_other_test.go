//go:build !linux

package ipc_test

import (
	"testing"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
)

type junkKind struct {
	name string
	want []error
}

func junkKinds(tp *tport) []junkKind { return []junkKind{{"any", nil}} }

func junkConnect(t *testing.T, tp *tport, kind string) (ipc.Conn, *ipctest.Peer) {
	t.Skip("junk injection is implemented for Linux only")
	return nil, nil
}

func peerJunk(args []string) int { return ipctest.Fail("junk injection is implemented for Linux only") }

func checkClean(t testing.TB, addr string) {}
