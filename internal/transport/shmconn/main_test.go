//go:build linux

package shmconn

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/mmap"
	"github.com/ipcgo/ipc/internal/transport"
	"github.com/ipcgo/ipc/shm"
)

func TestMain(m *testing.M) {
	ipctest.Main(m, peers)
}

// peerTimeout bounds every wait for a peer's line.
const peerTimeout = 8 * time.Second

var peers = ipctest.Peers{
	"echo":    peerEcho,
	"source":  peerSource,
	"sink":    peerSink,
	"hang":    peerHang,
	"garbage": peerGarbage,
}

// opts returns the defaults with the given ring size.
func opts(ring int) *transport.Options {
	return &transport.Options{MaxMessageSize: 64 << 20, Perm: 0o600, RingSize: ring, Spin: 50 * time.Microsecond}
}

// sockPath returns a fresh socket path, removed with its directory when t
// ends.
func sockPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "shmconn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// listen listens at a fresh path with o; the listener is closed when t
// ends.
func listen(t testing.TB, o *transport.Options) (*Listener, string) {
	t.Helper()
	path := sockPath(t)
	l, err := Listen(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, path
}

// pair returns a connected server and client in this process, closed when
// t ends.
func pair(t testing.TB, o *transport.Options) (srv, cli *Conn) {
	t.Helper()
	l, path := listen(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	type res struct {
		c   transport.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept(ctx)
		ch <- res{c, err}
	}()
	cli, err := Dial(ctx, path, o)
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		cli.Close()
		t.Fatal(r.err)
	}
	srv = r.c.(*Conn)
	t.Cleanup(func() { srv.Close(); cli.Close() })
	return srv, cli
}

// accept accepts one connection within peerTimeout.
func accept(t testing.TB, l *Listener) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	c, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*Conn)
}

// fill writes the deterministic contents of message seq into p.
func fill(p []byte, seq uint64) {
	x := seq*0x9E3779B97F4A7C15 + 1
	for i := 0; i+8 <= len(p); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		p[i], p[i+1], p[i+2], p[i+3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
		p[i+4], p[i+5], p[i+6], p[i+7] = byte(x>>32), byte(x>>40), byte(x>>48), byte(x>>56)
	}
	for i := len(p) &^ 7; i < len(p); i++ {
		p[i] = byte(seq) ^ byte(i)
	}
}

// sizeOf is the deterministic size of message seq: mostly small, often a
// few records, now and then up to limit.
func sizeOf(seq uint64, limit int) int {
	x := seq*0xBF58476D1CE4E5B9 + 7
	x ^= x >> 31
	switch x % 16 {
	case 0:
		return int(x>>8) % (limit + 1)
	case 1, 2:
		return int(x>>8) % (limit/16 + 1)
	}
	return int(x>>8) % 200
}

func check(t testing.TB, got []byte, seq uint64, want []byte) {
	t.Helper()
	fill(want, seq)
	if string(got) != string(want) {
		t.Fatalf("message %d: %d bytes, want %d; contents equal %t", seq, len(got), len(want), string(got) == string(want))
	}
}

func dialArgs(args []string) (*Conn, error) {
	ring, _ := strconv.Atoi(args[1])
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	return Dial(ctx, args[0], opts(ring))
}

// peerEcho dials args[0] (ring size args[1]), says "ready" and sends every
// message back until the connection ends.
func peerEcho(args []string) int {
	c, err := dialArgs(args)
	if err != nil {
		return ipctest.Fail("dial: %v", err)
	}
	defer c.Close()
	fmt.Println("ready")
	var buf []byte
	for {
		buf, err = c.Recv(context.Background(), buf)
		if err == io.EOF {
			return 0
		}
		if err != nil {
			return ipctest.Fail("recv: %v", err)
		}
		if err := c.Send(context.Background(), buf); err != nil {
			return ipctest.Fail("send: %v", err)
		}
	}
}

// peerSource dials, then sends args[2] messages of args[3] bytes (or of
// sizeOf sizes up to args[4] when args[3] is "random"), prints "sum <crc>"
// and waits for the connection to end.
func peerSource(args []string) int {
	c, err := dialArgs(args)
	if err != nil {
		return ipctest.Fail("dial: %v", err)
	}
	defer c.Close()
	n, _ := strconv.Atoi(args[2])
	size, _ := strconv.Atoi(args[3])
	limit, _ := strconv.Atoi(args[4])
	buf := make([]byte, max(size, limit))
	var sum uint32
	for seq := uint64(0); seq < uint64(n); seq++ {
		msg := buf[:size]
		if args[3] == "random" {
			msg = buf[:sizeOf(seq, limit)]
			fill(msg, seq)
			sum = crc32.Update(sum, crc32.IEEETable, msg)
		}
		if err := c.Send(context.Background(), msg); err != nil {
			return ipctest.Fail("send %d: %v", seq, err)
		}
	}
	fmt.Printf("sum %d\n", sum)
	_, err = c.Recv(context.Background(), nil)
	if err != io.EOF {
		return ipctest.Fail("recv at the end: %v", err)
	}
	return 0
}

// peerSink dials, receives messages until the connection ends and prints
// "got <count> <bytes>".
func peerSink(args []string) int {
	c, err := dialArgs(args)
	if err != nil {
		return ipctest.Fail("dial: %v", err)
	}
	defer c.Close()
	fmt.Println("ready")
	var n, bytes int
	var buf []byte
	for {
		buf, err = c.Recv(context.Background(), buf)
		if err == io.EOF {
			fmt.Printf("got %d %d\n", n, bytes)
			return 0
		}
		if err != nil {
			return ipctest.Fail("recv: %v", err)
		}
		n++
		bytes += len(buf)
	}
}

// peerHang dials, sends args[2] messages "m<i>", says "sent" and waits to
// be killed.
func peerHang(args []string) int {
	c, err := dialArgs(args)
	if err != nil {
		return ipctest.Fail("dial: %v", err)
	}
	n, _ := strconv.Atoi(args[2])
	for i := 0; i < n; i++ {
		if err := c.Send(context.Background(), []byte("m"+strconv.Itoa(i))); err != nil {
			return ipctest.Fail("send: %v", err)
		}
	}
	fmt.Println("sent")
	time.Sleep(time.Minute)
	return 0
}

// peerGarbage dials, sends one good message, then writes a bad record
// header straight into the memory of its sending ring and publishes it,
// says "done" and waits to be killed.
func peerGarbage(args []string) int {
	c, err := dialArgs(args)
	if err != nil {
		return ipctest.Fail("dial: %v", err)
	}
	if err := c.Send(context.Background(), []byte("good")); err != nil {
		return ipctest.Fail("send: %v", err)
	}
	if err := injectGarbage(c.seg, ringC2S); err != nil {
		return ipctest.Fail("inject: %v", err)
	}
	fmt.Println("done")
	time.Sleep(time.Minute)
	return 0
}

// injectGarbage writes a record header with a wrong magic at the producer
// index of ring name and publishes 16 more bytes.
func injectGarbage(seg *shm.Segment, name string) error {
	reg, err := seg.Lookup(name)
	if err != nil {
		return err
	}
	b := reg.Bytes()
	tail := mmap.Uint64(b, 128)
	t := tail.Load()
	capacity := uint64(len(b) - shm.RingHeaderSize)
	if t&(capacity-1)+16 > capacity {
		return errors.New("producer index too close to the end")
	}
	copy(b[shm.RingHeaderSize+int(t&(capacity-1)):], "\x05\x00\x00\x00\x01\x00GARBAGE!")
	tail.Store(t + 16)
	return nil
}
