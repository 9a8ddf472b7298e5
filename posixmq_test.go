//go:build linux

package ipc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipcgo/ipc"
)

func TestPriorityHelpers(t *testing.T) {
	addr := fmt.Sprintf("posixmq:///ipct-prio-%d", os.Getpid())
	cfg := &ipc.Config{QueueMsgSize: 1024}
	l, err := ipc.Listen(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ipc.Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.AcceptConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, m := range []struct {
		msg  string
		prio uint
	}{{"low", 1}, {"high", ipc.MaxPriority}, {"plain", 0}, {"mid", 5}} {
		if m.prio == 0 {
			err = c.Send(ctx, []byte(m.msg))
		} else {
			err = ipc.SendPriority(ctx, c, []byte(m.msg), m.prio)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []struct {
		msg  string
		prio uint
	}{{"high", ipc.MaxPriority}, {"mid", 5}, {"low", 1}, {"plain", 0}} {
		got, prio, err := ipc.RecvPriority(ctx, s, nil)
		if err != nil || string(got) != want.msg || prio != want.prio {
			t.Fatalf("got %q priority %d, %v; want %q priority %d", got, prio, err, want.msg, want.prio)
		}
	}
	err = ipc.SendPriority(ctx, c, nil, ipc.MaxPriority+1)
	var oe *ipc.OpError
	if err == nil || !errors.As(err, &oe) || oe.Addr != addr {
		t.Fatalf("priority above the maximum: %v", err)
	}

	// Other transports say they cannot.
	faddr := "fifo://" + filepath.Join(t.TempDir(), "f")
	fl, err := ipc.Listen(faddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	fc, err := ipc.Dial(ctx, faddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if err := ipc.SendPriority(ctx, fc, nil, 1); !errors.Is(err, ipc.ErrUnsupported) {
		t.Fatalf("SendPriority on a FIFO: %v", err)
	}
	if _, _, err := ipc.RecvPriority(ctx, fc, nil); !errors.Is(err, ipc.ErrUnsupported) {
		t.Fatalf("RecvPriority on a FIFO: %v", err)
	}
}

func TestPosixMQBadConfig(t *testing.T) {
	addr := fmt.Sprintf("posixmq:///ipct-cfg-%d", os.Getpid())
	_, err := ipc.Listen(addr, &ipc.Config{QueueMsgSize: 16<<20 + 1})
	if !errors.Is(err, ipc.ErrBadConfig) {
		t.Fatalf("Listen with QueueMsgSize beyond every limit: %v", err)
	}
}
