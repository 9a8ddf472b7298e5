package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
)

const (
	hangCommand     = "bench-hang"      // a peer that never takes part
	muteCommand     = "bench-mute"      // a peer that connects, then never answers
	pinProbeCommand = "bench-pin-probe" // pins itself, then prints its CPUs and GOMAXPROCS
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case PeerCommand:
			os.Exit(RunPeer(os.Args[2:], os.Stderr))
		case hangCommand:
			time.Sleep(time.Minute)
			os.Exit(0)
		case muteCommand:
			os.Exit(mutePeer(os.Args[2:]))
		case pinProbeCommand:
			os.Exit(pinProbe(os.Args[2:]))
		}
	}
	ipctest.Main(m, nil)
}

// noLeftovers fails t if a temporary directory of this process's runs or
// a child process is left.
func noLeftovers(t *testing.T) {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("ipcbench-%d-*", os.Getpid())))
	for _, d := range dirs {
		t.Errorf("temporary directory %s left behind", d)
		_ = os.RemoveAll(d)
	}
	if kids := children(); len(kids) > 0 {
		t.Errorf("child processes left: %v", kids)
	}
}

// children returns the pids of this process's children.
func children() []int {
	ents, _ := os.ReadDir("/proc")
	var kids []int
	me := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == me {
				kids = append(kids, pid)
			}
		}
	}
	return kids
}

func run(t *testing.T, opts Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	var progress bytes.Buffer
	opts.Progress = &progress
	start := time.Now()
	rep, err := Run(ctx, opts)
	t.Logf("run of %v: %v\n%s", opts.Transports, time.Since(start).Round(time.Millisecond), progress.String())
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := WriteTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	return rep
}

// available returns the framed transports this system has.
func available() []string {
	var ts []string
	for _, t := range Transports {
		if t == ipc.Pipe || t == ipc.TCP {
			ts = append(ts, t) // Listen cannot tell: pipe has none, tcp needs a port
			continue
		}
		dir, err := os.MkdirTemp("", "ipcbench-probe-")
		if err != nil {
			continue
		}
		addr := t + "://" + filepath.Join(dir, "probe")
		if t == ipc.PosixMQ {
			addr = fmt.Sprintf("posixmq:///ipcbench-probe-%d", os.Getpid())
		}
		l, err := ipc.Listen(addr, nil)
		if err == nil {
			l.Close()
			ts = append(ts, t)
		}
		os.RemoveAll(dir)
	}
	return ts
}

// TestRun measures every transport this system has, with its baseline, at
// two sizes, and checks the numbers are sane and the JSON has its shape.
func TestRun(t *testing.T) {
	defer noLeftovers(t)
	sizes := []int{64, 4096}
	ts := available()
	rep := run(t, Options{Transports: ts, Sizes: sizes, Duration: 100 * time.Millisecond})

	want := (&Options{Transports: ts}).plan()
	if len(rep.Results) != len(want)*len(sizes) {
		t.Fatalf("%d results, want %d (%v x %v)", len(rep.Results), len(want)*len(sizes), want, sizes)
	}
	for _, name := range want {
		for _, size := range sizes {
			r := rep.Find(name, size)
			if r == nil {
				t.Errorf("no result for %s %d", name, size)
				continue
			}
			if r.Baseline != IsBaseline(name) {
				t.Errorf("%s: baseline %v", name, r.Baseline)
			}
			if r.Error != "" {
				t.Errorf("%s %d failed: %s", name, size, r.Error)
				continue
			}
			if r.Skipped != "" {
				t.Logf("%s %d skipped: %s", name, size, r.Skipped)
				continue
			}
			checkNumbers(t, r)
			if !r.Baseline {
				b := rep.Find(Baseline(name), size)
				if b.OK() && (r.RTTRatio <= 0 || r.ThroughputRatio <= 0 || r.BaselineName != b.Transport) {
					t.Errorf("%s %d: ratios to %q: rtt %v, throughput %v", name, size, r.BaselineName, r.RTTRatio, r.ThroughputRatio)
				}
			}
		}
	}
	checkJSON(t, rep, len(want)*len(sizes))
}

// TestOddSizes runs the baselines with sizes that take their other paths:
// one byte, and a size that is not a multiple of the word or of a queue
// message.
func TestOddSizes(t *testing.T) {
	defer noLeftovers(t)
	rep := run(t, Options{Transports: []string{SpinBaseline, "raw-posixmq", "raw-unixpacket", "raw-pipe"},
		Sizes: []int{1, 9000}, Duration: 50 * time.Millisecond})
	for i := range rep.Results {
		r := &rep.Results[i]
		if !r.OK() {
			t.Errorf("%s %d: %s%s", r.Transport, r.Size, r.Skipped, r.Error)
			continue
		}
		checkNumbers(t, r)
	}
}

func checkNumbers(t *testing.T, r *Result) {
	t.Helper()
	if !(r.RTTMin > 0 && r.RTTMin <= r.RTTP50 && r.RTTP50 <= r.RTTP99 && r.RTTP99 <= r.RTTP999 && r.RTTP999 <= r.RTTMax) {
		t.Errorf("%s %d: round trips not ordered: min %d p50 %d p99 %d p99.9 %d max %d",
			r.Transport, r.Size, r.RTTMin, r.RTTP50, r.RTTP99, r.RTTP999, r.RTTMax)
	}
	if r.RoundTrips < 1 || r.Messages < 1 || r.MsgsPerS <= 0 || r.ThroughputWindow <= 0 {
		t.Errorf("%s %d: %d round trips, %d messages, %v msg/s over %v s", r.Transport, r.Size,
			r.RoundTrips, r.Messages, r.MsgsPerS, r.ThroughputWindow)
	}
	if got, want := r.BytesPerS, r.MsgsPerS*float64(r.Size); got < want*0.999-1 || got > want*1.001+1 {
		t.Errorf("%s %d: %v bytes/s for %v msg/s", r.Transport, r.Size, got, r.MsgsPerS)
	}
	// A window of Messages over ThroughputWindow seconds.
	if got := float64(r.Messages) / r.ThroughputWindow; got < r.MsgsPerS*0.99-1 || got > r.MsgsPerS*1.01+1 {
		t.Errorf("%s %d: %d messages in %v s is not %v msg/s", r.Transport, r.Size, r.Messages, r.ThroughputWindow, r.MsgsPerS)
	}
}

// requiredResult are the fields every result has, which other tools read.
var requiredResult = []string{"transport", "size", "rtt_p50_ns", "rtt_p99_ns", "rtt_p999_ns", "msgs_per_s", "bytes_per_s"}

// checkJSON checks the JSON form of rep: its top-level keys, the machine,
// and that every result has the required fields with the right types.
func checkJSON(t *testing.T, rep *Report, n int) {
	t.Helper()
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range top {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(keys, []string{"machine", "results", "settings", "targets"}) {
		t.Errorf("top-level keys %v", keys)
	}
	var machine map[string]any
	if err := json.Unmarshal(top["machine"], &machine); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cpu", "ncpu", "kernel", "go", "os", "arch"} {
		if v, ok := machine[k]; !ok || v == "" || v == 0.0 {
			t.Errorf("machine.%s = %v", k, v)
		}
	}
	var results []map[string]any
	if err := json.Unmarshal(top["results"], &results); err != nil {
		t.Fatal(err)
	}
	if len(results) != n {
		t.Fatalf("%d results in JSON, want %d", len(results), n)
	}
	for _, r := range results {
		for _, k := range requiredResult {
			v, ok := r[k]
			if !ok {
				t.Errorf("result %v lacks %q", r, k)
				continue
			}
			_, isNum := v.(float64)
			_, isStr := v.(string)
			if (k == "transport") != isStr || (k != "transport") != isNum {
				t.Errorf("result field %s = %#v: wrong type", k, v)
			}
		}
		if r["transport"] == "" {
			t.Errorf("result without transport: %v", r)
		}
	}
}

// TestSkipped checks that a transport that is not available is reported
// as skipped, with its reason, while the others run.
func TestSkipped(t *testing.T) {
	defer noLeftovers(t)
	testUnavailable = map[string]bool{"raw-pipe": true}
	defer func() { testUnavailable = map[string]bool{} }()
	rep := run(t, Options{Transports: []string{"raw-pipe", "raw-fifo"}, Sizes: []int{64}, Duration: 50 * time.Millisecond,
		InProcess: true}) // testUnavailable is this process's
	r := rep.Find("raw-pipe", 64)
	if r == nil || r.Skipped == "" || r.Error != "" || r.RTTP50 != 0 || r.MsgsPerS != 0 {
		t.Fatalf("raw-pipe: %+v, want skipped", r)
	}
	if !strings.Contains(r.Skipped, "unsupported") {
		t.Errorf("skip reason %q", r.Skipped)
	}
	if f := rep.Find("raw-fifo", 64); f == nil || !f.OK() {
		t.Errorf("raw-fifo: %+v", f)
	}
	var table bytes.Buffer
	WriteTable(&table, rep)
	if !strings.Contains(table.String(), "raw-pipe 64 B skipped: ") {
		t.Errorf("the table does not say raw-pipe was skipped:\n%s", table.String())
	}
	b, _ := json.Marshal(r)
	if !bytes.Contains(b, []byte(`"skipped":`)) {
		t.Errorf("JSON of a skipped result: %s", b)
	}
}

// TestSkipClassification checks which errors count as skipped: those of a
// transport or call the system does not have, here a Listen on pipe:.
func TestSkipClassification(t *testing.T) {
	_, err := ipc.Listen("pipe:", nil)
	if err == nil || !isSkip(err) {
		t.Errorf("Listen(pipe:) = %v: want an error that means skipped", err)
	}
	if isSkip(errors.New("connection refused")) {
		t.Error("an ordinary error counts as skipped")
	}
	if !isTransient(fmt.Errorf("mq_open: %w", syscall.EMFILE), "") ||
		!isTransient(errors.New("connect: context canceled"), "dial: the queues of this user would exceed RLIMIT_MSGQUEUE") ||
		isTransient(errors.New("EOF"), "") {
		t.Error("isTransient misjudges")
	}
	if got := skipLine("noise\n" + skipPrefix + "queue too large\n"); got != "queue too large" {
		t.Errorf("skipLine = %q", got)
	}
}

// TestHungPeer checks that a peer that never takes part is killed when the
// pair's time is up, and the measurement fails instead of hanging.
func TestHungPeer(t *testing.T) {
	defer noLeftovers(t)
	testPairLimit = time.Second
	defer func() { testPairLimit = 0 }()
	hang := func(args ...string) (*exec.Cmd, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		return exec.Command(exe, hangCommand), nil
	}
	for _, tr := range []string{"raw-pipe", "raw-posixmq", "raw-shmspin", ipc.Unix} {
		t.Run(tr, func(t *testing.T) {
			start := time.Now()
			rep := run(t, Options{Transports: []string{tr}, NoBaselines: true, Sizes: []int{64},
				Duration: 50 * time.Millisecond, Command: hang, InProcess: true})
			r := rep.Results[0]
			if r.Skipped != "" {
				t.Skipf("%s skipped: %s", tr, r.Skipped)
			}
			if r.Error == "" {
				t.Fatalf("a hung peer gave a result: %+v", r)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v with a pair limit of 1 s", d)
			}
			t.Logf("error: %s", r.Error)
		})
	}
}

// mutePeer dials the address of a framed transport and then sleeps.
func mutePeer(args []string) int {
	var addr string
	for i, a := range args {
		if a == "--addr" && i+1 < len(args) {
			addr = args[i+1]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ipc.Dial(ctx, addr, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	time.Sleep(time.Minute)
	return 0
}

// TestMutePeer checks that a peer that connects and then never answers is
// killed when the pair's time is up, and the measurement fails.
func TestMutePeer(t *testing.T) {
	defer noLeftovers(t)
	testPairLimit = time.Second
	defer func() { testPairLimit = 0 }()
	mute := func(args ...string) (*exec.Cmd, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		return exec.Command(exe, append([]string{muteCommand}, args...)...), nil
	}
	for _, tr := range []string{ipc.Unix, ipc.SHM, ipc.PosixMQ, ipc.FIFO} {
		t.Run(tr, func(t *testing.T) {
			start := time.Now()
			rep := run(t, Options{Transports: []string{tr}, NoBaselines: true, Sizes: []int{64},
				Duration: 50 * time.Millisecond, Command: mute, InProcess: true})
			r := rep.Results[0]
			if r.Skipped != "" {
				t.Skipf("%s skipped: %s", tr, r.Skipped)
			}
			if r.Error == "" || !strings.Contains(r.Error, "rtt") {
				t.Fatalf("a mute peer gave %+v, want an error in the round trips", r)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v with a pair limit of 1 s", d)
			}
			t.Logf("error: %s", r.Error)
		})
	}
}

// TestCancel checks that a cancelled run returns promptly, with every peer
// killed and every file removed.
func TestCancel(t *testing.T) {
	defer noLeftovers(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, err := Run(ctx, Options{Transports: []string{"raw-fifo", "raw-shmspin"}, Sizes: []int{64}, Duration: 20 * time.Second})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancelled run took %v", d)
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{
		{Transports: []string{"carrier-pigeon"}},
		{Sizes: []int{0}},
		{Sizes: []int{MaxSize + 1}},
		{Duration: time.Millisecond},
		{Transports: []string{}},
		{CPUs: []int{0}},
		{CPUs: []int{0, 1, 2}},
		{CPUs: []int{0, 0}},
		{CPUs: []int{0, 1 << 20}},
		{CPUs: []int{0, -1}},
		{CPUs: []int{0, 1}, InProcess: true},
	} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("Run(%+v) accepted", o)
		}
	}
	o := Options{Transports: []string{ipc.Unix, "raw-fifo", ipc.SHM}}
	if got, want := o.plan(), []string{"raw-unix", "unix", "raw-fifo", SpinBaseline, "shm"}; !slices.Equal(got, want) {
		t.Errorf("plan %v, want %v", got, want)
	}
	o.NoBaselines = true
	if got, want := o.plan(), []string{"unix", "raw-fifo", "shm"}; !slices.Equal(got, want) {
		t.Errorf("plan without baselines %v, want %v", got, want)
	}
}

// fakeReport is a report with made-up numbers, for the targets and the
// page.
func fakeReport() *Report {
	res := func(tr string, size int, p50 int64, mps float64) Result {
		return Result{Transport: tr, Size: size, RTTP50: p50, RTTP99: 2 * p50, RTTP999: 3 * p50, MsgsPerS: mps,
			BytesPerS: mps * float64(size), Baseline: IsBaseline(tr), RoundTrips: 1000, Messages: 1000, ThroughputWindow: 1}
	}
	rep := &Report{
		Machine:  Machine{CPU: "Test CPU <fast>", NCPU: 2, Kernel: "6.0", Go: "go1.26", OS: "linux", Arch: "amd64"},
		Settings: Settings{DurationNs: 1e9, Sizes: []int{64, 1 << 20}, Transports: []string{SpinBaseline, "shm", "raw-unix", "unix", "raw-tcp", "tcp"}},
		Results: []Result{
			res(SpinBaseline, 64, 100, 20e6), res(SpinBaseline, 1<<20, 1e5, 40e3),
			res("shm", 64, 150, 12e6), res("shm", 1<<20, 1e5, 15e3),
			res("raw-unix", 64, 20000, 1e6), res("raw-unix", 1<<20, 1e6, 5e3),
			res("unix", 64, 22000, 0.9e6), res("unix", 1<<20, 1.5e6, 5e3),
			res("raw-tcp", 64, 20000, 1e6),
			{Transport: "tcp", Size: 64, Skipped: "transport tcp unsupported"},
		},
	}
	rep.ratios()
	rep.Targets = rep.checkTargets()
	return rep
}

func TestTargets(t *testing.T) {
	rep := fakeReport()
	want := map[string]string{
		"shm 64 B round trip (p50) within 2× of the spin floor (raw-shmspin p50)": Pass, // 1.5×
		"shm 64 B round trip (p50) at least 100× lower than unix":                 Pass, // 146×
		"shm 64 B one-way at least 10 M msg/s":                                    Pass,
		"shm 1 MiB one-way at least half the raw ring's rate":                     Miss, // 0.375
		"unix round trip (p50) within 1.2× of raw-unix":                           Miss, // 1.1, 1.5
		"unix throughput within 1.2× of raw-unix":                                 Pass, // 0.9, 1
		"tcp round trip (p50) within 1.2× of raw-tcp":                             NA,   // skipped
		"tcp throughput within 1.2× of raw-tcp":                                   NA,
	}
	got := map[string]string{}
	for _, tg := range rep.Targets {
		got[tg.Name] = tg.Status
		t.Logf("%s %s: %s", tg.Status, tg.Name, tg.Detail)
	}
	for name, status := range want {
		if got[name] != status {
			t.Errorf("%s: %q, want %q", name, got[name], status)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d targets, want %d", len(got), len(want))
	}
	if u := rep.Find("unix", 64); u.RTTRatio != 1.1 || u.ThroughputRatio != 0.9 {
		t.Errorf("unix 64 B ratios %v %v, want 1.1 0.9", u.RTTRatio, u.ThroughputRatio)
	}
}

var tagRE = regexp.MustCompile(`<(/?)([a-zA-Z][a-zA-Z0-9]*)([^<>]*?)(/?)>`)

// checkHTML checks that page is a complete HTML document whose elements are
// balanced, that each SVG is well-formed XML, and that it loads nothing
// from elsewhere. It returns the number of SVG charts.
func checkHTML(t *testing.T, page string) int {
	t.Helper()
	if !strings.HasPrefix(page, "<!DOCTYPE html>") {
		t.Errorf("page does not start with <!DOCTYPE html>")
	}
	void := map[string]bool{"meta": true, "br": true, "hr": true, "img": true, "link": true, "input": true}
	var stack []string
	for _, m := range tagRE.FindAllStringSubmatch(page, -1) {
		closing, name, selfClosing := m[1] == "/", strings.ToLower(m[2]), m[4] == "/"
		switch {
		case closing:
			if len(stack) == 0 || stack[len(stack)-1] != name {
				t.Fatalf("</%s> does not close the open element (open: %v)", name, stack)
			}
			stack = stack[:len(stack)-1]
		case void[name] || selfClosing:
		default:
			stack = append(stack, name)
		}
	}
	if len(stack) != 0 {
		t.Errorf("elements left open: %v", stack)
	}
	for _, bad := range []string{"<script", "<link", "src=", "href=", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("the page contains %q: it must be self-contained", bad)
		}
	}
	svgs := regexp.MustCompile(`(?s)<svg .*?</svg>`).FindAllString(page, -1)
	for _, s := range svgs {
		d := xml.NewDecoder(strings.NewReader(s))
		for {
			_, err := d.Token()
			if err != nil {
				if err.Error() != "EOF" {
					t.Errorf("SVG is not well-formed XML: %v", err)
				}
				break
			}
		}
	}
	return len(svgs)
}

func TestHTML(t *testing.T) {
	rep := fakeReport()
	var b bytes.Buffer
	if err := WriteHTML(&b, rep, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if n := checkHTML(t, page); n != 2*len(rep.Settings.Sizes) {
		t.Errorf("%d charts, want %d (round trip and throughput per size)", n, 2*len(rep.Settings.Sizes))
	}
	for _, want := range []string{"Test CPU &lt;fast&gt;", "2 CPUs", "kernel 6.0", "MISS", "PASS", "skipped", "raw-shmspin"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

func TestBusy(t *testing.T) {
	if w := (Machine{NCPU: 2, LoadStart: "0.80 1.0 1.0"}).Busy(); w != "" {
		t.Errorf("load 0.8 on 2 CPUs: %q", w)
	}
	if w := (Machine{NCPU: 2, LoadStart: "2.85 3.17 3.06"}).Busy(); !strings.Contains(w, "busy (load 2.85 on 2 CPUs)") {
		t.Errorf("load 2.85 on 2 CPUs: %q", w)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		v    int64
		want string
	}{{110, "110 ns"}, {4430, "4.43 µs"}, {44800, "44.8 µs"}, {1_500_000, "1.50 ms"}, {2_000_000_000, "2.00 s"}} {
		if got := ns(c.v); got != c.want {
			t.Errorf("ns(%d) = %q, want %q", c.v, got, c.want)
		}
	}
	if got := sizeLabel(1 << 20); got != "1 MiB" {
		t.Errorf("sizeLabel = %q", got)
	}
	if got := rate(16.93e6); got != "16.93 M" {
		t.Errorf("rate = %q", got)
	}
	if got := decadeNs(1e5); got != "100 µs" {
		t.Errorf("decadeNs = %q", got)
	}
	if got := decadeRate(1e7); got != "10 M" {
		t.Errorf("decadeRate = %q", got)
	}
}

// pinProbe pins this process to the CPU in args[0] and prints the CPUs it
// may then run on and its GOMAXPROCS, as JSON.
func pinProbe(args []string) int {
	cpu, err := strconv.Atoi(args[0])
	if err == nil {
		err = pinProcess(cpu)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cpus, err := AllowedCPUs()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"cpus": cpus, "gomaxprocs": runtime.GOMAXPROCS(0),
		"pinned_env": os.Getenv(pinnedEnv)})
	return 0
}
