package main

import (
	"context"
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
		sizes      []string
		asJSON     bool
		report     string
		quiet      bool
		cpus       string
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
			if opts.CPUs, err = parseCPUs(cpus); err != nil {
				return usageError{err}
			}
			for _, s := range sizes {
				n, err := parseSize(s)
				if err != nil {
					return usageError{err}
				}
				opts.Sizes = append(opts.Sizes, n)
			}
			if !quiet {
				opts.Progress = cmd.ErrOrStderr()
			}
			// A reader that goes away (ipc bench | head) must not kill the
			// run before it has stopped its peers and removed its files:
			// it ends the run instead.
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			pipe := make(chan os.Signal, 1)
			signal.Notify(pipe, syscall.SIGPIPE)
			defer signal.Stop(pipe)
			go func() {
				select {
				case <-pipe:
					cancel()
				case <-ctx.Done():
				}
			}()
			rep, err := bench.Run(ctx, opts)
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				return usageError{err}
			}
			if err := writeJSONOr(cmd.OutOrStdout(), asJSON, rep, func(w io.Writer) error { return bench.WriteTable(w, rep) }); err != nil {
				return err
			}
			if report != "" {
				if err := writeReport(report, rep); err != nil {
					return err
				}
				if !quiet {
					fmt.Fprintf(cmd.ErrOrStderr(), "report written to %s\n", report)
				}
			}
			if failed := rep.Failed(); len(failed) > 0 {
				for _, r := range failed {
					fmt.Fprintf(cmd.ErrOrStderr(), "ipc: bench: %s %d B failed: %s\n", r.Transport, r.Size, r.Error)
				}
				return silentError{fmt.Errorf("%d measurements failed", len(failed))}
			}
			return nil
		},
	}
	cmd.AddCommand(newBenchMQCmd())
	f := cmd.Flags()
	f.StringSliceVar(&transports, "transports", nil, "transports to measure (default "+strings.Join(bench.Transports, ",")+"); baselines may be named too")
	f.StringSliceVar(&sizes, "sizes", nil, "message sizes in bytes, with an optional K or M suffix (default 64,4096,65536,1048576)")
	f.DurationVar(&opts.Duration, "duration", 2*time.Second, "how long each measurement runs, after its warm-up")
	f.IntVar(&opts.MaxRoundTrips, "max-round-trips", 1_000_000, "end a latency measurement after this many round trips")
	f.BoolVar(&opts.NoBaselines, "no-baselines", false, "do not run the raw baselines")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.StringVar(&report, "report", "", "write an HTML report to `FILE`")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	f.StringVar(&cpus, "cpus", "auto", "pin the measuring process and its peer to these two CPUs (`A,B`); auto: the first two this program may use; none: do not pin")
	return cmd
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
	return writeFile(path, func(f *os.File) error { return bench.WriteHTML(f, rep, time.Now()) })
}
