//go:build linux

package ipc

import _ "github.com/ipcgo/ipc/internal/transport/sock" // unix, unixpacket and tcp
