//go:build !linux

package mmap

import "errors"

var errUnsupported = errors.New("mmap: unsupported on this system")

// Map is unsupported on this system.
func Map(fd int, size int) ([]byte, error) { return nil, errUnsupported }

// Unmap is unsupported on this system.
func Unmap(b []byte) error { return errUnsupported }

// Invalidate is unsupported on this system.
func Invalidate(b []byte) error { return errUnsupported }

// Placeholder is unsupported on this system.
func Placeholder(size int) ([]byte, error) { return nil, errUnsupported }
