package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/bench"
)

// noBenchLeftovers fails t if a temporary directory of a bench run of this
// process is left.
func noBenchLeftovers(t *testing.T) {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("ipcbench-%d-*", os.Getpid())))
	for _, d := range dirs {
		t.Errorf("temporary directory %s left behind", d)
		_ = os.RemoveAll(d)
	}
}

var benchResultKeys = []string{"transport", "size", "rtt_p50_ns", "rtt_p99_ns", "rtt_p999_ns", "msgs_per_s", "bytes_per_s"}

// TestBenchJSON runs `ipc bench --json` over unix and shm (and their
// baselines) and checks the output is one JSON object with the documented
// fields and sane numbers, and that progress went to stderr.
func TestBenchJSON(t *testing.T) {
	defer noBenchLeftovers(t)
	code, out, errOut := run(t, 50*time.Second, "bench", "--transports", "unix,shm", "--sizes", "64,4K",
		"--duration", "200ms", "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("want exactly one line of JSON, got %q", out)
	}
	top := decodeExact(t, []byte(out), "machine", "settings", "results", "targets")
	var machine map[string]any
	unmarshal(t, top["machine"], &machine)
	for _, k := range []string{"cpu", "ncpu", "kernel", "go", "os", "arch"} {
		if v, ok := machine[k]; !ok || v == "" || v == 0.0 {
			t.Errorf("machine.%s = %v", k, v)
		}
	}
	var settings struct {
		CPUs     []int `json:"cpus"`
		Isolated bool  `json:"isolated"`
	}
	unmarshal(t, top["settings"], &settings)
	if want := bench.DefaultCPUs(); !slices.Equal(settings.CPUs, want) || !settings.Isolated {
		t.Errorf("settings: cpus %v isolated %v; want the default pinning %v, isolated", settings.CPUs, settings.Isolated, want)
	}
	var results []map[string]json.RawMessage
	unmarshal(t, top["results"], &results)
	var names []string
	for _, r := range results {
		var res struct {
			Transport string  `json:"transport"`
			Size      int     `json:"size"`
			P50       int64   `json:"rtt_p50_ns"`
			P99       int64   `json:"rtt_p99_ns"`
			P999      int64   `json:"rtt_p999_ns"`
			Msgs      float64 `json:"msgs_per_s"`
			Bytes     float64 `json:"bytes_per_s"`
			Skipped   string  `json:"skipped"`
			Error     string  `json:"error"`
		}
		for _, k := range benchResultKeys {
			if _, ok := r[k]; !ok {
				t.Errorf("result lacks %q: %v", k, r)
			}
		}
		b, _ := json.Marshal(r)
		unmarshal(t, b, &res)
		names = append(names, fmt.Sprintf("%s/%d", res.Transport, res.Size))
		switch {
		case res.Error != "":
			t.Errorf("%s %d failed: %s", res.Transport, res.Size, res.Error)
		case res.Skipped != "":
			t.Logf("%s %d skipped: %s", res.Transport, res.Size, res.Skipped)
		case !(0 < res.P50 && res.P50 <= res.P99 && res.P99 <= res.P999):
			t.Errorf("%s %d: percentiles not ordered: %d %d %d", res.Transport, res.Size, res.P50, res.P99, res.P999)
		case res.Msgs <= 0 || res.Bytes <= 0:
			t.Errorf("%s %d: %v msg/s, %v bytes/s", res.Transport, res.Size, res.Msgs, res.Bytes)
		}
	}
	want := []string{"raw-unix/64", "raw-unix/4096", "unix/64", "unix/4096", "raw-shmspin/64", "raw-shmspin/4096", "shm/64", "shm/4096"}
	if !slices.Equal(names, want) {
		t.Errorf("results %v, want %v", names, want)
	}
	if !regexp.MustCompile(`(?m)^\[1/8\] raw-unix 64 B rtt\.\.\.$`).MatchString(errOut) ||
		!strings.Contains(errOut, "[8/8] shm 4096 B throughput...") {
		t.Errorf("no progress on stderr: %q", errOut)
	}
}

// TestBenchReport runs `ipc bench` with a table and an HTML report, on a
// baseline and the pipe transport.
func TestBenchReport(t *testing.T) {
	defer noBenchLeftovers(t)
	report := filepath.Join(t.TempDir(), "bench.html")
	code, out, _ := run(t, 50*time.Second, "bench", "--transports", "pipe", "--sizes", "64",
		"--duration", "200ms", "--report", report, "-q")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"machine: ", "TRANSPORT", "RTT P50", "raw-pipe", "pipe ", "targets:", "pipe round trip (p50) within 1.2× of raw-pipe"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q", want)
		}
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || !strings.HasSuffix(strings.TrimSpace(page), "</html>") {
		t.Errorf("not an HTML document: %.80q...", page)
	}
	if strings.Count(page, "<svg ") != 2 || strings.Count(page, "</svg>") != 2 {
		t.Errorf("want two SVG charts (round trip, throughput), got %d", strings.Count(page, "<svg "))
	}
	for _, bad := range []string{"<script", "src=", "href="} {
		if strings.Contains(page, bad) {
			t.Errorf("the report contains %q: it must be self-contained", bad)
		}
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--sizes", "0"},
		{"bench", "--sizes", "lots"},
		{"bench", "--transports", "carrier-pigeon"},
		{"bench", "--duration", "1ns"},
		{"bench", "extra"},
		{"bench", "--cpus", "0"},
		{"bench", "--cpus", "a,b"},
		{"bench", "--cpus", "0,0"},
		{"bench", "--cpus", "0,99999"},
	} {
		if code, _, _ := run(t, 10*time.Second, args...); code != exitUsage {
			t.Errorf("ipc %v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	for in, want := range map[string][]int{"0,1": {0, 1}, " 3 , 2 ": {3, 2}, "none": nil, "auto": bench.DefaultCPUs()} {
		if got, err := parseCPUs(in); err != nil || !slices.Equal(got, want) {
			t.Errorf("parseCPUs(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "0,", ",1", "a,b", "-1,0", "0,1,2"} {
		if _, err := parseCPUs(in); err == nil {
			t.Errorf("parseCPUs(%q) accepted", in)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"64": 64, "4K": 4096, "4KiB": 4096, "1M": 1 << 20, "1mib": 1 << 20, "100B": 100} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1G", "65M", "x"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

// TestBenchRPC runs `ipc bench rpc` in its short form: every system, both
// payload sizes, 1, 8 and 64 callers, with JSON, an HTML report and the
// SVG chart, and checks that every row is there with sane numbers and
// every target was checked.
func TestBenchRPC(t *testing.T) {
	defer noBenchLeftovers(t)
	dir := t.TempDir()
	report, svg := filepath.Join(dir, "rpc.html"), filepath.Join(dir, "rpc.svg")
	code, out, errOut := run(t, 90*time.Second, "bench", "rpc", "--duration", "50ms", "--json",
		"--report", report, "--svg", svg)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	top := decodeExact(t, []byte(out), "machine", "settings", "results", "targets")
	var results []bench.RPCResult
	unmarshal(t, top["results"], &results)
	var got, want []string
	for _, sys := range bench.RPCSystems {
		for _, size := range bench.RPCSizes {
			callers := bench.RPCCallers
			if strings.HasPrefix(sys, "conn-") {
				callers = []int{1}
			}
			for _, c := range callers {
				want = append(want, fmt.Sprintf("%s/%d/unary/%d", sys, size, c))
			}
			want = append(want, fmt.Sprintf("%s/%d/stream/0", sys, size))
		}
	}
	for _, r := range results {
		name := fmt.Sprintf("%s/%d/%s/%d", r.System, r.Size, r.Kind, r.Callers)
		got = append(got, name)
		switch {
		case r.Error != "":
			t.Errorf("%s failed: %s", name, r.Error)
		case r.Kind == bench.KindStream && r.System == bench.NetRPCUnix:
			if r.Skipped == "" {
				t.Errorf("%s: net/rpc has no streams, want skipped", name)
			}
		case r.Skipped != "":
			t.Errorf("%s skipped: %s", name, r.Skipped)
		case r.Kind == bench.KindStream:
			if r.MsgsPerS <= 0 || r.Messages <= 0 {
				t.Errorf("%s: %v msg/s of %d messages", name, r.MsgsPerS, r.Messages)
			}
		case !(0 < r.P50 && r.P50 <= r.P99) || r.CallsPerS <= 0 || r.Calls <= 0:
			t.Errorf("%s: p50 %d, p99 %d, %v calls/s of %d", name, r.P50, r.P99, r.CallsPerS, r.Calls)
		case r.Callers == 1 && !strings.HasPrefix(r.System, "conn-") && r.P50Ratio <= 0:
			t.Errorf("%s: p50 ratio to conn %v", name, r.P50Ratio)
		case r.Callers == 1 && !strings.HasPrefix(r.System, "rpc-") && !strings.HasPrefix(r.System, "conn-") && r.ClientAllocs <= 0:
			t.Errorf("%s: %v allocations per call", name, r.ClientAllocs) // grpc-go and net/rpc allocate
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("results\n%v\nwant\n%v", got, want)
	}
	var targets []bench.Target
	unmarshal(t, top["targets"], &targets)
	if len(targets) != 5 {
		t.Errorf("%d targets, want 5", len(targets))
	}
	for _, tg := range targets {
		measured := tg.Value > 0 || strings.Contains(tg.Name, "allocations") // rpc may allocate nothing
		if tg.Status != bench.Pass && tg.Status != bench.Miss || !measured || tg.Detail == "" {
			t.Errorf("target %q: %s %v (%s), want PASS or MISS with a measured value", tg.Name, tg.Status, tg.Value, tg.Detail)
		}
	}
	if !strings.Contains(errOut, "[1/14] conn-shm 64 B unary, 1 caller...") ||
		!strings.Contains(errOut, "[14/14] netrpc-unix 4096 B stream...") {
		t.Errorf("no progress on stderr: %q", errOut)
	}
	// The saved JSON shows again as the table, without measuring.
	saved := filepath.Join(dir, "rpc.json")
	if err := os.WriteFile(saved, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	code, table, _ := run(t, 10*time.Second, "bench", "rpc", "--from", saved, "--svg", svg)
	if code != 0 {
		t.Fatalf("--from: exit %d", code)
	}
	for _, want := range []string{"UNARY", "SERVER STREAM", "rpc-shm        64 B   8 ", "netrpc-unix    4 KiB  64 ", "targets:"} {
		if !strings.Contains(table, want) {
			t.Errorf("--from: the table lacks %q", want)
		}
	}
	if code, _, _ := run(t, 10*time.Second, "bench", "rpc", "--from", report); code != exitFailure {
		t.Errorf("--from an HTML file: exit %d, want %d", code, exitFailure)
	}
	for path, prefix := range map[string]string{report: "<!DOCTYPE html>", svg: "<svg "} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), prefix) || !strings.Contains(string(b), "rpc-shm") ||
			!strings.Contains(string(b), "grpc-unix") {
			t.Errorf("%s: %.80q..., want %q with the systems", path, b, prefix)
		}
	}
}

func TestBenchRPCUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "rpc", "--systems", "carrier-pigeon"},
		{"bench", "rpc", "--sizes", "8"},
		{"bench", "rpc", "--callers", "0"},
		{"bench", "rpc", "--duration", "1ns"},
		{"bench", "rpc", "--cpus", "0,0"},
		{"bench", "rpc", "extra"},
	} {
		if code, _, _ := run(t, 10*time.Second, args...); code != exitUsage {
			t.Errorf("ipc %v: exit %d, want %d", args, code, exitUsage)
		}
	}
}
