package rpc

import (
	"context"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// NewStream opens a stream (grpc.ClientConnInterface). The stream ends
// when the server's status arrives (RecvMsg returns io.EOF or the status
// error) or when ctx ends, which cancels it on the server too.
func (cc *ClientConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if cc.streamInt != nil {
		return cc.streamInt(ctx, desc, nil, method, cc.streamer, opts...)
	}
	return cc.newStream(ctx, desc, method, opts...)
}

func (cc *ClientConn) streamer(ctx context.Context, desc *grpc.StreamDesc, _ *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return cc.newStream(ctx, desc, method, opts...)
}

func (cc *ClientConn) newStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	ci := cc.callInfo(opts)
	timeout, err := timeoutOf(ctx)
	if err != nil {
		ci.finish(err)
		return nil, err
	}
	t, err := cc.transport(ctx, ci.waitReady)
	if err != nil {
		ci.finish(err)
		return nil, err
	}
	cs := &cstream{t: t, ctx: ctx, desc: desc, ci: ci, headerCh: make(chan struct{})}
	cs.in.init(cc.opts.window)
	cs.out.init(t.window)
	cs.mu.Lock() // no frame is delivered before the stream is set up
	defer cs.mu.Unlock()
	if cs.id, err = t.register(cs); err != nil {
		ci.finish(err)
		return nil, err
	}
	b := getBuf()
	defer putBuf(b)
	*b = appendFrameHeader(*b, frameData, flagHead, cs.id)
	*b = appendOutgoing(*b, ctx, method, timeout, ci.subtype)
	if err := t.send(ctx, *b); err != nil {
		t.unregister(cs.id, cs)
		if ctx.Err() != nil {
			err = status.FromContextError(ctx.Err()).Err()
		} else {
			err = status.Errorf(codes.Unavailable, "rpc: %v", err)
		}
		ci.finish(err)
		return nil, err
	}
	cs.stop = context.AfterFunc(ctx, cs.cancelled)
	t.wakeReader() // streams are read by the reader goroutine
	return cs, nil
}

// cstream is the client's side of a stream: a grpc.ClientStream.
type cstream struct {
	t    *ctransport
	id   uint64
	ctx  context.Context
	desc *grpc.StreamDesc
	ci   callInfo
	in   inbox  // messages from the server
	out  credit // messages the server lets us send
	stop func() bool

	mu       sync.Mutex
	headerCh chan struct{} // closed when the header (or the end) came
	header   metadata.MD
	trailer  metadata.MD
	st       *status.Status // the end: the server's status, or why the stream failed
	sentEnd  bool
	sendMu   sync.Mutex
}

func (cs *cstream) gotHeader(md metadata.MD) {
	select {
	case <-cs.headerCh:
	default:
		cs.header = md
		close(cs.headerCh)
	}
}

// end records the end of the stream once.
func (cs *cstream) end(st *status.Status, trailer metadata.MD) {
	if cs.st != nil {
		return
	}
	cs.st, cs.trailer = st, trailer
	cs.gotHeader(nil)
	if cs.ci.header != nil {
		*cs.ci.header = cs.header
	}
	if cs.ci.trailer != nil {
		*cs.ci.trailer = trailer
	}
	if cs.stop != nil {
		cs.stop()
	}
	var err error
	if st.Code() != codes.OK {
		err = st.Err()
	}
	cs.ci.finish(err)
}

func (cs *cstream) deliver(t *ctransport, f *frame) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.st != nil {
		return nil
	}
	if f.flags&flagHeader != 0 {
		cs.gotHeader(f.md)
	}
	if f.flags&flagMsg != 0 {
		if len(f.payload) > cs.ci.maxRecv {
			st := status.Newf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", len(f.payload), cs.ci.maxRecv)
			if f.flags&flagStatus == 0 && t.unregister(f.id, cs) {
				go t.sendControl(frameCancel, f.id, 0)
			}
			cs.end(st, nil)
			cs.in.fail(st.Err())
			cs.out.fail(io.EOF)
			return nil
		}
		if !cs.in.push(append([]byte(nil), f.payload...)) {
			return protoErr(errWindow)
		}
	}
	if f.flags&flagStatus != 0 {
		cs.end(statusOf(f), f.trailer)
		cs.in.close()
		cs.out.fail(io.EOF)
	}
	return nil
}

func (cs *cstream) fail(t *ctransport, id uint64, err error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.st != nil {
		return
	}
	st, _ := status.FromError(err)
	cs.end(st, nil)
	cs.in.fail(err)
	cs.out.fail(err)
}

// cancelled runs when the stream's context ends first: it cancels the
// stream on the server.
func (cs *cstream) cancelled() {
	if cs.t.unregister(cs.id, cs) {
		cs.t.sendControl(frameCancel, cs.id, 0)
	}
	cs.fail(cs.t, cs.id, status.FromContextError(cs.ctx.Err()).Err())
}

func (cs *cstream) Header() (metadata.MD, error) {
	select {
	case <-cs.headerCh:
	case <-cs.ctx.Done():
		return nil, status.FromContextError(cs.ctx.Err()).Err()
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.header == nil && cs.st != nil && cs.st.Code() != codes.OK {
		return nil, cs.st.Err()
	}
	return cs.header, nil
}

func (cs *cstream) Trailer() metadata.MD {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.trailer
}

func (cs *cstream) Context() context.Context { return cs.ctx }

func (cs *cstream) CloseSend() error {
	cs.sendMu.Lock()
	defer cs.sendMu.Unlock()
	if cs.sentEnd {
		return nil
	}
	cs.sentEnd = true
	b := getBuf()
	defer putBuf(b)
	*b = appendFrameHeader(*b, frameData, flagEnd, cs.id)
	_ = cs.t.send(cs.ctx, *b) // as grpc: the outcome shows in RecvMsg
	return nil
}

// SendMsg sends m. After the stream ended it returns io.EOF; RecvMsg
// then returns the stream's status.
func (cs *cstream) SendMsg(m any) error {
	cs.sendMu.Lock()
	defer cs.sendMu.Unlock()
	if cs.sentEnd {
		return status.Error(codes.Internal, "SendMsg called after CloseSend")
	}
	if err := cs.out.take(cs.ctx); err != nil {
		return io.EOF
	}
	b := getBuf()
	defer putBuf(b)
	*b = appendFrameHeader(*b, frameData, flagMsg, cs.id)
	n := len(*b)
	var err error
	if *b, err = appendMarshal(cs.ci.codec, *b, m); err != nil {
		return status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
	}
	if len(*b)-n > cs.ci.maxSend {
		return status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", len(*b)-n, cs.ci.maxSend)
	}
	if err := cs.t.send(cs.ctx, *b); err != nil {
		return io.EOF
	}
	return nil
}

func (cs *cstream) RecvMsg(m any) error {
	err := cs.recv(m)
	if err != nil || cs.desc.ServerStreams {
		return err
	}
	// One response only: what follows must be the end, with its status.
	switch err := cs.recv(m); err {
	case io.EOF:
		return nil
	case nil:
		return status.Error(codes.Internal, "cardinality violation: expected <EOF> for non server-streaming RPCs, but received another message")
	default:
		return err
	}
}

func (cs *cstream) recv(m any) error {
	msg, grant, err := cs.in.pop(context.Background()) // the context's end fails the inbox
	if grant > 0 {
		cs.t.sendControl(frameWindow, cs.id, grant)
	}
	if err == io.EOF {
		cs.mu.Lock()
		st := cs.st
		cs.mu.Unlock()
		if st.Code() != codes.OK {
			return st.Err()
		}
		return io.EOF
	}
	if err != nil {
		return err
	}
	if err := cs.ci.codec.Unmarshal(msg, m); err != nil {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return nil
}

var _ grpc.ClientStream = (*cstream)(nil)
