package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// ns writes a duration in nanoseconds with a unit that suits it.
func ns(v int64) string {
	d := float64(v)
	switch {
	case v < 1000:
		return fmt.Sprintf("%d ns", v)
	case v < 10_000:
		return fmt.Sprintf("%.2f µs", d/1e3)
	case v < 1_000_000:
		return fmt.Sprintf("%.1f µs", d/1e3)
	case v < 10_000_000:
		return fmt.Sprintf("%.2f ms", d/1e6)
	case v < 1_000_000_000:
		return fmt.Sprintf("%.1f ms", d/1e6)
	}
	return fmt.Sprintf("%.2f s", d/1e9)
}

// rate writes a count per second with a decimal prefix.
func rate(x float64) string {
	switch {
	case x >= 1e9:
		return fmt.Sprintf("%.2f G", x/1e9)
	case x >= 1e6:
		return fmt.Sprintf("%.2f M", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1f k", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}

// bytesRate writes bytes per second in decimal units.
func bytesRate(x float64) string {
	switch {
	case x >= 1e9:
		return fmt.Sprintf("%.2f GB/s", x/1e9)
	case x >= 1e6:
		return fmt.Sprintf("%.1f MB/s", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1f kB/s", x/1e3)
	}
	return fmt.Sprintf("%.0f B/s", x)
}

// MachineLine describes the machine in one line.
func (m Machine) MachineLine() string {
	s := fmt.Sprintf("%s, %d CPUs, %s/%s, kernel %s, %s", m.CPU, m.NCPU, m.OS, m.Arch, m.Kernel, m.Go)
	if m.Hostname != "" {
		s += ", host " + m.Hostname
	}
	return s
}

// LoadLine describes the load of the machine around the run.
func (m Machine) LoadLine() string {
	if m.LoadStart == "" {
		return ""
	}
	s := "load average " + m.LoadStart + " at the start"
	if m.LoadEnd != "" {
		s += ", " + m.LoadEnd + " at the end"
	}
	return s + " (1, 5, 15 min)"
}

// Busy returns a warning when the machine was busy as the run started (a
// 1-minute load average above half its CPUs): the other load then skews
// the numbers, spinning ones most.
func (m Machine) Busy() string {
	f := strings.Fields(m.LoadStart)
	if len(f) == 0 || m.NCPU == 0 {
		return ""
	}
	load, err := strconv.ParseFloat(f[0], 64)
	if err != nil || load <= float64(m.NCPU)/2 {
		return ""
	}
	return fmt.Sprintf("WARNING: the machine was busy (load %.2f on %d CPUs): other processes skew these numbers, "+
		"the spinning ones (raw-shmspin, shm) most, since a spinner needs a CPU of its own", load, m.NCPU)
}

// SettingsLine describes how each measurement ran.
func (s Settings) SettingsLine() string {
	where := "in this process and a peer, not pinned"
	switch {
	case s.Isolated && len(s.CPUs) == 2:
		where = fmt.Sprintf("in a fresh process pinned to CPU %d and its peer pinned to CPU %d", s.CPUs[0], s.CPUs[1])
	case s.Isolated:
		where = "in a fresh pair of processes, not pinned"
	}
	return fmt.Sprintf("each measurement %s: %v warm-up, then %v (round trips: at most %d)",
		where, time.Duration(s.WarmupNs), time.Duration(s.DurationNs), s.MaxRoundTrips)
}

func ratio(x float64) string {
	switch {
	case x == 0:
		return ""
	case x < 0.1:
		return fmt.Sprintf("%.2g×", x)
	}
	return fmt.Sprintf("%.2f×", x)
}

// WriteTable writes rep as a table for people, with the targets below it.
func WriteTable(w io.Writer, rep *Report) error {
	writeMachine(w, rep.Machine, rep.Settings.SettingsLine())
	var tb strings.Builder
	tw := tabwriter.NewWriter(&tb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TRANSPORT\tSIZE\tRTT P50\tRTT P99\tRTT P99.9\tMSG/S\tBYTES/S\tP50 VS RAW\tMSG/S VS RAW")
	prev := ""
	var notes []string
	for _, r := range rep.Results {
		group := strings.TrimPrefix(r.Transport, RawPrefix)
		if group == "shmspin" {
			group = "shm"
		}
		if prev != "" && group != prev {
			fmt.Fprintln(tw, strings.Repeat("\t", 8))
		}
		prev = group
		name := r.Transport
		switch {
		case r.Skipped != "":
			fmt.Fprintf(tw, "%s\t%s\tskipped\n", name, sizeLabel(r.Size))
			notes = append(notes, fmt.Sprintf("%s %s skipped: %s", name, sizeLabel(r.Size), r.Skipped))
			continue
		case r.Error != "":
			fmt.Fprintf(tw, "%s\t%s\tFAILED\n", name, sizeLabel(r.Size))
			notes = append(notes, fmt.Sprintf("%s %s FAILED: %s", name, sizeLabel(r.Size), r.Error))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, sizeLabel(r.Size),
			ns(r.RTTP50), ns(r.RTTP99), ns(r.RTTP999), rate(r.MsgsPerS), bytesRate(r.BytesPerS),
			ratio(r.RTTRatio), ratio(r.ThroughputRatio))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range strings.SplitAfter(tb.String(), "\n") {
		if t := strings.TrimRight(l, " \n"); t != "" || l != "" {
			fmt.Fprintln(w, t)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	fmt.Fprintln(w, "\nP50 VS RAW: framed p50 / raw p50 (lower is better); MSG/S VS RAW: framed / raw msg/s (higher is better).")
	return writeTargets(w, rep.Targets)
}

// writeMachine writes the lines on the machine, its load and the settings
// that start a table.
func writeMachine(w io.Writer, m Machine, settings string) {
	fmt.Fprintf(w, "machine: %s\n", m.MachineLine())
	if l := m.LoadLine(); l != "" {
		fmt.Fprintf(w, "%s\n", l)
	}
	if b := m.Busy(); b != "" {
		fmt.Fprintf(w, "%s\n", b)
	}
	fmt.Fprintf(w, "%s\n\n", settings)
}

// writeTargets writes the targets, if any, below a table.
func writeTargets(w io.Writer, targets []Target) error {
	if len(targets) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\ntargets:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range targets {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", t.Status, t.Name, t.Detail)
	}
	return tw.Flush()
}
