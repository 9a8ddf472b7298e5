package shm_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/shm"
)

func TestAnonymousWithChild(t *testing.T) {
	seg, err := shm.CreateAnonymous(4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	if seg.Name() != "" || seg.Info().Name != "" {
		t.Fatalf("anonymous segment named %q", seg.Name())
	}
	if info := seg.Info(); info.CreatorPID != os.Getpid() || info.Version != shm.Version || info.Size != int64(seg.Size()) {
		t.Fatalf("Info %+v", info)
	}
	r, err := seg.Alloc("data", 64)
	if err != nil {
		t.Fatal(err)
	}
	copy(r.Bytes(), "parent")

	cmd := ipctest.Command("anon-child")
	cmd.ExtraFiles = []*os.File{seg.File()}
	p := ipctest.Start(t, cmd)
	f := strings.Fields(p.Line(t, peerTimeout))
	if len(f) != 2 || f[1] != "parent" {
		t.Fatalf("child said %q, want its token and \"parent\"", f)
	}
	n, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	childTok := uint32(n)
	p.Expect(t, "written", peerTimeout)
	if got := cstring(r.Bytes()); got != "child" {
		t.Fatalf("region holds %q after the child wrote", got)
	}
	if childTok == 0 || childTok == seg.Token() || shm.TokenSlot(childTok) == seg.Slot() {
		t.Fatalf("child token %#x, parent token %#x", childTok, seg.Token())
	}
	o := seg.TokenOwner(childTok)
	if !o.Alive || o.PID != p.Pid() || o.Slot != shm.TokenSlot(childTok) {
		t.Fatalf("child's owner %+v, want alive pid %d", o, p.Pid())
	}

	p.Kill()
	<-p.Done()
	eventually(t, peerTimeout, "child's slot dead", func() bool { return !seg.TokenOwner(childTok).Alive })
	if seg.TokenAlive(childTok) {
		t.Fatal("TokenAlive true for the killed child")
	}
	if !seg.TokenAlive(seg.Token()) || !seg.TokenOwner(seg.Token()).Alive {
		t.Fatal("parent's own token is dead")
	}
	// The memory outlives the child.
	if got := cstring(r.Bytes()); got != "child" {
		t.Fatalf("region holds %q after the child died", got)
	}
}

// TestInheritedDescriptorKeepsSlotAlive shows the caveat of handing a
// handle's file to a child that does not attach with OpenFile: the child
// shares the handle's open file description, and with it the slot lock.
func TestInheritedDescriptorKeepsSlotAlive(t *testing.T) {
	seg, err := shm.CreateAnonymous(4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	// A second handle on the same memory, through a descriptor of our own.
	dup, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(seg.File().Fd())))
	if err != nil {
		t.Fatal(err)
	}
	h, err := shm.OpenFile(dup)
	if err != nil {
		t.Fatal(err)
	}
	tok := h.Token()
	if !seg.TokenAlive(tok) {
		t.Fatal("second handle's token dead")
	}

	cmd := ipctest.Command("inherit")
	cmd.ExtraFiles = []*os.File{h.File()}
	p := ipctest.Start(t, cmd)
	p.Expect(t, "ready", peerTimeout)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if !seg.TokenAlive(tok) {
		t.Fatal("slot died although the child holds the handle's file description")
	}
	p.Kill()
	<-p.Done()
	eventually(t, peerTimeout, "slot released by the child's death", func() bool { return !seg.TokenAlive(tok) })
}

// TestOpenFileSameProcess attaches a second handle to a named segment
// through a fresh descriptor: OpenFile takes over that descriptor.
func TestOpenFileSameProcess(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	f, err := os.OpenFile(segPath(seg.Name()), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	h, err := shm.OpenFile(f)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.Name() != "" || h.Slot() == seg.Slot() {
		t.Fatalf("OpenFile handle: name %q slot %d", h.Name(), h.Slot())
	}
	if _, err := f.Stat(); err == nil {
		t.Fatal("OpenFile did not close the descriptor it was given")
	}
	if !seg.TokenAlive(h.Token()) || !h.TokenAlive(seg.Token()) {
		t.Fatal("handles do not see each other alive")
	}
}
