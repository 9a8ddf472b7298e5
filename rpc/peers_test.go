package rpc_test

import (
	"context"
	"fmt"
	"time"

	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ipcgo/ipc/rpc"
)

// clientPeer dials args[0] and, by args[1]:
//   - "block": starts a blocking unary call and a blocking stream, prints
//     "calling" once both are in the server, and waits to be killed;
//   - "idle": makes one call, prints "ok" and waits to be killed.
func clientPeer(args []string) int {
	ctx := context.Background()
	cc, err := rpc.Dial(ctx, args[0], rpc.WithDialConfig(serverConfig()))
	if err != nil {
		return fail("dial: %v", err)
	}
	c := testpb.NewTestServiceClient(cc)
	switch args[1] {
	case "block":
		go c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("block")}})
		fd, err := c.FullDuplexCall(ctx)
		if err != nil {
			return fail("stream: %v", err)
		}
		if err := fd.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("block")}}); err != nil {
			return fail("send: %v", err)
		}
		fmt.Println("calling")
	case "idle":
		if _, err := c.EmptyCall(ctx, &testpb.Empty{}); err != nil {
			return fail("call: %v", err)
		}
		fmt.Println("ok")
	}
	time.Sleep(time.Minute)
	return 0
}
