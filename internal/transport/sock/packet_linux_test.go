package sock_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/frame"
	"github.com/ipcgo/ipc/internal/transport"
	"github.com/ipcgo/ipc/internal/transport/sock"
)

// rawPacketServer listens with the net package at a unixpacket path and
// returns the first connection, raw, and the address.
func rawPacketServer(t *testing.T) (accept func() *net.UnixConn, addr string) {
	t.Helper()
	addr, path := sockAddr(t, "unixpacket")
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return func() *net.UnixConn {
		l.SetDeadline(time.Now().Add(10 * time.Second))
		c, err := l.AcceptUnix()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}, addr
}

func packetConn(t testing.TB, c ipc.Conn) *sock.PacketConn {
	t.Helper()
	pc, ok := c.(interface{ Unwrap() transport.Conn }).Unwrap().(*sock.PacketConn)
	if !ok {
		t.Fatalf("%T is not a packet connection", c)
	}
	return pc
}

func header(n int, more bool) []byte {
	var h [frame.HeaderSize]byte
	frame.Header{Len: n, More: more}.Put(h[:])
	return h[:]
}

// TestPacketSplit sends a 16 MiB message and reads the packets raw: each is
// one frame, the first of FirstPacket payload bytes and the others of at
// most PacketSize, "more" on all but the last, and together they are the
// message.
func TestPacketSplit(t *testing.T) {
	accept, addr := rawPacketServer(t)
	ctx := ctxT(t)
	c, err := ipc.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw := accept()
	msg := pattern(16<<20, 5)
	wait := run(t, func() {
		if err := c.Send(ctx, msg); err != nil {
			t.Error(err)
		}
	})
	var got []byte
	buf := make([]byte, 32<<20)
	packets := 0
	for {
		n, _, flags, _, err := raw.ReadMsgUnix(buf, nil)
		if err != nil {
			t.Fatal(err)
		}
		if flags&0x20 != 0 { // MSG_TRUNC
			t.Fatalf("packet %d larger than %d bytes", packets, len(buf))
		}
		packets++
		h, err := frame.Parse(buf[:n], 1<<30)
		if err != nil || n != frame.HeaderSize+h.Len {
			t.Fatalf("packet %d of %d bytes: header %+v, %v", packets, n, h, err)
		}
		if packets == 1 && h.Len != sock.FirstPacket {
			t.Fatalf("first packet of %d payload bytes, want %d", h.Len, sock.FirstPacket)
		}
		got = append(got, buf[frame.HeaderSize:n]...)
		if !h.More {
			break
		}
	}
	wait()
	sameBytes(t, got, msg)
	size := packetConn(t, c).PacketSize()
	if want := 1 + (len(msg)-sock.FirstPacket+size-1)/size; packets != want {
		t.Fatalf("%d packets of at most %d bytes for %d bytes, want %d", packets, size, len(msg), want)
	}
	t.Logf("16 MiB in %d packets of up to %d payload bytes", packets, size)
}

// TestPacketReassembly sends hand-made frames and checks what Recv makes
// of them: a message in several packets, then corrupt packets.
func TestPacketReassembly(t *testing.T) {
	accept, addr := rawPacketServer(t)
	ctx := ctxT(t)
	c, err := ipc.Dial(ctx, addr, &ipc.Config{MaxMessageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw := accept()
	send := func(pkts ...[]byte) {
		t.Helper()
		for _, p := range pkts {
			if _, err := raw.Write(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	recvErr := func(want error) {
		t.Helper()
		for range 2 { // and it stays
			if m, err := c.Recv(ctx, nil); !errors.Is(err, want) {
				t.Fatalf("Recv: %q, %v; want %v", m, err, want)
			}
		}
	}
	cat := func(a, b []byte) []byte { return append(append([]byte{}, a...), b...) }

	send(cat(header(3, true), []byte("abc")), cat(header(0, true), nil), cat(header(2, false), []byte("de")))
	send(cat(header(0, false), nil), cat(header(1000, false), make([]byte, 1000)))
	for _, want := range []string{"abcde", "", string(make([]byte, 1000))} {
		if m, err := c.Recv(ctx, nil); err != nil || string(m) != want {
			t.Fatalf("Recv: %d bytes, %v; want %d", len(m), err, len(want))
		}
	}

	// Too large in total, though each packet fits.
	send(cat(header(600, true), make([]byte, 600)), cat(header(600, false), make([]byte, 600)))
	recvErr(ipc.ErrMessageTooLarge)

	for _, bad := range [][]byte{
		cat(header(100, false), make([]byte, 50)), // shorter than its header says
		cat(header(10, false), make([]byte, 50)),  // longer
		// A first packet above FirstPacket (the protocol's bound) loses
		// its tail when read; the header may be honest.
		cat(header(sock.FirstPacket+1, false), make([]byte, sock.FirstPacket+1)),
		{frame.Magic, frame.Version, 0}, // a piece of a header
		cat([]byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0}, []byte("junk")),
	} {
		c2, err := ipc.Dial(ctx, addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		c, raw = c2, accept()
		send(bad)
		recvErr(ipc.ErrCorruptFrame)
		c2.Close()
	}
}

// TestPacketRecvTimeoutMidMessage: a deadline that passes between the
// packets of a message does not lose the part already read.
func TestPacketRecvTimeoutMidMessage(t *testing.T) {
	accept, addr := rawPacketServer(t)
	ctx := ctxT(t)
	c, err := ipc.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw := accept()
	raw.Write(append(header(3, true), "abc"...))
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	buf := make([]byte, 0, 64)
	if _, err := c.Recv(short, buf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv with half a message: %v, want the context's error", err)
	}
	copy(buf[:cap(buf)], "XXXXXXXX") // the caller's buffer is its own again
	raw.Write(append(header(3, false), "def"...))
	if m, err := c.Recv(ctx, buf); err != nil || string(m) != "abcdef" {
		t.Fatalf("Recv: %q, %v; want the whole message", m, err)
	}
}

// TestPacketSizeLimits sends messages around the packet size.
func TestPacketSizeLimits(t *testing.T) {
	addr, _ := sockAddr(t, "unixpacket")
	s, c := pair(t, addr, nil, nil)
	ctx := ctxT(t)
	size := packetConn(t, c).PacketSize()
	first := sock.FirstPacket
	for _, n := range []int{0, 1, first - 1, first, first + 1, first + size - 1, first + size, first + size + 1, 2 * size, 2*size + 1} {
		msg := pattern(n, byte(n))
		wait := run(t, func() {
			if err := c.Send(ctx, msg); err != nil {
				t.Error(err)
			}
		})
		got, err := s.Recv(ctx, nil)
		wait()
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		sameBytes(t, got, msg)
	}
	t.Logf("packet payload: %d bytes at first, %d after sending", size, packetConn(t, c).PacketSize())
}

// TestPacketShrinks: when the kernel refuses packets as large as the
// connection thought (here SO_SNDBUF is lowered behind its back), Send
// shrinks them and the message still arrives whole.
func TestPacketShrinks(t *testing.T) {
	addr, _ := sockAddr(t, "unixpacket")
	s, c := pair(t, addr, nil, nil)
	ctx := ctxT(t)
	pc := packetConn(t, c)
	sndbuf, err := sock.SetSndbuf(pc, 32<<10)
	if err != nil {
		t.Fatal(err)
	}
	before := pc.PacketSize()
	msg := pattern(1<<20, 7)
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
	if after := pc.PacketSize(); after+8 > sndbuf-32 || after >= before {
		t.Fatalf("packet payload %d, then %d, with SO_SNDBUF %d: want it shrunk to fit", before, after, sndbuf)
	}
}
