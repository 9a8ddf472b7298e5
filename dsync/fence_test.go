package dsync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipcgo/ipc/internal/ipctest"
)

// fencer is what the three fences have in common.
type fencer interface {
	Check(token uint64) error
	Accept(token uint64) error
	Do(ctx context.Context, token uint64, write func() error) error
}

func testFence(t *testing.T, f fencer) {
	ctx := context.Background()
	if err := f.Accept(5); err != nil {
		t.Fatal(err)
	}
	if err := f.Accept(5); err != nil {
		t.Fatalf("same token again: %v", err)
	}
	if err := f.Check(4); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("Check(4) after 5: %v, want ErrStaleToken", err)
	}
	ran := false
	if err := f.Do(ctx, 3, func() error { ran = true; return nil }); !errors.Is(err, ErrStaleToken) || ran {
		t.Fatalf("Do(3) after 5: %v, ran %v", err, ran)
	}
	boom := errors.New("boom")
	if err := f.Do(ctx, 9, func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failed write: %v", err)
	}
	if err := f.Check(6); err != nil {
		t.Fatalf("a failed write recorded its token: %v", err)
	}
	if err := f.Do(ctx, 7, func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("Do(7): %v, ran %v", err, ran)
	}
	if err := f.Accept(6); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("Accept(6) after 7: %v", err)
	}
}

func TestFence(t *testing.T) {
	f := NewFence()
	f.KeepHistory()
	testFence(t, f)
	h := f.History()
	if len(h) != 6 || !h[0].Accepted || h[2].Accepted || h[2].Newest != 5 {
		t.Fatalf("history %+v", h)
	}
	if f.Newest() != 7 {
		t.Fatalf("Newest %d", f.Newest())
	}
}

func TestFileFence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fence")
	f, err := OpenFileFence(path)
	if err != nil {
		t.Fatal(err)
	}
	testFence(t, f)
	_ = f.Close()
	g, err := OpenFileFence(path) // survives a reopen
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if n, err := g.Newest(); err != nil || n != 7 {
		t.Fatalf("reopened: %d, %v", n, err)
	}
	if err := os.WriteFile(path, []byte("garbage garbage garb"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Accept(8); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt file: %v, want ErrCorrupt", err)
	}
}

func TestSharedFence(t *testing.T) {
	seg := ipctest.CreateSegment(t, 1<<16, nil)
	f, err := NewSharedFence(seg, "fence")
	if err != nil {
		t.Fatal(err)
	}
	testFence(t, f)
	g, err := NewSharedFence(seg, "fence") // a second handle sees the same state
	if err != nil {
		t.Fatal(err)
	}
	if g.Newest() != 7 {
		t.Fatalf("second handle: %d", g.Newest())
	}
}
