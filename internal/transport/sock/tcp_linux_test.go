package sock_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/frame"
	"github.com/ipcgo/ipc/internal/transport"
	"github.com/ipcgo/ipc/internal/transport/sock"
)

func tcpConn(t *testing.T, c ipc.Conn) *sock.TCPConn {
	t.Helper()
	tc, ok := c.(interface{ Unwrap() transport.Conn }).Unwrap().(*sock.TCPConn)
	if !ok {
		t.Fatalf("%T is not a TCP connection", c)
	}
	return tc
}

func TestTCPNoDelay(t *testing.T) {
	s, c := pair(t, "tcp://127.0.0.1:0", nil, nil)
	for side, conn := range map[string]ipc.Conn{"accepted": s, "dialed": c} {
		var v int
		var gerr error
		if err := tcpConn(t, conn).Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY) }); err != nil {
			t.Fatal(err)
		}
		if gerr != nil || v == 0 {
			t.Fatalf("%s: TCP_NODELAY = %d, %v", side, v, gerr)
		}
	}
}

// ca is a certificate authority made for a test.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &ca{cert, key, pool}
}

// serverCert returns a certificate for 127.0.0.1 signed by the CA.
func (a *ca) serverCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestTLS(t *testing.T) {
	auth := newCA(t, "test CA")
	srv := &ipc.Config{TLS: &tls.Config{Certificates: []tls.Certificate{auth.serverCert(t)}}}
	ctx := ctxT(t)

	s, c := pair(t, "tcp://127.0.0.1:0", srv, &ipc.Config{TLS: &tls.Config{RootCAs: auth.pool}})
	msg := pattern(3<<20, 9)
	wait := run(t, func() {
		if err := c.Send(ctx, msg); err != nil {
			t.Error(err)
		}
	})
	got, err := s.Recv(ctx, nil)
	wait()
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, got, msg)
	if err := s.Send(ctx, []byte("back")); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Recv(ctx, nil); err != nil || string(m) != "back" {
		t.Fatalf("Recv: %q, %v", m, err)
	}
	for side, conn := range map[string]ipc.Conn{"server": s, "client": c} {
		st, ok := tcpConn(t, conn).TLSState()
		if !ok || !st.HandshakeComplete || st.Version < tls.VersionTLS12 {
			t.Fatalf("%s: TLS state %v %+v", side, ok, st)
		}
	}

	// A client that trusts another CA refuses the server.
	l := listen(t, "tcp://127.0.0.1:0", srv)
	accepted := make(chan error, 1)
	go func() {
		sc, err := l.AcceptConn(ctx)
		if err == nil {
			defer sc.Close()
			_, err = sc.Recv(ctx, nil) // runs the server side of the handshake
		}
		accepted <- err
	}()
	other := newCA(t, "another CA")
	_, err = ipc.Dial(ctx, l.Addr().String(), &ipc.Config{TLS: &tls.Config{RootCAs: other.pool}})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("Dial trusting another CA: %v, want x509.UnknownAuthorityError", err)
	}
	if err := <-accepted; err == nil {
		t.Fatal("the server's Recv succeeded after a failed handshake")
	}
}

func TestTLSConfigWithoutCertificate(t *testing.T) {
	_, err := ipc.Listen("tcp://127.0.0.1:0", &ipc.Config{TLS: &tls.Config{}})
	if !errors.Is(err, ipc.ErrBadConfig) {
		t.Fatalf("Listen with a TLS config without certificate: %v, want ErrBadConfig", err)
	}
}

// TestTLSHandshakeContext: the handshake of Dial ends with its context,
// even if the server never answers.
func TestTLSHandshakeContext(t *testing.T) {
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	wait := run(t, func() {
		c, err := nl.Accept() // accepts and says nothing
		if err == nil {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			c.Read(make([]byte, 1<<16))
			c.Read(make([]byte, 1)) // until the client hangs up
			c.Close()
		}
	})
	defer wait()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = ipc.Dial(ctx, "tcp://"+nl.Addr().String(), &ipc.Config{TLS: &tls.Config{InsecureSkipVerify: true}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial: %v after %v, want the context's error", err, time.Since(start))
	}
}

func TestTCPAddrInUse(t *testing.T) {
	l := listen(t, "tcp://127.0.0.1:0", nil)
	if _, err := ipc.Listen(l.Addr().String(), nil); !errors.Is(err, ipc.ErrAddrInUse) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Listen on a port in use: %v, want ErrAddrInUse", err)
	}
}

// TestTCPAnyInterface listens on every interface (tcp://:0) and is reached
// through the loopback address.
func TestTCPAnyInterface(t *testing.T) {
	l := listen(t, "tcp://:0", nil)
	_, port, err := net.SplitHostPort(l.Addr().(ipc.Addr).Host)
	if err != nil || port == "0" {
		t.Fatalf("listening address %v: %v", l.Addr(), err)
	}
	serveEcho(t, l)
	roundTrip(t, "tcp://127.0.0.1:"+port, "any interface")
}

// wantTimeout fails t unless err is the error of a passed deadline.
func wantTimeout(t *testing.T, what string, err error) {
	t.Helper()
	var ne net.Error
	if !errors.Is(err, ipc.ErrTimeout) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: %v, want ErrTimeout", what, err)
	}
}

// tlsFrame returns msg as a frame, for a client that speaks TLS itself.
func tlsFrame(msg []byte) []byte {
	b := make([]byte, frame.HeaderSize, frame.HeaderSize+len(msg))
	frame.Header{Len: len(msg)}.Put(b)
	return append(b, msg...)
}

// TestTLSHandshakeWait: an accepted TLS connection whose client has not
// begun the handshake yet. Send and Recv wait for the handshake within
// their own context and deadline, and returning early does not spoil it: a
// context that ends gives its error, a passed deadline ErrTimeout, a
// deadline set meanwhile wakes a waiting Recv and applies once the
// handshake is done, and afterwards messages flow.
func TestTLSHandshakeWait(t *testing.T) {
	ctx := ctxT(t)
	auth := newCA(t, "test CA")
	l := listen(t, "tcp://127.0.0.1:0", &ipc.Config{TLS: &tls.Config{Certificates: []tls.Certificate{auth.serverCert(t)}}})
	raw, err := net.Dial("tcp", l.Addr().(ipc.Addr).Host)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	s, err := l.AcceptConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	_, err = s.Recv(short, nil)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv with a 1 ms context during the handshake: %v, want the context's error", err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Send(done, []byte("never")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled context during the handshake: %v", err)
	}

	// A deadline set while Recv waits wakes it.
	errc := make(chan error, 1)
	go func() { _, err := s.Recv(context.Background(), nil); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	if err := s.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		wantTimeout(t, "waiting Recv, then SetDeadline in the past", err)
	case <-time.After(5 * time.Second):
		t.Fatal("a Recv waiting for the handshake ignored SetDeadline")
	}
	wantTimeout(t, "Send with a passed deadline during the handshake", s.Send(context.Background(), []byte("never")))

	// The client handshakes now: the server side was not spoiled, and the
	// deadline set meanwhile applies once it is done.
	tlc := tls.Client(raw, &tls.Config{RootCAs: auth.pool, ServerName: "127.0.0.1"})
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := tlc.HandshakeContext(hctx); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	time.Sleep(50 * time.Millisecond) // the server's handshake ends
	_, err = s.Recv(context.Background(), nil)
	wantTimeout(t, "Recv with the deadline set during the handshake", err)

	if err := s.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := tlc.Write(tlsFrame([]byte("hello"))); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(ctx, nil); err != nil || string(m) != "hello" {
		t.Fatalf("Recv: %q, %v", m, err)
	}
	if err := s.Send(ctx, []byte("back")); err != nil {
		t.Fatal(err)
	}
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, frame.HeaderSize+4)
	if _, err := io.ReadFull(tlc, got); err != nil || string(got) != string(tlsFrame([]byte("back"))) {
		t.Fatalf("client read %q, %v", got, err)
	}
	if st, ok := tcpConn(t, s).TLSState(); !ok || !st.HandshakeComplete {
		t.Fatalf("TLS state %v %+v", ok, st)
	}
}

// TestTLSCloseDuringHandshake: Close ends a Recv waiting for the handshake
// with net.ErrClosed, and returns nil itself.
func TestTLSCloseDuringHandshake(t *testing.T) {
	ctx := ctxT(t)
	auth := newCA(t, "test CA")
	l := listen(t, "tcp://127.0.0.1:0", &ipc.Config{TLS: &tls.Config{Certificates: []tls.Certificate{auth.serverCert(t)}}})
	raw, err := net.Dial("tcp", l.Addr().(ipc.Addr).Host)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	s, err := l.AcceptConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := s.Recv(context.Background(), nil); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close during the handshake: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Recv waiting for the handshake, then Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a Recv waiting for the handshake")
	}
	if err := s.SetDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("SetDeadline after Close: %v", err)
	}
}

// TestTLSInterruptedSend: a TLS Send refused by a passed deadline or an
// ended context writes nothing and leaves the connection usable; one cut
// short in the middle of a message makes every later Send fail at once
// with ErrCorruptFrame (not a timeout), Close skips the close_notify alert
// and succeeds, and the peer gets no torn message.
func TestTLSInterruptedSend(t *testing.T) {
	ctx := ctxT(t)
	auth := newCA(t, "test CA")
	s, c := pair(t, "tcp://127.0.0.1:0", &ipc.Config{TLS: &tls.Config{Certificates: []tls.Certificate{auth.serverCert(t)}}},
		&ipc.Config{TLS: &tls.Config{RootCAs: auth.pool}})

	c.SetDeadline(time.Now().Add(-time.Second))
	wantTimeout(t, "Send with a passed deadline", c.Send(context.Background(), []byte("never")))
	c.SetDeadline(time.Time{})
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Send(done, []byte("never")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled context: %v", err)
	}
	if err := c.Send(ctx, []byte("first")); err != nil {
		t.Fatalf("Send after refused Sends: %v", err)
	}
	if m, err := s.Recv(ctx, nil); err != nil || string(m) != "first" {
		t.Fatalf("Recv: %q, %v", m, err)
	}

	big := pattern(64<<20, 3) // more than loopback TCP buffers
	cut, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := c.Send(cut, big)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send of %d bytes with nobody reading: %v, want the context's error", len(big), err)
	}
	start := time.Now()
	err = c.Send(ctx, []byte("after"))
	if !errors.Is(err, ipc.ErrCorruptFrame) || errors.Is(err, ipc.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send after an interrupted TLS write: %v, want ErrCorruptFrame", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Send after an interrupted TLS write took %v", d)
	}
	t.Log(err)
	if err := c.Close(); err != nil {
		t.Fatalf("Close after an interrupted TLS write: %v", err)
	}
	// The peer gets part of the message, then the end of the connection.
	if m, err := s.Recv(ctx, nil); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv of the interrupted message: %d bytes, %v; want io.EOF", len(m), err)
	}
}

// TestTLSCloseAfterPeerGone: Close succeeds when the close_notify alert
// cannot reach a peer that has gone.
func TestTLSCloseAfterPeerGone(t *testing.T) {
	ctx := ctxT(t)
	auth := newCA(t, "test CA")
	s, c := pair(t, "tcp://127.0.0.1:0", &ipc.Config{TLS: &tls.Config{Certificates: []tls.Certificate{auth.serverCert(t)}}},
		&ipc.Config{TLS: &tls.Config{RootCAs: auth.pool}})
	if err := s.Send(ctx, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Recv(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(ctx, nil); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after the peer's Close: %v, want io.EOF", err)
	}
	// Writing to the closed peer makes its kernel reset the connection.
	for i := 0; ; i++ {
		err := s.Send(ctx, []byte("to nobody"))
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || i == 1000 {
			t.Fatalf("Send %d to a peer that is gone: %v", i, err)
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after the peer has gone: %v", err)
	}
}
