package bench

import (
	"bytes"
	"context"
	"encoding/xml"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ipcgo/ipc/shm"
)

// TestRPCPayloadSize checks that the request and the stream's reply
// marshal to the payload size they are made for.
func TestRPCPayloadSize(t *testing.T) {
	for _, size := range []int{16, 64, 100, 4096, 70000} {
		if got := proto.Size(benchRequest(size)); got != size {
			t.Errorf("request for %d B marshals to %d B", size, got)
		}
		if got := proto.Size(benchStreamReply(size)); got != size {
			t.Errorf("stream reply for %d B marshals to %d B", size, got)
		}
	}
}

// fakeRPCReport has every result of the default run, with numbers that
// meet the targets but the conn one (rpc-shm 64 B 2.5× conn-shm).
func fakeRPCReport() *RPCReport {
	rep := &RPCReport{Machine: Machine{CPU: "Test CPU", NCPU: 2, LoadStart: "0.10 0.20 0.30"},
		Settings: RPCSettings{DurationNs: int64(time.Second), WarmupNs: int64(250 * time.Millisecond),
			Systems: RPCSystems, Sizes: RPCSizes, Callers: RPCCallers, CPUs: []int{0, 1}}}
	p50 := map[string]int64{ConnShm: 400, RPCShm: 1000, GRPCShm: 200_000, ConnUnix: 50_000, RPCUnix: 60_000,
		GRPCUnix: 100_000, NetRPCUnix: 70_000}
	for _, sys := range RPCSystems {
		for _, size := range RPCSizes {
			for _, r := range expected(sys, size, RPCCallers) {
				if r.Kind == KindStream {
					if sys == NetRPCUnix {
						r.Skipped = "net/rpc has no streams"
					} else {
						r.MsgsPerS, r.Messages = 1e5, 1e5
					}
				} else {
					r.P50, r.P99 = p50[sys]*int64(r.Callers), 3*p50[sys]*int64(r.Callers)
					r.CallsPerS = 1e9 / float64(p50[sys])
					r.Calls = int64(r.CallsPerS)
					if r.Callers == 1 {
						r.ClientAllocs = map[bool]float64{true: 4, false: 90}[strings.HasPrefix(sys, "rpc-")]
					}
				}
				rep.Results = append(rep.Results, r)
			}
		}
	}
	rep.ratios()
	rep.Targets = rep.checkTargets()
	return rep
}

func TestRPCTargets(t *testing.T) {
	rep := fakeRPCReport()
	want := map[string]struct {
		status string
		value  float64
	}{
		"rpc-shm 64 B unary p50 at most 2×":              {Miss, 2.5},
		"rpc-shm 64 B unary p50 at least 30× lower":      {Pass, 100},
		"rpc-shm 64 B calls/s with 8 callers":            {Pass, 100},
		"rpc-unix unary p50 at most 1.3×":                {Pass, 1.2},
		"rpc-shm fewer allocations per unary call than ": {Pass, 4},
	}
	if len(rep.Targets) != len(want) {
		t.Fatalf("%d targets, want %d: %+v", len(rep.Targets), len(want), rep.Targets)
	}
	for _, tg := range rep.Targets {
		found := false
		for prefix, w := range want {
			if strings.HasPrefix(tg.Name, prefix) {
				found = true
				if tg.Status != w.status || tg.Value != w.value {
					t.Errorf("%s: %s %v, want %s %v (%s)", tg.Name, tg.Status, tg.Value, w.status, w.value, tg.Detail)
				}
			}
		}
		if !found {
			t.Errorf("unexpected target %q", tg.Name)
		}
	}
	if r := rep.Find(RPCShm, KindUnary, 64, 1); r.P50Ratio != 2.5 {
		t.Errorf("rpc-shm p50 ratio to conn-shm %v, want 2.5", r.P50Ratio)
	}

	// A failed baseline makes its targets N/A, and says why.
	rep.Find(GRPCUnix, KindUnary, 64, 8).Error = "broken"
	rep.Find(ConnUnix, KindUnary, 4096, 1).Error = "broken"
	rep.Targets = rep.checkTargets()
	for _, tg := range rep.Targets {
		switch {
		case strings.Contains(tg.Name, "8 callers"):
			if tg.Status != NA || !strings.Contains(tg.Detail, "grpc-unix 64 B unary, 8 callers failed") {
				t.Errorf("%s: %s %q, want N/A naming the failed row", tg.Name, tg.Status, tg.Detail)
			}
		case strings.HasPrefix(tg.Name, "rpc-unix"):
			if tg.Status != Pass || !strings.Contains(tg.Detail, "not compared: conn-unix 4 KiB") {
				t.Errorf("%s: %s %q, want PASS on 64 B with 4 KiB not compared", tg.Name, tg.Status, tg.Detail)
			}
		}
	}
}

func TestRPCTableAndCharts(t *testing.T) {
	rep := fakeRPCReport()
	var tb bytes.Buffer
	if err := WriteRPCTable(&tb, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"UNARY", "CALLERS", "SERVER STREAM", "grpc-ipc-shm", "netrpc-unix 64 B stream skipped",
		"MISS  rpc-shm 64 B unary p50 at most 2×", "2.50×"} {
		if !strings.Contains(tb.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, tb.String())
		}
	}
	var sb bytes.Buffer
	if err := WriteRPCSVG(&sb, rep); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&sb)
	svgs := 0
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("SVG is not well-formed XML: %v", err)
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "svg" {
			svgs++
		}
	}
	// The image and, per size, the latency, calls/s and stream charts.
	if want := 1 + 3*len(rep.Settings.Sizes); svgs != want {
		t.Errorf("%d svg elements, want %d", svgs, want)
	}
	var hb bytes.Buffer
	if err := WriteRPCHTML(&hb, rep, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if n := checkHTML(t, hb.String()); n != 3*len(rep.Settings.Sizes) {
		t.Errorf("%d charts in the page, want %d", n, 3*len(rep.Settings.Sizes))
	}
}

func TestRPCOptions(t *testing.T) {
	for _, o := range []RPCOptions{
		{Systems: []string{"carrier-pigeon"}},
		{Sizes: []int{8}},
		{Sizes: []int{MaxRPCSize + 1}},
		{Callers: []int{0}},
		{Duration: time.Nanosecond},
		{CPUs: []int{0, 0}},
		{Systems: []string{}},
	} {
		if _, err := RunRPC(context.Background(), o); err == nil {
			t.Errorf("RunRPC(%+v) accepted", o)
		}
	}
}

// TestRunRPC runs two systems between real processes and checks the
// numbers and that nothing is left behind: processes, files, segments.
func TestRunRPC(t *testing.T) {
	defer noLeftovers(t)
	segs := shmSegments(t)
	rep, err := RunRPC(context.Background(), RPCOptions{Systems: []string{ConnShm, RPCShm}, Sizes: []int{64},
		Callers: []int{1, 4}, Duration: 50 * time.Millisecond, CPUs: DefaultCPUs()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2+3 {
		t.Fatalf("%d results, want 5: %+v", len(rep.Results), rep.Results)
	}
	for _, r := range rep.Results {
		switch {
		case !r.OK():
			t.Errorf("%s %s: %s%s", r.System, r.label(), r.Error, r.Skipped)
		case r.Kind == KindStream && (r.MsgsPerS <= 0 || r.Messages <= 0):
			t.Errorf("%s stream: %v msg/s of %d", r.System, r.MsgsPerS, r.Messages)
		case r.Kind == KindUnary && !(0 < r.P50 && r.P50 <= r.P99 && r.CallsPerS > 0 && r.Calls > 0):
			t.Errorf("%s %s: p50 %d p99 %d, %v calls/s", r.System, r.label(), r.P50, r.P99, r.CallsPerS)
		}
	}
	if r := rep.Find(RPCShm, KindUnary, 64, 1); r == nil || r.P50Ratio <= 0 {
		t.Errorf("rpc-shm one caller: %+v, want a ratio to conn-shm", r)
	}
	if got := shmSegments(t); len(got) > len(segs) {
		t.Errorf("segments left: %v (before: %v)", got, segs)
	}
}

func shmSegments(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(shm.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
