package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	netrpc "net/rpc"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/rpc"
)

// The roles of the two processes of an rpc measurement.
const (
	rpcDriverRole = "rpc-driver"
	rpcServerRole = "rpc-server"
)

// allocWindow is how long the calls last whose allocations are counted, at
// most.
const allocWindow = 100 * time.Millisecond

// streamStart is the one-byte message that turns an ipc.Conn of a conn-*
// server into a stream of size-byte messages.
const streamStart = 'S'

// rpcAddr returns the address the server of system listens at, under dir.
func rpcAddr(system, dir string, seq int) string {
	path := filepath.Join(dir, fmt.Sprintf("%s-%d", system, seq))
	switch system {
	case ConnShm, RPCShm, GRPCShm:
		return ipc.SHM + "://" + path
	case ConnUnix, RPCUnix:
		return ipc.Unix + "://" + path
	}
	return path // a plain Unix socket path (grpc-unix, netrpc-unix)
}

// bodyFor returns the length of the payload body that makes msg(body)
// marshal to size bytes (or just under, where no length gives exactly
// size).
func bodyFor(size int, msg func(body []byte) proto.Message) int {
	for n := size; n > 0; n-- {
		if proto.Size(msg(make([]byte, n))) <= size {
			return n
		}
	}
	return 0
}

func benchRequest(size int) *testpb.SimpleRequest {
	wrap := func(b []byte) proto.Message { return &testpb.SimpleRequest{Payload: &testpb.Payload{Body: b}} }
	body := make([]byte, bodyFor(size, wrap))
	for i := range body {
		body[i] = byte(i)
	}
	return &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}}
}

func benchStreamReply(size int) *testpb.StreamingOutputCallResponse {
	wrap := func(b []byte) proto.Message {
		return &testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: b}}
	}
	return &testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, bodyFor(size, wrap))}}
}

// benchService is the TestService of the rpc and grpc-go servers: UnaryCall
// echoes the request's payload, StreamingOutputCall sends one reply after
// another until the caller ends the stream.
type benchService struct {
	testpb.UnimplementedTestServiceServer
	reply *testpb.StreamingOutputCallResponse
}

func (benchService) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: in.Payload}, nil
}

func (s benchService) StreamingOutputCall(_ *testpb.StreamingOutputCallRequest, st testpb.TestService_StreamingOutputCallServer) error {
	for st.Context().Err() == nil {
		if err := st.Send(s.reply); err != nil {
			return err
		}
	}
	return nil
}

// netrpcEcho is the net/rpc service: the same protobuf messages, carried
// as bytes by gob.
type netrpcEcho struct{}

// Unary unmarshals a SimpleRequest and answers with its payload.
func (netrpcEcho) Unary(args []byte, reply *[]byte) error {
	var req testpb.SimpleRequest
	if err := proto.Unmarshal(args, &req); err != nil {
		return err
	}
	b, err := proto.Marshal(&testpb.SimpleResponse{Payload: req.Payload})
	*reply = b
	return err
}

// rpcServerMain serves a.transport (a system) at a.addr, says "ready" on
// stdout, and stops when its stdin ends (the driver closes it).
func rpcServerMain(a peerArgs, stdout io.Writer) error {
	stop, err := serveRPC(a.transport, a.addr, a.size)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	stop()
	return nil
}

// serveRPC starts the server of system at addr, for payloads of size
// bytes, and returns the function that stops it.
func serveRPC(system, addr string, size int) (stop func(), err error) {
	reply := benchStreamReply(size)
	switch system {
	case ConnShm, ConnUnix, RPCShm, RPCUnix, GRPCShm:
		l, err := ipc.Listen(addr, benchConfig(size))
		if err != nil {
			return nil, err
		}
		switch system {
		case ConnShm, ConnUnix:
			done := make(chan struct{})
			go func() { defer close(done); connServe(l, size) }()
			return func() { _ = l.Close(); <-done }, nil
		case GRPCShm:
			return serveGRPC(l, reply), nil
		}
		srv := rpc.NewServer()
		testpb.RegisterTestServiceServer(srv, benchService{reply: reply})
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(l) }()
		return func() { _ = srv.Close(); <-done }, nil
	case GRPCUnix, NetRPCUnix:
		l, err := net.Listen("unix", addr)
		if err != nil {
			return nil, err
		}
		if system == GRPCUnix {
			return serveGRPC(l, reply), nil
		}
		srv := netrpc.NewServer()
		if err := srv.RegisterName("Echo", netrpcEcho{}); err != nil {
			l.Close()
			return nil, err
		}
		done := make(chan struct{})
		go func() { // srv.Accept would log the end of l
			defer close(done)
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go srv.ServeConn(c)
			}
		}()
		return func() { _ = l.Close(); <-done }, nil
	}
	return nil, fmt.Errorf("unknown system %q", system)
}

// serveGRPC serves the benchService on l with grpc-go.
func serveGRPC(l net.Listener, reply *testpb.StreamingOutputCallResponse) (stop func()) {
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, benchService{reply: reply})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	return func() { srv.Stop(); <-done }
}

// connServe echoes every message of every connection of l; a connection
// whose first message is streamStart gets size-byte messages instead, as
// fast as it takes them, until it goes away.
func connServe(l *ipc.Listener, size int) {
	ctx := context.Background()
	for {
		c, err := l.AcceptConn(ctx)
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 0, size)
			m, err := c.Recv(ctx, buf)
			if err != nil {
				return
			}
			if len(m) == 1 && m[0] == streamStart {
				out := make([]byte, size)
				for c.Send(ctx, out) == nil {
				}
				return
			}
			for c.Send(ctx, m) == nil {
				if m, err = c.Recv(ctx, m[:0]); err != nil {
					return
				}
			}
		}()
	}
}

// rpcClient is the calling end of a system.
type rpcClient interface {
	// call makes one unary call; it may be called from many goroutines at
	// once (but for the conn-* systems).
	call(ctx context.Context) error
	// stream opens a server stream and counts the messages received
	// during ph (see countMessages).
	stream(ctx context.Context, ph phase) (int64, time.Duration, error)
	close()
}

func dialRPC(ctx context.Context, system, addr string, size int) (rpcClient, error) {
	cfg := benchConfig(size)
	switch system {
	case ConnShm, ConnUnix:
		c, err := ipc.Dial(ctx, addr, cfg)
		if err != nil {
			return nil, err
		}
		return &connClient{addr: addr, cfg: cfg, c: c, msg: make([]byte, size), buf: make([]byte, 0, size)}, nil
	case RPCShm, RPCUnix:
		cc, err := rpc.Dial(ctx, addr, rpc.WithDialConfig(cfg))
		if err != nil {
			return nil, err
		}
		return newPBClient(cc, cc, size), nil
	case GRPCShm, GRPCUnix:
		target := "unix://" + addr
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if system == GRPCShm {
			target = "passthrough:///" + addr
			opts = append(opts, grpc.WithContextDialer(rpc.ContextDialer(cfg)))
		}
		cc, err := grpc.NewClient(target, opts...)
		if err != nil {
			return nil, err
		}
		return newPBClient(cc, cc, size), nil
	case NetRPCUnix:
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", addr)
		if err != nil {
			return nil, err
		}
		return &netrpcClient{c: netrpc.NewClient(c), req: benchRequest(size)}, nil
	}
	return nil, fmt.Errorf("unknown system %q", system)
}

// connClient is the raw ipc.Conn baseline: the payload's bytes each way.
type connClient struct {
	addr     string
	cfg      *ipc.Config
	c        ipc.Conn
	msg, buf []byte
}

func (c *connClient) call(ctx context.Context) error {
	if err := c.c.Send(ctx, c.msg); err != nil {
		return err
	}
	var err error
	if c.buf, err = c.c.Recv(ctx, c.buf[:0]); err != nil {
		return err
	}
	if len(c.buf) != len(c.msg) {
		return fmt.Errorf("echo of %d bytes, want %d", len(c.buf), len(c.msg))
	}
	return nil
}

func (c *connClient) stream(ctx context.Context, ph phase) (int64, time.Duration, error) {
	sc, err := ipc.Dial(ctx, c.addr, c.cfg)
	if err != nil {
		return 0, 0, err
	}
	defer sc.Close()
	if err := sc.Send(ctx, []byte{streamStart}); err != nil {
		return 0, 0, err
	}
	buf := make([]byte, 0, len(c.msg))
	return countMessages(func() error {
		var err error
		buf, err = sc.Recv(ctx, buf[:0])
		if err == nil && len(buf) != len(c.msg) {
			err = fmt.Errorf("stream message of %d bytes, want %d", len(buf), len(c.msg))
		}
		return err
	}, ph)
}

func (c *connClient) close() { _ = c.c.Close() }

// pbClient calls the TestService of an rpc or grpc-go server.
type pbClient struct {
	c      testpb.TestServiceClient
	closer io.Closer
	req    *testpb.SimpleRequest
}

func newPBClient(cc grpc.ClientConnInterface, closer io.Closer, size int) *pbClient {
	return &pbClient{c: testpb.NewTestServiceClient(cc), closer: closer, req: benchRequest(size)}
}

func (c *pbClient) call(ctx context.Context) error {
	resp, err := c.c.UnaryCall(ctx, c.req)
	if err != nil {
		return err
	}
	if got, want := len(resp.GetPayload().GetBody()), len(c.req.Payload.Body); got != want {
		return fmt.Errorf("reply payload of %d bytes, want %d", got, want)
	}
	return nil
}

func (c *pbClient) stream(ctx context.Context, ph phase) (int64, time.Duration, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.c.StreamingOutputCall(sctx, &testpb.StreamingOutputCallRequest{})
	if err != nil {
		return 0, 0, err
	}
	return countMessages(func() error {
		_, err := st.Recv()
		return err
	}, ph)
}

func (c *pbClient) close() { _ = c.closer.Close() }

// netrpcClient calls the net/rpc server with the marshalled request.
type netrpcClient struct {
	c   *netrpc.Client
	req *testpb.SimpleRequest
}

func (c *netrpcClient) call(context.Context) error {
	b, err := proto.Marshal(c.req)
	if err != nil {
		return err
	}
	var reply []byte
	if err := c.c.Call("Echo.Unary", b, &reply); err != nil {
		return err
	}
	var resp testpb.SimpleResponse
	if err := proto.Unmarshal(reply, &resp); err != nil {
		return err
	}
	if got, want := len(resp.GetPayload().GetBody()), len(c.req.Payload.Body); got != want {
		return fmt.Errorf("reply payload of %d bytes, want %d", got, want)
	}
	return nil
}

func (c *netrpcClient) stream(context.Context, phase) (int64, time.Duration, error) {
	return 0, 0, fmt.Errorf("%w: net/rpc has no streams", errSkip)
}

func (c *netrpcClient) close() { _ = c.c.Close() }

// measureUnary has callers goroutines call cl one call after another: for
// warm, then for dur. Each call that starts after the warm-up is timed,
// and each caller goes on until it has timed one call at least and one has
// ended after dur; calls/s counts the timed calls over the time from the
// end of the warm-up to the end of the last of them.
func measureUnary(ctx context.Context, cl rpcClient, callers int, warm, dur time.Duration) (*hdrhistogram.Histogram, time.Duration, error) {
	from := time.Now().Add(warm)
	end := from.Add(dur)
	callCtx := callContext()
	hs := make([]*hdrhistogram.Histogram, callers)
	last := make([]time.Time, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		hs[i] = hdrhistogram.New(1, int64(time.Minute), 3)
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := cl.call(callCtx); err != nil {
					errs[i] = err
					return
				}
				t1 := time.Now()
				if !t0.Before(from) {
					_ = hs[i].RecordValue(int64(t1.Sub(t0)))
					last[i] = t1
				}
				if t1.After(end) && hs[i].TotalCount() > 0 {
					return
				}
			}
			errs[i] = ctx.Err()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	for i, h := range hs[1:] {
		hs[0].Merge(h)
		if last[i+1].After(last[0]) {
			last[0] = last[i+1]
		}
	}
	return hs[0], last[0].Sub(from), nil
}

// callContext returns the context of the timed calls: Background, as in
// go test benchmarks, since a cancellable context costs the waits of a unix
// ipc.Conn about 10 allocations per round trip (measured here), a cost of
// the transport's cancellation, not of the call. The loops check their
// cancellable context between calls, and the process's time limit bounds a
// call that never ends.
func callContext() context.Context { return context.Background() }

// clientAllocs returns the heap allocations of this process per call of
// cl, over calls made one after another for d.
func clientAllocs(ctx context.Context, cl rpcClient, d time.Duration) (float64, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var n int
	callCtx := callContext()
	for start := time.Now(); n == 0 || time.Since(start) < d; n++ {
		if err := cl.call(callCtx); err != nil {
			return 0, err
		}
	}
	runtime.ReadMemStats(&after)
	return round3(float64(after.Mallocs-before.Mallocs) / float64(n)), nil
}

// rpcDriverMain is the body of an rpc driver process: it starts the server
// of a.transport, measures its unary calls with each number of callers and
// its server stream, and prints the results as a JSON array on stdout.
func rpcDriverMain(a peerArgs, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	progress := func(p string) { fmt.Fprintf(stderr, "%s%s\n", phasePrefix, p) }
	var callers []int
	for _, f := range strings.Split(a.callers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > MaxCallers {
			fmt.Fprintf(stderr, "%s: bad --callers %q\n", PeerCommand, a.callers)
			return 2
		}
		callers = append(callers, n)
	}
	results := expected(a.transport, a.size, callers)
	fail := func(err error) {
		for i := range results {
			if results[i].OK() && results[i].P50 == 0 && results[i].MsgsPerS == 0 {
				results[i].Error = err.Error()
			}
		}
	}
	if err := rpcMeasure(ctx, a, results, progress); err != nil {
		fail(err)
	}
	if err := json.NewEncoder(stdout).Encode(results); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", PeerCommand, err)
		return 1
	}
	if ctx.Err() != nil {
		return 1
	}
	return 0
}

// rpcMeasure starts the server, fills results and stops the server.
func rpcMeasure(ctx context.Context, a peerArgs, results []RPCResult, progress func(string)) (err error) {
	addr := rpcAddr(a.transport, a.dir, a.seq)
	srv, err := startRPCServer(ctx, a, addr)
	if err != nil {
		return err
	}
	defer func() {
		if serr := srv.stop(); err == nil && serr != nil {
			err = serr
		}
	}()
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	cl, err := dialRPC(dctx, a.transport, addr, a.size)
	cancel()
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer cl.close()
	if err := cl.call(ctx); err != nil { // grpc-go connects at the first call: not within the timing
		return fmt.Errorf("first call: %w%s", err, srv.output())
	}
	warm, dur := warmup(a.duration), a.duration
	for i := range results {
		r := &results[i]
		progress(r.label() + "...")
		if r.Kind == KindStream {
			n, took, err := cl.stream(ctx, phase{warm: warm, dur: dur})
			switch {
			case isSkip(err):
				r.Skipped = skipReason(err)
			case err != nil:
				r.Error = fmt.Sprintf("stream: %v%s", err, srv.output())
			case n == 0 || took <= 0:
				r.Error = "stream: no message received"
			default:
				r.Messages, r.MsgsPerS = n, roundSig(float64(n)/took.Seconds())
			}
			continue
		}
		h, took, err := measureUnary(ctx, cl, r.Callers, warm, dur)
		if err != nil {
			return fmt.Errorf("%s: %w%s", r.label(), err, srv.output())
		}
		r.P50, r.P99 = h.ValueAtQuantile(50), h.ValueAtQuantile(99)
		r.Calls = h.TotalCount()
		r.CallsPerS = roundSig(float64(r.Calls) / took.Seconds())
		if r.Callers == 1 {
			if r.ClientAllocs, err = clientAllocs(ctx, cl, min(dur, allocWindow)); err != nil {
				return fmt.Errorf("allocations: %w%s", err, srv.output())
			}
		}
	}
	return nil
}

// rpcServer is the server process of a driver.
type rpcServer struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	out    *capWriter
	exited chan struct{}
}

// startRPCServer starts the server process and waits for its "ready".
func startRPCServer(ctx context.Context, a peerArgs, addr string) (*rpcServer, error) {
	args := []string{"--role", rpcServerRole, "--transport", a.transport, "--size", strconv.Itoa(a.size),
		"--addr", addr, "--limit", a.limit.String()}
	if a.peerCPU >= 0 {
		args = append(args, "--cpu", strconv.Itoa(a.peerCPU))
	}
	cmd, err := selfCommand(args...)
	if err != nil {
		return nil, err
	}
	s := &rpcServer{cmd: cmd, out: &capWriter{max: 4 << 10}, exited: make(chan struct{})}
	cmd.Stderr = s.out
	cmd.SysProcAttr = peerAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	ready := make(chan bool, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		ready <- sc.Scan() && sc.Text() == "ready"
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		<-readDone // Wait closes stdout: not before it has been read to its end
		_ = cmd.Wait()
		close(s.exited)
	}()
	t := time.NewTimer(connectTimeout)
	defer t.Stop()
	select {
	case ok := <-ready:
		if ok {
			return s, nil
		}
	case <-t.C:
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	<-s.exited
	return nil, fmt.Errorf("server did not start%s", s.output())
}

// output returns what the server wrote to stderr, if anything, as "; server: ...".
func (s *rpcServer) output() string {
	if o := strings.TrimSpace(s.out.String()); o != "" {
		return "; server: " + o
	}
	return ""
}

// stop ends the server's stdin, which makes it stop, and waits for it to
// exit (killing it after 5 s).
func (s *rpcServer) stop() error {
	_ = s.stdin.Close()
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("server did not stop when told to%s", s.output())
	}
	if !s.cmd.ProcessState.Success() {
		return fmt.Errorf("server: %v%s", s.cmd.ProcessState, s.output())
	}
	return nil
}
