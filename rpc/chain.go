package rpc

import (
	"context"

	"google.golang.org/grpc"
)

// chainUnaryServer makes one interceptor of is (nil for none); is[0] is
// outermost.
func chainUnaryServer(is []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch len(is) {
	case 0:
		return nil
	case 1:
		return is[0]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return is[0](ctx, req, info, unaryServerNext(is, 1, info, h))
	}
}

func unaryServerNext(is []grpc.UnaryServerInterceptor, i int, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) grpc.UnaryHandler {
	if i == len(is) {
		return h
	}
	return func(ctx context.Context, req any) (any, error) {
		return is[i](ctx, req, info, unaryServerNext(is, i+1, info, h))
	}
}

func chainStreamServer(is []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	switch len(is) {
	case 0:
		return nil
	case 1:
		return is[0]
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return is[0](srv, ss, info, streamServerNext(is, 1, info, h))
	}
}

func streamServerNext(is []grpc.StreamServerInterceptor, i int, info *grpc.StreamServerInfo, h grpc.StreamHandler) grpc.StreamHandler {
	if i == len(is) {
		return h
	}
	return func(srv any, ss grpc.ServerStream) error {
		return is[i](srv, ss, info, streamServerNext(is, i+1, info, h))
	}
}

func chainUnaryClient(is []grpc.UnaryClientInterceptor) grpc.UnaryClientInterceptor {
	switch len(is) {
	case 0:
		return nil
	case 1:
		return is[0]
	}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return is[0](ctx, method, req, reply, cc, unaryClientNext(is, 1, inv), opts...)
	}
}

func unaryClientNext(is []grpc.UnaryClientInterceptor, i int, inv grpc.UnaryInvoker) grpc.UnaryInvoker {
	if i == len(is) {
		return inv
	}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		return is[i](ctx, method, req, reply, cc, unaryClientNext(is, i+1, inv), opts...)
	}
}

func chainStreamClient(is []grpc.StreamClientInterceptor) grpc.StreamClientInterceptor {
	switch len(is) {
	case 0:
		return nil
	case 1:
		return is[0]
	}
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, s grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return is[0](ctx, desc, cc, method, streamClientNext(is, 1, s), opts...)
	}
}

func streamClientNext(is []grpc.StreamClientInterceptor, i int, s grpc.Streamer) grpc.Streamer {
	if i == len(is) {
		return s
	}
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return is[i](ctx, desc, cc, method, streamClientNext(is, i+1, s), opts...)
	}
}
