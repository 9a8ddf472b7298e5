//go:build !linux

package transport

import (
	"io"
	"os"
)

// GrowPipe does nothing here.
func GrowPipe(*os.File) {}

// fileWriter is Linux only; elsewhere frames go out through net.Buffers.
type fileWriter struct{}

func newFileWriter(io.Writer) *fileWriter { return nil }

func (*fileWriter) writev2(a, b []byte) (int, error) { panic("unreachable") }
