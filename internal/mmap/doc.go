// Package mmap maps files into memory and gives typed atomic views of
// mapped bytes. It is the only place in the module that turns mapped memory
// into Go pointers.
//
// Every pointer handed out points into a MAP_SHARED mapping, never into
// Go-managed memory: the garbage collector neither scans nor moves it, so
// storing such a pointer in a Go variable is safe, and no Go pointer is ever
// written into the mapping. A pointer must not be used after the mapping is
// released with Invalidate or Unmap.
package mmap
