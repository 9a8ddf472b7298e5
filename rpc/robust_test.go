package rpc_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/rpc"
)

var killTransports = []string{ipc.SHM, ipc.Unix}

// TestServerKilled kills the server with calls and a stream in flight:
// each ends Unavailable within goneBound, and once a server is back at
// the address the client redials.
func TestServerKilled(t *testing.T) {
	for _, tr := range killTransports {
		t.Run(tr, func(t *testing.T) {
			cc, p, addr := startServer(t, tr, rpc.WithBackoff(backoff.Config{
				BaseDelay: 20 * time.Millisecond, Multiplier: 2, MaxDelay: 200 * time.Millisecond}))
			c := testpb.NewTestServiceClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
			defer cancel()
			before := counters(t, c)
			errs := make(chan error, 4)
			for range 3 {
				go func() {
					_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("block")}})
					errs <- err
				}()
			}
			st, err := c.FullDuplexCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				_, err := st.Recv()
				errs <- err
			}()
			waitFor(t, func() bool { return counters(t, c)[0] >= before[0]+3 })
			p.Kill()
			killed := time.Now()
			for range 4 {
				select {
				case err := <-errs:
					wantCode(t, err, codes.Unavailable)
				case <-time.After(goneBound):
					t.Fatalf("a call still pending %v after kill -9", goneBound)
				}
			}
			t.Logf("%s: all calls ended %v after kill -9", tr, time.Since(killed))
			<-p.Done()
			// Nobody there: calls fail fast with Unavailable.
			_, err = c.EmptyCall(ctx, &testpb.Empty{})
			wantCode(t, err, codes.Unavailable)
			// A new server at the same address: the client redials.
			p2 := ipctest.StartPeer(t, "rpc-server", addr)
			p2.Expect(t, "ready", peerTimeout)
			if _, err := c.EmptyCall(ctx, &testpb.Empty{}, grpc.WaitForReady(true)); err != nil {
				t.Fatalf("after the server came back: %v", err)
			}
		})
	}
}

// TestClientKilled kills a client with a call and a stream in the
// server's handlers: both handlers' contexts end.
func TestClientKilled(t *testing.T) {
	for _, tr := range killTransports {
		t.Run(tr, func(t *testing.T) {
			srv, svc := newTestServer()
			addr := serve(t, srv, tr)
			p := ipctest.StartPeer(t, "rpc-client", addr, "block")
			p.Expect(t, "calling", peerTimeout)
			waitFor(t, func() bool { return svc.started.Load() == 2 })
			p.Kill()
			killed := time.Now()
			waitFor(t, func() bool { return svc.cancelled.Load() == 2 })
			t.Logf("%s: handlers cancelled %v after kill -9", tr, time.Since(killed))
		})
	}
}

// serve serves srv on a new address of transport tr in this process until
// t ends.
func serve(t *testing.T, srv *rpc.Server, tr string) string {
	t.Helper()
	addr := testAddr(t, tr)
	l, err := ipc.Listen(addr, serverConfig())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, rpc.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return addr
}

// TestManyClients serves 64 client processes at once over shm and unix.
func TestManyClients(t *testing.T) {
	n := 64
	if testing.Short() {
		n = 8
	}
	for _, tr := range killTransports {
		t.Run(tr, func(t *testing.T) {
			srv, _ := newTestServer()
			addr := serve(t, srv, tr)
			peers := make([]*ipctest.Peer, n)
			for i := range peers {
				peers[i] = ipctest.StartPeer(t, "rpc-client", addr, "idle")
			}
			for _, p := range peers {
				p.Expect(t, "ok", 3*peerTimeout)
			}
			// With all of them connected, the server still serves.
			ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
			defer cancel()
			cc, err := rpc.Dial(ctx, addr, rpc.WithDialConfig(serverConfig()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			if _, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{}); err != nil {
				t.Fatal(err)
			}
			for _, p := range peers {
				p.Kill()
			}
		})
	}
}

// TestShutdown drains: a call in flight completes, new calls are refused,
// Serve returns ErrServerClosed.
func TestShutdown(t *testing.T) {
	srv, _ := newTestServer()
	addr := testAddr(t, ipc.SHM)
	l, err := ipc.Listen(addr, serverConfig())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	ctx, c := dialTest(t, addr)
	so, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: 1}, {Size: 10, IntervalUs: 200_000}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := so.Recv(); err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	if r, err := so.Recv(); err != nil || len(r.Payload.Body) != 10 {
		t.Fatalf("stream during shutdown: %v %v", r, err)
	}
	if _, err := so.Recv(); err != io.EOF {
		t.Fatalf("stream end: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, rpc.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	_, err = c.EmptyCall(ctx, &testpb.Empty{})
	wantCode(t, err, codes.Unavailable)
}

// TestCloseCuts: Close ends calls in flight at once, Unavailable.
func TestCloseCuts(t *testing.T) {
	srv, svc := newTestServer()
	addr := testAddr(t, ipc.Unix)
	l, err := ipc.Listen(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	cc, err := rpc.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("block")}})
		errc <- err
	}()
	waitFor(t, func() bool { return svc.started.Load() == 1 })
	srv.Close()
	wantCode(t, <-errc, codes.Unavailable)
	if err := <-done; !errors.Is(err, rpc.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

// TestFlowControlBound: a stream nobody reads gets exactly the client's
// window of messages, then its sender waits; other calls go on; reading
// releases the rest.
func TestFlowControlBound(t *testing.T) {
	srv, svc := newTestServer()
	addr := serve(t, srv, ipc.SHM)
	const window = 8
	ctx, c := dialTest(t, addr, rpc.WithStreamWindow(window))
	ps := make([]*testpb.ResponseParameters, 200)
	for i := range ps {
		ps[i] = &testpb.ResponseParameters{Size: 100}
	}
	so, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: ps})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return svc.sent.Load() == window })
	// The sender is held at the window while other calls pass.
	for range 50 {
		if _, err := c.EmptyCall(ctx, &testpb.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := svc.sent.Load(); n != window {
		t.Fatalf("%d messages sent to a reader that read none, window %d", n, window)
	}
	for i := range ps {
		if _, err := so.Recv(); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if _, err := so.Recv(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

// TestLongHandler: a unary handler that runs long does not hold up the
// other calls of its connection (the reading moves to another goroutine).
func TestLongHandler(t *testing.T) {
	srv, svc := newTestServer(rpc.InlineDuration(time.Millisecond))
	addr := serve(t, srv, ipc.SHM)
	ctx, c := dialTest(t, addr)
	bctx, bcancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := c.UnaryCall(bctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("block")}})
		errc <- err
	}()
	waitFor(t, func() bool { return svc.started.Load() == 1 })
	for range 20 {
		if _, err := c.EmptyCall(ctx, &testpb.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	bcancel()
	wantCode(t, <-errc, codes.Canceled)
}

// dialTest dials addr for t (closed when t ends) and returns a context
// bounded by peerTimeout and the test service's client.
func dialTest(t *testing.T, addr string, opts ...rpc.DialOption) (context.Context, testpb.TestServiceClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	t.Cleanup(cancel)
	cc, err := rpc.Dial(ctx, addr, append([]rpc.DialOption{rpc.WithDialConfig(serverConfig())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return ctx, testpb.NewTestServiceClient(cc)
}
