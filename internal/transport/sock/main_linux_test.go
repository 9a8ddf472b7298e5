package sock_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
)

func TestMain(m *testing.M) {
	ipctest.Main(m, ipctest.Peers{
		"listen":    peerListen,
		"dial-send": peerDialSend,
		"recv-file": peerRecvFile,
	})
}

// peerListen listens at args[0] (with Perm args[1] if given), prints
// "ready ADDR" and echoes every message of every connection.
func peerListen(args []string) int {
	cfg := &ipc.Config{}
	if len(args) > 1 {
		p, err := strconv.ParseUint(args[1], 8, 32)
		if err != nil {
			return ipctest.Fail("perm: %v", err)
		}
		cfg.Perm = os.FileMode(p)
	}
	l, err := ipc.Listen(args[0], cfg)
	if err != nil {
		return ipctest.Fail("listen: %v", err)
	}
	fmt.Println("ready", l.Addr())
	ctx := context.Background()
	for {
		c, err := l.AcceptConn(ctx)
		if err != nil {
			return ipctest.Fail("accept: %v", err)
		}
		go func() {
			defer c.Close()
			var buf []byte
			for {
				m, err := c.Recv(ctx, buf)
				if err != nil {
					return
				}
				if err := c.Send(ctx, m); err != nil {
					return
				}
				buf = m
			}
		}()
	}
}

// peerDialSend dials args[0], sends "hello", then waits for the end of the
// connection and prints "eof" (or what came instead).
func peerDialSend(args []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := ipc.Dial(ctx, args[0], nil)
	if err != nil {
		fmt.Println("dial:", err)
		return 0
	}
	defer c.Close()
	if err := c.Send(ctx, []byte("hello")); err != nil {
		if errors.Is(err, io.EOF) { // closed already by the listener
			fmt.Println("eof")
		} else {
			fmt.Println("send:", err)
		}
		return 0
	}
	m, err := c.Recv(ctx, nil)
	switch {
	case errors.Is(err, io.EOF):
		fmt.Println("eof")
	case err != nil:
		fmt.Println("recv:", err)
	default:
		fmt.Printf("got %q\n", m)
	}
	return 0
}

// peerRecvFile dials args[0], receives a message with one file, prints the
// file's contents and whether its descriptor is close-on-exec, then sends a
// file of its own holding "from the peer" and waits for the end.
func peerRecvFile(args []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := ipc.Dial(ctx, args[0], nil)
	if err != nil {
		return ipctest.Fail("dial: %v", err)
	}
	defer c.Close()
	m, files, err := ipc.RecvFiles(ctx, c, nil)
	if err != nil || len(files) != 1 {
		return ipctest.Fail("recvfiles: %q, %d files, %v", m, len(files), err)
	}
	flags, err := unix.FcntlInt(files[0].Fd(), unix.F_GETFD, 0)
	if err != nil {
		return ipctest.Fail("fcntl: %v", err)
	}
	data, err := io.ReadAll(files[0])
	if err != nil {
		return ipctest.Fail("read: %v", err)
	}
	files[0].Close()
	fmt.Printf("%s %q cloexec=%v\n", m, data, flags&unix.FD_CLOEXEC != 0)

	f, err := os.CreateTemp("", "ipc-peer-file")
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	os.Remove(f.Name()) // the open file lives on
	defer f.Close()
	if _, err := f.WriteString("from the peer"); err != nil {
		return ipctest.Fail("%v", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ipctest.Fail("%v", err)
	}
	if err := ipc.SendFiles(ctx, c, []byte("file"), f); err != nil {
		return ipctest.Fail("sendfiles: %v", err)
	}
	if _, err := c.Recv(ctx, nil); !errors.Is(err, io.EOF) {
		return ipctest.Fail("recv: %v, want EOF", err)
	}
	return 0
}

var unixNets = []string{"unix", "unixpacket"}

// sockAddr returns network://path for a socket in a new directory of t.
func sockAddr(t testing.TB, network string) (addr, path string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "s.sock")
	return network + "://" + path, path
}

// listen listens at addr for t, closing the listener when t ends.
func listen(t testing.TB, addr string, cfg *ipc.Config) *ipc.Listener {
	t.Helper()
	l, err := ipc.Listen(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// pair returns both ends of a connection at addr (a tcp address with port
// 0 gets its real port), closed when t ends.
func pair(t testing.TB, addr string, lcfg, dcfg *ipc.Config) (server, client ipc.Conn) {
	t.Helper()
	l := listen(t, addr, lcfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		c   ipc.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.AcceptConn(ctx)
		ch <- res{c, err}
	}()
	client, err := ipc.Dial(ctx, l.Addr().String(), dcfg)
	if err != nil {
		l.Close()
		<-ch
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c, client
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startListener starts a "listen" peer at addr and returns it and the
// address it reports.
func startListener(t *testing.T, cmd *exec.Cmd) (*ipctest.Peer, string) {
	t.Helper()
	p := ipctest.Start(t, cmd)
	line := p.Line(t, 10*time.Second)
	addr, ok := strings.CutPrefix(line, "ready ")
	if !ok {
		t.Fatalf("peer said %q", line)
	}
	return p, addr
}

// exitingPeer returns a peer command for a peer that exits by itself,
// without the race detector's second of sleep at exit.
func exitingPeer(name string, args ...string) *exec.Cmd {
	cmd := ipctest.Command(name, args...)
	cmd.Env = append(cmd.Env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return cmd
}

// nobody returns a peer command that runs as uid and gid 65534, from a copy
// of the test binary that user can execute; it skips t unless root.
func nobody(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running a peer as another user needs root")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := openDir(t)
	dst := filepath.Join(dir, "peer.test")
	src, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, src, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := ipctest.Command(name, args...)
	cmd.Path, cmd.Args[0] = dst, dst
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

// openDir returns a new directory every user can use.
func openDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// pattern returns n bytes that differ with their position and seed: the
// offset of each 8-byte word, and the seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], uint64(i)<<8|uint64(seed))
	}
	return b[:n]
}

func sameBytes(t testing.TB, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("got %d bytes, want %d; first difference at %d", len(got), len(want), i)
	}
}

// run runs fn in a goroutine and returns a wait that fails t if fn has not
// returned within 10 s.
func run(t *testing.T, fn func()) (wait func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fn()
	}()
	return func() {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("goroutine still running after 10 s")
		}
	}
}
