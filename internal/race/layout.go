package race

import (
	"fmt"
	"sync/atomic"

	"github.com/ipcgo/ipc/shm"
)

// The shared memory of a run. Every word is 8 bytes; words written by
// different processes at a high rate live in different cache lines.
//
// Region "mode-<name>", one per contention mode:
//
//	0    counter (alone in its cache line)
//	64   ready   workers that opened everything and wait for the start
//	72   start   (32-bit futex word) 0 wait, 1 go, 2 abort
//	128  times   [procs] start ns, then [procs] end ns (CLOCK_MONOTONIC)
//
// Region "kill", for the kill mode (see kill.go for the protocol):
//
//	0    counter
//	64   intent.active, 72 intent.before, 80 intent.worker, 88 intent.doneBefore
//	128  recovered, 136 killTs, 144 stop, 152 latCap, 160 doneCap, 168 started,
//	     176 rollbacks (recoveries that undid a half-done update)
//	192  lat[latCap]   detection latency of recovery i, ns
//	...  done[doneCap] increments committed by worker slot w
const (
	mCounter = 0
	mReady   = 64
	mStart   = 72
	mTimes   = 128

	kCounter    = 0
	kActive     = 64
	kBefore     = 72
	kWorker     = 80
	kDoneBefore = 88
	kRecovered  = 128
	kKillTs     = 136
	kStop       = 144
	kLatCap     = 152
	kDoneCap    = 160
	kStarted    = 168
	kRollbacks  = 176
	kLat        = 192

	startWait  = 0
	startGo    = 1
	startAbort = 2
)

// Object names in the run's segment.
const (
	mutexName = "mu"
	semName   = "sem"
	killName  = "kill"
)

func modeRegionName(mode string) string { return "mode-" + mode }

func modeRegionSize(procs int) int { return mTimes + 16*procs }

func killRegionSize(latCap, doneCap int) int { return kLat + 8*latCap + 8*doneCap }

// modeRegion is the control block of one contention mode.
type modeRegion struct {
	r     shm.Region
	procs int
}

func (m modeRegion) counter() *atomic.Uint64 { return m.r.Uint64(mCounter) }
func (m modeRegion) ready() *atomic.Uint64   { return m.r.Uint64(mReady) }
func (m modeRegion) start() *atomic.Uint32   { return m.r.Uint32(mStart) }
func (m modeRegion) startNs(w int) *atomic.Uint64 {
	return m.r.Uint64(mTimes + 8*w)
}
func (m modeRegion) endNs(w int) *atomic.Uint64 {
	return m.r.Uint64(mTimes + 8*m.procs + 8*w)
}

// killRegion is the shared record of the kill mode.
type killRegion struct {
	r                 shm.Region
	latCap, doneCap   int
	counter, active   *atomic.Uint64
	before, worker    *atomic.Uint64
	doneBefore        *atomic.Uint64
	recovered         *atomic.Uint64
	killTs, stop      *atomic.Uint64
	started           *atomic.Uint64
	rollbacks         *atomic.Uint64
	latCapW, doneCapW *atomic.Uint64
}

func newKillRegion(r shm.Region) (*killRegion, error) {
	if r.Len < kLat {
		return nil, fmt.Errorf("region %q is %d bytes, too small", r.Name, r.Len)
	}
	k := &killRegion{r: r,
		counter: r.Uint64(kCounter), active: r.Uint64(kActive), before: r.Uint64(kBefore),
		worker: r.Uint64(kWorker), doneBefore: r.Uint64(kDoneBefore), recovered: r.Uint64(kRecovered),
		killTs: r.Uint64(kKillTs), stop: r.Uint64(kStop), started: r.Uint64(kStarted), rollbacks: r.Uint64(kRollbacks),
		latCapW: r.Uint64(kLatCap), doneCapW: r.Uint64(kDoneCap)}
	k.latCap, k.doneCap = int(k.latCapW.Load()), int(k.doneCapW.Load())
	if k.latCap < 0 || k.doneCap < 0 || killRegionSize(k.latCap, k.doneCap) > r.Len {
		return nil, fmt.Errorf("region %q: capacities %d, %d do not fit %d bytes", r.Name, k.latCap, k.doneCap, r.Len)
	}
	return k, nil
}

func (k *killRegion) lat(i int) *atomic.Uint64  { return k.r.Uint64(kLat + 8*i) }
func (k *killRegion) done(w int) *atomic.Uint64 { return k.r.Uint64(kLat + 8*k.latCap + 8*w) }
