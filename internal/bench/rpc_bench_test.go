package bench

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkUnaryAllocs makes the unary call of `ipc bench rpc` with client
// and server in this process, so that -benchmem counts the allocations of
// both ends per call (`ipc bench rpc` counts the calling process's only):
//
//	go test -run '^$' -bench UnaryAllocs -benchmem ./internal/bench
func BenchmarkUnaryAllocs(b *testing.B) {
	for _, sys := range []string{RPCShm, RPCUnix, GRPCUnix, GRPCShm, NetRPCUnix} {
		for _, size := range RPCSizes {
			b.Run(fmt.Sprintf("%s/%dB", sys, size), func(b *testing.B) {
				ctx := context.Background()
				addr := rpcAddr(sys, b.TempDir(), 0)
				stop, err := serveRPC(sys, addr, size)
				if err != nil {
					b.Fatal(err)
				}
				defer stop()
				cl, err := dialRPC(ctx, sys, addr, size)
				if err != nil {
					b.Fatal(err)
				}
				defer cl.close()
				if err := cl.call(ctx); err != nil { // connected outside the timing
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := cl.call(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
