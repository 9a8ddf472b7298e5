//go:build !linux

package mmap

import "errors"

var errUnsupported = errors.New("mmap: unsupported on this system")

// Map is unsupported on this system.
func Map(fd int, size int) ([]byte, error) { return nil, errUnsupported }

// Invalidate is unsupported on this system.
func Invalidate(b []byte) error { return errUnsupported }
