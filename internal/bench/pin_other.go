//go:build !linux

package bench

import (
	"errors"

	"github.com/ipcgo/ipc"
)

// AllowedCPUs is not available here: pinning needs Linux.
func AllowedCPUs() ([]int, error) {
	return nil, errors.Join(ipc.ErrUnsupported, errors.New("CPU pinning needs Linux"))
}

func pinProcess(int) error { return ipc.ErrUnsupported }
