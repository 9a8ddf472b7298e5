package main

import (
	"context"
	"fmt"
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
	)
	cmd := &cobra.Command{
		Use:   "bench [--transports LIST] [--sizes LIST] [--duration D] [--json] [--report FILE.html]",
		Short: "Measure the latency and throughput of every transport",
		Long: `bench measures each message transport between two processes (this program
re-executed as its peer): the round-trip latency (p50, p99, p99.9 from an HDR
histogram) and the one-way throughput (messages and bytes per second, counted
by the receiver), for each message size, one transport and size at a time,
after a warm-up.

Each transport runs right after its raw baseline: the same messages over the
same kind of descriptor with plain blocking read/write loops and no framing
(raw-pipe, raw-unix, raw-unixpacket, raw-tcp, raw-fifo, raw-posixmq), and for
shm the spin floor (raw-shmspin: two processes spinning on a shared page, and a
spinning ring for throughput). The table shows each framed transport's ratio to
its baseline, and checks the targets below it (PASS or MISS, as measured).

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
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(out, rep); err != nil {
					return err
				}
			} else if err := bench.WriteTable(out, rep); err != nil {
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
	f := cmd.Flags()
	f.StringSliceVar(&transports, "transports", nil, "transports to measure (default "+strings.Join(bench.Transports, ",")+"); baselines may be named too")
	f.StringSliceVar(&sizes, "sizes", nil, "message sizes in bytes, with an optional K or M suffix (default 64,4096,65536,1048576)")
	f.DurationVar(&opts.Duration, "duration", 2*time.Second, "how long each measurement runs, after its warm-up")
	f.IntVar(&opts.MaxRoundTrips, "max-round-trips", 1_000_000, "end a latency measurement after this many round trips")
	f.BoolVar(&opts.NoBaselines, "no-baselines", false, "do not run the raw baselines")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.StringVar(&report, "report", "", "write an HTML report to `FILE`")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	return cmd
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
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := bench.WriteHTML(f, rep, time.Now()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
