package shm_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/shm"
)

func TestCreateOpenStatUnlink(t *testing.T) {
	name := ipctest.SegName(t)
	before := time.Now()
	seg, err := shm.Create(name, 10000, nil)
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })

	if seg.Name() != name {
		t.Errorf("Name() = %q, want %q", seg.Name(), name)
	}
	info := seg.Info()
	page := os.Getpagesize()
	wantMin := dataOff(64, 128) + 10000
	if info.Name != name || info.Version != shm.Version || info.Slots != 64 || info.Objects != 128 ||
		info.CreatorPID != os.Getpid() || info.CreatorUID != os.Getuid() || info.Err != nil {
		t.Errorf("Info() = %+v", info)
	}
	if info.Size != int64(seg.Size()) || info.Size%int64(page) != 0 ||
		info.Size < int64(wantMin) || info.Size >= int64(wantMin+page) {
		t.Errorf("size %d (mapped %d), want the page-rounded %d", info.Size, seg.Size(), wantMin)
	}
	// Created is wall-clock time taken inside Create; allow for a clock step.
	if info.Created.Before(before.Add(-time.Second)) || info.Created.After(after.Add(time.Second)) {
		t.Errorf("Created %v, not within [%v, %v]", info.Created, before, after)
	}
	if st, err := os.Stat(segPath(name)); err != nil || st.Size() != info.Size {
		t.Fatalf("file: %v, %v; want %d bytes", st, err, info.Size)
	}

	st, err := shm.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Created.Equal(info.Created) {
		t.Errorf("Stat Created %v, handle says %v", st.Created, info.Created)
	}
	st.Created = info.Created
	if st != info {
		t.Errorf("Stat = %+v, want %+v", st, info)
	}

	seg2, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg2.Close() })
	if i2 := seg2.Info(); !i2.Created.Equal(info.Created) || i2.Size != info.Size || i2.CreatorPID != info.CreatorPID {
		t.Errorf("Open Info = %+v, want %+v", i2, info)
	}
	if seg2.Slot() == seg.Slot() || seg2.Token() == seg.Token() || seg2.Token() == 0 {
		t.Errorf("two handles share slot %d / token %#x vs %d / %#x", seg.Slot(), seg.Token(), seg2.Slot(), seg2.Token())
	}

	// Data written through one handle is seen through the other.
	r1, err := seg.Alloc("buf", 64)
	if err != nil {
		t.Fatal(err)
	}
	copy(r1.Bytes(), "hello")
	r2, err := seg2.Lookup("buf")
	if err != nil {
		t.Fatal(err)
	}
	if r2.Off != r1.Off || r2.Len != r1.Len || r2.Kind != shm.KindData || r2.Segment() != seg2 {
		t.Fatalf("Lookup = %+v, Alloc gave %+v", r2, r1)
	}
	if got := cstring(r2.Bytes()); got != "hello" {
		t.Fatalf("second handle reads %q", got)
	}
	r2.Uint64(8).Store(42)
	if got := r1.Uint64(8).Load(); got != 42 {
		t.Fatalf("first handle reads %d", got)
	}

	// Unlink removes the name; attached handles keep sharing the memory.
	if err := shm.Unlink(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(segPath(name)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("file after Unlink: %v", err)
	}
	_, err = shm.Open(name)
	wantErr(t, err, shm.ErrNotFound, "open")
	_, err = shm.Stat(name)
	wantErr(t, err, shm.ErrNotFound, "stat")
	wantErr(t, shm.Unlink(name), shm.ErrNotFound, "unlink")
	r1.Uint64(8).Store(43)
	if got := r2.Uint64(8).Load(); got != 43 {
		t.Fatalf("after Unlink the second handle reads %d", got)
	}

	// The name is free again, for a new, empty segment.
	seg3, err := shm.Create(name, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg3.Close() })
	if objs, err := seg3.Objects(); err != nil || len(objs) != 0 {
		t.Fatalf("new segment under a reused name has objects %v, %v", objs, err)
	}
}

func TestDataVisibleToPeer(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	r, err := seg.Alloc("msg", 64)
	if err != nil {
		t.Fatal(err)
	}
	copy(r.Bytes(), "ping")
	p := ipctest.StartPeer(t, "echo", seg.Name(), "msg")
	f := strings.Fields(p.Line(t, peerTimeout))
	if len(f) != 3 || f[0] != "ping" || f[1] != strconv.Itoa(os.Getpid()) {
		t.Fatalf("peer said %q, want ping and creator %d", f, os.Getpid())
	}
	if f[2] == strconv.Itoa(int(seg.Token())) {
		t.Fatalf("peer has this handle's token %s", f[2])
	}
	p.Expect(t, "done", peerTimeout)
	if err := p.Wait(t, peerTimeout); err != nil {
		t.Fatalf("peer: %v", err)
	}
	if got := cstring(r.Bytes()); got != "pong" {
		t.Fatalf("after the peer wrote, region holds %q", got)
	}
}

func TestCreateExists(t *testing.T) {
	seg := ipctest.CreateSegment(t, 100, nil)
	created := seg.Info().Created
	_, err := shm.Create(seg.Name(), 100, nil)
	wantErr(t, err, shm.ErrExists, "create")
	if st, err := shm.Stat(seg.Name()); err != nil || !st.Created.Equal(created) {
		t.Fatalf("the existing segment changed: %+v, %v", st, err)
	}

	// A foreign file is not replaced either.
	foreign := writeForeign(t, []byte("not a segment"))
	_, err = shm.Create(foreign, 100, nil)
	wantErr(t, err, shm.ErrExists, "create")
	if b, err := os.ReadFile(segPath(foreign)); err != nil || string(b) != "not a segment" {
		t.Fatalf("foreign file now %q, %v", b, err)
	}
	if tmp := tmpFiles(t); len(tmp) != 0 {
		t.Fatalf("Create left temporary files: %v", tmp)
	}
}

func TestNotFound(t *testing.T) {
	name := ipctest.SegName(t)
	_, err := shm.Open(name)
	wantErr(t, err, shm.ErrNotFound, "open")
	_, err = shm.Stat(name)
	wantErr(t, err, shm.ErrNotFound, "stat")
	wantErr(t, shm.Unlink(name), shm.ErrNotFound, "unlink")
}

func TestNotSegment(t *testing.T) {
	for _, tc := range []struct {
		what    string
		content []byte
	}{
		{"text", []byte("hello, I belong to another program\n" + strings.Repeat("x", 200))},
		{"empty", nil},
		{"short", []byte("IPCGO")},
		{"zeros", make([]byte, 8192)},
	} {
		t.Run(tc.what, func(t *testing.T) {
			name := writeForeign(t, tc.content)
			_, err := shm.Open(name)
			wantErr(t, err, shm.ErrNotSegment, "open")
			_, err = shm.Stat(name)
			wantErr(t, err, shm.ErrNotSegment, "stat")
			wantErr(t, shm.Unlink(name), shm.ErrNotSegment, "unlink")
			b, err := os.ReadFile(segPath(name))
			if err != nil || !bytes.Equal(b, tc.content) {
				t.Fatalf("Unlink touched the foreign file: %v", err)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	name := createClosed(t, 100, nil)
	patchFile(t, name, 8, []byte{shm.Version + 1, 0, 0, 0})
	_, err := shm.Open(name)
	wantErr(t, err, shm.ErrVersion, "open")
	_, err = shm.Stat(name)
	wantErr(t, err, shm.ErrVersion, "stat")
	// It still carries the magic: Unlink removes it.
	if err := shm.Unlink(name); err != nil {
		t.Fatal(err)
	}
}

func TestCorrupt(t *testing.T) {
	for _, off := range []int64{12, 16, 24, 32, 40, 44, 48, 52, 56, 59, 60, 63} {
		t.Run(strconv.Itoa(int(off)), func(t *testing.T) {
			name := createClosed(t, 100, nil)
			b := readFile(t, name, off, 1)
			patchFile(t, name, off, []byte{b[0] ^ 0x10})
			_, err := shm.Open(name)
			wantErr(t, err, shm.ErrCorrupt, "open")
			_, err = shm.Stat(name)
			wantErr(t, err, shm.ErrCorrupt, "stat")
		})
	}
	t.Run("cursor", func(t *testing.T) {
		// The allocation cursor is outside the checksum but still checked.
		name := createClosed(t, 100, nil)
		patchFile(t, name, 64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0})
		_, err := shm.Open(name)
		wantErr(t, err, shm.ErrCorrupt, "open")
	})
	t.Run("short-header", func(t *testing.T) {
		name := createClosed(t, 100, nil)
		if err := os.Truncate(segPath(name), 100); err != nil {
			t.Fatal(err)
		}
		_, err := shm.Open(name)
		wantErr(t, err, shm.ErrCorrupt, "open")
	})
}

func TestSizeMismatch(t *testing.T) {
	page := int64(os.Getpagesize())
	for _, tc := range []struct {
		what  string
		delta int64
	}{{"truncated", -page}, {"one-byte-short", -1}, {"grown", page}} {
		t.Run(tc.what, func(t *testing.T) {
			name := createClosed(t, 3*int(page), nil)
			st, err := os.Stat(segPath(name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(segPath(name), st.Size()+tc.delta); err != nil {
				t.Fatal(err)
			}
			_, err = shm.Open(name)
			wantErr(t, err, shm.ErrSizeMismatch, "open")
			_, err = shm.Stat(name)
			wantErr(t, err, shm.ErrSizeMismatch, "stat")
		})
	}
}

func TestBadName(t *testing.T) {
	names := []string{"", "a/b", "/abs", "..", ".", "../x", ".hidden", "a..b", "x..",
		strings.Repeat("a", shm.MaxNameLen+1), "a b", "a\x00b", "tab\t", "é", "a*", "a\\b"}
	for _, name := range names {
		t.Run(strconv.Quote(name), func(t *testing.T) {
			if err := shm.ValidateName(name); !errors.Is(err, shm.ErrBadName) {
				t.Errorf("ValidateName: %v", err)
			}
			seg, err := shm.Create(name, 100, nil)
			if err == nil {
				seg.Close()
				shm.Unlink(name)
			}
			wantErr(t, err, shm.ErrBadName, "create")
			_, err = shm.Open(name)
			wantErr(t, err, shm.ErrBadName, "open")
			_, err = shm.Stat(name)
			wantErr(t, err, shm.ErrBadName, "stat")
			wantErr(t, shm.Unlink(name), shm.ErrBadName, "unlink")
		})
	}
	for _, name := range []string{"a", "A-b_c.d", "x.y.z", strings.Repeat("z", shm.MaxNameLen), "0"} {
		if err := shm.ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q): %v", name, err)
		}
	}
	// The longest valid name works end to end.
	long := ipctest.SegName(t)
	long += strings.Repeat("x", shm.MaxNameLen-len(long))
	t.Cleanup(func() { shm.Unlink(long) })
	seg, err := shm.Create(long, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	seg.Close()
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		what string
		size int
		cfg  *shm.Config
	}{
		{"perm-bits", 100, &shm.Config{Perm: os.ModeDir | 0o600, Slots: 1}},
		{"setuid", 100, &shm.Config{Perm: os.ModeSetuid | 0o600, Slots: 1}},
		{"slots-neg", 100, cfg(-1, 1)},
		{"slots-max", 100, cfg(shm.MaxSlots+1, 1)},
		{"objects-neg", 100, cfg(1, -1)},
		{"objects-max", 100, cfg(1, shm.MaxObjectsForTest+1)},
		{"size-neg", -1, nil},
		{"size-huge", 1 << 50, nil},
	} {
		t.Run(tc.what, func(t *testing.T) {
			name := ipctest.SegName(t)
			seg, err := shm.Create(name, tc.size, tc.cfg)
			if err == nil {
				seg.Close()
			}
			wantErr(t, err, shm.ErrBadConfig, "create")
			if _, err := os.Stat(segPath(name)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("failed Create left a file: %v", err)
			}
			seg, err = shm.CreateAnonymous(tc.size, tc.cfg)
			if err == nil {
				seg.Close()
			}
			wantErr(t, err, shm.ErrBadConfig, "create")
		})
	}
	// The bounds themselves are accepted.
	seg, err := shm.CreateAnonymous(0, &shm.Config{Perm: 0o600, Slots: shm.MaxSlots, Objects: 1})
	if err != nil {
		t.Fatal(err)
	}
	seg.Close()
}

// TestPermissionDenied opens a 0600 segment as an unprivileged user, which
// must fail with fs.ErrPermission inside an *shm.OpError.
func TestPermissionDenied(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to start a peer as another user")
	}
	denied := ipctest.CreateSegment(t, 100, nil) // 0600, owned by root
	allowed := ipctest.CreateSegment(t, 100, &shm.Config{Perm: 0o666, Slots: 4, Objects: 4})

	// The test binary lives in a private build directory; run a copy the
	// unprivileged user can reach.
	dir, err := os.MkdirTemp("", "shm-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "shm.test")
	copyFile(t, exe)

	cmd := ipctest.Command("nobody", denied.Name(), allowed.Name())
	cmd.Path, cmd.Args[0] = exe, exe
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	p := ipctest.Start(t, cmd)
	p.Expect(t, "65534", peerTimeout)
	p.Expect(t, "open perm=true operr=true", peerTimeout)
	p.Expect(t, "stat perm=true operr=true", peerTimeout)
	p.Expect(t, "unlink perm=true operr=true", peerTimeout)
	p.Expect(t, "allowed ok", peerTimeout)
	if err := p.Wait(t, peerTimeout); err != nil {
		t.Fatalf("peer: %v", err)
	}
	if _, err := shm.Stat(denied.Name()); err != nil {
		t.Fatalf("segment after the refused Unlink: %v", err)
	}
}

// copyFile copies the running test binary to path, executable by all.
func copyFile(t *testing.T, path string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// withUmask runs f with the process umask set to mask. Tests that call it
// must not run in parallel with tests that create files.
func withUmask(mask int, f func()) {
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	f()
}

func TestPerm(t *testing.T) {
	for _, tc := range []struct {
		what  string
		umask int
		cfg   *shm.Config
		want  os.FileMode
	}{
		{"default", 0o022, nil, 0o600},
		{"default-umask-0", 0, nil, 0o600},
		{"default-umask-077", 0o077, nil, 0o600},
		{"640-umask-077", 0o077, &shm.Config{Perm: 0o640, Slots: 2, Objects: 2}, 0o640},
		{"666-umask-022", 0o022, &shm.Config{Perm: 0o666, Slots: 2, Objects: 2}, 0o666},
		{"zero-perm-is-default", 0o022, &shm.Config{Slots: 2, Objects: 2}, 0o600},
	} {
		t.Run(tc.what, func(t *testing.T) {
			name := ipctest.SegName(t)
			var seg, anon *shm.Segment
			var err, aerr error
			withUmask(tc.umask, func() {
				seg, err = shm.Create(name, 100, tc.cfg)
				anon, aerr = shm.CreateAnonymous(100, tc.cfg)
			})
			if err != nil {
				t.Fatal(err)
			}
			defer seg.Close()
			if aerr != nil {
				t.Fatal(aerr)
			}
			defer anon.Close()
			st, err := os.Stat(segPath(name))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode() != tc.want {
				t.Errorf("named segment has mode %v, want %v", st.Mode(), tc.want)
			}
			if st.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
				t.Errorf("named segment owned by uid %d", st.Sys().(*syscall.Stat_t).Uid)
			}
			ast, err := anon.File().Stat()
			if err != nil {
				t.Fatal(err)
			}
			if ast.Mode().Perm() != tc.want {
				t.Errorf("anonymous segment has mode %v, want %v", ast.Mode().Perm(), tc.want)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	other, err := shm.Open(seg.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	r, err := seg.Alloc("r", 128)
	if err != nil {
		t.Fatal(err)
	}
	r.Uint64(0).Store(7)
	tok := seg.Token()
	if !other.TokenAlive(tok) {
		t.Fatal("open handle's token is dead")
	}

	if seg.Closed() {
		t.Fatal("Closed() before Close")
	}
	if err := seg.Close(); err != nil {
		t.Fatal(err)
	}
	if !seg.Closed() {
		t.Fatal("Closed() false after Close")
	}
	wantErr(t, seg.Close(), net.ErrClosed, "close")
	_, err = seg.Objects()
	wantErr(t, err, net.ErrClosed, "objects")
	_, err = seg.Lookup("r")
	wantErr(t, err, net.ErrClosed, "lookup")
	_, err = seg.Alloc("r", 128)
	wantErr(t, err, net.ErrClosed, "alloc")
	_, err = seg.Alloc("new", 128)
	wantErr(t, err, net.ErrClosed, "alloc")
	_, _, err = seg.AllocObject("new", shm.KindData, 64, func([]byte) { t.Error("init ran on a closed segment") })
	wantErr(t, err, net.ErrClosed, "alloc")

	// The old region is private zero memory now: no fault, and writes do
	// not reach the segment.
	b := r.Bytes()
	if len(b) != 128 {
		t.Fatalf("len %d", len(b))
	}
	for i := range b {
		b[i] = 0xee
	}
	r.Uint64(8).Add(1)
	_ = seg.Mem()[0]
	ro, err := other.Lookup("r")
	if err != nil {
		t.Fatal(err)
	}
	if v := ro.Uint64(0).Load(); v != 7 {
		t.Fatalf("other handle reads %d, want 7", v)
	}
	if v := ro.Uint64(8).Load(); v != 0 {
		t.Fatalf("a write after Close reached the segment: %d", v)
	}

	// Its slot is free and its token dead, for everyone.
	if other.TokenAlive(tok) {
		t.Fatal("closed handle's token alive for another handle")
	}
	if seg.TokenAlive(tok) {
		t.Fatal("closed handle reports its own token alive")
	}
	if _, pid, alive := other.SlotInfo(seg.Slot()); alive || pid != 0 {
		t.Fatalf("closed slot: pid %d alive %t", pid, alive)
	}
}

// TestCloseRace closes a segment while goroutines use it: every call either
// works or reports net.ErrClosed (a Lookup that loses the race may also find
// nothing in the detached memory), and nothing faults.
func TestCloseRace(t *testing.T) {
	for range 20 {
		seg := ipctest.CreateSegment(t, 1<<16, cfg(8, 256))
		r, err := seg.Alloc("counter", 64)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, 4) // the first unexpected error of each goroutine
		for g := range errs {
			wg.Go(func() {
				<-start
				for i := range 50 {
					r.Uint64(0).Add(1)
					_ = r.Bytes()[63]
					if _, err := seg.Lookup("counter"); err != nil && !errors.Is(err, net.ErrClosed) &&
						!errors.Is(err, shm.ErrObjectNotFound) {
						errs[g] = err
						return
					}
					if _, err := seg.Alloc("g"+strconv.Itoa(g)+"-"+strconv.Itoa(i), 8); err != nil && !errors.Is(err, net.ErrClosed) {
						errs[g] = err
						return
					}
					if _, err := seg.Objects(); err != nil && !errors.Is(err, net.ErrClosed) {
						errs[g] = err
						return
					}
					seg.TokenAlive(seg.Token() + 1)
				}
			})
		}
		close(start)
		if err := seg.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("call racing with Close: %v", err)
			}
		}
	}
}

func TestOpenFailuresLeakNoDescriptors(t *testing.T) {
	corrupt := createClosed(t, 100, nil)
	patchFile(t, corrupt, 20, []byte{0x55})
	full := ipctest.CreateSegment(t, 100, &shm.Config{Perm: 0o600, Slots: 1, Objects: 1})
	foreign := writeForeign(t, []byte("foreign"))

	before := openFDs(t)
	for range 20 {
		_, err := shm.Open(corrupt)
		wantErr(t, err, shm.ErrCorrupt, "open")
		_, err = shm.Open(full.Name())
		wantErr(t, err, shm.ErrNoSlot, "open")
		_, err = shm.Open(foreign)
		wantErr(t, err, shm.ErrNotSegment, "open")
		_, err = shm.Create(full.Name(), 100, nil)
		wantErr(t, err, shm.ErrExists, "create")
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after failed Opens", before, after)
	}
	if tmp := tmpFiles(t); len(tmp) != 0 {
		t.Fatalf("Create left temporary files: %v", tmp)
	}
}

func TestList(t *testing.T) {
	a := ipctest.CreateSegment(t, 100, nil)
	b := ipctest.CreateSegment(t, 5000, cfg(3, 7))
	foreign := writeForeign(t, []byte("some other program's memory"))
	hidden := filepath.Join(shm.Dir, ".ipctest-hidden-"+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(hidden, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(hidden) })
	broken := createClosed(t, 100, nil)
	patchFile(t, broken, 30, []byte{0xaa})

	list, err := shm.List()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(list, func(x, y shm.Info) int { return strings.Compare(x.Name, y.Name) }) {
		t.Error("List is not sorted by name")
	}
	byName := map[string]shm.Info{}
	for _, info := range list {
		byName[info.Name] = info
	}
	for _, seg := range []*shm.Segment{a, b} {
		got, ok := byName[seg.Name()]
		want := seg.Info()
		if !ok {
			t.Errorf("List misses %s", seg.Name())
			continue
		}
		if got.Err != nil || got.Size != want.Size || got.CreatorPID != os.Getpid() ||
			got.CreatorUID != os.Getuid() || got.Slots != want.Slots || got.Objects != want.Objects ||
			!got.Created.Equal(want.Created) {
			t.Errorf("List entry %+v, want %+v", got, want)
		}
	}
	if _, ok := byName[foreign]; ok {
		t.Errorf("List includes the foreign file %s", foreign)
	}
	if _, ok := byName[filepath.Base(hidden)]; ok {
		t.Errorf("List includes %s", hidden)
	}
	if got, ok := byName[broken]; !ok || !errors.Is(got.Err, shm.ErrCorrupt) {
		t.Errorf("List entry for a corrupt segment: %+v (present %t), want Err ErrCorrupt", got, ok)
	}
	for _, info := range list {
		if strings.HasPrefix(info.Name, ".") {
			t.Errorf("List includes hidden %s", info.Name)
		}
	}
}

func TestOpenFileNotSegment(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "plain")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("plain file"); err != nil {
		t.Fatal(err)
	}
	_, err = shm.OpenFile(f)
	wantErr(t, err, shm.ErrNotSegment, "open")
}

// TestZeroFieldsTakeDefaults: a field left zero in a non-nil Config takes
// its default, so a partial literal is safe.
func TestZeroFieldsTakeDefaults(t *testing.T) {
	d := shm.DefaultConfig()
	if d.Perm != 0o600 || d.Slots != 64 || d.Objects != 128 {
		t.Fatalf("DefaultConfig() = %+v", d)
	}
	seg, err := shm.CreateAnonymous(100, &shm.Config{Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	if info := seg.Info(); info.Objects != 128 || info.Slots != 2 {
		t.Fatalf("Info %+v", info)
	}
	st, err := seg.File().Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := seg.Alloc("x", 8); err != nil {
		t.Fatal(err)
	}
}
