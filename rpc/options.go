package rpc

import (
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/encoding"

	"github.com/ipcgo/ipc"
)

// Defaults of the message-size limits, as gRPC's.
const (
	DefaultMaxRecvMsgSize = 4 << 20
	DefaultMaxSendMsgSize = math.MaxInt32
)

// ServerOption configures a Server (functional options, as grpc.Server's).
type ServerOption func(*serverOptions)

type serverOptions struct {
	codec          encoding.Codec
	unaryInts      []grpc.UnaryServerInterceptor
	streamInts     []grpc.StreamServerInterceptor
	cfg            *ipc.Config
	maxRecv        int
	maxSend        int
	window         int
	helloTimeout   time.Duration
	inlineDuration time.Duration
}

// ServerCodec sets the codec of calls that name none (protobuf by
// default). Calls that name another content subtype get the codec
// registered for it with google.golang.org/grpc/encoding.
func ServerCodec(c encoding.Codec) ServerOption {
	return func(o *serverOptions) { o.codec = c }
}

// UnaryInterceptor sets the unary interceptor (replacing any set before);
// ChainUnaryInterceptor adds more.
func UnaryInterceptor(i grpc.UnaryServerInterceptor) ServerOption {
	return func(o *serverOptions) { o.unaryInts = []grpc.UnaryServerInterceptor{i} }
}

// StreamInterceptor sets the stream interceptor (replacing any set before);
// ChainStreamInterceptor adds more.
func StreamInterceptor(i grpc.StreamServerInterceptor) ServerOption {
	return func(o *serverOptions) { o.streamInts = []grpc.StreamServerInterceptor{i} }
}

// ChainUnaryInterceptor adds unary interceptors; the first is outermost.
func ChainUnaryInterceptor(is ...grpc.UnaryServerInterceptor) ServerOption {
	return func(o *serverOptions) { o.unaryInts = append(o.unaryInts, is...) }
}

// ChainStreamInterceptor adds stream interceptors; the first is outermost.
func ChainStreamInterceptor(is ...grpc.StreamServerInterceptor) ServerOption {
	return func(o *serverOptions) { o.streamInts = append(o.streamInts, is...) }
}

// ServerConfig sets the transport configuration used by ServeConn's
// callers and for the transport's message limit (nil: ipc defaults). The
// listener's own configuration is whatever ipc.Listen was given.
func ServerConfig(c *ipc.Config) ServerOption {
	return func(o *serverOptions) { o.cfg = c }
}

// MaxRecvMsgSize is the largest message the server accepts (4 MiB by
// default); a larger one ends its call with codes.ResourceExhausted.
func MaxRecvMsgSize(n int) ServerOption {
	return func(o *serverOptions) { o.maxRecv = n }
}

// MaxSendMsgSize is the largest message the server sends (math.MaxInt32 by
// default); a larger one ends its call with codes.ResourceExhausted.
func MaxSendMsgSize(n int) ServerOption {
	return func(o *serverOptions) { o.maxSend = n }
}

// StreamWindow sets how many messages of a stream the server buffers
// before the client must wait for it to read (32 by default).
func StreamWindow(n int) ServerOption {
	return func(o *serverOptions) { o.window = n }
}

// InlineDuration bounds how long a unary handler runs in the goroutine
// that reads the connection before another goroutine takes over the
// reading: between one and two InlineDurations (500 µs by default; a
// negative value: always run handlers in their own goroutine). Running
// inline saves a goroutine hand-off per call; the bound keeps a long
// handler from holding up the other calls of its connection for longer.
func InlineDuration(d time.Duration) ServerOption {
	return func(o *serverOptions) { o.inlineDuration = d }
}

func newServerOptions(opts []ServerOption) serverOptions {
	o := serverOptions{
		codec: protoCodec{}, maxRecv: DefaultMaxRecvMsgSize, maxSend: DefaultMaxSendMsgSize,
		window: defaultWindow, helloTimeout: 10 * time.Second, inlineDuration: 500 * time.Microsecond,
	}
	for _, f := range opts {
		f(&o)
	}
	if o.codec == nil {
		o.codec = protoCodec{}
	}
	if o.window < 1 {
		o.window = defaultWindow
	}
	return o
}

// DialOption configures a ClientConn (functional options, as grpc's).
type DialOption func(*dialOptions)

type dialOptions struct {
	codec      encoding.Codec
	unaryInts  []grpc.UnaryClientInterceptor
	streamInts []grpc.StreamClientInterceptor
	cfg        *ipc.Config
	backoff    backoff.Config
	window     int
	maxRecv    int
	maxSend    int
}

// WithUnaryInterceptor adds a unary client interceptor; the first added is
// outermost.
func WithUnaryInterceptor(i grpc.UnaryClientInterceptor) DialOption {
	return func(o *dialOptions) { o.unaryInts = append(o.unaryInts, i) }
}

// WithStreamInterceptor adds a stream client interceptor; the first added
// is outermost.
func WithStreamInterceptor(i grpc.StreamClientInterceptor) DialOption {
	return func(o *dialOptions) { o.streamInts = append(o.streamInts, i) }
}

// WithChainUnaryInterceptor adds unary client interceptors in order.
func WithChainUnaryInterceptor(is ...grpc.UnaryClientInterceptor) DialOption {
	return func(o *dialOptions) { o.unaryInts = append(o.unaryInts, is...) }
}

// WithChainStreamInterceptor adds stream client interceptors in order.
func WithChainStreamInterceptor(is ...grpc.StreamClientInterceptor) DialOption {
	return func(o *dialOptions) { o.streamInts = append(o.streamInts, is...) }
}

// WithDialConfig sets the transport configuration of ipc.Dial (nil:
// defaults).
func WithDialConfig(c *ipc.Config) DialOption {
	return func(o *dialOptions) { o.cfg = c }
}

// WithCodec sets the codec of calls (protobuf by default). The server must
// know its name (ServerCodec, or a codec registered with
// google.golang.org/grpc/encoding). grpc.ForceCodec and
// grpc.CallContentSubtype override it per call.
func WithCodec(c encoding.Codec) DialOption {
	return func(o *dialOptions) { o.codec = c }
}

// WithBackoff sets the redial backoff (backoff.DefaultConfig by default,
// with a 100 ms base delay): after a failed dial, calls fail with
// codes.Unavailable until the next attempt is due, unless they wait for
// it with grpc.WaitForReady(true).
func WithBackoff(c backoff.Config) DialOption {
	return func(o *dialOptions) { o.backoff = c }
}

// WithStreamWindow sets how many messages of a stream the client buffers
// before the server must wait for it to read (32 by default).
func WithStreamWindow(n int) DialOption {
	return func(o *dialOptions) { o.window = n }
}

// WithMaxMsgSize sets the default receive and send limits of calls
// (grpc.MaxCallRecvMsgSize and grpc.MaxCallSendMsgSize override them);
// 0 keeps a default (4 MiB to receive, math.MaxInt32 to send).
func WithMaxMsgSize(recv, send int) DialOption {
	return func(o *dialOptions) {
		if recv > 0 {
			o.maxRecv = recv
		}
		if send > 0 {
			o.maxSend = send
		}
	}
}

func newDialOptions(opts []DialOption) dialOptions {
	b := backoff.DefaultConfig
	b.BaseDelay = 100 * time.Millisecond
	o := dialOptions{codec: protoCodec{}, backoff: b, window: defaultWindow,
		maxRecv: DefaultMaxRecvMsgSize, maxSend: DefaultMaxSendMsgSize}
	for _, f := range opts {
		f(&o)
	}
	if o.codec == nil {
		o.codec = protoCodec{}
	}
	if o.window < 1 {
		o.window = defaultWindow
	}
	return o
}
