package rpc

import (
	"context"
	"io"
	"testing"
	"time"

	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
)

// The benchmarks here time one side of a unary call alone, against a peer
// that is a function call away (a fake ipc.Conn that answers at once), so
// they show the CPU cost rpc adds per call on each side, without the
// transport's hand-off (compare with BenchmarkUnary's raw round trip).

type sideEcho struct {
	testpb.UnimplementedTestServiceServer
}

func (sideEcho) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: in.Payload}, nil
}

func sideRequest() *testpb.SimpleRequest {
	return &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 59)}} // 64 bytes marshalled
}

// fakeClient is the client end of a connection to a Server: Recv hands
// out the hello, then n requests, then io.EOF; Send drops what it gets.
type fakeClient struct {
	hello, req []byte // req: the request frame without its header
	n, sent    int
	id         uint64
}

func (c *fakeClient) Recv(_ context.Context, buf []byte) ([]byte, error) {
	if c.hello != nil {
		h := c.hello
		c.hello = nil
		return append(buf, h...), nil
	}
	if c.n == 0 {
		return nil, io.EOF
	}
	c.n--
	c.id++
	buf = appendFrameHeader(buf, frameData, flagHead|flagEnd|flagMsg, c.id)
	return append(buf, c.req...), nil
}

func (c *fakeClient) Send(context.Context, []byte) error { c.sent++; return nil }
func (c *fakeClient) SetDeadline(time.Time) error        { return nil }
func (c *fakeClient) Close() error                       { return nil }

func BenchmarkServerSide(b *testing.B) {
	p, _ := proto.Marshal(sideRequest())
	req := appendHead(nil, "/grpc.testing.TestService/UnaryCall", 0, "", nil)
	req = append(req, p...)
	srv := NewServer()
	testpb.RegisterTestServiceServer(srv, sideEcho{})
	c := &fakeClient{hello: appendHello(nil, protocolVersion, defaultWindow), req: req, n: b.N}
	b.ReportAllocs()
	b.ResetTimer()
	if err := srv.ServeConn(c); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if c.sent != b.N+1 {
		b.Fatalf("%d replies to %d calls", c.sent-1, b.N)
	}
	srv.Close()
}

// fakeServer is the server end of a connection of a ClientConn: each
// request it is sent gets its reply at once.
type fakeServer struct {
	reply []byte
	out   chan []byte
	done  chan struct{}
}

func (s *fakeServer) Send(_ context.Context, b []byte) error {
	var f frame
	if err := decodeFrame(b, &f); err != nil {
		return err
	}
	if f.typ == frameHello {
		s.out <- appendHello(nil, protocolVersion, defaultWindow)
		return nil
	}
	r := appendFrameHeader(nil, frameData, flagHeader|flagStatus|flagMsg, f.id)
	r = appendMD(r, nil)
	r = appendStatus(r, 0, "", nil, nil)
	s.out <- append(r, s.reply...)
	return nil
}

func (s *fakeServer) Recv(ctx context.Context, buf []byte) ([]byte, error) {
	select {
	case m := <-s.out:
		return append(buf, m...), nil
	case <-s.done:
		return nil, io.EOF
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *fakeServer) SetDeadline(time.Time) error { return nil }
func (s *fakeServer) Close() error {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	return nil
}

func BenchmarkClientSide(b *testing.B) {
	p, _ := proto.Marshal(&testpb.SimpleResponse{Payload: sideRequest().Payload})
	s := &fakeServer{reply: p, out: make(chan []byte, 1), done: make(chan struct{})}
	ctx := context.Background()
	cc, err := DialConn(ctx, s)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	c := testpb.NewTestServiceClient(cc)
	req := sideRequest()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProtoOnly is the protobuf work of one call of the benchmarks
// above (request and response, each marshalled and unmarshalled once), the
// part of a call's cost that is the codec's and not rpc's.
func BenchmarkProtoOnly(b *testing.B) {
	req := sideRequest()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for range b.N {
		p, _ := proto.MarshalOptions{}.MarshalAppend(buf[:0], req)
		in := new(testpb.SimpleRequest)
		if err := proto.Unmarshal(p, in); err != nil {
			b.Fatal(err)
		}
		p, _ = proto.MarshalOptions{}.MarshalAppend(buf[:0], &testpb.SimpleResponse{Payload: in.Payload})
		out := new(testpb.SimpleResponse)
		if err := proto.Unmarshal(p, out); err != nil {
			b.Fatal(err)
		}
	}
}
