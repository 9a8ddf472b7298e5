//go:build linux

package pipe_test

import (
	"bytes"
	"context"
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

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/transport"
	"github.com/ipcgo/ipc/internal/transport/pipe"
)

func TestMain(m *testing.M) {
	ipctest.Main(m, ipctest.Peers{
		"child-echo":   peerChildEcho,
		"child-hold":   peerChildHold,
		"child-env":    peerChildEnv,
		"child-report": peerChildReport,
		"parent-of":    peerParentOf,
	})
}

func opts() *transport.Options {
	return &transport.Options{MaxMessageSize: 64 << 20, Perm: 0o600}
}

func peerLife() { time.AfterFunc(60*time.Second, func() { os.Exit(3) }) }

func peerChildEcho([]string) int {
	peerLife()
	c, err := pipe.Child(opts())
	if err != nil {
		return ipctest.Fail("child: %v", err)
	}
	var buf []byte
	for {
		m, err := c.Recv(context.Background(), buf)
		if err == io.EOF {
			return 0
		}
		if err != nil {
			return ipctest.Fail("recv: %v", err)
		}
		if err := c.Send(context.Background(), m); err != nil {
			return ipctest.Fail("send: %v", err)
		}
		buf = m
	}
}

func peerChildHold([]string) int {
	peerLife()
	c, err := pipe.Child(opts())
	if err != nil {
		return ipctest.Fail("child: %v", err)
	}
	defer c.Close()
	if err := c.Send(context.Background(), []byte("ready")); err != nil {
		return ipctest.Fail("send: %v", err)
	}
	select {}
}

// peerChildEnv checks what Child leaves behind, and reports on the pipe.
func peerChildEnv([]string) int {
	v := os.Getenv(pipe.EnvVar)
	c, err := pipe.Child(opts())
	if err != nil {
		return ipctest.Fail("child: %v", err)
	}
	defer c.Close()
	var problems []string
	if _, ok := os.LookupEnv(pipe.EnvVar); ok {
		problems = append(problems, "variable still set")
	}
	rs, ws, _ := strings.Cut(v, ",")
	for _, s := range []string{rs, ws} {
		fd, _ := strconv.Atoi(s)
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC == 0 {
			problems = append(problems, fmt.Sprintf("fd %d not close-on-exec (%v)", fd, err))
		}
	}
	if _, err := pipe.Child(opts()); !errors.Is(err, ipcerr.ErrBadAddress) {
		problems = append(problems, fmt.Sprintf("second Child: %v", err))
	}
	msg := "ok " + v
	if problems != nil {
		msg = strings.Join(problems, "; ")
	}
	if err := c.Send(context.Background(), []byte(msg)); err != nil {
		return ipctest.Fail("send: %v", err)
	}
	_, _ = c.Recv(context.Background(), nil)
	return 0
}

// peerChildReport writes to args[0] what its Recv returned.
func peerChildReport(args []string) int {
	peerLife()
	c, err := pipe.Child(opts())
	if err != nil {
		return ipctest.Fail("child: %v", err)
	}
	_, err = c.Recv(context.Background(), nil)
	if err := os.WriteFile(args[0], []byte(fmt.Sprint(err)), 0o600); err != nil {
		return ipctest.Fail("write: %v", err)
	}
	return 0
}

// peerParentOf starts child-report (args[0]) and waits to be killed.
func peerParentOf(args []string) int {
	peerLife()
	cmd := ipctest.Command("child-report", args...)
	c, err := pipe.Start(cmd, opts())
	if err != nil {
		return ipctest.Fail("start: %v", err)
	}
	defer c.Close()
	fmt.Println("started", cmd.Process.Pid)
	select {}
}

type child struct {
	cmd  *exec.Cmd
	wait func() error // the exit status, once the child has exited (10 s at most)
}

// start starts the named peer as a child over pipes; it is killed and
// reaped when the test ends.
func start(t *testing.T, name string, args ...string) (transport.Conn, child) {
	t.Helper()
	cmd := ipctest.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	c, err := pipe.Start(cmd, opts())
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	wait := func() error {
		var err error
		once.Do(func() {
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("child not reaped")
			}
		})
		return err
	}
	t.Cleanup(func() {
		c.Close()
		_ = cmd.Process.Kill()
		if err := wait(); err != nil && err.Error() == "child not reaped" {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("child stderr:\n%s", stderr.String())
		}
	})
	return c, child{cmd, wait}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed)
	}
	return b
}

func roundTrip(t *testing.T, c transport.Conn, sizes []int) {
	t.Helper()
	ctx := ctxFor(t, 15*time.Second)
	var buf []byte
	for i, n := range sizes {
		want := pattern(n, i)
		if err := c.Send(ctx, want); err != nil {
			t.Fatalf("send %d bytes: %v", n, err)
		}
		got, err := c.Recv(ctx, buf)
		if err != nil {
			t.Fatalf("recv %d bytes: %v", n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d: got %d bytes, want %d (or contents differ)", i, len(got), n)
		}
		buf = got
	}
}

func TestBothWaysBoundaries(t *testing.T) {
	c, ch := start(t, "child-echo")
	roundTrip(t, c, []int{0, 1, 7, 8, 9, 511, 512, 513, 4096, 65535, 65536, 65537, 1<<20 + 3})
	c.Close()
	// The child sees io.EOF and exits 0.
	if err := ch.wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}

func TestLarge16MiB(t *testing.T) {
	c, _ := start(t, "child-echo")
	start := time.Now()
	roundTrip(t, c, []int{16 << 20, 16<<20 - 1})
	t.Logf("two 16 MiB round trips in %v", time.Since(start))
}

func TestChildKilled(t *testing.T) {
	c, ch := start(t, "child-hold")
	if m, err := c.Recv(ctxFor(t, 10*time.Second), nil); err != nil || string(m) != "ready" {
		t.Fatalf("first message: %q, %v", m, err)
	}
	_ = ch.cmd.Process.Signal(syscall.SIGKILL)
	ctx := ctxFor(t, 10*time.Second)
	if _, err := c.Recv(ctx, nil); err != io.EOF {
		t.Fatalf("recv after the child was killed: %v, want io.EOF", err)
	}
	var err error
	for ctx.Err() == nil {
		if err = c.Send(ctx, []byte("x")); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != io.EOF {
		t.Fatalf("send after the child was killed: %v, want io.EOF", err)
	}
}

// TestParentKilled: a child whose parent is killed -9 gets io.EOF.
func TestParentKilled(t *testing.T) {
	report := filepath.Join(t.TempDir(), "report")
	p := ipctest.StartPeer(t, "parent-of", report)
	line := p.Line(t, 10*time.Second)
	pid, err := strconv.Atoi(strings.TrimPrefix(line, "started "))
	if err != nil {
		t.Fatalf("parent said %q", line)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	p.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(report)
		if err == nil && len(b) > 0 {
			if string(b) != "EOF" {
				t.Fatalf("the child's Recv returned %q, want EOF", b)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the child reported nothing 10 s after its parent was killed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDeadlinesAndCancel(t *testing.T) {
	c, _ := start(t, "child-hold")
	if m, err := c.Recv(ctxFor(t, 10*time.Second), nil); err != nil || string(m) != "ready" {
		t.Fatalf("first message: %q, %v", m, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := c.Recv(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("recv with a cancelled context: %v", err)
	}
	if err := c.SetDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Recv(context.Background(), nil); !errors.Is(err, ipcerr.ErrTimeout) {
		t.Fatalf("recv past the deadline: %v", err)
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	// The child does not read: a message larger than the pipe blocks.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := c.Send(ctx2, make([]byte, 1<<20)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send into a full pipe: %v", err)
	}
}

func TestChildSide(t *testing.T) {
	c, _ := start(t, "child-env")
	m, err := c.Recv(ctxFor(t, 10*time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(m) != "ok 3,4" {
		t.Fatalf("child: %s", m)
	}
}

// TestExtraFilesKept: the pipes go after the command's own extra files, and
// ExtraFiles is as it was once the command has started.
func TestExtraFilesKept(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	cmd := ipctest.Command("child-env")
	cmd.ExtraFiles = []*os.File{r}
	c, err := pipe.Start(cmd, opts())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	if len(cmd.ExtraFiles) != 1 || cmd.ExtraFiles[0] != r {
		t.Fatalf("ExtraFiles after Start: %v", cmd.ExtraFiles)
	}
	m, err := c.Recv(ctxFor(t, 10*time.Second), nil)
	if err != nil || string(m) != "ok 4,5" {
		t.Fatalf("child: %q, %v", m, err)
	}
	if _, err := pipe.Start(cmd, opts()); err == nil {
		t.Fatal("Start of a started command succeeded")
	}
}

func TestStartFailure(t *testing.T) {
	before := openFDs(t)
	cmd := exec.Command(filepath.Join(t.TempDir(), "no-such-program"))
	if _, err := pipe.Start(cmd, opts()); err == nil {
		t.Fatal("Start of a missing program succeeded")
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after a failed Start", before, after)
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestNotAChild(t *testing.T) {
	if _, err := pipe.Child(opts()); !errors.Is(err, ipcerr.ErrBadAddress) {
		t.Fatalf("Child without the variable: %v", err)
	}
	t.Setenv(pipe.EnvVar, "0,1")
	if _, err := pipe.Child(opts()); !errors.Is(err, ipcerr.ErrBadAddress) {
		t.Fatalf("Child with stdin/stdout: %v", err)
	}
	t.Setenv(pipe.EnvVar, "200,201")
	if _, err := pipe.Child(opts()); !errors.Is(err, ipcerr.ErrBadAddress) {
		t.Fatalf("Child with closed descriptors: %v", err)
	}
}

func TestSchemeExplains(t *testing.T) {
	d, ok := transport.Lookup("pipe")
	if !ok {
		t.Fatal("pipe not registered")
	}
	if _, err := d.Dial(context.Background(), "", opts()); !errors.Is(err, ipcerr.ErrUnsupported) || !strings.Contains(err.Error(), "ChildConn") {
		t.Fatalf("Dial: %v", err)
	}
	if _, err := d.Listen("", opts()); !errors.Is(err, ipcerr.ErrUnsupported) || !strings.Contains(err.Error(), "StartChild") {
		t.Fatalf("Listen: %v", err)
	}
}
