package rpc_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/rpc"
)

// grpc-go's own server and client over a shared-memory ipc address.
func ExampleContextDialer() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	addr := "shm://" + filepath.Join(dir, "grpc.sock")

	l, err := ipc.Listen(addr, nil)
	if err != nil {
		panic(err)
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &testService{})
	go srv.Serve(l)
	defer srv.Stop()

	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(rpc.ContextDialer(nil)))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	r, err := testpb.NewTestServiceClient(cc).UnaryCall(context.Background(),
		&testpb.SimpleRequest{ResponseSize: 5})
	if err != nil {
		panic(err)
	}
	fmt.Println(len(r.GetPayload().GetBody()))
	// Output: 5
}
