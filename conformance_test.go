package ipc_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/transport"
)

// The conformance suite: one body of tests, run over every transport that
// is registered on this system. The peer of each connection is another
// process (this test binary re-executed, see peers), so every case also
// checks the transport across a process boundary.

const (
	// peerTimeout bounds every wait for a peer or a message. Peers answer
	// in milliseconds; the bound only limits how long a broken test takes
	// to fail.
	peerTimeout = 10 * time.Second
	// peerLife is how long an idle peer lives if the test that started it
	// does not kill it first (its cleanup always does).
	peerLife = 60 * time.Second
	// goneBound is how long a Recv may take to report a peer that closed
	// or was killed.
	goneBound = 5 * time.Second
)

// tport describes one transport of the suite.
type tport struct {
	name   string // as the tests name it
	scheme string // the transport's scheme
	// pipe: the transport connects a parent and the child it starts
	// (ipc.StartChild, ipc.ChildConn) instead of Listen and Dial.
	pipe bool
}

// transports are the transports of the suite, in the order they run.
var transports = []*tport{
	{name: ipc.Unix, scheme: ipc.Unix},
	{name: ipc.UnixPacket, scheme: ipc.UnixPacket},
	{name: ipc.TCP, scheme: ipc.TCP},
	{name: tcpTLS, scheme: ipc.TCP},
	{name: ipc.FIFO, scheme: ipc.FIFO},
	{name: ipc.PosixMQ, scheme: ipc.PosixMQ},
	{name: ipc.SHM, scheme: ipc.SHM},
	{name: ipc.Pipe, scheme: ipc.Pipe, pipe: true},
}

// tcpTLS is TCP with TLS (Config.TLS set on both ends).
const tcpTLS = "tcp+tls"

func transportByName(name string) *tport {
	for _, tp := range transports {
		if tp.name == name {
			return tp
		}
	}
	panic("no transport " + name)
}

// need skips t unless the transport is available here.
func (tp *tport) need(t *testing.T) {
	t.Helper()
	if _, ok := transport.Lookup(tp.scheme); !ok {
		t.Skipf("transport %s is not registered on this system", tp.scheme)
	}
}

var addrSeq atomic.Int64

// addr returns a fresh address of the transport. Files live in a short
// temporary directory (a Unix socket path has at most 107 bytes) removed
// when t ends; queue names are unique to this process.
func (tp *tport) addr(t testing.TB) string {
	t.Helper()
	n := addrSeq.Add(1)
	switch tp.scheme {
	case ipc.TCP:
		return "tcp://" + freeTCPAddr(t)
	case ipc.PosixMQ:
		return fmt.Sprintf("posixmq:///ipctest-%d-%d", os.Getpid(), n)
	case ipc.Pipe:
		return "pipe:"
	}
	dir, err := os.MkdirTemp("", "ipct")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return tp.scheme + "://" + filepath.Join(dir, fmt.Sprintf("c%d", n))
}

// freeTCPAddr returns a loopback address whose port was free a moment ago.
func freeTCPAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// config returns the configuration both ends of a connection use: the
// defaults, with MaxMessageSize max unless max is 0.
func (tp *tport) config(max int) *ipc.Config {
	return configFor(tp.name, max)
}

func configFor(name string, max int) *ipc.Config {
	cfg := &ipc.Config{MaxMessageSize: max}
	switch name {
	case tcpTLS:
		cfg.TLS = testTLSConfig()
	case ipc.PosixMQ:
		// Small queues: every POSIX queue of the user counts against one
		// RLIMIT_MSGQUEUE (800 KiB here), shared with the test binaries of
		// other packages that run at the same time. Messages larger than a
		// queue message are split, so the cases stay the same.
		cfg.QueueMsgSize, cfg.QueueDepth = 2048, 4
	}
	return cfg
}

// testTLSConfig returns a TLS configuration for both ends: a self-signed
// Ed25519 certificate for 127.0.0.1, made from a fixed seed so that every
// process of the test (Ed25519 signatures are deterministic) builds the
// same one without sharing files.
var testTLSConfig = sync.OnceValue(func() *tls.Config {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ipc test"},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS13,
	}
})

// listen listens at a fresh address; the listener closes when t ends.
func (tp *tport) listen(t testing.TB, cfg *ipc.Config) (*ipc.Listener, string) {
	t.Helper()
	addr := tp.addr(t)
	l, err := ipc.Listen(addr, cfg)
	if err != nil {
		t.Fatalf("Listen %s: %v", addr, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Listener.Close: %v", err)
		}
		checkClean(t, addr)
	})
	return l, addr
}

// connectPeer starts the peer role in another process, connected to this
// one over the transport with configuration cfg (maxArg is the peer's
// MaxMessageSize, 0 for cfg's), and returns this end of the connection,
// closed when t ends.
func (tp *tport) connectPeer(t *testing.T, cfg *ipc.Config, maxArg int, role string, args ...string) (ipc.Conn, *ipctest.Peer) {
	t.Helper()
	return tp.connectPeerWith(t, cfg, maxArg, nil, role, args...)
}

// connectPeerWith is connectPeer with prep, if not nil, adjusting the
// peer's command before it starts.
func (tp *tport) connectPeerWith(t *testing.T, cfg *ipc.Config, maxArg int, prep func(*exec.Cmd), role string, args ...string) (ipc.Conn, *ipctest.Peer) {
	t.Helper()
	if maxArg == 0 {
		maxArg = cfg.MaxMessageSize
	}
	addr := "pipe:"
	var l *ipc.Listener
	if !tp.pipe {
		l, addr = tp.listen(t, cfg)
	}
	cmd := ipctest.Command(role, append([]string{tp.name, addr, strconv.Itoa(maxArg)}, args...)...)
	if prep != nil {
		prep(cmd)
	}
	if tp.pipe {
		return startPipePeer(t, cfg, cmd)
	}
	p := ipctest.Start(t, cmd)
	return acceptFrom(t, l, p), p
}

// acceptFrom accepts the connection of peer p, failing t if p exits first
// or does not connect within peerTimeout.
func acceptFrom(t *testing.T, l *ipc.Listener, p *ipctest.Peer) ipc.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	go func() {
		select {
		case <-p.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	c, err := l.AcceptConn(ctx)
	if err != nil {
		t.Fatalf("AcceptConn: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// peerConn connects a peer process: args are the transport, the address
// and the MaxMessageSize; it returns the remaining arguments.
func peerConn(args []string) (ipc.Conn, []string, error) {
	if len(args) < 3 {
		return nil, nil, fmt.Errorf("want transport address max, got %q", args)
	}
	max, err := strconv.Atoi(args[2])
	if err != nil {
		return nil, nil, err
	}
	cfg := configFor(args[0], max)
	if args[0] == ipc.Pipe {
		c, err := childConn(cfg)
		return c, args[3:], err
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	c, err := ipc.Dial(ctx, args[1], cfg)
	return c, args[3:], err
}

func init() {
	addPeers(ipctest.Peers{
		"echo":   peerEcho,
		"closer": peerCloser,
		"idle":   peerIdle,
		"source": peerSource,
		"junk":   peerJunk,
		"paused": peerPaused,
	})
}

// peerEcho sends back every message it receives, and exits when the
// connection ends (status 0 at io.EOF).
func peerEcho(args []string) int {
	c, _, err := peerConn(args)
	if err != nil {
		return ipctest.Fail("connect: %v", err)
	}
	defer c.Close()
	var buf []byte
	for {
		buf, err = c.Recv(context.Background(), buf)
		if errors.Is(err, io.EOF) {
			return 0
		}
		if err != nil {
			return ipctest.Fail("echo recv: %v", err)
		}
		if err := c.Send(context.Background(), buf); err != nil {
			if errors.Is(err, io.EOF) {
				return 0
			}
			return ipctest.Fail("echo send: %v", err)
		}
	}
}

// peerCloser receives one message, answers "bye", closes its end, says
// "closed" and lives on until it is killed: the other end must see the
// Close, not the exit of the process.
func peerCloser(args []string) int {
	c, _, err := peerConn(args)
	if err != nil {
		return ipctest.Fail("connect: %v", err)
	}
	if _, err := c.Recv(context.Background(), nil); err != nil {
		return ipctest.Fail("recv: %v", err)
	}
	if err := c.Send(context.Background(), []byte("bye")); err != nil {
		return ipctest.Fail("send: %v", err)
	}
	if err := c.Close(); err != nil {
		return ipctest.Fail("close: %v", err)
	}
	fmt.Println("closed")
	time.Sleep(peerLife)
	return 0
}

// peerIdle connects, says "connected" and waits to be killed.
func peerIdle(args []string) int {
	c, _, err := peerConn(args)
	if err != nil {
		return ipctest.Fail("connect: %v", err)
	}
	defer c.Close()
	fmt.Println("connected")
	time.Sleep(peerLife)
	return 0
}

// peerSource sends one message of args[3] bytes (byte i is i%251), then
// waits for the connection to end.
func peerSource(args []string) int {
	c, rest, err := peerConn(args)
	if err != nil {
		return ipctest.Fail("connect: %v", err)
	}
	defer c.Close()
	n, _ := strconv.Atoi(rest[0])
	if err := c.Send(context.Background(), pattern(n)); err != nil {
		return ipctest.Fail("send: %v", err)
	}
	fmt.Println("sent")
	c.Recv(context.Background(), nil)
	return 0
}

// pattern returns n bytes, byte i being i%251.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// ctxT returns a context that ends after peerTimeout or when t ends.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	t.Cleanup(cancel)
	return ctx
}

// wantIs fails t unless err matches target and is an *ipc.OpError.
func wantIs(t *testing.T, what string, err error, targets ...error) {
	t.Helper()
	ok := false
	for _, target := range targets {
		ok = ok || errors.Is(err, target)
	}
	if !ok {
		t.Fatalf("%s: got %v (%T), want %v", what, err, err, targets)
	}
	var oe *ipc.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("%s: error %v (%T) is not an *ipc.OpError", what, err, err)
	}
}

// wantTimeoutErr fails t unless err is ErrTimeout as the contract gives it.
func wantTimeoutErr(t *testing.T, what string, err error) {
	t.Helper()
	wantIs(t, what, err, ipc.ErrTimeout)
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: %v is not os.ErrDeadlineExceeded with Timeout() true", what, err)
	}
}

// echoed sends msg and fails t unless the echo peer sends it back.
func echoed(t *testing.T, c ipc.Conn, msg []byte) {
	t.Helper()
	ctx := ctxT(t)
	if err := c.Send(ctx, msg); err != nil {
		t.Fatalf("Send %d bytes: %v", len(msg), err)
	}
	got, err := c.Recv(ctx, nil)
	if err != nil {
		t.Fatalf("Recv the echo of %d bytes: %v", len(msg), err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo of %d bytes: got %d bytes %.40q, want %.40q", len(msg), len(got), got, msg)
	}
}

// recvAsync runs Recv in a goroutine and returns where its result arrives.
func recvAsync(ctx context.Context, c ipc.Conn) <-chan error {
	errc := make(chan error, 1)
	go func() {
		m, err := c.Recv(ctx, nil)
		if err == nil {
			err = fmt.Errorf("unexpected message of %d bytes %.40q", len(m), m)
		}
		errc <- err
	}()
	return errc
}

// within waits up to d for errc, failing t if nothing comes.
func within(t *testing.T, what string, errc <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %v", what, d)
	}
	return nil
}

// pipeline sends msgs from a goroutine while receiving as many messages,
// and hands each received message to check.
func pipeline(t *testing.T, c ipc.Conn, msgs [][]byte, check func(i int, got []byte)) {
	t.Helper()
	ctx := ctxT(t)
	senderr := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			if err := c.Send(ctx, m); err != nil {
				senderr <- err
				return
			}
		}
		senderr <- nil
	}()
	var buf []byte
	var err error
	for i := range msgs {
		buf, err = c.Recv(ctx, buf)
		if err != nil {
			t.Fatalf("Recv message %d of %d: %v", i, len(msgs), err)
		}
		check(i, buf)
	}
	if err := <-senderr; err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// The suite runs as one test per transport, each over the same cases.
func TestConformanceUnix(t *testing.T)       { conformance(t, ipc.Unix) }
func TestConformanceUnixPacket(t *testing.T) { conformance(t, ipc.UnixPacket) }
func TestConformanceTCP(t *testing.T)        { conformance(t, ipc.TCP) }
func TestConformanceTCPTLS(t *testing.T)     { conformance(t, tcpTLS) }
func TestConformanceFIFO(t *testing.T)       { conformance(t, ipc.FIFO) }
func TestConformancePosixMQ(t *testing.T)    { conformance(t, ipc.PosixMQ) }
func TestConformanceSHM(t *testing.T)        { conformance(t, ipc.SHM) }
func TestConformancePipe(t *testing.T)       { conformance(t, ipc.Pipe) }

// conformanceCases are the cases of the suite.
var conformanceCases = []struct {
	name string
	run  func(t *testing.T, tp *tport)
}{
	{"ordering", testOrdering},
	{"boundaries", testBoundaries},
	{"empty", testEmpty},
	{"max-size", testMaxSize},
	{"max-size-recv", testMaxSizeRecv},
	{"large", testLarge},
	{"concurrent-senders", testConcurrentSenders},
	{"concurrent-receivers", testConcurrentReceivers},
	{"deadlines", testDeadlines},
	{"context", testContext},
	{"interrupted-send", testInterruptedSend},
	{"interrupted-recv", testInterruptedRecv},
	{"close-local", testCloseLocal},
	{"close-remote", testCloseRemote},
	{"kill-9", testKill},
	{"garbage", testGarbage},
}

// conformance runs every case over the transport called name, or skips
// if the transport is not available here.
func conformance(t *testing.T, name string) {
	tp := transportByName(name)
	tp.need(t)
	for _, c := range conformanceCases {
		t.Run(c.name, func(t *testing.T) { c.run(t, tp) })
	}
}

// testOrdering: many messages arrive in the order they were sent.
func testOrdering(t *testing.T, tp *tport) {
	c, _ := tp.connectPeer(t, tp.config(0), 0, "echo")
	const n = 2000
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = binary.LittleEndian.AppendUint64(nil, uint64(i))
		msgs[i] = append(msgs[i], bytes.Repeat([]byte{byte(i)}, i%97)...)
	}
	pipeline(t, c, msgs, func(i int, got []byte) {
		if len(got) < 8 {
			t.Fatalf("message %d: %d bytes", i, len(got))
		}
		if seq := binary.LittleEndian.Uint64(got); seq != uint64(i) || !bytes.Equal(got, msgs[i]) {
			t.Fatalf("message %d: got sequence number %d (%d bytes), want %d", i, seq, len(got), i)
		}
	})
}

// testBoundaries: messages of random sizes from 0 to 64 KiB arrive whole,
// byte for byte, never merged or split.
func testBoundaries(t *testing.T, tp *tport) {
	c, _ := tp.connectPeer(t, tp.config(0), 0, "echo")
	r := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	msgs := make([][]byte, 300)
	for i := range msgs {
		n := r.IntN(64<<10 + 1)
		switch i % 50 {
		case 0:
			n = 0
		case 1:
			n = 64 << 10
		case 2:
			n = 1
		}
		msgs[i] = make([]byte, n)
		for j := range msgs[i] {
			msgs[i][j] = byte(r.Uint32())
		}
	}
	pipeline(t, c, msgs, func(i int, got []byte) {
		if !bytes.Equal(got, msgs[i]) {
			t.Fatalf("message %d: got %d bytes, want %d (equal %t)", i, len(got), len(msgs[i]), bytes.Equal(got, msgs[i]))
		}
	})
}

// testEmpty: an empty message is a message.
func testEmpty(t *testing.T, tp *tport) {
	c, _ := tp.connectPeer(t, tp.config(0), 0, "echo")
	msgs := [][]byte{{}, nil, []byte("a"), {}, []byte("bc"), {}}
	pipeline(t, c, msgs, func(i int, got []byte) {
		if !bytes.Equal(got, msgs[i]) {
			t.Fatalf("message %d: got %q, want %q", i, got, msgs[i])
		}
	})
}

// testMaxSize: a message of exactly MaxMessageSize bytes goes through; one
// byte more fails with ErrMessageTooLarge, sends nothing and leaves the
// connection working.
func testMaxSize(t *testing.T, tp *tport) {
	const max = 1 << 20
	c, _ := tp.connectPeer(t, tp.config(max), 0, "echo")
	ctx := ctxT(t)
	err := c.Send(ctx, make([]byte, max+1))
	wantIs(t, "Send of MaxMessageSize+1 bytes", err, ipc.ErrMessageTooLarge)
	echoed(t, c, pattern(max)) // the first echo: nothing of the refused message was sent
	echoed(t, c, []byte("next"))
}

// testMaxSizeRecv: a message above the receiver's MaxMessageSize (the
// sender allowing more) fails Recv with ErrMessageTooLarge.
func testMaxSizeRecv(t *testing.T, tp *tport) {
	const max = 1 << 20
	c, _ := tp.connectPeer(t, tp.config(max), 2*max, "source", strconv.Itoa(max+1))
	_, err := c.Recv(ctxT(t), nil)
	wantIs(t, "Recv of a message above MaxMessageSize", err, ipc.ErrMessageTooLarge)
}

// testLarge: a 16 MiB message goes through whole.
func testLarge(t *testing.T, tp *tport) {
	const size = 16 << 20
	c, _ := tp.connectPeer(t, tp.config(0), 0, "echo")
	msg := make([]byte, size)
	r := rand.New(rand.NewPCG(2, 3))
	for i := 0; i+8 <= len(msg); i += 8 {
		binary.LittleEndian.PutUint64(msg[i:], r.Uint64())
	}
	start := time.Now()
	ctx := ctxT(t)
	senderr := make(chan error, 1)
	go func() { senderr <- c.Send(ctx, msg) }()
	got, err := c.Recv(ctx, nil)
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	if err := <-senderr; err != nil {
		t.Fatalf("Send: %v", err)
	}
	d := time.Since(start)
	if sha256.Sum256(got) != sha256.Sum256(msg) {
		t.Fatalf("got %d bytes, want %d; contents differ", len(got), len(msg))
	}
	t.Logf("%d bytes there and back in %v (%.0f MB/s each way)", size, d.Round(time.Millisecond), 2*float64(size)/d.Seconds()/1e6)
}

// testConcurrentSenders: messages from 8 goroutines sending at once arrive
// intact, each sender's in its order.
func testConcurrentSenders(t *testing.T, tp *tport) {
	c, _ := tp.connectPeer(t, tp.config(0), 0, "echo")
	const senders, each = 8, 250
	ctx := ctxT(t)
	msg := func(s, i int) []byte {
		b := []byte{byte(s)}
		b = binary.LittleEndian.AppendUint32(b, uint32(i))
		return append(b, bytes.Repeat([]byte{byte(s*31 + i)}, (i*37+s*101)%3000)...)
	}
	var wg sync.WaitGroup
	errc := make(chan error, senders)
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				if err := c.Send(ctx, msg(s, i)); err != nil {
					errc <- fmt.Errorf("sender %d message %d: %w", s, i, err)
					return
				}
			}
		})
	}
	next := make([]int, senders)
	var buf []byte
	var err error
	for n := range senders * each {
		buf, err = c.Recv(ctx, buf)
		if err != nil {
			select {
			case serr := <-errc:
				t.Fatalf("Recv %d: %v (%v)", n, err, serr)
			default:
			}
			t.Fatalf("Recv %d: %v", n, err)
		}
		if len(buf) < 5 || int(buf[0]) >= senders {
			t.Fatalf("message %d: %d bytes, tag %v", n, len(buf), buf[:min(5, len(buf))])
		}
		s, i := int(buf[0]), int(binary.LittleEndian.Uint32(buf[1:]))
		if i != next[s] {
			t.Fatalf("sender %d: message %d arrived when %d was due", s, i, next[s])
		}
		if !bytes.Equal(buf, msg(s, i)) {
			t.Fatalf("sender %d message %d: corrupted (%d bytes)", s, i, len(buf))
		}
		next[s]++
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// testConcurrentReceivers: 4 goroutines receiving at once each get whole
// messages, and every message goes to exactly one of them.
func testConcurrentReceivers(t *testing.T, tp *tport) {
	c, _ := tp.connectPeer(t, tp.config(0), 0, "echo")
	const n, receivers = 1000, 4
	ctx := ctxT(t)
	msg := func(i int) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(i))
		return append(b, bytes.Repeat([]byte{byte(i)}, i*53%7000)...)
	}
	go func() {
		for i := range n {
			if err := c.Send(ctx, msg(i)); err != nil {
				t.Errorf("Send %d: %v", i, err)
				return
			}
		}
	}()
	var mu sync.Mutex
	seen := make([]int, n)
	var total atomic.Int64
	var wg sync.WaitGroup
	for range receivers {
		wg.Go(func() {
			var buf []byte
			var err error
			for total.Add(1) <= n {
				buf, err = c.Recv(ctx, buf)
				if err != nil {
					t.Errorf("Recv: %v", err)
					return
				}
				i := int(binary.LittleEndian.Uint32(buf))
				if len(buf) < 4 || i >= n || !bytes.Equal(buf, msg(i)) {
					t.Errorf("torn or foreign message of %d bytes", len(buf))
					return
				}
				mu.Lock()
				seen[i]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for i, k := range seen {
		if k != 1 {
			t.Fatalf("message %d received %d times", i, k)
		}
	}
}

// testDeadlines: a passed deadline fails Send and Recv with ErrTimeout,
// also a Recv already blocked when the deadline is set; a Recv timed out
// at a message boundary leaves the connection usable, and a Send refused
// by a passed deadline sends nothing.
func testDeadlines(t *testing.T, tp *tport) {
	c, _ := tp.connectPeer(t, tp.config(0), 0, "echo")
	bg := context.Background()

	if err := c.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := c.Recv(bg, nil)
	wantTimeoutErr(t, "Recv with a passed deadline", err)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Recv with a passed deadline took %v", d)
	}
	wantTimeoutErr(t, "Send with a passed deadline", c.Send(bg, []byte("never")))

	// A deadline in the near future.
	c.SetDeadline(time.Now().Add(100 * time.Millisecond))
	start = time.Now()
	_, err = c.Recv(bg, nil)
	wantTimeoutErr(t, "Recv with a 100 ms deadline", err)
	if d := time.Since(start); d < 90*time.Millisecond || d > goneBound {
		t.Errorf("Recv with a 100 ms deadline returned after %v", d)
	}

	// A deadline set while Recv is blocked.
	c.SetDeadline(time.Time{})
	errc := recvAsync(bg, c)
	time.Sleep(50 * time.Millisecond)
	c.SetDeadline(time.Now())
	wantTimeoutErr(t, "blocked Recv, then SetDeadline(now)", within(t, "blocked Recv after SetDeadline", errc, goneBound))

	// Still usable; the Send refused by its deadline was not sent.
	c.SetDeadline(time.Time{})
	echoed(t, c, []byte("after"))
	c.SetDeadline(time.Now().Add(peerTimeout))
	echoed(t, c, []byte("with a deadline ahead"))
}

// testContext: a cancelled context ends a blocked Recv promptly with the
// context's error, and leaves the connection usable.
func testContext(t *testing.T, tp *tport) {
	c, _ := tp.connectPeer(t, tp.config(0), 0, "echo")
	done, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Recv(done, nil)
	wantIs(t, "Recv with a cancelled context", err, context.Canceled)
	wantIs(t, "Send with a cancelled context", c.Send(done, []byte("never")), context.Canceled)

	ctx, cancel := context.WithCancel(context.Background())
	errc := recvAsync(ctx, c)
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cancel()
	err = within(t, "Recv after cancel", errc, goneBound)
	wantIs(t, "blocked Recv, then cancel", err, context.Canceled)
	t.Logf("blocked Recv returned %v after cancel", time.Since(start).Round(time.Microsecond))

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Recv(ctx, nil)
	wantIs(t, "Recv with a context deadline", err, context.DeadlineExceeded)

	echoed(t, c, []byte("after"))
}

// testInterruptedSend: a Send that its context ends in the middle of a
// large message (the peer not reading yet) never gives the peer a torn
// message. Depending on the transport the interrupted message is dropped
// whole or completed by the next Send, or the Conn fails for good with a
// typed error; the test logs which.
func testInterruptedSend(t *testing.T, tp *tport) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	c, p := tp.connectPeerWith(t, tp.config(0), 0, func(cmd *exec.Cmd) { cmd.Stdin = r }, "paused")
	p.Expect(t, "connected", peerTimeout)
	big := pattern(32 << 20) // more than any transport buffers
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err = c.Send(ctx, big)
	cancel()
	if err == nil {
		t.Logf("%d bytes sent with nobody reading", len(big))
	} else {
		wantIs(t, "Send cut short by its context", err, context.DeadlineExceeded)
	}
	fmt.Fprintln(w, "go") // the peer starts reading
	small := []byte("after the interrupted send")
	serr := c.Send(ctxT(t), small)
	if serr != nil {
		// tcp+tls fails so: crypto/tls cannot resume a write that a
		// deadline cut short, so every later Send gives ErrCorruptFrame.
		wantIs(t, "Send after an interrupted Send", serr, ipc.ErrCorruptFrame)
	}
	c.Close()
	bigLine := fmt.Sprintf("msg %d %x", len(big), sha256.Sum256(big))
	smallLine := fmt.Sprintf("msg %d %x", len(small), sha256.Sum256(small))
	var got []string
	for {
		l := p.Line(t, peerTimeout)
		if l == "eof" {
			break
		}
		got = append(got, l)
	}
	switch {
	case serr != nil && len(got) == 0:
		t.Logf("the interrupted Send failed the Conn: %v", serr)
	case serr == nil && len(got) == 1 && got[0] == smallLine:
		t.Log("the interrupted message was dropped")
	case serr == nil && len(got) == 2 && got[0] == bigLine && got[1] == smallLine:
		t.Log("the interrupted message was delivered whole")
	default:
		t.Fatalf("the peer received %q (the next Send: %v); want the next message, after the interrupted one whole or without it", got, serr)
	}
}

// peerPaused connects, says "connected", waits for a line on its standard
// input, then receives messages, printing "msg <length> <sha256>" for each,
// and "eof" at the end of the connection.
func peerPaused(args []string) int {
	c, _, err := peerConn(args)
	if err != nil {
		return ipctest.Fail("connect: %v", err)
	}
	defer c.Close()
	fmt.Println("connected")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return ipctest.Fail("stdin: %v", err)
	}
	var buf []byte
	for {
		buf, err = c.Recv(context.Background(), buf)
		if errors.Is(err, io.EOF) {
			fmt.Println("eof")
			return 0
		}
		if err != nil {
			fmt.Printf("error %v\n", err)
			return 1
		}
		fmt.Printf("msg %d %x\n", len(buf), sha256.Sum256(buf))
	}
}

// testInterruptedRecv: Recvs that keep timing out while a large message
// arrives, in its middle too, leave the Conn usable: a later Recv returns
// the whole message.
func testInterruptedRecv(t *testing.T, tp *tport) {
	const size = 8 << 20
	c, _ := tp.connectPeer(t, tp.config(0), 0, "source", strconv.Itoa(size))
	timeouts := 0
	deadline := time.Now().Add(peerTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		m, err := c.Recv(ctx, nil)
		cancel()
		if err == nil {
			if !bytes.Equal(m, pattern(size)) {
				t.Fatalf("got %d bytes, want the %d-byte message", len(m), size)
			}
			break
		}
		wantIs(t, "Recv with a 1 ms context", err, context.DeadlineExceeded)
		timeouts++
		if time.Now().After(deadline) {
			t.Fatalf("no message after %d Recvs timed out", timeouts)
		}
	}
	t.Logf("%d Recvs timed out before the %d-byte message came whole", timeouts, size)
}

// testCloseLocal: Close ends a blocked Recv; afterwards every call returns
// net.ErrClosed; the peer sees the end of the connection.
func testCloseLocal(t *testing.T, tp *tport) {
	c, p := tp.connectPeer(t, tp.config(0), 0, "echo")
	echoed(t, c, []byte("hello"))
	errc := recvAsync(context.Background(), c)
	time.Sleep(50 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantIs(t, "blocked Recv, then Close", within(t, "Recv after Close", errc, goneBound), net.ErrClosed)
	ctx := ctxT(t)
	_, err := c.Recv(ctx, nil)
	wantIs(t, "Recv after Close", err, net.ErrClosed)
	wantIs(t, "Send after Close", c.Send(ctx, []byte("x")), net.ErrClosed)
	wantIs(t, "SetDeadline after Close", c.SetDeadline(time.Now()), net.ErrClosed)
	wantIs(t, "second Close", c.Close(), net.ErrClosed)
	// The echo peer exits with status 0 when its Recv returns io.EOF.
	if err := p.Wait(t, goneBound); err != nil {
		t.Fatalf("peer after our Close: %v", err)
	}
}

// testCloseRemote: when the peer closes its end (and stays alive), Recv
// returns what it sent before, then io.EOF; Send does not hang.
func testCloseRemote(t *testing.T, tp *tport) {
	c, p := tp.connectPeer(t, tp.config(0), 0, "closer")
	ctx := ctxT(t)
	if err := c.Send(ctx, []byte("go")); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Recv(ctx, nil); err != nil || string(m) != "bye" {
		t.Fatalf("Recv %q, %v; want \"bye\"", m, err)
	}
	p.Expect(t, "closed", peerTimeout)
	start := time.Now()
	ctx5, cancel := context.WithTimeout(context.Background(), goneBound)
	defer cancel()
	_, err := c.Recv(ctx5, nil)
	wantIs(t, "Recv after the peer's Close", err, io.EOF)
	t.Logf("io.EOF %v after the peer said it closed", time.Since(start).Round(time.Microsecond))
	_, err = c.Recv(ctx5, nil)
	wantIs(t, "second Recv after the peer's Close", err, io.EOF)
	sendAfterGone(t, c)
	if err := c.Close(); err != nil {
		t.Fatalf("Close after the peer's Close: %v", err)
	}
}

// sendAfterGone checks that Sends to a peer that is gone succeed (into a
// buffer) or fail with io.EOF, and never hang.
func sendAfterGone(t *testing.T, c ipc.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), goneBound)
	defer cancel()
	for i := range 64 {
		err := c.Send(ctx, make([]byte, 1<<10))
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			t.Fatalf("Send %d to a peer that is gone blocked for %v", i, goneBound)
		}
		wantIs(t, "Send to a peer that is gone", err, io.EOF)
		return
	}
}

// testKill: a peer killed with SIGKILL is seen as io.EOF by a blocked Recv
// within goneBound.
func testKill(t *testing.T, tp *tport) {
	c, p := tp.connectPeer(t, tp.config(0), 0, "idle")
	p.Expect(t, "connected", peerTimeout)
	errc := recvAsync(context.Background(), c)
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	p.Kill()
	err := within(t, "Recv after the peer was killed", errc, goneBound)
	lat := time.Since(start)
	wantIs(t, "Recv after the peer was killed", err, io.EOF)
	t.Logf("io.EOF %v after SIGKILL", lat.Round(time.Microsecond))
	sendAfterGone(t, c)
	if err := c.Close(); err != nil {
		t.Fatalf("Close after the peer died: %v", err)
	}
}

// wantJunkErr fails t unless err is one of want, or, with want nil, any
// *ipc.OpError that is neither a timeout nor the end of the connection.
func wantJunkErr(t *testing.T, what string, err error, want []error) {
	t.Helper()
	if want != nil {
		wantIs(t, what, err, want...)
	} else {
		var oe *ipc.OpError
		if !errors.As(err, &oe) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ipc.ErrTimeout) || errors.Is(err, io.EOF) {
			t.Fatalf("%s: %v (%T), want an *ipc.OpError telling what is wrong", what, err, err)
		}
	}
	t.Logf("%v", err)
}

// testGarbage: bytes that are not frames, written beneath the framing by a
// peer process, give ErrCorruptFrame (or ErrMessageTooLarge when they read
// as a huge length), never a panic, a hang or a bogus message; the
// connection stays failed. Each kind of junk arrives once before Recv is
// called and once while Recv is blocked.
func testGarbage(t *testing.T, tp *tport) {
	for _, kind := range junkKinds(tp) {
		for _, blocked := range []bool{false, true} {
			name := kind.name + "/before-recv"
			if blocked {
				name = kind.name + "/during-recv"
			}
			t.Run(name, func(t *testing.T) {
				c, p := junkConnect(t, tp, kind.name)
				ctx, cancel := context.WithTimeout(context.Background(), goneBound)
				defer cancel()
				var errc <-chan error
				if blocked {
					errc = recvAsync(ctx, c)
					time.Sleep(50 * time.Millisecond)
				}
				// Any message tells the peer to write its junk.
				if err := c.Send(ctx, []byte("go")); err != nil {
					if kind.want != nil {
						t.Fatalf("Send: %v", err)
					}
					wantJunkErr(t, "Send to a peer that sent junk", err, kind.want)
					return
				}
				p.Expect(t, "junk written", peerTimeout)
				if !blocked {
					errc = recvAsync(ctx, c)
				}
				err := within(t, "Recv of junk", errc, goneBound+time.Second)
				wantJunkErr(t, "Recv of junk", err, kind.want)
				_, err = c.Recv(ctx, nil)
				if err == nil || errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("second Recv after junk: %v, want the error again", err)
				}
			})
		}
	}
}
