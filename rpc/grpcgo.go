package rpc

import (
	"context"
	"net"

	"github.com/ipcgo/ipc"
)

// ContextDialer returns a dialer for grpc.WithContextDialer that lets
// grpc-go's own client (HTTP/2) reach any ipc address, given as the target
// after the passthrough resolver:
//
//	cc, err := grpc.NewClient("passthrough:///shm:///run/app.sock",
//		grpc.WithTransportCredentials(insecure.NewCredentials()),
//		grpc.WithContextDialer(rpc.ContextDialer(nil)))
//
// The server side needs no helper: a grpc.Server serves an *ipc.Listener
// directly, since its Accept hands out byte streams (see ipc.NewStream).
// This path keeps all of grpc-go (gateways, proxies, its transport
// options) at the price of HTTP/2 framing on every call; package rpc's own
// Server and ClientConn run the same generated services without it. cfg
// configures the transport (nil means ipc's defaults) and must match the
// listener's configuration where the transport requires it (shm ring size).
func ContextDialer(cfg *ipc.Config) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		return ipc.DialStream(ctx, addr, cfg)
	}
}
