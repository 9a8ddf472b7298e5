package race

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/shm"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == WorkerCommand {
		os.Exit(RunWorker(os.Args[2:], os.Stderr))
	}
	ipctest.Main(m, nil)
}

func noSegments(t *testing.T) {
	t.Helper()
	ents, err := os.ReadDir(shm.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), SegmentPrefix+strconv.Itoa(os.Getpid())) {
			t.Errorf("segment %s left behind", e.Name())
			_ = shm.Unlink(e.Name())
		}
	}
}

func TestCheck(t *testing.T) {
	ok := &Result{Procs: 2, Iters: 5, Expected: 10, Modes: []ModeResult{
		{Mode: "none", Final: 7, Lost: 3}, {Mode: "atomic", Final: 10}, {Mode: "mutex", Final: 10}}}
	if err := ok.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
	lost := &Result{Expected: 10, Modes: []ModeResult{{Mode: "semaphore", Final: 9, Lost: 1}}}
	if err := lost.Check(); err == nil || !strings.Contains(err.Error(), "semaphore") {
		t.Errorf("a lost update in a synchronised mode: Check says %v", err)
	}
	for _, k := range []KillResult{
		{Kills: 3, Recovered: 2, Final: 5, Expected: 5},
		{Kills: 3, Recovered: 3, Final: 6, Expected: 5},
	} {
		r := &Result{Expected: k.Expected, Modes: []ModeResult{{Mode: "mutex", Final: k.Expected}}, Kill: &k}
		if err := r.Check(); err == nil {
			t.Errorf("kill result %+v passes Check", k)
		}
	}
}

// A worker that fails makes Run fail with its output, and the segment and
// the other workers are cleaned up.
func TestWorkerFailure(t *testing.T) {
	defer noSegments(t)
	for _, kill := range []int{0, 2} {
		_, err := Run(context.Background(), Options{Procs: 3, Iters: 10, Kill: kill,
			Command: func(args ...string) (*exec.Cmd, error) {
				return exec.Command("/bin/sh", "-c", "echo boom >&2; exit 1"), nil
			}})
		if err == nil || !strings.Contains(err.Error(), "boom") {
			t.Errorf("kill %d: Run with failing workers: %v", kill, err)
		}
	}
}

// A worker that hangs is killed when the context ends.
func TestCancelKillsWorkers(t *testing.T) {
	defer noSegments(t)
	var started []*exec.Cmd
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Run(ctx, Options{Procs: 2, Iters: 10, Command: func(args ...string) (*exec.Cmd, error) {
		c := exec.Command("/bin/sleep", "60")
		started = append(started, c)
		return c, nil
	}})
	if err == nil || ctx.Err() == nil {
		t.Fatalf("Run: %v", err)
	}
	for _, c := range started {
		if c.ProcessState == nil {
			t.Errorf("worker %d not reaped", c.Process.Pid)
		}
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{{Procs: 0, Iters: 1}, {Procs: MaxProcs + 1, Iters: 1}, {Procs: 1, Iters: 0},
		{Procs: 1, Kill: -1}, {Procs: 1, Iters: 1, Modes: []string{"bogus"}}} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("Run(%+v) succeeded", o)
		}
	}
	noSegments(t)
}

// The real thing, small: every synchronised mode is exact.
func TestRunSmall(t *testing.T) {
	defer noSegments(t)
	res, err := Run(context.Background(), Options{Procs: 2, Iters: 3000})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if len(res.Modes) != len(Modes) || res.Expected != 6000 {
		t.Fatalf("%+v", res)
	}
	t.Logf("%+v", res.Modes)
}
