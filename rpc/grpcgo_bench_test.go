package rpc_test

import (
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
//
// "net-unix-2proc" is the plain Unix socket with the server in another
// process, beside BenchmarkUnary's rpc-2proc.
func BenchmarkGRPCGo(b *testing.B) {
	for _, tr := range []string{"ipc-shm", "ipc-unix", "net-unix"} {
		for _, size := range []int{64, 4096} {
			b.Run(tr+"/"+sizeName(size), func(b *testing.B) { benchGRPCGo(b, tr, size) })
		}
	}
	b.Run("net-unix-2proc/64B", func(b *testing.B) {
		cc := grpcgoNetUnix(b)
		defer cc.Close()
		unaryCalls(b, testpb.NewTestServiceClient(cc), 64)
	})
	b.Run("ipc-shm-2proc/64B", func(b *testing.B) {
		addr := startEcho(b, ipc.SHM, "grpc")
		cc, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(rpc.ContextDialer(nil)))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		unaryCalls(b, testpb.NewTestServiceClient(cc), 64)
	})
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
	unaryCalls(b, testpb.NewTestServiceClient(cc), size)
}
