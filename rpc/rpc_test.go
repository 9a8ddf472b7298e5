package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/rpc"
)

const (
	// peerTimeout bounds every wait for a peer; peers answer in
	// milliseconds, the bound only limits how long a broken test takes.
	peerTimeout = 20 * time.Second
	// goneBound is how long calls may take to see a killed peer.
	goneBound = 5 * time.Second
)

// transports are the schemes the suite runs over ("pipe" is a child
// started with ipc.StartChild and served with ServeConn).
var transports = []string{ipc.SHM, ipc.Unix, ipc.UnixPacket, ipc.TCP, ipc.FIFO, ipc.PosixMQ, ipc.Pipe}

// testAddr returns an address of transport tr for t, cleaned up with it.
func testAddr(t testing.TB, tr string) string {
	switch tr {
	case ipc.TCP:
		return "tcp://127.0.0.1:0"
	case ipc.PosixMQ:
		return fmt.Sprintf("posixmq:///rpct-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	}
	dir, err := os.MkdirTemp("", "rpct")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return tr + "://" + filepath.Join(dir, "s")
}

// startServer starts a server peer on transport tr and returns a client
// of it (and the peer, and the address).
func startServer(t *testing.T, tr string, opts ...rpc.DialOption) (*rpc.ClientConn, *ipctest.Peer, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	opts = append([]rpc.DialOption{rpc.WithDialConfig(serverConfig())}, opts...)
	if tr == ipc.Pipe {
		cmd := ipctest.Command("rpc-pipe-server")
		var c ipc.Conn
		p := ipctest.StartFunc(t, cmd, func() (err error) { c, err = ipc.StartChild(cmd, serverConfig()); return err })
		cc, err := rpc.DialConn(ctx, c, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc, p, ""
	}
	addr := testAddr(t, tr)
	if tr == ipc.TCP {
		addr = freeTCP(t)
	}
	p := ipctest.StartPeer(t, "rpc-server", addr)
	p.Expect(t, "ready", peerTimeout)
	cc, err := rpc.Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc, p, addr
}

// freeTCP returns a TCP address on loopback that was free a moment ago.
func freeTCP(t testing.TB) string {
	l, err := ipc.Listen("tcp://127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	if !strings.HasPrefix(a, "tcp://") {
		a = "tcp://" + a
	}
	return a
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if s, _ := status.FromError(err); s.Code() != code {
		t.Fatalf("error %v, want code %v", err, code)
	}
}

// TestConformance runs every feature over every transport, with the
// server in another process.
func TestConformance(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			cc, _, _ := startServer(t, tr)
			conformance(t, cc)
		})
	}
}

func conformance(t *testing.T, cc *rpc.ClientConn) {
	c := testpb.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()

	t.Run("unary", func(t *testing.T) {
		for _, n := range []int32{0, 64, 4096, 100_000} {
			r, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: n, Payload: payload(n)})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.GetPayload().GetBody()) != int(n) || (n > 0 && r.Payload.Body[n-1] != byte(n-1)) {
				t.Fatalf("size %d: got %d bytes", n, len(r.GetPayload().GetBody()))
			}
		}
		if _, err := c.EmptyCall(ctx, &testpb.Empty{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("metadata", func(t *testing.T) {
		var h, tr metadata.MD
		mctx := metadata.AppendToOutgoingContext(ctx, "x-echo-a", "1", "x-echo-a", "2", "other", "x")
		if _, err := c.UnaryCall(mctx, &testpb.SimpleRequest{}, grpc.Header(&h), grpc.Trailer(&tr)); err != nil {
			t.Fatal(err)
		}
		if got := h.Get("x-echo-a"); len(got) != 2 || got[0] != "1" || got[1] != "2" || h.Get("other") != nil {
			t.Fatalf("header %v", h)
		}
		if got := tr.Get("x-echo-a-trailer"); len(got) != 2 {
			t.Fatalf("trailer %v", tr)
		}
		st, err := c.StreamingOutputCall(mctx, &testpb.StreamingOutputCallRequest{})
		if err != nil {
			t.Fatal(err)
		}
		sh, err := st.Header()
		if err != nil || len(sh.Get("x-echo-a")) != 2 {
			t.Fatalf("stream header %v, %v", sh, err)
		}
		if _, err := st.Recv(); err != io.EOF {
			t.Fatalf("recv %v", err)
		}
		if len(st.Trailer().Get("x-echo-a-trailer")) != 2 {
			t.Fatalf("stream trailer %v", st.Trailer())
		}
	})
	t.Run("status", func(t *testing.T) {
		_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.AlreadyExists), Message: "dup ✓"}})
		s, _ := status.FromError(err)
		if s.Code() != codes.AlreadyExists || s.Message() != "dup ✓" {
			t.Fatalf("status %v", err)
		}
		_, err = c.UnimplementedCall(ctx, &testpb.Empty{})
		wantCode(t, err, codes.Unimplemented)
		err = cc.Invoke(ctx, "/no.Such/Method", &testpb.Empty{}, &testpb.Empty{})
		wantCode(t, err, codes.Unimplemented)
		if !strings.Contains(err.Error(), "unknown service no.Such") {
			t.Fatalf("message %v", err)
		}
		err = cc.Invoke(ctx, "/grpc.testing.TestService/Nope", &testpb.Empty{}, &testpb.Empty{})
		wantCode(t, err, codes.Unimplemented)
	})
	t.Run("deadline", func(t *testing.T) {
		dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
		defer dcancel()
		r, err := c.UnaryCall(dctx, &testpb.SimpleRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var ms int
		if _, err := fmt.Sscan(r.Username, &ms); err != nil || ms <= 0 || ms > 3000 {
			t.Fatalf("handler's deadline %q ms away, want (0, 3000]", r.Username)
		}
		dctx, dcancel = context.WithTimeout(ctx, 50*time.Millisecond)
		defer dcancel()
		_, err = c.UnaryCall(dctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("block")}})
		wantCode(t, err, codes.DeadlineExceeded)
	})
	t.Run("cancel", func(t *testing.T) {
		before := counters(t, c)
		cctx, ccancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() {
			_, err := c.UnaryCall(cctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("block")}})
			errc <- err
		}()
		waitFor(t, func() bool { return counters(t, c)[0] > before[0] })
		ccancel()
		wantCode(t, <-errc, codes.Canceled)
		// The handler's context ends too.
		waitFor(t, func() bool { return counters(t, c)[1] > before[1] })
	})
	t.Run("panic", func(t *testing.T) {
		_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("panic")}})
		wantCode(t, err, codes.Internal)
		if _, err := c.EmptyCall(ctx, &testpb.Empty{}); err != nil {
			t.Fatalf("after a panic: %v", err)
		}
	})
	t.Run("oversized", func(t *testing.T) {
		_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: payload(2 << 20)})
		wantCode(t, err, codes.ResourceExhausted)
		_, err = c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 5000}, grpc.MaxCallRecvMsgSize(1000))
		wantCode(t, err, codes.ResourceExhausted)
		_, err = c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: payload(5000)}, grpc.MaxCallSendMsgSize(1000))
		wantCode(t, err, codes.ResourceExhausted)
		if _, err := c.EmptyCall(ctx, &testpb.Empty{}); err != nil {
			t.Fatalf("after oversized: %v", err)
		}
	})
	t.Run("streams", func(t *testing.T) { streams(t, ctx, c) })
	t.Run("flow", func(t *testing.T) { flow(t, ctx, c) })
	t.Run("health", func(t *testing.T) {
		h := healthpb.NewHealthClient(cc)
		r, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: "grpc.testing.TestService"})
		if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("check %v %v", r, err)
		}
		_, err = h.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
		wantCode(t, err, codes.NotFound)
		w, err := h.Watch(ctx, &healthpb.HealthCheckRequest{Service: ""})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("watch %v %v", r, err)
		}
	})
	t.Run("reflection", func(t *testing.T) {
		rc, err := rpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		r, err := rc.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range r.GetListServicesResponse().GetService() {
			names = append(names, s.Name)
		}
		got := strings.Join(names, ",")
		for _, want := range []string{"grpc.testing.TestService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
			if !strings.Contains(got, want) {
				t.Fatalf("services %s lack %s", got, want)
			}
		}
		if err := rc.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "grpc.testing.TestService"}}); err != nil {
			t.Fatal(err)
		}
		if r, err := rc.Recv(); err != nil || len(r.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
			t.Fatalf("file of symbol: %v %v", r, err)
		}
		rc.CloseSend()
		if _, err := rc.Recv(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					n := int32(g*100 + i)
					r, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: n})
					if err == nil && len(r.GetPayload().GetBody()) != int(n) {
						err = fmt.Errorf("got %d bytes, want %d", len(r.GetPayload().GetBody()), n)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})
}

// counters returns the server's counts of blocking handlers started and
// of handlers that saw their context end.
func counters(t *testing.T, c testpb.TestServiceClient) [2]int {
	t.Helper()
	r, err := c.CacheableUnaryCall(context.Background(), &testpb.SimpleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var n [2]int
	fmt.Sscan(string(r.GetPayload().GetBody()), &n[0], &n[1])
	return n
}

// waitFor polls cond until it holds, failing t after peerTimeout.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	end := time.Now().Add(peerTimeout)
	for !cond() {
		if time.Now().After(end) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(time.Millisecond)
	}
}

func params(sizes ...int32) []*testpb.ResponseParameters {
	var ps []*testpb.ResponseParameters
	for _, s := range sizes {
		ps = append(ps, &testpb.ResponseParameters{Size: s})
	}
	return ps
}

func streams(t *testing.T, ctx context.Context, c testpb.TestServiceClient) {
	// Server streaming.
	so, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params(1, 10, 100, 50_000)})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{1, 10, 100, 50_000} {
		r, err := so.Recv()
		if err != nil || len(r.GetPayload().GetBody()) != want {
			t.Fatalf("output: %v %v, want %d bytes", r, err, want)
		}
	}
	if _, err := so.Recv(); err != io.EOF {
		t.Fatalf("output end %v", err)
	}
	// A status at the end of a stream.
	so, err = c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params(3),
		ResponseStatus: &testpb.EchoStatus{Code: int32(codes.DataLoss), Message: "lost"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := so.Recv(); err != nil {
		t.Fatal(err)
	}
	_, err = so.Recv()
	wantCode(t, err, codes.DataLoss)

	// Client streaming.
	si, err := c.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i := range 100 {
		if err := si.Send(&testpb.StreamingInputCallRequest{Payload: payload(int32(i * 10))}); err != nil {
			t.Fatal(err)
		}
		total += i * 10
	}
	r, err := si.CloseAndRecv()
	if err != nil || int(r.AggregatedPayloadSize) != total {
		t.Fatalf("input: %v %v, want %d", r, err, total)
	}

	// Full duplex: one answer per request, in step.
	fd, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := fd.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: params(int32(i))}); err != nil {
			t.Fatal(err)
		}
		r, err := fd.Recv()
		if err != nil || len(r.GetPayload().GetBody()) != i {
			t.Fatalf("duplex %d: %v %v", i, r, err)
		}
	}
	fd.CloseSend()
	if _, err := fd.Recv(); err != io.EOF {
		t.Fatalf("duplex end %v", err)
	}

	// Half duplex: all requests, then all answers.
	hd, err := c.HalfDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := hd.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: params(int32(i), int32(i))}); err != nil {
			t.Fatal(err)
		}
	}
	hd.CloseSend()
	n := 0
	for {
		_, err := hd.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 20 {
		t.Fatalf("half duplex: %d answers, want 20", n)
	}

	// A stream cancelled by its context ends at once, on both sides.
	before := counters(t, c)
	sctx, scancel := context.WithCancel(ctx)
	fd, err = c.FullDuplexCall(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := fd.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("block")}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return counters(t, c)[0] > before[0] }) // the handler blocks
	scancel()
	_, err = fd.Recv()
	wantCode(t, err, codes.Canceled)
	waitFor(t, func() bool { return counters(t, c)[1] > before[1] })
}

// flow checks that a stream no one reads holds back only itself.
func flow(t *testing.T, ctx context.Context, c testpb.TestServiceClient) {
	sizes := make([]int32, 500)
	for i := range sizes {
		sizes[i] = 1000
	}
	so, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params(sizes...)})
	if err != nil {
		t.Fatal(err)
	}
	// Not read yet: other calls go on.
	for range 20 {
		if _, err := c.EmptyCall(ctx, &testpb.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range sizes {
		if _, err := so.Recv(); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if _, err := so.Recv(); err != io.EOF {
		t.Fatalf("end %v", err)
	}
}

var _ = errors.Is
