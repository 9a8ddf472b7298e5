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
