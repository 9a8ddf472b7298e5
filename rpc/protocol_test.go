package rpc_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/rpc"
)

// hello is a client's hello of the given version (PROTOCOL.md, rpc).
func hello(version byte) []byte {
	b := []byte{1, 0, 0, 'i', 'R', 'P', 'C', version, 0, 0, 0, 32}
	return binaryCRC(b)
}

// TestCorruptFromClient: a client that sends garbage after its hello has
// its connection closed; the server goes on serving others.
func TestCorruptFromClient(t *testing.T) {
	srv, _ := newTestServer()
	addr := serve(t, srv, ipc.Unix)
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	for _, garbage := range [][]byte{{9, 9, 9}, {2, 0xff, 1}, {2, 1, 1, 0xff}, {}} {
		c, err := ipc.Dial(ctx, addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Send(ctx, hello(1)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Recv(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Send(ctx, garbage); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Recv(ctx, nil); !errors.Is(err, io.EOF) {
			t.Fatalf("after %x: %v, want the server to close (EOF)", garbage, err)
		}
		c.Close()
	}
	cc, err := rpc.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{}); err != nil {
		t.Fatal(err)
	}
}

// fakeServer accepts one connection at a new address, answers the hello
// with reply and then sends after (if any) when the first request comes.
func fakeServer(t *testing.T, reply, after []byte) string {
	addr := testAddr(t, ipc.Unix)
	l, err := ipc.Listen(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		ctx := context.Background()
		c, err := l.AcceptConn(ctx)
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := c.Recv(ctx, nil); err != nil {
			return
		}
		c.Send(ctx, reply)
		if after != nil {
			if _, err := c.Recv(ctx, nil); err == nil {
				c.Send(ctx, after)
			}
		}
		c.Recv(ctx, nil) // until the client closes
	}()
	return addr
}

func TestVersionMismatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	_, err := rpc.Dial(ctx, fakeServer(t, hello(2), nil))
	if !errors.Is(err, rpc.ErrVersion) || !errors.Is(err, ipc.ErrVersion) {
		t.Fatalf("dial a server of version 2: %v", err)
	}
	_, err = rpc.Dial(ctx, fakeServer(t, []byte("HTTP/1.1 400 Bad Request\r\n"), nil))
	if !errors.Is(err, rpc.ErrProtocol) {
		t.Fatalf("dial a foreign server: %v", err)
	}
	// A client of another version gets the server's hello, then the end.
	srv, _ := newTestServer()
	addr := serve(t, srv, ipc.Unix)
	c, err := ipc.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Send(ctx, hello(7))
	if b, err := c.Recv(ctx, nil); err != nil || len(b) < 8 || b[7] != 1 {
		t.Fatalf("server's answer to version 7: %x %v", b, err)
	}
	if _, err := c.Recv(ctx, nil); !errors.Is(err, io.EOF) {
		t.Fatalf("then %v, want EOF", err)
	}
}

// TestCorruptFromServer: a call whose reply is garbage ends Internal.
func TestCorruptFromServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	cc, err := rpc.Dial(ctx, fakeServer(t, hello(1), []byte{2, 0x80, 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{})
	wantCode(t, err, codes.Internal)
}

// TestInterceptorsAndDetails: interceptors on both sides see every call
// and stream, in order; status details cross.
func TestInterceptorsAndDetails(t *testing.T) {
	var (
		mu    sync.Mutex
		order []string
	)
	log := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	logU := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			log(name + " " + info.FullMethod)
			if info.FullMethod == "/grpc.testing.TestService/EmptyCall" && name == "s2" {
				st, _ := status.New(codes.FailedPrecondition, "with details").WithDetails(&testpb.Payload{Body: []byte("d")})
				return nil, st.Err()
			}
			return h(ctx, req)
		}
	}
	logS := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		log("ss " + info.FullMethod)
		return h(srv, ss)
	}
	srv, _ := newTestServer(rpc.ChainUnaryInterceptor(logU("s1"), logU("s2")), rpc.StreamInterceptor(logS))
	addr := serve(t, srv, ipc.SHM)
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	cc, err := rpc.Dial(ctx, addr, rpc.WithDialConfig(serverConfig()),
		rpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, _ *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			log("c " + method)
			return inv(ctx, method, req, reply, nil, opts...)
		}),
		rpc.WithStreamInterceptor(func(ctx context.Context, d *grpc.StreamDesc, _ *grpc.ClientConn, method string, s grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			log("cs " + method)
			return s(ctx, d, nil, method, opts...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := testpb.NewTestServiceClient(cc)
	_, err = c.EmptyCall(ctx, &testpb.Empty{})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || len(st.Details()) != 1 || string(st.Details()[0].(*testpb.Payload).Body) != "d" {
		t.Fatalf("status %v details %v", st, st.Details())
	}
	so, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := so.Recv(); err != io.EOF {
		t.Fatal(err)
	}
	mu.Lock()
	got := fmt.Sprint(order)
	mu.Unlock()
	want := "[c /grpc.testing.TestService/EmptyCall s1 /grpc.testing.TestService/EmptyCall s2 /grpc.testing.TestService/EmptyCall " +
		"cs /grpc.testing.TestService/StreamingOutputCall ss /grpc.testing.TestService/StreamingOutputCall]"
	if got != want {
		t.Fatalf("order\n%s\nwant\n%s", got, want)
	}
}

// jsonCodec lets plain Go structs cross, for users without protoc.
type jsonCodec struct{}

func (jsonCodec) Name() string                       { return "json" }
func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

type HelloRequest struct{ Name string }
type HelloReply struct{ Greeting string }

// greeter is a service written by hand, without protoc.
type greeter interface {
	Hello(context.Context, *HelloRequest) (*HelloReply, error)
}

type greeterImpl struct{}

func (greeterImpl) Hello(_ context.Context, r *HelloRequest) (*HelloReply, error) {
	return &HelloReply{Greeting: "hello, " + r.Name}, nil
}

var greeterDesc = grpc.ServiceDesc{
	ServiceName: "demo.Greeter",
	HandlerType: (*greeter)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Hello", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		in := new(HelloRequest)
		if err := dec(in); err != nil {
			return nil, err
		}
		return srv.(greeter).Hello(ctx, in)
	}}},
}

func TestJSONCodec(t *testing.T) {
	srv := rpc.NewServer(rpc.ServerCodec(jsonCodec{}))
	srv.RegisterService(&greeterDesc, greeterImpl{})
	addr := serve(t, srv, ipc.UnixPacket)
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	cc, err := rpc.Dial(ctx, addr, rpc.WithCodec(jsonCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var r HelloReply
	if err := cc.Invoke(ctx, "/demo.Greeter/Hello", &HelloRequest{Name: "ipc"}, &r); err != nil || r.Greeting != "hello, ipc" {
		t.Fatalf("%+v %v", r, err)
	}
	if info := srv.GetServiceInfo()["demo.Greeter"]; len(info.Methods) != 1 || info.Methods[0].Name != "Hello" {
		t.Fatalf("service info %+v", info)
	}
}

// binaryCRC appends the big-endian CRC-32 (IEEE) of b.
func binaryCRC(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}
