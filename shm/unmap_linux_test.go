//go:build linux

package shm_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/shm"
)

// mappingFlags returns the VmFlags (/proc/self/smaps) of the mapping that
// holds addr; ok is false if no mapping does.
func mappingFlags(t *testing.T, addr uintptr) (flags []string, ok bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if v, found := strings.CutPrefix(line, "VmFlags:"); found {
			if in {
				return strings.Fields(v), true
			}
			continue
		}
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 && strings.Contains(strings.Fields(line)[0], "-") {
			in = lo <= addr && addr < hi
		}
	}
	return nil, false
}

// TestCloseUnmapsUnviewed: a segment whose memory was never handed out is
// unmapped by Close; its pinned calls return net.ErrClosed, and a view
// asked for afterwards is zero memory apart from any segment.
func TestCloseUnmapsUnviewed(t *testing.T) {
	seg := ipctest.CreateSegment(t, 1<<20, nil)
	if _, err := seg.Alloc("r", 4096); err != nil {
		t.Fatal(err)
	}
	addr := shm.AddrForTest(seg)
	if _, ok := mappingFlags(t, addr); !ok {
		t.Fatal("an open segment is not mapped")
	}
	if err := seg.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := mappingFlags(t, addr); ok {
		t.Fatal("Close left the mapping of a segment that handed out no view")
	}
	if _, err := seg.Lookup("r"); !errorsIsClosed(err) {
		t.Errorf("Lookup after Close: %v", err)
	}
	if _, err := seg.Objects(); !errorsIsClosed(err) {
		t.Errorf("Objects after Close: %v", err)
	}
	if o := seg.TokenOwner(seg.Token() + 1); o.Alive || o.PID != 0 {
		t.Errorf("TokenOwner after Close: %+v", o)
	}
	if _, pid, alive := seg.SlotInfo(0); alive || pid != 0 {
		t.Errorf("SlotInfo after Close: pid %d alive %v", pid, alive)
	}
	m := seg.Mem()
	if len(m) != seg.Size() || slices.ContainsFunc(m, func(b byte) bool { return b != 0 }) {
		t.Fatal("Mem after Close is not zero memory of the segment's size")
	}
	m[0] = 1 // never faults
}

// TestCloseLeavesUncharged: a segment whose memory was handed out leaves a
// placeholder at the same address that is not charged to the commit limit.
func TestCloseLeavesUncharged(t *testing.T) {
	seg := ipctest.CreateSegment(t, 1<<20, nil)
	r, err := seg.Alloc("r", 4096)
	if err != nil {
		t.Fatal(err)
	}
	b := r.Bytes()
	b[0] = 1
	addr := shm.AddrForTest(seg)
	if err := seg.Close(); err != nil {
		t.Fatal(err)
	}
	flags, ok := mappingFlags(t, addr)
	if !ok {
		t.Fatal("Close unmapped a segment whose memory was handed out")
	}
	if slices.Contains(flags, "ac") || slices.Contains(flags, "sh") {
		t.Errorf("placeholder flags %v: want private and not accountable", flags)
	}
	if b[0] != 0 {
		t.Errorf("a stale view reads %d, want 0", b[0])
	}
	b[1] = 2 // never faults
}

func errorsIsClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
