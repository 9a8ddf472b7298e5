//go:build linux

package ipc_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
)

func init() {
	addPeers(ipctest.Peers{"pipes-child-echo": pipesChildEcho})
}

// pipesChildEcho picks its pipe up with ChildConn and echoes until EOF.
func pipesChildEcho([]string) int {
	time.AfterFunc(60*time.Second, func() { os.Exit(3) })
	c, err := ipc.ChildConn(nil)
	if err != nil {
		return ipctest.Fail("ChildConn: %v", err)
	}
	var buf []byte
	for {
		m, err := c.Recv(context.Background(), buf)
		if errors.Is(err, io.EOF) {
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

func TestStartChild(t *testing.T) {
	cmd := ipctest.Command("pipes-child-echo")
	c, err := ipc.StartChild(cmd, &ipc.Config{MaxMessageSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	t.Cleanup(func() {
		c.Close()
		_ = cmd.Process.Kill()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			t.Error("child not reaped")
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, msg := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte{7}, 1<<20)} {
		if err := c.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		got, err := c.Recv(ctx, nil)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes: %d bytes, %v", len(msg), len(got), err)
		}
	}
	err = c.Send(ctx, make([]byte, 1<<20+1))
	var oe *ipc.OpError
	if !errors.Is(err, ipc.ErrMessageTooLarge) || !errors.As(err, &oe) || oe.Addr != "pipe:" {
		t.Fatalf("send above MaxMessageSize: %v", err)
	}
	_ = cmd.Process.Kill()
	if _, err := c.Recv(ctx, nil); !errors.Is(err, io.EOF) {
		t.Fatalf("recv after the child was killed: %v, want io.EOF", err)
	}
}

func TestPipeAddress(t *testing.T) {
	if _, err := ipc.ChildConn(nil); !errors.Is(err, ipc.ErrBadAddress) {
		t.Fatalf("ChildConn in a process not started by StartChild: %v", err)
	}
	if _, err := ipc.Dial(context.Background(), "pipe:", nil); !errors.Is(err, ipc.ErrUnsupported) || !strings.Contains(err.Error(), "ChildConn") {
		t.Fatalf("Dial pipe: %v", err)
	}
	if _, err := ipc.Listen("pipe:", nil); !errors.Is(err, ipc.ErrUnsupported) || !strings.Contains(err.Error(), "StartChild") {
		t.Fatalf("Listen pipe: %v", err)
	}
}
