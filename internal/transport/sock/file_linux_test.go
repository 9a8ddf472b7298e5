package sock_test

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
)

// roundTrip sends msg over a new connection to addr and expects it echoed.
func roundTrip(t *testing.T, addr string, msg string) {
	t.Helper()
	ctx := ctxT(t)
	c, err := ipc.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(ctx, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	got, err := c.Recv(ctx, nil)
	if err != nil || string(got) != msg {
		t.Fatalf("echo: %q, %v; want %q", got, err, msg)
	}
}

// serveEcho accepts connections on l and echoes their messages until l
// closes; it stops with t.
func serveEcho(t *testing.T, l *ipc.Listener) {
	ctx := ctxT(t)
	wait := run(t, func() {
		for {
			c, err := l.AcceptConn(ctx)
			if err != nil {
				return
			}
			for {
				m, err := c.Recv(ctx, nil)
				if err != nil || c.Send(ctx, m) != nil {
					break
				}
			}
			c.Close()
		}
	})
	t.Cleanup(func() { l.Close(); wait() })
}

func mode(t *testing.T, path string) (os.FileMode, os.FileInfo) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("%s is %v, not a socket", path, fi.Mode().Type())
	}
	return fi.Mode().Perm(), fi
}

func TestPerm(t *testing.T) {
	for _, network := range unixNets {
		t.Run(network, func(t *testing.T) {
			old := syscall.Umask(0) // bind alone would make the socket 0777
			defer syscall.Umask(old)
			addr, path := sockAddr(t, network)
			l := listen(t, addr, nil)
			if m, _ := mode(t, path); m != 0o600 {
				t.Fatalf("default mode %v, want 0600 (umask 0)", m)
			}
			l.Close()
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("after Close: %v, want the socket file removed", err)
			}

			syscall.Umask(0o777) // bind alone would make the socket 0000
			l = listen(t, addr, &ipc.Config{Perm: 0o640})
			if m, _ := mode(t, path); m != 0o640 {
				t.Fatalf("mode %v, want 0640 (umask 0777)", m)
			}
			serveEcho(t, l)
			roundTrip(t, addr, "perm")
		})
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	for _, network := range unixNets {
		t.Run(network, func(t *testing.T) {
			addr, path := sockAddr(t, network)
			p, _ := startListener(t, ipctest.Command("listen", addr))
			roundTrip(t, addr, "live")
			p.Kill()
			select {
			case <-p.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("peer not reaped")
			}
			mode(t, path) // left behind by kill -9
			if _, err := ipc.Dial(ctxT(t), addr, nil); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("dial to the stale socket: %v, want ECONNREFUSED", err)
			}

			l := listen(t, addr, nil)
			serveEcho(t, l)
			roundTrip(t, addr, "replaced")
		})
	}
}

func TestLiveSocketKept(t *testing.T) {
	for _, network := range unixNets {
		t.Run(network, func(t *testing.T) {
			addr, path := sockAddr(t, network)
			startListener(t, ipctest.Command("listen", addr))
			_, before := mode(t, path)

			for _, other := range unixNets { // a listener of either type
				_, err := ipc.Listen(other+"://"+path, nil)
				if !errors.Is(err, ipc.ErrAddrInUse) {
					t.Fatalf("Listen %s over a live %s listener: %v, want ErrAddrInUse", other, network, err)
				}
			}
			_, after := mode(t, path)
			if !os.SameFile(before, after) {
				t.Fatal("the live listener's socket file was replaced")
			}
			roundTrip(t, addr, "still served")
		})
	}
}

func TestNonSocketKept(t *testing.T) {
	for _, network := range unixNets {
		t.Run(network, func(t *testing.T) {
			addr, path := sockAddr(t, network)
			if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ipc.Listen(addr, nil)
			if !errors.Is(err, fs.ErrExist) || errors.Is(err, ipc.ErrAddrInUse) {
				t.Fatalf("Listen over a regular file: %v, want fs.ErrExist", err)
			}
			if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
				t.Fatalf("the file now holds %q, %v", b, err)
			}
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
			if _, err := ipc.Listen(addr, nil); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("Listen over a directory: %v, want fs.ErrExist", err)
			}
		})
	}
}

func TestCloseRemovesOnlyItsFile(t *testing.T) {
	addr, path := sockAddr(t, "unix")
	l := listen(t, addr, nil)
	// Someone else takes the path: Close must leave their file alone.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("theirs"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "theirs" {
		t.Fatalf("after Close the file holds %q, %v; want it kept", b, err)
	}
}

func TestPathTooLong(t *testing.T) {
	long := "unix://" + t.TempDir() + "/" + strings.Repeat("a", 110)
	if _, err := ipc.Listen(long, nil); !errors.Is(err, ipc.ErrBadAddress) {
		t.Fatalf("Listen with a 110-byte file name: %v, want ErrBadAddress", err)
	}
}
