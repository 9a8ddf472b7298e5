package race

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/ipcgo/ipc/procsync"
)

// killCaps returns the capacities of the kill region: latencies recorded and
// worker slots (initial workers plus one replacement per kill attempt).
func killCaps(opts Options) (latCap, doneCap int) {
	return opts.Kill + 16, opts.Procs + maxAttempts(opts.Kill)
}

// maxAttempts bounds the SIGKILLs sent to reach kills hits on a lock holder.
func maxAttempts(kills int) int { return 10*kills + 50 }

// runKill runs the kill mode. The supervisor polls the mutex's state; when a
// live worker holds it, it stamps the time, SIGKILLs that worker, reaps it
// and tells from the mutex whether the dead process still held it (or was
// already taken over from). It starts a replacement worker with a fresh
// done slot, and for a kill that hit the holder waits until a worker has
// recovered it before the next kill.
func (s *supervisor) runKill() (*Result, error) {
	n, want := s.opts.Procs, s.opts.Kill
	latCap, doneCap := killCaps(s.opts)
	r, err := s.seg.Alloc(killName, killRegionSize(latCap, doneCap))
	if err != nil {
		return nil, err
	}
	r.Uint64(kLatCap).Store(uint64(latCap))
	r.Uint64(kDoneCap).Store(uint64(doneCap))
	k, err := newKillRegion(r)
	if err != nil {
		return nil, err
	}
	m, err := procsync.NewMutex(s.seg, mutexName, nil)
	if err != nil {
		return nil, err
	}

	next := 0 // next done slot
	startWorker := func() (*proc, error) {
		if next >= doneCap {
			return nil, fmt.Errorf("out of worker slots (%d)", doneCap)
		}
		args := []string{"--seg", s.seg.Name(), "--mode", "kill", "--index", strconv.Itoa(next),
			"--delay", s.opts.Delay.String()}
		if s.opts.NoRepair {
			args = append(args, "--no-repair")
		}
		p, err := s.start(next, args...)
		next++
		return p, err
	}
	t0 := time.Now()
	for range n {
		if _, err := startWorker(); err != nil {
			return nil, err
		}
	}

	det := &KillDetail{}
	kills := 0
	lastHit := time.Now()
	for kills < want {
		if err := s.ctx.Err(); err != nil {
			return nil, err
		}
		if err := s.failed(); err != nil {
			return nil, err
		}
		if time.Since(lastHit) > 30*time.Second {
			return nil, fmt.Errorf("no lock holder could be killed for 30 s (%d kills done)", kills)
		}
		// Poll at a random pace so that the kills land at random steps of
		// the holders' updates.
		time.Sleep(time.Duration(100+rand.IntN(900)) * time.Microsecond)
		st := m.State()
		if !st.Locked || st.Owner == nil || !st.Owner.Alive {
			continue
		}
		victim := s.byPid(st.Owner.PID)
		if victim == nil {
			continue
		}
		slot, recBefore := st.Owner.Slot, st.Recoveries

		k.killTs.Store(uint64(monoNow()))
		victim.killed = true
		if err := victim.cmd.Process.Kill(); err != nil {
			return nil, fmt.Errorf("kill worker pid %d: %w", victim.cmd.Process.Pid, err)
		}
		select {
		case <-victim.done:
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("worker pid %d not reaped 10 s after SIGKILL", victim.cmd.Process.Pid)
		}
		det.Attempts++
		hit := s.hitHolder(m, slot, recBefore)
		if _, err := startWorker(); err != nil {
			return nil, err
		}
		if !hit {
			det.Misses++
			if det.Attempts >= maxAttempts(want) {
				return nil, fmt.Errorf("only %d of %d kills hit a lock holder in %d attempts", kills, want, det.Attempts)
			}
			continue
		}
		kills++
		lastHit = time.Now()
		deadline := time.Now().Add(s.opts.KillWait)
		for k.recovered.Load() < uint64(kills) {
			if err := s.ctx.Err(); err != nil {
				return nil, err
			}
			if err := s.failed(); err != nil {
				return nil, err
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("kill %d (pid %d, holding the lock): not recovered within %v; mutex state %+v",
					kills, victim.cmd.Process.Pid, s.opts.KillWait, m.State())
			}
			time.Sleep(200 * time.Microsecond)
		}
	}

	k.stop.Store(1)
	if err := s.waitExit(s.procs, 30*time.Second); err != nil {
		return nil, fmt.Errorf("stopping the workers: %w", err)
	}
	det.Wall = time.Since(t0)
	det.Workers = next
	det.Rollbacks = int(k.rollbacks.Load())

	var expected uint64
	for w := range next {
		expected += k.done(w).Load()
	}
	final := k.counter.Load()
	recovered := int(k.recovered.Load())
	for i := range min(recovered, latCap) {
		det.DetectMs = append(det.DetectMs, round(float64(k.lat(i).Load())/1e6, 3))
	}
	kr := &KillResult{Kills: kills, Recovered: recovered, Final: final, Expected: expected}
	if len(det.DetectMs) > 0 {
		sorted := slices.Sorted(slices.Values(det.DetectMs))
		kr.DetectMsP50 = round(sorted[(len(sorted)-1)/2], 2)
		kr.DetectMsMax = round(sorted[len(sorted)-1], 2)
	}
	mr := ModeResult{Mode: "mutex", Final: final, Lost: int64(expected) - int64(final)}
	if final > 0 {
		mr.NsPerOp = round(float64(det.Wall.Nanoseconds())/float64(final), 1)
	}
	return &Result{Procs: n, Iters: 0, Expected: expected, Modes: []ModeResult{mr}, Kill: kr, KillDetail: det}, nil
}

// byPid returns the running worker with that pid, if any.
func (s *supervisor) byPid(pid int) *proc {
	for _, p := range s.procs {
		if p.cmd.Process.Pid == pid && !p.killed && !p.exitedNow() {
			return p
		}
	}
	return nil
}

// hitHolder tells, after the worker in slot died, whether it held the
// mutex: the lock word still names the dead slot, or a live worker has
// taken the lock over since (the takeover count moved). A takeover bumps
// the count just after its compare-and-swap, so a state that shows neither
// is read again a little later before the kill is called a miss.
func (s *supervisor) hitHolder(m *procsync.Mutex, slot, recBefore int) bool {
	for i := range 2 {
		st := m.State()
		if st.Recoveries > recBefore {
			return true
		}
		if st.Locked && st.Owner != nil && st.Owner.Slot == slot && !st.Owner.Alive {
			return true
		}
		if i == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return false
}
