//go:build linux

package ipc_test

import (
	"context"
	"testing"

	"github.com/ipcgo/ipc"
)

// BenchmarkSetup measures one connection's set-up: Dial (in a goroutine)
// and AcceptConn in this process, then both ends closed.
func BenchmarkSetup(b *testing.B) {
	for _, name := range []string{ipc.SHM, ipc.FIFO, ipc.PosixMQ, ipc.UnixPacket, ipc.Unix} {
		b.Run(name, func(b *testing.B) {
			tp := transportByName(name)
			cfg := tp.config(0)
			addr := tp.addr(b)
			l, err := ipc.Listen(addr, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			ctx := context.Background()
			type dialed struct {
				c   ipc.Conn
				err error
			}
			dc := make(chan dialed, 1)
			for b.Loop() {
				go func() {
					c, err := ipc.Dial(ctx, addr, cfg)
					dc <- dialed{c, err}
				}()
				s, err := l.AcceptConn(ctx)
				if err != nil {
					b.Fatal(err)
				}
				d := <-dc
				if d.err != nil {
					b.Fatal(d.err)
				}
				d.c.Close()
				s.Close()
			}
		})
	}
}
