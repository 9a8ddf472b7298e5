//go:build linux

package posixmq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/frame"
	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/transport"
)

func TestMain(m *testing.M) {
	ipctest.Main(m, ipctest.Peers{
		"dial-echo":    peerDialEcho,
		"dial-hold":    peerDialHold,
		"dial-prio":    peerDialPrio,
		"listen-echo":  peerListenEcho,
		"listen-hold":  peerListenHold,
		"rlimit-dial":  peerRlimitDial,
		"nobody-limit": peerNobodyLimit,
	})
}

// opts are small queues (1 KiB messages): the queues of one user share
// RLIMIT_MSGQUEUE (800 KiB by default), and tests of other packages may
// run at the same time.
func opts() *transport.Options {
	return &transport.Options{MaxMessageSize: 64 << 20, Perm: 0o600, QueueDepth: 10, QueueMsgSize: 1024}
}

func peerLife() { time.AfterFunc(60*time.Second, func() { os.Exit(3) }) }

func echo(c transport.Conn) error {
	var buf []byte
	for {
		m, prio, err := c.(*Conn).RecvPriority(context.Background(), buf)
		if err != nil {
			return err
		}
		if err := c.(*Conn).SendPriority(context.Background(), m, prio); err != nil {
			return err
		}
		buf = m
	}
}

func peerOpts(args []string) *transport.Options {
	o := opts()
	if len(args) > 1 {
		o.QueueMsgSize, _ = strconv.Atoi(args[1])
	}
	return o
}

func peerDial(args []string) (transport.Conn, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, args[0], peerOpts(args))
	if err != nil {
		return nil, ipctest.Fail("dial: %v", err)
	}
	return c, 0
}

// peerDialEcho dials args[0] (message size args[1]) and echoes each message
// with its priority until EOF.
func peerDialEcho(args []string) int {
	peerLife()
	c, code := peerDial(args)
	if c == nil {
		return code
	}
	fmt.Println("ready")
	if err := echo(c); err != io.EOF {
		return ipctest.Fail("echo: %v", err)
	}
	return 0
}

// peerDialHold dials and reads nothing until killed.
func peerDialHold(args []string) int {
	peerLife()
	c, code := peerDial(args)
	if c == nil {
		return code
	}
	defer c.Close()
	fmt.Println("ready")
	select {}
}

// peerDialPrio dials, then sends the messages described by args[2:] as
// "priority:size" and says "sent" once they are all queued.
func peerDialPrio(args []string) int {
	peerLife()
	c, code := peerDial(args)
	if c == nil {
		return code
	}
	defer c.Close()
	fmt.Println("ready")
	for i, a := range args[2:] {
		ps, ns, _ := strings.Cut(a, ":")
		p, _ := strconv.Atoi(ps)
		n, _ := strconv.Atoi(ns)
		if err := c.(*Conn).SendPriority(context.Background(), pattern(n, i), uint(p)); err != nil {
			return ipctest.Fail("send: %v", err)
		}
	}
	fmt.Println("sent")
	_, err := c.Recv(context.Background(), nil) // until the test closes
	if err != io.EOF {
		return ipctest.Fail("recv: %v", err)
	}
	return 0
}

// peerListenEcho listens at args[0] and echoes on every connection.
func peerListenEcho(args []string) int {
	peerLife()
	l, err := Listen(args[0], peerOpts(args))
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

// peerListenHold listens, accepts one connection and holds it unread.
func peerListenHold(args []string) int {
	peerLife()
	l, err := Listen(args[0], peerOpts(args))
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

// peerRlimitDial lowers its RLIMIT_MSGQUEUE to args[1] bytes and dials
// args[0] with 8 KiB messages; it prints the error.
func peerRlimitDial(args []string) int {
	n, _ := strconv.Atoi(args[1])
	if err := unix.Setrlimit(unix.RLIMIT_MSGQUEUE, &unix.Rlimit{Cur: uint64(n), Max: uint64(n)}); err != nil {
		return ipctest.Fail("setrlimit: %v", err)
	}
	o := opts()
	o.QueueMsgSize = 8192
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, args[0], o)
	if err == nil {
		c.Close()
		fmt.Println("ok")
		return 0
	}
	fmt.Printf("%v | emfile=%t\n", err, errors.Is(err, unix.EMFILE))
	return 0
}

// peerNobodyLimit, run as an unprivileged user, listens with args[1]-byte
// queue messages and prints the error.
func peerNobodyLimit(args []string) int {
	o := opts()
	o.QueueMsgSize, _ = strconv.Atoi(args[1])
	l, err := Listen(args[0], o)
	if err == nil {
		l.Close()
		fmt.Println("ok")
		return 0
	}
	fmt.Printf("%v | badconfig=%t\n", err, errors.Is(err, ipcerr.ErrBadConfig))
	return 0
}

var seq atomic.Int64

// queueName returns a queue name unique to the test, and removes whatever
// the name left when the test ends (a listener killed -9 leaves its
// queue and lock file). It then checks that no queue of the test remains.
func queueName(t *testing.T) string {
	name := fmt.Sprintf("/ipct-%d-%d", os.Getpid(), seq.Add(1))
	t.Cleanup(func() {
		_ = mqUnlink(name)
		_ = os.Remove(lockPath(name))
		leftovers(t, name)
	})
	return name
}

// leftovers fails t if /dev/shm holds files of name's connections.
func leftovers(t *testing.T, name string) {
	ents, _ := os.ReadDir(lockDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".ipc-mq-"+name[1:]+".") {
			t.Errorf("left behind: %s", e.Name())
			os.Remove(filepath.Join(lockDir, e.Name()))
		}
	}
}

func exists(name string) bool {
	fd, err := mqOpen(name, unix.O_RDONLY|unix.O_NONBLOCK, 0, nil)
	if err == nil {
		unix.Close(fd)
		return true
	}
	if err != unix.ENOENT {
		panic(err)
	}
	return false
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func listen(t *testing.T, name string, o *transport.Options) transport.Listener {
	t.Helper()
	l, err := Listen(name, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func accept(t *testing.T, l transport.Listener) *Conn {
	t.Helper()
	c, err := l.Accept(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*Conn)
}

func dial(t *testing.T, name string, o *transport.Options) *Conn {
	t.Helper()
	c, err := Dial(ctxFor(t, 10*time.Second), name, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*Conn)
}

func peerListener(t *testing.T, peer, name string, args ...string) *ipctest.Peer {
	t.Helper()
	p := ipctest.StartPeer(t, peer, append([]string{name}, args...)...)
	p.Expect(t, "listening", 10*time.Second)
	return p
}

func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed)
	}
	return b
}

func roundTrip(t *testing.T, c *Conn, sizes []int) {
	t.Helper()
	ctx := ctxFor(t, 15*time.Second)
	var buf []byte
	for i, n := range sizes {
		want := pattern(n, i)
		prio := uint(i % 4)
		if err := c.SendPriority(ctx, want, prio); err != nil {
			t.Fatalf("send %d bytes: %v", n, err)
		}
		got, gp, err := c.RecvPriority(ctx, buf)
		if err != nil {
			t.Fatalf("recv %d bytes: %v", n, err)
		}
		if !bytes.Equal(got, want) || gp != prio {
			t.Fatalf("message %d: got %d bytes prio %d, want %d bytes prio %d (or contents differ)", i, len(got), gp, n, prio)
		}
		buf = got
	}
}

// Sizes around the frame payload of 1 KiB queues (1016 bytes).
var sizes = []int{0, 1, 7, 8, 9, 1015, 1016, 1017, 2031, 2032, 2033, 10 * 1016, 10*1016 + 1, 65536, 1<<20 + 3}

func TestBothWaysBoundaries(t *testing.T) {
	name := queueName(t)
	l := listen(t, name, opts())
	p := ipctest.StartPeer(t, "dial-echo", name)
	s := accept(t, l)
	p.Expect(t, "ready", 10*time.Second)
	roundTrip(t, s, sizes)

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

// TestLarge: 16 MiB messages are split into frames of the queue's message
// size and reassembled.
func TestLarge(t *testing.T) {
	for _, size := range []int{1024, 8192} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			name := queueName(t)
			o := opts()
			o.QueueMsgSize = size
			peerListener(t, "listen-echo", name, strconv.Itoa(size))
			c := dial(t, name, o)
			start := time.Now()
			roundTrip(t, c, []int{16 << 20})
			t.Logf("16 MiB round trip in %d-byte queue messages: %v", size, time.Since(start))
		})
	}
}

func TestSecondClient(t *testing.T) {
	name := queueName(t)
	peerListener(t, "listen-echo", name)
	a := dial(t, name, opts())
	b := dial(t, name, opts())
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
	roundTrip(t, b, []int{10, 5000})
}

// TestPriorities: messages queued together come out highest priority
// first, equal priorities in order, multi-frame messages included.
func TestPriorities(t *testing.T) {
	name := queueName(t)
	l := listen(t, name, opts())
	// 3 frames (prio 1), 1, 1, 2 frames (prio 7), 1 (prio 7), 1 (prio 0): 9 queue messages <= depth 10.
	p := ipctest.StartPeer(t, "dial-prio", name, "1024", "1:2500", "3:10", "5:20", "7:1500", "7:30", "0:40")
	s := accept(t, l)
	p.Expect(t, "ready", 10*time.Second)
	p.Expect(t, "sent", 10*time.Second)
	want := []struct {
		prio uint
		i, n int
	}{{7, 3, 1500}, {7, 4, 30}, {5, 2, 20}, {3, 1, 10}, {1, 0, 2500}, {0, 5, 40}}
	for _, w := range want {
		got, prio, err := s.RecvPriority(ctxFor(t, 5*time.Second), nil)
		if err != nil {
			t.Fatal(err)
		}
		if prio != w.prio || !bytes.Equal(got, pattern(w.n, w.i)) {
			t.Fatalf("got %d bytes with priority %d, want message %d (%d bytes) with priority %d", len(got), prio, w.i, w.n, w.prio)
		}
	}
}

// TestPriorityOvertakesFrames: a higher-priority message that arrives while
// a multi-frame message is half received comes out first and intact, and
// the interrupted message follows intact.
func TestPriorityOvertakesFrames(t *testing.T) {
	// With no buffer, and with one that holds every message: the
	// interrupted message is then begun in the caller's buffer, and must
	// leave it before the other message is returned there.
	for _, bufCap := range []int{0, 4096} {
		t.Run(fmt.Sprintf("buf%d", bufCap), func(t *testing.T) { testPriorityOvertakesFrames(t, bufCap) })
	}
}

// putFrame writes a frame straight into c's sending queue, as the Send of
// c would, so that tests control the interleaving exactly.
func putFrame(t *testing.T, c *Conn, h frame.Header, payload []byte, prio uint) {
	t.Helper()
	b := make([]byte, frame.HeaderSize+len(payload))
	h.Put(b)
	copy(b[frame.HeaderSize:], payload)
	if err := c.w.raw.Write(func(fd uintptr) bool {
		if err := mqSend(fd, b, prio, nil); err != 0 {
			t.Errorf("mq_send: %v", err)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
}

// waitTaken waits until s has taken every message of its receiving queue.
func waitTaken(t *testing.T, s *Conn) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		a, err := mqGetAttr(uintptr(rawFd(t, s.r)))
		if err != nil {
			t.Fatal(err)
		}
		if a.CurMsgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the receiver never took its messages")
		}
		time.Sleep(time.Millisecond)
	}
}

// scribble overwrites the whole array of b, as a caller reusing its buffer
// may.
func scribble(b []byte) {
	b = b[:cap(b)]
	for i := range b {
		b[i] = 0xEE
	}
}

func testPriorityOvertakesFrames(t *testing.T, bufCap int) {
	name := queueName(t)
	l := listen(t, name, opts())
	c := dial(t, name, opts())
	s := accept(t, l)
	put := func(h frame.Header, payload []byte, prio uint) { putFrame(t, c, h, payload, prio) }
	low1, low2 := pattern(1000, 1), pattern(500, 2)
	high := pattern(700, 3)
	put(frame.Header{Len: len(low1), More: true}, low1, 1)
	type result struct {
		b    []byte
		prio uint
		err  error
	}
	res := make(chan result, 2)
	go func() {
		buf := make([]byte, 0, bufCap)
		for range 2 {
			b, p, err := s.RecvPriority(ctxFor(t, 10*time.Second), buf)
			res <- result{bytes.Clone(b), p, err}
			scribble(b)
			buf = b[:0]
		}
	}()
	waitTaken(t, s) // the receiver has the first frame
	put(frame.Header{Len: 400, More: true}, high[:400], 9)
	put(frame.Header{Len: 300}, high[400:], 9)
	put(frame.Header{Len: len(low2)}, low2, 1)
	r := <-res
	if r.err != nil || r.prio != 9 || !bytes.Equal(r.b, high) {
		t.Fatalf("first: %d bytes prio %d, %v; want the priority 9 message", len(r.b), r.prio, r.err)
	}
	r = <-res
	if r.err != nil || r.prio != 1 || !bytes.Equal(r.b, append(low1, low2...)) {
		t.Fatalf("second: %d bytes prio %d, %v; want the priority 1 message", len(r.b), r.prio, r.err)
	}
}

// TestReassemblyInBuf: a message of several frames is assembled in the
// caller's buffer when it has room (the frames after the first received in
// place), grows out of it when it has not, and never stays there across
// calls: a Recv cut short, or an abandoned message, leaves the buffer to
// the caller.
func TestReassemblyInBuf(t *testing.T) {
	name := queueName(t)
	l := listen(t, name, opts())
	c := dial(t, name, opts())
	s := accept(t, l)
	ctx := ctxFor(t, 10*time.Second)
	const chunk = 1024 - frame.HeaderSize
	for i, n := range []int{2 * chunk, 2*chunk + 1, 5000, 9 * chunk, 9*chunk + 7} {
		for _, extra := range []int{-1, 0, 1, frame.HeaderSize, 2000} {
			want := pattern(n, i+extra)
			buf := make([]byte, 3, n+extra)
			go func() { _ = c.Send(ctx, want) }()
			got, err := s.Recv(ctx, buf)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%d bytes in a buffer of %d: got %d bytes, %v", n, n+extra, len(got), err)
			}
			if in := sameArray(got, buf); in != (extra >= 0) {
				t.Errorf("%d bytes in a buffer of %d: in the buffer %t", n, n+extra, in)
			}
		}
	}

	// Cut short after two frames: the next Recv, with the same buffer
	// scribbled over, still returns the whole message.
	put := func(h frame.Header, payload []byte, prio uint) { putFrame(t, c, h, payload, prio) }
	msg := pattern(3*chunk, 7)
	buf := make([]byte, 0, 8192)
	put(frame.Header{Len: chunk, More: true}, msg[:chunk], 1)
	put(frame.Header{Len: chunk, More: true}, msg[chunk:2*chunk], 1)
	short, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := s.Recv(short, buf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("recv of an incomplete message: %v", err)
	}
	scribble(buf)
	put(frame.Header{Len: chunk}, msg[2*chunk:], 1)
	if got, err := s.Recv(ctx, buf); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("recv after the interrupted one: %d bytes, %v", len(got), err)
	}

	// Abandoned by its sender: the buffer holds the next message.
	put(frame.Header{Len: chunk, More: true}, msg[:chunk], 2)
	put(frame.Header{Len: chunk, More: true}, msg[chunk:2*chunk], 2)
	put(frame.Header{More: true}, nil, 2)
	put(frame.Header{Len: 3}, []byte("new"), 2)
	if got, err := s.Recv(ctx, buf); err != nil || string(got) != "new" {
		t.Fatalf("recv after an abandoned message: %.20q, %v", got, err)
	}
}

func rawFd(t *testing.T, s *side) uintptr {
	var fd uintptr
	if err := s.raw.Control(func(f uintptr) { fd = f }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestInterruptedSendDropped: a Send stopped by its deadline between frames
// never delivers a truncated message: the next Send makes the receiver drop
// the frames it got.
func TestInterruptedSendDropped(t *testing.T) {
	name := queueName(t)
	l := listen(t, name, opts())
	c := dial(t, name, opts())
	s := accept(t, l)
	big := pattern(30*1016, 5) // 30 frames, the queue holds 10
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Send(ctx, big); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send into a full queue: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.SendPriority(ctxFor(t, 10*time.Second), []byte("next"), 0) }()
	got, err := s.Recv(ctxFor(t, 10*time.Second), nil)
	if err != nil || string(got) != "next" {
		t.Fatalf("recv after an interrupted send: %d bytes %.20q, %v; want \"next\"", len(got), got, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestClientKilled(t *testing.T) {
	name := queueName(t)
	l := listen(t, name, opts())
	p := ipctest.StartPeer(t, "dial-hold", name)
	s := accept(t, l)
	p.Expect(t, "ready", 10*time.Second)
	errc := make(chan error, 1)
	go func() {
		_, err := s.Recv(ctxFor(t, 10*time.Second), nil)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let Recv wait
	p.Kill()
	start := time.Now()
	if err := <-errc; err != io.EOF {
		t.Fatalf("blocked recv after the peer was killed: %v, want io.EOF", err)
	}
	t.Logf("blocked Recv: io.EOF %v after the kill", time.Since(start))
	// Send into the queue no one reads: once full, io.EOF.
	ctx := ctxFor(t, 10*time.Second)
	var err error
	for i := 0; err == nil && i < 100; i++ {
		err = s.Send(ctx, []byte("x"))
	}
	if err != io.EOF {
		t.Fatalf("send to the killed peer: %v, want io.EOF", err)
	}
}

func TestListenerKilled(t *testing.T) {
	name := queueName(t)
	p := peerListener(t, "listen-hold", name)
	c := dial(t, name, opts())
	p.Expect(t, "accepted", 10*time.Second)
	// Messages sent before the death are still delivered: fill the
	// listener's queue, which it does not read.
	errc := make(chan error, 1)
	go func() {
		for {
			if err := c.Send(ctxFor(t, 15*time.Second), make([]byte, 100)); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	p.Kill()
	start := time.Now()
	if _, err := c.Recv(ctxFor(t, 10*time.Second), nil); err != io.EOF {
		t.Fatalf("recv after the listener was killed: %v, want io.EOF", err)
	}
	select {
	case err := <-errc:
		if err != io.EOF {
			t.Fatalf("blocked send after the listener was killed: %v, want io.EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocked send still blocked after the listener was killed")
	}
	t.Logf("io.EOF %v after the kill", time.Since(start))
	// The dead listener's control queue and lock file are stale: a new
	// listener takes the name over.
	<-p.Done()
	if !exists(name) {
		t.Fatal("the killed listener's queue is gone; the test proves nothing")
	}
	l := listen(t, name, opts())
	l.Close()
	if exists(name) {
		t.Fatal("control queue left after Close")
	}
}

func TestDeadlinesAndCancel(t *testing.T) {
	name := queueName(t)
	l := listen(t, name, opts())
	c := dial(t, name, opts())
	s := accept(t, l)

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if _, err := s.Recv(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("recv with a cancelled context: %v", err)
	}
	t.Logf("cancel noticed after %v", time.Since(start))
	if err := s.SetDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(context.Background(), nil); !errors.Is(err, ipcerr.ErrTimeout) || !transport.IsTimeout(err) {
		t.Fatalf("recv past the deadline: %v", err)
	}
	if err := s.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	// A deadline set while a Recv waits applies to it.
	errc := make(chan error, 1)
	go func() {
		_, err := s.Recv(context.Background(), nil)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := s.SetDeadline(time.Now().Add(30 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ipcerr.ErrTimeout) {
			t.Fatalf("waiting recv after SetDeadline: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SetDeadline did not reach a waiting Recv")
	}
	if err := s.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}

	// Send on a full queue: the peer (c) does not read.
	for i := 0; i < 10; i++ {
		if err := s.Send(context.Background(), []byte("fill")); err != nil {
			t.Fatal(err)
		}
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := s.Send(ctx2, []byte("more")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send on a full queue with a context deadline: %v", err)
	}
	if err := s.SetDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), []byte("more")); !errors.Is(err, ipcerr.ErrTimeout) {
		t.Fatalf("send on a full queue past the deadline: %v", err)
	}
	if err := s.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	// Still usable in both directions.
	if err := c.Send(ctxFor(t, 5*time.Second), []byte("after")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Recv(ctxFor(t, 5*time.Second), nil); err != nil || string(got) != "after" {
		t.Fatalf("recv after the deadlines: %q, %v", got, err)
	}
	for range 10 {
		if got, err := c.Recv(ctxFor(t, 5*time.Second), nil); err != nil || string(got) != "fill" {
			t.Fatalf("client recv: %q, %v", got, err)
		}
	}
}

func TestCloseLocal(t *testing.T) {
	name := queueName(t)
	l := listen(t, name, opts())
	c := dial(t, name, opts())
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
	if err := s.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Recv(ctxFor(t, 5*time.Second), nil); err != io.EOF {
		t.Fatalf("peer's recv after Close: %v", err)
	}
}

func TestMessageTooLargeAndCorrupt(t *testing.T) {
	name := queueName(t)
	small := opts()
	small.MaxMessageSize = 3000
	l := listen(t, name, small)
	c := dial(t, name, opts())
	s := accept(t, l)
	if err := s.Send(context.Background(), make([]byte, 3001)); !errors.Is(err, ipcerr.ErrMessageTooLarge) {
		t.Fatalf("send above the limit: %v", err)
	}
	if err := s.SendPriority(context.Background(), nil, MaxPriority+1); err == nil {
		t.Fatal("send with a priority above the maximum succeeded")
	}
	if err := c.Send(context.Background(), make([]byte, 3001)); err != nil { // 3 frames
		t.Fatal(err)
	}
	if _, err := s.Recv(ctxFor(t, 5*time.Second), nil); !errors.Is(err, ipcerr.ErrMessageTooLarge) {
		t.Fatalf("recv above the limit: %v", err)
	}

	// Garbage in a queue: a typed error, sticky.
	name2 := queueName(t)
	l2 := listen(t, name2, opts())
	c2 := dial(t, name2, opts())
	s2 := accept(t, l2)
	if err := c2.w.raw.Write(func(fd uintptr) bool { _ = mqSend(fd, []byte("not a frame"), 0, nil); return true }); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s2.Recv(ctxFor(t, 5*time.Second), nil); !errors.Is(err, ipcerr.ErrCorruptFrame) {
			t.Fatalf("recv of garbage: %v", err)
		}
	}
}

// TestPermissions: the control queue and a client's queues have exactly the
// Perm asked for, whatever the umask (fstat on a queue descriptor gives its
// mode).
func TestPermissions(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	name := queueName(t)
	o := opts()
	o.Perm = 0o640
	listen(t, name, o)
	if m := queueMode(t, name); m != 0o640 {
		t.Fatalf("control queue mode %o, want 640", m)
	}
	if st, err := os.Stat(lockPath(name)); err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("lock file: %v, %v", st.Mode(), err)
	}

	// A fake listener that never answers lets the client's queues be seen.
	fake := queueName(t)
	lock, ctl := fakeListener(t, fake)
	defer lock.Close()
	co := opts()
	co.Perm = 0o660
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Dial(ctx, fake, co)
		done <- err
	}()
	id := readRequest(t, ctl)
	for _, q := range []string{connQueue(fake, id, "c2s"), connQueue(fake, id, "s2c")} {
		if m := queueMode(t, q); m != 0o660 {
			t.Errorf("%s: mode %o, want 660", q, m)
		}
	}
	if st, err := os.Stat(livePath(fake, id)); err != nil || st.Mode().Perm() != 0o660 {
		t.Errorf("liveness file: %v, %v", st.Mode(), err)
	}
	// A Dial that gives up removes its queues and file.
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled dial: %v", err)
	}
	for _, q := range []string{connQueue(fake, id, "c2s"), connQueue(fake, id, "s2c")} {
		if exists(q) {
			t.Errorf("%s left after a cancelled Dial", q)
		}
	}
}

func queueMode(t *testing.T, name string) os.FileMode {
	t.Helper()
	fd, err := mqOpen(name, unix.O_RDONLY|unix.O_NONBLOCK, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return os.FileMode(st.Mode & 0o777)
}

// fakeListener holds name's lock and control queue without answering.
func fakeListener(t *testing.T, name string) (*os.File, *pollQueue) {
	t.Helper()
	lock, err := takeListenerLock(name, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(lockPath(name)) })
	fd, err := mqOpen(name, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NONBLOCK, 0o600, &attr{MaxMsg: 10, MsgSize: ReqSize})
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := newPollQueue(fd, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.f.Close() })
	return lock, ctl
}

// readRequest reads one request from a fake listener's queue and returns
// its id.
func readRequest(t *testing.T, ctl *pollQueue) string {
	t.Helper()
	buf := make([]byte, ReqSize)
	_ = ctl.f.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := ctl.recv(buf)
	if err != nil {
		t.Fatalf("read request: %v", err)
	}
	if n != ReqSize || string(buf[:4]) != reqMagic || buf[4] != Version {
		t.Fatalf("request %x", buf[:n])
	}
	return fmt.Sprintf("%x", buf[8:8+idLen])
}

// TestDroppedRequest: a listener that removes a client's queues without
// answering (it could not open them) makes Dial fail at once, not hang.
func TestDroppedRequest(t *testing.T) {
	name := queueName(t)
	lock, ctl := fakeListener(t, name)
	defer lock.Close()
	done := make(chan error, 1)
	go func() {
		_, err := Dial(ctxFor(t, 10*time.Second), name, opts())
		done <- err
	}()
	id := readRequest(t, ctl)
	_ = mqUnlink(connQueue(name, id, "c2s"))
	_ = mqUnlink(connQueue(name, id, "s2c"))
	select {
	case err := <-done:
		if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "dropped") {
			t.Fatalf("dial: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("dial still waiting after the listener dropped its request")
	}
}

func TestVersionMismatch(t *testing.T) {
	name := queueName(t)
	lock, ctl := fakeListener(t, name)
	defer lock.Close()
	done := make(chan error, 1)
	go func() {
		_, err := Dial(ctxFor(t, 10*time.Second), name, opts())
		done <- err
	}()
	id := readRequest(t, ctl)
	fd, err := mqOpen(connQueue(name, id, "s2c"), unix.O_WRONLY|unix.O_NONBLOCK, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	ack := []byte{'I', 'P', 'C', 'K', Version + 1, 0, 0, 0}
	if err := mqSend(uintptr(fd), ack, MaxPriority, nil); err != 0 {
		t.Fatal(err)
	}
	unix.Close(fd)
	if err := <-done; !errors.Is(err, ipcerr.ErrVersion) {
		t.Fatalf("dial answered by another version: %v", err)
	}
}

func TestAddrInUseAndStale(t *testing.T) {
	name := queueName(t)
	l := listen(t, name, opts())
	if _, err := Listen(name, opts()); !errors.Is(err, ipcerr.ErrAddrInUse) {
		t.Fatalf("second Listen: %v, want ErrAddrInUse", err)
	}
	l.Close()
	if _, err := Dial(ctxFor(t, 5*time.Second), name, opts()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial without a listener: %v, want ECONNREFUSED", err)
	}
	// A queue without a live listener (no lock held) is stale: replaced.
	fd, err := mqOpen(name, unix.O_RDONLY|unix.O_CREAT|unix.O_NONBLOCK, 0o600, &attr{MaxMsg: 1, MsgSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if _, err := Dial(ctxFor(t, 5*time.Second), name, opts()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial of a stale queue: %v, want ECONNREFUSED", err)
	}
	l = listen(t, name, opts())
	roundTripLocal(t, l, name)
}

func roundTripLocal(t *testing.T, l transport.Listener, name string) {
	t.Helper()
	c := dial(t, name, opts())
	s := accept(t, l)
	if err := c.Send(context.Background(), []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Recv(ctxFor(t, 5*time.Second), nil); err != nil || string(got) != "ping" {
		t.Fatalf("recv: %q, %v", got, err)
	}
}

// TestCleanup: once a connection is up its names are gone; Listener.Close
// removes the control queue, the lock file and what dead clients left.
func TestCleanup(t *testing.T) {
	name := queueName(t)
	l := listen(t, name, opts())
	c := dial(t, name, opts())
	s := accept(t, l)
	// A client that died before its request was answered: an unlocked
	// liveness file and its queues.
	id := strings.Repeat("0f", idLen)
	if err := os.WriteFile(livePath(name, id), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{connQueue(name, id, "c2s"), connQueue(name, id, "s2c")} {
		fd, err := mqOpen(q, unix.O_RDONLY|unix.O_CREAT|unix.O_NONBLOCK, 0o600, &attr{MaxMsg: 1, MsgSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
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
		t.Fatalf("accept after Close: %v", err)
	}
	for _, q := range []string{name, connQueue(name, id, "c2s"), connQueue(name, id, "s2c")} {
		if exists(q) {
			t.Errorf("queue %s left after Close", q)
		}
	}
	if _, err := os.Stat(lockPath(name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file after Close: %v", err)
	}
	// queueName's cleanup checks /dev/shm for liveness files.
}

// TestLimits: attributes beyond the kernel's limits give ErrBadConfig
// naming the limit; the per-user byte limit gives EMFILE with an
// explanation.
func TestLimits(t *testing.T) {
	name := queueName(t)
	sizeMax := sysLimit("msgsize_max")
	o := opts()
	o.QueueMsgSize = hardSizeMax + 1 // beyond even the hard limit
	_, err := Listen(name, o)
	if !errors.Is(err, ipcerr.ErrBadConfig) || !strings.Contains(err.Error(), strconv.Itoa(sizeMax)) {
		t.Fatalf("Listen with QueueMsgSize %d: %v", o.QueueMsgSize, err)
	}
	t.Logf("%v", err)
	o = opts()
	o.QueueDepth = hardMsgMax + 1
	if _, err := Listen(name, o); !errors.Is(err, ipcerr.ErrBadConfig) {
		t.Fatalf("Listen with QueueDepth %d: %v", o.QueueDepth, err)
	}
	// A client's attributes are checked when it creates its queues.
	l := listen(t, name, opts())
	_ = l
	o = opts()
	o.QueueMsgSize = sizeMax + 1
	_, err = Dial(ctxFor(t, 5*time.Second), name, o)
	if hasCap(unix.CAP_SYS_RESOURCE) {
		t.Logf("with CAP_SYS_RESOURCE, QueueMsgSize %d: %v", o.QueueMsgSize, err)
	} else if !errors.Is(err, ipcerr.ErrBadConfig) {
		t.Fatalf("Dial with QueueMsgSize above msgsize_max without CAP_SYS_RESOURCE: %v", err)
	}

	// RLIMIT_MSGQUEUE, lowered in a peer: EMFILE with an explanation.
	p := ipctest.StartPeer(t, "rlimit-dial", name, "1000")
	line := p.Line(t, 10*time.Second)
	if !strings.HasSuffix(line, "emfile=true") || !strings.Contains(line, "RLIMIT_MSGQUEUE") {
		t.Fatalf("dial beyond RLIMIT_MSGQUEUE: %s", line)
	}
	t.Log(line)
}

// TestLimitsUnprivileged: as root, run the check as nobody, for whom the
// limits of /proc/sys/fs/mqueue always apply.
func TestLimitsUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a peer as nobody")
	}
	name := queueName(t)
	// The test binary sits in a directory only root may enter: run a copy.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ipc-mq-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyExe := filepath.Join(dir, "peer.test")
	if err := os.WriteFile(copyExe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := ipctest.Command("nobody-limit", name, strconv.Itoa(sysLimit("msgsize_max")+1))
	cmd.Path, cmd.Args[0], cmd.Dir = copyExe, copyExe, dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	p := ipctest.Start(t, cmd)
	line := p.Line(t, 10*time.Second)
	if !strings.HasSuffix(line, "badconfig=true") || !strings.Contains(line, "msgsize_max "+strconv.Itoa(sysLimit("msgsize_max"))) {
		t.Fatalf("unprivileged Listen above msgsize_max: %s", line)
	}
	t.Log(line)
}

func TestBadNames(t *testing.T) {
	long := "/" + strings.Repeat("n", 230)
	if _, err := Listen(long, opts()); !errors.Is(err, ipcerr.ErrBadAddress) {
		t.Fatalf("Listen with a long name: %v", err)
	}
	if _, err := Dial(context.Background(), "/a/b", opts()); !errors.Is(err, ipcerr.ErrBadAddress) {
		t.Fatalf("Dial with a slash: %v", err)
	}
}

// blockedCalls starts, on s, a Recv on its empty queue and a Send on its
// full one (the peer reads nothing), each with ctx, lets them wait for
// after, and returns where their results arrive.
func blockedCalls(t *testing.T, s *Conn, ctx context.Context, after time.Duration) (recv, send <-chan error) {
	t.Helper()
	if after < slice {
		// Busy queues: the calls begin their waits in the kernel.
		s.r.act.BusyFor(time.Hour)
		s.w.act.BusyFor(time.Hour)
	}
	for range 10 {
		if err := s.Send(ctxFor(t, 5*time.Second), []byte("fill")); err != nil {
			t.Fatal(err)
		}
	}
	r, w := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := s.Recv(ctx, nil)
		r <- err
	}()
	go func() { w <- s.Send(ctx, []byte("more")) }()
	time.Sleep(after)
	return r, w
}

// bounded waits for a blocked call to return after what ended it, and
// checks its error. A call notices at once in the poller, at the end of
// its slice in the kernel; the bound leaves room for a loaded machine.
func bounded(t *testing.T, what string, errc <-chan error, start time.Time, want error) {
	t.Helper()
	select {
	case err := <-errc:
		d := time.Since(start)
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", what, err, want)
		}
		if d > 500*time.Millisecond {
			t.Errorf("%s: returned %v after, want at most about %v (the slice)", what, d, slice)
		}
		t.Logf("%s: returned %v after", what, d.Round(10*time.Microsecond))
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still blocked after 5s", what)
	}
}

// TestBlockedCallsEnd: Close, the cancellation of the context and
// SetDeadline end a Recv and a Send that wait, whether still in the kernel
// (1 ms, less than a slice) or already in the poller (30 ms); after the
// last two the connection stays usable.
func TestBlockedCallsEnd(t *testing.T) {
	for _, after := range []time.Duration{time.Millisecond, 30 * time.Millisecond} {
		t.Run(fmt.Sprintf("close/%v", after), func(t *testing.T) {
			name := queueName(t)
			l := listen(t, name, opts())
			dial(t, name, opts())
			s := accept(t, l)
			recv, send := blockedCalls(t, s, context.Background(), after)
			start := time.Now()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Errorf("Close took %v: it must not wait for the blocked calls", d)
			}
			bounded(t, "Recv", recv, start, net.ErrClosed)
			bounded(t, "Send", send, start, net.ErrClosed)
		})
		for _, how := range []string{"cancel", "setdeadline"} {
			t.Run(fmt.Sprintf("%s/%v", how, after), func(t *testing.T) {
				name := queueName(t)
				l := listen(t, name, opts())
				c := dial(t, name, opts())
				s := accept(t, l)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				recv, send := blockedCalls(t, s, ctx, after)
				start := time.Now()
				want := error(context.Canceled)
				if how == "cancel" {
					cancel()
				} else {
					s.SetDeadline(time.Now())
					want = ipcerr.ErrTimeout
				}
				bounded(t, "Recv", recv, start, want)
				bounded(t, "Send", send, start, want)
				s.SetDeadline(time.Time{})
				// Still usable: the queued messages are all "fill", the
				// Send that was ended sent nothing.
				for range 10 {
					if got, err := c.Recv(ctxFor(t, 5*time.Second), nil); err != nil || string(got) != "fill" {
						t.Fatalf("client recv: %q, %v", got, err)
					}
				}
				roundTripConns(t, c, s)
				roundTripConns(t, s, c)
			})
		}
	}
}

// roundTripConns sends a message from a to b.
func roundTripConns(t *testing.T, a, b *Conn) {
	t.Helper()
	ctx := ctxFor(t, 5*time.Second)
	if err := a.Send(ctx, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Recv(ctx, nil); err != nil || string(got) != "ping" {
		t.Fatalf("recv: %q, %v", got, err)
	}
}

// TestDeadlineWithinSlice: a deadline nearer than the end of the slice,
// SetDeadline's or the context's, is the kernel's timeout: the call ends
// at it, not at the end of the slice, and never before it.
func TestDeadlineWithinSlice(t *testing.T) {
	name := queueName(t)
	l := listen(t, name, opts())
	dial(t, name, opts())
	s := accept(t, l)
	until := func() time.Time { return time.Unix(s.r.until.Unix()) }
	near := func(what string, got, want time.Time) {
		t.Helper()
		if d := got.Sub(want); d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("%s: timeout %v, want %v", what, got.Format(time.StampMicro), want.Format(time.StampMicro))
		}
	}
	bg := context.Background()

	// What arm gives the kernel.
	start := time.Now()
	if err := s.r.arm(bg, &s.dl); err != nil {
		t.Fatal(err)
	}
	if got := until(); got.Before(start.Add(slice).Truncate(time.Microsecond)) || got.After(time.Now().Add(slice)) {
		t.Errorf("no deadline: timeout %v, want a slice from now", got.Format(time.StampMicro))
	}
	dl := time.Now().Add(slice / 3)
	s.SetDeadline(dl)
	if err := s.r.arm(bg, &s.dl); err != nil {
		t.Fatal(err)
	}
	near("SetDeadline", until(), dl)
	s.SetDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(bg, slice/2)
	defer cancel()
	cdl, _ := ctx.Deadline()
	if err := s.r.arm(ctx, &s.dl); err != nil {
		t.Fatal(err)
	}
	near("context deadline", until(), cdl)
	s.SetDeadline(time.Now().Add(-time.Millisecond))
	if err := s.r.arm(bg, &s.dl); !errors.Is(err, ipcerr.ErrTimeout) {
		t.Errorf("arm past SetDeadline: %v", err)
	}
	s.SetDeadline(time.Time{})
	past, cancel2 := context.WithDeadline(bg, time.Now().Add(-time.Millisecond))
	defer cancel2()
	if err := s.r.arm(past, &s.dl); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("arm past the context's deadline: %v", err)
	}

	// And the calls, on a busy queue that stays empty (the waits begin in
	// the kernel): they end at their deadline, never before.
	s.r.act.BusyFor(time.Hour)
	// "Never before" is checked against the deadline itself: a start time
	// read after the deadline was set is later than the deadline's base.
	for _, d := range []time.Duration{slice / 3, slice + slice/2, 3*slice + 1} {
		start := time.Now()
		dl := start.Add(d)
		s.SetDeadline(dl)
		_, err := s.Recv(bg, nil)
		end := time.Now()
		took := end.Sub(start)
		if !errors.Is(err, ipcerr.ErrTimeout) || end.Before(dl) {
			t.Errorf("Recv with a deadline %v ahead: %v after %v", d, err, took)
		}
		t.Logf("Recv with a deadline %v ahead: timeout after %v", d, took.Round(10*time.Microsecond))
		s.SetDeadline(time.Time{})
		start = time.Now()
		ctx, cancel := context.WithTimeout(bg, d)
		cdl, _ := ctx.Deadline()
		_, err = s.Recv(ctx, nil)
		end = time.Now()
		took = end.Sub(start)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || end.Before(cdl) {
			t.Errorf("Recv with a context of %v: %v after %v", d, err, took)
		}
		t.Logf("Recv with a context of %v: deadline exceeded after %v", d, took.Round(10*time.Microsecond))
	}
}

// TestIdleWaitInPoller: a Recv on a queue that was not busy a moment ago
// waits in the poller from the start, holding no thread; after it got its
// message the queue counts as busy.
func TestIdleWaitInPoller(t *testing.T) {
	name := queueName(t)
	l := listen(t, name, opts())
	c := dial(t, name, opts())
	s := accept(t, l)
	got := make(chan error, 1)
	go func() {
		m, err := s.Recv(ctxFor(t, 5*time.Second), nil)
		if err == nil && string(m) != "hi" {
			err = fmt.Errorf("got %q", m)
		}
		got <- err
	}()
	inPoll := func() bool {
		s.r.mu.Lock()
		defer s.r.mu.Unlock()
		return s.r.pf != nil
	}
	// In the kernel the call would stay a slice (5 ms) before it went to
	// the poller; the first look is well within it on an idle machine,
	// and the test does not depend on it.
	start := time.Now()
	for !inPoll() {
		if time.Since(start) > 5*time.Second {
			t.Fatal("Recv not in the poller after 5 s")
		}
		time.Sleep(100 * time.Microsecond)
	}
	if s.r.act.Busy() {
		t.Error("a new connection counts as busy")
	}
	if err := c.Send(ctxFor(t, 5*time.Second), []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if !s.r.act.Busy() {
		t.Error("the queue does not count as busy right after a wait")
	}
}

// TestBlockedCallKeepsDescriptor: what once relies on. A call in progress
// through the RawConn (here one that waits on a channel, as a call waits in
// the kernel) holds the descriptor: Close returns without waiting for it,
// yet the number stays open on the same queue until the call returns, and
// is closed after.
func TestBlockedCallKeepsDescriptor(t *testing.T) {
	name := queueName(t)
	l := listen(t, name, opts())
	dial(t, name, opts())
	s := accept(t, l)
	fd := int(rawFd(t, s.r))
	var before unix.Stat_t
	if err := unix.Fstat(fd, &before); err != nil {
		t.Fatal(err)
	}
	entered, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- s.r.raw.Read(func(uintptr) bool {
			close(entered)
			<-release
			return true
		})
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("Close waited for the call in progress")
	}
	var during unix.Stat_t
	if err := unix.Fstat(fd, &during); err != nil || during.Ino != before.Ino || during.Dev != before.Dev {
		t.Errorf("descriptor %d under a call in progress after Close: %v, inode %d, want %d", fd, err, during.Ino, before.Ino)
	}
	if err := s.r.raw.Read(func(uintptr) bool { return true }); err == nil {
		t.Error("a new call on the closed queue went through")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var after unix.Stat_t
	if err := unix.Fstat(fd, &after); err == nil && after.Ino == before.Ino && after.Dev == before.Dev {
		t.Errorf("descriptor %d still open on the queue after the last call returned", fd)
	}
}

// TestNoAllocs: Send and Recv allocate nothing once the Conn is set up, for
// a message of one frame, and for one of several, received in the
// caller's buffer. (The messages fit in the queue: nothing waits, which
// would give the peer's goroutine the processor in the middle.)
func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	name := queueName(t)
	l := listen(t, name, opts())
	c := dial(t, name, opts())
	s := accept(t, l)
	bg := context.Background()
	buf := make([]byte, 0, 64<<10)
	for _, n := range []int{64, 9 * (1024 - frame.HeaderSize)} { // 1 and 9 frames; the queue holds 10
		msg := pattern(n, 1)
		if allocs := testing.AllocsPerRun(100, func() {
			if err := c.Send(bg, msg); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Recv(bg, buf); err != nil || len(got) != n {
				t.Fatalf("recv: %d bytes, %v", len(got), err)
			}
		}); allocs != 0 {
			t.Errorf("%d-byte Send and Recv: %v allocations", n, allocs)
		}
	}
}
