package rpc_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/rpc"
)

// Benchmarks of a unary call against the raw round trip of the same
// transport, server and client in this process or in two (-2proc) (run them together and
// compare: go test -bench . -benchmem ./rpc).

func BenchmarkUnary(b *testing.B) {
	for _, tr := range []string{ipc.SHM, ipc.Unix} {
		for _, size := range []int{64, 4096} {
			name := tr + "/" + sizeName(size)
			b.Run("raw/"+name, func(b *testing.B) { benchRaw(b, tr, size) })
			b.Run("rpc/"+name, func(b *testing.B) { benchRPC(b, tr, size) })
			b.Run("raw-2proc/"+name, func(b *testing.B) { benchRaw2(b, tr, size) })
			b.Run("rpc-2proc/"+name, func(b *testing.B) { benchRPC2(b, tr, size) })
		}
	}
}

func sizeName(n int) string {
	if n >= 1024 {
		return itoa(n/1024) + "KiB"
	}
	return itoa(n) + "B"
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// benchRaw: an echo server on a raw ipc.Conn, size bytes each way.
func benchRaw(b *testing.B, tr string, size int) {
	addr := testAddr(b, tr)
	l, err := ipc.Listen(addr, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.AcceptConn(ctx)
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 0, 8192)
		for {
			m, err := c.Recv(ctx, buf[:0])
			if err != nil {
				return
			}
			if c.Send(ctx, m) != nil {
				return
			}
		}
	}()
	c, err := ipc.Dial(ctx, addr, nil)
	if err != nil {
		b.Fatal(err)
	}
	roundTrips(b, ctx, c, size)
	b.StopTimer()
	c.Close()
	<-done
}

// echoServer answers UnaryCall with the request's payload.
type echoServer struct {
	testpb.UnimplementedTestServiceServer
}

func (echoServer) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: in.Payload}, nil
}

func benchRPC(b *testing.B, tr string, size int) {
	addr := testAddr(b, tr)
	l, err := ipc.Listen(addr, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv := rpc.NewServer(benchServerOpts...)
	testpb.RegisterTestServiceServer(srv, echoServer{})
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	defer func() { srv.Close(); <-done }()
	ctx := context.Background()
	cc, err := rpc.Dial(ctx, addr)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	c := testpb.NewTestServiceClient(cc)
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, size-5)}} // 64 or 4096 bytes marshalled
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

var benchServerOpts []rpc.ServerOption

// echoPeer serves args[1] ("raw": echo every message of a raw ipc.Conn;
// "rpc": echoServer) at args[0] until killed.
func echoPeer(args []string) int {
	l, err := ipc.Listen(args[0], nil)
	if err != nil {
		return fail("listen: %v", err)
	}
	if args[1] == "rpc" {
		srv := rpc.NewServer()
		testpb.RegisterTestServiceServer(srv, echoServer{})
		fmt.Println("ready")
		return fail("serve: %v", srv.Serve(l))
	}
	fmt.Println("ready")
	ctx := context.Background()
	for {
		c, err := l.AcceptConn(ctx)
		if err != nil {
			return fail("accept: %v", err)
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 0, 8192)
			for {
				m, err := c.Recv(ctx, buf[:0])
				if err != nil || c.Send(ctx, m) != nil {
					return
				}
			}
		}()
	}
}

func startEcho(b *testing.B, tr, kind string) string {
	addr := testAddr(b, tr)
	p := ipctest.StartPeer(b, "rpc-echo", addr, kind)
	p.Expect(b, "ready", peerTimeout)
	return addr
}

func benchRaw2(b *testing.B, tr string, size int) {
	addr := startEcho(b, tr, "raw")
	ctx := context.Background()
	c, err := ipc.Dial(ctx, addr, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	roundTrips(b, ctx, c, size)
}

func benchRPC2(b *testing.B, tr string, size int) {
	addr := startEcho(b, tr, "rpc")
	ctx := context.Background()
	cc, err := rpc.Dial(ctx, addr)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	c := testpb.NewTestServiceClient(cc)
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, size-5)}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIdleConn reports the Go heap an idle connection costs, client
// and server together, in this process (heap-B/conn; shm rings and kernel
// socket buffers are outside the Go heap: see the README).
func BenchmarkIdleConn(b *testing.B) {
	for _, tr := range []string{ipc.SHM, ipc.Unix} {
		b.Run(tr, func(b *testing.B) {
			addr := testAddr(b, tr)
			cfg := &ipc.Config{RingSize: 64 << 10}
			l, err := ipc.Listen(addr, cfg)
			if err != nil {
				b.Fatal(err)
			}
			srv := rpc.NewServer()
			testpb.RegisterTestServiceServer(srv, echoServer{})
			done := make(chan struct{})
			go func() { defer close(done); srv.Serve(l) }()
			defer func() { srv.Close(); <-done }()
			ctx := context.Background()
			const n = 64
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			ccs := make([]*rpc.ClientConn, n)
			for i := range ccs {
				if ccs[i], err = rpc.Dial(ctx, addr, rpc.WithDialConfig(cfg)); err != nil {
					b.Fatal(err)
				}
				if _, err := testpb.NewTestServiceClient(ccs[i]).UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
					b.Fatal(err)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			for range b.N {
			}
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/conn")
			b.ReportMetric(float64(after.StackInuse-before.StackInuse)/n, "stack-B/conn")
			for _, cc := range ccs {
				cc.Close()
			}
		})
	}
}

// BenchmarkIdleRawConn is BenchmarkIdleConn's baseline: the raw ipc.Conn
// pairs alone.
func BenchmarkIdleRawConn(b *testing.B) {
	for _, tr := range []string{ipc.SHM, ipc.Unix} {
		b.Run(tr, func(b *testing.B) {
			addr := testAddr(b, tr)
			cfg := &ipc.Config{RingSize: 64 << 10}
			l, err := ipc.Listen(addr, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			ctx := context.Background()
			const n = 64
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			cs := make([]ipc.Conn, 0, 2*n)
			for range n {
				sc := make(chan ipc.Conn, 1)
				go func() { s, _ := l.AcceptConn(ctx); sc <- s }()
				c, err := ipc.Dial(ctx, addr, cfg)
				if err != nil {
					b.Fatal(err)
				}
				s := <-sc
				if s == nil {
					b.Fatal("accept failed")
				}
				c.Send(ctx, []byte("x"))
				s.Recv(ctx, nil)
				cs = append(cs, c, s)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			for range b.N {
			}
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/conn")
			for _, c := range cs {
				c.Close()
			}
		})
	}
}

// roundTrips times b.N round trips of size-byte messages on c, the raw
// ipc.Conn baseline of the benchmarks.
func roundTrips(b *testing.B, ctx context.Context, c ipc.Conn, size int) {
	b.Helper()
	msg := make([]byte, size)
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
		var err error
		if buf, err = c.Recv(ctx, buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
