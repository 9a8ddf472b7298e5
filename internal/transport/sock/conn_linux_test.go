package sock_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
)

var allNets = []string{"unix", "unixpacket", "tcp"}

func netAddr(t testing.TB, network string) string {
	if network == "tcp" {
		return "tcp://127.0.0.1:0"
	}
	addr, _ := sockAddr(t, network)
	return addr
}

// TestLargeMessages echoes 16 MiB (and a few other sizes) through another
// process.
func TestLargeMessages(t *testing.T) {
	for _, network := range allNets {
		t.Run(network, func(t *testing.T) {
			_, addr := startListener(t, ipctest.Command("listen", netAddr(t, network)))
			ctx := ctxT(t)
			c, err := ipc.Dial(ctx, addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var buf []byte
			for i, n := range []int{16 << 20, 1, 5<<20 + 3, 0, 16 << 20} {
				msg := pattern(n, byte(i))
				wait := run(t, func() {
					if err := c.Send(ctx, msg); err != nil {
						t.Error(err)
					}
				})
				buf, err = c.Recv(ctx, buf)
				wait()
				if err != nil {
					t.Fatalf("%d bytes: %v", n, err)
				}
				sameBytes(t, buf, msg)
			}
		})
	}
}

// TestMaxMessageSize: Send refuses a message over its limit and sends
// nothing; Recv refuses one over its own.
func TestMaxMessageSize(t *testing.T) {
	for _, network := range allNets {
		t.Run(network, func(t *testing.T) {
			ctx := ctxT(t)
			s, c := pair(t, netAddr(t, network), &ipc.Config{MaxMessageSize: 1 << 20}, &ipc.Config{MaxMessageSize: 4 << 20})
			// The server's own limit, on Send.
			if err := s.Send(ctx, make([]byte, 1<<20+1)); !errors.Is(err, ipc.ErrMessageTooLarge) {
				t.Fatalf("Send over the limit: %v, want ErrMessageTooLarge", err)
			}
			if err := s.Send(ctx, []byte("next")); err != nil {
				t.Fatal(err)
			}
			if m, err := c.Recv(ctx, nil); err != nil || string(m) != "next" {
				t.Fatalf("Recv: %d bytes, %v; want only the message after the refused one", len(m), err)
			}
			// Exactly the limit passes.
			wait := run(t, func() {
				if err := c.Send(ctx, make([]byte, 1<<20)); err != nil {
					t.Error(err)
				}
			})
			if m, err := s.Recv(ctx, nil); err != nil || len(m) != 1<<20 {
				t.Fatalf("Recv at the limit: %d bytes, %v", len(m), err)
			}
			wait()
			// The server's limit, on Recv: the client allows more.
			wait = run(t, func() { c.Send(ctx, make([]byte, 1<<20+1)) })
			if _, err := s.Recv(ctx, nil); !errors.Is(err, ipc.ErrMessageTooLarge) {
				t.Fatalf("Recv over the limit: %v, want ErrMessageTooLarge", err)
			}
			s.Close() // unblocks the sender if the message is still in flight
			wait()
		})
	}
}

// TestCloseAndPeerGone: Close gives net.ErrClosed here and io.EOF there.
func TestCloseAndPeerGone(t *testing.T) {
	for _, network := range allNets {
		t.Run(network, func(t *testing.T) {
			ctx := ctxT(t)
			s, c := pair(t, netAddr(t, network), nil, nil)
			wait := run(t, func() {
				if _, err := s.Recv(ctx, nil); !errors.Is(err, net.ErrClosed) {
					t.Errorf("Recv blocked during Close: %v, want net.ErrClosed", err)
				}
			})
			time.Sleep(10 * time.Millisecond) // usually blocked by now; either way the result is the same
			s.Close()
			wait()
			if err := s.Send(ctx, []byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Send after Close: %v", err)
			}
			if _, err := c.Recv(ctx, nil); !errors.Is(err, io.EOF) {
				t.Fatalf("Recv of the peer: %v, want io.EOF", err)
			}
		})
	}
}

// TestAcceptContext: a cancelled Accept leaves the listener working, and
// concurrent Accepts with their own contexts do not disturb each other.
func TestAcceptContext(t *testing.T) {
	for _, network := range allNets {
		t.Run(network, func(t *testing.T) {
			l := listen(t, netAddr(t, network), nil)
			ctx := ctxT(t)
			short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
			defer cancel()
			if _, err := l.AcceptConn(short); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Accept: %v, want the context's error", err)
			}
			// Two waiting Accepts; the first one's context ends.
			got := make(chan error, 2)
			short2, cancel2 := context.WithCancel(ctx)
			go func() {
				_, err := l.AcceptConn(short2)
				got <- err
			}()
			var accepted ipc.Conn
			go func() {
				c, err := l.AcceptConn(ctx)
				accepted = c
				got <- err
			}()
			time.Sleep(10 * time.Millisecond)
			cancel2()
			if err := <-got; !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled Accept: %v", err)
			}
			c, err := ipc.Dial(ctx, l.Addr().String(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := <-got; err != nil {
				t.Fatalf("the other Accept: %v", err)
			}
			accepted.Close()
			// Close ends a blocked Accept.
			wait := run(t, func() {
				if _, err := l.AcceptConn(ctx); !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept during Close: %v, want net.ErrClosed", err)
				}
			})
			time.Sleep(10 * time.Millisecond)
			l.Close()
			wait()
		})
	}
}
