package ipc_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
)

func init() {
	addPeers(ipctest.Peers{"http-server": peerHTTPServer})
}

// TestStreamNettest runs x/net/nettest's net.Conn conformance tests over the
// stream view of an in-memory message pair and of every transport that can
// listen and dial inside one process.
func TestStreamNettest(t *testing.T) {
	t.Run("mem", func(t *testing.T) {
		nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
			a, b := memPair(1 << 20)
			s1 := ipc.NewStream(a, memAddr("a"), memAddr("b"))
			s2 := ipc.NewStream(b, memAddr("b"), memAddr("a"))
			return s1, s2, func() { s1.Close(); s2.Close() }, nil
		})
	})
	for _, tp := range transports {
		t.Run(tp.name, func(t *testing.T) {
			tp.need(t)
			if tp.pipe {
				t.Skip("pipe: connects a parent and its child only")
			}
			if tp.name == tcpTLS {
				t.Skip("crypto/tls: a Write that times out leaves the TLS state corrupt, " +
					"and nettest's FutureTimeout writes after one")
			}
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				return tp.streamPair(t)
			})
		})
	}
}

// TestStreamHTTP serves HTTP on an ipc.Listener and talks to it with an
// http.Client whose Transport dials with ipc.DialStream, over every
// transport that can listen and dial: net/http relies on the stream view's
// deadlines (its server interrupts a blocked background read with a past
// read deadline after each request).
func TestStreamHTTP(t *testing.T) {
	for _, tp := range transports {
		t.Run(tp.name, func(t *testing.T) {
			tp.need(t)
			if tp.pipe {
				t.Skip("pipe: connects a parent and its child only, no listener")
			}
			cfg := tp.config(0)
			addr := tp.addr(t)
			l, err := ipc.Listen(addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: httpHandler(), ReadHeaderTimeout: 5 * time.Second}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(l) }()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := srv.Shutdown(ctx); err != nil {
					t.Errorf("shutdown: %v", err)
				}
				if err := <-served; !errors.Is(err, http.ErrServerClosed) {
					t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
				}
			})
			httpClientChecks(t, addr, cfg)
		})
	}
	// The server in another process, over a Unix socket.
	t.Run("unix/process", func(t *testing.T) {
		tp := transportByName(ipc.Unix)
		tp.need(t)
		addr := tp.addr(t)
		p := ipctest.StartPeer(t, "http-server", addr)
		p.Expect(t, "serving", peerTimeout)
		httpClientChecks(t, addr, nil)
	})
}

// httpHandler answers GET /hello with "hello <method>" and echoes the body
// of POST /echo with its SHA-256 in a header.
func httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.Method)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sum := sha256.Sum256(b)
		w.Header().Set("X-Sum", fmt.Sprintf("%x", sum))
		w.Write(b)
	})
	return mux
}

// httpClientChecks makes requests to the server at addr: small and large
// bodies, on one kept-alive connection and on several at once.
func httpClientChecks(t *testing.T, addr string, cfg *ipc.Config) {
	t.Helper()
	var dials sync.Map
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := ipc.DialStream(ctx, addr, cfg)
			if err == nil {
				dials.Store(c, true)
			}
			return c, err
		},
		MaxIdleConnsPerHost: 4,
	}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 15 * time.Second}

	for i := range 3 {
		resp, err := client.Get("http://ipc/hello")
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(b) != "hello GET" {
			t.Fatalf("GET %d: status %d body %q err %v", i, resp.StatusCode, b, err)
		}
	}
	for _, size := range []int{0, 1, 100 << 10, 3<<20 + 7} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(i*7 + size)
		}
		resp, err := client.Post("http://ipc/echo", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("POST %d bytes: %v", size, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("POST %d bytes: read: %v", size, err)
		}
		if !bytes.Equal(got, body) || resp.Header.Get("X-Sum") != fmt.Sprintf("%x", sha256.Sum256(body)) {
			t.Fatalf("POST %d bytes: got %d bytes back, equal %t", size, len(got), bytes.Equal(got, body))
		}
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			body := strings.Repeat(fmt.Sprint(i), 200<<10)
			resp, err := client.Post("http://ipc/echo", "text/plain", strings.NewReader(body))
			if err != nil {
				t.Errorf("concurrent POST %d: %v", i, err)
				return
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(got) != body {
				t.Errorf("concurrent POST %d: %d bytes back, err %v", i, len(got), err)
			}
		})
	}
	wg.Wait()
	n := 0
	dials.Range(func(_, _ any) bool { n++; return true })
	if n == 0 {
		t.Fatal("the client never dialled through ipc.DialStream")
	}
	t.Logf("%d connections dialled", n)
}

// peerHTTPServer serves httpHandler at address args[0], says "serving" and
// serves until it is killed.
func peerHTTPServer(args []string) int {
	l, err := ipc.Listen(args[0], nil)
	if err != nil {
		return ipctest.Fail("listen: %v", err)
	}
	fmt.Println("serving")
	srv := &http.Server{Handler: httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	return ipctest.Fail("serve: %v", srv.Serve(l))
}

// TestStreamBoundaries checks that a stream's Read ignores message
// boundaries: it splits messages over small buffers and skips empty ones.
func TestStreamBoundaries(t *testing.T) {
	a, b := memPair(1 << 20)
	s := ipc.NewStream(b, memAddr("b"), memAddr("a"))
	defer s.Close()
	defer a.Close()
	ctx := context.Background()
	for _, m := range []string{"hel", "", "lo, ", "", "", "world"} {
		if err := a.Send(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	var got []string
	buf := make([]byte, 2)
	for {
		n, err := s.Read(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if n == 0 {
			t.Fatal("Read returned 0 bytes and no error")
		}
		got = append(got, string(buf[:n]))
	}
	want := []string{"he", "l", "lo", ", ", "wo", "rl", "d"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reads %q, want %q", got, want)
	}
	if n, err := s.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF: %d, %v; want 0, io.EOF", n, err)
	}
}

// TestStreamChunks checks that Write splits its bytes into messages of at
// most 64 KiB, and smaller when the Conn refuses that size.
func TestStreamChunks(t *testing.T) {
	for _, limit := range []int{1 << 20, 1000, 1} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			a, b := memPair(limit)
			defer b.Close()
			s := ipc.NewStream(a, memAddr("a"), memAddr("b"))
			defer s.Close()
			data := make([]byte, 200<<10+3)
			if limit == 1 {
				data = data[:3000]
			}
			for i := range data {
				data[i] = byte(i % 251)
			}
			done := make(chan error, 1)
			go func() {
				n, err := s.Write(data)
				if err == nil && n != len(data) {
					err = fmt.Errorf("wrote %d of %d", n, len(data))
				}
				done <- err
			}()
			var got []byte
			largest := 0
			for len(got) < len(data) {
				m, err := b.Recv(context.Background(), nil)
				if err != nil {
					t.Fatal(err)
				}
				largest = max(largest, len(m))
				got = append(got, m...)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("bytes differ")
			}
			if largest > min(limit, 64<<10) {
				t.Fatalf("largest message %d bytes, limit %d", largest, min(limit, 64<<10))
			}
			t.Logf("largest message %d bytes", largest)
		})
	}
}

// TestStreamDeadlines checks the stream's own deadline logic: a deadline
// moved while a Read or Write is blocked applies to it, the two directions
// are independent, and a cleared deadline makes the stream usable again.
func TestStreamDeadlines(t *testing.T) {
	a, b := memPair(1 << 20)
	defer b.Close()
	s := ipc.NewStream(a, memAddr("a"), memAddr("b"))
	defer s.Close()

	// A blocked Read, then a deadline 50 ms ahead.
	errc := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	select {
	case err := <-errc:
		wantTimeout(t, err)
		if d := time.Since(start); d < 40*time.Millisecond {
			t.Fatalf("Read timed out after %v, before its deadline", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline set while Read was blocked did not interrupt it")
	}

	// A blocked Read, then the deadline moved further, then cleared: it
	// must still be waiting, and get the message sent later.
	s.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	go func() {
		b := make([]byte, 10)
		n, err := s.Read(b)
		if err == nil && string(b[:n]) != "late" {
			err = fmt.Errorf("read %q", b[:n])
		}
		errc <- err
	}()
	s.SetReadDeadline(time.Now().Add(time.Hour))
	s.SetReadDeadline(time.Time{})
	time.Sleep(400 * time.Millisecond)
	select {
	case err := <-errc:
		t.Fatalf("Read returned %v after its deadline was cleared", err)
	default:
	}
	// The write side has no deadline: Write works while reads time out.
	s.SetWriteDeadline(time.Time{})
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Recv(context.Background(), nil); err != nil || string(m) != "x" {
		t.Fatalf("Recv %q %v", m, err)
	}
	b.Send(context.Background(), []byte("late"))
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	// A past write deadline fails Write at once and sends nothing; a past
	// read deadline fails Read even with bytes buffered.
	s.SetWriteDeadline(time.Unix(1, 0))
	if n, err := s.Write([]byte("never")); n != 0 {
		t.Fatalf("Write with a past deadline wrote %d bytes", n)
	} else {
		wantTimeout(t, err)
	}
	s.SetWriteDeadline(time.Time{})
	if _, err := s.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Recv(context.Background(), nil); err != nil || string(m) != "y" {
		t.Fatalf("after a write timeout: Recv %q %v, want \"y\"", m, err)
	}

	// Close while a Read and a Write wait: both return net.ErrClosed.
	s.SetDeadline(time.Time{})
	werr := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			_, err = s.Write(make([]byte, 1<<10)) // b never reads: fills the queue
		}
		werr <- err
	}()
	go func() {
		_, err := s.Read(make([]byte, 1))
		errc <- err
	}()
	time.Sleep(30 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []chan error{errc, werr} {
		select {
		case err := <-c:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("blocked call returned %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not interrupt a blocked call")
		}
	}
	if err := s.SetDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("SetDeadline after Close: %v", err)
	}
	if _, err := s.Write(nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := s.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

// TestDialStream checks DialStream's addresses and its errors.
func TestDialStream(t *testing.T) {
	tp := transportByName(ipc.Unix)
	tp.need(t)
	addr := tp.addr(t)
	l, err := ipc.Listen(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := ipc.DialStream(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if c.RemoteAddr().String() != addr || c.RemoteAddr().Network() != "unix" {
		t.Fatalf("RemoteAddr %v (%s), want %s", c.RemoteAddr(), c.RemoteAddr().Network(), addr)
	}
	if sc.LocalAddr().String() != addr || l.Addr().String() != addr {
		t.Fatalf("server LocalAddr %v, listener Addr %v, want %s", sc.LocalAddr(), l.Addr(), addr)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(sc, b); err != nil || string(b) != "ping" {
		t.Fatalf("read %q %v", b, err)
	}
	c.Close()
	if _, err := sc.Read(b); err != io.EOF {
		t.Fatalf("Read after the peer closed: %v, want io.EOF", err)
	}

	_, err = ipc.DialStream(context.Background(), "unix:///nonexistent/dir/sock", nil)
	var oe *ipc.OpError
	if !errors.As(err, &oe) || oe.Op != "dial" || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dialling nothing: %v, want an *OpError dial wrapping os.ErrNotExist", err)
	}
	if _, err := ipc.DialStream(context.Background(), "bogus", nil); !errors.Is(err, ipc.ErrBadAddress) {
		t.Fatalf("bad address: %v", err)
	}
}

// wantTimeout fails t unless err is a deadline error as net.Conn gives it.
func wantTimeout(t *testing.T, err error) {
	t.Helper()
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, ipc.ErrTimeout) ||
		!errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("got %v (%T), want a timeout (os.ErrDeadlineExceeded, net.Error.Timeout)", err, err)
	}
	var oe *ipc.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("timeout %v is not an *ipc.OpError", err)
	}
}

// memAddr is the address of an in-memory conn.
type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

// memPair returns two connected in-memory message conns: each direction a
// queue of 16 messages of at most max bytes. It stands in for a transport
// in the tests of the stream view.
func memPair(max int) (ipc.Conn, ipc.Conn) {
	ab, ba := make(chan []byte, 16), make(chan []byte, 16)
	a := &memConn{in: ba, out: ab, max: max, done: make(chan struct{})}
	b := &memConn{in: ab, out: ba, max: max, done: make(chan struct{})}
	a.peer, b.peer = b, a
	return a, b
}

type memConn struct {
	in, out  chan []byte
	max      int
	peer     *memConn
	done     chan struct{}
	once     sync.Once
	mu       sync.Mutex
	deadline time.Time
}

func (c *memConn) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	c.mu.Lock()
	d := c.deadline
	c.mu.Unlock()
	if d.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, d)
}

func (c *memConn) fail(op string, ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = ipc.ErrTimeout
	}
	return &ipc.OpError{Op: op, Addr: "mem", Err: err}
}

func (c *memConn) Send(ctx context.Context, msg []byte) error {
	if len(msg) > c.max {
		return c.fail("send", ctx, fmt.Errorf("%w: %d bytes", ipc.ErrMessageTooLarge, len(msg)))
	}
	select {
	case <-c.done:
		return c.fail("send", ctx, net.ErrClosed)
	case <-c.peer.done:
		return c.fail("send", ctx, io.EOF)
	default:
	}
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	select {
	case c.out <- bytes.Clone(msg):
		return nil
	case <-c.done:
		return c.fail("send", ctx, net.ErrClosed)
	case <-c.peer.done:
		return c.fail("send", ctx, io.EOF)
	case <-cctx.Done():
		return c.fail("send", ctx, cctx.Err())
	}
}

func (c *memConn) Recv(ctx context.Context, buf []byte) ([]byte, error) {
	select {
	case <-c.done:
		return buf[:0], c.fail("recv", ctx, net.ErrClosed)
	default:
	}
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	select {
	case m := <-c.in:
		return append(buf[:0], m...), nil
	case <-c.done:
		return buf[:0], c.fail("recv", ctx, net.ErrClosed)
	case <-cctx.Done():
		return buf[:0], c.fail("recv", ctx, cctx.Err())
	case <-c.peer.done:
		select { // the peer's last messages come first
		case m := <-c.in:
			return append(buf[:0], m...), nil
		default:
			return buf[:0], c.fail("recv", ctx, io.EOF)
		}
	}
}

func (c *memConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

func (c *memConn) Close() error {
	err := c.fail("close", context.Background(), net.ErrClosed)
	c.once.Do(func() { close(c.done); err = nil })
	return err
}

// streamPair returns the stream views of both ends of a fresh connection
// made in this process, for nettest.
func (tp *tport) streamPair(t *testing.T) (c1, c2 net.Conn, stop func(), err error) {
	cfg := tp.config(0)
	addr := tp.addr(t)
	l, err := ipc.Listen(addr, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	type res struct {
		c   net.Conn
		err error
	}
	acc := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		acc <- res{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	c1, err = ipc.DialStream(ctx, addr, cfg)
	if err != nil {
		l.Close()
		<-acc
		return nil, nil, nil, err
	}
	r := <-acc
	if r.err != nil {
		c1.Close()
		l.Close()
		return nil, nil, nil, r.err
	}
	return c1, r.c, func() { c1.Close(); r.c.Close(); l.Close() }, nil
}
