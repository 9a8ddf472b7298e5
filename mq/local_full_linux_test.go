package mq

import (
	"bytes"
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// A full disk: publish fails with the wrapped ENOSPC, the partial record
// is cut, everything acknowledged before stays readable, also after a
// reopen. It needs a small tmpfs of its own, so it runs only where the
// test may mount one (root).
func TestLocalDiskFull(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=192k,mode=0700"); err != nil {
		t.Skipf("cannot mount a small tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	qdir := filepath.Join(dir, "q")
	addr := fileURL(qdir)
	q, err := Open(tctx(t), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustStream(t, q, StreamConfig{Name: "s", Sync: SyncNone})
	data := bytes.Repeat([]byte("x"), 1000)
	acked := 0
	var perr error
	for range 1000 {
		if _, perr = q.Publish(tctx(t), "s", data, nil); perr != nil {
			break
		}
		acked++
	}
	if !errors.Is(perr, syscall.ENOSPC) {
		t.Fatalf("after %d publishes: %v, want ENOSPC", acked, perr)
	}
	if _, err := q.Publish(tctx(t), "s", data, nil); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("second publish on a full disk: %v", err)
	}
	ms, err := q.Read(tctx(t), "s", 0, 10000)
	if err != nil || len(ms) != acked {
		t.Fatalf("Read: %d of %d acked messages, %v", len(ms), acked, err)
	}
	if rep, err := Check(tctx(t), qdir); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("Check: %+v %v", rep.Problems, err)
	}
	q.Close()
	q2 := openT(t, addr)
	if si, err := q2.StreamInfo(tctx(t), "s"); err != nil || si.Msgs != uint64(acked) {
		t.Fatalf("after reopen: %+v %v", si, err)
	}
}
