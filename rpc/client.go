package rpc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ipcgo/ipc"
)

// ClientConn is a client of one server: any number of goroutines may make
// calls and streams on it at once, all multiplexed over one ipc.Conn. It
// satisfies grpc.ClientConnInterface, so generated clients take it:
// pb.NewFooClient(cc). When the connection dies, its calls end with
// codes.Unavailable and the next call dials again (with backoff).
type ClientConn struct {
	addr      string
	opts      dialOptions
	unaryInt  grpc.UnaryClientInterceptor
	streamInt grpc.StreamClientInterceptor
	redial    bool

	cur atomic.Pointer[ctransport] // the connection calls use; nil: dial

	mu      sync.Mutex
	closed  bool
	dialing chan struct{} // closed when the dial in progress ends
	lastErr error
	retries int
	next    time.Time // no dial before this (backoff)
	all     map[*ctransport]struct{}
}

// Dial connects to the rpc server at addr, any ipc address (such as
// "shm:///run/app.sock"), as long as ctx allows, and returns the client.
// It fails if the first connection cannot be made; later ones are made
// again when a call needs them.
func Dial(ctx context.Context, addr string, opts ...DialOption) (*ClientConn, error) {
	cc := newClientConn(addr, opts)
	cc.redial = true
	t, err := cc.connect(ctx, nil)
	if err != nil {
		return nil, err
	}
	cc.install(t)
	return cc, nil
}

// DialConn makes a client of the server at the other end of c (such as
// the pipe to a child started with ipc.StartChild). It never redials: once
// c dies, calls fail with codes.Unavailable.
func DialConn(ctx context.Context, c ipc.Conn, opts ...DialOption) (*ClientConn, error) {
	cc := newClientConn("conn", opts)
	t, err := cc.connect(ctx, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	cc.install(t)
	return cc, nil
}

func newClientConn(addr string, opts []DialOption) *ClientConn {
	cc := &ClientConn{addr: addr, opts: newDialOptions(opts), all: map[*ctransport]struct{}{}}
	cc.unaryInt = chainUnaryClient(cc.opts.unaryInts)
	cc.streamInt = chainStreamClient(cc.opts.streamInts)
	return cc
}

func (cc *ClientConn) install(t *ctransport) {
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		t.close(ErrClientClosed)
		return
	}
	cc.all[t] = struct{}{}
	cc.cur.Store(t)
	cc.mu.Unlock()
	go t.readLoop()
}

// Close closes the connection; calls in flight end with codes.Canceled.
func (cc *ClientConn) Close() error {
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return ErrClientClosed
	}
	cc.closed = true
	ts := make([]*ctransport, 0, len(cc.all))
	for t := range cc.all {
		ts = append(ts, t)
	}
	cc.cur.Store(nil)
	cc.mu.Unlock()
	for _, t := range ts {
		t.close(ErrClientClosed)
		<-t.done
	}
	return nil
}

// connect dials (when c is nil) and says hello.
func (cc *ClientConn) connect(ctx context.Context, c ipc.Conn) (*ctransport, error) {
	if c == nil {
		var err error
		if c, err = ipc.Dial(ctx, cc.addr, cc.opts.cfg); err != nil {
			return nil, err
		}
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := c.Send(hctx, appendHello(nil, protocolVersion, uint32(cc.opts.window)))
	var b []byte
	if err == nil {
		b, err = c.Recv(hctx, nil)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("rpc: hello to %s: %w", cc.addr, err)
	}
	var f frame
	if err := decodeFrame(b, &f); err != nil || f.typ != frameHello {
		c.Close()
		return nil, fmt.Errorf("%w: %s answered the hello with something else", ErrProtocol, cc.addr)
	}
	if f.version != protocolVersion {
		c.Close()
		return nil, fmt.Errorf("%w: server %s speaks %d, client %d", ErrVersion, cc.addr, f.version, protocolVersion)
	}
	t := &ctransport{cc: cc, c: c, window: int(f.window), calls: map[uint64]receiver{}, done: make(chan struct{}),
		wake: make(chan struct{}, 1), rbuf: make([]byte, 0, 4096)}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t, nil
}

// transport returns the connection for a new call, dialling if there is
// none. Without wait (the default, as gRPC's fail-fast), a call during the
// backoff after a failed dial fails at once with codes.Unavailable;
// grpc.WaitForReady(true) waits for the next attempt.
func (cc *ClientConn) transport(ctx context.Context, wait bool) (*ctransport, error) {
	for {
		if t := cc.cur.Load(); t != nil && t.usable() {
			return t, nil
		}
		cc.mu.Lock()
		if cc.closed {
			cc.mu.Unlock()
			return nil, status.Error(codes.Canceled, "grpc: the client connection is closing")
		}
		if t := cc.cur.Load(); t != nil && t.usable() {
			cc.mu.Unlock()
			return t, nil
		}
		if !cc.redial {
			cc.mu.Unlock()
			return nil, status.Errorf(codes.Unavailable, "rpc: connection to %s closed", cc.addr)
		}
		if ch := cc.dialing; ch != nil {
			cc.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, status.FromContextError(ctx.Err()).Err()
			}
		}
		if d := time.Until(cc.next); d > 0 {
			lastErr := cc.lastErr
			cc.mu.Unlock()
			if !wait {
				return nil, status.Errorf(codes.Unavailable, "rpc: connection to %s failed (retry in %v): %v", cc.addr, d.Round(time.Millisecond), lastErr)
			}
			tm := time.NewTimer(d)
			select {
			case <-tm.C:
				continue
			case <-ctx.Done():
				tm.Stop()
				return nil, status.FromContextError(ctx.Err()).Err()
			}
		}
		ch := make(chan struct{})
		cc.dialing = ch
		cc.mu.Unlock()
		t, err := cc.connect(ctx, nil)
		cc.mu.Lock()
		cc.dialing = nil
		close(ch)
		switch {
		case err == nil:
			cc.retries = 0
			cc.mu.Unlock()
			cc.install(t)
			continue
		case ctx.Err() != nil:
			cc.mu.Unlock()
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		cc.lastErr = err
		cc.next = time.Now().Add(cc.backoff(cc.retries))
		cc.retries++
		cc.mu.Unlock()
		if !wait {
			return nil, status.Errorf(codes.Unavailable, "rpc: %v", err)
		}
	}
}

// backoff returns the wait after the n+1st failed dial in a row, as gRPC's
// exponential backoff with jitter.
func (cc *ClientConn) backoff(n int) time.Duration {
	b := cc.opts.backoff
	d := float64(b.BaseDelay)
	for i := 0; i < n && d < float64(b.MaxDelay); i++ {
		d *= b.Multiplier
	}
	d = min(d, float64(b.MaxDelay))
	d *= 1 + b.Jitter*(2*rand.Float64()-1)
	return max(time.Duration(d), 0)
}

// forget drops t as the current connection (it died or was told to go).
func (cc *ClientConn) forget(t *ctransport, dead bool) {
	cc.cur.CompareAndSwap(t, nil)
	if dead {
		cc.mu.Lock()
		delete(cc.all, t)
		cc.mu.Unlock()
	}
}

// receiver is a call or stream waiting for frames from the server.
type receiver interface {
	deliver(t *ctransport, f *frame) error
	fail(t *ctransport, id uint64, err error)
}

// ctransport is one connection of a ClientConn.
type ctransport struct {
	cc     *ClientConn
	c      ipc.Conn
	window int // the server's stream window: initial credit of each stream
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	calls  map[uint64]receiver
	nextID uint64
	err    error // why it died; nil while alive
	goaway atomic.Bool
	dead   atomic.Bool
	done   chan struct{} // closed when the reader goroutine ended

	wake   chan struct{} // wakes the reader goroutine
	rmu    sync.Mutex    // the reading role
	rbuf   []byte        // the reader's buffer (rmu)
	rframe frame         // the frame being handed on (rmu)
}

func (t *ctransport) usable() bool { return !t.dead.Load() && !t.goaway.Load() }

// register gives r a stream id.
func (t *ctransport) register(r receiver) (uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return 0, t.err
	}
	t.nextID++
	t.calls[t.nextID] = r
	return t.nextID, nil
}

// unregister removes id if r still holds it and reports whether it did.
func (t *ctransport) unregister(id uint64, r receiver) bool {
	t.mu.Lock()
	owned := t.calls[id] == r
	if owned {
		delete(t.calls, id)
	}
	idle := len(t.calls) == 0 && t.goaway.Load()
	t.mu.Unlock()
	if idle {
		t.close(status.Error(codes.Unavailable, "rpc: server went away"))
	}
	return owned
}

func (t *ctransport) send(ctx context.Context, b []byte) error { return t.c.Send(ctx, b) }

// sendControl sends a small control frame without blocking the caller for
// long (a cancel or a window grant).
func (t *ctransport) sendControl(typ byte, id uint64, credit int) {
	b := getBuf()
	*b = appendFrameHeader(*b, typ, 0, id)
	if typ == frameWindow {
		*b = binary.AppendUvarint(*b, uint64(credit))
	}
	_ = t.c.Send(t.ctx, *b)
	putBuf(b)
}

// close ends the connection: every call still waiting ends with err (a
// status error).
func (t *ctransport) close(err error) {
	t.mu.Lock()
	if t.err != nil {
		t.mu.Unlock()
		return
	}
	if _, ok := status.FromError(err); !ok {
		code := codes.Unavailable
		switch {
		case errors.Is(err, ErrClientClosed):
			code = codes.Canceled
		case errors.Is(err, ErrProtocol):
			code = codes.Internal
		}
		err = status.Errorf(code, "rpc: connection to %s: %v", t.cc.addr, err)
	}
	t.err = err
	t.dead.Store(true)
	calls := t.calls
	t.calls = map[uint64]receiver{}
	t.mu.Unlock()
	t.cancel()
	t.c.Close()
	t.cc.forget(t, true)
	for id, r := range calls {
		r.fail(t, id, err)
	}
}

// The reading role: whoever holds rmu reads frames and hands each to its
// call. A unary caller takes the role itself when it is free and reads
// until its own reply is in, which saves the wake-up of a reader goroutine
// per call; otherwise the connection's reader goroutine (readLoop) holds
// it, for as long as any call or stream waits. A holder that leaves while
// calls wait wakes the reader goroutine (needReader is checked after each
// release, so no call is ever left without a reader).

// needReader reports whether a call or stream waits for frames.
func (t *ctransport) needReader() bool {
	t.mu.Lock()
	n := len(t.calls)
	t.mu.Unlock()
	return n > 0
}

func (t *ctransport) wakeReader() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// readLoop is the connection's reader goroutine.
func (t *ctransport) readLoop() {
	defer close(t.done)
	for {
		select {
		case <-t.wake:
		case <-t.ctx.Done():
			return
		}
		for t.needReader() {
			t.rmu.Lock()
			for t.needReader() {
				if err := t.readFrame(t.ctx); err != nil {
					t.rmu.Unlock()
					return
				}
			}
			t.rmu.Unlock()
		}
	}
}

// lead reads frames, as the holder of rmu, until w's call has ended; it
// returns ctx's error if ctx ends first.
func (t *ctransport) lead(ctx context.Context, w *waiter) error {
	for !w.done.Load() {
		if err := t.readFrame(ctx); err != nil {
			if t.dead.Load() {
				return nil // w has its error
			}
			return err
		}
	}
	return nil
}

// readFrame reads one frame and hands it on. An error is either ctx's (the
// connection is fine) or fatal: the connection is closed then.
func (t *ctransport) readFrame(ctx context.Context) error {
	msg, err := t.c.Recv(ctx, t.rbuf[:0])
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
			return ctx.Err()
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			err = fmt.Errorf("server closed the connection: %w", err)
		}
		t.close(err)
		return err
	}
	t.rbuf = msg
	f := &t.rframe
	if err := decodeFrame(msg, f); err != nil {
		err = protoErr(err)
		t.close(err)
		return err
	}
	switch f.typ {
	case frameData:
		if f.flags&(flagHead|flagEnd) != 0 {
			err := protoErr(errors.New("client flags from the server"))
			t.close(err)
			return err
		}
		t.mu.Lock()
		r := t.calls[f.id]
		if r != nil && f.flags&flagStatus != 0 {
			delete(t.calls, f.id)
		}
		idle := len(t.calls) == 0 && t.goaway.Load()
		t.mu.Unlock()
		if r != nil {
			if err := r.deliver(t, f); err != nil {
				t.close(err)
				return err
			}
		}
		if idle {
			t.close(status.Error(codes.Unavailable, "rpc: server went away"))
		}
	case frameWindow:
		t.mu.Lock()
		r := t.calls[f.id]
		t.mu.Unlock()
		if cs, ok := r.(*cstream); ok {
			cs.out.add(int(f.credit))
		}
	case frameGoAway:
		t.goaway.Store(true)
		t.cc.forget(t, false)
		t.mu.Lock()
		idle := len(t.calls) == 0
		t.mu.Unlock()
		if idle {
			t.close(status.Error(codes.Unavailable, "rpc: server went away"))
		}
	default:
		err := protoErr(fmt.Errorf("frame type %d from the server", f.typ))
		t.close(err)
		return err
	}
	return nil
}

// statusOf decodes the status of a frame with flagStatus.
func statusOf(f *frame) *status.Status {
	if len(f.details) > 0 {
		var p statusProto
		if err := (protoCodec{}).Unmarshal(f.details, &p); err == nil {
			return status.FromProto(&p)
		}
	}
	return status.New(codes.Code(f.code), string(f.msg))
}

// callInfo is what a call's grpc.CallOptions ask for.
type callInfo struct {
	codec      encoding.Codec
	subtype    string
	maxRecv    int
	maxSend    int
	header     *metadata.MD
	trailer    *metadata.MD
	waitReady  bool
	onFinish   []func(error)
	peerAddr   bool
	unaryBytes bool
}

func (cc *ClientConn) callInfo(opts []grpc.CallOption) callInfo {
	ci := callInfo{codec: cc.opts.codec, maxRecv: cc.opts.maxRecv, maxSend: cc.opts.maxSend}
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			ci.header = o.HeaderAddr
		case grpc.TrailerCallOption:
			ci.trailer = o.TrailerAddr
		case grpc.FailFastCallOption:
			ci.waitReady = !o.FailFast
		case grpc.MaxRecvMsgSizeCallOption:
			ci.maxRecv = o.MaxRecvMsgSize
		case grpc.MaxSendMsgSizeCallOption:
			ci.maxSend = o.MaxSendMsgSize
		case grpc.ForceCodecCallOption:
			ci.codec = o.Codec
		case grpc.ForceCodecV2CallOption:
			ci.codec = codecV2{o.CodecV2}
		case grpc.ContentSubtypeCallOption:
			if c := codecByName(o.ContentSubtype); c != nil {
				ci.codec = c
			}
		case grpc.OnFinishCallOption:
			ci.onFinish = append(ci.onFinish, o.OnFinish)
		}
	}
	if _, ok := ci.codec.(protoCodec); !ok {
		ci.subtype = ci.codec.Name()
	}
	return ci
}

func (ci *callInfo) finish(err error) {
	for _, f := range ci.onFinish {
		f(err)
	}
}

// timeoutOf returns the nanoseconds left before ctx's deadline (0: none),
// or an error if it passed. The wire carries time left, not an instant:
// peers on TCP need not share a clock, and gRPC's grpc-timeout does the same.
func timeoutOf(ctx context.Context) (int64, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	d := time.Until(dl)
	if d <= 0 {
		return 0, status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
	}
	return int64(d), nil
}

// appendOutgoing appends the request head of a call.
func appendOutgoing(b []byte, ctx context.Context, method string, timeout int64, subtype string) []byte {
	md, _ := metadata.FromOutgoingContext(ctx)
	return appendHead(b, method, timeout, subtype, md)
}

// Invoke makes a unary call (grpc.ClientConnInterface). Its error is a
// gRPC status error.
func (cc *ClientConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if cc.unaryInt != nil {
		return cc.unaryInt(ctx, method, args, reply, nil, cc.invoker, opts...)
	}
	return cc.invoke(ctx, method, args, reply, opts...)
}

// invoker is invoke as a grpc.UnaryInvoker, for interceptors (which get
// a nil *grpc.ClientConn: this is not one).
func (cc *ClientConn) invoker(ctx context.Context, method string, args, reply any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
	return cc.invoke(ctx, method, args, reply, opts...)
}

func (cc *ClientConn) invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	ci := cc.callInfo(opts)
	err := cc.unary(ctx, &ci, method, args, reply)
	ci.finish(err)
	return err
}

func (cc *ClientConn) unary(ctx context.Context, ci *callInfo, method string, args, reply any) error {
	timeout, err := timeoutOf(ctx)
	if err != nil {
		return err
	}
	t, err := cc.transport(ctx, ci.waitReady)
	if err != nil {
		return err
	}
	w := waiterPool.Get().(*waiter)
	w.reply, w.codec, w.maxRecv = reply, ci.codec, ci.maxRecv
	id, err := t.register(w)
	if err != nil {
		w.release()
		return err
	}
	w.mu.Lock()
	w.t, w.id = t, id
	w.mu.Unlock()
	b := getBuf()
	*b = appendFrameHeader(*b, frameData, flagHead|flagEnd|flagMsg, id)
	*b = appendOutgoing(*b, ctx, method, timeout, ci.subtype)
	n := len(*b)
	*b, err = appendMarshal(ci.codec, *b, args)
	switch {
	case err != nil:
		err = status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
	case len(*b)-n > ci.maxSend:
		err = status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", len(*b)-n, ci.maxSend)
	default:
		if err = t.send(ctx, *b); err != nil {
			switch {
			case errors.Is(err, ipc.ErrMessageTooLarge):
				err = status.Errorf(codes.ResourceExhausted, "rpc: %v", err)
			case ctx.Err() != nil:
				err = status.FromContextError(ctx.Err()).Err()
			default:
				err = status.Errorf(codes.Unavailable, "rpc: %v", err)
			}
		}
	}
	putBuf(b)
	if err == nil && t.rmu.TryLock() {
		err = t.lead(ctx, w)
		t.rmu.Unlock()
		if t.needReader() {
			t.wakeReader()
		}
		if err == nil {
			<-w.ch
			return w.result(ci)
		}
		err = status.FromContextError(err).Err()
	} else if err == nil {
		select {
		case <-w.ch:
			return w.result(ci)
		case <-ctx.Done():
			err = status.FromContextError(ctx.Err()).Err()
		}
	}
	// Give up the call, unless the reader has taken it to deliver its end.
	if t.unregister(id, w) {
		if ctx.Err() != nil {
			t.sendControl(frameCancel, id, 0)
		}
		w.abandon()
		return err
	}
	<-w.ch
	return w.result(ci)
}

// statusProto is google.rpc.Status, the carrier of a status's details.
type statusProto = spb.Status

// waiter is a unary call waiting for its reply; pooled, so a call
// allocates little.
type waiter struct {
	ch   chan struct{} // gets one token when the call ended
	done atomic.Bool   // set just before the token is sent

	mu      sync.Mutex // guards everything below against a late reader
	t       *ctransport
	id      uint64
	reply   any
	codec   encoding.Codec
	maxRecv int
	err     error
	header  metadata.MD
	trailer metadata.MD
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan struct{}, 1)} }}

func (w *waiter) deliver(t *ctransport, f *frame) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.t != t || w.id != f.id {
		return nil // abandoned: this waiter serves another call now
	}
	if f.flags&flagHeader != 0 {
		w.header = f.md
	}
	if f.flags&flagMsg != 0 && w.reply != nil {
		if len(f.payload) > w.maxRecv {
			w.err = status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", len(f.payload), w.maxRecv)
		} else if err := w.codec.Unmarshal(f.payload, w.reply); err != nil {
			w.err = status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
		}
		w.reply = nil
	}
	if f.flags&flagStatus != 0 {
		w.trailer = f.trailer
		if w.err == nil && f.code != 0 {
			w.err = statusOf(f).Err()
		} else if w.err == nil && w.reply != nil {
			w.err = status.Error(codes.Internal, "rpc: unary reply without a message")
		}
		w.done.Store(true)
		w.ch <- struct{}{}
	}
	return nil
}

func (w *waiter) fail(t *ctransport, id uint64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.t != t || w.id != id {
		return
	}
	w.err = err
	w.done.Store(true)
	w.ch <- struct{}{}
}

// result returns the call's outcome and puts w back in the pool.
func (w *waiter) result(ci *callInfo) error {
	w.mu.Lock()
	err := w.err
	if ci.header != nil {
		*ci.header = w.header
	}
	if ci.trailer != nil {
		*ci.trailer = w.trailer
	}
	w.mu.Unlock()
	w.abandon()
	return err
}

// abandon detaches w from its call and pools it.
func (w *waiter) abandon() {
	w.mu.Lock()
	w.t, w.id, w.reply, w.codec, w.err, w.header, w.trailer = nil, 0, nil, nil, nil, nil, nil
	w.done.Store(false)
	w.mu.Unlock()
	w.release()
}

func (w *waiter) release() { waiterPool.Put(w) }

var _ grpc.ClientConnInterface = (*ClientConn)(nil)
