package rpc_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/rpc"
)

// BenchmarkGRPCGo is the unary call of BenchmarkUnary (rpc/...) made with
// grpc-go's own server and client (HTTP/2): over ipc byte streams through
// ContextDialer ("ipc-shm", "ipc-unix") and over a plain Unix socket from
// net.Listen ("net-unix"). Run them together to compare time and
// allocations per call:
//
//	go test -run '^$' -bench 'Unary/rpc/|GRPCGo' -benchmem ./rpc
func BenchmarkGRPCGo(b *testing.B) {
	for _, tr := range []string{"ipc-shm", "ipc-unix", "net-unix"} {
		for _, size := range []int{64, 4096} {
			b.Run(tr+"/"+sizeName(size), func(b *testing.B) { benchGRPCGo(b, tr, size) })
		}
	}
}

func benchGRPCGo(b *testing.B, tr string, size int) {
	var l net.Listener
	var err error
	var target string
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if via, ok := strings.CutPrefix(tr, "ipc-"); ok {
		addr := testAddr(b, via)
		l, err = ipc.Listen(addr, nil)
		target = "passthrough:///" + addr
		opts = append(opts, grpc.WithContextDialer(rpc.ContextDialer(nil)))
	} else {
		path := filepath.Join(b.TempDir(), "g.sock")
		l, err = net.Listen("unix", path)
		target = "unix://" + path
	}
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, echoServer{})
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	defer func() { srv.Stop(); <-done }()
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	c := testpb.NewTestServiceClient(cc)
	ctx := context.Background()
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, size-5)}} // as benchRPC
	if _, err := c.UnaryCall(ctx, req); err != nil {                                   // connect outside the timing
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
