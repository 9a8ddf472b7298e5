package mqbench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ipcgo/ipc/internal/bench"
)

// The targets.
const (
	// JetStreamFactor: the local backend's messages/s at least this many
	// times JetStream's at equal durability, for publish and consume+ack.
	JetStreamFactor = 5.0
	// LatencyP50 bounds the local backend's publish→deliver p50 under
	// SyncNone.
	LatencyP50 = 20 * time.Microsecond
	// GroupCommitFactor: under SyncAlways, 4 producers publish at least
	// this many times the single producer's rate (group commit).
	GroupCommitFactor = 4.0
)

// Target statuses.
const (
	Pass = "PASS"
	Fail = "FAIL"
	NA   = "N/A"
)

func verdict(ok bool) string {
	if ok {
		return Pass
	}
	return Fail
}

// why says why a result cannot be compared, or "".
func why(r *Result, label string) string {
	switch {
	case r == nil:
		return label + " not measured"
	case r.Skipped != "":
		return label + " skipped"
	case r.Error != "":
		return label + " failed"
	case r.MsgsPerS == 0 && r.P50Ns == 0:
		return label + " measured nothing"
	}
	return ""
}

// whyEither joins the reasons that are not "".
func whyEither(a, b string) string {
	if a != "" && b != "" {
		return a + "; " + b
	}
	return a + b
}

func (rep *Report) checkTargets() []bench.Target {
	ts := []bench.Target{}
	s := rep.Settings
	ratioTarget := func(kind, sync string, procs, size int) {
		l := rep.Find(kind, Local, sync, procs, size)
		j := rep.Find(kind, JetStream, sync, procs, size)
		name := fmt.Sprintf("%s, sync %s, %d %s, %s: local ≥ %g× JetStream", kindWord(kind), sync, procs,
			procWord(kind, procs), sizeLabel(size), JetStreamFactor)
		t := bench.Target{Name: name, Limit: JetStreamFactor, Status: NA}
		if w := whyEither(why(l, "local"), why(j, "jetstream")); w != "" {
			t.Detail = w
		} else {
			t.Value = round3(l.MsgsPerS / j.MsgsPerS)
			t.Status = verdict(t.Value >= JetStreamFactor)
			t.Detail = fmt.Sprintf("%s vs %s msg/s", rate(l.MsgsPerS), rate(j.MsgsPerS))
		}
		ts = append(ts, t)
	}
	for _, sync := range []string{SyncAlways, SyncEvery} {
		if !contains(s.Syncs, sync) || !contains(s.Systems, Local) || !contains(s.Systems, JetStream) {
			continue
		}
		for _, size := range s.Sizes {
			for _, n := range s.Producers {
				ratioTarget(KindPublish, sync, n, size)
			}
		}
		for _, n := range s.Consumers {
			ratioTarget(KindConsume, sync, n, s.Sizes[0])
		}
	}
	if contains(s.Syncs, SyncNone) && contains(s.Systems, Local) {
		l := rep.Find(KindLatency, Local, SyncNone, 1, s.Sizes[0])
		t := bench.Target{Name: fmt.Sprintf("latency, sync none: local publish→deliver p50 < %v", LatencyP50),
			Limit: float64(LatencyP50.Nanoseconds()), Status: NA}
		if w := why(l, "local"); w != "" {
			t.Detail = w
		} else {
			t.Value = float64(l.P50Ns)
			t.Status = verdict(time.Duration(l.P50Ns) < LatencyP50)
			t.Detail = fmt.Sprintf("p50 %v, p99 %v", time.Duration(l.P50Ns), time.Duration(l.P99Ns))
		}
		ts = append(ts, t)
	}
	if contains(s.Syncs, SyncAlways) && contains(s.Systems, Local) && contains(s.Producers, 1) && contains(s.Producers, 4) {
		for _, size := range s.Sizes {
			one := rep.Find(KindPublish, Local, SyncAlways, 1, size)
			four := rep.Find(KindPublish, Local, SyncAlways, 4, size)
			t := bench.Target{Name: fmt.Sprintf("group commit, sync always, %s: local 4 producers ≥ %g× 1 producer",
				sizeLabel(size), GroupCommitFactor), Limit: GroupCommitFactor, Status: NA}
			if w := whyEither(why(one, "1 producer"), why(four, "4 producers")); w != "" {
				t.Detail = w
			} else {
				t.Value = round3(four.MsgsPerS / one.MsgsPerS)
				t.Status = verdict(t.Value >= GroupCommitFactor)
				t.Detail = fmt.Sprintf("%s vs %s msg/s", rate(four.MsgsPerS), rate(one.MsgsPerS))
			}
			ts = append(ts, t)
		}
	}
	return ts
}

func contains[T comparable](s []T, x T) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func kindWord(kind string) string {
	if kind == KindConsume {
		return "consume+ack"
	}
	return kind
}

func procWord(kind string, n int) string {
	w := "producer"
	if kind == KindConsume {
		w = "consumer"
	}
	if n != 1 {
		w += "s"
	}
	return w
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

func sizeLabel(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// rate writes messages/s in a short form.
func rate(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}

// cell writes a result's rate, or why there is none.
func cell(r *Result) string {
	switch {
	case r == nil:
		return "-"
	case r.Skipped != "":
		return "skipped"
	case r.Error != "":
		return "FAILED"
	}
	s := rate(r.MsgsPerS)
	if r.Kind == KindConsume && !r.Drained {
		s += "*"
	}
	return s
}

func ratioCell(a, b *Result) string {
	if why(a, "") != "" || why(b, "") != "" {
		return ""
	}
	return fmt.Sprintf("%.2f×", a.MsgsPerS/b.MsgsPerS)
}

func dur(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d >= time.Microsecond:
		return fmt.Sprintf("%.1f µs", float64(d)/1e3)
	}
	return d.String()
}

// WriteTable writes rep as text tables: publish, consume+ack, latency,
// targets.
func WriteTable(w io.Writer, rep *Report) error {
	s := rep.Settings
	fmt.Fprintf(w, "machine: %s\n", rep.Machine.MachineLine())
	if l := rep.Machine.LoadLine(); l != "" {
		fmt.Fprintf(w, "%s\n", l)
	}
	fmt.Fprintf(w, "disk: %s\n", rep.Disk.Line())
	fmt.Fprintf(w, "each measurement: %v warm-up, then %v; SyncEvery and JetStream's sync_interval: %v\n\n",
		time.Duration(s.WarmupNs), time.Duration(s.WindowNs), time.Duration(s.EveryNs))
	cmp := contains(s.Systems, Local) && contains(s.Systems, JetStream)
	header := func(tw io.Writer, first string) {
		fmt.Fprint(tw, first)
		for _, sys := range s.Systems {
			fmt.Fprintf(tw, "\t%s", sys)
		}
		if cmp {
			fmt.Fprint(tw, "\tlocal/jetstream")
		}
		fmt.Fprintln(tw, "\t")
	}
	row := func(tw io.Writer, kind, sync string, n, size int, first string) {
		fmt.Fprint(tw, first)
		for _, sys := range s.Systems {
			fmt.Fprintf(tw, "\t%s", cell(rep.Find(kind, sys, sync, n, size)))
		}
		if cmp {
			fmt.Fprintf(tw, "\t%s", ratioCell(rep.Find(kind, Local, sync, n, size), rep.Find(kind, JetStream, sync, n, size)))
		}
		fmt.Fprintln(tw, "\t")
	}
	fmt.Fprintln(w, "PUBLISH, messages/s (each producer process publishes one message at a time, acknowledged once durable)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header(tw, "sync\tsize\tproducers")
	for _, sync := range s.Syncs {
		for _, size := range s.Sizes {
			for _, n := range s.Producers {
				row(tw, KindPublish, sync, n, size, fmt.Sprintf("%s\t%s\t%d", sync, sizeLabel(size), n))
			}
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nCONSUME+ACK, messages/s (%s, a new group drains the stream; * the window ended first)\n", sizeLabel(s.Sizes[0]))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header(tw, "sync\tconsumers")
	for _, sync := range s.Syncs {
		for _, n := range s.Consumers {
			row(tw, KindConsume, sync, n, s.Sizes[0], fmt.Sprintf("%s\t%d", sync, n))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nLATENCY publish→deliver (%s, one message every %v to an idle consumer)\n", sizeLabel(s.Sizes[0]), time.Duration(s.GapNs))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "sync\tsystem\tp50\tp99\tmax\tsamples\t")
	for _, sync := range s.Syncs {
		for _, sys := range s.Systems {
			r := rep.Find(KindLatency, sys, sync, 1, s.Sizes[0])
			switch {
			case r == nil:
				continue
			case !r.OK():
				fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\t\n", sync, sys, cell(r))
			default:
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t\n", sync, sys, dur(r.P50Ns), dur(r.P99Ns), dur(r.MaxNs), r.Messages)
			}
		}
	}
	tw.Flush()
	if len(rep.Targets) > 0 {
		fmt.Fprintln(w, "\nTARGETS")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range rep.Targets {
			v := ""
			if t.Status != NA {
				if strings.HasPrefix(t.Name, "latency") {
					v = dur(int64(t.Value))
				} else {
					v = fmt.Sprintf("%.2f×", t.Value)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Status, t.Name, v, t.Detail)
		}
		tw.Flush()
	}
	var notes []string
	for _, r := range rep.Results {
		if r.Error != "" {
			notes = append(notes, fmt.Sprintf("%s %s sync=%s %s: %s", r.Kind, r.System, r.Sync, procsLabel(&r), r.Error))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nFAILED")
		for _, n := range notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
	return nil
}

// svgColors are the colors of the systems' bars.
var svgColors = map[string]string{Local: "#2b6cb0", JetStream: "#c05621", MQNATS: "#6b46c1"}

// systemLabels name the systems in the chart's legend.
var systemLabels = map[string]string{Local: "local (package mq, file://)", JetStream: "jetstream (nats.go, the baseline)",
	MQNATS: "mq-nats (package mq, nats://)"}

// WriteSVG writes a bar chart (log scale) of the messages/s of every
// publish and consume+ack measurement, one bar per system, with the
// machine and the disk in its caption.
func WriteSVG(w io.Writer, rep *Report) error {
	type group struct {
		label string
		rs    []*Result
	}
	s := rep.Settings
	var groups []group
	add := func(kind, sync string, n, size int) {
		g := group{label: fmt.Sprintf("%s %s %d×%s", kindWord(kind), sync, n, sizeLabel(size))}
		for _, sys := range s.Systems {
			if r := rep.Find(kind, sys, sync, n, size); r != nil {
				g.rs = append(g.rs, r)
			}
		}
		if len(g.rs) > 0 {
			groups = append(groups, g)
		}
	}
	for _, sync := range s.Syncs {
		for _, size := range s.Sizes {
			for _, n := range s.Producers {
				add(KindPublish, sync, n, size)
			}
		}
		for _, n := range s.Consumers {
			add(KindConsume, sync, n, s.Sizes[0])
		}
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, g := range groups {
		for _, r := range g.rs {
			if r.OK() && r.MsgsPerS > 0 {
				lo, hi = min(lo, r.MsgsPerS), max(hi, r.MsgsPerS)
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	d0, d1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if d1 <= d0 {
		d1 = d0 + 1
	}
	const left, width, bar, gap, top = 230, 560, 11, 9, 64
	x := func(v float64) float64 { return left + (math.Log10(v)-d0)/(d1-d0)*width }
	rows := 0
	for _, g := range groups {
		rows += len(g.rs)
	}
	h := top + rows*bar + len(groups)*gap + 70
	var b strings.Builder
	e := html.EscapeString
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		left+width+90, h, left+width+90, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="18" font-size="14" font-weight="bold">ipc bench mq: messages/s (log scale), package mq vs NATS JetStream, same disk, same durability</text>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="34" fill="#555">%s</text>`+"\n", e(rep.Machine.MachineLine()))
	fmt.Fprintf(&b, `<text x="10" y="48" fill="#555">disk: %s; %s</text>`+"\n", e(rep.Disk.Line()), e(rep.Machine.LoadLine()))
	for p := d0; p <= d1; p++ {
		xx := x(math.Pow(10, p))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", xx, top-4, xx, h-50)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", xx, h-38, rate(math.Pow(10, p)))
	}
	y := top
	for _, g := range groups {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-6, y+bar*len(g.rs)/2+4, e(g.label))
		for _, r := range g.rs {
			if r.OK() && r.MsgsPerS > 0 {
				fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", left, y, x(r.MsgsPerS)-left, bar-1, svgColors[r.System])
				fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="9">%s</text>`+"\n", x(r.MsgsPerS)+3, y+bar-2, rate(r.MsgsPerS))
			} else {
				fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="9" fill="#b3261e">%s: %s</text>`+"\n", left+3, y+bar-2, r.System, cell(r))
			}
			y += bar
		}
		y += gap
	}
	lx := left
	for _, sys := range s.Systems {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", lx, h-22, svgColors[sys], lx+14, h-13, e(systemLabels[sys]))
		lx += 200
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
