//go:build !linux

package shm

import "os"

// Dir is where named segments live on Linux.
const Dir = "/dev/shm"

// Create is unsupported on this system.
func Create(name string, size int, cfg *Config) (*Segment, error) {
	return nil, opErr("create", name, ErrUnsupported)
}

// CreateAnonymous is unsupported on this system.
func CreateAnonymous(size int, cfg *Config) (*Segment, error) {
	return nil, opErr("create", "", ErrUnsupported)
}

// Open is unsupported on this system.
func Open(name string) (*Segment, error) { return nil, opErr("open", name, ErrUnsupported) }

// OpenFile is unsupported on this system.
func OpenFile(f *os.File) (*Segment, error) { return nil, opErr("open", "", ErrUnsupported) }

// Stat is unsupported on this system.
func Stat(name string) (Info, error) { return Info{}, opErr("stat", name, ErrUnsupported) }

// Unlink is unsupported on this system.
func Unlink(name string) error { return opErr("unlink", name, ErrUnsupported) }

// List is unsupported on this system.
func List() ([]Info, error) { return nil, opErr("list", "", ErrUnsupported) }

// Close is unsupported on this system; no Segment can exist here.
func (s *Segment) Close() error { return opErr("close", s.name, ErrUnsupported) }

func (s *Segment) slotHeld(i int) bool { return false }

func (s *Segment) lockDir() error { return ErrUnsupported }

func (s *Segment) unlockDir() {}
