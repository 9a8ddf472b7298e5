package rpc_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/rpc"
)

// grpcgoPeer is the name of the peer that serves the test services with
// grpc-go's own server on an ipc.Listener (registered in TestMain).
const grpcgoPeer = "rpc-grpcgo-server"

// grpcgoServerPeer serves the test services with a grpc.Server at args[0]
// until killed.
func grpcgoServerPeer(args []string) int {
	l, err := ipc.Listen(args[0], serverConfig())
	if err != nil {
		return fail("listen: %v", err)
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &testService{})
	os.Stdout.WriteString("ready\n")
	return fail("serve: %v", srv.Serve(l))
}

func grpcgoClient(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(rpc.ContextDialer(serverConfig())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestGRPCGoAcrossProcesses runs grpc-go's server (in a peer process) and
// client over ipc byte streams: unary calls with status codes, a server
// stream, a deadline that expires in the handler, and a killed server.
func TestGRPCGoAcrossProcesses(t *testing.T) {
	for _, tr := range []string{ipc.SHM, ipc.Unix} {
		t.Run(tr, func(t *testing.T) {
			addr := testAddr(t, tr)
			p := ipctest.StartPeer(t, grpcgoPeer, addr)
			p.Expect(t, "ready", peerTimeout)
			c := testpb.NewTestServiceClient(grpcgoClient(t, addr))
			ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
			defer cancel()

			body := make([]byte, 100<<10) // several stream writes of the view
			for i := range body {
				body[i] = byte(i)
			}
			r, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}, ResponseSize: 4096})
			if err != nil {
				t.Fatal(err)
			}
			if n := len(r.GetPayload().GetBody()); n != 4096 {
				t.Fatalf("response body %d bytes, want 4096", n)
			}
			_, err = c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "nope"}})
			if s := status.Convert(err); s.Code() != codes.NotFound || s.Message() != "nope" {
				t.Fatalf("status %v, want NotFound nope", err)
			}

			st, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{
				ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 20}, {Size: 30}},
			})
			if err != nil {
				t.Fatal(err)
			}
			var sizes []int
			for {
				m, err := st.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				sizes = append(sizes, len(m.GetPayload().GetBody()))
			}
			if len(sizes) != 3 || sizes[0] != 10 || sizes[1] != 20 || sizes[2] != 30 {
				t.Fatalf("stream sizes %v, want [10 20 30]", sizes)
			}

			short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
			_, err = c.UnaryCall(short, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("block")}})
			cancelShort()
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("blocked call: %v, want DeadlineExceeded", err)
			}

			p.Kill()
			<-p.Done()
			start := time.Now()
			_, err = c.EmptyCall(ctx, &testpb.Empty{})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("after the server was killed: %v, want Unavailable", err)
			}
			if d := time.Since(start); d > goneBound {
				t.Fatalf("the dead server took %v to notice", d)
			}
		})
	}
}

// TestGRPCGoStopAndShutdown checks that grpc-go's GracefulStop and Stop
// return on an ipc.Listener with a client connected, and that Serve then
// returns.
func TestGRPCGoStopAndShutdown(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		for _, tr := range []string{ipc.SHM, ipc.Unix} {
			t.Run(tr, func(t *testing.T) {
				addr := testAddr(t, tr)
				l, err := ipc.Listen(addr, serverConfig())
				if err != nil {
					t.Fatal(err)
				}
				srv := grpc.NewServer()
				testpb.RegisterTestServiceServer(srv, &testService{})
				served := make(chan error, 1)
				go func() { served <- srv.Serve(l) }()
				c := testpb.NewTestServiceClient(grpcgoClient(t, addr))
				ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
				defer cancel()
				if _, err := c.EmptyCall(ctx, &testpb.Empty{}); err != nil {
					t.Fatal(err)
				}
				stopped := make(chan struct{})
				go func() {
					if graceful {
						srv.GracefulStop()
					} else {
						srv.Stop()
					}
					close(stopped)
				}()
				select {
				case <-stopped:
				case <-time.After(peerTimeout):
					t.Fatal("stop did not return")
				}
				if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
					t.Fatalf("Serve: %v", err)
				}
			})
		}
	}
}
