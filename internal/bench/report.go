package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// WriteHTML writes rep as a self-contained HTML page: the machine, the
// targets, bar charts (inline SVG, log scale) of the p50 and p99 round
// trip and of the throughput of every transport at every size, and the
// full table. The page loads nothing from elsewhere.
func WriteHTML(w io.Writer, rep *Report, generated time.Time) error {
	var b strings.Builder
	e := html.EscapeString
	htmlHead(&b, "ipc bench", rep.Machine)
	fmt.Fprintf(&b, "<p class=\"meta\">%s; GOMAXPROCS %d; generated %s.</p>\n",
		e(strings.ToUpper(rep.Settings.SettingsLine()[:1])+rep.Settings.SettingsLine()[1:]),
		rep.Machine.GOMAXPROCS, e(generated.Format(time.RFC3339)))
	b.WriteString(`<p class="note">Each transport runs between two processes. Round trip: the parent sends a message and the
peer echoes it; every round trip is recorded in an HDR histogram. Throughput: the peer sends as fast as it can and the
parent counts what arrives. Rows named raw-… are baselines: plain blocking read/write loops on the same kind of
descriptor, without framing (raw-shmspin: spinning on a shared page, and a spinning ring).</p>
`)

	htmlTargets(&b, rep.Targets)

	for _, size := range rep.Settings.Sizes {
		var rows []Result
		for _, r := range rep.Results {
			if r.Size == size {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "<h2>%s messages</h2>\n<div class=\"charts\">\n", e(sizeLabel(size)))
		b.WriteString(rttChart(rows, fmt.Sprintf("Round trip, %s (log scale): p50 and p99", sizeLabel(size))))
		b.WriteString(rateChart(rows, fmt.Sprintf("One-way throughput, %s (log scale): messages/s", sizeLabel(size)),
			"msg/s", "framed transport"))
		b.WriteString("</div>\n")
	}

	b.WriteString("<h2>All results</h2>\n<table>\n<tr><th class=\"l\">transport</th><th>size</th><th>rtt p50</th><th>rtt p99</th><th>rtt p99.9</th><th>round trips</th><th>msg/s</th><th>bytes/s</th><th>p50 vs raw</th><th>msg/s vs raw</th><th class=\"l\">note</th></tr>\n")
	for _, r := range rep.Results {
		cls := ""
		if r.Baseline {
			cls = " class=\"raw\""
		}
		if !r.OK() {
			note := "skipped: " + r.Skipped
			if r.Error != "" {
				note = "FAILED: " + r.Error
			}
			fmt.Fprintf(&b, "<tr%s><td class=\"l\">%s</td><td>%s</td><td></td><td></td><td></td><td></td><td></td><td></td><td></td><td></td><td class=\"l\">%s</td></tr>\n",
				cls, e(r.Transport), e(sizeLabel(r.Size)), e(note))
			continue
		}
		fmt.Fprintf(&b, "<tr%s><td class=\"l\">%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td class=\"l\"></td></tr>\n",
			cls, e(r.Transport), e(sizeLabel(r.Size)), e(ns(r.RTTP50)), e(ns(r.RTTP99)), e(ns(r.RTTP999)), r.RoundTrips,
			e(rate(r.MsgsPerS)), e(bytesRate(r.BytesPerS)), e(ratio(r.RTTRatio)), e(ratio(r.ThroughputRatio)))
	}
	b.WriteString("</table>\n</body>\n</html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// htmlHead writes the start of a report page up to the machine and its
// load.
func htmlHead(b *strings.Builder, title string, m Machine) {
	e := html.EscapeString
	b.WriteString(strings.Replace(pageHead, "<title>ipc bench</title>", "<title>"+e(title)+"</title>", 1))
	fmt.Fprintf(b, "<h1>%s</h1>\n<p class=\"meta\">Machine: %s</p>\n", e(title), e(m.MachineLine()))
	if l := m.LoadLine(); l != "" {
		fmt.Fprintf(b, "<p class=\"meta\">%s</p>\n", e(strings.ToUpper(l[:1])+l[1:]))
	}
	if busy := m.Busy(); busy != "" {
		fmt.Fprintf(b, "<p class=\"MISS\">%s.</p>\n", e(busy))
	}
}

// htmlTargets writes the table of targets, if any.
func htmlTargets(b *strings.Builder, targets []Target) {
	e := html.EscapeString
	if len(targets) > 0 {
		b.WriteString("<h2>Targets</h2>\n<table>\n<tr><th class=\"l\">status</th><th class=\"l\">target</th><th class=\"l\">measured</th></tr>\n")
		for _, t := range targets {
			cls := t.Status
			if cls == NA {
				cls = "NA"
			}
			fmt.Fprintf(b, "<tr><td class=\"l %s\">%s</td><td class=\"l\">%s</td><td class=\"l\">%s</td></tr>\n",
				cls, e(t.Status), e(t.Name), e(t.Detail))
		}
		b.WriteString("</table>\n")
	}
}

// pageHead is the start of every report page.
const pageHead = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ipc bench</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
.meta { color: #555; margin: .2em 0; }
table { border-collapse: collapse; font-size: .9em; margin: 1em 0; }
th, td { padding: .25em .7em; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; }
td.l, th.l { text-align: left; white-space: normal; }
tr.raw td { color: #666; }
.PASS { color: #16794a; font-weight: bold; }
.MISS { color: #b3261e; font-weight: bold; }
.NA { color: #777; font-weight: bold; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5em; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.note { color: #555; font-size: .9em; }
</style>
</head>
<body>
`

// Chart geometry, in SVG user units.
const (
	chartW    = 660
	labelW    = 120 // transport names
	valueW    = 150 // value text after the longest bar
	rowH      = 30
	chartTop  = 44
	chartFoot = 40
)

// logAxis maps values to x on a log scale spanning whole decades.
type logAxis struct{ lo, hi float64 } // decades: 10^lo .. 10^hi

func newLogAxis(vals []float64) logAxis {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if v > 0 {
			lo = min(lo, math.Log10(v))
			hi = max(hi, math.Log10(v))
		}
	}
	if math.IsInf(lo, 1) {
		return logAxis{0, 1}
	}
	a := logAxis{math.Floor(lo), math.Ceil(hi)}
	if a.hi <= a.lo {
		a.hi = a.lo + 1
	}
	return a
}

func (a logAxis) x(v float64) float64 {
	plot := float64(chartW - labelW - valueW)
	if v <= 0 {
		return labelW
	}
	return labelW + (math.Log10(v)-a.lo)/(a.hi-a.lo)*plot
}

// frame writes the SVG header, title, decade grid lines and tick labels.
func (a logAxis) frame(b *strings.Builder, title string, rows int, tick func(float64) string) int {
	h := chartTop + rows*rowH + chartFoot
	fmt.Fprintf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"%s\">\n",
		chartW, h, chartW, h, html.EscapeString(title))
	fmt.Fprintf(b, "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", chartW, h)
	fmt.Fprintf(b, "<text x=\"%d\" y=\"20\" font-size=\"14\" font-weight=\"bold\">%s</text>\n", 4, html.EscapeString(title))
	bottom := chartTop + rows*rowH
	for d := a.lo; d <= a.hi+1e-9; d++ {
		x := a.x(math.Pow(10, d))
		fmt.Fprintf(b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", x, chartTop-6, x, bottom)
		fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" fill=\"#555\">%s</text>\n",
			x, bottom+16, html.EscapeString(tick(math.Pow(10, d))))
	}
	fmt.Fprintf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>\n", labelW, chartTop-6, labelW, bottom)
	return bottom
}

func rowLabel(b *strings.Builder, r Result, y int) {
	style := ""
	if r.Baseline {
		style = " fill=\"#666\" font-style=\"italic\""
	}
	fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"end\"%s>%s</text>\n",
		labelW-6, y+rowH/2+4, style, html.EscapeString(r.Transport))
}

func notMeasured(b *strings.Builder, r Result, y int) bool {
	if r.OK() {
		return false
	}
	what := "skipped"
	if r.Error != "" {
		what = "failed"
	}
	fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#999\">%s</text>\n", labelW+6, y+rowH/2+4, what)
	return true
}

// rttChart draws the p50 and p99 round trips of rows.
func rttChart(rows []Result, title string) string {
	var vals []float64
	for _, r := range rows {
		if r.OK() {
			vals = append(vals, float64(r.RTTP50), float64(r.RTTP99))
		}
	}
	a := newLogAxis(vals)
	var b strings.Builder
	a.frame(&b, title, len(rows), decadeNs)
	for i, r := range rows {
		y := chartTop + i*rowH
		rowLabel(&b, r, y)
		if notMeasured(&b, r, y) {
			continue
		}
		p50, p99 := "#2f6fb5", "#9cc0e8"
		if r.Baseline {
			p50, p99 = "#6b7785", "#c3cad3"
		}
		x50, x99 := a.x(float64(r.RTTP50)), a.x(float64(r.RTTP99))
		fmt.Fprintf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"11\" fill=\"%s\"><title>%s p50 %s</title></rect>\n",
			labelW, y+3, max(x50-labelW, 1), p50, html.EscapeString(r.Transport), ns(r.RTTP50))
		fmt.Fprintf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"11\" fill=\"%s\"><title>%s p99 %s</title></rect>\n",
			labelW, y+15, max(x99-labelW, 1), p99, html.EscapeString(r.Transport), ns(r.RTTP99))
		fmt.Fprintf(&b, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\">%s</text>\n", x50+4, y+12, html.EscapeString(ns(r.RTTP50)))
		fmt.Fprintf(&b, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" fill=\"#555\">%s</text>\n", x99+4, y+24, html.EscapeString(ns(r.RTTP99)))
	}
	bottom := chartTop + len(rows)*rowH
	legend(&b, bottom+30, [][2]string{{"#2f6fb5", "p50"}, {"#9cc0e8", "p99"}, {"#6b7785", "baseline p50"}})
	b.WriteString("</svg>\n")
	return b.String()
}

// rateChart draws the MsgsPerS of rows, in unit, with their BytesPerS
// where not 0; label names the rows that are not baselines in the legend.
func rateChart(rows []Result, title, unit, label string) string {
	var vals []float64
	for _, r := range rows {
		if r.OK() {
			vals = append(vals, r.MsgsPerS)
		}
	}
	a := newLogAxis(vals)
	var b strings.Builder
	a.frame(&b, title, len(rows), decadeRate)
	for i, r := range rows {
		y := chartTop + i*rowH
		rowLabel(&b, r, y)
		if notMeasured(&b, r, y) {
			continue
		}
		fill := "#3a8f5c"
		if r.Baseline {
			fill = "#6b7785"
		}
		x := a.x(r.MsgsPerS)
		text := rate(r.MsgsPerS) + " " + unit
		if r.BytesPerS > 0 {
			text += " · " + bytesRate(r.BytesPerS)
		}
		fmt.Fprintf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"18\" fill=\"%s\"><title>%s %s</title></rect>\n",
			labelW, y+6, max(x-labelW, 1), fill, html.EscapeString(r.Transport), html.EscapeString(text))
		fmt.Fprintf(&b, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\">%s</text>\n", x+4, y+19, html.EscapeString(text))
	}
	bottom := chartTop + len(rows)*rowH
	legend(&b, bottom+30, [][2]string{{"#3a8f5c", label}, {"#6b7785", "baseline"}})
	b.WriteString("</svg>\n")
	return b.String()
}

// decadeNs labels a power of ten of nanoseconds: "100 ns", "1 µs".
func decadeNs(v float64) string {
	units := []string{"ns", "µs", "ms", "s"}
	u := 0
	for v >= 1000 && u < len(units)-1 {
		v /= 1000
		u++
	}
	return fmt.Sprintf("%.0f %s", v, units[u])
}

// decadeRate labels a power of ten of a rate: "100", "1 k", "10 M".
func decadeRate(v float64) string {
	units := []string{"", " k", " M", " G"}
	u := 0
	for v >= 1000 && u < len(units)-1 {
		v /= 1000
		u++
	}
	return fmt.Sprintf("%.0f%s", v, units[u])
}

func legend(b *strings.Builder, y int, items [][2]string) {
	x := labelW
	for _, it := range items {
		fmt.Fprintf(b, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>", x, y-9, it[0])
		fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\" font-size=\"11\">%s</text>\n", x+14, y, html.EscapeString(it[1]))
		x += 24 + 7*len(it[1])
	}
}
