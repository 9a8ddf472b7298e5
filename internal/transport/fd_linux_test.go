//go:build linux

package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/kwait"
)

// withKernelWait sets kernelWait for one test.
func withKernelWait(t *testing.T, d time.Duration) {
	old := kernelWait
	kernelWait = d
	t.Cleanup(func() { kernelWait = old })
}

func newFDPipe(t *testing.T) (r, w *FD) {
	t.Helper()
	r, w, err := Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// inPpoll reports whether a call waits in ppoll on d.
func inPpoll(d *FD) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiting > 0
}

// busy makes d's connection busy for the rest of the test: its waits
// begin in ppoll (while kwait has a place for them).
func busy(d *FD) { d.act.BusyFor(time.Hour) }

// inPoller reports whether o waits in the runtime poller.
func inPoller(o *fdOp) bool {
	o.d.mu.Lock()
	defer o.d.mu.Unlock()
	return o.pf != nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// fill fills w's pipe, so that the next write waits.
func fill(t *testing.T, w *FD) {
	t.Helper()
	b := make([]byte, 4096)
	for {
		_, _, e := unix.Syscall(unix.SYS_WRITE, w.f.Fd(), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e == unix.EAGAIN {
			return
		}
		if e != 0 {
			t.Fatal(e)
		}
	}
}

type call struct {
	n   int
	err error
	at  time.Duration
}

func start(f func() (int, error)) <-chan call {
	ch := make(chan call, 1)
	t0 := time.Now()
	go func() {
		n, err := f()
		ch <- call{n, err, time.Since(t0)}
	}()
	return ch
}

func get(t *testing.T, ch <-chan call) call {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(3 * time.Second): // far below the kernelWait of the tests that wait in ppoll
		t.Fatal("the call did not return")
	}
	return call{}
}

// TestFDNotInPoller checks that the descriptors of an FD stay out of the
// runtime poller (a deadline on the os.File is not supported) while the
// FD itself honours deadlines.
func TestFDNotInPoller(t *testing.T) {
	r, w := newFDPipe(t)
	if err := r.f.SetReadDeadline(time.Now()); !errors.Is(err, os.ErrNoDeadline) {
		t.Fatalf("os.File SetReadDeadline: %v, want ErrNoDeadline (not pollable)", err)
	}
	if fl, err := unix.FcntlInt(r.f.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Fatalf("flags %#x, %v: want O_NONBLOCK", fl, err)
	}
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 16)
	if n, err := r.Read(b); err != nil || string(b[:n]) != "hello" {
		t.Fatalf("Read: %q, %v", b[:n], err)
	}
	r.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) || !IsTimeout(err) {
		t.Fatalf("Read past the deadline, with data: %v, want a deadline error", err)
	}
}

// TestFDKickInPpoll checks that Close and the deadline setters end a wait
// in ppoll at once, long before the end of its slice.
func TestFDKickInPpoll(t *testing.T) {
	withKernelWait(t, time.Minute)
	b := make([]byte, 16)
	t.Run("close", func(t *testing.T) {
		r, _ := newFDPipe(t)
		busy(r)
		ch := start(func() (int, error) { return r.Read(b) })
		waitFor(t, "Read in ppoll", func() bool { return inPpoll(r) })
		r.Close()
		if c := get(t, ch); !errors.Is(c.err, os.ErrClosed) {
			t.Fatalf("Read: %v, want ErrClosed", c.err)
		}
		r.mu.Lock()
		kick := r.kick
		r.mu.Unlock()
		if kick != -1 {
			t.Errorf("kick eventfd %d still open after Close", kick)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		r, _ := newFDPipe(t)
		busy(r)
		ch := start(func() (int, error) { return r.Read(b) })
		waitFor(t, "Read in ppoll", func() bool { return inPpoll(r) })
		r.SetReadDeadline(time.Now())
		if c := get(t, ch); !errors.Is(c.err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read: %v, want ErrDeadlineExceeded", c.err)
		}
	})
	t.Run("deadline inside a slice", func(t *testing.T) {
		r, _ := newFDPipe(t)
		busy(r)
		r.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		c := get(t, start(func() (int, error) { return r.Read(b) }))
		if !errors.Is(c.err, os.ErrDeadlineExceeded) || c.at < 25*time.Millisecond {
			t.Fatalf("Read: %v after %v, want ErrDeadlineExceeded after 30ms", c.err, c.at)
		}
	})
	t.Run("write close", func(t *testing.T) {
		_, w := newFDPipe(t)
		busy(w)
		fill(t, w)
		ch := start(func() (int, error) { return w.Write(make([]byte, 100)) })
		waitFor(t, "Write in ppoll", func() bool { return inPpoll(w) })
		w.Close()
		if c := get(t, ch); !errors.Is(c.err, os.ErrClosed) || c.n != 0 {
			t.Fatalf("Write: %d, %v, want 0, ErrClosed", c.n, c.err)
		}
	})
	t.Run("write deadline partial", func(t *testing.T) {
		r, w := newFDPipe(t)
		busy(w)
		fill(t, w)
		ch := start(func() (int, error) { return w.writev2(make([]byte, 8), make([]byte, 1<<20)) })
		waitFor(t, "Write in ppoll", func() bool { return inPpoll(w) })
		full, err := unix.IoctlGetInt(int(r.f.Fd()), unix.TIOCINQ)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(make([]byte, 8192)); err != nil { // room for 2 pages
			t.Fatal(err)
		}
		// The writer fills them (however late it runs), then waits again.
		waitFor(t, "the writer to fill the room", func() bool {
			n, err := unix.IoctlGetInt(int(r.f.Fd()), unix.TIOCINQ)
			return err == nil && n == full
		})
		waitFor(t, "Write in ppoll again", func() bool { return inPpoll(w) })
		w.SetWriteDeadline(time.Now())
		c := get(t, ch)
		if !errors.Is(c.err, os.ErrDeadlineExceeded) || c.n != 8192 {
			t.Fatalf("Write: %d, %v, want 8192 bytes written, ErrDeadlineExceeded", c.n, c.err)
		}
	})
	t.Run("context", func(t *testing.T) {
		r, w := newFDPipe(t)
		busy(r)
		c := NewStreamConn(r, w, 1<<20, r, w)
		ctx, cancel := context.WithCancel(context.Background())
		ch := make(chan error, 1)
		go func() { _, err := c.Recv(ctx, nil); ch <- err }()
		waitFor(t, "Recv in ppoll", func() bool { return inPpoll(r) })
		cancel()
		select {
		case err := <-ch:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Recv: %v, want context.Canceled", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("Recv did not return")
		}
	})
}

// TestFDPoller checks that a wait goes on in the runtime poller after
// kernelWait, holding no thread, and that data, Close, deadlines and
// contexts end it there.
func TestFDPoller(t *testing.T) {
	withKernelWait(t, 2*time.Millisecond)
	b := make([]byte, 16)
	t.Run("data", func(t *testing.T) {
		r, w := newFDPipe(t)
		ch := start(func() (int, error) { return r.Read(b) })
		waitFor(t, "Read in the poller", func() bool { return inPoller(&r.rd) })
		if inPpoll(r) {
			t.Error("a Read in the poller still counts as waiting in ppoll")
		}
		// The goroutine parks in the poller, not in a system call (the flag
		// is set just before it gets there).
		buf := make([]byte, 1<<16)
		waitFor(t, "a goroutine parked in the poller", func() bool {
			return strings.Contains(string(buf[:runtimeStack(buf)]), "runtime_pollWait")
		})
		w.Write([]byte("abc"))
		if c := get(t, ch); c.err != nil || string(b[:c.n]) != "abc" {
			t.Fatalf("Read: %q, %v", b[:c.n], c.err)
		}
		if inPoller(&r.rd) {
			t.Error("the duplicate stays after the wait")
		}
	})
	t.Run("close", func(t *testing.T) {
		r, _ := newFDPipe(t)
		ch := start(func() (int, error) { return r.Read(b) })
		waitFor(t, "Read in the poller", func() bool { return inPoller(&r.rd) })
		r.Close()
		if c := get(t, ch); !errors.Is(c.err, os.ErrClosed) {
			t.Fatalf("Read: %v, want ErrClosed", c.err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		r, _ := newFDPipe(t)
		ch := start(func() (int, error) { return r.Read(b) })
		waitFor(t, "Read in the poller", func() bool { return inPoller(&r.rd) })
		r.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if c := get(t, ch); !errors.Is(c.err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read: %v, want ErrDeadlineExceeded", c.err)
		}
	})
	t.Run("write close", func(t *testing.T) {
		_, w := newFDPipe(t)
		fill(t, w)
		ch := start(func() (int, error) { return w.Write(make([]byte, 100)) })
		waitFor(t, "Write in the poller", func() bool { return inPoller(&w.wr) })
		w.Close()
		if c := get(t, ch); !errors.Is(c.err, os.ErrClosed) {
			t.Fatalf("Write: %v, want ErrClosed", c.err)
		}
	})
	t.Run("peer gone", func(t *testing.T) {
		r, w := newFDPipe(t)
		ch := start(func() (int, error) { return r.Read(b) })
		waitFor(t, "Read in the poller", func() bool { return inPoller(&r.rd) })
		w.Close()
		if c := get(t, ch); c.err != io.EOF {
			t.Fatalf("Read: %v, want io.EOF", c.err)
		}
	})
	t.Run("context", func(t *testing.T) {
		r, w := newFDPipe(t)
		c := NewStreamConn(r, w, 1<<20, r, w)
		ctx, cancel := context.WithCancel(context.Background())
		ch := make(chan error, 1)
		go func() { _, err := c.Recv(ctx, nil); ch <- err }()
		waitFor(t, "Recv in the poller", func() bool { return inPoller(&r.rd) })
		cancel()
		select {
		case err := <-ch:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Recv: %v, want context.Canceled", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("Recv did not return")
		}
		c.Close()
		if _, err := c.Recv(context.Background(), nil); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Recv after Close: %v", err)
		}
	})
}

// TestFDIdleWaitsInPoller: the wait of a connection that was not busy a
// moment ago goes to the poller at once, holding no thread, and once it
// has had its data the connection is busy: the next wait is in ppoll.
func TestFDIdleWaitsInPoller(t *testing.T) {
	withKernelWait(t, time.Minute) // a wait in ppoll would be seen there
	r, w := newFDPipe(t)
	b := make([]byte, 16)
	ch := start(func() (int, error) { return r.Read(b) })
	waitFor(t, "Read in the poller", func() bool { return inPoller(&r.rd) })
	w.Write([]byte("abc"))
	if c := get(t, ch); c.err != nil || string(b[:c.n]) != "abc" {
		t.Fatalf("Read: %q, %v", b[:c.n], c.err)
	}
	busy(r) // however late the next Read runs on a loaded machine
	ch = start(func() (int, error) { return r.Read(b) })
	waitFor(t, "the next Read in ppoll", func() bool { return inPpoll(r) })
	if inPoller(&r.rd) {
		t.Error("a busy connection's Read waits in the poller")
	}
	w.Write([]byte("de"))
	if c := get(t, ch); c.err != nil || string(b[:c.n]) != "de" {
		t.Fatalf("Read: %q, %v", b[:c.n], c.err)
	}
	if !r.act.Busy() {
		t.Error("the connection does not count as busy right after a wait")
	}
}

// TestFDWaitersBounded: when kwait.Max calls wait in their threads, the
// wait of a busy connection goes to the poller too; once a place is free,
// waits begin in ppoll again.
func TestFDWaitersBounded(t *testing.T) {
	withKernelWait(t, time.Minute)
	if kwait.Held() != 0 {
		t.Fatalf("%d kwait places held before the test", kwait.Held())
	}
	var fds []*FD
	for range kwait.Max {
		r, _ := newFDPipe(t)
		busy(r)
		fds = append(fds, r)
		go r.Read(make([]byte, 1)) // ends with ErrClosed when the test ends
		waitFor(t, "Read in ppoll", func() bool { return inPpoll(r) })
	}
	if kwait.Held() != int(kwait.Max) {
		t.Fatalf("%d places held by %d waits in ppoll", kwait.Held(), kwait.Max)
	}
	r, w := newFDPipe(t)
	busy(r)
	b := make([]byte, 16)
	ch := start(func() (int, error) { return r.Read(b) })
	waitFor(t, "the busy Read beyond the bound in the poller", func() bool { return inPoller(&r.rd) })
	w.Write([]byte("abc"))
	if c := get(t, ch); c.err != nil || string(b[:c.n]) != "abc" {
		t.Fatalf("Read: %q, %v", b[:c.n], c.err)
	}
	fds[0].Close()
	waitFor(t, "the place given back", func() bool { return kwait.Held() == int(kwait.Max)-1 })
	ch = start(func() (int, error) { return r.Read(b) })
	waitFor(t, "Read in ppoll", func() bool { return inPpoll(r) })
	w.Write([]byte("de"))
	if c := get(t, ch); c.err != nil || string(b[:c.n]) != "de" {
		t.Fatalf("Read: %q, %v", b[:c.n], c.err)
	}
	for _, d := range fds {
		d.Close()
	}
	waitFor(t, "every place given back", func() bool { return kwait.Held() == 0 })
}

// TestFDNoAllocs checks that Send and Recv over FDs allocate nothing.
func TestFDNoAllocs(t *testing.T) {
	r, w := newFDPipe(t)
	a := NewStreamConn(r, w, 1<<20, r, w)
	msg := make([]byte, 1000)
	buf := make([]byte, 0, 2000)
	ctx := context.Background()
	a.Send(ctx, msg)
	a.Recv(ctx, buf)
	a.SetDeadline(time.Now().Add(time.Hour))
	if n := testing.AllocsPerRun(100, func() {
		if err := a.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Recv(ctx, buf); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per Send and Recv", n)
	}
}

func runtimeStack(buf []byte) int { return runtime.Stack(buf, true) }

// newFDSocketPair returns the ends of a SOCK_SEQPACKET socket pair as FDs.
func newFDSocketPair(t *testing.T) (a, b *FD) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a, err = NewFD(p[0], "sock0"); err != nil {
		unix.Close(p[1])
		t.Fatal(err)
	}
	if b, err = NewFD(p[1], "sock1"); err != nil {
		a.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// sockMsg is a msghdr with one iovec on b, for RawRead and RawWrite.
type sockMsg struct {
	m   unix.Msghdr
	iov unix.Iovec
}

func (s *sockMsg) on(b []byte) unsafe.Pointer {
	s.iov.Base = &b[0]
	s.iov.SetLen(len(b))
	s.m.Iov = &s.iov
	s.m.SetIovlen(1)
	return unsafe.Pointer(&s.m)
}

// TestFDSocketRaw: RawWrite and RawRead make one sendmsg and recvmsg each,
// a RawRead waits for the packet, and neither allocates.
func TestFDSocketRaw(t *testing.T) {
	a, b := newFDSocketPair(t)
	busy(b)
	var sm, rm sockMsg
	out := []byte("packet")
	in := make([]byte, 64)
	done := make(chan error, 1)
	go func() {
		n, err := b.RawRead(unix.SYS_RECVMSG, rm.on(in), 0, len(in))
		if err == nil && string(in[:n]) != "packet" {
			err = errors.New("got " + string(in[:n]))
		}
		done <- err
	}()
	waitFor(t, "the read to wait", func() bool { return inPpoll(b) })
	if n, err := a.RawWrite(unix.SYS_SENDMSG, sm.on(out), unix.MSG_NOSIGNAL, len(out)); err != nil || n != len(out) {
		t.Fatalf("RawWrite: %d, %v", n, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := a.RawWrite(unix.SYS_SENDMSG, sm.on(out), unix.MSG_NOSIGNAL, len(out)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.RawRead(unix.SYS_RECVMSG, rm.on(in), 0, len(in)); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per RawWrite and RawRead", allocs)
	}
	// The peer gone: RawRead returns 0, no io.EOF (the caller decides).
	a.Close()
	if n, err := b.RawRead(unix.SYS_RECVMSG, rm.on(in), 0, len(in)); n != 0 || err != nil {
		t.Errorf("RawRead after the peer closed: %d, %v; want 0, nil", n, err)
	}
}

// TestFDSocketRawDeadlineClose: a RawRead waiting ends at its deadline,
// and at once on Close.
func TestFDSocketRawDeadlineClose(t *testing.T) {
	_, b := newFDSocketPair(t)
	busy(b)
	var rm sockMsg
	in := make([]byte, 64)
	b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := b.RawRead(unix.SYS_RECVMSG, rm.on(in), 0, len(in)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("RawRead past its deadline: %v", err)
	}
	b.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := b.RawRead(unix.SYS_RECVMSG, rm.on(in), 0, len(in))
		done <- err
	}()
	waitFor(t, "the read to wait", func() bool { return inPpoll(b) })
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("RawRead after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the RawRead")
	}
}

// TestFDSocketLeavePoll: a read waiting in the poller on a socket goes back
// to ppoll when the same FD writes, and still gets its data.
func TestFDSocketLeavePoll(t *testing.T) {
	withKernelWait(t, 50*time.Millisecond) // long enough to see it in ppoll again
	a, b := newFDSocketPair(t)
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64)
		n, err := a.Read(buf)
		if err == nil && string(buf[:n]) != "back" {
			err = errors.New("got " + string(buf[:n]))
		}
		done <- err
	}()
	waitFor(t, "the read to wait in the poller", func() bool { return inPoller(&a.rd) })
	if _, err := a.Write([]byte("out")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the read to leave the poller", func() bool { return !inPoller(&a.rd) && inPpoll(a) })
	buf := make([]byte, 64)
	if n, err := b.Read(buf); err != nil || string(buf[:n]) != "out" {
		t.Fatalf("peer read: %q, %v", buf[:n], err)
	}
	if _, err := b.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the read did not end")
	}
}
