package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ipcgo/ipc/internal/race"
)

// Defaults of `ipc race`: about two seconds on two CPUs.
const (
	defaultProcs = 4
	defaultIters = 3000000
)

func newRaceCmd() *cobra.Command {
	var (
		opts   race.Options
		modes  []string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "race [--procs N] [--iters M | --kill K] [--across nats://HOST:PORT] [--json]",
		Short: "Race processes on one shared counter, or kill mutex holders and recover",
		Long: `race starts N worker processes (this binary, re-executed) that share one
counter in a fresh segment and each add M to it, once per mode:

  none       plain read-modify-write: loses updates
  atomic     atomic add
  mutex      under a procsync.Mutex
  semaphore  under a procsync.Semaphore with one permit

It prints, per mode, the final counter, the updates lost and the wall time per
increment. With --kill K it runs the mutex mode instead while killing K lock
holders with SIGKILL, in the middle of their updates; each death must be
detected and repaired by another worker (rolled back from an intent record), so
that the counter equals the sum of the increments each worker committed. The
workers then run until the kills are done (iters is reported as 0).

With --across nats://HOST:PORT the workers share a counter in a JetStream
key-value bucket instead and coordinate through package dsync, as processes on
different machines would (modes none, mutex and semaphore: a dsync.Mutex, a
dsync.Semaphore of one permit); under a lock each write goes through a fence
(a conditional update that refuses a token older than the newest that wrote).
With --kill K each of the K lock holders is first paused (SIGSTOP) until
another worker has taken the lock over once its lease expired (--ttl), then
resumed, so that its late write meets the fence, and then killed with SIGKILL.
The run's buckets are deleted when race ends.

The exit status is 1 if a synchronised mode lost an update, the counter is
inconsistent, a death was not recovered, or a late write was accepted. The segment (ipc-race-<pid>) is
removed and the workers are killed when race ends, also on SIGINT or SIGTERM.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, other := range []string{"iters", "modes"} {
				if cmd.Flags().Changed("kill") && cmd.Flags().Changed(other) {
					return usageError{fmt.Errorf("--kill runs the mutex mode until the kills are done: it takes no --%s", other)}
				}
			}
			if len(modes) > 0 {
				opts.Modes = modes
			}
			res, err := race.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(out, res); err != nil {
					return err
				}
			} else {
				printRace(out, res)
			}
			if err := res.Check(); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "ipc: race: FAILED: %v\n", err)
				return silentError{err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&opts.Procs, "procs", "n", defaultProcs, "worker processes")
	f.IntVarP(&opts.Iters, "iters", "m", defaultIters, "increments per worker and mode")
	f.IntVar(&opts.Kill, "kill", 0, "kill `K` lock holders (mutex mode only)")
	f.StringSliceVar(&modes, "modes", nil, "modes to run (default "+strings.Join(race.Modes, ",")+"; with --across "+strings.Join(race.AcrossModes(), ",")+")")
	f.DurationVar(&opts.Delay, "delay", 25*time.Microsecond, "busy delay between the steps of an update in --kill mode")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.StringVar(&opts.Across, "across", "", "run the workers through dsync on the NATS server(s) at `URL`")
	f.DurationVar(&opts.TTL, "ttl", time.Second, "dsync lease TTL with --across (whole seconds)")
	f.BoolVar(&opts.NoRepair, "no-repair", false, "in --kill mode, do not roll back a dead holder's half-done update (the check must then fail)")
	_ = f.MarkHidden("no-repair")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func printRace(w io.Writer, r *race.Result) {
	if r.Across != "" {
		fmt.Fprintf(w, "across %s: a counter in JetStream key-value, locks from dsync\n", r.Across)
	}
	if r.Kill == nil {
		fmt.Fprintf(w, "%s x %d increments = %d expected per mode\n\n", plural(r.Procs, "process", "processes"), r.Iters, r.Expected)
	} else {
		d := r.KillDetail
		how := "killed with SIGKILL"
		if r.Across != "" {
			how = "paused past their leases, resumed, then killed with SIGKILL"
		}
		fmt.Fprintf(w, "mutex mode, %s, %s %s\n", plural(r.Procs, "process", "processes"),
			plural(r.Kill.Kills, "lock holder", "lock holders"), how)
		if d != nil {
			fmt.Fprintf(w, "(%d kills sent, %d missed the holder; %d half-done updates rolled back; %d worker processes in all; %v)\n",
				d.Attempts, d.Misses, d.Rollbacks, d.Workers, d.Wall.Round(time.Millisecond))
		}
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	refused := ""
	if r.Across != "" {
		refused = "REFUSED\t"
	}
	fmt.Fprintln(tw, "MODE\tEXPECTED\tFINAL\tLOST\t"+refused+"NS/OP\tRESULT\t")
	for _, m := range r.Modes {
		verdict := "ok"
		switch {
		case !race.Synchronised(m.Mode) && m.Lost > 0:
			verdict = "lost updates (as expected)"
		case !race.Synchronised(m.Mode):
			verdict = "no loss this time"
		case m.Lost != 0 || m.Final != r.Expected:
			verdict = "FAIL"
		}
		if r.Across != "" {
			refused = fmt.Sprintf("%d\t", m.Refused)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s%.1f\t%s\t\n", m.Mode, r.Expected, m.Final, m.Lost, refused, m.NsPerOp, verdict)
	}
	tw.Flush()
	if k := r.Kill; k != nil {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KILLS\tRECOVERED\tDETECT P50\tDETECT MAX\tFINAL\tEXPECTED\tRESULT\t")
		verdict := "ok: every death recovered, counter consistent"
		if r.Check() != nil {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%d\t%d\t%.2f ms\t%.2f ms\t%d\t%d\t%s\t\n",
			k.Kills, k.Recovered, k.DetectMsP50, k.DetectMsMax, k.Final, k.Expected, verdict)
		tw.Flush()
		if r.Across != "" {
			fmt.Fprintf(w, "\nlate writes of resumed holders: %d refused by the fence, %d accepted; %d had written before the pause\n",
				k.LateRefused, k.StaleAccepted, k.LateAfterWrite)
			fmt.Fprintln(w, "(DETECT: from the pause to the first write of the next holder, about one TTL)")
		}
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
