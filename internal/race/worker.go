package race

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
	"github.com/ipcgo/ipc/internal/mmap"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

// WorkerCommand is the hidden subcommand under which the supervisor
// re-executes its own binary as a worker. The program's main (or a test
// binary's TestMain) must hand os.Args[2:] to RunWorker when os.Args[1] is
// WorkerCommand.
const WorkerCommand = "race-worker"

// incPlain is a deliberately unsynchronised read-modify-write. It is not
// inlined, so the compiler cannot keep *p in a register across the loop that
// calls it: every call really loads and stores the shared word.
//
//go:noinline
func incPlain(p *uint64) { *p++ }

// RunWorker is the body of a worker process. It returns the exit code; errors
// go to stderr.
func RunWorker(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(WorkerCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	segName := fs.String("seg", "", "segment name")
	mode := fs.String("mode", "", "mode: "+fmt.Sprint(Modes)+" or kill")
	iters := fs.Int("iters", 0, "increments (contention modes)")
	procs := fs.Int("procs", 0, "workers of the mode (contention modes)")
	index := fs.Int("index", -1, "this worker's index")
	delay := fs.Duration("delay", 0, "busy delay between the steps of an update (kill mode)")
	noRepair := fs.Bool("no-repair", false, "skip the roll-back of a dead holder's update (kill mode; to show the check works)")
	natsURL := fs.String("nats", "", "NATS URL (across modes)")
	bucket := fs.String("bucket", "", "key-value bucket and dsync namespace (across modes)")
	ttl := fs.Duration("ttl", time.Second, "dsync lease TTL (across modes)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cleanupOnParentDeath(*segName)
	var err error
	if m, ok := strings.CutPrefix(*mode, "across-"); ok {
		err = runAcrossWorker(*natsURL, *bucket, m, *index, *iters, *ttl)
	} else {
		err = runWorker(*segName, *mode, *iters, *procs, *index, *delay, *noRepair)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s %d (pid %d): %v\n", WorkerCommand, *index, os.Getpid(), err)
		return 1
	}
	return 0
}

// cleanupOnParentDeath handles SIGTERM, which the kernel sends a worker
// when the supervisor dies (see workerAttr): if the supervisor is indeed
// gone (this process was re-parented), it could not remove the segment, so
// the worker does. Either way the worker exits.
func cleanupOnParentDeath(segName string) {
	ppid := os.Getppid()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() {
		<-sig
		if os.Getppid() != ppid {
			_ = shm.Unlink(segName)
		}
		os.Exit(3)
	}()
}

func runWorker(segName, mode string, iters, procs, index int, delay time.Duration, noRepair bool) error {
	seg, err := shm.Open(segName)
	if err != nil {
		return err
	}
	defer seg.Close()
	if mode == "kill" {
		return killWorker(seg, index, delay, noRepair)
	}
	if !validMode(mode) {
		return fmt.Errorf("unknown mode %q", mode)
	}
	if index < 0 || index >= procs || iters < 0 {
		return fmt.Errorf("bad index %d, procs %d or iters %d", index, procs, iters)
	}
	r, err := seg.Lookup(modeRegionName(mode))
	if err != nil {
		return err
	}
	if r.Len < modeRegionSize(procs) {
		return fmt.Errorf("region %s too small for %d workers", r.Name, procs)
	}
	mr := modeRegion{r: r, procs: procs}
	var step func() error
	plain := mmap.PlainUint64(r.Bytes(), mCounter)
	switch mode {
	case "none":
		step = func() error { incPlain(plain); return nil }
	case "atomic":
		c := mr.counter()
		step = func() error { c.Add(1); return nil }
	case "mutex":
		m, err := procsync.NewMutex(seg, mutexName, nil)
		if err != nil {
			return err
		}
		ctx := context.Background()
		step = func() error {
			if err := m.Lock(ctx); err != nil {
				if errors.Is(err, procsync.ErrOwnerDead) {
					_ = m.MarkConsistent()
					_ = m.Unlock()
				}
				return err // no worker dies in this mode: any error is a failure
			}
			incPlain(plain)
			return m.Unlock()
		}
	case "semaphore":
		s, err := procsync.NewSemaphore(seg, semName, 1, 1, nil)
		if err != nil {
			return err
		}
		ctx := context.Background()
		step = func() error {
			if err := s.Acquire(ctx); err != nil {
				return err
			}
			incPlain(plain)
			return s.Release(1)
		}
	}
	if err := waitStart(mr); err != nil {
		return err
	}
	mr.startNs(index).Store(uint64(monoNow()))
	for i := 0; i < iters; i++ {
		if err := step(); err != nil {
			return fmt.Errorf("increment %d: %w", i, err)
		}
	}
	mr.endNs(index).Store(uint64(monoNow()))
	return nil
}

// waitStart announces the worker ready and sleeps until the supervisor
// releases every worker of the mode at once.
func waitStart(mr modeRegion) error {
	mr.ready().Add(1)
	start := mr.start()
	deadline := time.Now().Add(time.Minute)
	for {
		switch start.Load() {
		case startGo:
			return nil
		case startAbort:
			return errors.New("aborted by the supervisor")
		}
		if time.Now().After(deadline) {
			return errors.New("no start signal within a minute")
		}
		futex.Wait(start, startWait, 10*time.Millisecond)
	}
}

// busy spins for d without giving up the CPU (a sleep would give the
// supervisor's kill much less chance to land in the middle of an update).
func busy(d time.Duration) {
	if d <= 0 {
		return
	}
	start := time.Now()
	for time.Since(start) < d {
	}
}

// killWorker runs the kill mode's update loop until the stop flag is set.
// Each update, under the mutex: write the intent (before, worker,
// doneBefore), activate it, counter = before+1, done[w] = doneBefore+1,
// commit (deactivate), unlock. A worker that takes the lock over from a dead
// holder rolls an active intent back, so a death at any point leaves
// counter == sum(done).
func killWorker(seg *shm.Segment, w int, delay time.Duration, noRepair bool) error {
	r, err := seg.Lookup(killName)
	if err != nil {
		return err
	}
	k, err := newKillRegion(r)
	if err != nil {
		return err
	}
	if w < 0 || w >= k.doneCap {
		return fmt.Errorf("worker index %d outside [0, %d)", w, k.doneCap)
	}
	m, err := procsync.NewMutex(seg, mutexName, nil)
	if err != nil {
		return err
	}
	k.started.Add(1)
	ctx := context.Background()
	done := k.done(w)
	for k.stop.Load() == 0 {
		err := m.Lock(ctx)
		switch {
		case errors.Is(err, procsync.ErrOwnerDead):
			if err := k.repair(m, noRepair); err != nil {
				return err
			}
		case err != nil:
			return fmt.Errorf("lock: %w", err)
		}
		before, doneBefore := k.counter.Load(), done.Load()
		k.before.Store(before)
		k.worker.Store(uint64(w))
		k.doneBefore.Store(doneBefore)
		k.active.Store(1)
		busy(delay)
		k.counter.Store(before + 1)
		busy(delay)
		done.Store(doneBefore + 1)
		busy(delay)
		k.active.Store(0) // commit
		if err := m.Unlock(); err != nil {
			return fmt.Errorf("unlock: %w", err)
		}
	}
	return nil
}

// repair undoes the dead holder's uncommitted update, records the recovery
// and its detection latency, and marks the mutex consistent. With noRepair
// it only drops the intent: the half-done update stays, as it would without
// the intent record, and the final check must catch it.
func (k *killRegion) repair(m *procsync.Mutex, noRepair bool) error {
	now := monoNow()
	if k.active.Load() != 0 && noRepair {
		k.active.Store(0)
	} else if k.active.Load() != 0 {
		k.rollbacks.Add(1)
		w := int(k.worker.Load())
		if w < 0 || w >= k.doneCap {
			return fmt.Errorf("intent names worker %d outside [0, %d)", w, k.doneCap)
		}
		k.counter.Store(k.before.Load())
		k.done(w).Store(k.doneBefore.Load())
		k.active.Store(0)
	}
	n := int(k.recovered.Add(1))
	if n-1 < k.latCap {
		lat := now - int64(k.killTs.Load())
		if lat < 0 {
			lat = 0
		}
		k.lat(n - 1).Store(uint64(lat))
	}
	if err := m.MarkConsistent(); err != nil {
		return fmt.Errorf("mark consistent: %w", err)
	}
	return nil
}
