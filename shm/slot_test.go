package shm_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/shm"
)

func TestSlotExhaustion(t *testing.T) {
	seg := ipctest.CreateSegment(t, 100, cfg(2, 4))
	if seg.Slots() != 2 {
		t.Fatalf("Slots() = %d", seg.Slots())
	}
	h2, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	_, err = shm.Open(seg.Name())
	wantErr(t, err, shm.ErrNoSlot, "open")
	if err := h2.Close(); err != nil {
		t.Fatal(err)
	}
	h3, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatalf("Open after a Close freed a slot: %v", err)
	}
	defer h3.Close()
	if h3.Slot() != h2.Slot() || h3.SlotGen() != h2.SlotGen()+1 {
		t.Fatalf("reclaimed slot %d gen %d, freed slot %d gen %d", h3.Slot(), h3.SlotGen(), h2.Slot(), h2.SlotGen())
	}
	if seg.TokenAlive(h2.Token()) {
		t.Fatal("closed handle's token alive after its slot was reclaimed")
	}
	if !seg.TokenAlive(h3.Token()) {
		t.Fatal("new handle's token dead")
	}
	_, err = shm.Open(seg.Name())
	wantErr(t, err, shm.ErrNoSlot, "open")
}

// startHolder starts a peer that holds a slot of seg and returns it with
// its slot, generation and token.
func startHolder(t *testing.T, seg *shm.Segment) (p *ipctest.Peer, slot int, gen, tok uint32) {
	t.Helper()
	p = ipctest.StartPeer(t, "hold", seg.Name())
	line := p.Line(t, peerTimeout)
	if _, err := fmt.Sscan(line, &slot, &gen, &tok); err != nil {
		t.Fatalf("peer said %q: %v", line, err)
	}
	return p, slot, gen, tok
}

func TestKilledPeerSlotReused(t *testing.T) {
	seg := ipctest.CreateSegment(t, 100, cfg(2, 4))
	p1, slot, gen, tok := startHolder(t, seg)
	if slot == seg.Slot() || tok != shm.MakeToken(slot, gen) {
		t.Fatalf("peer slot %d gen %d token %#x; ours is slot %d", slot, gen, tok, seg.Slot())
	}
	if g, pid, alive := seg.SlotInfo(slot); g != gen || pid != p1.Pid() || !alive {
		t.Fatalf("SlotInfo = %d %d %t, want %d %d true", g, pid, alive, gen, p1.Pid())
	}
	if o := seg.TokenOwner(tok); o != (shm.Owner{Slot: slot, PID: p1.Pid(), Alive: true}) {
		t.Fatalf("TokenOwner = %+v", o)
	}
	if !seg.SlotAlive(slot, gen) || seg.SlotAlive(slot, gen+1) {
		t.Fatal("SlotAlive wrong for the live peer")
	}
	_, err := shm.Open(seg.Name())
	wantErr(t, err, shm.ErrNoSlot, "open")

	p1.Kill()
	<-p1.Done()
	eventually(t, peerTimeout, "killed peer's slot dead", func() bool { return !seg.TokenAlive(tok) })
	if o := seg.TokenOwner(tok); o.Alive || o.Slot != slot || o.PID != p1.Pid() {
		t.Fatalf("TokenOwner of the dead peer = %+v, want its PID and not alive", o)
	}
	if _, _, alive := seg.SlotInfo(slot); alive {
		t.Fatal("SlotInfo: dead slot alive")
	}

	// Another process claims the same slot with the next generation.
	p2, slot2, gen2, tok2 := startHolder(t, seg)
	if slot2 != slot || gen2 != gen+1 || tok2 == tok {
		t.Fatalf("second peer: slot %d gen %d token %#x; first had %d %d %#x", slot2, gen2, tok2, slot, gen, tok)
	}
	if seg.TokenAlive(tok) || seg.TokenOwner(tok).Alive {
		t.Fatal("the dead peer's token is alive again after its slot was reclaimed")
	}
	if seg.SlotAlive(slot, gen) {
		t.Fatal("SlotAlive true for the old generation")
	}
	if o := seg.TokenOwner(tok2); !o.Alive || o.PID != p2.Pid() {
		t.Fatalf("TokenOwner of the second peer = %+v", o)
	}
	_, err = shm.Open(seg.Name())
	wantErr(t, err, shm.ErrNoSlot, "open")

	// With every slot taken, a peer's Open fails too.
	p3 := ipctest.StartPeer(t, "hold", seg.Name())
	if line := p3.Line(t, peerTimeout); !strings.Contains(line, shm.ErrNoSlot.Error()) {
		t.Fatalf("third peer said %q, want ErrNoSlot", line)
	}
}

func TestOwnToken(t *testing.T) {
	seg := ipctest.CreateSegment(t, 100, nil)
	tok := seg.Token()
	if tok == 0 || tok >= 1<<31 || shm.TokenSlot(tok) != seg.Slot() || tok != shm.MakeToken(seg.Slot(), seg.SlotGen()) {
		t.Fatalf("token %#x for slot %d gen %d", tok, seg.Slot(), seg.SlotGen())
	}
	if !seg.TokenAlive(tok) {
		t.Fatal("TokenAlive(own token) false")
	}
	if o := seg.TokenOwner(tok); !o.Alive || o.Slot != seg.Slot() || o.PID != seg.Info().CreatorPID {
		t.Fatalf("TokenOwner(own token) = %+v", o)
	}
	if gen, pid, alive := seg.SlotInfo(seg.Slot()); gen != seg.SlotGen() || pid != seg.Info().CreatorPID || !alive {
		t.Fatalf("SlotInfo(own slot) = %d %d %t", gen, pid, alive)
	}
	if !seg.SlotAlive(seg.Slot(), seg.SlotGen()) {
		t.Fatal("SlotAlive(own slot) false")
	}
	// Tokens naming no slot, or a slot never claimed, are dead.
	for _, bad := range []uint32{0, shm.MakeToken(seg.Slots(), 1), shm.MakeToken(5, 1), 0xfff} {
		if seg.TokenAlive(bad) {
			t.Errorf("TokenAlive(%#x) true", bad)
		}
		if o := seg.TokenOwner(bad); o.Alive || o.PID != 0 {
			t.Errorf("TokenOwner(%#x) = %+v", bad, o)
		}
	}
	if seg.SlotAlive(-1, 0) || seg.SlotAlive(seg.Slots(), 1) {
		t.Error("SlotAlive true for a slot out of range")
	}
}

func TestTokenEncoding(t *testing.T) {
	for _, tc := range []struct {
		slot int
		gen  uint32
	}{{0, 1}, {1, 1}, {shm.MaxSlots - 1, 1}, {7, 1<<19 - 1}, {7, 1 << 19}, {3, 0xffffffff}} {
		tok := shm.MakeToken(tc.slot, tc.gen)
		if tok == 0 || tok >= 1<<31 {
			t.Errorf("MakeToken(%d, %d) = %#x: zero or above 31 bits", tc.slot, tc.gen, tok)
		}
		if got := shm.TokenSlot(tok); got != tc.slot {
			t.Errorf("TokenSlot(MakeToken(%d, %d)) = %d", tc.slot, tc.gen, got)
		}
		if tok>>12 != tc.gen&(1<<19-1) {
			t.Errorf("MakeToken(%d, %d) = %#x: generation bits %#x", tc.slot, tc.gen, tok, tok>>12)
		}
	}
	if shm.TokenSlot(0) != -1 {
		t.Errorf("TokenSlot(0) = %d", shm.TokenSlot(0))
	}
	if shm.MakeToken(2, 5) == shm.MakeToken(2, 6) || shm.MakeToken(2, 5) == shm.MakeToken(3, 5) {
		t.Error("tokens collide")
	}
}
