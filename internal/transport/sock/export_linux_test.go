package sock

import (
	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/transport"
)

// SetPacketSize sets the packet payload of c, for tests and benchmarks.
func SetPacketSize(c *PacketConn, n int) { c.pkt.Store(int64(n)) }

// SetSndbuf sets SO_SNDBUF of c (the kernel doubles it) and returns what
// the kernel granted, leaving the packet size as it was.
func SetSndbuf(c *PacketConn, n int) (int, error) {
	var got int
	var serr error
	err := c.fd.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, n); serr == nil {
			got, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		}
	})
	if err == nil {
		err = serr
	}
	return got, err
}

// SocketFD returns the socket descriptor of a UnixConn or PacketConn, -1
// for another connection.
func SocketFD(c any) int {
	var d *transport.FD
	switch c := c.(type) {
	case *UnixConn:
		d = c.fd
	case *PacketConn:
		d = c.fd
	default:
		return -1
	}
	fd := -1
	_ = d.Control(func(f uintptr) { fd = int(f) })
	return fd
}
