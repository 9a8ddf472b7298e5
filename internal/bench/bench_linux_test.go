//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
