package dsync

import "github.com/ipcgo/ipc/internal/ipctest"

var peers = ipctest.Peers{}
