//go:build linux

package shm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/mmap"
	"github.com/ipcgo/ipc/internal/segown"
)

// Dir is where named segments live.
const Dir = "/dev/shm"

func pageSize() uint64 { return uint64(os.Getpagesize()) }

func newHeader(size int, cfg *Config) (Header, error) {
	h := Header{Slots: uint32(cfg.Slots), Objects: uint32(cfg.Objects)}
	h.layout()
	if size < 0 || uint64(size) > maxSize {
		return h, fmt.Errorf("%w: size %d", ErrBadConfig, size)
	}
	h.Size = alignUp(uint64(h.DataOff)+uint64(size), pageSize())
	h.CreatorPID = uint32(os.Getpid())
	h.CreatorUID = uint32(os.Getuid())
	h.Created = time.Now().UnixNano()
	h.Version = Version
	return h, nil
}

// initFile sizes f, maps it and writes the header.
func initFile(f *os.File, h Header) ([]byte, error) {
	if err := f.Truncate(int64(h.Size)); err != nil {
		return nil, err
	}
	mem, err := mmap.Map(int(f.Fd()), int(h.Size))
	if err != nil {
		return nil, err
	}
	h.encode(mem)
	return mem, nil
}

// Create creates a named segment in /dev/shm with size bytes of data area
// (the total size adds the header, slot table and directory, rounded up to
// a page) and attaches to it. It fails with ErrExists if the name is taken.
// The segment appears under its name only once its header is complete, so
// a concurrent Open never sees a half-written segment.
func Create(name string, size int, cfg *Config) (*Segment, error) {
	if err := ValidateName(name); err != nil {
		return nil, opErr("create", name, err)
	}
	cfg, err := cfg.validate()
	if err != nil {
		return nil, opErr("create", name, err)
	}
	h, err := newHeader(size, cfg)
	if err != nil {
		return nil, opErr("create", name, err)
	}
	var rnd [8]byte
	_, _ = io.ReadFull(rand.Reader, rnd[:])
	tmp := filepath.Join(Dir, ".ipc-tmp-"+strconv.Itoa(os.Getpid())+"-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, cfg.Perm)
	if err != nil {
		return nil, opErr("create", name, err)
	}
	defer os.Remove(tmp)
	fail := func(err error) (*Segment, error) {
		f.Close()
		return nil, opErr("create", name, err)
	}
	if err := f.Chmod(cfg.Perm); err != nil { // the umask must not narrow the caller's choice
		return fail(err)
	}
	mem, err := initFile(f, h)
	if err != nil {
		return fail(err)
	}
	// link(2) publishes the finished file atomically and refuses an existing name.
	if err := os.Link(tmp, filepath.Join(Dir, name)); err != nil {
		_ = mmap.Unmap(mem)
		if errors.Is(err, fs.ErrExist) {
			err = ErrExists
		}
		return fail(err)
	}
	s, err := attach(name, f, mem, h)
	if err != nil {
		return nil, opErr("create", name, err)
	}
	return s, nil
}

// CreateAnonymous creates a segment backed by a memfd: it has no name, lives
// as long as some process holds its file, and is shared by handing File() to
// another process, which attaches with OpenFile.
func CreateAnonymous(size int, cfg *Config) (*Segment, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, opErr("create", "", err)
	}
	h, err := newHeader(size, cfg)
	if err != nil {
		return nil, opErr("create", "", err)
	}
	fd, err := unix.MemfdCreate("ipc-segment", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, opErr("create", "", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:ipc-segment")
	if err := f.Chmod(cfg.Perm); err != nil {
		f.Close()
		return nil, opErr("create", "", err)
	}
	mem, err := initFile(f, h)
	if err != nil {
		f.Close()
		return nil, opErr("create", "", err)
	}
	s, err := attach("", f, mem, h)
	if err != nil {
		return nil, opErr("create", "", err)
	}
	return s, nil
}

// Open attaches to the named segment after validating its header.
func Open(name string) (*Segment, error) {
	if err := ValidateName(name); err != nil {
		return nil, opErr("open", name, err)
	}
	f, err := os.OpenFile(filepath.Join(Dir, name), os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = ErrNotFound
		}
		return nil, opErr("open", name, err)
	}
	s, err := openFile(name, f)
	if err != nil {
		return nil, opErr("open", name, err)
	}
	return s, nil
}

// OpenFile attaches to the segment backed by f, typically an anonymous
// segment's file received from another process. It opens the file afresh
// (through /proc/self/fd) so that this handle has its own open file
// description, and closes f: an inherited descriptor would otherwise share
// the sender's slot lock and keep a dead sender looking alive.
func OpenFile(f *os.File) (*Segment, error) {
	own, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), os.O_RDWR, 0)
	if err != nil {
		return nil, opErr("open", "", err)
	}
	f.Close()
	s, err := openFile("", own)
	if err != nil {
		return nil, opErr("open", "", err)
	}
	return s, nil
}

// openFile validates and maps f; it closes f on failure.
func openFile(name string, f *os.File) (*Segment, error) {
	h, err := readHeader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	mem, err := mmap.Map(int(f.Fd()), int(h.Size))
	if err != nil {
		f.Close()
		return nil, err
	}
	return attach(name, f, mem, h)
}

// readHeader reads and validates the header of f.
func readHeader(f *os.File) (Header, error) {
	st, err := f.Stat()
	if err != nil {
		return Header{}, err
	}
	buf := make([]byte, HeaderSize)
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return Header{}, err
	}
	return Validate(buf[:n], st.Size())
}

// Stat reads the header of the named segment without attaching to it.
func Stat(name string) (Info, error) {
	if err := ValidateName(name); err != nil {
		return Info{}, opErr("stat", name, err)
	}
	f, err := os.Open(filepath.Join(Dir, name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = ErrNotFound
		}
		return Info{}, opErr("stat", name, err)
	}
	defer f.Close()
	h, err := readHeader(f)
	if err != nil {
		return Info{}, opErr("stat", name, err)
	}
	return infoOf(name, h), nil
}

// Unlink removes the named segment. Handles that are attached keep working;
// the memory is freed when the last one closes. It refuses (ErrNotSegment)
// to remove a file this package did not create.
func Unlink(name string) error {
	if err := ValidateName(name); err != nil {
		return opErr("unlink", name, err)
	}
	path := filepath.Join(Dir, name)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = ErrNotFound
		}
		return opErr("unlink", name, err)
	}
	var buf [len(magic)]byte
	n, _ := f.ReadAt(buf[:], 0)
	f.Close()
	if string(buf[:n]) != magic {
		return opErr("unlink", name, ErrNotSegment)
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = ErrNotFound
		}
		return opErr("unlink", name, err)
	}
	return nil
}

// List returns the segments in /dev/shm that carry this package's magic,
// sorted by name. A segment that carries the magic but fails validation is
// listed with Info.Err set; files of other programs are skipped.
func List() ([]Info, error) {
	ents, err := os.ReadDir(Dir)
	if err != nil {
		return nil, opErr("list", "", err)
	}
	var out []Info
	for _, e := range ents {
		if !e.Type().IsRegular() || ValidateName(e.Name()) != nil {
			continue
		}
		info, err := Stat(e.Name())
		switch {
		case err == nil:
			out = append(out, info)
		case errors.Is(err, ErrNotSegment), errors.Is(err, ErrNotFound), errors.Is(err, fs.ErrPermission):
		default:
			out = append(out, Info{Name: e.Name(), Err: err})
		}
	}
	return out, nil
}

// attach claims a free process slot for a new handle. On failure it unmaps
// mem and closes f.
func attach(name string, f *os.File, mem []byte, h Header) (*Segment, error) {
	s := &Segment{name: name, f: f, mem: mem, hdr: h, slot: -1}
	for i := 0; i < int(h.Slots); i++ {
		if lockByte(f, s.slotByte(i), unix.F_OFD_SETLK) != nil {
			continue
		}
		rec := s.slotRec(i)
		s.slot = i
		s.gen = mmap.Uint32(rec, slotGen).Add(1)
		mmap.Uint32(rec, slotPID).Store(uint32(os.Getpid()))
		mmap.Int64(rec, slotSince).Store(time.Now().UnixNano())
		mmap.Uint32(rec, slotUID).Store(uint32(os.Getuid()))
		s.token = MakeToken(i, s.gen)
		return s, nil
	}
	_ = mmap.Unmap(mem)
	f.Close()
	return nil, ErrNoSlot
}

func (s *Segment) slotByte(i int) int64 { return int64(s.hdr.SlotOff) + int64(i)*SlotSize }

// lockByte takes an OFD write lock on one byte of f with cmd (F_OFD_SETLK
// or F_OFD_SETLKW). OFD locks belong to the open file description, not to
// the process, and the kernel drops them when the last descriptor of that
// description closes, which includes the death of the process.
func lockByte(f *os.File, off int64, cmd int) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: off, Len: 1}
	for {
		err := unix.FcntlFlock(f.Fd(), cmd, &lk)
		if err != unix.EINTR {
			return err
		}
	}
}

func unlockByte(f *os.File, off int64) error {
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: io.SeekStart, Start: off, Len: 1}
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
}

// slotHeld asks the kernel whether some open file description holds the
// lock of slot i: the liveness test for the slot's owner.
//
// It never says "dead" when it cannot tell: on an error, and on a closed
// handle (a call racing with Close may still see the segment's memory, and
// must not take over a live owner's lock there). The descriptor is used
// through SyscallConn so that a concurrent Close cannot pull it away (or
// have its number reused) during the fcntl.
func (s *Segment) slotHeld(i int) bool {
	if s.closed.Load() {
		return true
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: s.slotByte(i), Len: 1}
	held := true // cannot tell: never declare an owner dead on an error
	rc, err := s.f.SyscallConn()
	if err != nil {
		return held
	}
	_ = rc.Control(func(fd uintptr) {
		if unix.FcntlFlock(fd, unix.F_OFD_GETLK, &lk) == nil {
			held = lk.Type != unix.F_UNLCK
		}
	})
	return held
}

// lockDir takes the directory lock: this handle's mutex, then an OFD lock
// on the allocation cursor's bytes that excludes other handles.
func (s *Segment) lockDir() error {
	s.dirMu.Lock()
	if s.closed.Load() {
		s.dirMu.Unlock()
		return errClosed
	}
	if err := lockByte(s.f, offAllocNext, unix.F_OFD_SETLKW); err != nil {
		s.dirMu.Unlock()
		return err
	}
	return nil
}

func (s *Segment) unlockDir() {
	_ = unlockByte(s.f, offAllocNext)
	s.dirMu.Unlock()
}

// Close releases the handle's slot, its file and its mapping. Later calls
// return net.ErrClosed. The calls of this package that read the mapping
// hold it (pin), and Close waits for them. What Close cannot wait for is
// memory it handed out as slices and atomic views (Mem, Region.Bytes,
// Region.Uint32, Region.Uint64, rings, procsync primitives), which a
// goroutine may use at any time. So Close unmaps the mapping when no such
// view was ever taken, returning all of it to the system, and otherwise
// replaces it in place by a placeholder of private zero memory
// (mmap.Invalidate): a late use never faults and its writes reach no
// segment; the placeholder keeps the address range (VmSize, one mapping)
// but uses no memory until written and is not charged to the commit limit.
func (s *Segment) Close() error { return s.close(false) }

// close is Close; with unmap it unmaps even a mapping that was handed out,
// and on a handle already closed it unmaps the placeholder that Close left:
// the caller guarantees that no view of the segment is used any more (see
// package internal/segown).
func (s *Segment) close(unmap bool) error {
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	if s.closed.Swap(true) {
		if !unmap {
			return opErr("close", s.name, errClosed)
		}
		s.mu.Lock()
		var err error
		if !s.gone {
			err = mmap.Unmap(s.mem)
			s.gone = err == nil
		}
		s.mu.Unlock()
		return opErr("close", s.name, err)
	}
	s.mu.Lock() // wait for pinned calls
	mmap.Uint32(s.slotRec(s.slot), slotPID).Store(0)
	var err error
	if unmap || !s.exposed.Load() {
		err = mmap.Unmap(s.mem)
		s.gone = err == nil
	} else {
		err = mmap.Invalidate(s.mem)
	}
	s.mu.Unlock()
	if cerr := s.f.Close(); err == nil { // closing the description drops the slot lock
		err = cerr
	}
	return opErr("close", s.name, err)
}

func init() {
	segown.Unmap = func(seg any) error { return seg.(*Segment).close(true) }
}
