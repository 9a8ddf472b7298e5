//go:build !amd64

package shm

import "sync/atomic"

// storeRelease stores v in *p with (at least) release ordering.
func storeRelease(p *atomic.Uint64, v uint64) { p.Store(v) }
