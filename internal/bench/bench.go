package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ipcgo/ipc"
)

// Transports are the framed transports of package ipc, in the order they
// run by default.
var Transports = []string{ipc.SHM, ipc.Unix, ipc.UnixPacket, ipc.TCP, ipc.FIFO, ipc.PosixMQ, ipc.Pipe}

// Sizes are the default message sizes in bytes.
var Sizes = []int{64, 4096, 65536, 1 << 20}

// RawPrefix starts the name of every baseline.
const RawPrefix = "raw-"

// SpinBaseline is the baseline of the shm transport: a spinning ping-pong
// and a spinning SPSC ring in a MAP_SHARED page.
const SpinBaseline = "raw-shmspin"

// Baseline returns the name of the raw baseline of a framed transport.
func Baseline(transport string) string {
	if transport == ipc.SHM {
		return SpinBaseline
	}
	return RawPrefix + transport
}

// Baselines are the names of the raw baselines, in the order of Transports.
var Baselines = func() []string {
	var b []string
	for _, t := range Transports {
		b = append(b, Baseline(t))
	}
	return b
}()

// IsBaseline reports whether name is a raw baseline.
func IsBaseline(name string) bool { return strings.HasPrefix(name, RawPrefix) }

// Limits of the options.
const (
	MaxSize     = 64 << 20
	MinDuration = 10 * time.Millisecond
	MaxDuration = 10 * time.Minute
)

// Options configure a run.
type Options struct {
	// Transports to measure: framed transport names (Transports) and
	// baseline names (Baselines). nil means all of Transports.
	Transports []string
	// Sizes are the message sizes in bytes, each in [1, MaxSize]. nil
	// means Sizes.
	Sizes []int
	// Duration is how long each measurement runs after its warm-up: the
	// round trips of one transport and size, then its throughput. 0 means
	// 2 s.
	Duration time.Duration
	// MaxRoundTrips ends a latency measurement early; 0 means 1,000,000.
	MaxRoundTrips int
	// NoBaselines leaves out the baseline of each framed transport (by
	// default each framed transport runs right after its baseline).
	NoBaselines bool
	// Progress, if not nil, receives a line as each measurement starts.
	Progress io.Writer
	// Command returns the command that starts a peer (or driver) process
	// with the given arguments. nil means os.Executable() PeerCommand
	// args...
	Command func(args ...string) (*exec.Cmd, error)
	// CPUs, if not empty, pins the two processes of each measurement: the
	// measuring one to CPUs[0], its peer to CPUs[1] (two different CPUs
	// this process may run on; Linux only). Pinned, each wake-up of a
	// kernel transport crosses CPUs, the case the spinning shm transport
	// is built for; unpinned, the scheduler often runs both processes of a
	// ping-pong on one CPU. DefaultCPUs gives the first two.
	CPUs []int
	// InProcess makes each measurement from this process rather than from
	// a fresh driver process. The numbers then depend on what ran before
	// in the process (tests use it); it cannot be combined with CPUs.
	InProcess bool
}

// Report is the outcome of a run; its JSON form is the output of
// `ipc bench --json`.
type Report struct {
	Machine  Machine  `json:"machine"`
	Settings Settings `json:"settings"`
	Results  []Result `json:"results"`
	Targets  []Target `json:"targets"`
}

// Settings record the options of a run.
type Settings struct {
	DurationNs    int64    `json:"duration_ns"`
	WarmupNs      int64    `json:"warmup_ns"`
	MaxRoundTrips int      `json:"max_round_trips"`
	Sizes         []int    `json:"sizes"`
	Transports    []string `json:"transports"`
	// CPUs are the CPUs the measuring process and its peer were pinned
	// to; null when they were not pinned.
	CPUs []int `json:"cpus"`
	// Isolated is true when each measurement ran in a fresh pair of
	// processes.
	Isolated bool `json:"isolated"`
}

// Result is the measurement of one transport at one message size. A
// skipped or failed measurement has zero numbers and says why.
type Result struct {
	Transport string  `json:"transport"`
	Size      int     `json:"size"`
	RTTP50    int64   `json:"rtt_p50_ns"`
	RTTP99    int64   `json:"rtt_p99_ns"`
	RTTP999   int64   `json:"rtt_p999_ns"`
	MsgsPerS  float64 `json:"msgs_per_s"`
	BytesPerS float64 `json:"bytes_per_s"`

	// Baseline is true for the raw baselines.
	Baseline bool `json:"baseline,omitempty"`
	// BaselineName names the raw baseline of a framed transport, and the
	// ratios compare this row with that baseline's row of the same size:
	// framed p50 / raw p50 (lower is better) and framed msgs/s / raw
	// msgs/s (higher is better).
	BaselineName     string  `json:"baseline_transport,omitempty"`
	RTTRatio         float64 `json:"rtt_p50_ratio_to_baseline,omitempty"`
	ThroughputRatio  float64 `json:"msgs_per_s_ratio_to_baseline,omitempty"`
	RTTMin           int64   `json:"rtt_min_ns,omitempty"`
	RTTMax           int64   `json:"rtt_max_ns,omitempty"`
	RoundTrips       int64   `json:"round_trips,omitempty"`
	Messages         int64   `json:"messages,omitempty"`
	ThroughputWindow float64 `json:"throughput_window_s,omitempty"`
	// Skipped says why a measurement could not be made (the transport is
	// not available here, the size exceeds its limit); Error says why one
	// failed.
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
	// Retries counts the attempts that failed for want of a system
	// resource other programs were holding (see isTransient).
	Retries int `json:"retries,omitempty"`

	transient bool
}

// OK reports whether r holds measurements.
func (r *Result) OK() bool { return r.Skipped == "" && r.Error == "" }

// Find returns the result of transport at size, or nil.
func (rep *Report) Find(transport string, size int) *Result {
	for i := range rep.Results {
		if r := &rep.Results[i]; r.Transport == transport && r.Size == size {
			return r
		}
	}
	return nil
}

// Failed returns the results that failed (not those skipped).
func (rep *Report) Failed() []Result {
	return failed(rep.Results, func(r Result) string { return r.Error })
}

// failed returns the results whose error is not empty.
func failed[R any](results []R, errOf func(R) string) []R {
	var f []R
	for _, r := range results {
		if errOf(r) != "" {
			f = append(f, r)
		}
	}
	return f
}

func (o *Options) normalize() error {
	if o.Transports == nil {
		o.Transports = Transports
	}
	if o.Sizes == nil {
		o.Sizes = Sizes
	}
	if o.Duration == 0 {
		o.Duration = 2 * time.Second
	}
	if o.MaxRoundTrips == 0 {
		o.MaxRoundTrips = 1_000_000
	}
	if o.Command == nil {
		o.Command = selfCommand
	}
	if len(o.Transports) == 0 {
		return errors.New("no transport to measure")
	}
	for _, t := range o.Transports {
		if !slices.Contains(Transports, t) && !slices.Contains(Baselines, t) {
			return fmt.Errorf("unknown transport %q (transports: %s; baselines: %s)", t,
				strings.Join(Transports, ","), strings.Join(Baselines, ","))
		}
	}
	if len(o.Sizes) == 0 {
		return errors.New("no message size")
	}
	var sizes []int
	for _, s := range o.Sizes {
		if s < 1 || s > MaxSize {
			return fmt.Errorf("message size %d not in [1, %d]", s, MaxSize)
		}
		if !slices.Contains(sizes, s) {
			sizes = append(sizes, s)
		}
	}
	o.Sizes = sizes
	if o.Duration < MinDuration || o.Duration > MaxDuration {
		return fmt.Errorf("duration %v not in [%v, %v]", o.Duration, MinDuration, MaxDuration)
	}
	if o.MaxRoundTrips < 1 {
		return fmt.Errorf("max round trips %d must be at least 1", o.MaxRoundTrips)
	}
	if len(o.CPUs) > 0 && o.InProcess {
		return fmt.Errorf("%w: pinning needs a fresh process per measurement (not InProcess)", errPinning)
	}
	return checkCPUs(o.CPUs)
}

// maxRetries is how many times a measurement that failed for want of a
// system resource is tried again.
const maxRetries = 5

// warmup is the warm-up before each measurement: a quarter of the
// duration, between 10 ms and 500 ms.
func warmup(d time.Duration) time.Duration {
	return min(max(d/4, 10*time.Millisecond), 500*time.Millisecond)
}

func selfCommand(args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, append([]string{PeerCommand}, args...)...)
	if raceEnabled && os.Getenv("GORACE") == "" {
		// A peer exits after each measurement: spare it the race
		// detector's second of sleep at exit.
		cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	}
	return cmd, nil
}

// tempPrefix starts the name of the temporary directory of a run, followed
// by the pid of the process that runs it.
const tempPrefix = "ipcbench-"

// sweepStale removes the temporary directories of runs whose process is
// gone (killed before it could clean up).
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*-*"))
	for _, d := range dirs {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), tempPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(d)
	}
}

// plan returns the measurements in the order they run: each framed
// transport right after its baseline, size by size.
func (o *Options) plan() []string {
	var names []string
	add := func(n string) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, t := range o.Transports {
		if !IsBaseline(t) && !o.NoBaselines {
			add(Baseline(t))
		}
		add(t)
	}
	return names
}

// Run measures every transport and size of opts, one process pair at a
// time. The error reports invalid options or a cancelled ctx; a
// measurement that fails is reported in its Result. Every peer process is
// dead and every file and queue removed when Run returns.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	sweepStale()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", tempPrefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	names := opts.plan()
	rep := &Report{
		Machine: machineInfo(),
		Settings: Settings{
			DurationNs: int64(opts.Duration), WarmupNs: int64(warmup(opts.Duration)),
			MaxRoundTrips: opts.MaxRoundTrips, Sizes: opts.Sizes, Transports: names,
			CPUs: opts.CPUs, Isolated: !opts.InProcess,
		},
		Results: []Result{},
	}
	total := len(names) * len(opts.Sizes)
	if opts.Progress != nil {
		each := 2 * (warmup(opts.Duration) + opts.Duration)
		all := time.Duration(total) * (each + 100*time.Millisecond) // and the start of a peer
		if all > 10*time.Second {
			all = all.Round(time.Second)
		} else {
			all = all.Round(100 * time.Millisecond)
		}
		fmt.Fprintf(opts.Progress, "%d measurements (%d transports and baselines x %d sizes) of %v each: about %v\n",
			total, len(names), len(opts.Sizes), each, all)
	}
	step := 0
	for _, name := range names {
		for _, size := range opts.Sizes {
			step++
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			pr := func(phase string) {
				if opts.Progress != nil {
					fmt.Fprintf(opts.Progress, "[%d/%d] %s %d B %s\n", step, total, name, size, phase)
				}
			}
			var r Result
			for attempt := 0; ; attempt++ {
				r = Result{Transport: name, Size: size, Baseline: IsBaseline(name), Retries: attempt}
				m := &measurement{ctx: ctx, opts: &opts, dir: dir, name: name, size: size, progress: pr,
					seq: step*100 + attempt, owner: os.Getpid()}
				if opts.InProcess {
					m.run(&r)
				} else {
					runDriver(m, &r)
				}
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				if !r.transient || attempt == maxRetries {
					break
				}
				pr("short of a system resource, trying again: " + r.Error + r.Skipped)
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(time.Duration(attempt+1) * 300 * time.Millisecond):
				}
			}
			switch {
			case r.Skipped != "":
				pr("skipped: " + r.Skipped)
			case r.Error != "":
				pr("FAILED: " + r.Error)
			}
			rep.Results = append(rep.Results, r)
		}
	}
	rep.Machine.LoadEnd = loadAvg()
	rep.ratios()
	rep.Targets = rep.checkTargets()
	return rep, nil
}

// ratios fills in the comparison of each framed result with its baseline.
func (rep *Report) ratios() {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Baseline {
			continue
		}
		r.BaselineName = Baseline(r.Transport)
		b := rep.Find(r.BaselineName, r.Size)
		if !r.OK() || b == nil || !b.OK() {
			continue
		}
		if b.RTTP50 > 0 && r.RTTP50 > 0 {
			r.RTTRatio = round3(float64(r.RTTP50) / float64(b.RTTP50))
		}
		if b.MsgsPerS > 0 && r.MsgsPerS > 0 {
			r.ThroughputRatio = round3(r.MsgsPerS / b.MsgsPerS)
		}
	}
}

func round3(x float64) float64 {
	switch {
	case x >= 100:
		return float64(int64(x*10+0.5)) / 10
	case x >= 1:
		return float64(int64(x*1000+0.5)) / 1000
	}
	return float64(int64(x*100000+0.5)) / 100000
}

// sizeLabel writes a size as "64 B", "4 KiB", "1 MiB".
func sizeLabel(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
