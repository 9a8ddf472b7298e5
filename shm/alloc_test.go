package shm_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/shm"
)

func TestAlloc(t *testing.T) {
	seg := ipctest.CreateSegment(t, 8192, nil)
	sizes := []int{1, 7, 64, 65, 100, 8, 3}
	var regions []shm.Region
	end := dataOff(64, 128)
	for i, size := range sizes {
		name := "obj" + strconv.Itoa(i)
		r, err := seg.Alloc(name, size)
		if err != nil {
			t.Fatal(err)
		}
		if r.Name != name || r.Kind != shm.KindData || r.Len != size || r.Segment() != seg {
			t.Fatalf("Alloc(%q, %d) = %+v", name, size, r)
		}
		if r.Off%shm.Align != 0 || r.Off < end || r.Off+r.Len > seg.Size() {
			t.Fatalf("region %+v: misaligned, overlapping (previous end %d) or outside the segment", r, end)
		}
		end = r.Off + r.Len
		b := r.Bytes()
		if len(b) != size || cap(b) != size {
			t.Fatalf("Bytes: len %d cap %d, want %d", len(b), cap(b), size)
		}
		if !bytes.Equal(b, make([]byte, size)) {
			t.Fatalf("new region %q is not zeroed", name)
		}
		for j := range b {
			b[j] = byte(i + 1)
		}
		regions = append(regions, r)
	}
	// Same name: same region, contents kept.
	for i, size := range sizes {
		r, err := seg.Alloc("obj"+strconv.Itoa(i), size)
		if err != nil {
			t.Fatal(err)
		}
		if r != regions[i] {
			t.Fatalf("second Alloc = %+v, first %+v", r, regions[i])
		}
		if !bytes.Equal(r.Bytes(), bytes.Repeat([]byte{byte(i + 1)}, size)) {
			t.Fatalf("region %d lost its contents or was overwritten by a neighbour", i)
		}
		l, err := seg.Lookup(r.Name)
		if err != nil || l != r {
			t.Fatalf("Lookup = %+v, %v; want %+v", l, err, r)
		}
	}
	objs, err := seg.Objects()
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(regions) {
		t.Fatalf("Objects() has %d entries, want %d", len(objs), len(regions))
	}
	for i := range objs {
		if objs[i] != regions[i] {
			t.Fatalf("Objects()[%d] = %+v, want %+v (creation order)", i, objs[i], regions[i])
		}
	}
	_, err = seg.Lookup("missing")
	wantErr(t, err, shm.ErrObjectNotFound, "lookup")
}

func TestAllocMismatch(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	if _, err := seg.Alloc("x", 64); err != nil {
		t.Fatal(err)
	}
	_, err := seg.Alloc("x", 128)
	wantErr(t, err, shm.ErrKindMismatch, "alloc")
	_, _, err = seg.AllocObject("x", shm.KindData+100, 64, nil)
	wantErr(t, err, shm.ErrKindMismatch, "alloc")
	r, created, err := seg.AllocObject("x", shm.KindData, 64, func([]byte) { t.Error("init ran for an existing object") })
	if err != nil || created || r.Len != 64 {
		t.Fatalf("AllocObject of the existing object: %+v %t %v", r, created, err)
	}
	// The mismatch is reported across handles too.
	h, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.Alloc("x", 65)
	wantErr(t, err, shm.ErrKindMismatch, "alloc")
}

func TestAllocObjectInit(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	const kind shm.Kind = 77
	calls := 0
	init := func(b []byte) {
		calls++
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Error("init got memory that is not zeroed")
		}
		if _, err := seg.Lookup("prim"); err == nil {
			t.Error("object visible before init returned")
		}
		binary.LittleEndian.PutUint64(b, 0xfeedface)
	}
	r, created, err := seg.AllocObject("prim", kind, 16, init)
	if err != nil || !created || calls != 1 || r.Kind != kind {
		t.Fatalf("first AllocObject: %+v created %t calls %d err %v", r, created, calls, err)
	}
	h, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	r2, created, err := h.AllocObject("prim", kind, 16, init)
	if err != nil || created || calls != 1 || r2.Off != r.Off {
		t.Fatalf("second AllocObject: %+v created %t calls %d err %v", r2, created, calls, err)
	}
	if v := binary.LittleEndian.Uint64(r2.Bytes()); v != 0xfeedface {
		t.Fatalf("init's write not visible: %#x", v)
	}
}

func TestAllocDirectoryFull(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, cfg(2, 3))
	for i := range 3 {
		if _, err := seg.Alloc("o"+strconv.Itoa(i), 8); err != nil {
			t.Fatal(err)
		}
	}
	_, err := seg.Alloc("o3", 8)
	wantErr(t, err, shm.ErrNoSpace, "alloc")
	// Existing objects are still found.
	if _, err := seg.Alloc("o1", 8); err != nil {
		t.Fatal(err)
	}
	if objs, err := seg.Objects(); err != nil || len(objs) != 3 {
		t.Fatalf("Objects() = %v, %v", objs, err)
	}
}

func TestAllocDataFull(t *testing.T) {
	seg := ipctest.CreateSegment(t, 1000, cfg(2, 8))
	free := seg.Size() - dataOff(2, 8)
	// A region bigger than the free space fails without using any of it.
	_, err := seg.Alloc("too-big", free+1)
	wantErr(t, err, shm.ErrNoSpace, "alloc")
	a, err := seg.Alloc("a", 10) // takes one 64-byte line
	if err != nil {
		t.Fatal(err)
	}
	b, err := seg.Alloc("rest", free-shm.Align)
	if err != nil {
		t.Fatalf("Alloc of exactly the remaining space: %v", err)
	}
	if b.Off != a.Off+shm.Align || b.Off+b.Len != seg.Size() {
		t.Fatalf("regions %+v and %+v do not fill the data area of a %d-byte segment", a, b, seg.Size())
	}
	_, err = seg.Alloc("one-more", 1)
	wantErr(t, err, shm.ErrNoSpace, "alloc")
	b.Bytes()[b.Len-1] = 1 // the last byte is mapped
	if _, err := seg.Alloc("a", 10); err != nil {
		t.Fatalf("existing object after the data area filled: %v", err)
	}
}

func TestAllocBadArgs(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	for _, name := range []string{"", "a/b", "..", ".x", "a..b", "a b", "a\x00", strings.Repeat("n", shm.MaxObjectName+1)} {
		_, err := seg.Alloc(name, 8)
		wantErr(t, err, shm.ErrBadName, "alloc")
		_, _, err = seg.AllocObject(name, shm.KindData, 8, nil)
		wantErr(t, err, shm.ErrBadName, "alloc")
	}
	long := strings.Repeat("n", shm.MaxObjectName)
	r, err := seg.Alloc(long, 8)
	if err != nil || r.Name != long {
		t.Fatalf("Alloc with the longest name: %+v, %v", r, err)
	}
	if l, err := seg.Lookup(long); err != nil || l.Name != long {
		t.Fatalf("Lookup of the longest name: %+v, %v", l, err)
	}
	for _, size := range []int{0, -1, math.MinInt, seg.Size() + 1, math.MaxInt} {
		_, err := seg.Alloc("s", size)
		wantErr(t, err, shm.ErrBadConfig, "alloc")
	}
	if objs, _ := seg.Objects(); len(objs) != 1 {
		t.Fatalf("failed Allocs created objects: %v", objs)
	}
}

func TestRegionWordBounds(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	r, err := seg.Alloc("w", 24)
	if err != nil {
		t.Fatal(err)
	}
	r.Uint32(20).Store(1)
	r.Uint64(16).Store(2)
	for _, tc := range []struct {
		off, size int
	}{{-4, 4}, {24, 4}, {22, 4}, {2, 4}, {-8, 8}, {24, 8}, {20, 8}, {4, 8}, {math.MaxInt - 7, 8}, {math.MaxInt - 3, 4}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Uint%d(%d) on a 24-byte region did not panic", tc.size*8, tc.off)
				}
			}()
			if tc.size == 4 {
				r.Uint32(tc.off)
			} else {
				r.Uint64(tc.off)
			}
		}()
	}
}

// TestDamagedEntryNotHandedOut damages a published directory entry the way
// a buggy or hostile process could: such an entry must never yield a
// region outside the data area.
func TestDamagedEntryNotHandedOut(t *testing.T) {
	for _, tc := range []struct {
		what      string
		off, size uint64
	}{
		{"off-wraps", math.MaxUint64, 1},
		{"off-wraps-big", math.MaxUint64 - 63, 128},
		{"size-wraps", 4096, math.MaxUint64},
		{"in-header", 0, 64},
		{"past-end", 1 << 40, 8},
	} {
		t.Run(tc.what, func(t *testing.T) {
			seg := ipctest.CreateSegment(t, 4096, cfg(2, 4))
			if _, err := seg.Alloc("x", 64); err != nil {
				t.Fatal(err)
			}
			e := seg.Mem()[dirOff(2):]
			binary.LittleEndian.PutUint64(e[8:], tc.off)
			binary.LittleEndian.PutUint64(e[16:], tc.size)
			r, err := seg.Lookup("x")
			if err == nil {
				t.Fatalf("Lookup handed out the damaged entry as %+v", r)
			}
			objs, err := seg.Objects()
			if err != nil || len(objs) != 0 {
				t.Fatalf("Objects() = %+v, %v", objs, err)
			}
		})
	}
}

func TestAllocConcurrentGoroutines(t *testing.T) {
	seg := ipctest.CreateSegment(t, 1<<16, nil)
	handles := []*shm.Segment{seg}
	for range 3 {
		h, err := shm.Open(seg.Name())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		handles = append(handles, h)
	}
	for round := range 10 {
		name := "shared" + strconv.Itoa(round)
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			created atomic.Int32
			offs    = make([]int, 32)
			errs    = make([]error, 32)
		)
		for i := range offs {
			h := handles[i%len(handles)]
			wg.Go(func() {
				<-start
				r, c, err := h.AllocObject(name, shm.KindData, 192, slowInit)
				if c {
					created.Add(1)
				}
				offs[i], errs[i] = r.Off, err
			})
		}
		close(start)
		wg.Wait()
		for i := range offs {
			if errs[i] != nil {
				t.Fatalf("goroutine %d: %v", i, errs[i])
			}
			if offs[i] != offs[0] {
				t.Fatalf("round %d: goroutine %d got offset %d, goroutine 0 got %d", round, i, offs[i], offs[0])
			}
		}
		if n := created.Load(); n != 1 {
			t.Fatalf("round %d: %d goroutines created the object", round, n)
		}
	}
	objs, err := seg.Objects()
	if err != nil || len(objs) != 10 {
		t.Fatalf("Objects() = %d entries, %v; want 10", len(objs), err)
	}
}

// slowInit widens the window between an allocation's lookup and its
// publication, so that a missing lock would show as duplicate objects.
func slowInit([]byte) { time.Sleep(time.Millisecond) }

func TestAllocConcurrentProcesses(t *testing.T) {
	seg := ipctest.CreateSegment(t, 1<<16, nil)
	const n = 4
	var peers []*ipctest.Peer
	var stdins []interface{ Write([]byte) (int, error) }
	for range n {
		cmd := ipctest.Command("alloc-race", seg.Name(), "contended")
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		p := ipctest.Start(t, cmd)
		peers = append(peers, p)
		stdins = append(stdins, in)
	}
	for _, p := range peers {
		p.Expect(t, "ready", peerTimeout)
	}
	for _, in := range stdins {
		if _, err := in.Write([]byte("go\n")); err != nil {
			t.Fatal(err)
		}
	}
	r, createdHere, err := seg.AllocObject("contended", shm.KindData, 256, slowInit)
	if err != nil {
		t.Fatal(err)
	}
	created := 0
	if createdHere {
		created++
	}
	for _, p := range peers {
		var c bool
		var off int
		line := p.Line(t, peerTimeout)
		if _, err := fmt.Sscan(line, &c, &off); err != nil {
			t.Fatalf("peer said %q: %v", line, err)
		}
		if off != r.Off {
			t.Fatalf("peer %d got offset %d, this process %d", p.Pid(), off, r.Off)
		}
		if c {
			created++
		}
		if err := p.Wait(t, peerTimeout); err != nil {
			t.Fatalf("peer %d: %v", p.Pid(), err)
		}
	}
	if created != 1 {
		t.Fatalf("%d processes created the object", created)
	}
	if objs, err := seg.Objects(); err != nil || len(objs) != 1 {
		t.Fatalf("Objects() = %+v, %v", objs, err)
	}
}
