package dsync

import (
	"testing"

	"github.com/ipcgo/ipc/internal/ipctest"
)

func TestMain(m *testing.M) { ipctest.Main(m, peers) }
