package dsync

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

// A Fence is kept by a resource that lease holders write to: it accepts a
// write carrying a fencing token at least as new as the newest it has
// accepted and refuses an older one with ErrStaleToken. Do runs the write
// itself under the fence's guard, so that a newer holder cannot slip in
// between the check and the write.
//
// Fence keeps its state in memory; FileFence in a file (several processes,
// survives restarts); SharedFence in a shared-memory segment guarded by a
// robust procsync.Mutex. All three have the same methods.
type Fence struct {
	mu      sync.Mutex
	newest  uint64
	history []FenceEvent
	keep    bool
}

// FenceEvent is one decision of a Fence, recorded when history is on.
type FenceEvent struct {
	Token    uint64    // the token presented
	Newest   uint64    // the newest token accepted before it
	Accepted bool      // Token >= Newest
	At       time.Time // when it was decided
}

// NewFence returns an in-memory fence that has seen no token.
func NewFence() *Fence { return &Fence{} }

// KeepHistory makes the fence record every decision (see History).
func (f *Fence) KeepHistory() { f.mu.Lock(); f.keep = true; f.mu.Unlock() }

// History returns the recorded decisions in order.
func (f *Fence) History() []FenceEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FenceEvent(nil), f.history...)
}

// Check reports whether a write with token would be accepted now, without
// recording it.
func (f *Fence) Check(token uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return staleCheck(token, f.newest)
}

// Accept records token as seen (the newest, if it is) or refuses it.
func (f *Fence) Accept(token uint64) error { return f.Do(context.Background(), token, nil) }

// Do runs write (which may be nil) if token is not stale, holding the
// fence so that no other token is accepted meanwhile; if write returns an
// error the token is not recorded.
func (f *Fence) Do(ctx context.Context, token uint64, write func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	err := staleCheck(token, f.newest)
	if f.keep {
		f.history = append(f.history, FenceEvent{Token: token, Newest: f.newest, Accepted: err == nil, At: time.Now()})
	}
	if err != nil {
		return err
	}
	if write != nil {
		if err := write(); err != nil {
			return err
		}
	}
	f.newest = max(f.newest, token)
	return nil
}

// Newest is the newest token accepted.
func (f *Fence) Newest() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.newest
}

func staleCheck(token, newest uint64) error {
	if token < newest {
		return fmt.Errorf("%w: token %d, newest %d", ErrStaleToken, token, newest)
	}
	return nil
}

// FileFence keeps the newest token in a file (PROTOCOL.md, "dsync
// fence file"), so that every process that writes the resource, and the
// resource after a restart, shares it. Do holds an exclusive flock(2) on
// the file for the check, the write and the update, and syncs the file
// before it releases it.
type FileFence struct {
	f *os.File
}

const (
	fenceFileMagic   = "DSFN"
	fenceFileVersion = 1
	fenceFileSize    = 20
)

// OpenFileFence opens (creating it, mode 0600) the fence file at path.
func OpenFileFence(path string) (*FileFence, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, opErr("fence", path, err)
	}
	return &FileFence{f: f}, nil
}

// Close closes the file.
func (ff *FileFence) Close() error { return ff.f.Close() }

// Check reports whether a write with token would be accepted now.
func (ff *FileFence) Check(token uint64) error {
	return ff.locked(syscall.LOCK_SH, func(newest uint64) (uint64, error) {
		return newest, staleCheck(token, newest)
	})
}

// Accept records token or refuses it.
func (ff *FileFence) Accept(token uint64) error { return ff.Do(context.Background(), token, nil) }

// Do runs write if token is not stale, under the file's lock. The wait for
// the lock is not cancellable once begun: ctx is checked before it.
func (ff *FileFence) Do(ctx context.Context, token uint64, write func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return ff.locked(syscall.LOCK_EX, func(newest uint64) (uint64, error) {
		if err := staleCheck(token, newest); err != nil {
			return newest, err
		}
		if write != nil {
			if err := write(); err != nil {
				return newest, err
			}
		}
		return max(newest, token), nil
	})
}

// Newest is the newest token accepted.
func (ff *FileFence) Newest() (uint64, error) {
	var n uint64
	err := ff.locked(syscall.LOCK_SH, func(newest uint64) (uint64, error) { n = newest; return newest, nil })
	return n, err
}

func (ff *FileFence) locked(how int, fn func(newest uint64) (uint64, error)) error {
	fd := int(ff.f.Fd())
	if err := syscall.Flock(fd, how); err != nil {
		return opErr("fence", ff.f.Name(), err)
	}
	defer func() { _ = syscall.Flock(fd, syscall.LOCK_UN) }()
	b := make([]byte, fenceFileSize)
	n, err := ff.f.ReadAt(b, 0)
	var newest uint64
	switch {
	case n == 0 && (err == nil || errors.Is(err, io.EOF)):
	case n == fenceFileSize:
		if newest, err = decodeFenceFile(b); err != nil {
			return opErr("fence", ff.f.Name(), err)
		}
	case err != nil && !errors.Is(err, io.EOF):
		return opErr("fence", ff.f.Name(), err)
	default:
		return opErr("fence", ff.f.Name(), fmt.Errorf("%w: %d bytes", ErrCorrupt, n))
	}
	next, ferr := fn(newest)
	if next != newest {
		if _, err := ff.f.WriteAt(encodeFenceFile(next), 0); err != nil {
			return opErr("fence", ff.f.Name(), err)
		}
		if err := ff.f.Sync(); err != nil {
			return opErr("fence", ff.f.Name(), err)
		}
	}
	return ferr
}

func encodeFenceFile(newest uint64) []byte {
	b := make([]byte, fenceFileSize-4, fenceFileSize)
	copy(b, fenceFileMagic)
	binary.LittleEndian.PutUint32(b[4:], fenceFileVersion)
	binary.LittleEndian.PutUint64(b[8:], newest)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func decodeFenceFile(b []byte) (uint64, error) {
	if len(b) != fenceFileSize || string(b[:4]) != fenceFileMagic {
		return 0, fmt.Errorf("%w: not a fence file", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(b[4:]); v != fenceFileVersion {
		return 0, fmt.Errorf("%w: fence file version %d", ErrCorrupt, v)
	}
	if crc32.Checksum(b[:16], crcTable) != binary.LittleEndian.Uint32(b[16:]) {
		return 0, fmt.Errorf("%w: fence file checksum", ErrCorrupt)
	}
	return binary.LittleEndian.Uint64(b[8:]), nil
}

// SharedFence keeps the newest token in a shared-memory segment (the
// object NAME, 64 bytes; its guard is the procsync.Mutex NAME.lock), for
// processes on one machine that share a resource in memory. A process that
// dies inside Do leaves the token either updated or not (one atomic store)
// and the next caller recovers the guard.
type SharedFence struct {
	word *atomic.Uint64
	mu   *procsync.Mutex
}

// NewSharedFence returns the fence called name in seg, creating it if it
// does not exist.
func NewSharedFence(seg *shm.Segment, name string) (*SharedFence, error) {
	r, err := seg.Alloc(name, 64)
	if err != nil {
		return nil, opErr("fence", name, err)
	}
	mu, err := procsync.NewMutex(seg, name+".lock", nil)
	if err != nil {
		return nil, opErr("fence", name, err)
	}
	return &SharedFence{word: r.Uint64(0), mu: mu}, nil
}

// Check reports whether a write with token would be accepted now.
func (sf *SharedFence) Check(token uint64) error { return staleCheck(token, sf.word.Load()) }

// Accept records token or refuses it.
func (sf *SharedFence) Accept(token uint64) error { return sf.Do(context.Background(), token, nil) }

// Do runs write if token is not stale, holding the segment's guard (which
// it waits for as long as ctx allows).
func (sf *SharedFence) Do(ctx context.Context, token uint64, write func() error) error {
	err := sf.mu.Lock(ctx)
	if errors.Is(err, procsync.ErrOwnerDead) {
		err = sf.mu.MarkConsistent()
	}
	if err != nil {
		return opErr("fence", "", err)
	}
	defer func() { _ = sf.mu.Unlock() }()
	newest := sf.word.Load()
	if err := staleCheck(token, newest); err != nil {
		return err
	}
	if write != nil {
		if err := write(); err != nil {
			return err
		}
	}
	if token > newest {
		sf.word.Store(token)
	}
	return nil
}

// Newest is the newest token accepted.
func (sf *SharedFence) Newest() uint64 { return sf.word.Load() }
