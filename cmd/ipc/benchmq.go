package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ipcgo/ipc/internal/mqbench"
)

func newBenchMQCmd() *cobra.Command {
	var (
		opts                  mqbench.Options
		systems, syncs, sizes []string
		producers, consumers  []string
		asJSON, quiet         bool
		svg, from             string
	)
	cmd := &cobra.Command{
		Use:   "mq [--short] [--json] [--svg FILE]",
		Short: "Measure the message queues of package mq against NATS JetStream",
		Long: `bench mq measures package mq's local backend across processes, next to NATS
JetStream (the real nats-server in a child process, its store on the same
disk, at the same durability: sync_interval always against SyncAlways, the
same interval against SyncEvery), in one run:

  publish      messages/s with 1 and 4 producer processes at 64 B and 1 KiB
               under each durability policy;
  consume+ack  messages/s with 1 and 4 consumer processes draining the stream;
  latency      publish→deliver p50/p99 to an idle consumer waiting.

It prints the table and the targets (PASS or FAIL with the ratio measured):
the local backend at least 5× JetStream's messages/s at equal durability for
publish and consume+ack; p50 under 20 µs with SyncNone; with SyncAlways, 4
producers at least 4× the single producer's rate (group commit). Progress
goes to stderr; --json prints one JSON object; --svg writes a chart. The
stores live in --dir (default the temporary directory): its file system and
disk are reported. --short runs a smaller matrix in seconds.

The exit status is 1 if a measurement failed (not if a target is missed).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Systems, opts.Syncs = nilIfEmpty(systems), nilIfEmpty(syncs)
			var err error
			if opts.Sizes, err = intList(sizes, parseSize); err != nil {
				return usageError{err}
			}
			count := func(s string) (int, error) {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil {
					return 0, fmt.Errorf("bad process count %q", s)
				}
				return n, nil
			}
			if opts.Producers, err = intList(producers, count); err != nil {
				return usageError{err}
			}
			if opts.Consumers, err = intList(consumers, count); err != nil {
				return usageError{err}
			}
			if !quiet {
				opts.Progress = cmd.ErrOrStderr()
			}
			ctx := cmd.Context()
			var rep *mqbench.Report
			if from != "" {
				b, err := os.ReadFile(from)
				if err != nil {
					return err
				}
				rep = &mqbench.Report{}
				if err := json.Unmarshal(b, rep); err != nil {
					return fmt.Errorf("%s: not the JSON of ipc bench mq: %w", from, err)
				}
			} else if rep, err = mqbench.Run(ctx, opts); err != nil {
				if ctx.Err() != nil {
					return err
				}
				return usageError{err}
			}
			if err := writeJSONOr(cmd.OutOrStdout(), asJSON, rep, func(w io.Writer) error { return mqbench.WriteTable(w, rep) }); err != nil {
				return err
			}
			if svg != "" {
				if err := writeFile(svg, func(w io.Writer) error { return mqbench.WriteSVG(w, rep) }); err != nil {
					return err
				}
			}
			if failed := rep.Failed(); len(failed) > 0 {
				return silentError{fmt.Errorf("%d measurements failed", len(failed))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&systems, "systems", nil, "systems to measure: local, jetstream, mq-nats (default local,jetstream)")
	f.StringSliceVar(&syncs, "syncs", nil, "durability policies: always, every, none (default all)")
	f.DurationVar(&opts.Every, "every", 0, "the interval of SyncEvery and of JetStream's sync_interval against it (default 2m, JetStream's default)")
	f.StringSliceVar(&sizes, "sizes", nil, "publish message sizes (default 64,1K; consume and latency use the first)")
	f.StringSliceVar(&producers, "producers", nil, "producer process counts (default 1,4)")
	f.StringSliceVar(&consumers, "consumers", nil, "consumer process counts (default 1,4)")
	f.DurationVar(&opts.Duration, "duration", 0, "the window of each measurement, after a warm-up (default 2s; --short 200ms)")
	f.BoolVar(&opts.Short, "short", false, "a small matrix in seconds (the first size, 200ms windows)")
	f.StringVar(&opts.Dir, "dir", "", "where the stores live (default the temporary directory)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.StringVar(&svg, "svg", "", "write a chart of the messages/s to `FILE.svg`")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	f.StringVar(&from, "from", "", "measure nothing: print (and chart) the report of an earlier run's --json output `FILE`")
	return cmd
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// intList parses a list flag; nil when empty.
func intList(s []string, parse func(string) (int, error)) ([]int, error) {
	var out []int
	for _, v := range s {
		n, err := parse(v)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// writeJSONOr writes v as JSON with asJSON, else with table.
func writeJSONOr(w io.Writer, asJSON bool, v any, table func(io.Writer) error) error {
	if asJSON {
		return writeJSON(w, v)
	}
	return table(w)
}
