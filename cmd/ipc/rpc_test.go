package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/reflection"
	v1alphagrpc "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/rpc"
)

// rpcTestService answers UnaryCall with a body of ResponseSize bytes 'x'
// and StreamingOutputCall with one message per ResponseParameters entry.
type rpcTestService struct {
	testpb.UnimplementedTestServiceServer
}

func (rpcTestService) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: []byte(strings.Repeat("x", int(in.GetResponseSize())))}}, nil
}

func (rpcTestService) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, st grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range in.GetResponseParameters() {
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte(strings.Repeat("y", int(p.GetSize())))}}); err != nil {
			return err
		}
	}
	return nil
}

// serveRPC serves the test, health and (if withReflection) reflection
// services (reflect: "v1+v1alpha", "v1alpha" or none) with an rpc server, or with grpcGo a grpc-go server, at a
// fresh address of transport tr, and returns the address.
func serveRPC(t *testing.T, tr string, grpcGo bool, reflect string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ipcrpc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addr := tr + "://" + filepath.Join(dir, "s.sock")
	l, err := ipc.Listen(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	var reg interface {
		grpc.ServiceRegistrar
		reflection.ServiceInfoProvider
	}
	var serve func() error
	var stop func()
	if grpcGo {
		s := grpc.NewServer()
		reg, serve, stop = s, func() error { return s.Serve(l) }, s.Stop
	} else {
		s := rpc.NewServer()
		reg, serve, stop = s, func() error { return s.Serve(l) }, func() { s.Close() }
	}
	testpb.RegisterTestServiceServer(reg, rpcTestService{})
	healthpb.RegisterHealthServer(reg, health.NewServer())
	switch reflect {
	case "v1+v1alpha":
		reflection.Register(reg)
	case "v1alpha":
		v1alphagrpc.RegisterServerReflectionServer(reg, reflection.NewServer(reflection.ServerOptions{Services: reg}))
	}
	done := make(chan struct{})
	go func() { serve(); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	return addr
}

func TestRPCCommand(t *testing.T) {
	const limit = 30 * time.Second
	for _, c := range []struct {
		name    string
		tr      string
		grpcGo  bool
		reflect string
	}{{"rpc-shm", ipc.SHM, false, "v1+v1alpha"}, {"rpc-unix-v1alpha", ipc.Unix, false, "v1alpha"}, {"grpcgo-shm", ipc.SHM, true, "v1+v1alpha"}} {
		t.Run(c.name, func(t *testing.T) {
			addr := serveRPC(t, c.tr, c.grpcGo, c.reflect)
			var flags []string
			if c.grpcGo {
				flags = []string{"--grpc"}
			}
			cmd := func(args ...string) []string { return append(append([]string{"rpc"}, args...), flags...) }

			code, out, _ := run(t, limit, cmd("list", addr)...)
			if code != 0 || !strings.Contains(out, "grpc.testing.TestService\n") || !strings.Contains(out, "grpc.health.v1.Health\n") {
				t.Fatalf("list: exit %d, %q", code, out)
			}
			code, out, _ = run(t, limit, cmd("list", addr, "--json")...)
			var list struct{ Services []string }
			if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Services) < 3 {
				t.Fatalf("list --json: exit %d, %q", code, out)
			}
			code, out, _ = run(t, limit, cmd("describe", addr, "grpc.testing.TestService")...)
			if code != 0 || !strings.Contains(out, "rpc UnaryCall(grpc.testing.SimpleRequest) returns (grpc.testing.SimpleResponse);") ||
				!strings.Contains(out, "rpc StreamingOutputCall(grpc.testing.StreamingOutputCallRequest) returns (stream grpc.testing.StreamingOutputCallResponse);") {
				t.Fatalf("describe: exit %d, %q", code, out)
			}
			code, out, _ = run(t, limit, cmd("call", addr, "grpc.testing.TestService/UnaryCall", `{"responseSize": 3}`)...)
			if code != 0 || strings.TrimSpace(out) != `{"payload":{"body":"eHh4"}}` {
				t.Fatalf("call: exit %d, %q", code, out)
			}
			code, out, _ = run(t, limit, cmd("call", addr, "grpc.testing.TestService/StreamingOutputCall", `{"responseParameters": [{"size": 1}, {"size": 2}]}`)...)
			if code != 0 || strings.ReplaceAll(out, " ", "") != "{\"payload\":{\"body\":\"eQ==\"}}\n{\"payload\":{\"body\":\"eXk=\"}}\n" {
				t.Fatalf("stream call: exit %d, %q", code, out)
			}
			code, out, _ = run(t, limit, cmd("call", addr, "grpc.health.v1.Health/Check", `{}`)...)
			if code != 0 || !strings.Contains(out, "SERVING") {
				t.Fatalf("health: exit %d, %q", code, out)
			}
			for _, bad := range []struct {
				args []string
				want string
			}{
				{cmd("describe", addr, "no.Such"), "unknown service"},
				{cmd("call", addr, "grpc.testing.TestService/Nope", "{}"), "unknown method"},
				{cmd("call", addr, "grpc.testing.TestService/UnaryCall", "{nope"), "bad request JSON"},
				{cmd("call", addr, "grpc.testing.TestService/UnaryCall", `{"noField": 1}`), "bad request JSON"},
			} {
				code, _, errOut := run(t, limit, bad.args...)
				if code != exitFailure || !strings.Contains(errOut, bad.want) {
					t.Errorf("%v: exit %d, stderr %q, want %q", bad.args, code, errOut, bad.want)
				}
			}
		})
	}
}

func TestRPCCommandNoReflection(t *testing.T) {
	addr := serveRPC(t, ipc.Unix, false, "")
	code, _, errOut := run(t, 30*time.Second, "rpc", "list", addr)
	if code != exitFailure || !strings.Contains(errOut, "no reflection service") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, 30*time.Second, "rpc", "list", "unix:///nonexistent/dir/x.sock")
	if code != exitFailure || !strings.HasPrefix(errOut, "ipc: ") || strings.Contains(errOut, "ipc: ipc:") {
		t.Fatalf("unreachable address: exit %d, stderr %q (want one \"ipc: \" prefix)", code, errOut)
	}
}
