//go:build linux

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc"
)

// TestSweepStale checks that the temporary directory of a run whose process
// died is removed by the next run, and that of a live process is not.
func TestSweepStale(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	dead := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-stale", tempPrefix, cmd.Process.Pid))
	live := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-live", tempPrefix, os.Getppid()))
	for _, d := range []string{dead, live} {
		if err := os.MkdirAll(filepath.Join(d, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
	}
	sweepStale()
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the directory of dead pid %d is still there: %v", cmd.Process.Pid, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the directory of live pid %d was removed: %v", os.Getppid(), err)
	}
}

// TestCancelRemovesQueues cancels runs in the middle of a queue
// measurement and checks that no queue (nor the files of the posixmq
// transport) is left: queues outlive processes.
func TestCancelRemovesQueues(t *testing.T) {
	defer noLeftovers(t)
	for _, tr := range []string{"raw-posixmq", ipc.PosixMQ} {
		t.Run(tr, func(t *testing.T) {
			seqBefore := 100 // the first measurement of a Run, first attempt
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(300*time.Millisecond, cancel)
			_, err := Run(ctx, Options{Transports: []string{tr}, NoBaselines: true, Sizes: []int{64}, Duration: 20 * time.Second})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v, want context.Canceled", err)
			}
			var names []string
			if tr == ipc.PosixMQ {
				names = []string{fmt.Sprintf("/ipcbench-%d-%d", os.Getpid(), seqBefore)}
				files, _ := filepath.Glob(fmt.Sprintf("/dev/shm/.ipc-mq-ipcbench-%d-*", os.Getpid()))
				for _, f := range files {
					t.Errorf("file %s left behind", f)
					os.Remove(f)
				}
			} else {
				base := fmt.Sprintf("/ipcbench-%d-%d-raw", os.Getpid(), seqBefore)
				names = []string{base + ".p2c", base + ".c2p"}
			}
			for _, n := range names {
				fd, err := mqOpen(n, unix.O_RDONLY, nil)
				if err == nil {
					unix.Close(fd)
					mqUnlink(n)
					t.Errorf("queue %s left behind", n)
				} else if !errors.Is(err, unix.ENOENT) {
					t.Errorf("mq_open %s: %v, want ENOENT", n, err)
				}
			}
		})
	}
}

// TestPinProcess checks that pinProcess confines the whole process (every
// thread, since it starts over with the mask) to one CPU, keeps the
// GOMAXPROCS it had, and leaves its children free of the marker.
func TestPinProcess(t *testing.T) {
	allowed, err := AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	cpu := allowed[len(allowed)-1]
	cmd := exec.Command(os.Args[0], pinProbeCommand, strconv.Itoa(cpu))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	var got struct {
		CPUs       []int  `json:"cpus"`
		GOMAXPROCS int    `json:"gomaxprocs"`
		PinnedEnv  string `json:"pinned_env"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("probe said %q: %v", out, err)
	}
	if !slices.Equal(got.CPUs, []int{cpu}) {
		t.Errorf("pinned to CPU %d, the process may run on %v", cpu, got.CPUs)
	}
	if want := runtime.GOMAXPROCS(0); got.GOMAXPROCS != want {
		t.Errorf("GOMAXPROCS %d after pinning, want %d (as unpinned)", got.GOMAXPROCS, want)
	}
	if got.PinnedEnv != "" {
		t.Errorf("%s=%q left for the children", pinnedEnv, got.PinnedEnv)
	}

	// A CPU the process may not use fails cleanly, without a re-exec loop.
	cmd = exec.Command(os.Args[0], pinProbeCommand, "100000")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "sched_setaffinity") {
		t.Errorf("pinning to CPU 100000: %v, %q; want a sched_setaffinity error", err, out)
	}
}

// TestPinnedRun makes pinned measurements, each in a fresh pair of
// processes, and checks the report says so.
func TestPinnedRun(t *testing.T) {
	defer noLeftovers(t)
	cpus := DefaultCPUs()
	if len(cpus) < 2 {
		t.Skip("fewer than two CPUs to pin to")
	}
	rep := run(t, Options{Transports: []string{ipc.Pipe, ipc.SHM}, Sizes: []int{64}, Duration: 50 * time.Millisecond, CPUs: cpus})
	if !slices.Equal(rep.Settings.CPUs, cpus) || !rep.Settings.Isolated {
		t.Errorf("settings: CPUs %v isolated %v, want %v true", rep.Settings.CPUs, rep.Settings.Isolated, cpus)
	}
	if len(rep.Results) != 4 {
		t.Fatalf("%d results, want 4", len(rep.Results))
	}
	for i := range rep.Results {
		r := &rep.Results[i]
		if !r.OK() {
			t.Errorf("%s: %s%s", r.Transport, r.Error, r.Skipped)
			continue
		}
		checkNumbers(t, r)
	}
	if line := rep.Settings.SettingsLine(); !strings.Contains(line, fmt.Sprintf("pinned to CPU %d", cpus[0])) {
		t.Errorf("settings line %q does not say where the processes ran", line)
	}
}
