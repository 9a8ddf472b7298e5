package rpc_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/rpc"
)

// A generated service (here gRPC's health service) served over shared
// memory and called with the generated client.
func Example() {
	dir, _ := os.MkdirTemp("", "rpc-example")
	defer os.RemoveAll(dir)
	addr := "shm://" + filepath.Join(dir, "health.sock")

	srv := rpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	l, err := ipc.Listen(addr, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	go srv.Serve(l)
	defer srv.Close()

	ctx := context.Background()
	cc, err := rpc.Dial(ctx, addr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cc.Close()
	r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	fmt.Println(r.GetStatus(), err)
	// Output: SERVING <nil>
}

// Plain Go structs, no protoc: a hand-written service description and a
// JSON codec on both sides.
func Example_jsonCodec() {
	dir, _ := os.MkdirTemp("", "rpc-example")
	defer os.RemoveAll(dir)
	addr := "unix://" + filepath.Join(dir, "greeter.sock")

	srv := rpc.NewServer(rpc.ServerCodec(jsonCodec{}))
	srv.RegisterService(&greeterDesc, greeterImpl{})
	l, _ := ipc.Listen(addr, nil)
	go srv.Serve(l)
	defer srv.Close()

	ctx := context.Background()
	cc, _ := rpc.Dial(ctx, addr, rpc.WithCodec(jsonCodec{}))
	defer cc.Close()
	var reply HelloReply
	err := cc.Invoke(ctx, "/demo.Greeter/Hello", &HelloRequest{Name: "ipc"}, &reply)
	fmt.Println(reply.Greeting, err)
	// Output: hello, ipc <nil>
}
