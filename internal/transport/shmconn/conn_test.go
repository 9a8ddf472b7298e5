//go:build linux

package shmconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/ipctest"
)

var bg = context.Background()

func TestPingPongGoroutines(t *testing.T) {
	for _, spin := range []time.Duration{50 * time.Microsecond, 0} {
		t.Run("spin="+spin.String(), func(t *testing.T) {
			o := opts(4096)
			o.Spin = spin
			srv, cli := pair(t, o)
			done := make(chan error, 1)
			go func() {
				var buf []byte
				for {
					var err error
					buf, err = srv.Recv(bg, buf)
					if err != nil {
						if err == io.EOF {
							err = nil
						}
						done <- err
						return
					}
					if err := srv.Send(bg, buf); err != nil {
						done <- err
						return
					}
				}
			}()
			var in []byte
			for seq := uint64(0); seq < 3000; seq++ {
				msg := make([]byte, sizeOf(seq, 3*4096))
				fill(msg, seq)
				if err := cli.Send(bg, msg); err != nil {
					t.Fatalf("send %d: %v", seq, err)
				}
				var err error
				in, err = cli.Recv(bg, in)
				if err != nil {
					t.Fatalf("recv %d: %v", seq, err)
				}
				if !bytes.Equal(in, msg) {
					t.Fatalf("message %d came back as %d bytes (sent %d)", seq, len(in), len(msg))
				}
			}
			cli.Close()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("echo side: %v", err)
				}
			case <-time.After(peerTimeout):
				t.Fatal("echo side did not see the close")
			}
		})
	}
}

// TestStreamRandomSizes sends a stream of messages from 0 bytes to three
// times the ring, so that records wrap and large messages stream through,
// and checks each message and the checksum.
func TestStreamRandomSizes(t *testing.T) {
	srv, cli := pair(t, opts(4096))
	const n = 4000
	errc := make(chan error, 1)
	var sent uint32
	go func() {
		buf := make([]byte, 3*4096)
		for seq := uint64(0); seq < n; seq++ {
			msg := buf[:sizeOf(seq, len(buf))]
			fill(msg, seq)
			sent = crc32.Update(sent, crc32.IEEETable, msg)
			if err := cli.Send(bg, msg); err != nil {
				errc <- err
				return
			}
		}
		errc <- cli.Close()
	}()
	var got uint32
	var buf []byte
	want := make([]byte, 3*4096)
	for seq := uint64(0); ; seq++ {
		var err error
		buf, err = srv.Recv(bg, buf)
		if err == io.EOF {
			if seq != n {
				t.Fatalf("io.EOF after %d messages, want %d", seq, n)
			}
			break
		}
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		check(t, buf, seq, want[:sizeOf(seq, len(want))])
		got = crc32.Update(got, crc32.IEEETable, buf)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got != sent {
		t.Fatalf("checksum %#x, sender's %#x", got, sent)
	}
}

// TestLargeMessage sends 16 MiB through 64 KiB rings, both ways, and
// checks it arrives whole, also into a caller's buffer that is too small.
func TestLargeMessage(t *testing.T) {
	srv, cli := pair(t, opts(64<<10))
	msg := make([]byte, 16<<20)
	fill(msg, 42)
	errc := make(chan error, 1)
	go func() { errc <- cli.Send(bg, msg) }()
	got, err := srv.Recv(bg, make([]byte, 10))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("got %d bytes, want the %d sent", len(got), len(msg))
	}
	go func() { errc <- srv.Send(bg, msg[:9<<20]) }()
	got, err = cli.Recv(bg, got)
	if err != nil || !bytes.Equal(got, msg[:9<<20]) {
		t.Fatalf("reply: %d bytes, %v", len(got), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestCrossProcessEcho(t *testing.T) {
	l, path := listen(t, opts(64<<10))
	p := ipctest.StartPeer(t, "echo", path, strconv.Itoa(64<<10))
	c := accept(t, l)
	p.Expect(t, "ready", peerTimeout)
	if cr, err := c.PeerCred(); err != nil || cr.PID != p.Pid() || cr.UID != os.Getuid() {
		t.Fatalf("PeerCred %+v %v, want pid %d uid %d", cr, err, p.Pid(), os.Getuid())
	}
	ctx, cancel := context.WithTimeout(bg, 15*time.Second)
	defer cancel()
	var in []byte
	for seq := uint64(0); seq < 2000; seq++ {
		msg := make([]byte, sizeOf(seq, 1<<20))
		if seq == 1000 {
			msg = make([]byte, 16<<20) // larger than the ring, across processes
		}
		fill(msg, seq)
		if err := c.Send(ctx, msg); err != nil {
			t.Fatalf("send %d: %v", seq, err)
		}
		var err error
		if in, err = c.Recv(ctx, in); err != nil {
			t.Fatalf("recv %d: %v", seq, err)
		}
		if !bytes.Equal(in, msg) {
			t.Fatalf("message %d came back as %d bytes (sent %d)", seq, len(in), len(msg))
		}
	}
	c.Close()
	if err := p.Wait(t, peerTimeout); err != nil {
		t.Fatalf("echo peer: %v", err)
	}
}

// TestCrossProcessStream receives a stream of random sizes from a peer and
// compares the checksum.
func TestCrossProcessStream(t *testing.T) {
	l, path := listen(t, opts(16<<10))
	const n = 20000
	p := ipctest.StartPeer(t, "source", path, strconv.Itoa(16<<10), strconv.Itoa(n), "random", strconv.Itoa(64<<10))
	c := accept(t, l)
	ctx, cancel := context.WithTimeout(bg, 15*time.Second)
	defer cancel()
	var sum uint32
	var buf []byte
	want := make([]byte, 64<<10)
	for seq := uint64(0); seq < n; seq++ {
		var err error
		if buf, err = c.Recv(ctx, buf); err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		check(t, buf, seq, want[:sizeOf(seq, len(want))])
		sum = crc32.Update(sum, crc32.IEEETable, buf)
	}
	p.Expect(t, fmt.Sprintf("sum %d", sum), peerTimeout)
	c.Close()
	if err := p.Wait(t, peerTimeout); err != nil {
		t.Fatalf("source peer: %v", err)
	}
}

// TestPeerKilled: a peer killed -9 gives io.EOF, after the messages it
// sent, within a bounded time, on Recv and on Send.
func TestPeerKilled(t *testing.T) {
	l, path := listen(t, opts(4096))
	p := ipctest.StartPeer(t, "hang", path, "4096", "3")
	c := accept(t, l)
	p.Expect(t, "sent", peerTimeout)

	// A Recv blocked on the empty ring (after the three messages) when the
	// peer dies.
	for i := 0; i < 3; i++ {
		m, err := c.Recv(bg, nil)
		if err != nil || string(m) != "m"+strconv.Itoa(i) {
			t.Fatalf("message %d: %q %v", i, m, err)
		}
	}
	res := make(chan error, 1)
	go func() {
		_, err := c.Recv(bg, nil)
		res <- err
	}()
	time.Sleep(50 * time.Millisecond)
	t0 := time.Now()
	p.Kill()
	select {
	case err := <-res:
		if err != io.EOF {
			t.Fatalf("Recv after the peer was killed: %v, want io.EOF", err)
		}
		t.Logf("blocked Recv returned io.EOF %v after SIGKILL", time.Since(t0))
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still blocked 5 s after the peer was killed")
	}
	if err := c.Send(bg, []byte("x")); err != io.EOF {
		t.Fatalf("Send to a killed peer: %v, want io.EOF", err)
	}
	if _, err := c.Recv(bg, nil); err != io.EOF {
		t.Fatalf("second Recv: %v, want io.EOF", err)
	}
}

// TestPeerKilledWhileSending: a Send blocked on a full ring returns io.EOF
// when the reader is killed; messages written before a writer's death are
// still delivered.
func TestPeerKilledWhileSending(t *testing.T) {
	l, path := listen(t, opts(4096))
	p := ipctest.StartPeer(t, "hang", path, "4096", "50")
	c := accept(t, l)
	p.Expect(t, "sent", peerTimeout)
	p.Kill()
	<-p.Done()
	// 50 messages were in the ring when the writer died: all arrive first.
	for i := 0; i < 50; i++ {
		m, err := c.Recv(bg, nil)
		if err != nil || string(m) != "m"+strconv.Itoa(i) {
			t.Fatalf("message %d: %q %v", i, m, err)
		}
	}
	if _, err := c.Recv(bg, nil); err != io.EOF {
		t.Fatalf("Recv after the last message: %v, want io.EOF", err)
	}

	// A sender blocked on a full ring.
	l2, path2 := listen(t, opts(4096))
	p2 := ipctest.StartPeer(t, "hang", path2, "4096", "0")
	c2 := accept(t, l2)
	p2.Expect(t, "sent", peerTimeout)
	res := make(chan error, 1)
	go func() {
		for {
			if err := c2.Send(bg, make([]byte, 500)); err != nil {
				res <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	t0 := time.Now()
	p2.Kill()
	select {
	case err := <-res:
		if err != io.EOF {
			t.Fatalf("Send after the reader was killed: %v, want io.EOF", err)
		}
		t.Logf("blocked Send returned io.EOF %v after SIGKILL", time.Since(t0))
	case <-time.After(5 * time.Second):
		t.Fatal("Send still blocked 5 s after the reader was killed")
	}
}

func TestRingFullBlocksUntilCancelled(t *testing.T) {
	srv, cli := pair(t, opts(4096))
	// Fill the client's sending ring with empty messages (8 bytes each):
	// nobody reads.
	n := 0
	for {
		ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
		err := cli.Send(ctx, nil)
		cancel()
		if err != nil {
			if err != context.DeadlineExceeded {
				t.Fatalf("Send on a full ring: %v, want context.DeadlineExceeded", err)
			}
			break
		}
		n++
		if n > 512 {
			t.Fatal("a 4 KiB ring took more than 512 empty messages")
		}
	}
	// Cancellation of a blocked Send.
	ctx, cancel := context.WithCancel(bg)
	res := make(chan error, 1)
	go func() { res <- cli.Send(ctx, []byte("blocked")) }()
	time.Sleep(30 * time.Millisecond)
	select {
	case err := <-res:
		t.Fatalf("Send on a full ring returned %v", err)
	default:
	}
	cancel()
	select {
	case err := <-res:
		if err != context.Canceled {
			t.Fatalf("cancelled Send: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled Send still blocked")
	}
	// The deadline of SetDeadline.
	cli.SetDeadline(time.Now().Add(30 * time.Millisecond))
	if err := cli.Send(bg, []byte("late")); !errors.Is(err, ipcerr.ErrTimeout) {
		t.Fatalf("Send past the deadline: %v, want ErrTimeout", err)
	}
	// A deadline moved into the past wakes a blocked Send.
	cli.SetDeadline(time.Time{})
	go func() { res <- cli.Send(bg, []byte("blocked")) }()
	time.Sleep(30 * time.Millisecond)
	cli.SetDeadline(time.Now().Add(-time.Second))
	select {
	case err := <-res:
		if !errors.Is(err, ipcerr.ErrTimeout) {
			t.Fatalf("Send after the deadline moved: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SetDeadline did not wake the blocked Send")
	}
	cli.SetDeadline(time.Time{})
	// Nothing was lost or duplicated: the n messages, then a fresh one.
	go func() { res <- cli.Send(bg, []byte("after")) }()
	for i := 0; i < n; i++ {
		m, err := srv.Recv(bg, []byte("x"))
		if err != nil || len(m) != 0 {
			t.Fatalf("message %d: %d bytes, %v", i, len(m), err)
		}
	}
	if m, err := srv.Recv(bg, nil); err != nil || string(m) != "after" {
		t.Fatalf("message after the timeouts: %q %v", m, err)
	}
	if err := <-res; err != nil {
		t.Fatal(err)
	}
}

// TestCutShortMessages: a large Send cut short by its context is retracted
// (the receiver never sees it), and a Recv cut short mid-message resumes.
func TestCutShortMessages(t *testing.T) {
	srv, cli := pair(t, opts(4096))
	big := make([]byte, 20000)
	fill(big, 7)
	ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
	err := cli.Send(ctx, big) // fills the ring with part of it, then times out
	cancel()
	if err != context.DeadlineExceeded {
		t.Fatalf("Send of 20000 bytes through an unread 4 KiB ring: %v", err)
	}
	// The receiver reads the part, then times out in the middle.
	srv.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := srv.Recv(bg, nil); !errors.Is(err, ipcerr.ErrTimeout) {
		t.Fatalf("Recv of a retracted message: %v, want ErrTimeout", err)
	}
	srv.SetDeadline(time.Time{})
	// Next: an abort record, then a whole message of the same size.
	fill(big, 8)
	errc := make(chan error, 1)
	go func() { errc <- cli.Send(bg, big) }()
	got, err := srv.Recv(bg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("got %d bytes after the retracted message, want the %d of the next one", len(got), len(big))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	// A Recv cut short in the middle of a message that is not retracted.
	fill(big, 9)
	go func() {
		ctx, cancel := context.WithTimeout(bg, 5*time.Second)
		defer cancel()
		errc <- cli.Send(ctx, big)
	}()
	time.Sleep(20 * time.Millisecond) // the sender fills the ring
	srv.SetDeadline(time.Now().Add(-time.Second))
	if _, err := srv.Recv(bg, nil); !errors.Is(err, ipcerr.ErrTimeout) {
		t.Fatalf("Recv past its deadline: %v", err)
	}
	srv.SetDeadline(time.Time{})
	rctx, rcancel := context.WithCancel(bg)
	part := make(chan error, 1)
	go func() {
		_, err := srv.Recv(rctx, nil)
		part <- err
	}()
	time.Sleep(time.Millisecond)
	rcancel()
	if err := <-part; err != nil && err != context.Canceled {
		t.Fatalf("cancelled Recv: %v", err)
	} else if err == nil {
		// It was quick enough to read everything: then the check below is
		// moot, but the message must have been whole.
		t.Log("the Recv completed before its cancellation")
		<-errc
		return
	}
	got, err = srv.Recv(bg, nil)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("resumed Recv: %d bytes, %v; want the %d-byte message", len(got), err, len(big))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestCorruptFrame(t *testing.T) {
	srv, cli := pair(t, opts(4096))
	if err := cli.Send(bg, []byte("good")); err != nil {
		t.Fatal(err)
	}
	if err := injectGarbage(cli.seg, ringC2S); err != nil {
		t.Fatal(err)
	}
	if m, err := srv.Recv(bg, nil); err != nil || string(m) != "good" {
		t.Fatalf("message before the garbage: %q %v", m, err)
	}
	for i := 0; i < 2; i++ {
		if _, err := srv.Recv(bg, nil); !errors.Is(err, ipcerr.ErrCorruptFrame) {
			t.Fatalf("Recv %d of garbage: %v, want ErrCorruptFrame", i, err)
		}
	}
	if _, err := srv.RecvInPlace(bg); !errors.Is(err, ipcerr.ErrCorruptFrame) {
		t.Fatalf("RecvInPlace of garbage: %v", err)
	}
}

func TestCorruptFrameCrossProcess(t *testing.T) {
	l, path := listen(t, opts(4096))
	p := ipctest.StartPeer(t, "garbage", path, "4096")
	c := accept(t, l)
	p.Expect(t, "done", peerTimeout)
	if m, err := c.Recv(bg, nil); err != nil || string(m) != "good" {
		t.Fatalf("message before the garbage: %q %v", m, err)
	}
	if _, err := c.Recv(bg, nil); !errors.Is(err, ipcerr.ErrCorruptFrame) {
		t.Fatalf("Recv of garbage: %v, want ErrCorruptFrame", err)
	}
}

// TestBadFlags covers the record sequences the receiver refuses.
func TestBadFlags(t *testing.T) {
	cases := []struct {
		name string
		recs []struct {
			p  string
			fl uint8
		}
		want error
	}{
		{"continuation without head", recs("x", flagMore), ipcerr.ErrCorruptFrame},
		{"abort outside a message", recs("", flagAbort), ipcerr.ErrCorruptFrame},
		{"unknown flag", recs("x", 0x80), ipcerr.ErrCorruptFrame},
		{"short head", recs("abc", flagHead|flagMore), ipcerr.ErrCorruptFrame},
		{"head larger than its total", recs("\x02\x00\x00\x00\x00\x00\x00\x00abc", flagHead|flagMore), ipcerr.ErrCorruptFrame},
		{"total above the limit", recs("\xff\xff\xff\xff\x00\x00\x00\x00abc", flagHead|flagMore), ipcerr.ErrMessageTooLarge},
		{"records beyond the total", recs("\x05\x00\x00\x00\x00\x00\x00\x00abc", flagHead|flagMore, "xyzw", 0), ipcerr.ErrCorruptFrame},
		{"records short of the total", recs("\x05\x00\x00\x00\x00\x00\x00\x00abc", flagHead|flagMore, "x", 0), ipcerr.ErrCorruptFrame},
		{"head inside a message", recs("\x05\x00\x00\x00\x00\x00\x00\x00abc", flagHead|flagMore, "\x05\x00\x00\x00\x00\x00\x00\x00abc", flagHead|flagMore), ipcerr.ErrCorruptFrame},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, cli := pair(t, opts(4096))
			for _, r := range c.recs {
				p, err := cli.tx.Reserve(len(r.p))
				if err != nil {
					t.Fatal(err)
				}
				copy(p, r.p)
				cli.tx.CommitFlags(len(r.p), r.fl)
			}
			if _, err := srv.Recv(bg, nil); !errors.Is(err, c.want) {
				t.Fatalf("Recv: %v, want %v", err, c.want)
			}
		})
	}
}

func recs(a ...any) []struct {
	p  string
	fl uint8
} {
	var out []struct {
		p  string
		fl uint8
	}
	for i := 0; i < len(a); i += 2 {
		out = append(out, struct {
			p  string
			fl uint8
		}{a[i].(string), uint8(a[i+1].(int))})
	}
	return out
}

func TestMaxMessageSize(t *testing.T) {
	o := opts(4096)
	o.MaxMessageSize = 1000
	srv, cli := pair(t, o)
	if err := cli.Send(bg, make([]byte, 1001)); !errors.Is(err, ipcerr.ErrMessageTooLarge) {
		t.Fatalf("Send of 1001 bytes, limit 1000: %v", err)
	}
	if err := cli.Send(bg, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if m, err := srv.Recv(bg, nil); err != nil || len(m) != 1000 {
		t.Fatalf("Recv: %d bytes, %v; want the 1000-byte message only", len(m), err)
	}
	if err := cli.Send(bg, nil); err != nil {
		t.Fatal(err)
	}
	if m, err := srv.Recv(bg, []byte("junk")); err != nil || len(m) != 0 {
		t.Fatalf("empty message: %q %v", m, err)
	}
	if _, err := cli.Reserve(bg, 1001); !errors.Is(err, ipcerr.ErrMessageTooLarge) {
		t.Fatalf("Reserve beyond the limit: %v", err)
	}
}

func TestZeroCopy(t *testing.T) {
	srv, cli := pair(t, opts(4096))
	if cli.MaxReserve() != 1024-8 {
		t.Fatalf("MaxReserve %d with a 4 KiB ring", cli.MaxReserve())
	}
	if _, err := cli.Reserve(bg, cli.MaxReserve()+1); !errors.Is(err, ipcerr.ErrMessageTooLarge) {
		t.Fatalf("Reserve beyond MaxReserve: %v", err)
	}
	for i := 0; i < 500; i++ {
		p, err := cli.Reserve(bg, 100)
		if err != nil {
			t.Fatal(err)
		}
		n := copy(p, "zero-copy "+strconv.Itoa(i))
		if err := cli.Commit(n); err != nil {
			t.Fatal(err)
		}
		m, err := srv.RecvInPlace(bg)
		if err != nil || string(m) != "zero-copy "+strconv.Itoa(i) {
			t.Fatalf("RecvInPlace %d: %q %v", i, m, err)
		}
		if err := srv.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cli.Commit(1); err == nil {
		t.Fatal("Commit without Reserve succeeded")
	}
	if err := srv.Release(); err == nil {
		t.Fatal("Release without RecvInPlace succeeded")
	}
	// A message larger than a record is reassembled, still until Release.
	big := make([]byte, 10000)
	fill(big, 3)
	errc := make(chan error, 1)
	go func() { errc <- cli.Send(bg, big) }()
	m, err := srv.RecvInPlace(bg)
	if err != nil || !bytes.Equal(m, big) {
		t.Fatalf("RecvInPlace of %d bytes: %d, %v", len(big), len(m), err)
	}
	// The receive side is held: a concurrent Recv waits for Release.
	got := make(chan []byte, 1)
	go func() {
		m, _ := srv.Recv(bg, nil)
		got <- m
	}()
	if err := cli.Send(bg, []byte("next")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		t.Fatalf("Recv returned %q while RecvInPlace's message was held", m)
	case <-time.After(30 * time.Millisecond):
	}
	srv.Release()
	if m := <-got; string(m) != "next" {
		t.Fatalf("Recv after Release: %q", m)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestCloseSemantics(t *testing.T) {
	srv, cli := pair(t, opts(4096))
	// A blocked Recv returns net.ErrClosed when its own side closes.
	res := make(chan error, 1)
	go func() {
		_, err := srv.Recv(bg, nil)
		res <- err
	}()
	if err := cli.Send(bg, []byte("last")); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := cli.Recv(bg, nil)
		res <- err
	}()
	time.Sleep(20 * time.Millisecond)
	for i := 0; i < 3; i++ {
		cli.Send(bg, []byte("unread "+strconv.Itoa(i)))
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if err != net.ErrClosed {
			t.Fatalf("blocked Recv on Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked Recv")
	}
	if err := cli.Send(bg, nil); err != net.ErrClosed {
		t.Fatalf("Send after Close: %v", err)
	}
	if _, err := cli.Recv(bg, nil); err != net.ErrClosed {
		t.Fatalf("Recv after Close: %v", err)
	}
	if err := cli.SetDeadline(time.Now()); err != net.ErrClosed {
		t.Fatalf("SetDeadline after Close: %v", err)
	}
	if err := cli.Close(); err != net.ErrClosed {
		t.Fatalf("second Close: %v", err)
	}
	// The peer reads what was sent before the close, then io.EOF; its Send
	// gets io.EOF.
	for i := 0; i < 3; i++ {
		if m, err := srv.Recv(bg, nil); err != nil || string(m) != "unread "+strconv.Itoa(i) {
			t.Fatalf("message %d after the peer closed: %q %v", i, m, err)
		}
	}
	if _, err := srv.Recv(bg, nil); err != io.EOF {
		t.Fatalf("Recv after the peer closed: %v, want io.EOF", err)
	}
	if err := srv.Send(bg, []byte("x")); err != io.EOF {
		t.Fatalf("Send after the peer closed: %v, want io.EOF", err)
	}
}

func TestConcurrentSenders(t *testing.T) {
	srv, cli := pair(t, opts(4096))
	const senders, each = 4, 300
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				// Some messages span several records: they must not interleave.
				msg := bytes.Repeat([]byte{byte('a' + s)}, 8+(i*97)%3000)
				copy(msg[1:], strconv.Itoa(i))
				if err := cli.Send(bg, msg); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := make([]int, senders)
	for n := 0; n < senders*each; n++ {
		m, err := srv.Recv(bg, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := int(m[0] - 'a')
		if s < 0 || s >= senders {
			t.Fatalf("message from unknown sender %q", m[0])
		}
		i := next[s]
		want := bytes.Repeat([]byte{byte('a' + s)}, 8+(i*97)%3000)
		copy(want[1:], strconv.Itoa(i))
		if !bytes.Equal(m, want) {
			t.Fatalf("sender %d message %d: %d bytes, mixed or out of order", s, i, len(m))
		}
		next[s]++
	}
	wg.Wait()
}

func TestAllowUIDs(t *testing.T) {
	uid := os.Getuid()
	o := opts(4096)
	o.AllowUIDs = []int{uid + 1}
	l, path := listen(t, o)
	ctx, cancel := context.WithTimeout(bg, 300*time.Millisecond)
	defer cancel()
	acc := make(chan error, 1)
	go func() {
		c, err := l.Accept(ctx)
		if c != nil {
			c.Close()
		}
		acc <- err
	}()
	if _, err := Dial(bg, path, opts(4096)); !errors.Is(err, ipcerr.ErrPeerNotAllowed) {
		t.Fatalf("Dial by a uid not allowed: %v, want ErrPeerNotAllowed", err)
	}
	// Accept drops the refused client and keeps waiting.
	if err := <-acc; err != context.DeadlineExceeded {
		t.Fatalf("Accept: %v, want the context's deadline (no connection)", err)
	}
	// The client's own list checks the server.
	l2, path2 := listen(t, opts(4096))
	go func() {
		c, err := l2.Accept(ctx)
		if c != nil {
			c.Close()
		}
		acc <- err
	}()
	co := opts(4096)
	co.AllowUIDs = []int{uid + 1}
	if _, err := Dial(bg, path2, co); !errors.Is(err, ipcerr.ErrPeerNotAllowed) {
		t.Fatalf("Dial of a server with a uid not allowed: %v", err)
	}
	<-acc
	// And an allowed uid passes.
	o.AllowUIDs = []int{uid + 1, uid}
	srv, cli := pair(t, o)
	if err := cli.Send(bg, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if m, err := srv.Recv(bg, nil); err != nil || string(m) != "ok" {
		t.Fatalf("%q %v", m, err)
	}
}

// TestVersionMismatch speaks another version to each side.
func TestVersionMismatch(t *testing.T) {
	d, err := unixDriver()
	if err != nil {
		t.Fatal(err)
	}
	// A client of version 2 against a real listener: refused with
	// statusVersion.
	l, path := listen(t, opts(4096))
	ctx, cancel := context.WithTimeout(bg, 2*time.Second)
	defer cancel()
	go l.Accept(ctx)
	raw, err := d.Dial(ctx, path, setupOptions(opts(4096)))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.Send(ctx, hello{version: 2, role: roleClient}.encode()); err != nil {
		t.Fatal(err)
	}
	b, err := raw.Recv(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := decodeHello(b, roleServer); err != nil || h.status != statusVersion {
		t.Fatalf("server's answer to version 2: %+v %v", h, err)
	}

	// A server of version 2, a server that answers garbage, and one that
	// hangs up: the client gets ErrVersion, ErrVersion, and an error.
	for _, answer := range [][]byte{
		hello{version: 2, role: roleServer}.encode(),
		[]byte(strings.Repeat("x", helloSize)),
		nil,
	} {
		path := sockPath(t)
		fake, err := d.Listen(path, setupOptions(opts(4096)))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := fake.Accept(ctx)
			if err != nil {
				return
			}
			defer c.Close()
			c.Recv(ctx, nil)
			if answer != nil {
				c.Send(ctx, answer)
			}
		}()
		_, err = Dial(ctx, path, opts(4096))
		fake.Close()
		switch {
		case answer == nil && err == nil:
			t.Fatal("Dial succeeded against a server that hung up")
		case answer != nil && !errors.Is(err, ipcerr.ErrVersion):
			t.Fatalf("Dial against a server answering %q: %v, want ErrVersion", answer[:8], err)
		}
	}
}

func TestListenSocketFile(t *testing.T) {
	path := sockPath(t)
	// A stale socket: bound, never listened on or closed without unlink.
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	l, err := Listen(path, opts(4096))
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer l.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&fs.ModeSocket == 0 {
		t.Fatalf("socket file %v %v, want a socket of mode 0600", fi.Mode(), err)
	}
	// A live listener is never replaced.
	if _, err := Listen(path, opts(4096)); !errors.Is(err, ipcerr.ErrAddrInUse) {
		t.Fatalf("Listen over a live listener: %v, want ErrAddrInUse", err)
	}
	// Nor is a file that is not a socket.
	file := sockPath(t)
	os.WriteFile(file, []byte("data"), 0o600)
	if _, err := Listen(file, opts(4096)); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Listen over a regular file: %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "data" {
		t.Fatal("Listen touched a regular file")
	}
	// Close removes the socket file; Accept then returns net.ErrClosed.
	l.Close()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file after Close: %v", err)
	}
	if _, err := l.Accept(bg); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	// Other permissions.
	o := opts(4096)
	o.Perm = 0o660
	l2, p2 := listen(t, o)
	_ = l2
	if fi, err := os.Stat(p2); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want 0660", fi.Mode())
	}
}

func TestAcceptCancel(t *testing.T) {
	l, _ := listen(t, opts(4096))
	ctx, cancel := context.WithCancel(bg)
	res := make(chan error, 1)
	go func() {
		_, err := l.Accept(ctx)
		res <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-res:
		if err != context.Canceled {
			t.Fatalf("Accept after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept ignored its context")
	}
	// The listener still works.
	srvc := make(chan *Conn, 1)
	go func() {
		c, err := l.Accept(bg)
		if err != nil {
			t.Error(err)
			srvc <- nil
			return
		}
		srvc <- c.(*Conn)
	}()
	cli, err := Dial(bg, l.Addr(), opts(4096))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if srv := <-srvc; srv != nil {
		srv.Close()
	}
}

// TestSegmentReclaimed: the connection's memory is a memfd that no file
// system name refers to, and each side holds exactly one descriptor of it,
// gone after Close.
func TestSegmentReclaimed(t *testing.T) {
	count := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		n := 0
		for _, e := range ents {
			if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "/memfd:ipc-segment") {
				n++
			}
		}
		return n
	}
	before := count()
	srv, cli := pair(t, opts(4096))
	if n := count() - before; n != 2 {
		t.Fatalf("%d memfd descriptors for a connection in one process, want 2", n)
	}
	srv.Close()
	cli.Close()
	if n := count() - before; n != 0 {
		t.Fatalf("%d memfd descriptors left after Close", n)
	}
}
