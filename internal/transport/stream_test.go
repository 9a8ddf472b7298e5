package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/frame"
	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/ipctest"
)

func TestMain(m *testing.M) { ipctest.Main(m, nil) }

// socketPair returns two connected Unix stream sockets with small kernel
// buffers, closed when t ends.
func socketPair(t *testing.T, buf int) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	var cs [2]*net.UnixConn
	for i, fd := range fds {
		syscall.CloseOnExec(fd)
		if buf > 0 {
			syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, buf)
			syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, buf)
		}
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c.(*net.UnixConn)
		t.Cleanup(func() { cs[i].Close() })
	}
	return cs[0], cs[1]
}

// streamPair returns two StreamConns over a socket pair.
func streamPair(t *testing.T, max, buf int) (*StreamConn, *StreamConn, *net.UnixConn, *net.UnixConn) {
	t.Helper()
	a, b := socketPair(t, buf)
	return NewStreamConn(a, a, max, a), NewStreamConn(b, b, max, b), a, b
}

func msgOf(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ seed
	}
	return b
}

func TestStreamConnBasics(t *testing.T) {
	a, b, _, _ := streamPair(t, 1<<20, 0)
	ctx := context.Background()
	msgs := [][]byte{nil, []byte("x"), msgOf(512, 1), msgOf(513, 2), msgOf(1<<20, 3), {}}
	go func() {
		for _, m := range msgs {
			if err := a.Send(ctx, m); err != nil {
				t.Errorf("Send: %v", err)
			}
		}
	}()
	var buf []byte
	for i, want := range msgs {
		got, err := b.Recv(ctx, buf)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("message %d: %d bytes, %v; want %d bytes", i, len(got), err, len(want))
		}
		buf = got
	}
	if err := a.Send(ctx, make([]byte, 1<<20+1)); !errors.Is(err, ipcerr.ErrMessageTooLarge) {
		t.Fatalf("Send above max: %v", err)
	}
	// Close: blocked and later calls get net.ErrClosed, the peer io.EOF.
	errc := make(chan error, 1)
	go func() {
		_, err := a.Recv(ctx, nil)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked Recv after Close: %v", err)
	}
	for name, err := range map[string]error{
		"Send":        a.Send(ctx, nil),
		"SetDeadline": a.SetDeadline(time.Now()),
		"Close":       a.Close(),
		"Flush":       a.Flush(ctx),
	} {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: %v, want net.ErrClosed", name, err)
		}
	}
	if _, err := a.Recv(ctx, nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Recv after Close: %v", err)
	}
	if _, err := b.Recv(ctx, nil); err != io.EOF {
		t.Fatalf("Recv after the peer closed: %v, want io.EOF", err)
	}
	if err := b.Send(ctx, []byte("x")); err != nil && err != io.EOF {
		t.Fatalf("Send after the peer closed: %v, want nil or io.EOF", err)
	}
}

// TestStreamConnPeerGoneMidMessage: a peer that goes away in the middle of
// a frame is io.EOF, not io.ErrUnexpectedEOF.
func TestStreamConnPeerGoneMidMessage(t *testing.T) {
	_, b, ra, _ := streamPair(t, 100, 0)
	var hdr [frame.HeaderSize]byte
	frame.Header{Len: 50}.Put(hdr[:])
	ra.Write(append(hdr[:], "only part"...))
	ra.Close()
	if _, err := b.Recv(context.Background(), nil); err != io.EOF {
		t.Fatalf("Recv: %v, want io.EOF", err)
	}
}

// TestStreamConnInterrupted: a Send and a Recv cut short by their contexts
// in the middle of a message leave the connection usable: the next Send
// writes the rest of the frame first, the next Recv resumes the message,
// and both messages arrive whole and in order.
// TestStreamConnInterrupted runs over sockets (net.Buffers, writev through
// the net package) and over pipes (the transport's own writev).
func TestStreamConnInterrupted(t *testing.T) {
	t.Run("socket", func(t *testing.T) {
		a, b, _, _ := streamPair(t, 8<<20, 16<<10)
		testInterrupted(t, a, b)
	})
	t.Run("pipe", func(t *testing.T) {
		a, b := pipeStreams(t, 16<<10)
		if a.fw == nil && runtime.GOOS == "linux" {
			t.Fatal("a StreamConn over pipes does not write frames with writev")
		}
		testInterrupted(t, a, b)
	})
}

// pipeStreams returns two StreamConns over two pipes (FDs) of buf bytes
// each.
func pipeStreams(t *testing.T, buf int) (*StreamConn, *StreamConn) {
	t.Helper()
	ar, bw, err := Pipe()
	if err != nil {
		t.Fatal(err)
	}
	br, aw, err := Pipe()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*FD{ar, bw, br, aw} {
		setPipeSize(f.File(), buf)
	}
	a, b := NewStreamConn(ar, aw, 8<<20, ar, aw), NewStreamConn(br, bw, 8<<20, br, bw)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func testInterrupted(t *testing.T, a, b *StreamConn) {
	m1, m2 := msgOf(4<<20, 7), msgOf(3000, 9)

	// Nobody reads: the Send fills the socket buffers and times out with
	// part of its frame written.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := a.Send(ctx, m1)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send into full buffers: %v, want context.DeadlineExceeded", err)
	}
	a.wmu.Lock()
	tail := len(a.tail)
	a.wmu.Unlock()
	if tail == 0 || tail >= len(m1) {
		t.Fatalf("the interrupted Send kept %d bytes of its %d-byte frame", tail, len(m1)+frame.HeaderSize)
	}

	// The Recv gets what is buffered, then times out inside the message.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	got, err := b.Recv(ctx, nil)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv of a partial message: %d bytes, %v; want context.DeadlineExceeded", len(got), err)
	}
	if b.rd.Err() != nil {
		t.Fatalf("the interrupted Recv broke the reader: %v", b.rd.Err())
	}

	// A past deadline fails a Send before it writes anything: the rest of
	// m1 stays pending.
	a.SetDeadline(time.Unix(1, 0))
	if err := a.Send(context.Background(), m2); !IsTimeout(err) {
		t.Fatalf("Send with a passed deadline: %v", err)
	}
	a.SetDeadline(time.Time{})

	sent := make(chan error, 1)
	go func() { sent <- a.Send(context.Background(), m2) }()
	for i, want := range [][]byte{m1, m2} {
		got, err := b.Recv(context.Background(), nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("message %d after the interruptions: %d bytes, %v; want %d bytes", i, len(got), err, len(want))
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}

	// Flush completes a pending frame without sending a new one.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	err = a.Send(ctx, m1)
	cancel()
	if err == nil {
		t.Fatal("Send of 4 MiB into 16 KiB buffers with no reader succeeded")
	}
	flushed := make(chan error, 1)
	go func() { flushed <- a.Flush(context.Background()) }()
	if got, err := b.Recv(context.Background(), nil); err != nil || !bytes.Equal(got, m1) {
		t.Fatalf("after Flush: %d bytes, %v", len(got), err)
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(context.Background()); err != nil {
		t.Fatalf("Flush with nothing pending: %v", err)
	}
}

// TestStreamConnConcurrentSends: frames of concurrent Sends never
// interleave.
func TestStreamConnConcurrentSends(t *testing.T) {
	a, b, _, _ := streamPair(t, 1<<20, 0)
	const senders, each = 6, 200
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				m := binary.LittleEndian.AppendUint32([]byte{byte(s)}, uint32(i))
				m = append(m, msgOf((i*131+s)%5000, byte(s))...)
				if err := a.Send(context.Background(), m); err != nil {
					t.Errorf("Send: %v", err)
					return
				}
			}
		})
	}
	next := make([]int, senders)
	for range senders * each {
		m, err := b.Recv(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		s, i := int(m[0]), int(binary.LittleEndian.Uint32(m[1:]))
		if i != next[s] || !bytes.Equal(m[5:], msgOf((i*131+s)%5000, byte(s))) {
			t.Fatalf("sender %d: got message %d (%d bytes), want %d", s, i, len(m), next[s])
		}
		next[s]++
	}
	wg.Wait()
}

// TestStreamConnDeadline: SetDeadline applies to pending calls, a context
// that ends restores it, and the connection stays usable after a timeout
// at a message boundary.
func TestStreamConnDeadline(t *testing.T) {
	a, b, _, _ := streamPair(t, 1<<10, 0)
	errc := make(chan error, 1)
	go func() {
		_, err := a.Recv(context.Background(), nil)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	a.SetDeadline(time.Now().Add(30 * time.Millisecond))
	select {
	case err := <-errc:
		if !IsTimeout(err) || !errors.Is(err, ipcerr.ErrTimeout) {
			t.Fatalf("pending Recv: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SetDeadline did not reach a pending Recv")
	}

	// A context ending before the deadline: ctx.Err(), and the user's
	// deadline (none) is back afterwards.
	a.SetDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	_, err := a.Recv(ctx, nil)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv with a context deadline: %v", err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		b.Send(context.Background(), []byte("late"))
	}()
	if m, err := a.Recv(context.Background(), nil); err != nil || string(m) != "late" {
		t.Fatalf("Recv after the context's deadline: %q, %v (the descriptor's deadline was not restored?)", m, err)
	}
}

// TestWithContext covers the glue between contexts and descriptor
// deadlines on its own.
func TestWithContext(t *testing.T) {
	a, _ := socketPair(t, 0)
	var user Deadline
	// Already cancelled: op does not run.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	if err := WithContext(ctx, &user, a.SetReadDeadline, func() error { ran = true; return nil }); err != context.Canceled || ran {
		t.Fatalf("cancelled context: %v, ran %t", err, ran)
	}
	// No Done channel: op runs as is.
	if err := WithContext(context.Background(), &user, a.SetReadDeadline, func() error { return io.EOF }); err != io.EOF {
		t.Fatal(err)
	}
	// Cancelled during a blocking read: ctx.Err().
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	err := WithContext(ctx, &user, a.SetReadDeadline, func() error {
		_, err := a.Read(make([]byte, 1))
		return err
	})
	if err != context.Canceled {
		t.Fatalf("cancelled read: %v", err)
	}
	// The user's deadline was restored: a read now times out at it.
	user.Set(time.Now().Add(20 * time.Millisecond))
	a.SetReadDeadline(user.Get())
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	err = WithContext(ctx, &user, a.SetReadDeadline, func() error {
		_, err := a.Read(make([]byte, 1))
		return err
	})
	if !IsTimeout(err) || time.Since(start) > 5*time.Second {
		t.Fatalf("read with the user's deadline: %v after %v", err, time.Since(start))
	}
}

func TestErrorMaps(t *testing.T) {
	for _, c := range []struct {
		in, want error
	}{
		{nil, nil},
		{io.EOF, io.EOF},
		{fmt.Errorf("write: %w", syscall.EPIPE), io.EOF},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), io.EOF},
		{syscall.ENOTCONN, io.EOF},
		{syscall.EINVAL, syscall.EINVAL},
	} {
		if got := PeerGone(c.in); got != c.want {
			t.Errorf("PeerGone(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if Closed(os.ErrClosed) != net.ErrClosed || Closed(fmt.Errorf("x: %w", net.ErrClosed)) != net.ErrClosed || Closed(io.EOF) != io.EOF {
		t.Error("Closed maps wrongly")
	}
	if !IsTimeout(os.ErrDeadlineExceeded) || !IsTimeout(&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}) || IsTimeout(io.EOF) {
		t.Error("IsTimeout")
	}
}

func TestRegistry(t *testing.T) {
	if _, ok := Lookup("test-none"); ok {
		t.Fatal("Lookup of an unregistered scheme succeeded")
	}
	Register("test-scheme", Driver{Dial: func(context.Context, string, *Options) (Conn, error) { return nil, io.EOF }})
	d, ok := Lookup("test-scheme")
	if !ok || d.Dial == nil || d.Listen != nil {
		t.Fatalf("Lookup after Register: %+v, %t", d, ok)
	}
	if _, err := d.Dial(context.Background(), "", nil); err != io.EOF {
		t.Fatal(err)
	}
}
