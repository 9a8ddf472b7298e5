package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/bench"
	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/mqbench"
	"github.com/ipcgo/ipc/internal/race"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

func TestMain(m *testing.M) {
	// `ipc race` re-executes os.Executable(), here the test binary, with the
	// hidden worker subcommand: run it as the real command would.
	if len(os.Args) > 1 && (os.Args[1] == race.WorkerCommand || os.Args[1] == bench.PeerCommand || os.Args[1] == mqbench.PeerCommand) {
		os.Exit(Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	ipctest.Main(m, peers)
}

var peers = ipctest.Peers{
	"mutex-hold": peerMutexHold,
}

// peerMutexHold locks mutex args[1] of segment args[0], says "locked" and
// waits to be killed.
func peerMutexHold(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	m, err := procsync.NewMutex(seg, args[1], nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	if err := m.Lock(context.Background()); err != nil && !errors.Is(err, procsync.ErrOwnerDead) {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("locked")
	time.Sleep(time.Minute)
	return 0
}

// run runs the command line in-process with a time limit and returns the
// exit code, stdout and stderr.
func run(t *testing.T, limit time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Run(ctx, args, &stdout, &stderr)
	t.Logf("ipc %s: exit %d in %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code,
		time.Since(start).Round(time.Millisecond), stdout.String(), stderr.String())
	if ctx.Err() != nil {
		t.Fatalf("ipc %s: not done within %v", strings.Join(args, " "), limit)
	}
	return code, stdout.String(), stderr.String()
}

// noRaceSegments fails t if a segment of this process's race runs is left.
func noRaceSegments(t *testing.T) {
	t.Helper()
	ents, err := os.ReadDir(shm.Dir)
	if err != nil {
		t.Fatal(err)
	}
	prefix := race.SegmentPrefix + fmt.Sprint(os.Getpid())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			t.Errorf("segment %s left behind", e.Name())
			_ = shm.Unlink(e.Name())
		}
	}
}

// decodeExact decodes a JSON object and checks it has exactly the keys.
func decodeExact(t *testing.T, data []byte, keys ...string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, data)
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(keys))
	if !slices.Equal(got, want) {
		t.Fatalf("JSON keys %v, want %v in %s", got, want, data)
	}
	return m
}

func unmarshal(t *testing.T, raw json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
}

var modeKeys = []string{"mode", "final", "lost", "ns_per_op"}

func TestRaceJSON(t *testing.T) {
	defer noRaceSegments(t)
	const procs, iters = 3, 20000
	code, out, _ := run(t, 25*time.Second, "race", "--procs", fmt.Sprint(procs), "--iters", fmt.Sprint(iters), "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("want exactly one line of JSON, got %q", out)
	}
	top := decodeExact(t, []byte(out), "procs", "iters", "expected", "modes")
	var p, i, expected int
	unmarshal(t, top["procs"], &p)
	unmarshal(t, top["iters"], &i)
	unmarshal(t, top["expected"], &expected)
	if p != procs || i != iters || expected != procs*iters {
		t.Fatalf("procs %d, iters %d, expected %d; want %d, %d, %d", p, i, expected, procs, iters, procs*iters)
	}
	var modes []json.RawMessage
	unmarshal(t, top["modes"], &modes)
	var names []string
	for _, raw := range modes {
		m := decodeExact(t, raw, modeKeys...)
		var name string
		var final, lost int
		var ns float64
		unmarshal(t, m["mode"], &name)
		unmarshal(t, m["final"], &final)
		unmarshal(t, m["lost"], &lost)
		unmarshal(t, m["ns_per_op"], &ns)
		names = append(names, name)
		if final > expected || lost != expected-final || ns <= 0 {
			t.Errorf("mode %s: final %d, lost %d, ns/op %v (expected %d)", name, final, lost, ns, expected)
		}
		if name != "none" && (lost != 0 || final != expected) {
			t.Errorf("synchronised mode %s lost %d updates (final %d, expected %d)", name, lost, final, expected)
		}
	}
	if !slices.Equal(names, race.Modes) {
		t.Errorf("modes %v, want %v", names, race.Modes)
	}
}

func TestRaceHuman(t *testing.T) {
	defer noRaceSegments(t)
	code, out, _ := run(t, 25*time.Second, "race", "--procs", "2", "--iters", "5000", "--modes", "atomic,mutex")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"2 processes x 5000 increments = 10000 expected", "MODE", "atomic", "mutex", "ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "semaphore") || strings.Contains(out, "none") {
		t.Errorf("--modes atomic,mutex ran other modes")
	}
}

func checkKillJSON(t *testing.T, out string, kills int) (final, expected int) {
	t.Helper()
	top := decodeExact(t, []byte(out), "procs", "iters", "expected", "modes", "kill")
	var k struct {
		Kills       int     `json:"kills"`
		Recovered   int     `json:"recovered"`
		DetectMsP50 float64 `json:"detect_ms_p50"`
		DetectMsMax float64 `json:"detect_ms_max"`
		Final       int     `json:"final"`
		Expected    int     `json:"expected"`
	}
	decodeExact(t, top["kill"], "kills", "recovered", "detect_ms_p50", "detect_ms_max", "final", "expected")
	unmarshal(t, top["kill"], &k)
	if k.Kills != kills || k.Recovered != k.Kills {
		t.Errorf("kills %d, recovered %d; want %d each", k.Kills, k.Recovered, kills)
	}
	if k.DetectMsP50 <= 0 || k.DetectMsP50 > k.DetectMsMax || k.DetectMsMax > 5000 {
		t.Errorf("detection p50 %v ms, max %v ms", k.DetectMsP50, k.DetectMsMax)
	}
	var modes []json.RawMessage
	unmarshal(t, top["modes"], &modes)
	if len(modes) != 1 {
		t.Fatalf("%d modes, want the mutex mode only", len(modes))
	}
	var m struct {
		Mode  string `json:"mode"`
		Final int    `json:"final"`
		Lost  int    `json:"lost"`
	}
	decodeExact(t, modes[0], modeKeys...)
	unmarshal(t, modes[0], &m)
	var exp int
	unmarshal(t, top["expected"], &exp)
	if m.Mode != "mutex" || m.Final != k.Final || exp != k.Expected || m.Lost != k.Expected-k.Final {
		t.Errorf("mode %+v, expected %d, kill %+v", m, exp, k)
	}
	return k.Final, k.Expected
}

func TestRaceKill(t *testing.T) {
	defer noRaceSegments(t)
	code, out, _ := run(t, 25*time.Second, "race", "--kill", "5", "--procs", "3", "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	final, expected := checkKillJSON(t, out, 5)
	if final != expected || expected == 0 {
		t.Errorf("final %d, expected %d", final, expected)
	}
}

// TestRaceKillNoRepair shows that the kill mode's check is real: workers that
// do not roll back a dead holder's half-done update leave the counter off.
// A kill lands between the counter's and the done slot's update in about a
// third of the cases, so 40 kills miss all of them with odds below 1e-7.
func TestRaceKillNoRepair(t *testing.T) {
	defer noRaceSegments(t)
	code, out, errOut := run(t, 25*time.Second, "race", "--kill", "40", "--procs", "3", "--no-repair")
	if code != exitFailure || !strings.Contains(errOut, "FAILED") || !strings.Contains(out, "FAIL") {
		t.Fatalf("exit %d, want %d with a failed check", code, exitFailure)
	}
}

func TestRaceKillHuman(t *testing.T) {
	defer noRaceSegments(t)
	code, out, _ := run(t, 25*time.Second, "race", "--kill", "3", "--procs", "2")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"3 lock holders killed", "KILLS", "RECOVERED", "every death recovered"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestRaceInterrupted(t *testing.T) {
	defer noRaceSegments(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Run(ctx, []string{"race", "--procs", "2", "--iters", "1000000000"}, &stdout, &stderr)
	t.Logf("exit %d after %v: %s", code, time.Since(start), stderr.String())
	if code != exitInterrupt {
		t.Errorf("exit %d, want %d", code, exitInterrupt)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %v to stop", time.Since(start))
	}
}

func TestRaceUsage(t *testing.T) {
	for _, args := range [][]string{
		{"race", "--procs", "0"},
		{"race", "--iters", "0"},
		{"race", "--kill", "-1"},
		{"race", "--modes", "bogus"},
		{"race", "--kill", "3", "--iters", "5"},
		{"race", "--bogus"},
		{"race", "extra"},
		{"bogus"},
		{},
	} {
		code, out, errOut := run(t, 5*time.Second, args...)
		if code == 0 || errOut == "" || out != "" {
			t.Errorf("ipc %q: exit %d, stdout %q, stderr %q; want an error", args, code, out, errOut)
		}
	}
	noRaceSegments(t)
}

// segJSON is the part of a segment's JSON the tests read.
type segJSON struct {
	Name         string  `json:"name"`
	Size         int64   `json:"size"`
	CreatorPID   int     `json:"creator_pid"`
	CreatorAlive bool    `json:"creator_alive"`
	AgeSeconds   float64 `json:"age_s"`
	Error        string  `json:"error"`
}

func lsSegment(t *testing.T, name string) (segJSON, bool) {
	t.Helper()
	code, out, _ := run(t, 5*time.Second, "shm", "ls", "--json")
	if code != 0 {
		t.Fatalf("shm ls: exit %d", code)
	}
	var ls struct {
		Segments []segJSON `json:"segments"`
	}
	decodeExact(t, []byte(out), "segments")
	unmarshal(t, []byte(out), &ls)
	for _, s := range ls.Segments {
		if s.Name == name {
			return s, true
		}
	}
	return segJSON{}, false
}

type inspectOut struct {
	Segment  segJSON                `json:"segment"`
	Attached []shm.Owner            `json:"attached"`
	Objects  []procsync.ObjectState `json:"objects"`
}

// inspect runs shm inspect --json. If procsync.Inspect failed and the
// command fell back to its reduced view (which it announces on stderr),
// reduced is true.
func inspect(t *testing.T, name string) (in inspectOut, objs map[string]procsync.ObjectState, reduced bool) {
	t.Helper()
	code, out, errOut := run(t, 5*time.Second, "shm", "inspect", name, "--json")
	if code != 0 {
		t.Fatalf("shm inspect: exit %d", code)
	}
	decodeExact(t, []byte(out), "segment", "attached", "objects")
	unmarshal(t, []byte(out), &in)
	objs = map[string]procsync.ObjectState{}
	for _, o := range in.Objects {
		objs[o.Name] = o
	}
	return in, objs, strings.Contains(errOut, "reduced view")
}

func TestShmLsInspectRm(t *testing.T) {
	seg := ipctest.CreateSegment(t, 64<<10, nil)
	name := seg.Name()
	m, err := procsync.NewMutex(seg, "mine", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Unlock()
	if _, err := procsync.NewSemaphore(seg, "sem", 2, 5, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := seg.Alloc("data", 100); err != nil {
		t.Fatal(err)
	}
	if _, err := procsync.NewMutex(seg, "theirs", nil); err != nil {
		t.Fatal(err)
	}
	peer := ipctest.StartPeer(t, "mutex-hold", name, "theirs")
	peer.Expect(t, "locked", 10*time.Second)

	s, ok := lsSegment(t, name)
	if !ok {
		t.Fatalf("shm ls does not list %s", name)
	}
	if s.CreatorPID != os.Getpid() || !s.CreatorAlive || s.Size < 64<<10 || s.AgeSeconds < 0 || s.Error != "" {
		t.Errorf("shm ls: %+v", s)
	}
	code, out, _ := run(t, 5*time.Second, "shm", "ls")
	if code != 0 || !strings.Contains(out, name) || !strings.Contains(out, "NAME") {
		t.Errorf("shm ls: exit %d", code)
	}

	in, objs, reduced := inspect(t, name)
	if in.Segment.Name != name || in.Segment.CreatorPID != os.Getpid() {
		t.Errorf("segment %+v", in.Segment)
	}
	attached := map[int]bool{}
	for _, o := range in.Attached {
		attached[o.PID] = o.Alive
	}
	if !attached[os.Getpid()] || !attached[peer.Pid()] {
		t.Errorf("attached %+v, want this process and peer %d", in.Attached, peer.Pid())
	}
	owner := func(o procsync.ObjectState) (int, bool) {
		if len(o.Owners) != 1 {
			t.Errorf("object %s: owners %+v", o.Name, o.Owners)
			return 0, false
		}
		return o.Owners[0].PID, o.Owners[0].Alive
	}
	if o := objs["mine"]; o.Kind != "mutex" {
		t.Errorf("mine: %+v", o)
	} else if pid, alive := owner(o); pid != os.Getpid() || !alive {
		t.Errorf("mine owned by %d (alive %v)", pid, alive)
	}
	if o := objs["theirs"]; o.Kind != "mutex" {
		t.Errorf("theirs: %+v", o)
	} else if pid, alive := owner(o); pid != peer.Pid() || !alive {
		t.Errorf("theirs owned by %d (alive %v), want peer %d", pid, alive, peer.Pid())
	}
	if reduced {
		t.Log("procsync.Inspect failed: the reduced view does not show semaphores' state")
	}
	if o := objs["sem"]; o.Kind != "semaphore" || !reduced && !strings.Contains(o.Summary, "2 of max 5") {
		t.Errorf("sem: %+v", o)
	}
	if o := objs["data"]; o.Kind != "data" || o.Size < 100 {
		t.Errorf("data: %+v", o)
	}

	// The peer dies holding its mutex: inspect shows a dead owner.
	peer.Kill()
	peer.Wait(t, 10*time.Second)
	// The inspection may take the dead peer's process slot, which then
	// forgets the peer's pid: the owner is reported dead with pid 0
	// (unknown), never with the pid of the slot's new occupant.
	_, objs, _ = inspect(t, name)
	if pid, alive := owner(objs["theirs"]); pid != peer.Pid() && pid != 0 || alive || !strings.Contains(objs["theirs"].Summary, "DEAD") {
		t.Errorf("after the peer's death: %+v", objs["theirs"])
	}
	code, out, _ = run(t, 5*time.Second, "shm", "inspect", name)
	for _, want := range []string{"segment " + name, "mine", "theirs", "sem", "data", "DEAD"} {
		if !strings.Contains(out, want) {
			t.Errorf("shm inspect lacks %q", want)
		}
	}
	if code != 0 {
		t.Errorf("shm inspect: exit %d", code)
	}

	code, out, _ = run(t, 5*time.Second, "shm", "rm", name)
	if code != 0 || !strings.Contains(out, "removed "+name) {
		t.Fatalf("shm rm: exit %d", code)
	}
	if _, err := shm.Stat(name); !errors.Is(err, shm.ErrNotFound) {
		t.Errorf("after rm: Stat says %v", err)
	}
	if _, ok := lsSegment(t, name); ok {
		t.Errorf("shm ls lists %s after rm", name)
	}
	code, _, errOut := run(t, 5*time.Second, "shm", "rm", name)
	if code != exitFailure || !strings.Contains(errOut, "not found") {
		t.Errorf("second rm: exit %d, stderr %q", code, errOut)
	}
}

func TestShmErrors(t *testing.T) {
	// A segment whose header is damaged.
	corrupt := ipctest.CreateSegment(t, 4096, nil)
	path := filepath.Join(shm.Dir, corrupt.Name())
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xde, 0xad}, 24); err != nil { // creator pid, under the checksum
		t.Fatal(err)
	}
	f.Close()
	// A file of another program.
	foreign := ipctest.SegName(t)
	if err := os.WriteFile(filepath.Join(shm.Dir, foreign), []byte("not a segment"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(filepath.Join(shm.Dir, foreign)) })
	missing := ipctest.SegName(t)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"shm", "inspect", "../etc/passwd"}, "invalid name"},
		{[]string{"shm", "inspect", ""}, "invalid name"},
		{[]string{"shm", "inspect", missing}, "not found"},
		{[]string{"shm", "inspect", corrupt.Name()}, "corrupt"},
		{[]string{"shm", "inspect", foreign}, "not an ipc segment"},
		{[]string{"shm", "rm", "a/b"}, "invalid name"},
		{[]string{"shm", "rm", missing}, "not found"},
		{[]string{"shm", "rm", foreign}, "not an ipc segment"},
		{[]string{"shm", "inspect"}, "accepts 1 arg"},
		{[]string{"shm", "rm"}, "requires at least 1 arg"},
		{[]string{"shm", "ls", "x"}, "unknown command"},
	} {
		code, out, errOut := run(t, 5*time.Second, c.args...)
		if code == 0 || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("ipc %q: exit %d, stdout %q, stderr %q; want an error with %q", c.args, code, out, errOut, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(shm.Dir, foreign)); err != nil {
		t.Errorf("rm removed a foreign file: %v", err)
	}
	s, ok := lsSegment(t, corrupt.Name())
	if !ok || !strings.Contains(s.Error, "corrupt") {
		t.Errorf("shm ls shows the corrupt segment as %+v (listed: %v)", s, ok)
	}
	code, out, _ := run(t, 5*time.Second, "shm", "ls")
	if code != 0 || !strings.Contains(out, "error:") {
		t.Errorf("shm ls: exit %d, want the corrupt segment's error shown", code)
	}
}

// When procsync.Inspect panics, shm inspect falls back to a reduced view
// and says so.
func TestShmInspectReducedView(t *testing.T) {
	seg := ipctest.CreateSegment(t, 64<<10, nil)
	m, err := procsync.NewMutex(seg, "m", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Unlock()
	if _, err := seg.Alloc("d", 8); err != nil {
		t.Fatal(err)
	}
	if _, err := procsync.NewSemaphore(seg, "s", 1, 1, nil); err != nil {
		t.Fatal(err)
	}
	inspectFunc = func(*shm.Segment) ([]procsync.ObjectState, error) { panic("boom") }
	defer func() { inspectFunc = procsync.Inspect }()
	_, objs, reduced := inspect(t, seg.Name())
	if !reduced {
		t.Error("no warning about the reduced view")
	}
	if o := objs["m"]; o.Kind != "mutex" || len(o.Owners) != 1 || o.Owners[0].PID != os.Getpid() || !strings.Contains(o.Summary, "locked by pid") {
		t.Errorf("m: %+v", o)
	}
	if o := objs["d"]; o.Kind != "data" || o.Size != 8 {
		t.Errorf("d: %+v", o)
	}
	if o := objs["s"]; o.Kind != "semaphore" || o.Summary != "state unavailable" {
		t.Errorf("s: %+v", o)
	}
}
