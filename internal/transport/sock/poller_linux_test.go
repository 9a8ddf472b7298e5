package sock_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ipcgo/ipc/internal/transport"
	"github.com/ipcgo/ipc/internal/transport/sock"
)

// inEpoll reports whether fd is registered with an epoll instance of this
// process (the runtime poller's), from /proc/self/fdinfo: an epoll
// descriptor lists each of its targets as "tfd: N".
func inEpoll(t *testing.T, fd int) bool {
	t.Helper()
	infos, err := filepath.Glob("/proc/self/fdinfo/*")
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.Itoa(fd)
	for _, p := range infos {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // closed since
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "tfd:" && f[1] == want {
				return true
			}
		}
	}
	return false
}

// TestSocketsOutOfPoller: the sockets of unix and unixpacket connections,
// both ends, stay out of the runtime poller while messages go both ways.
func TestSocketsOutOfPoller(t *testing.T) {
	for _, network := range []string{"unix", "unixpacket"} {
		t.Run(network, func(t *testing.T) {
			// The check itself: a pipe of package os is in the poller.
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			if !inEpoll(t, int(r.Fd())) {
				t.Fatal("inEpoll misses an *os.File pipe")
			}
			s, c := pair(t, netAddr(t, network), nil, nil)
			ctx := context.Background()
			for _, conn := range []interface{ Unwrap() transport.Conn }{s.(interface{ Unwrap() transport.Conn }), c.(interface{ Unwrap() transport.Conn })} {
				fd := sock.SocketFD(conn.Unwrap())
				if fd < 0 {
					t.Fatalf("%T: no socket descriptor", conn.Unwrap())
				}
				if inEpoll(t, fd) {
					t.Errorf("%T: descriptor %d is in epoll", conn.Unwrap(), fd)
				}
			}
			if err := c.Send(ctx, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Recv(ctx, nil); err != nil || string(got) != "ping" {
				t.Fatalf("Recv: %q, %v", got, err)
			}
			if fd := sock.SocketFD(s.(interface{ Unwrap() transport.Conn }).Unwrap()); inEpoll(t, fd) {
				t.Errorf("descriptor %d in epoll after a message", fd)
			}
		})
	}
}

// TestNoAllocs: a Send and a Recv with context.Background allocate
// nothing, for 64 B and 4 KiB messages.
func TestNoAllocs(t *testing.T) {
	for _, network := range []string{"unix", "unixpacket"} {
		for _, size := range []int{64, 4 << 10} {
			t.Run(network+"/"+strconv.Itoa(size), func(t *testing.T) {
				s, c := pair(t, netAddr(t, network), nil, nil)
				ctx := context.Background()
				msg := make([]byte, size)
				buf := make([]byte, 0, 2*size)
				for range 2 { // warm up: buffers made on first use
					if err := c.Send(ctx, msg); err != nil {
						t.Fatal(err)
					}
					if _, err := s.Recv(ctx, buf); err != nil {
						t.Fatal(err)
					}
				}
				if n := testing.AllocsPerRun(100, func() {
					if err := c.Send(ctx, msg); err != nil {
						t.Fatal(err)
					}
					if _, err := s.Recv(ctx, buf); err != nil {
						t.Fatal(err)
					}
				}); n != 0 {
					t.Errorf("%v allocations per Send and Recv", n)
				}
			})
		}
	}
}
