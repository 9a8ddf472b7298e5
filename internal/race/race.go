// Package race runs the `ipc race` demonstration: real processes increment
// one counter in a shared segment, unsynchronised, with atomics, under a
// procsync.Mutex and under a procsync.Semaphore, and (kill mode) under a
// mutex whose holders are killed with SIGKILL and recovered.
//
// The supervisor re-executes its own binary with the hidden WorkerCommand;
// the workers and the supervisor meet in a segment named
// "ipc-race-<pid>-<n>", which the supervisor removes when it returns,
// whatever the outcome.
package race

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

// Modes are the contention modes, in the order they run.
var Modes = []string{"none", "atomic", "mutex", "semaphore"}

func validMode(m string) bool { return slices.Contains(Modes, m) }

// Limits of the options.
const (
	MaxProcs = 256
	MaxKills = 10000
)

// Options configure a run.
type Options struct {
	Procs int      // worker processes running at once
	Iters int      // increments per worker (contention modes)
	Modes []string // contention modes to run; nil means all of Modes
	// Kill > 0 selects the kill mode: the mutex mode with Kill lock holders
	// killed and recovered; Iters and Modes are then ignored.
	Kill int
	// Delay is the busy delay between the steps of a kill-mode update;
	// 0 means 25 µs.
	Delay time.Duration
	// Command returns the command that starts a worker with the given
	// arguments. nil means os.Executable() WorkerCommand args...
	Command func(args ...string) (*exec.Cmd, error)
	// KillWait bounds the wait for one death to be recovered; 0 means 5 s.
	KillWait time.Duration
	// NoRepair makes the kill-mode workers skip the roll-back of a dead
	// holder's half-done update, to show that the final check catches it.
	NoRepair bool
	// Across, a NATS URL, runs the workers against a counter in JetStream
	// key-value, coordinating through package dsync (see across.go)
	// instead of shared memory. Its modes are AcrossModes().
	Across string
	// TTL is the dsync lease TTL of an across run; 0 means 1 s.
	TTL time.Duration
}

// Result is the outcome of a run; its JSON form is the output of
// `ipc race --json`.
type Result struct {
	Procs    int          `json:"procs"`
	Iters    int          `json:"iters"`
	Expected uint64       `json:"expected"`
	Modes    []ModeResult `json:"modes"`
	Kill     *KillResult  `json:"kill,omitempty"`
	Across   string       `json:"across,omitempty"` // the NATS URL of an across run
	// Details of the kill mode that are shown to people but not in JSON.
	KillDetail *KillDetail `json:"-"`
}

// ModeResult is the outcome of one mode.
type ModeResult struct {
	Mode    string  `json:"mode"`
	Final   uint64  `json:"final"`
	Lost    int64   `json:"lost"`
	NsPerOp float64 `json:"ns_per_op"`
	// Refused counts the writes a fence refused (across runs; none under
	// a working lock).
	Refused int64 `json:"refused,omitempty"`
}

// KillResult is the outcome of the kill mode.
type KillResult struct {
	Kills       int     `json:"kills"`
	Recovered   int     `json:"recovered"`
	DetectMsP50 float64 `json:"detect_ms_p50"`
	DetectMsMax float64 `json:"detect_ms_max"`
	Final       uint64  `json:"final"`
	Expected    uint64  `json:"expected"`
	// Across runs pause the holders before they are killed: a resumed
	// holder's late write is refused by the fence (LateRefused), or it had
	// written before the pause and only its unlock fails (LateAfterWrite).
	// StaleAccepted counts late writes that got through (must be 0).
	LateRefused    int `json:"late_refused,omitempty"`
	LateAfterWrite int `json:"late_after_write,omitempty"`
	StaleAccepted  int `json:"stale_accepted,omitempty"`
}

// KillDetail is what the human output adds to KillResult.
type KillDetail struct {
	Attempts  int       // SIGKILLs sent, holders or not
	Misses    int       // kills that did not hit the lock holder
	Workers   int       // worker processes started in all
	Rollbacks int       // recoveries that rolled back a half-done update
	DetectMs  []float64 // detection latency of each recovery, in order
	Wall      time.Duration
}

// Synchronised reports whether a mode must never lose an update.
func Synchronised(mode string) bool { return mode != "none" }

// Check returns an error describing every failed check of r: a lost update
// in a synchronised mode, a final counter that differs from the expected
// one, or a recovery count that differs from the number of kills.
func (r *Result) Check() error {
	var errs []error
	for _, m := range r.Modes {
		if Synchronised(m.Mode) && (m.Lost != 0 || m.Final != r.Expected) {
			errs = append(errs, fmt.Errorf("mode %s: final %d, expected %d (%d lost)", m.Mode, m.Final, r.Expected, m.Lost))
		}
	}
	if k := r.Kill; k != nil {
		if k.Final != k.Expected {
			errs = append(errs, fmt.Errorf("kill: final %d != expected %d", k.Final, k.Expected))
		}
		if k.Recovered != k.Kills {
			errs = append(errs, fmt.Errorf("kill: %d recoveries for %d kills", k.Recovered, k.Kills))
		}
		if k.StaleAccepted != 0 {
			errs = append(errs, fmt.Errorf("kill: %d late writes of paused holders accepted", k.StaleAccepted))
		}
		if r.Across != "" && k.LateRefused+k.LateAfterWrite != k.Kills {
			errs = append(errs, fmt.Errorf("kill: %d resumed holders accounted for, %d paused", k.LateRefused+k.LateAfterWrite, k.Kills))
		}
	}
	return errors.Join(errs...)
}

var seq atomic.Int64

// SegmentPrefix starts the name of every segment a run creates.
const SegmentPrefix = "ipc-race-"

// Run performs a run. The error reports a run that could not be carried
// out (a worker failed, a death was not recovered in time, ctx was
// cancelled); a run that completed returns its Result, which may still fail
// Check. Every worker is dead and the segment removed when Run returns.
func Run(ctx context.Context, opts Options) (res *Result, err error) {
	if opts.Procs < 1 || opts.Procs > MaxProcs {
		return nil, fmt.Errorf("procs %d not in [1, %d]", opts.Procs, MaxProcs)
	}
	if opts.Kill < 0 || opts.Kill > MaxKills {
		return nil, fmt.Errorf("kill %d not in [0, %d]", opts.Kill, MaxKills)
	}
	if opts.Kill == 0 && opts.Iters < 1 {
		return nil, fmt.Errorf("iters %d must be at least 1", opts.Iters)
	}
	modes, valid := opts.Modes, Modes
	if opts.Across != "" {
		valid = acrossModes
	}
	if modes == nil {
		modes = valid
	}
	for _, m := range modes {
		if !slices.Contains(valid, m) {
			return nil, fmt.Errorf("unknown mode %q (modes: %v)", m, valid)
		}
	}
	if opts.Delay == 0 {
		opts.Delay = 25 * time.Microsecond
	}
	if opts.KillWait == 0 {
		opts.KillWait = 5 * time.Second
	}
	if opts.Command == nil {
		opts.Command = selfCommand
	}
	if opts.TTL == 0 {
		opts.TTL = time.Second
	}
	if opts.Across != "" {
		s := &supervisor{ctx: ctx, opts: opts, exited: make(chan struct{}, 1)}
		s.opts.Modes = modes
		return s.runAcross()
	}

	name := SegmentPrefix + strconv.Itoa(os.Getpid())
	if n := seq.Add(1); n > 1 {
		name += "-" + strconv.FormatInt(n, 10)
	}
	size := 64 << 10
	if opts.Kill > 0 {
		size += killRegionSize(killCaps(opts))
	} else {
		size += len(modes) * modeRegionSize(opts.Procs)
	}
	seg, err := shm.Create(name, size, &shm.Config{Perm: 0o600, Slots: opts.Procs + 16, Objects: 32})
	if err != nil {
		return nil, err
	}
	s := &supervisor{ctx: ctx, seg: seg, opts: opts, exited: make(chan struct{}, 1)}
	defer func() {
		s.killAll()
		seg.Close()
		if uerr := shm.Unlink(name); uerr != nil && err == nil {
			err = uerr
		}
	}()

	if opts.Kill > 0 {
		return s.runKill()
	}
	res = &Result{Procs: opts.Procs, Iters: opts.Iters, Expected: uint64(opts.Procs) * uint64(opts.Iters)}
	return res.runModes(modes, s.runMode)
}

// runModes runs each mode with run and records its result, the updates it
// lost against res.Expected, in res.
func (res *Result) runModes(modes []string, run func(string) (ModeResult, error)) (*Result, error) {
	for _, m := range modes {
		mr, err := run(m)
		if err != nil {
			return nil, fmt.Errorf("mode %s: %w", m, err)
		}
		mr.Lost = int64(res.Expected) - int64(mr.Final)
		mr.NsPerOp = round(mr.NsPerOp, 1)
		res.Modes = append(res.Modes, mr)
	}
	return res, nil
}

func selfCommand(args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(exe, append([]string{WorkerCommand}, args...)...), nil
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// supervisor starts, watches and kills the workers of a run.
type supervisor struct {
	ctx    context.Context
	seg    *shm.Segment
	opts   Options
	procs  []*proc
	exited chan struct{} // signalled (non-blocking) whenever a worker exits
}

// proc is a worker process.
type proc struct {
	cmd    *exec.Cmd
	index  int
	out    *capWriter
	done   chan struct{} // closed once reaped
	err    error         // exit status, valid after done
	killed bool          // killed on purpose by the supervisor
}

func (p *proc) exitedNow() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// failure describes a worker that exited when it should not have.
func (p *proc) failure() error {
	return fmt.Errorf("worker %d (pid %d) exited: %v: %s", p.index, p.cmd.Process.Pid, p.err, bytes.TrimSpace(p.out.Bytes()))
}

func (s *supervisor) start(index int, args ...string) (*proc, error) {
	cmd, err := s.opts.Command(args...)
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = workerAttr()
	out := &capWriter{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	p := &proc{cmd: cmd, index: index, out: out, done: make(chan struct{})}
	s.procs = append(s.procs, p)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		select {
		case s.exited <- struct{}{}:
		default:
		}
	}()
	return p, nil
}

// killAll kills every worker still running and reaps them all.
func (s *supervisor) killAll() {
	for _, p := range s.procs {
		if !p.exitedNow() {
			_ = p.cmd.Process.Kill()
		}
	}
	for _, p := range s.procs {
		<-p.done // SIGKILL cannot be ignored
	}
}

// waitExit waits until every worker in ps has exited, failing early if one
// exits with an error or ctx is done or the timeout (0: none) passes.
func (s *supervisor) waitExit(ps []*proc, timeout time.Duration) error {
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	for {
		running := 0
		for _, p := range ps {
			if !p.exitedNow() {
				running++
			} else if p.err != nil && !p.killed {
				return p.failure()
			}
		}
		if running == 0 {
			return nil
		}
		select {
		case <-s.exited:
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-deadline:
			return fmt.Errorf("%d workers still running after %v", running, timeout)
		}
	}
}

// failed returns the failure of a worker that exited without being killed
// on purpose, if any.
func (s *supervisor) failed() error {
	for _, p := range s.procs {
		if !p.killed && p.exitedNow() && p.err != nil {
			return p.failure()
		}
	}
	return nil
}

// runMode runs one contention mode: Procs workers released together, each
// adding Iters to the counter.
func (s *supervisor) runMode(mode string) (ModeResult, error) {
	n := s.opts.Procs
	r, err := s.seg.Alloc(modeRegionName(mode), modeRegionSize(n))
	if err != nil {
		return ModeResult{}, err
	}
	mr := modeRegion{r: r, procs: n}
	switch mode { // create the primitive before any worker opens it
	case "mutex":
		_, err = procsync.NewMutex(s.seg, mutexName, nil)
	case "semaphore":
		_, err = procsync.NewSemaphore(s.seg, semName, 1, 1, nil)
	}
	if err != nil {
		return ModeResult{}, err
	}
	start := mr.start()
	abort := func(err error) (ModeResult, error) {
		start.Store(startAbort)
		futex.Wake(start, math.MaxInt32)
		return ModeResult{}, err
	}
	var ps []*proc
	for i := range n {
		p, err := s.start(i, "--seg", s.seg.Name(), "--mode", mode, "--procs", strconv.Itoa(n),
			"--iters", strconv.Itoa(s.opts.Iters), "--index", strconv.Itoa(i))
		if err != nil {
			return abort(err)
		}
		ps = append(ps, p)
	}
	// Release the workers together once all of them are ready, so that
	// they overlap.
	deadline := time.Now().Add(30 * time.Second)
	for mr.ready().Load() < uint64(n) {
		if err := s.failed(); err != nil {
			return abort(err)
		}
		if err := s.ctx.Err(); err != nil {
			return abort(err)
		}
		if time.Now().After(deadline) {
			return abort(fmt.Errorf("only %d of %d workers ready after 30 s", mr.ready().Load(), n))
		}
		time.Sleep(time.Millisecond)
	}
	start.Store(startGo)
	futex.Wake(start, math.MaxInt32)
	if err := s.waitExit(ps, 0); err != nil {
		return ModeResult{}, err
	}
	var first, last uint64 = math.MaxUint64, 0
	for i := range n {
		first = min(first, mr.startNs(i).Load())
		last = max(last, mr.endNs(i).Load())
	}
	res := ModeResult{Mode: mode, Final: mr.counter().Load()}
	if total := float64(n) * float64(s.opts.Iters); last > first {
		res.NsPerOp = float64(last-first) / total
	}
	return res, nil
}

// capWriter keeps the first max bytes written to it.
type capWriter struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (w *capWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

func (w *capWriter) Bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.buf.Bytes())
}

var _ io.Writer = (*capWriter)(nil)
