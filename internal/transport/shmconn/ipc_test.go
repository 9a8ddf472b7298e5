//go:build linux

package shmconn_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipcgo/ipc"
)

// TestThroughRootPackage uses the transport as an application does: an
// shm:// address, the root package's zero-copy calls and peer credentials.
func TestThroughRootPackage(t *testing.T) {
	dir, err := os.MkdirTemp("", "shmroot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addr := "shm://" + filepath.Join(dir, "s.sock")
	cfg := &ipc.Config{RingSize: 64 << 10}
	l, err := ipc.Listen(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acc := make(chan ipc.Conn, 1)
	go func() {
		c, err := l.AcceptConn(ctx)
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	cli, err := ipc.Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	srv := <-acc
	if srv == nil {
		t.FailNow()
	}
	defer srv.Close()

	cr, err := ipc.PeerCredentials(srv)
	if err != nil || cr.PID != os.Getpid() || cr.UID != os.Getuid() {
		t.Fatalf("PeerCredentials = %+v, %v; want this process", cr, err)
	}

	zc, ok := ipc.ZeroCopy(cli)
	if !ok {
		t.Fatal("no zero-copy calls on an shm connection")
	}
	zs, _ := ipc.ZeroCopy(srv)
	if zc.MaxReserve() != 16<<10-8 {
		t.Fatalf("MaxReserve %d with 64 KiB rings", zc.MaxReserve())
	}
	p, err := zc.Reserve(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	copy(p, "hello")
	if err := zc.Commit(5); err != nil {
		t.Fatal(err)
	}
	m, err := zs.RecvInPlace(ctx)
	if err != nil || string(m) != "hello" {
		t.Fatalf("RecvInPlace = %q, %v", m, err)
	}
	if err := zs.Release(); err != nil {
		t.Fatal(err)
	}
	// Zero-copy and ordinary calls mix.
	if err := cli.Send(ctx, []byte("plain")); err != nil {
		t.Fatal(err)
	}
	if m, err := zs.RecvInPlace(ctx); err != nil || string(m) != "plain" {
		t.Fatalf("RecvInPlace of a Send: %q, %v", m, err)
	}
	zs.Release()
	// Errors come as *ipc.OpError.
	_, err = zc.Reserve(ctx, zc.MaxReserve()+1)
	var oe *ipc.OpError
	if !errors.Is(err, ipc.ErrMessageTooLarge) || !errors.As(err, &oe) || oe.Op != "reserve" {
		t.Fatalf("Reserve beyond MaxReserve: %v", err)
	}
	cli.Close()
	if _, err := zs.RecvInPlace(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("RecvInPlace after the peer closed: %v", err)
	}
}

func TestZeroCopyOtherTransport(t *testing.T) {
	dir, err := os.MkdirTemp("", "shmroot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addr := "unix://" + filepath.Join(dir, "u.sock")
	l, err := ipc.Listen(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		if c, err := l.AcceptConn(ctx); err == nil {
			c.Close()
		}
	}()
	c, err := ipc.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := ipc.ZeroCopy(c); ok {
		t.Fatal("ZeroCopy reported zero-copy calls on a unix connection")
	}
}
