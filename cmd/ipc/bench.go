package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ipcgo/ipc/internal/bench"
)

func newBenchCmd() *cobra.Command {
	var (
		opts       bench.Options
		transports []string
		common     benchFlags
	)
	cmd := &cobra.Command{
		Use:   "bench [--transports LIST] [--sizes LIST] [--duration D] [--json] [--report FILE.html]",
		Short: "Measure the latency and throughput of every transport",
		Long: `bench measures each message transport between two processes (this program
re-executed twice: the measuring end and its peer, a fresh pair for each
measurement, pinned to two CPUs by default): the round-trip latency (p50, p99, p99.9 from an HDR
histogram) and the one-way throughput (messages and bytes per second, counted
by the receiver), for each message size, one transport and size at a time,
after a warm-up.

Each transport runs right after its raw baseline: the same messages over the
same kind of descriptor with plain blocking read/write loops and no framing,
outside Go's network poller
(raw-pipe, raw-unix, raw-unixpacket, raw-tcp, raw-fifo, raw-posixmq), and for
shm the spin floor (raw-shmspin: two processes spinning on a shared page, and a
spinning ring for throughput). The table shows each framed transport's ratio to
its baseline, and checks the targets below it (PASS or MISS, as measured).

Pinned (--cpus, by default the first two CPUs this program may use), every
wake-up of a kernel transport crosses CPUs, which is what the spinning shm
transport avoids; with --cpus none the scheduler places the processes, and
often runs both ends of a ping-pong on one CPU, where a kernel hand-off is
cheap and spinning is not possible.

A transport that is not available on this system is reported as skipped.
Progress goes to stderr; --json prints one JSON object instead of the table;
--report writes a self-contained HTML page with charts. Other load on the
machine skews the numbers: the load average is reported with them.

The exit status is 1 if a measurement failed (not if a target is missed).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(transports) > 0 {
				opts.Transports = transports
			}
			var err error
			if opts.CPUs, opts.Sizes, err = common.parse(); err != nil {
				return err
			}
			if !common.quiet {
				opts.Progress = cmd.ErrOrStderr()
			}
			ctx, stop := benchContext(cmd.Context())
			defer stop()
			rep, err := bench.Run(ctx, opts)
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				return usageError{err}
			}
			var failed []string
			for _, r := range rep.Failed() {
				failed = append(failed, fmt.Sprintf("%s %d B failed: %s", r.Transport, r.Size, r.Error))
			}
			return common.finish(cmd, "bench", rep, func(w io.Writer) error { return bench.WriteTable(w, rep) },
				func(w io.Writer) error { return bench.WriteHTML(w, rep, time.Now()) }, nil, failed)
		},
	}
	cmd.AddCommand(newBenchMQCmd())
	f := cmd.Flags()
	f.StringSliceVar(&transports, "transports", nil, "transports to measure (default "+strings.Join(bench.Transports, ",")+"); baselines may be named too")
	f.DurationVar(&opts.Duration, "duration", 2*time.Second, "how long each measurement runs, after its warm-up")
	f.IntVar(&opts.MaxRoundTrips, "max-round-trips", 1_000_000, "end a latency measurement after this many round trips")
	f.BoolVar(&opts.NoBaselines, "no-baselines", false, "do not run the raw baselines")
	common.add(cmd, "message sizes in bytes, with an optional K or M suffix (default 64,4096,65536,1048576)",
		"pin the measuring process and its peer to these two CPUs (`A,B`); auto: the first two this program may use; none: do not pin")
	cmd.AddCommand(newBenchRPCCmd())
	return cmd
}

// benchContext returns a context that a reader going away (ipc bench |
// head) cancels: the run must not be killed by SIGPIPE before it has
// stopped its processes and removed its files.
func benchContext(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	go func() {
		select {
		case <-pipe:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(pipe); cancel() }
}

func newBenchRPCCmd() *cobra.Command {
	var (
		opts    bench.RPCOptions
		systems []string
		callers []int
		svg     string
		from    string
		common  benchFlags
	)
	cmd := &cobra.Command{
		Use:   "rpc [--systems LIST] [--sizes LIST] [--callers LIST] [--duration D] [--json] [--report FILE.html] [--svg FILE.svg]",
		Short: "Measure rpc unary calls and server streams against grpc-go, net/rpc and the raw round trip",
		Long: `bench rpc measures package rpc between two processes, pinned as the transport
benchmarks are (--cpus): a client process (this program re-executed) and the
server it starts, a fresh pair for each system and payload size. For each it
measures unary calls of grpc.testing.TestService/UnaryCall with protobuf
payloads of each size (p50 and p99 latency from an HDR histogram, calls/s of
all callers together) with each number of concurrent callers on one client
connection, the allocations of the calling process per call (one caller), and
the messages/s of a server stream (StreamingOutputCall) of messages of that
size.

Systems: rpc-shm and rpc-unix (package rpc), and the baselines of the same run:
grpc-unix (grpc-go, HTTP/2, over a Unix socket), grpc-ipc-shm (grpc-go over ipc
shm byte streams), netrpc-unix (net/rpc over a Unix socket, the same protobuf
messages as bytes), conn-shm and conn-unix (the raw ipc.Conn round trip of the
payload's bytes, one caller). The targets are checked below the table (PASS or
MISS, as measured in this run).

--json prints one JSON object instead of the tables; --report writes a
self-contained HTML page, --svg the charts as one SVG image; --from FILE
shows a run saved with --json instead of measuring. The exit status
is 1 if a measurement failed (not if a target is missed).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(systems) > 0 {
				opts.Systems = systems
			}
			if len(callers) > 0 {
				opts.Callers = callers
			}
			var err error
			if opts.CPUs, opts.Sizes, err = common.parse(); err != nil {
				return err
			}
			if !common.quiet {
				opts.Progress = cmd.ErrOrStderr()
			}
			var rep *bench.RPCReport
			if from != "" {
				if rep, err = readRPCReport(from); err != nil {
					return err
				}
			} else {
				ctx, stop := benchContext(cmd.Context())
				defer stop()
				if rep, err = bench.RunRPC(ctx, opts); err != nil {
					if ctx.Err() != nil {
						return err
					}
					return usageError{err}
				}
			}
			var failed []string
			for _, r := range rep.Failed() {
				failed = append(failed, fmt.Sprintf("%s %d B %s failed: %s", r.System, r.Size, r.Kind, r.Error))
			}
			var svgFile *outFile
			if svg != "" {
				svgFile = &outFile{svg, func(w io.Writer) error { return bench.WriteRPCSVG(w, rep) }}
			}
			return common.finish(cmd, "bench rpc", rep, func(w io.Writer) error { return bench.WriteRPCTable(w, rep) },
				func(w io.Writer) error { return bench.WriteRPCHTML(w, rep, time.Now()) }, svgFile, failed)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&systems, "systems", nil, "systems to measure (default "+strings.Join(bench.RPCSystems, ",")+")")
	f.IntSliceVar(&callers, "callers", nil, "numbers of concurrent callers (default 1,8,64)")
	f.DurationVar(&opts.Duration, "duration", time.Second, "how long each measurement runs, after its warm-up (100ms for a quick look)")
	f.StringVar(&svg, "svg", "", "write the charts as an SVG image to `FILE`")
	f.StringVar(&from, "from", "", "measure nothing: show the results of an earlier run, the --json output saved in `FILE`")
	common.add(cmd, "payload sizes in bytes, with an optional K or M suffix (default 64,4096)",
		"pin the client process and the server to these two CPUs (`A,B`); auto: the first two this program may use; none: do not pin")
	return cmd
}

// benchFlags are the flags both bench commands have.
type benchFlags struct {
	sizes         []string
	cpus, report  string
	asJSON, quiet bool
}

func (c *benchFlags) add(cmd *cobra.Command, sizesHelp, cpusHelp string) {
	f := cmd.Flags()
	f.StringSliceVar(&c.sizes, "sizes", nil, sizesHelp)
	f.BoolVar(&c.asJSON, "json", false, "print one JSON object")
	f.StringVar(&c.report, "report", "", "write an HTML report to `FILE`")
	f.BoolVarP(&c.quiet, "quiet", "q", false, "no progress on stderr")
	f.StringVar(&c.cpus, "cpus", "auto", cpusHelp)
}

// parse returns the pinning and the sizes (nil: the defaults), or a usage
// error.
func (c *benchFlags) parse() (cpus, sizes []int, err error) {
	if cpus, err = parseCPUs(c.cpus); err != nil {
		return nil, nil, usageError{err}
	}
	for _, s := range c.sizes {
		n, err := parseSize(s)
		if err != nil {
			return nil, nil, usageError{err}
		}
		sizes = append(sizes, n)
	}
	return cpus, sizes, nil
}

// outFile is a file a command writes besides its output.
type outFile struct {
	path  string
	write func(io.Writer) error
}

// finish prints rep (JSON or table), writes the report and extra file, if
// asked for, and turns failed measurements into the exit status.
func (c *benchFlags) finish(cmd *cobra.Command, name string, rep any, table, page func(io.Writer) error,
	extra *outFile, failed []string) error {
	out := cmd.OutOrStdout()
	var err error
	if c.asJSON {
		err = writeJSON(out, rep)
	} else {
		err = table(out)
	}
	if err != nil {
		return err
	}
	files := []outFile{{c.report, page}}
	if extra != nil {
		files = append(files, *extra)
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if err := writeFile(f.path, f.write); err != nil {
			return err
		}
		if !c.quiet {
			fmt.Fprintf(cmd.ErrOrStderr(), "written to %s\n", f.path)
		}
	}
	for _, f := range failed {
		fmt.Fprintf(cmd.ErrOrStderr(), "ipc: %s: %s\n", name, f)
	}
	if len(failed) > 0 {
		return silentError{fmt.Errorf("%d measurements failed", len(failed))}
	}
	return nil
}

// readRPCReport reads the --json output of an earlier `ipc bench rpc`.
func readRPCReport(path string) (*bench.RPCReport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep bench.RPCReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: not the JSON output of ipc bench rpc: %w", path, err)
	}
	if len(rep.Results) == 0 || len(rep.Settings.Sizes) == 0 || len(rep.Settings.Systems) == 0 {
		return nil, fmt.Errorf("%s: not the JSON output of ipc bench rpc: no results", path)
	}
	return &rep, nil
}

// writeFile creates path and writes it with write.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// parseCPUs reads the --cpus flag.
func parseCPUs(s string) ([]int, error) {
	switch strings.TrimSpace(s) {
	case "auto":
		return bench.DefaultCPUs(), nil
	case "none", "":
		return nil, nil
	}
	a, b, ok := strings.Cut(s, ",")
	x, err1 := strconv.Atoi(strings.TrimSpace(a))
	y, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || x < 0 || y < 0 {
		return nil, fmt.Errorf("bad --cpus %q: want two CPU numbers (e.g. 0,1), auto or none", s)
	}
	return []int{x, y}, nil
}

// parseSize reads a message size: a number of bytes, or one with a K or M
// suffix (KiB, MiB).
func parseSize(s string) (int, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	mult := 1
	for _, suf := range []struct {
		s string
		m int
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}, {"B", 1}} {
		if strings.HasSuffix(t, suf.s) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, suf.s)), suf.m
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 1 || n > bench.MaxSize/mult {
		return 0, fmt.Errorf("bad message size %q: want a number of bytes in [1, %d], e.g. 64, 4K, 1M", s, bench.MaxSize)
	}
	return n * mult, nil
}

func writeReport(path string, rep *bench.Report) error {
	return writeFile(path, func(w io.Writer) error { return bench.WriteHTML(w, rep, time.Now()) })
}
