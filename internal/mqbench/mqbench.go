package mqbench

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

	"github.com/ipcgo/ipc/internal/bench"
	"github.com/ipcgo/ipc/mq"
)

// The durability policies, as results name them.
const (
	SyncAlways = "always" // mq.SyncAlways; JetStream sync_interval: always
	SyncEvery  = "every"  // mq.SyncEvery(Every); JetStream sync_interval: Every
	SyncNone   = "none"   // mq.SyncNone; no JetStream counterpart
)

// The kinds of measurement.
const (
	KindPublish = "publish"
	KindConsume = "consume"
	KindLatency = "latency"
)

// Options configure a run. Zero fields take the defaults named.
type Options struct {
	// Systems to measure (Local, JetStream, MQNATS). Default Systems.
	Systems []string
	// Syncs are the durability policies (SyncAlways, SyncEvery, SyncNone).
	// Default all three.
	Syncs []string
	// Every is the interval of SyncEvery and of JetStream's sync_interval
	// against it. Default 2 minutes, JetStream's default.
	Every time.Duration
	// Sizes are the message sizes of the publish measurements. Default 64
	// and 1024; consume+ack and latency use the first.
	Sizes []int
	// Producers and Consumers are the process counts. Default 1 and 4;
	// the consume measurements drain what the largest count of producers
	// published at the first size.
	Producers, Consumers []int
	// Duration is each measurement's window, after a warm-up. Default 2 s.
	Duration time.Duration
	// Short runs the smallest useful matrix in a few seconds (tests):
	// the first size only, a 200 ms window, unless set otherwise.
	Short bool
	// Dir is where the stores live (the disk measured). Default
	// os.TempDir().
	Dir string
	// Progress, if not nil, receives a line as each measurement starts.
	Progress io.Writer
	// Command returns the command that starts a peer process with the
	// given arguments. nil means os.Executable() PeerCommand args...
	Command func(args ...string) (*exec.Cmd, error)
}

// Report is the outcome of a run; its JSON form is the output of
// `ipc bench mq --json`.
type Report struct {
	Machine  bench.Machine  `json:"machine"`
	Disk     Disk           `json:"disk"`
	Settings Settings       `json:"settings"`
	Results  []Result       `json:"results"`
	Targets  []bench.Target `json:"targets"`
}

// Settings record the options of a run.
type Settings struct {
	Systems   []string `json:"systems"`
	Syncs     []string `json:"syncs"`
	EveryNs   int64    `json:"every_ns"`
	Sizes     []int    `json:"sizes"`
	Producers []int    `json:"producers"`
	Consumers []int    `json:"consumers"`
	WindowNs  int64    `json:"window_ns"`
	WarmupNs  int64    `json:"warmup_ns"`
	GapNs     int64    `json:"latency_gap_ns"`
	Short     bool     `json:"short"`
}

// Result is one measurement: a system, a policy, a process count and a
// size. A skipped or failed one has zero numbers and says why.
type Result struct {
	Kind     string  `json:"kind"`
	System   string  `json:"system"`
	Sync     string  `json:"sync"`
	Procs    int     `json:"procs"`
	Size     int     `json:"size"`
	MsgsPerS float64 `json:"msgs_per_s,omitempty"`
	Messages int64   `json:"messages,omitempty"`
	WindowS  float64 `json:"window_s,omitempty"`
	// Drained is true when the consumers took every message of the stream
	// before the window ended (the rate is then over the time it took).
	Drained bool   `json:"drained,omitempty"`
	P50Ns   int64  `json:"p50_ns,omitempty"`
	P99Ns   int64  `json:"p99_ns,omitempty"`
	MaxNs   int64  `json:"max_ns,omitempty"`
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// OK reports whether r holds a measurement.
func (r *Result) OK() bool { return r.Skipped == "" && r.Error == "" }

// Find returns the result of a measurement, or nil.
func (rep *Report) Find(kind, system, sync string, procs, size int) *Result {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Kind == kind && r.System == system && r.Sync == sync && r.Procs == procs && r.Size == size {
			return r
		}
	}
	return nil
}

// Failed returns the results that failed (not those skipped).
func (rep *Report) Failed() []Result {
	var f []Result
	for _, r := range rep.Results {
		if r.Error != "" {
			f = append(f, r)
		}
	}
	return f
}

// latencyGap is the pause of the latency producer after each publish: the
// consumer is idle, waiting, when the next message comes.
const latencyGap = time.Millisecond

func (o *Options) normalize() error {
	if o.Systems == nil {
		o.Systems = Systems
	}
	if o.Syncs == nil {
		o.Syncs = []string{SyncAlways, SyncEvery, SyncNone}
	}
	if o.Every == 0 {
		o.Every = 2 * time.Minute
	}
	if o.Sizes == nil {
		o.Sizes = []int{64, 1024}
		if o.Short {
			o.Sizes = o.Sizes[:1]
		}
	}
	if o.Producers == nil {
		o.Producers = []int{1, 4}
	}
	if o.Consumers == nil {
		o.Consumers = []int{1, 4}
	}
	if o.Duration == 0 {
		o.Duration = 2 * time.Second
		if o.Short {
			o.Duration = 200 * time.Millisecond
		}
	}
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if o.Command == nil {
		o.Command = selfCommand
	}
	for _, s := range o.Systems {
		if !slices.Contains([]string{Local, JetStream, MQNATS}, s) {
			return fmt.Errorf("unknown system %q (local, jetstream, mq-nats)", s)
		}
	}
	for _, s := range o.Syncs {
		if !slices.Contains([]string{SyncAlways, SyncEvery, SyncNone}, s) {
			return fmt.Errorf("unknown sync policy %q (always, every, none)", s)
		}
	}
	for _, s := range o.Sizes {
		if s < 8 || s > 1<<20 {
			return fmt.Errorf("message size %d not in [8, 1 MiB]", s)
		}
	}
	for _, n := range append(slices.Clone(o.Producers), o.Consumers...) {
		if n < 1 || n > 64 {
			return fmt.Errorf("process count %d not in [1, 64]", n)
		}
	}
	switch {
	case len(o.Systems) == 0 || len(o.Syncs) == 0 || len(o.Sizes) == 0 || len(o.Producers) == 0:
		return errors.New("nothing to measure")
	case o.Duration < 50*time.Millisecond || o.Duration > 10*time.Minute:
		return fmt.Errorf("duration %v not in [50ms, 10m]", o.Duration)
	case o.Every <= 0:
		return fmt.Errorf("sync interval %v must be positive", o.Every)
	}
	return nil
}

// warmup is the warm-up before each window: a quarter of it, from 50 ms
// to 500 ms.
func warmup(d time.Duration) time.Duration {
	return min(max(d/4, 50*time.Millisecond), 500*time.Millisecond)
}

func selfCommand(args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, append([]string{PeerCommand}, args...)...)
	if os.Getenv("GORACE") == "" {
		// Peers exit after each measurement: spare them the race
		// detector's second of sleep at exit, when it is on.
		cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	}
	return cmd, nil
}

// policy returns the mq policy of a sync name.
func (o *Options) policy(sync string) mq.SyncPolicy {
	switch sync {
	case SyncEvery:
		return mq.SyncEvery(o.Every)
	case SyncNone:
		return mq.SyncNone
	}
	return mq.SyncAlways
}

// runner runs the measurements of one Run.
type runner struct {
	ctx   context.Context
	opts  *Options
	dir   string
	rep   *Report
	seq   int
	step  int
	total int
}

// Run measures the matrix of opts. The error reports invalid options or a
// cancelled ctx; a measurement that fails is reported in its Result.
// Every peer process is gone and every store removed when Run returns.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(opts.Dir, "ipcmqbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rep := &Report{
		Machine: bench.MachineInfo(),
		Disk:    diskInfo(dir),
		Settings: Settings{Systems: opts.Systems, Syncs: opts.Syncs, EveryNs: int64(opts.Every), Sizes: opts.Sizes,
			Producers: opts.Producers, Consumers: opts.Consumers, WindowNs: int64(opts.Duration),
			WarmupNs: int64(warmup(opts.Duration)), GapNs: int64(latencyGap), Short: opts.Short},
		Results: []Result{},
	}
	r := &runner{ctx: ctx, opts: &opts, dir: dir, rep: rep}
	for _, sync := range opts.Syncs {
		for _, sys := range opts.Systems {
			if r.measured(sys, sync) {
				r.total += len(opts.Sizes)*len(opts.Producers) + len(opts.Consumers) + 1
			}
		}
	}
	if opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "%d measurements of %v (+ %v warm-up) each, stores in %s (%s)\n",
			r.total, opts.Duration, warmup(opts.Duration), opts.Dir, rep.Disk.Line())
	}
	most := slices.Max(opts.Producers)
	for _, sync := range opts.Syncs {
		for _, size := range opts.Sizes {
			for _, n := range opts.Producers {
				for _, sys := range opts.Systems {
					if !r.measured(sys, sync) {
						continue
					}
					// The first size at the most producers fills the
					// stream the consumers then drain.
					r.publish(sys, sync, size, n, size == opts.Sizes[0] && n == most)
					if err := ctx.Err(); err != nil {
						return nil, err
					}
				}
			}
		}
		for _, sys := range opts.Systems {
			if r.measured(sys, sync) {
				r.latency(sys, sync)
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	rep.Machine.LoadEnd = bench.LoadAvg()
	rep.Targets = rep.checkTargets()
	return rep, nil
}

// measured reports whether system sys is measured under sync: JetStream
// has no counterpart of SyncNone.
func (r *runner) measured(sys, sync string) bool { return sys == Local || sync != SyncNone }

func (r *runner) progress(res *Result, what string) {
	if r.opts.Progress == nil {
		return
	}
	fmt.Fprintf(r.opts.Progress, "[%d/%d] %s %s sync=%s %s%s\n", r.step, r.total, res.Kind, res.System, res.Sync,
		procsLabel(res), what)
}

func procsLabel(res *Result) string {
	if res.Kind != KindLatency {
		return fmt.Sprintf("%d %s %d B", res.Procs, procWord(res.Kind, res.Procs), res.Size)
	}
	return fmt.Sprintf("%d B", res.Size)
}

// record ends a measurement: err, if not nil, fails it (or, for a system
// that is not written or not available, skips it).
func (r *runner) record(res Result, err error) {
	if err != nil {
		if errors.Is(err, mq.ErrUnsupported) {
			res.Skipped = err.Error()
		} else {
			res.Error = err.Error()
		}
	}
	switch {
	case res.Skipped != "":
		r.progress(&res, ": skipped: "+res.Skipped)
	case res.Error != "":
		r.progress(&res, ": FAILED: "+res.Error)
	case res.Kind == KindLatency:
		r.progress(&res, fmt.Sprintf(": p50 %v p99 %v (%d samples)", time.Duration(res.P50Ns), time.Duration(res.P99Ns), res.Messages))
	default:
		r.progress(&res, fmt.Sprintf(": %.0f msg/s", res.MsgsPerS))
	}
	r.rep.Results = append(r.rep.Results, res)
}

// store is a fresh store of one system: a directory, and for the NATS
// systems the nats-server process that keeps it.
type store struct {
	addr   string
	server *proc
}

func (s *store) close() {
	if s.server != nil {
		s.server.stop()
	}
}

// peerLimit bounds every peer process of a measurement.
func (r *runner) peerLimit() time.Duration { return 2*r.opts.Duration + time.Minute }

// newStore creates a fresh store of sys with policy sync and the stream.
func (r *runner) newStore(sys, sync string) (*store, error) {
	r.seq++
	dir := filepath.Join(r.dir, fmt.Sprintf("%s-%s-%d", sys, sync, r.seq))
	s := &store{}
	if sys == Local {
		s.addr = "file://" + dir
	} else {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		args := []string{"--store", dir, "--every", r.opts.Every.String()}
		if sync == SyncAlways {
			args = append(args, "--sync-always")
		}
		p, err := startPeer(r.opts.Command, roleServer, 3*r.peerLimit(), args...)
		if err != nil {
			return nil, err
		}
		s.server = p
		if s.addr, err = p.expect(r.ctx, "url ", 30*time.Second); err != nil {
			s.close()
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	if err := createStream(ctx, sys, s.addr, r.opts.policy(sync)); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// startAll starts n peers in role and waits until each is ready.
func (r *runner) startAll(role string, n int, args ...string) ([]*proc, error) {
	var ps []*proc
	for range n {
		p, err := startPeer(r.opts.Command, role, r.peerLimit(), args...)
		if err != nil {
			stopAll(ps)
			return nil, err
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		if _, err := p.expect(r.ctx, "ready", 30*time.Second); err != nil {
			stopAll(ps)
			return nil, err
		}
	}
	return ps, nil
}

func stopAll(ps []*proc) {
	for _, p := range ps {
		p.stop()
	}
}

// goAll tells every peer the window, and collects their results.
func (r *runner) goAll(ps []*proc, start, end time.Time) ([]peerResult, error) {
	line := fmt.Sprintf("go %d %d\n", start.UnixNano(), end.UnixNano())
	for _, p := range ps {
		if _, err := io.WriteString(p.in, line); err != nil {
			return nil, fmt.Errorf("%s: %w", p.role, err)
		}
	}
	var rs []peerResult
	var errs []error
	for _, p := range ps {
		res, err := p.result(r.ctx, time.Until(end)+time.Minute)
		rs = append(rs, res)
		errs = append(errs, err)
	}
	return rs, errors.Join(errs...)
}

// publish measures n producers of size-byte messages on a fresh store;
// with drain, the consume measurements follow on the messages published.
func (r *runner) publish(sys, sync string, size, n int, drain bool) {
	r.step++
	res := Result{Kind: KindPublish, System: sys, Sync: sync, Procs: n, Size: size}
	r.progress(&res, "")
	s, err := r.newStore(sys, sync)
	if err != nil {
		r.record(res, err)
		if drain {
			for _, c := range r.opts.Consumers {
				r.step++
				r.record(Result{Kind: KindConsume, System: sys, Sync: sync, Procs: c, Size: size}, err)
			}
		}
		return
	}
	defer s.close()
	var total int64
	ps, err := r.startAll(roleProducer, n, "--system", sys, "--addr", s.addr, "--size", strconv.Itoa(size))
	if err == nil {
		start := time.Now().Add(warmup(r.opts.Duration))
		end := start.Add(r.opts.Duration)
		var rs []peerResult
		rs, err = r.goAll(ps, start, end)
		stopAll(ps)
		for _, pr := range rs {
			res.Messages += pr.Count
			total += pr.Total
		}
		res.WindowS = r.opts.Duration.Seconds()
		res.MsgsPerS = float64(res.Messages) / res.WindowS
	}
	r.record(res, err)
	if drain {
		for _, c := range r.opts.Consumers {
			r.consume(s, sys, sync, c, size, total, err)
		}
	}
}

// consume measures n consumers of a new group draining the stream of s,
// which holds total messages (or failed to fill: perr).
func (r *runner) consume(s *store, sys, sync string, n, size int, total int64, perr error) {
	r.step++
	res := Result{Kind: KindConsume, System: sys, Sync: sync, Procs: n, Size: size}
	if perr != nil {
		r.record(res, fmt.Errorf("the publish that fills the stream failed: %w", perr))
		return
	}
	r.progress(&res, fmt.Sprintf(": %d messages to take", total))
	group := fmt.Sprintf("g%d", n)
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	err := createGroup(ctx, sys, s.addr, group)
	cancel()
	if err != nil {
		r.record(res, err)
		return
	}
	ps, err := r.startAll(roleConsumer, n, "--system", sys, "--addr", s.addr, "--group", group)
	if err != nil {
		r.record(res, err)
		return
	}
	start := time.Now().Add(50 * time.Millisecond)
	// Time enough to drain what the producers published, at a fifth of
	// their rate, within limits.
	end := start.Add(min(max(2*r.opts.Duration, time.Second), 30*time.Second))
	rs, err := r.goAll(ps, start, end)
	stopAll(ps)
	var last int64
	for _, pr := range rs {
		res.Messages += pr.Count
		last = max(last, pr.LastNs)
	}
	res.Drained = res.Messages >= total
	if last > start.UnixNano() {
		res.WindowS = time.Duration(last - start.UnixNano()).Seconds()
		res.MsgsPerS = float64(res.Messages) / res.WindowS
	}
	r.record(res, err)
}

// latency measures publish→deliver times to an idle consumer.
func (r *runner) latency(sys, sync string) {
	r.step++
	size := r.opts.Sizes[0]
	res := Result{Kind: KindLatency, System: sys, Sync: sync, Procs: 1, Size: size}
	r.progress(&res, "")
	s, err := r.newStore(sys, sync)
	if err != nil {
		r.record(res, err)
		return
	}
	defer s.close()
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	err = createGroup(ctx, sys, s.addr, "lat")
	cancel()
	if err != nil {
		r.record(res, err)
		return
	}
	sub, err := r.startAll(roleLatSub, 1, "--system", sys, "--addr", s.addr, "--group", "lat")
	if err != nil {
		r.record(res, err)
		return
	}
	pub, err := r.startAll(roleLatPub, 1, "--system", sys, "--addr", s.addr, "--size", strconv.Itoa(size),
		"--gap", latencyGap.String())
	if err != nil {
		stopAll(sub)
		r.record(res, err)
		return
	}
	ps := append(sub, pub...)
	start := time.Now().Add(warmup(r.opts.Duration))
	end := start.Add(r.opts.Duration)
	rs, err := r.goAll(ps, start, end)
	stopAll(ps)
	if err == nil {
		res.Messages, res.P50Ns, res.P99Ns, res.MaxNs = rs[0].Count, rs[0].P50Ns, rs[0].P99Ns, rs[0].MaxNs
		if res.Messages == 0 {
			err = errors.New("no message timed")
		}
	}
	res.WindowS = r.opts.Duration.Seconds()
	r.record(res, err)
}

// Disk describes the file system the stores were on.
type Disk struct {
	Dir    string `json:"dir"`
	FSType string `json:"fstype,omitempty"`
	Device string `json:"device,omitempty"`
	// Lsblk is what lsblk says of the device's disk: name, size,
	// rotational, model.
	Lsblk string `json:"lsblk,omitempty"`
}

// Line describes the disk in one line.
func (d Disk) Line() string {
	s := d.Dir
	if d.FSType != "" {
		s += " on " + d.FSType
	}
	if d.Device != "" {
		s += " " + d.Device
	}
	if d.Lsblk != "" {
		s += " (" + d.Lsblk + ")"
	}
	return s
}

// diskInfo asks df and lsblk about the file system of dir.
func diskInfo(dir string) Disk {
	d := Disk{Dir: filepath.Dir(dir)}
	out, err := exec.Command("df", "-T", dir).Output()
	if err != nil {
		return d
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if f := strings.Fields(lines[len(lines)-1]); len(lines) >= 2 && len(f) >= 2 {
		d.Device, d.FSType = f[0], f[1]
	}
	if strings.HasPrefix(d.Device, "/dev/") {
		if out, err := exec.Command("lsblk", "-dno", "NAME,SIZE,ROTA,MODEL", d.Device).Output(); err == nil {
			f := strings.Fields(string(out))
			if len(f) >= 3 {
				rota := "SSD or virtual (non-rotational)"
				if f[2] == "1" {
					rota = "rotational as reported"
				}
				d.Lsblk = strings.TrimSpace(fmt.Sprintf("%s %s, %s %s", f[0], f[1], rota, strings.Join(f[3:], " ")))
			}
		}
	}
	return d
}
