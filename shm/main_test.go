package shm_test

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/shm"
)

func TestMain(m *testing.M) {
	ipctest.Main(m, peers)
}

// peerTimeout bounds every wait for a peer. Peers answer in milliseconds;
// the bound only limits how long a broken test takes to fail.
const peerTimeout = 8 * time.Second

// peerLife is how long a holding peer lives if nobody kills it first (the
// test that started it always does, in its cleanup).
const peerLife = 30 * time.Second

// peers are the bodies of the processes the tests start; each reports on
// stdout, one line per step, and on stderr (through ipctest.Fail) when
// something goes wrong.
var peers = ipctest.Peers{
	"echo":       peerEcho,
	"hold":       peerHold,
	"anon-child": peerAnonChild,
	"inherit":    peerInherit,
	"nobody":     peerNobody,
	"alloc-race": peerAllocRace,
}

// peerEcho opens segment args[0], prints the string in region args[1], its
// creator PID and its own token, writes "pong" into the region and exits.
func peerEcho(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer seg.Close()
	r, err := seg.Lookup(args[1])
	if err != nil {
		return ipctest.Fail("lookup: %v", err)
	}
	fmt.Printf("%s %d %d\n", cstring(r.Bytes()), seg.Info().CreatorPID, seg.Token())
	copy(r.Bytes(), "pong\x00")
	fmt.Println("done")
	return 0
}

// peerHold opens segment args[0], prints "slot gen token" and holds its
// slot until it is killed.
func peerHold(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		fmt.Printf("error %v\n", err)
		return 1
	}
	fmt.Printf("%d %d %d\n", seg.Slot(), seg.SlotGen(), seg.Token())
	time.Sleep(peerLife)
	return 0
}

// peerAnonChild attaches to the anonymous segment it inherits as fd 3,
// prints "token text" (text from region "data"), replaces the text with
// "child" and holds its slot until it is killed.
func peerAnonChild(args []string) int {
	seg, err := shm.OpenFile(os.NewFile(3, "inherited-segment"))
	if err != nil {
		return ipctest.Fail("open file: %v", err)
	}
	r, err := seg.Lookup("data")
	if err != nil {
		return ipctest.Fail("lookup: %v", err)
	}
	fmt.Printf("%d %s\n", seg.Token(), cstring(r.Bytes()))
	copy(r.Bytes(), "child\x00")
	fmt.Println("written")
	time.Sleep(peerLife)
	return 0
}

// peerInherit keeps the descriptor it inherits as fd 3 without attaching,
// as a careless child would, and waits to be killed.
func peerInherit(args []string) int {
	if _, err := os.NewFile(3, "inherited").Stat(); err != nil {
		return ipctest.Fail("fd 3: %v", err)
	}
	fmt.Println("ready")
	time.Sleep(peerLife)
	return 0
}

// peerNobody runs as an unprivileged user: it prints its uid, then for
// Open, Stat and Unlink of segment args[0] whether the error is a
// permission error wrapped in an *shm.OpError, then whether Open of
// segment args[1] works.
func peerNobody(args []string) int {
	fmt.Println(os.Getuid())
	report := func(op string, err error) {
		var oe *shm.OpError
		fmt.Printf("%s perm=%t operr=%t\n", op, errors.Is(err, fs.ErrPermission), errors.As(err, &oe))
	}
	seg, err := shm.Open(args[0])
	if err == nil {
		seg.Close()
	}
	report("open", err)
	_, err = shm.Stat(args[0])
	report("stat", err)
	report("unlink", shm.Unlink(args[0]))
	seg, err = shm.Open(args[1])
	if err != nil {
		fmt.Printf("allowed %v\n", err)
		return 0
	}
	seg.Close()
	fmt.Println("allowed ok")
	return 0
}

// peerAllocRace opens segment args[0], says "ready", waits for a line on
// stdin, allocates object args[1] and prints "created offset".
func peerAllocRace(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer seg.Close()
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return ipctest.Fail("stdin: %v", err)
	}
	r, created, err := seg.AllocObject(args[1], shm.KindData, 256, slowInit)
	if err != nil {
		return ipctest.Fail("alloc: %v", err)
	}
	fmt.Printf("%t %d\n", created, r.Off)
	return 0
}

// cstring returns b up to its first NUL.
func cstring(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// segPath is the file behind a named segment.
func segPath(name string) string { return filepath.Join(shm.Dir, name) }

// cfg returns a configuration with the default mode and the given counts.
func cfg(slots, objects int) *shm.Config {
	c := shm.DefaultConfig()
	c.Slots, c.Objects = slots, objects
	return c
}

// dataOff is where the data area of a segment with these counts starts.
func dataOff(slots, objects int) int {
	end := shm.HeaderSize + slots*shm.SlotSize + objects*shm.EntrySize
	return (end + shm.Align - 1) / shm.Align * shm.Align
}

// dirOff is where the object directory of a segment with slots slots starts.
func dirOff(slots int) int { return shm.HeaderSize + slots*shm.SlotSize }

// createClosed creates a named segment for t, closes the handle and returns
// the name; the segment is unlinked when t ends. Tests tamper with its file.
func createClosed(t *testing.T, size int, c *shm.Config) string {
	t.Helper()
	name := ipctest.SegName(t)
	seg, err := shm.Create(name, size, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := seg.Close(); err != nil {
		t.Fatal(err)
	}
	return name
}

// writeForeign writes a file that this package did not create into
// /dev/shm under a fresh segment name and removes it when t ends.
func writeForeign(t *testing.T, content []byte) string {
	t.Helper()
	name := ipctest.SegName(t) + "-foreign"
	path := segPath(name)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	return name
}

// patchFile writes b at offset off of the segment file.
func patchFile(t *testing.T, name string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(segPath(name), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// readFile returns n bytes at offset off of the segment file.
func readFile(t *testing.T, name string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(segPath(name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// wantErr fails t unless err matches target with errors.Is and is an
// *shm.OpError for operation op.
func wantErr(t *testing.T, err, target error, op string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", op, err, target)
	}
	var oe *shm.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("%s: error %v (%T) is not an *shm.OpError", op, err, err)
	}
	if oe.Op != op {
		t.Fatalf("error %v: Op %q, want %q", err, oe.Op, op)
	}
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still false after %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tmpFiles lists the temporary files Create of this process left in
// /dev/shm.
func tmpFiles(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(shm.Dir, fmt.Sprintf(".ipc-tmp-%d-*", os.Getpid())))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
