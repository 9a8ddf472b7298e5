package sock_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/transport/sock"
)

// BenchmarkPacketSize moves 16 MiB messages over unixpacket with packets
// of various payload sizes (both ends in this process).
func BenchmarkPacketSize(b *testing.B) {
	for _, size := range []int{64 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20, 4<<20 - 20} {
		b.Run(fmt.Sprint(size>>10, "KiB"), func(b *testing.B) {
			benchMessages(b, "unixpacket", 16<<20, func(c ipc.Conn) {
				sock.SetPacketSize(packetConn(b, c), size)
			})
		})
	}
}

// BenchmarkMessages moves messages of a few sizes over each transport.
func BenchmarkMessages(b *testing.B) {
	for _, network := range allNets {
		for _, n := range []int{64, 4 << 10, 1 << 20, 16 << 20} {
			b.Run(fmt.Sprint(network, "/", n), func(b *testing.B) { benchMessages(b, network, n, nil) })
		}
	}
}

func benchMessages(b *testing.B, network string, n int, setup func(ipc.Conn)) {
	s, c := pair(b, netAddr(b, network), nil, nil)
	if setup != nil {
		setup(c)
	}
	ctx := context.Background()
	msg := pattern(n, 1)
	done := make(chan error, 1)
	b.SetBytes(int64(n))
	b.ResetTimer()
	go func() {
		var buf []byte
		var err error
		for range b.N {
			if buf, err = s.Recv(ctx, buf); err != nil {
				break
			}
		}
		done <- err
	}()
	for range b.N {
		if err := c.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
