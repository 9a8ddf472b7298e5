//go:build unix && !linux

package transport

import (
	"os"
	"syscall"
	"time"
)

// FD is a pipe or FIFO descriptor. Here it is an *os.File in the runtime
// poller; on Linux it stays out of it.
type FD struct{ f *os.File }

// NewFD returns an FD for fd, which it owns from now.
func NewFD(fd int, name string) (*FD, error) {
	if err := syscall.SetNonblock(fd, true); err != nil { // for the poller: deadlines
		syscall.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	return &FD{os.NewFile(uintptr(fd), name)}, nil
}

// Pipe returns the ends of a new pipe.
func Pipe() (r, w *FD, err error) {
	fr, fw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	return &FD{fr}, &FD{fw}, nil
}

// File returns the underlying file.
func (d *FD) File() *os.File { return d.f }

// Name returns the file's name.
func (d *FD) Name() string { return d.f.Name() }

func (d *FD) Read(p []byte) (int, error)         { return d.f.Read(p) }
func (d *FD) Write(b []byte) (int, error)        { return d.f.Write(b) }
func (d *FD) SetReadDeadline(t time.Time) error  { return d.f.SetReadDeadline(t) }
func (d *FD) SetWriteDeadline(t time.Time) error { return d.f.SetWriteDeadline(t) }
func (d *FD) SetDeadline(t time.Time) error      { return d.f.SetDeadline(t) }
func (d *FD) Close() error                       { return d.f.Close() }
