package sock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/ipcerr"
)

// maxPath is the longest socket path (sun_path holds 108 bytes with the NUL).
const maxPath = 107

// sockFile is a socket file Listen created, identified by device, inode
// and change time (file systems reuse inode numbers at once) so that Close
// removes it only if it is still the same file.
type sockFile struct {
	path     string
	dev, ino uint64
	ctime    unix.Timespec
}

func (f *sockFile) is(st *unix.Stat_t) bool {
	return st.Dev == f.dev && st.Ino == f.ino && st.Ctim == f.ctime
}

// remove unlinks the file if it is still the one Listen created.
func (f *sockFile) remove() error {
	unlock := lockDir(filepath.Dir(f.path))
	defer unlock()
	return f.removeLocked()
}

// listenUnix binds a Unix socket of type sotype at path, with permissions
// perm whatever the umask, and listens. A socket file left by a dead process
// is replaced; a live listener's is kept (ErrAddrInUse); any other file is
// kept too (an error wrapping fs.ErrExist).
//
// The steps run under an flock of the directory, so that two processes of
// this package listening at the same path at once cannot both take a
// stale file for theirs. The permissions are set between bind and listen:
// until listen, a connect is refused, so no peer ever connects through the
// umask's permissions.
func listenUnix(path string, sotype int, perm os.FileMode) (net.Listener, *sockFile, error) {
	if len(path) > maxPath {
		return nil, nil, fmt.Errorf("%w: socket path of %d bytes, at most %d", ipcerr.ErrBadAddress, len(path), maxPath)
	}
	unlock := lockDir(filepath.Dir(path))
	defer unlock()
	if err := clearStale(path, sotype); err != nil {
		return nil, nil, err
	}
	fd, err := unix.Socket(unix.AF_UNIX, sotype|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socket", err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close() // net.FileListener keeps its own copy
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		if err == unix.EADDRINUSE {
			return nil, nil, fmt.Errorf("%w: %s appeared while listening", ipcerr.ErrAddrInUse, path)
		}
		return nil, nil, &os.PathError{Op: "bind", Path: path, Err: err}
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(path) // ours: the directory lock is held
		}
	}()
	if err := os.Chmod(path, perm); err != nil {
		return nil, nil, err
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return nil, nil, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	sf := &sockFile{path: path, dev: st.Dev, ino: st.Ino, ctime: st.Ctim}
	if err := unix.Listen(fd, 4096); err != nil { // the kernel caps it at somaxconn
		return nil, nil, os.NewSyscallError("listen", err)
	}
	nl, err := net.FileListener(f)
	if err != nil {
		return nil, nil, err
	}
	ok = true
	return nl, sf, nil
}

// removeLocked is remove for a caller that holds the directory lock.
func (f *sockFile) removeLocked() error {
	var st unix.Stat_t
	if err := unix.Lstat(f.path, &st); err != nil || !f.is(&st) {
		return nil // gone, or replaced by someone else: theirs now
	}
	if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// clearStale makes room at path: nothing there is fine, a socket no one
// listens on (connect refused) is removed, anything else is an error.
func clearStale(path string, sotype int) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket (%v), not removing it: %w", path, fi.Mode().Type(), fs.ErrExist)
	}
	switch err := probe(path, sotype); {
	case err == nil, errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EPROTOTYPE):
		// Accepted, backlog full, or a listener of another socket type.
		return fmt.Errorf("%w: a process listens at %s", ipcerr.ErrAddrInUse, path)
	case errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.ECONNREFUSED):
		// Stale: no one listens.
	default:
		return fmt.Errorf("socket %s exists and cannot be probed, not removing it: %w", path, err)
	}
	fi2, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !os.SameFile(fi, fi2) {
		return fmt.Errorf("%w: %s was replaced while it was probed", ipcerr.ErrAddrInUse, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// probe connects to the socket at path, without blocking, and hangs up.
func probe(path string, sotype int) error {
	fd, err := unix.Socket(unix.AF_UNIX, sotype|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return os.NewSyscallError("connect", err)
	}
	return nil
}

// lockDir takes an exclusive flock on dir and returns its release. The
// lock is advisory, between users of this package; when it cannot be had
// (no read permission on dir, or held for more than two seconds) the caller
// goes on without it.
func lockDir(dir string) (unlock func()) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return func() {}
	}
	deadline := time.Now().Add(2 * time.Second)
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 20*time.Millisecond) {
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR || time.Now().After(deadline) {
			break
		}
		time.Sleep(wait)
	}
	if err != nil {
		_ = unix.Close(fd)
		return func() {}
	}
	return func() { _ = unix.Close(fd) } // closing the descriptor releases the lock
}
