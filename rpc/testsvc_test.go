package rpc_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/rpc"
)

// testService implements gRPC's interop TestService for the tests:
//   - metadata keys starting with "x-echo" come back in the header (as
//     given) and in the trailer (with "-trailer" appended to the key);
//   - a request's ResponseStatus is returned as the call's status;
//   - a request payload body "panic" makes the handler panic, "block"
//     makes it wait for its context to end (counted in cancelled);
//   - CacheableUnaryCall answers with the number of handlers that saw their
//     context end, in the response's payload body (decimal).
type testService struct {
	testpb.UnimplementedTestServiceServer
	cancelled atomic.Int64
	started   atomic.Int64
	sent      atomic.Int64 // StreamingOutputCall messages sent
}

func echoMD(ctx context.Context, header func(metadata.MD) error, trailer func(metadata.MD)) {
	md, _ := metadata.FromIncomingContext(ctx)
	h, tr := metadata.MD{}, metadata.MD{}
	for k, v := range md {
		if len(k) >= 6 && k[:6] == "x-echo" {
			h[k] = v
			tr[k+"-trailer"] = v
		}
	}
	if len(h) > 0 {
		_ = header(h)
		trailer(tr)
	}
}

func (s *testService) body(ctx context.Context, p *testpb.Payload) error {
	switch string(p.GetBody()) {
	case "panic":
		panic("test handler panics on purpose")
	case "block":
		s.started.Add(1)
		<-ctx.Done()
		s.cancelled.Add(1)
		return status.FromContextError(ctx.Err()).Err()
	}
	return nil
}

func payload(n int32) *testpb.Payload {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return &testpb.Payload{Body: b}
}

func echoStatus(es *testpb.EchoStatus) error {
	if es == nil || es.Code == 0 {
		return nil
	}
	return status.Error(codes.Code(es.Code), es.Message)
}

func (s *testService) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	echoMD(ctx, func(md metadata.MD) error { return grpc.SetHeader(ctx, md) },
		func(md metadata.MD) { _ = grpc.SetTrailer(ctx, md) })
	return &testpb.Empty{}, nil
}

func (s *testService) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	echoMD(ctx, func(md metadata.MD) error { return grpc.SetHeader(ctx, md) },
		func(md metadata.MD) { _ = grpc.SetTrailer(ctx, md) })
	if err := s.body(ctx, in.GetPayload()); err != nil {
		return nil, err
	}
	if err := echoStatus(in.GetResponseStatus()); err != nil {
		return nil, err
	}
	return &testpb.SimpleResponse{Payload: payload(in.GetResponseSize()), Username: deadlineLeft(ctx)}, nil
}

// deadlineLeft reports the handler's deadline as the milliseconds left, or
// "none" (in SimpleResponse.Username, a field the tests have no other use for).
func deadlineLeft(ctx context.Context) string {
	dl, ok := ctx.Deadline()
	if !ok {
		return "none"
	}
	return strconv.FormatInt(time.Until(dl).Milliseconds(), 10)
}

func (s *testService) CacheableUnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: &testpb.Payload{
		Body: fmt.Appendf(nil, "%d %d", s.started.Load(), s.cancelled.Load())}}, nil
}

func (s *testService) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, st grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	echoMD(st.Context(), st.SetHeader, st.SetTrailer)
	if err := s.body(st.Context(), in.GetPayload()); err != nil {
		return err
	}
	for _, p := range in.GetResponseParameters() {
		if us := p.GetIntervalUs(); us > 0 {
			select {
			case <-time.After(time.Duration(us) * time.Microsecond):
			case <-st.Context().Done():
				s.cancelled.Add(1)
				return st.Context().Err()
			}
		}
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
			return err
		}
		s.sent.Add(1)
	}
	return echoStatus(in.GetResponseStatus())
}

func (s *testService) StreamingInputCall(st grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	echoMD(st.Context(), st.SetHeader, st.SetTrailer)
	var n int32
	for {
		in, err := st.Recv()
		if err == io.EOF {
			return st.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: n})
		}
		if err != nil {
			return err
		}
		n += int32(len(in.GetPayload().GetBody()))
	}
}

func (s *testService) respond(st grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse], in *testpb.StreamingOutputCallRequest) error {
	if err := s.body(st.Context(), in.GetPayload()); err != nil {
		return err
	}
	if err := echoStatus(in.GetResponseStatus()); err != nil {
		return err
	}
	for _, p := range in.GetResponseParameters() {
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
			return err
		}
	}
	return nil
}

func (s *testService) FullDuplexCall(st grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	echoMD(st.Context(), st.SendHeader, st.SetTrailer)
	for {
		in, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.respond(st, in); err != nil {
			return err
		}
	}
}

func (s *testService) HalfDuplexCall(st grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	var all []*testpb.StreamingOutputCallRequest
	for {
		in, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		all = append(all, in)
	}
	for _, in := range all {
		if err := s.respond(st, in); err != nil {
			return err
		}
	}
	return nil
}

// newTestServer returns a server with the test service, health (reporting
// SERVING for "" and "grpc.testing.TestService") and reflection.
func newTestServer(opts ...rpc.ServerOption) (*rpc.Server, *testService) {
	srv := rpc.NewServer(opts...)
	svc := &testService{}
	testpb.RegisterTestServiceServer(srv, svc)
	hs := health.NewServer()
	hs.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, svc
}

// serverConfig is the transport configuration of the tests: small POSIX
// queues (RLIMIT_MSGQUEUE is 800 KiB per user) and small shm rings, so
// that many connections fit.
func serverConfig() *ipc.Config {
	return &ipc.Config{QueueDepth: 4, QueueMsgSize: 8192, RingSize: 64 << 10}
}

// serverPeer serves the test services at args[0] until killed.
func serverPeer(args []string) int {
	l, err := ipc.Listen(args[0], serverConfig())
	if err != nil {
		return fail("listen: %v", err)
	}
	srv, _ := newTestServer(rpc.MaxRecvMsgSize(1 << 20))
	fmt.Println("ready")
	err = srv.Serve(l)
	return fail("serve: %v", err)
}

// pipeServerPeer serves the test services on the pipe to its parent.
func pipeServerPeer(args []string) int {
	c, err := ipc.ChildConn(serverConfig())
	if err != nil {
		return fail("child: %v", err)
	}
	srv, _ := newTestServer(rpc.MaxRecvMsgSize(1 << 20))
	if err := srv.ServeConn(c); err != nil {
		return fail("serve: %v", err)
	}
	return 0
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	return 1
}
