package bench

import (
	"fmt"
	"html"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The targets of the rpc benchmarks, as ratios measured in one run.
const (
	RPCConnFactor  = 2.0  // rpc-shm 64 B p50 at most this × the conn-shm round trip
	RPCGRPCFactor  = 30.0 // rpc-shm 64 B p50 at least this many times lower than grpc-unix
	RPCCallsFactor = 10.0 // rpc-shm 64 B calls/s with 8 callers at least this × grpc-unix
	RPCUnixFactor  = 1.3  // rpc-unix p50 at most this × the conn-unix round trip
	rpcTargetSize  = 64
	rpcTargetCalls = 8
)

// need returns the result of system, kind, size and callers, or why it
// cannot be compared.
func (rep *RPCReport) need(system, kind string, size, callers int) (*RPCResult, string) {
	r := rep.Find(system, kind, size, callers)
	what := fmt.Sprintf("%s %s %s", system, sizeLabel(size), (&RPCResult{Kind: kind, Callers: callers}).label())
	switch {
	case r == nil:
		return nil, what + " not measured"
	case r.Skipped != "":
		return nil, what + " skipped: " + r.Skipped
	case r.Error != "":
		return nil, what + " failed"
	}
	return r, ""
}

func (rep *RPCReport) checkTargets() []Target {
	var ts []Target
	add := func(t Target, why string, f func() (float64, bool, string)) {
		if why != "" {
			t.Status, t.Detail = NA, why
		} else {
			var ok bool
			t.Value, ok, t.Detail = f()
			t.Status = verdict(ok)
		}
		ts = append(ts, t)
	}
	first := func(whys ...string) string {
		for _, w := range whys {
			if w != "" {
				return w
			}
		}
		return ""
	}
	n := rpcTargetSize
	rs, why1 := rep.need(RPCShm, KindUnary, n, 1)
	cs, why2 := rep.need(ConnShm, KindUnary, n, 1)
	add(Target{Name: "rpc-shm 64 B unary p50 at most 2× the raw ipc.Conn round trip (conn-shm)", Limit: RPCConnFactor},
		first(why1, why2), func() (float64, bool, string) {
			x := round3(float64(rs.P50) / float64(cs.P50))
			return x, x <= RPCConnFactor, fmt.Sprintf("%.2f× (rpc-shm %s, conn-shm %s)", x, ns(rs.P50), ns(cs.P50))
		})
	gs, why3 := rep.need(GRPCUnix, KindUnary, n, 1)
	add(Target{Name: "rpc-shm 64 B unary p50 at least 30× lower than grpc-go over a Unix socket", Limit: RPCGRPCFactor},
		first(why1, why3), func() (float64, bool, string) {
			x := round3(float64(gs.P50) / float64(rs.P50))
			return x, x >= RPCGRPCFactor, fmt.Sprintf("%.1f× (grpc-unix %s, rpc-shm %s)", x, ns(gs.P50), ns(rs.P50))
		})
	r8, why4 := rep.need(RPCShm, KindUnary, n, rpcTargetCalls)
	g8, why5 := rep.need(GRPCUnix, KindUnary, n, rpcTargetCalls)
	add(Target{Name: "rpc-shm 64 B calls/s with 8 callers at least 10× grpc-go over a Unix socket", Limit: RPCCallsFactor},
		first(why4, why5), func() (float64, bool, string) {
			x := round3(r8.CallsPerS / g8.CallsPerS)
			return x, x >= RPCCallsFactor, fmt.Sprintf("%.1f× (rpc-shm %s calls/s, grpc-unix %s calls/s)", x, rate(r8.CallsPerS), rate(g8.CallsPerS))
		})
	var parts, missing []string
	worst, ok := 0.0, true
	for _, size := range rep.Settings.Sizes {
		ru, w1 := rep.need(RPCUnix, KindUnary, size, 1)
		cu, w2 := rep.need(ConnUnix, KindUnary, size, 1)
		if w := first(w1, w2); w != "" {
			missing = append(missing, w)
			continue
		}
		x := float64(ru.P50) / float64(cu.P50)
		worst = max(worst, x)
		mark := ""
		if x > RPCUnixFactor {
			ok, mark = false, " MISS"
		}
		parts = append(parts, fmt.Sprintf("%s %.2f× (%s vs %s)%s", sizeLabel(size), x, ns(ru.P50), ns(cu.P50), mark))
	}
	why := ""
	if len(parts) == 0 {
		why = strings.Join(missing, "; ")
	}
	add(Target{Name: "rpc-unix unary p50 at most 1.3× the raw ipc.Conn round trip (conn-unix)", Limit: RPCUnixFactor},
		why, func() (float64, bool, string) {
			d := "rpc-unix/conn-unix p50: " + strings.Join(parts, ", ")
			if len(missing) > 0 {
				d += "; not compared: " + strings.Join(missing, "; ")
			}
			return round3(worst), ok, d
		})
	add(Target{Name: "rpc-shm fewer allocations per unary call than grpc-go (calling process, 64 B)"},
		first(why1, why3), func() (float64, bool, string) {
			return rs.ClientAllocs, rs.ClientAllocs < gs.ClientAllocs,
				fmt.Sprintf("rpc-shm %.1f, grpc-unix %.1f allocations per call", rs.ClientAllocs, gs.ClientAllocs)
		})
	return ts
}

// SettingsLine describes how each measurement ran.
func (s RPCSettings) SettingsLine() string {
	where := "a fresh client process and its server, not pinned"
	if len(s.CPUs) == 2 {
		where = fmt.Sprintf("a fresh client process pinned to CPU %d and its server pinned to CPU %d", s.CPUs[0], s.CPUs[1])
	}
	return fmt.Sprintf("each system and size in %s; each measurement %v warm-up, then %v",
		where, time.Duration(s.WarmupNs), time.Duration(s.DurationNs))
}

// byDisplay returns the results of kind in the order they are shown: size
// by size, system by system, callers in order.
func (rep *RPCReport) byDisplay(kind string) []RPCResult {
	var out []RPCResult
	for _, size := range rep.Settings.Sizes {
		for _, sys := range rep.Settings.Systems {
			for _, r := range rep.Results {
				if r.Kind == kind && r.Size == size && r.System == sys {
					out = append(out, r)
				}
			}
		}
	}
	return out
}

func allocs(x float64) string {
	if x == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f", x)
}

// WriteRPCTable writes rep as tables for people, with the targets below.
func WriteRPCTable(w io.Writer, rep *RPCReport) error {
	writeMachine(w, rep.Machine, rep.Settings.SettingsLine())
	var notes []string
	note := func(r RPCResult) bool {
		switch {
		case r.Skipped != "":
			notes = append(notes, fmt.Sprintf("%s %s %s skipped: %s", r.System, sizeLabel(r.Size), r.label(), r.Skipped))
		case r.Error != "":
			notes = append(notes, fmt.Sprintf("%s %s %s FAILED: %s", r.System, sizeLabel(r.Size), r.label(), r.Error))
		default:
			return false
		}
		return true
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "UNARY\tSIZE\tCALLERS\tP50\tP99\tCALLS/S\tP50 VS CONN\tCLIENT ALLOCS/CALL")
	prev := 0
	for _, r := range rep.byDisplay(KindUnary) {
		if prev != 0 && r.Size != prev {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t")
		}
		prev = r.Size
		if note(r) {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.System, sizeLabel(r.Size), r.Callers, strings.ToUpper(r.status()))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.System, sizeLabel(r.Size), r.Callers,
			ns(r.P50), ns(r.P99), rate(r.CallsPerS), ratio(r.P50Ratio), allocs(r.ClientAllocs))
	}
	fmt.Fprintln(tw, "\t\t\t\t\t\t\t")
	fmt.Fprintln(tw, "SERVER STREAM\tSIZE\t\tMSGS/S\t\t\t\t")
	for _, r := range rep.byDisplay(KindStream) {
		if note(r) {
			fmt.Fprintf(tw, "%s\t%s\t\t%s\n", r.System, sizeLabel(r.Size), r.status())
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t\t%s\n", r.System, sizeLabel(r.Size), rate(r.MsgsPerS))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	fmt.Fprintln(w, "\nP50 VS CONN: p50 / the one-caller p50 of the raw ipc.Conn round trip on the same transport (conn-shm, conn-unix).")
	return writeTargets(w, rep.Targets)
}

func (r *RPCResult) status() string {
	switch {
	case r.Error != "":
		return "FAILED"
	case r.Skipped != "":
		return "skipped"
	}
	return ""
}

// chartRows turns the results of kind, size and callers into chart rows,
// in the order of the systems.
func (rep *RPCReport) chartRows(kind string, size, callers int) []Result {
	var rows []Result
	for _, sys := range rep.Settings.Systems {
		r := rep.Find(sys, kind, size, callers)
		if r == nil {
			continue
		}
		row := Result{Transport: sys, Size: size, RTTP50: r.P50, RTTP99: r.P99, MsgsPerS: r.CallsPerS,
			Baseline: r.Baseline, Skipped: r.Skipped, Error: r.Error}
		if kind == KindStream {
			row.MsgsPerS = r.MsgsPerS
		}
		rows = append(rows, row)
	}
	return rows
}

// rpcCharts returns the charts of rep: for each size, the one-caller
// latency, the calls/s with 8 callers (or the most measured) and the
// stream's messages/s; each as an SVG element with its height.
func (rep *RPCReport) rpcCharts() [][]chart {
	many := slices.Max(rep.Settings.Callers)
	if slices.Contains(rep.Settings.Callers, rpcTargetCalls) {
		many = rpcTargetCalls
	}
	var cols [][]chart
	for _, size := range rep.Settings.Sizes {
		var col []chart
		if rows := rep.chartRows(KindUnary, size, 1); len(rows) > 0 {
			col = append(col, newChart(len(rows), rttChart(rows,
				fmt.Sprintf("Unary call, %s, 1 caller (log scale): p50 and p99", sizeLabel(size)))))
		}
		if rows := rep.chartRows(KindUnary, size, many); len(rows) > 0 {
			col = append(col, newChart(len(rows), rateChart(rows,
				fmt.Sprintf("Unary calls/s, %s, %d callers (log scale)", sizeLabel(size), many), "calls/s", "rpc")))
		}
		if rows := rep.chartRows(KindStream, size, 0); len(rows) > 0 {
			col = append(col, newChart(len(rows), rateChart(rows,
				fmt.Sprintf("Server stream, %s messages (log scale): messages/s", sizeLabel(size)), "msg/s", "rpc")))
		}
		cols = append(cols, col)
	}
	return cols
}

// chart is one SVG chart and its height.
type chart struct {
	svg string
	h   int
}

func newChart(rows int, svg string) chart {
	return chart{svg: svg, h: chartTop + rows*rowH + chartFoot}
}

// WriteRPCSVG writes the charts of rep as one SVG image: a column per
// payload size.
func WriteRPCSVG(w io.Writer, rep *RPCReport) error {
	cols := rep.rpcCharts()
	const gap, head = 16, 58
	height := 0
	for _, col := range cols {
		h := 0
		for _, c := range col {
			h += c.h + gap
		}
		height = max(height, h)
	}
	width := len(cols) * (chartW + gap)
	height += head
	var b strings.Builder
	fmt.Fprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"ipc bench rpc\">\n",
		width, height, width, height)
	fmt.Fprintf(&b, "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", width, height)
	fmt.Fprintf(&b, "<text x=\"4\" y=\"18\" font-family=\"sans-serif\" font-size=\"13\" fill=\"#333\">%s</text>\n",
		html.EscapeString("ipc bench rpc: "+rep.Machine.MachineLine()))
	for i, line := range []string{rep.Settings.SettingsLine(), rep.Machine.LoadLine()} {
		fmt.Fprintf(&b, "<text x=\"4\" y=\"%d\" font-family=\"sans-serif\" font-size=\"11\" fill=\"#555\">%s</text>\n",
			34+14*i, html.EscapeString(line))
	}
	for i, col := range cols {
		y := head
		for _, c := range col {
			fmt.Fprintf(&b, "<g transform=\"translate(%d,%d)\" font-family=\"sans-serif\">\n%s</g>\n", i*(chartW+gap), y, c.svg)
			y += c.h + gap
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteRPCHTML writes rep as a self-contained HTML page: the machine, the
// targets, the charts and the full tables.
func WriteRPCHTML(w io.Writer, rep *RPCReport, generated time.Time) error {
	var b strings.Builder
	e := html.EscapeString
	htmlHead(&b, "ipc bench rpc", rep.Machine)
	fmt.Fprintf(&b, "<p class=\"meta\">%s; GOMAXPROCS %d; generated %s.</p>\n",
		e(rep.Settings.SettingsLine()), rep.Machine.GOMAXPROCS, e(generated.Format(time.RFC3339)))
	b.WriteString(`<p class="note">Each system runs between two processes: the client (this program re-executed) and a
server it starts. Unary: callers call one after another, each call timed into an HDR histogram; calls/s counts the calls of
all callers together. Server stream: the server sends as fast as the stream takes and the client counts what arrives.
conn-shm and conn-unix are the raw ipc.Conn round trip of the payload's bytes, one caller; grpc-unix is grpc-go (HTTP/2)
over a Unix socket, grpc-ipc-shm grpc-go over ipc shm byte streams, netrpc-unix the standard library's net/rpc.</p>
`)
	htmlTargets(&b, rep.Targets)
	for i, col := range rep.rpcCharts() {
		fmt.Fprintf(&b, "<h2>%s payloads</h2>\n<div class=\"charts\">\n", e(sizeLabel(rep.Settings.Sizes[i])))
		for _, c := range col {
			b.WriteString(c.svg)
		}
		b.WriteString("</div>\n")
	}
	b.WriteString("<h2>Unary calls</h2>\n<table>\n<tr><th class=\"l\">system</th><th>size</th><th>callers</th><th>p50</th><th>p99</th><th>calls/s</th><th>p50 vs conn</th><th>client allocs/call</th><th class=\"l\">note</th></tr>\n")
	for _, r := range rep.byDisplay(KindUnary) {
		cls := ""
		if r.Baseline {
			cls = " class=\"raw\""
		}
		fmt.Fprintf(&b, "<tr%s><td class=\"l\">%s</td><td>%s</td><td>%d</td>", cls, e(r.System), e(sizeLabel(r.Size)), r.Callers)
		if !r.OK() {
			fmt.Fprintf(&b, "<td></td><td></td><td></td><td></td><td></td><td class=\"l\">%s</td></tr>\n", e(r.status()+": "+r.Error+r.Skipped))
			continue
		}
		fmt.Fprintf(&b, "<td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td class=\"l\"></td></tr>\n",
			e(ns(r.P50)), e(ns(r.P99)), e(rate(r.CallsPerS)), e(ratio(r.P50Ratio)), e(allocs(r.ClientAllocs)))
	}
	b.WriteString("</table>\n<h2>Server stream</h2>\n<table>\n<tr><th class=\"l\">system</th><th>size</th><th>msg/s</th><th class=\"l\">note</th></tr>\n")
	for _, r := range rep.byDisplay(KindStream) {
		v := ""
		if r.OK() {
			v = rate(r.MsgsPerS)
		}
		fmt.Fprintf(&b, "<tr><td class=\"l\">%s</td><td>%s</td><td>%s</td><td class=\"l\">%s</td></tr>\n",
			e(r.System), e(sizeLabel(r.Size)), e(v), e(strings.TrimPrefix(r.status()+": "+r.Error+r.Skipped, ": ")))
	}
	b.WriteString("</table>\n</body>\n</html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
