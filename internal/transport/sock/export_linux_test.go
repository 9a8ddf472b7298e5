package sock

import "golang.org/x/sys/unix"

// SetPacketSize sets the packet payload of c, for tests and benchmarks.
func SetPacketSize(c *PacketConn, n int) { c.pkt.Store(int64(n)) }

// SetSndbuf sets SO_SNDBUF of c (the kernel doubles it) and returns what
// the kernel granted, leaving the packet size as it was.
func SetSndbuf(c *PacketConn, n int) (int, error) {
	var got int
	var serr error
	err := c.raw.rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, n); serr == nil {
			got, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		}
	})
	if err == nil {
		err = serr
	}
	return got, err
}
