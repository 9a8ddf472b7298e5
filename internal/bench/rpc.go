package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The systems RunRPC measures: package rpc over two transports and, in the
// same run, its baselines.
const (
	RPCShm  = "rpc-shm"  // package rpc over shm
	RPCUnix = "rpc-unix" // package rpc over unix
	// GRPCUnix is grpc-go's own server and client (HTTP/2) over a Unix
	// socket from net.Listen.
	GRPCUnix = "grpc-unix"
	// GRPCShm is grpc-go over ipc shm byte streams (ipc.Listener,
	// rpc.ContextDialer).
	GRPCShm = "grpc-ipc-shm"
	// NetRPCUnix is the standard library's net/rpc (gob) over a Unix
	// socket, carrying the same protobuf messages as bytes.
	NetRPCUnix = "netrpc-unix"
	// ConnShm and ConnUnix are the raw ipc.Conn round trip: the payload's
	// bytes sent and echoed on one connection, one caller.
	ConnShm  = "conn-shm"
	ConnUnix = "conn-unix"
)

// RPCSystems are the systems of RunRPC, in the order they run.
var RPCSystems = []string{ConnShm, RPCShm, GRPCShm, ConnUnix, RPCUnix, GRPCUnix, NetRPCUnix}

// RPCSizes are the default payload sizes: the marshalled size of the
// request (and of the reply) in bytes.
var RPCSizes = []int{64, 4096}

// RPCCallers are the default numbers of concurrent callers.
var RPCCallers = []int{1, 8, 64}

// MaxRPCSize and MaxCallers bound RPCOptions.
const (
	MaxRPCSize = 1 << 20
	MaxCallers = 1024
)

// isConnSystem reports whether system is a raw ipc.Conn baseline.
func isConnSystem(system string) bool { return system == ConnShm || system == ConnUnix }

// connBaseline returns the ipc.Conn baseline of a system on its transport.
func connBaseline(system string) string {
	if strings.HasSuffix(system, "-shm") {
		return ConnShm
	}
	return ConnUnix
}

// Result kinds.
const (
	KindUnary  = "unary"
	KindStream = "stream"
)

// RPCOptions configure RunRPC.
type RPCOptions struct {
	// Systems to measure (RPCSystems); nil means all.
	Systems []string
	// Sizes are the payload sizes in bytes, each in [16, MaxRPCSize]; nil
	// means RPCSizes.
	Sizes []int
	// Callers are the numbers of concurrent callers, each in [1,
	// MaxCallers]; nil means RPCCallers. The ipc.Conn baselines run with
	// one caller only (a connection carries one exchange at a time).
	Callers []int
	// Duration is how long each measurement runs after its warm-up; 0
	// means 1 s.
	Duration time.Duration
	// CPUs pins the calling process to CPUs[0] and the server to CPUs[1],
	// as Options.CPUs does.
	CPUs []int
	// Progress, if not nil, receives a line as each measurement starts.
	Progress io.Writer
	// Command starts a process of this program; nil means os.Executable()
	// PeerCommand args...
	Command func(args ...string) (*exec.Cmd, error)
}

// RPCReport is the outcome of RunRPC; its JSON form is the output of
// `ipc bench rpc --json`.
type RPCReport struct {
	Machine  Machine     `json:"machine"`
	Settings RPCSettings `json:"settings"`
	Results  []RPCResult `json:"results"`
	Targets  []Target    `json:"targets"`
}

// RPCSettings record the options of a run.
type RPCSettings struct {
	DurationNs int64    `json:"duration_ns"`
	WarmupNs   int64    `json:"warmup_ns"`
	Systems    []string `json:"systems"`
	Sizes      []int    `json:"sizes"`
	Callers    []int    `json:"callers"`
	CPUs       []int    `json:"cpus"`
}

// RPCResult is one measurement: unary calls of one system at one payload
// size with a number of concurrent callers, or the messages of a server
// stream. A skipped or failed measurement has zero numbers and says why.
type RPCResult struct {
	System  string `json:"system"`
	Kind    string `json:"kind"` // KindUnary or KindStream
	Size    int    `json:"size"`
	Callers int    `json:"callers,omitempty"` // unary only
	// Unary: the latency of a call as its caller sees it, and the calls
	// completed per second by all callers together.
	P50       int64   `json:"p50_ns,omitempty"`
	P99       int64   `json:"p99_ns,omitempty"`
	CallsPerS float64 `json:"calls_per_s,omitempty"`
	Calls     int64   `json:"calls,omitempty"`
	// ClientAllocs is the heap allocations of the calling process per
	// call, one caller (runtime.MemStats.Mallocs).
	ClientAllocs float64 `json:"client_allocs_per_call,omitempty"`
	// P50Ratio is P50 over the p50 of the ipc.Conn baseline of the same
	// transport and size (one caller).
	P50Ratio float64 `json:"p50_ratio_to_conn,omitempty"`
	// Stream: messages of the given size the server sent and the client
	// received per second.
	MsgsPerS float64 `json:"msgs_per_s,omitempty"`
	Messages int64   `json:"messages,omitempty"`

	Baseline bool   `json:"baseline,omitempty"` // every system but rpc-*
	Skipped  string `json:"skipped,omitempty"`
	Error    string `json:"error,omitempty"`
}

// OK reports whether r holds measurements.
func (r *RPCResult) OK() bool { return r.Skipped == "" && r.Error == "" }

// Find returns the result of system, kind, size and callers (0 for a
// stream), or nil.
func (rep *RPCReport) Find(system, kind string, size, callers int) *RPCResult {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.System == system && r.Kind == kind && r.Size == size && r.Callers == callers {
			return r
		}
	}
	return nil
}

// Failed returns the results that failed.
func (rep *RPCReport) Failed() []RPCResult {
	return failed(rep.Results, func(r RPCResult) string { return r.Error })
}

func (o *RPCOptions) normalize() error {
	if o.Systems == nil {
		o.Systems = RPCSystems
	}
	if o.Sizes == nil {
		o.Sizes = RPCSizes
	}
	if o.Callers == nil {
		o.Callers = RPCCallers
	}
	if o.Duration == 0 {
		o.Duration = time.Second
	}
	if o.Command == nil {
		o.Command = selfCommand
	}
	if len(o.Systems) == 0 || len(o.Sizes) == 0 || len(o.Callers) == 0 {
		return errors.New("nothing to measure: no system, size or number of callers")
	}
	for _, s := range o.Systems {
		if !slices.Contains(RPCSystems, s) {
			return fmt.Errorf("unknown system %q (systems: %s)", s, strings.Join(RPCSystems, ","))
		}
	}
	for _, s := range o.Sizes {
		if s < 16 || s > MaxRPCSize {
			return fmt.Errorf("payload size %d not in [16, %d]", s, MaxRPCSize)
		}
	}
	for _, c := range o.Callers {
		if c < 1 || c > MaxCallers {
			return fmt.Errorf("callers %d not in [1, %d]", c, MaxCallers)
		}
	}
	o.Systems, o.Sizes, o.Callers = dedup(o.Systems), dedup(o.Sizes), dedup(o.Callers)
	if o.Duration < MinDuration || o.Duration > MaxDuration {
		return fmt.Errorf("duration %v not in [%v, %v]", o.Duration, MinDuration, MaxDuration)
	}
	return checkCPUs(o.CPUs)
}

func dedup[T comparable](s []T) []T {
	var out []T
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// callersOf returns the numbers of callers system runs with.
func callersOf(system string, callers []int) []int {
	if isConnSystem(system) {
		return []int{1}
	}
	return callers
}

// expected returns the results one system at one size yields, empty.
func expected(system string, size int, callers []int) []RPCResult {
	var rs []RPCResult
	for _, c := range callersOf(system, callers) {
		rs = append(rs, RPCResult{System: system, Kind: KindUnary, Size: size, Callers: c})
	}
	rs = append(rs, RPCResult{System: system, Kind: KindStream, Size: size})
	for i := range rs {
		rs[i].Baseline = !strings.HasPrefix(system, "rpc-")
	}
	return rs
}

// rpcPairLimit is the time one pair of processes may live: every
// measurement of one system at one size.
func rpcPairLimit(d time.Duration, callers int) time.Duration {
	return connectTimeout + time.Duration(callers+2)*(warmup(d)+d+allocWindow) + 20*time.Second
}

// RunRPC measures every system and payload size of opts: for each system
// and size a fresh pair of processes, the calling one (a driver, this
// program re-executed) and the server it starts, pinned as opts.CPUs says.
// The error reports invalid options or a cancelled ctx; a measurement that
// fails is reported in its result. Every process is gone and every file
// removed when RunRPC returns.
func RunRPC(ctx context.Context, opts RPCOptions) (*RPCReport, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	sweepStale()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", tempPrefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rep := &RPCReport{
		Machine: machineInfo(),
		Settings: RPCSettings{DurationNs: int64(opts.Duration), WarmupNs: int64(warmup(opts.Duration)),
			Systems: opts.Systems, Sizes: opts.Sizes, Callers: opts.Callers, CPUs: opts.CPUs},
		Results: []RPCResult{},
	}
	total := len(opts.Systems) * len(opts.Sizes)
	var callerList []string
	for _, c := range opts.Callers {
		callerList = append(callerList, strconv.Itoa(c))
	}
	if opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "%d process pairs (%d systems x %d sizes), each %d callers settings and a stream of %v each\n",
			total, len(opts.Systems), len(opts.Sizes), len(opts.Callers), warmup(opts.Duration)+opts.Duration)
	}
	step := 0
	for _, system := range opts.Systems {
		for _, size := range opts.Sizes {
			step++
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			pr := func(p string) {
				if opts.Progress != nil {
					fmt.Fprintf(opts.Progress, "[%d/%d] %s %d B %s\n", step, total, system, size, p)
				}
			}
			want := expected(system, size, opts.Callers)
			limit := rpcPairLimit(opts.Duration, len(want)) + driverGrace
			args := []string{"--role", rpcDriverRole, "--transport", system, "--size", strconv.Itoa(size),
				"--callers", strings.Join(callerList, ","), "--limit", limit.String(),
				"--duration", opts.Duration.String(), "--dir", dir, "--seq", strconv.Itoa(step),
				"--owner", strconv.Itoa(os.Getpid())}
			if len(opts.CPUs) == 2 {
				args = append(args, "--cpu", strconv.Itoa(opts.CPUs[0]), "--peer-cpu", strconv.Itoa(opts.CPUs[1]))
			}
			var got []RPCResult
			err := runChild(ctx, opts.Command, args, limit, pr, &got)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			for _, w := range want {
				r := w
				switch i := slices.IndexFunc(got, func(g RPCResult) bool {
					return g.System == w.System && g.Kind == w.Kind && g.Size == w.Size && g.Callers == w.Callers
				}); {
				case err != nil:
					r.Error = err.Error()
				case i < 0:
					r.Error = "driver: no result"
				default:
					r = got[i]
				}
				switch {
				case r.Error != "":
					pr(fmt.Sprintf("%s FAILED: %s", r.label(), r.Error))
				case r.Skipped != "":
					pr(fmt.Sprintf("%s skipped: %s", r.label(), r.Skipped))
				}
				rep.Results = append(rep.Results, r)
			}
		}
	}
	rep.Machine.LoadEnd = loadAvg()
	rep.ratios()
	rep.Targets = rep.checkTargets()
	return rep, nil
}

// label names the measurement of r: "unary, 8 callers", "stream".
func (r *RPCResult) label() string {
	if r.Kind == KindStream {
		return "stream"
	}
	if r.Callers == 1 {
		return "unary, 1 caller"
	}
	return fmt.Sprintf("unary, %d callers", r.Callers)
}

// ratios fills in each one-caller unary result's p50 ratio to its ipc.Conn
// baseline.
func (rep *RPCReport) ratios() {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Kind != KindUnary || r.Callers != 1 || isConnSystem(r.System) || !r.OK() {
			continue
		}
		if b := rep.Find(connBaseline(r.System), KindUnary, r.Size, 1); b != nil && b.OK() && b.P50 > 0 {
			r.P50Ratio = round3(float64(r.P50) / float64(b.P50))
		}
	}
}
