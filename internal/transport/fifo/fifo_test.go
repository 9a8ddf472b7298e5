//go:build linux

package fifo_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/transport"
	"github.com/ipcgo/ipc/internal/transport/fifo"
)

func TestMain(m *testing.M) {
	ipctest.Main(m, ipctest.Peers{
		"dial-echo":   peerDialEcho,
		"dial-hold":   peerDialHold,
		"listen-echo": peerListenEcho,
		"listen-hold": peerListenHold,
	})
}

func opts() *transport.Options {
	return &transport.Options{MaxMessageSize: 64 << 20, Perm: 0o600, QueueDepth: 10, QueueMsgSize: 8192}
}

// peerLife bounds a peer's life, should the test that started it vanish.
func peerLife() { time.AfterFunc(60*time.Second, func() { os.Exit(3) }) }

func echo(c transport.Conn) error {
	var buf []byte
	for {
		m, err := c.Recv(context.Background(), buf)
		if err != nil {
			return err
		}
		if err := c.Send(context.Background(), m); err != nil {
			return err
		}
		buf = m
	}
}

// peerDialEcho dials args[0] and echoes every message until EOF.
func peerDialEcho(args []string) int {
	peerLife()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := fifo.Dial(ctx, args[0], opts())
	if err != nil {
		return ipctest.Fail("dial: %v", err)
	}
	fmt.Println("ready")
	if err := echo(c); err != io.EOF {
		return ipctest.Fail("echo: %v", err)
	}
	return 0
}

// peerDialHold dials args[0] and then reads nothing until killed.
func peerDialHold(args []string) int {
	peerLife()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := fifo.Dial(ctx, args[0], opts())
	if err != nil {
		return ipctest.Fail("dial: %v", err)
	}
	defer c.Close()
	fmt.Println("ready")
	select {}
}

// peerListenEcho listens at args[0] and echoes on every connection.
func peerListenEcho(args []string) int {
	peerLife()
	l, err := fifo.Listen(args[0], opts())
	if err != nil {
		return ipctest.Fail("listen: %v", err)
	}
	fmt.Println("listening")
	for {
		c, err := l.Accept(context.Background())
		if err != nil {
			return ipctest.Fail("accept: %v", err)
		}
		go echo(c)
	}
}

// peerListenHold listens at args[0], accepts one connection and holds it.
func peerListenHold(args []string) int {
	peerLife()
	l, err := fifo.Listen(args[0], opts())
	if err != nil {
		return ipctest.Fail("listen: %v", err)
	}
	fmt.Println("listening")
	c, err := l.Accept(context.Background())
	if err != nil {
		return ipctest.Fail("accept: %v", err)
	}
	defer c.Close()
	fmt.Println("accepted")
	select {}
}

// peerListener starts a peer that listens at path. A killed listener
// leaves its control FIFO (the next Listen replaces it): the test removes
// it.
func peerListener(t *testing.T, name, path string) *ipctest.Peer {
	t.Helper()
	p := ipctest.StartPeer(t, name, path)
	t.Cleanup(func() { os.Remove(path) })
	p.Expect(t, "listening", 10*time.Second)
	return p
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newPath returns the control FIFO path of a test in an empty directory,
// and checks when the test ends (before the directory goes) that nothing
// is left in it.
func newPath(t *testing.T) string {
	dir := t.TempDir()
	t.Cleanup(func() {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			t.Errorf("left behind: %s", e.Name())
		}
	})
	return filepath.Join(dir, "ctl")
}

func listen(t *testing.T, path string, o *transport.Options) transport.Listener {
	t.Helper()
	l, err := fifo.Listen(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func accept(t *testing.T, l transport.Listener) transport.Conn {
	t.Helper()
	c, err := l.Accept(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dial(t *testing.T, path string, o *transport.Options) transport.Conn {
	t.Helper()
	c, err := fifo.Dial(ctxFor(t, 10*time.Second), path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed)
	}
	return b
}

// roundTrip sends each message and checks the echo.
func roundTrip(t *testing.T, c transport.Conn, sizes []int) {
	t.Helper()
	ctx := ctxFor(t, 15*time.Second)
	var buf []byte
	for i, n := range sizes {
		want := pattern(n, i)
		if err := c.Send(ctx, want); err != nil {
			t.Fatalf("send %d bytes: %v", n, err)
		}
		got, err := c.Recv(ctx, buf)
		if err != nil {
			t.Fatalf("recv %d bytes: %v", n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d: got %d bytes, want %d (or contents differ)", i, len(got), n)
		}
		buf = got
	}
}

var sizes = []int{0, 1, 7, 8, 9, 511, 512, 513, 4095, 4096, 4097, 65535, 65536, 65537, 1<<20 + 3}

func TestBothWaysBoundaries(t *testing.T) {
	path := newPath(t)
	l := listen(t, path, opts())
	p := ipctest.StartPeer(t, "dial-echo", path)
	s := accept(t, l)
	p.Expect(t, "ready", 10*time.Second)
	roundTrip(t, s, sizes)

	// Several messages in flight at once keep their boundaries and order.
	ctx := ctxFor(t, 10*time.Second)
	go func() {
		for i, n := range sizes {
			_ = s.Send(ctx, pattern(n, 100+i))
		}
	}()
	for i, n := range sizes {
		got, err := s.Recv(ctx, nil)
		if err != nil || !bytes.Equal(got, pattern(n, 100+i)) {
			t.Fatalf("pipelined message %d: %d bytes, %v; want %d bytes", i, len(got), err, n)
		}
	}
	s.Close()
	if err := p.Wait(t, 10*time.Second); err != nil {
		t.Fatalf("peer: %v", err)
	}
}

func TestLarge16MiB(t *testing.T) {
	path := newPath(t)
	peerListener(t, "listen-echo", path)
	c := dial(t, path, opts())
	start := time.Now()
	roundTrip(t, c, []int{16 << 20, 16<<20 - 1})
	t.Logf("two 16 MiB round trips in %v", time.Since(start))
}

func TestSecondClient(t *testing.T) {
	path := newPath(t)
	peerListener(t, "listen-echo", path)
	a := dial(t, path, opts())
	b := dial(t, path, opts())
	ctx := ctxFor(t, 10*time.Second)
	for i := range 20 {
		ma, mb := []byte(fmt.Sprintf("a%d", i)), []byte(fmt.Sprintf("b%d", i))
		if err := a.Send(ctx, ma); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(ctx, mb); err != nil {
			t.Fatal(err)
		}
		gb, err := b.Recv(ctx, nil)
		if err != nil || !bytes.Equal(gb, mb) {
			t.Fatalf("b got %q, %v; want %q", gb, err, mb)
		}
		ga, err := a.Recv(ctx, nil)
		if err != nil || !bytes.Equal(ga, ma) {
			t.Fatalf("a got %q, %v; want %q", ga, err, ma)
		}
	}
	a.Close()
	roundTrip(t, b, []int{10, 100000}) // the first client leaving does not disturb the second
}

// TestConcurrentDials has many clients of this process request at once: the
// control FIFO's requests never interleave, and every client gets its own
// connection.
func TestConcurrentDials(t *testing.T) {
	path := newPath(t)
	l := listen(t, path, opts())
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := fifo.Dial(ctxFor(t, 10*time.Second), path, opts())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := []byte(fmt.Sprintf("client %d", i))
			if err := c.Send(context.Background(), msg); err != nil {
				errs <- err
				return
			}
			got, err := c.Recv(ctxFor(t, 10*time.Second), nil)
			if err != nil || !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("client %d got %q, %v", i, got, err)
			}
		}()
	}
	for range n {
		s, err := l.Accept(ctxFor(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer s.Close()
			m, err := s.Recv(ctxFor(t, 10*time.Second), nil)
			if err == nil {
				err = s.Send(context.Background(), m)
			}
			if err != nil {
				errs <- err
			}
			_, _ = s.Recv(ctxFor(t, 10*time.Second), nil) // wait for the client to close
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestClientKilled(t *testing.T) {
	path := newPath(t)
	l := listen(t, path, opts())
	p := ipctest.StartPeer(t, "dial-hold", path)
	s := accept(t, l)
	p.Expect(t, "ready", 10*time.Second)
	p.Kill()
	ctx := ctxFor(t, 10*time.Second)
	start := time.Now()
	if _, err := s.Recv(ctx, nil); err != io.EOF {
		t.Fatalf("recv after the peer was killed: %v, want io.EOF", err)
	}
	// The dying process closes its descriptors one by one: a Send may still
	// succeed just after Recv saw the end, never for long.
	var err error
	for ctx.Err() == nil {
		if err = s.Send(ctx, []byte("x")); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != io.EOF {
		t.Fatalf("send after the peer was killed: %v, want io.EOF", err)
	}
	t.Logf("EOF %v after the kill", time.Since(start))
}

func TestListenerKilled(t *testing.T) {
	path := newPath(t)
	p := peerListener(t, "listen-hold", path)
	c := dial(t, path, opts())
	p.Expect(t, "accepted", 10*time.Second)
	// Fill the pipe towards the peer, which does not read: Send blocks and
	// must fail with io.EOF when the peer dies.
	errc := make(chan error, 1)
	go func() {
		for {
			if err := c.Send(ctxFor(t, 15*time.Second), make([]byte, 1<<20)); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	p.Kill()
	ctx := ctxFor(t, 10*time.Second)
	if _, err := c.Recv(ctx, nil); err != io.EOF {
		t.Fatalf("recv after the listener was killed: %v, want io.EOF", err)
	}
	select {
	case err := <-errc:
		if err != io.EOF {
			t.Fatalf("blocked send after the listener was killed: %v, want io.EOF", err)
		}
	case <-ctx.Done():
		t.Fatal("blocked send still blocked after the listener was killed")
	}
	// The control FIFO of the dead listener is stale: a new listener takes
	// the path over, and Close removes it.
	<-p.Done()
	l := listen(t, path, opts())
	l.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control FIFO after Close: %v", err)
	}
}

func TestRecvDeadlineAndCancel(t *testing.T) {
	path := newPath(t)
	l := listen(t, path, opts())
	c := dial(t, path, opts())
	s := accept(t, l)

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := s.Recv(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("recv with a cancelled context: %v", err)
	}
	if err := s.SetDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := s.Recv(context.Background(), nil)
	if !errors.Is(err, ipcerr.ErrTimeout) || !transport.IsTimeout(err) {
		t.Fatalf("recv past the deadline: %v", err)
	}
	// The conn is still usable once the deadline is lifted.
	if err := s.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctxFor(t, 5*time.Second), []byte("after")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Recv(ctxFor(t, 5*time.Second), nil); err != nil || string(got) != "after" {
		t.Fatalf("recv after the deadline: %q, %v", got, err)
	}
}

func TestSendBlockedCancel(t *testing.T) {
	path := newPath(t)
	p := peerListener(t, "listen-hold", path)
	c := dial(t, path, opts())
	p.Expect(t, "accepted", 10*time.Second)
	big := make([]byte, 1<<20) // more than the pipe holds: blocks
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Send(ctx, big); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send into a full pipe with a context deadline: %v", err)
	}
	c2 := dial(t, path, opts()) // the peer accepts only one: this one is never read either
	if err := c2.SetDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := c2.Send(context.Background(), big); !errors.Is(err, ipcerr.ErrTimeout) {
		t.Fatalf("send into a full pipe past the deadline: %v", err)
	}
}

func TestCloseLocal(t *testing.T) {
	path := newPath(t)
	l := listen(t, path, opts())
	c := dial(t, path, opts())
	s := accept(t, l)
	errc := make(chan error, 1)
	go func() {
		_, err := s.Recv(context.Background(), nil)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked recv on Close: %v", err)
	}
	if err := s.Send(context.Background(), nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("send after Close: %v", err)
	}
	if _, err := c.Recv(ctxFor(t, 5*time.Second), nil); err != io.EOF {
		t.Fatalf("peer's recv after Close: %v", err)
	}
}

func TestMessageTooLarge(t *testing.T) {
	path := newPath(t)
	big := opts()
	small := opts()
	small.MaxMessageSize = 1000
	l := listen(t, path, small)
	c := dial(t, path, big)
	s := accept(t, l)
	if err := s.Send(context.Background(), make([]byte, 1001)); !errors.Is(err, ipcerr.ErrMessageTooLarge) {
		t.Fatalf("send above the limit: %v", err)
	}
	if err := c.Send(context.Background(), make([]byte, 1001)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(ctxFor(t, 5*time.Second), nil); !errors.Is(err, ipcerr.ErrMessageTooLarge) {
		t.Fatalf("recv above the limit: %v", err)
	}
}

func TestPermissions(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	path := newPath(t)
	o := opts()
	o.Perm = 0o640
	l := listen(t, path, o)
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != os.ModeNamedPipe|0o640 {
		t.Fatalf("control FIFO mode %v, want %v", st.Mode(), os.ModeNamedPipe|0o640)
	}
	l.Close()

	// The connection FIFOs a client makes have its Perm. A fake listener
	// (a control FIFO that nobody answers) lets them be seen.
	ctl := fakeControl(t, path)
	co := opts()
	co.Perm = 0o660
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := fifo.Dial(ctx, path, co)
		done <- err
	}()
	req := readRequest(t, ctl)
	base := path + "." + hex.EncodeToString(req[8:24])
	for _, name := range []string{base + ".c2s", base + ".s2c"} {
		st, err := os.Lstat(name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != os.ModeNamedPipe|0o660 {
			t.Errorf("%s: mode %v, want %v", name, st.Mode(), os.ModeNamedPipe|0o660)
		}
	}
	// A Dial that gives up removes its FIFOs (newPath checks).
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled dial: %v", err)
	}
}

// fakeControl makes a control FIFO at path that the test reads itself.
func fakeControl(t *testing.T, path string) *os.File {
	t.Helper()
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readRequest(t *testing.T, ctl *os.File) []byte {
	t.Helper()
	req := make([]byte, fifo.ReqSize)
	_ = ctl.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(ctl, req); err != nil {
		t.Fatal(err)
	}
	if string(req[:4]) != "IPCF" || req[4] != fifo.Version {
		t.Fatalf("request %x", req)
	}
	return req
}

func TestVersionMismatch(t *testing.T) {
	path := newPath(t)
	ctl := fakeControl(t, path)
	done := make(chan error, 1)
	go func() {
		_, err := fifo.Dial(ctxFor(t, 10*time.Second), path, opts())
		done <- err
	}()
	req := readRequest(t, ctl)
	base := path + "." + hex.EncodeToString(req[8:24])
	w, err := os.OpenFile(base+".s2c", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte{'I', 'P', 'C', 'A', fifo.Version + 1, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ipcerr.ErrVersion) {
		t.Fatalf("dial answered by another version: %v", err)
	}

	// And a listener answers a request of another version with its own.
	l := listen(t, filepath.Join(filepath.Dir(path), "real"), opts())
	_ = l
	real := filepath.Join(filepath.Dir(path), "real")
	id := strings.Repeat("ab", 16)
	rbase := real + "." + id
	for _, n := range []string{rbase + ".c2s", rbase + ".s2c"} {
		if err := unix.Mkfifo(n, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(n) })
	}
	r, err := unix.Open(rbase+".s2c", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(r)
	cw, err := os.OpenFile(rbase+".c2s", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cw.Close()
	bad := make([]byte, fifo.ReqSize)
	copy(bad, "IPCF")
	bad[4], bad[5] = fifo.Version+1, 1
	idb, _ := hex.DecodeString(id)
	copy(bad[8:], idb)
	writeControl(t, real, bad)
	// Before the listener opens it, the FIFO reads as empty and ended:
	// wait for data with poll(2).
	ans := make([]byte, fifo.AckSize)
	pfd := []unix.PollFd{{Fd: int32(r), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 10000); n != 1 || err != nil {
		t.Fatalf("poll: %d, %v", n, err)
	}
	if n, err := unix.Read(r, ans); n != len(ans) || err != nil {
		t.Fatalf("read the answer: %d, %v", n, err)
	}
	if string(ans[:4]) != "IPCA" || ans[4] != fifo.Version || ans[5] == 0 {
		t.Fatalf("answer to a request of another version: %x", ans)
	}
}

func writeControl(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// TestGarbageOnControl: bytes that are not requests (a misaligned write)
// make the listener drop what it has buffered; clients repeat their
// requests, so Dial still succeeds.
func TestGarbageOnControl(t *testing.T) {
	path := newPath(t)
	l := listen(t, path, opts())
	writeControl(t, path, []byte("garbage, not a request"))
	c := dial(t, path, opts())
	s := accept(t, l)
	if err := c.Send(context.Background(), []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Recv(ctxFor(t, 5*time.Second), nil); err != nil || string(got) != "ok" {
		t.Fatalf("recv: %q, %v", got, err)
	}
}

func TestAddrInUseAndStale(t *testing.T) {
	path := newPath(t)
	l := listen(t, path, opts())
	if _, err := fifo.Listen(path, opts()); !errors.Is(err, ipcerr.ErrAddrInUse) {
		t.Fatalf("second Listen: %v, want ErrAddrInUse", err)
	}
	l.Close()

	// A FIFO nobody reads is stale: replaced.
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fifo.Dial(ctxFor(t, 5*time.Second), path, opts()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial of a stale FIFO: %v, want ECONNREFUSED", err)
	}
	l = listen(t, path, opts())
	l.Close()

	// Something else at the path is never removed.
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fifo.Listen(path, opts()); !errors.Is(err, ipcerr.ErrAddrInUse) {
		t.Fatalf("Listen over a regular file: %v, want ErrAddrInUse", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
		t.Fatalf("the regular file: %q, %v", b, err)
	}
	os.Remove(path)

	if _, err := fifo.Dial(ctxFor(t, 5*time.Second), path, opts()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dial of a missing path: %v", err)
	}
}

// TestCleanup: Listener.Close removes the control FIFO and the connection
// FIFOs of clients that died before being answered; a connection leaves no
// name behind once it is up.
func TestCleanup(t *testing.T) {
	path := newPath(t)
	l := listen(t, path, opts())
	c := dial(t, path, opts())
	s := accept(t, l)
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("with one connection up the directory holds %d entries, want only the control FIFO", len(ents))
	}
	leftover := path + "." + strings.Repeat("0f", 16)
	for _, n := range []string{leftover + ".c2s", leftover + ".s2c"} {
		if err := unix.Mkfifo(n, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	s.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Accept(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	// newPath's cleanup fails the test if anything is left.
}

// TestDroppedRequest: a listener that removes a client's pair without
// answering (it could not open it) makes Dial fail at once, not hang.
func TestDroppedRequest(t *testing.T) {
	path := newPath(t)
	ctl := fakeControl(t, path)
	done := make(chan error, 1)
	go func() {
		_, err := fifo.Dial(ctxFor(t, 10*time.Second), path, opts())
		done <- err
	}()
	req := readRequest(t, ctl)
	base := path + "." + hex.EncodeToString(req[8:24])
	os.Remove(base + ".c2s")
	os.Remove(base + ".s2c")
	select {
	case err := <-done:
		if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "dropped") {
			t.Fatalf("dial: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("dial still waiting after the listener dropped its request")
	}
}
